"""cascadia: dense shelf water cascading in the Gulf of Lion from atmospheric predictors."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("cascadia")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from cascadia.service.results import open_results

__all__ = ["__version__", "open_results"]


def __getattr__(name: str) -> Any:
    """``cascadia.open_results`` imported on first use: ``import cascadia`` stays fast."""
    if name == "open_results":
        from cascadia.service.results import open_results

        return open_results
    raise AttributeError(f"module 'cascadia' has no attribute {name!r}")
