"""cascadia: dense shelf water cascading in the Gulf of Lion from atmospheric predictors."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cascadia")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
