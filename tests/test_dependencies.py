"""pyproject.toml declares every library the package imports, and nothing it does not use.

Every ``import`` in ``cascadia/`` (also inside functions) is read with ``ast`` and
mapped to the distribution that installs it; each must be a declared dependency.
Each declared dependency must be imported, or be one of the few pieces loaded by
name (an fsspec protocol, an xarray engine or groupby backend, a module imported
from a string), listed here with the reason.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]

#: Declared, never imported by name, and why they are needed.
LOADED_BY_NAME = {
    "s3fs": "fsspec's filesystem for s3:// URLs",
    "gcsfs": "fsspec's filesystem for gs:// URLs",
    "flox": "xarray's groupby/resample backend (daily means of hourly dask data)",
    "h5netcdf": "xarray's engine for NetCDF assets (open_kwargs in sources/catalog.py)",
    "h5py": "h5netcdf's backend (an extra of h5netcdf since 1.7)",
    "dask-jobqueue": "imported with import_module in run/cluster.py (SLURM, PBS)",
    "aiohttp": "fsspec's filesystem for http:// URLs (the service's Zarr store, docs/serve.md)",
}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(extras: bool = False) -> set[str]:
    """Declared distributions; with ``extras``, also those named as extras
    (``dask[distributed]`` declares ``distributed``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set()
    for line in project["dependencies"]:
        requirement = Requirement(line)
        names.add(_normal(requirement.name))
        names |= {_normal(e) for e in requirement.extras} if extras else set()
    return names


def _imported() -> dict[str, str]:
    """Distribution -> a file importing it, for every third-party import of the package."""
    owners = packages_distributions()
    found: dict[str, str] = {}
    for path in sorted((ROOT / "cascadia").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top == "cascadia" or top in sys.stdlib_module_names:
                    continue
                assert top in owners, f"{path}: {top!r} is installed by no distribution"
                for dist in owners[top]:
                    found.setdefault(_normal(dist), str(path.relative_to(ROOT)))
    return found


def test_every_imported_library_is_declared() -> None:
    missing = {d: f for d, f in _imported().items() if d not in _declared(extras=True)}
    assert missing == {}, f"imported but not in pyproject.toml: {missing}"


def test_every_declared_library_is_used() -> None:
    used = set(_imported()) | {_normal(n) for n in LOADED_BY_NAME}
    assert _declared() - used == set()
    assert {_normal(n) for n in LOADED_BY_NAME} <= _declared()
