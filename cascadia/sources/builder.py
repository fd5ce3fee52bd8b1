"""An intake-esm collection from a folder of NetCDF files and Zarr stores (``catalog build``).

In the manner of ecgtools: walk a folder (any fsspec URL), recognise each
asset's layout — a CMIP6 DRS path or file name, a CORDEX DRS file name, ECMWF
reanalysis short names (CDS downloads) or long names (ARCO-ERA5) — write one
row per (asset, variable) and list every file that could not be catalogued with
the reason, never dropping it silently. Each asset is opened once, for its
variables and its time axis.

The collection follows docs/catalogs.md, "Collection conventions": absolute
URIs in ``path``, a ``format`` column (``netcdf`` or ``zarr``), ``variable_id``
among the ``groupby_attrs`` (a file holding many variables is listed once per
variable; cascadia opens it once), files split in time joined over
``time_range``. A facet a layout does not have (``table_id`` of an ERA5 file)
is ``none``, so that every combination is identified by the same columns.

ecgtools 2024.7 installs with the pinned stack but is not used: its walker
descends into every Zarr store (listing each chunk object) and knows neither
Zarr v3 stores nor a mix of NetCDF and Zarr in one collection, its CMIP6 parser
reads NetCDF file names only (not the Pangeo layout of one Zarr store per DRS
directory), it has no ERA5 or CORDEX parser, writes plain paths (which
intake-esm 2025.12 with zarr 3 refuses) and uses pydantic's deprecated
``validate_arguments``.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import intake_esm
import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "Asset",
    "AssetInfo",
    "BuildError",
    "BuildResult",
    "LayoutError",
    "Skipped",
    "build_collection",
    "find_assets",
    "parse_asset",
    "read_info",
]

#: Value of a facet that an asset's layout does not have.
NONE = "none"

#: Columns of a built collection, in order; those a build finds no value for are left out.
FACETS = (
    "project",
    "activity_id",
    "institution_id",
    "source_id",
    "experiment_id",
    "member_id",
    "table_id",
    "frequency",
    "grid_label",
    "domain_id",
    "driving_source_id",
    "rcm_version",
    "variable_id",
    "version",
    "time_range",
)
#: Facets that do not identify a dataset: joined over (time) or chosen among (version).
NOT_GROUPED = ("time_range", "version")

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".h5")
ZARR_MARKERS = (".zmetadata", ".zgroup", "zarr.json")

#: ECMWF short names (CDS NetCDF) and ARCO-ERA5 long names of surface fields.
ECMWF_NAMES = frozenset(
    {
        "t2m", "d2m", "u10", "v10", "si10", "u100", "v100", "msl", "sp", "tp", "cp", "lsp",
        "ssrd", "strd", "ssr", "str", "sst", "skt", "tcc", "lcc", "slhf", "sshf", "e",
        "lsm", "ci", "sd", "mx2t", "mn2t", "i10fg", "fg10", "tcwv", "blh",
        "2m_temperature", "2m_dewpoint_temperature", "10m_u_component_of_wind",
        "10m_v_component_of_wind", "10m_wind_speed", "mean_sea_level_pressure",
        "surface_pressure", "total_precipitation", "surface_solar_radiation_downwards",
        "surface_thermal_radiation_downwards", "sea_surface_temperature",
        "surface_latent_heat_flux", "surface_sensible_heat_flux", "total_cloud_cover",
        "land_sea_mask",
    }
)  # fmt: skip

_MEMBER = r"(?:s\d{4}-)?r\d+i\d+p\d+f\d+"
#: CMIP6 file name: var_table_source_experiment_member_grid[_time].nc (or a store so named).
CMIP6_NAME = re.compile(
    r"^(?P<variable_id>[^_]+)_(?P<table_id>[^_]+)_(?P<source_id>[^_]+)_"
    rf"(?P<experiment_id>[^_]+)_(?P<member_id>{_MEMBER})_(?P<grid_label>g[^_.]*)"
    r"(?:_(?P<time_range>\d+(?:-\d+)?))?$"
)
#: CMIP6 DRS directories below the root: activity/institution/source/experiment/
#: member/table/variable/grid/version.
CMIP6_DRS = (
    ("activity_id", r"[A-Za-z0-9]+"),
    ("institution_id", r"[A-Za-z0-9-]+"),
    ("source_id", r"[A-Za-z0-9-]+"),
    ("experiment_id", r"[A-Za-z0-9-]+"),
    ("member_id", _MEMBER),
    ("table_id", r"[A-Za-z0-9]+"),
    ("variable_id", r"[A-Za-z0-9]+"),
    ("grid_label", r"g[a-z0-9]*"),
    ("version", r"v\d+"),
)
#: CORDEX-CMIP5 file name: var_domain_gcm_experiment_member_rcm_version_frequency[_time].nc.
CORDEX_NAME = re.compile(
    r"^(?P<variable_id>[^_]+)_(?P<domain_id>[A-Z]{3}-[A-Za-z0-9]+)_(?P<driving_source_id>[^_]+)_"
    r"(?P<experiment_id>[^_]+)_(?P<member_id>r\d+i\d+p\d+(?:f\d+)?)_(?P<rcm>[^_]+)_"
    r"(?P<rcm_version>v[^_]+)_(?P<frequency>[^_]+)(?:_(?P<time_range>\d+(?:-\d+)?))?$"
)
#: CORDEX-CMIP6 file name: var_domain_driving-source_experiment_member_institution_source_
#: version-realization_frequency[_time].nc.
CORDEX6_NAME = re.compile(
    r"^(?P<variable_id>[^_]+)_(?P<domain_id>[A-Z]{3}-[A-Za-z0-9]+)_(?P<driving_source_id>[^_]+)_"
    r"(?P<experiment_id>[^_]+)_(?P<member_id>r\d+i\d+p\d+f\d+)_(?P<institution_id>[^_]+)_"
    r"(?P<source_id>[^_]+)_(?P<rcm_version>v[^_]+)_(?P<frequency>[^_]+)"
    r"(?:_(?P<time_range>\d+(?:-\d+)?))?$"
)


class BuildError(ValueError):
    """The folder cannot be scanned or nothing in it can be catalogued."""


class NotThisLayout(Exception):
    """A parser does not recognise an asset (the message says why not)."""


class LayoutError(Exception):
    """A parser recognises an asset but it contradicts its layout (the message says how)."""


@dataclass(frozen=True)
class Skipped:
    """A file or store that is not in the collection, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Asset:
    """A NetCDF file or a Zarr store found under the folder."""

    url: str  # with its protocol (file:// for local paths)
    relative: str  # path below the scanned folder, '/'-separated
    format: str  # netcdf | zarr

    @property
    def display(self) -> str:
        """The asset as a user names it: a plain path for local files."""
        return self.url.removeprefix("file://")

    @property
    def stem(self) -> str:
        name = posixpath.basename(self.relative.rstrip("/"))
        for suffix in (*NETCDF_SUFFIXES, ".zarr"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name


@dataclass(frozen=True)
class AssetInfo:
    """What the parsers need to know of an opened asset."""

    variables: dict[str, tuple[str, ...]]  # data variable -> its dimensions
    attrs: dict[str, Any]
    time_dim: str | None = None
    time_range: str | None = None  # YYYYMMDD-YYYYMMDD
    frequency: str | None = None  # 1hr, 3hr, 6hr, day, mon, yr
    members: int = 1  # values of an ensemble-member coordinate ("number")
    member_number: int | None = None


@dataclass
class BuildResult:
    """The written collection, its rows and what was left out."""

    json_url: str
    csv_url: str
    skipped_url: str  # CSV of what was left out (written only if something was)
    frame: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def assets(self) -> int:
        return int(self.frame["path"].nunique())


# --------------------------------------------------------------------------- finding assets


def find_assets(
    url: str, storage_options: Mapping[str, Any] | None = None, exclude: Iterable[str] = ()
) -> tuple[list[Asset], list[Skipped]]:
    """NetCDF files and Zarr stores under ``url``, and every other file with the reason.

    A folder holding Zarr metadata (``.zmetadata``, ``.zgroup``, ``zarr.json``) is
    one store: it is listed and not descended into (ARCO-ERA5 has millions of
    chunk objects).
    """
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if not fs.isdir(root):
        raise BuildError(f"{url}: no such folder")
    root = root.rstrip("/")
    excluded = {fs._strip_protocol(e).rstrip("/") for e in exclude}
    assets: list[Asset] = []
    skipped: list[Skipped] = []
    for folder, dirs, files in fs.walk(root, topdown=True):
        folder = folder.rstrip("/")
        if folder != root and any(m in files for m in ZARR_MARKERS):
            assets.append(_asset(fs, root, folder, "zarr"))
            dirs[:] = []
            continue
        if folder.endswith(".zarr"):
            skipped.append(
                Skipped(
                    _display(fs, folder),
                    "named .zarr but holds no Zarr metadata (.zmetadata, .zgroup or zarr.json)",
                )
            )
            dirs[:] = []
            continue
        dirs.sort()
        for name in sorted(files):
            path = f"{folder}/{name}"
            if path in excluded:
                continue
            if name.lower().endswith(NETCDF_SUFFIXES):
                assets.append(_asset(fs, root, path, "netcdf"))
            else:
                skipped.append(
                    Skipped(_display(fs, path), "neither NetCDF (.nc, .nc4) nor a Zarr store")
                )
    return assets, skipped


def _display(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return fs.unstrip_protocol(path) if _protocol(fs) != "file" else path


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    protocol = fs.protocol
    return protocol[0] if isinstance(protocol, (list, tuple)) else protocol


def _asset(fs: fsspec.AbstractFileSystem, root: str, path: str, fmt: str) -> Asset:
    url = _file_uri(path) if _protocol(fs) == "file" else fs.unstrip_protocol(path)
    return Asset(url=url, relative=path[len(root) :].strip("/"), format=fmt)


def _file_uri(path: str) -> str:
    """``file://`` and the absolute path as it is, spaces and accents included.

    fsspec, and through it intake-esm and xarray, strip ``file://`` and never
    percent-decode: ``Path.as_uri``'s ``ERA5%20downloads`` names a folder that
    does not exist.
    """
    return "file://" + Path(path).resolve().as_posix()


# --------------------------------------------------------------------------- reading an asset


def read_info(asset: Asset, storage_options: Mapping[str, Any] | None = None) -> AssetInfo:
    """Variables, attributes and time axis of an asset, reading metadata only."""
    options = dict(storage_options or {})
    if asset.format == "zarr":
        with xr.open_zarr(asset.url, storage_options=options or None, decode_timedelta=False) as ds:
            return _info(ds)
    # h5netcdf, as extraction reads NetCDF (netCDF4-python is not thread-safe)
    with fsspec.open(asset.url, **options) as handle:
        if handle.read(4)[:3] == b"CDF":
            raise ValueError(
                "a NetCDF-3 (classic) file; cascadia reads NetCDF-4 (HDF5) files: convert it "
                "with 'nccopy -k nc4 IN OUT'"
            )
        handle.seek(0)
        with xr.open_dataset(handle, engine="h5netcdf", decode_timedelta=False) as ds:
            return _info(ds)


def _info(ds: xr.Dataset) -> AssetInfo:
    time_dim = next(
        (
            str(d)
            for d in ds.dims
            if d in ds.coords
            and (np.issubdtype(ds[d].dtype, np.datetime64) or ds[d].dtype == object)
        ),
        None,
    )
    time_range = frequency = None
    if time_dim is not None and ds.sizes[time_dim]:
        values = ds[time_dim].values
        time_range = f"{_yyyymmdd(values[0])}-{_yyyymmdd(values[-1])}"
        frequency = _frequency(values) if values.size > 1 else ds.attrs.get("frequency")
    number = ds.coords.get("number")
    return AssetInfo(
        variables={str(n): tuple(map(str, v.dims)) for n, v in ds.data_vars.items()},
        attrs=dict(ds.attrs),
        time_dim=time_dim,
        time_range=time_range,
        frequency=frequency,
        members=int(number.size) if number is not None else 1,
        member_number=int(number.values) if number is not None and number.size == 1 else None,
    )


def _yyyymmdd(value: Any) -> str:
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def _frequency(values: np.ndarray) -> str:
    """CMIP frequency name of a time axis from its median step."""
    steps = np.diff(values)
    if np.issubdtype(steps.dtype, np.timedelta64):
        seconds = steps / np.timedelta64(1, "s")
    else:
        seconds = np.array([s.total_seconds() for s in steps])
    step = float(np.median(seconds))
    named = {3600: "1hr", 10800: "3hr", 21600: "6hr", 86400: "day"}
    if round(step) in named:
        return named[round(step)]
    if 28 * 86400 <= step <= 31 * 86400:
        return "mon"
    if 360 * 86400 <= step <= 366 * 86400:
        return "yr"
    return f"{step:g}s"


# --------------------------------------------------------------------------- layouts


def parse_cmip6(asset: Asset, info: AssetInfo) -> list[dict[str, str]]:
    """CMIP6: a DRS directory path (Pangeo's Zarr stores) or a DRS file name, or both."""
    parts = asset.relative.split("/")
    facets: dict[str, str] = {}
    directories = parts if asset.format == "zarr" else parts[:-1]
    drs = directories[-len(CMIP6_DRS) :]
    if len(drs) == len(CMIP6_DRS) and all(
        re.fullmatch(pattern, value) for (_, pattern), value in zip(CMIP6_DRS, drs, strict=True)
    ):
        facets = dict(zip((name for name, _ in CMIP6_DRS), drs, strict=True))
    named = CMIP6_NAME.match(asset.stem)
    if named:
        from_name = {k: v for k, v in named.groupdict().items() if v is not None}
        clash = {k: (facets[k], v) for k, v in from_name.items() if k in facets and facets[k] != v}
        if clash:
            raise LayoutError(f"its CMIP6 file name and DRS directories disagree on {clash}")
        facets = {**from_name, **facets}
    if not facets:
        raise NotThisLayout("neither a CMIP6 DRS path nor a CMIP6 file name")
    for key in ("activity_id", "institution_id"):
        facets.setdefault(key, str(info.attrs.get(key, NONE)))
    variable = facets["variable_id"]
    if variable not in info.variables:
        raise LayoutError(
            f"its CMIP6 DRS names variable {variable!r} but it holds {sorted(info.variables)}"
        )
    return [
        {
            "project": "CMIP6",
            **facets,
            "frequency": info.frequency or str(info.attrs.get("frequency", NONE)),
            "version": facets.get("version", NONE),
            "time_range": info.time_range or facets.get("time_range", NONE),
        }
    ]


def parse_cordex(asset: Asset, info: AssetInfo) -> list[dict[str, str]]:
    """CORDEX: a DRS file name (CORDEX-CMIP5, or CORDEX-CMIP6 with the institution apart)."""
    named = CORDEX6_NAME.match(asset.stem) or CORDEX_NAME.match(asset.stem)
    if not named:
        raise NotThisLayout("not a CORDEX DRS file name")
    facets = {k: v for k, v in named.groupdict().items() if v is not None}
    if "rcm" in facets:  # CORDEX-CMIP5 joins institute and model: "CLMcom-CCLM4-8-17"
        facets["institution_id"], facets["source_id"] = _split_rcm(
            facets.pop("rcm"), info.attrs, asset.relative.split("/")[:-1]
        )
    variable = facets["variable_id"]
    if variable not in info.variables:
        raise LayoutError(
            f"its CORDEX file name names variable {variable!r} but it holds "
            f"{sorted(info.variables)}"
        )
    return [
        {
            "project": "CORDEX",
            "activity_id": "DD",
            **facets,
            "frequency": facets["frequency"],
            "version": NONE,
            "time_range": info.time_range or facets.get("time_range", NONE),
        }
    ]


def _split_rcm(rcm: str, attrs: Mapping[str, Any], directories: list[str]) -> tuple[str, str]:
    """(institution, model) of a CORDEX-CMIP5 RCM name, from the attributes or the DRS path.

    ESGF's files repeat the institute in the model (``institute_id = "CLMcom"``,
    ``model_id = "CLMcom-CCLM4-8-17"``, as in the file name); others give the model
    alone (``model_id = "CCLM4-8-17"``). Either way the model is what follows the
    institute: ``("CLMcom", "CCLM4-8-17")``.
    """
    for inst_key, model_key in (("institute_id", "model_id"), ("institution_id", "source_id")):
        institution, model = str(attrs.get(inst_key) or ""), str(attrs.get(model_key) or "")
        prefix = f"{institution}-"
        if institution and model and rcm in (model, prefix + model) and rcm.startswith(prefix):
            return institution, rcm[len(prefix) :]
    for directory in directories:  # CORDEX DRS: .../<domain>/<institution>/<gcm>/...
        if rcm.startswith(f"{directory}-"):
            return directory, rcm[len(directory) + 1 :]
    return NONE, rcm


def parse_ecmwf(asset: Asset, info: AssetInfo) -> list[dict[str, str]]:
    """ECMWF reanalysis fields: CDS NetCDF short names (t2m, tp…) or ARCO-ERA5 long names.

    Every data variable on the time axis becomes a row (the names as in the
    file: they are what a run catalog's ``variables`` map). The reanalysis is
    ERA5 unless ``facets`` say otherwise (ERA-20C and ERA5 share short names).
    """
    known = sorted(set(info.variables) & ECMWF_NAMES)
    if not known:
        raise NotThisLayout(
            f"its variables {sorted(info.variables)[:8]} are not ECMWF short names (t2m, tp…)"
        )
    if info.time_dim is None:
        raise LayoutError(f"holds ECMWF fields {known} but has no time axis")
    if info.members > 1:
        raise LayoutError(
            f"holds {info.members} ensemble members along 'number'; keep one member per file"
        )
    member = 1 if info.member_number is None else info.member_number + 1
    return [
        {
            "project": "reanalysis",
            "activity_id": "reanalysis",
            "institution_id": "ECMWF",
            "source_id": "ERA5",
            "experiment_id": "reanalysis",
            "member_id": f"r{member}",
            "frequency": info.frequency or NONE,
            "variable_id": name,
            "version": NONE,
            "time_range": info.time_range or NONE,
        }
        for name, dims in info.variables.items()
        if info.time_dim in dims
    ]


#: Parsers in the order they are tried: path-based layouts first, then attributes.
PARSERS: tuple[tuple[str, Callable[[Asset, AssetInfo], list[dict[str, str]]]], ...] = (
    ("cmip6", parse_cmip6),
    ("cordex", parse_cordex),
    ("ecmwf", parse_ecmwf),
)


def parse_asset(asset: Asset, info: AssetInfo) -> tuple[str, list[dict[str, str]]]:
    """(layout, rows) of an asset, or LayoutError naming what every parser found."""
    reasons = []
    for name, parser in PARSERS:
        try:
            return name, parser(asset, info)
        except NotThisLayout as exc:
            reasons.append(str(exc))
    raise LayoutError("no known layout: " + "; ".join(reasons))


# --------------------------------------------------------------------------- the collection


def build_collection(
    url: str,
    out: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    facets: Mapping[str, str] | None = None,
    out_storage_options: Mapping[str, Any] | None = None,
) -> BuildResult:
    """Scan ``url`` and write the collection ``out`` (JSON) with its CSV beside it.

    Parameters
    ----------
    url
        Folder or fsspec URL holding NetCDF files and Zarr stores, at any depth.
    out
        Collection JSON to write (path or URL); the CSV gets the same name with ``.csv``.
    storage_options
        fsspec options to scan and read the assets.
    facets
        Values that replace parsed facets on every row (e.g. ``source_id: ERA-20C``
        for ERA-20C files, whose short names are ERA5's).
    out_storage_options
        fsspec options to write ``out``.

    Raises
    ------
    BuildError
        If the folder does not exist or no asset in it can be catalogued (the
        message lists why, file by file).
    """
    if not out.endswith(".json"):
        raise BuildError(f"{out}: the collection file must end in .json")
    csv_url = out[: -len(".json")] + ".csv"
    skipped_url = out[: -len(".json")] + ".skipped.csv"
    assets, skipped = find_assets(url, storage_options, exclude=(out, csv_url, skipped_url))
    rows: list[dict[str, str]] = []
    for asset in assets:
        try:
            info = read_info(asset, storage_options)
        except Exception as exc:  # any reader error: the file is reported, the build goes on
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "not a valid hdf5 file" in first.lower() or "signature" in first.lower():
                first = "not NetCDF-4/HDF5 (damaged, or another format)"
            kind = "NetCDF" if asset.format == "netcdf" else "a Zarr store"
            skipped.append(Skipped(asset.display, f"cannot be opened as {kind}: {first}"))
            continue
        try:
            _, parsed = parse_asset(asset, info)
        except LayoutError as exc:
            skipped.append(Skipped(asset.display, str(exc)))
            continue
        time_dim = info.time_dim or NONE
        rows += [
            {**row, **(facets or {}), "path": asset.url, "format": asset.format, "_dim": time_dim}
            for row in parsed
        ]
    if not rows:
        listing = "\n  ".join(f"{s.path}: {s.reason}" for s in skipped) or "(no files)"
        raise BuildError(f"{url}: nothing could be catalogued:\n  {listing}")
    frame = _frame(rows)
    time_dims = sorted(set(frame.pop("_dim")) - {NONE})
    _write(
        frame, out, csv_url, time_dims[0] if len(time_dims) == 1 else "time", out_storage_options
    )
    if skipped:
        _write_text(
            pd.DataFrame([vars(s) for s in skipped]).to_csv(index=False),
            skipped_url,
            out_storage_options,
        )
    intake_esm.esm_datastore(out, storage_options=dict(out_storage_options or {}))  # loads
    return BuildResult(
        json_url=out, csv_url=csv_url, skipped_url=skipped_url, frame=frame, skipped=skipped
    )


def _frame(rows: list[dict[str, str]]) -> pd.DataFrame:
    """Rows in the facet order; unused facets left out, missing ones ``none``."""
    frame = pd.DataFrame(rows)
    columns = [c for c in FACETS if c in frame.columns and (frame[c].fillna(NONE) != NONE).any()]
    extra = [c for c in frame.columns if c not in FACETS and c not in ("path", "format", "_dim")]
    frame = frame[[*columns, *extra, "path", "format", "_dim"]]
    frame[columns + extra] = frame[columns + extra].fillna(NONE).astype(str)
    return frame.sort_values(["path", "variable_id"], kind="stable").reset_index(drop=True)


def _write(
    frame: pd.DataFrame,
    out: str,
    csv_url: str,
    time_dim: str,
    storage_options: Mapping[str, Any] | None,
) -> None:
    _write_text(frame.to_csv(index=False), csv_url, storage_options)
    grouped = [c for c in frame.columns if c in FACETS and c not in NOT_GROUPED]
    collection = {
        "esmcat_version": "0.1.0",
        "id": Path(out).stem,
        "description": "built by cascadia-ensemble catalog build",
        # absolute: intake-esm resolves a relative catalog_file in a bucket as a local path
        "catalog_file": _uri(csv_url),
        "attributes": [
            {"column_name": c, "vocabulary": ""}
            for c in frame.columns
            if c not in ("path", "format")
        ],
        "assets": {"column_name": "path", "format_column_name": "format"},
        "aggregation_control": {
            "variable_column_name": "variable_id",
            "groupby_attrs": grouped,
            "aggregations": [
                {
                    "type": "join_existing",
                    "attribute_name": "time_range",
                    "options": {"dim": time_dim},
                }
            ],
        },
    }
    _write_text(json.dumps(collection, indent=2) + "\n", out, storage_options)


def _uri(url: str) -> str:
    return url if "://" in url else _file_uri(url)


def _write_text(text: str, url: str, storage_options: Mapping[str, Any] | None) -> None:
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    fs.makedirs(fs._parent(path), exist_ok=True)
    with fs.open(path, "w") as handle:
        handle.write(text)
