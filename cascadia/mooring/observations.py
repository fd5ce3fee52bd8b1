"""Mooring observations: hourly canyon temperature → quality-controlled daily means.

The targets of the deep ensemble are daily mean temperatures at 500 m and 1000 m in
the Lacaze-Duthiers canyon.  The mooring record arrives as an OceanSITES-style CF
NetCDF (``TEMP(TIME, DEPTH)`` with ``TEMP_QC`` flags) or as a long-format CSV
(``time,depth,TEMP,TEMP_QC``).  This module reads either, keeps only samples whose
QC flag is trusted, removes unflagged spikes with a robust rule, averages to UTC
days with a minimum-coverage rule and reports everything it removed, so that a
thesis chapter can state exactly what went into the targets.

Processing order (each step is counted in the :class:`ObservationReport`):

1. *missing*: fill values (``_FillValue`` or any of ``fill_values``) and NaN;
2. *QC-rejected*: a value whose flag is not in ``good_flags`` (OceanSITES reference
   table 2 and Argo both use 1 = good, 2 = probably good);
3. *out of range*: outside ``valid_range`` (°C), a guard against undeclared fill
   values such as 99999 written as text in a CSV;
4. *spike-removed*: see :class:`ObservationConfig` (``spike_*`` fields);
5. *daily mean*: arithmetic mean of the remaining samples of each UTC day, kept only
   when they cover at least ``min_daily_coverage`` of the day.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DepthReport",
    "Gap",
    "MooringSeries",
    "ObservationConfig",
    "ObservationError",
    "ObservationReport",
    "load_mooring",
]

#: Consistency constant turning a median absolute deviation into a Gaussian σ.
MAD_TO_SIGMA = 1.4826

_CELSIUS_UNITS = {
    "degree_celsius",
    "degrees_celsius",
    "degree_c",
    "degrees_c",
    "degc",
    "deg_c",
    "celsius",
    "°c",
    "c",
    "degree celsius",
    "degrees celsius",
}
_KELVIN_UNITS = {"k", "kelvin", "degree_kelvin", "degrees_kelvin"}
_TIME_NAMES = ("time", "juld", "date", "datetime", "timestamp", "t")
_DEPTH_NAMES = ("depth", "deph", "nominal_depth", "sensor_depth", "z")
_NETCDF_SUFFIXES = (".nc", ".nc4", ".cdf", ".netcdf", ".h5", ".hdf5")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".txt", ".tsv")


class ObservationError(ValueError):
    """A mooring file cannot be turned into the requested daily series.

    The message always names the file and says what was expected and what was found,
    because the person reading it usually owns the file and must fix the config.
    """


class ObservationConfig(BaseModel):
    """Where the mooring record is and how to quality-control it.

    Attributes
    ----------
    path
        Local path or fsspec URL (``s3://``, ``gs://``, ``https://``…) of the file.
    format
        ``"netcdf"``, ``"csv"`` or ``"auto"`` (from the suffix, else sniffed).
    variable
        Temperature variable (NetCDF) or column (CSV) name.
    qc_variable
        QC flag variable/column; ``None`` when the file carries no flags (then every
        non-missing sample is trusted and only the range and spike rules apply).
    time_name, depth_name
        Time and depth coordinate/column names; ``None`` detects them from CF
        ``axis``/``standard_name`` attributes or the usual names (``TIME``, ``time``,
        ``DEPTH``, ``depth``, ``DEPH``…).  The depth may be a dimension coordinate, a
        variable along the depth dimension, a ``(time, depth)`` variable of measured
        depths (its median is used) or a scalar for a single-instrument file.
    depths
        Nominal depths wanted (m, positive down); the output ``depth`` coordinate
        holds exactly these values.
    depth_tolerance_m
        How far (m) the file's nominal depth may be from a wanted depth; moorings are
        deployed to ±10–20 m of their nominal depth.
    good_flags
        Trusted QC flag values.  OceanSITES/Argo: 1 good, 2 probably good.  Add 0
        ("no QC performed") for raw files you have checked yourself.
    units
        Temperature units when the file does not say (``None``: read the ``units``
        attribute, and assume °C when there is none).  Kelvin is converted.
    fill_values
        Extra sentinel values meaning "missing" (text CSVs keep 99999 literally).
    valid_range
        Physically possible temperatures (°C); values outside are rejected.
    spike_n_mad
        Spike rule: a sample deviating from the centred rolling median over
        ``spike_window_hours`` by more than ``spike_n_mad`` robust standard deviations
        (1.4826 × the rolling median absolute deviation over the same window, floored
        at ``spike_min_scale`` °C) is a spike candidate.  ``None`` disables the rule.
        The median follows genuine steps (a cascading front passes a sensor within
        hours), so steps are not flagged; 6 σ keeps the false-alarm rate on Gaussian
        noise below 1e-8 per sample.
    spike_window_hours
        Window (h) of the rolling median and MAD: ~1 day spans the tidal and inertial
        (~17.7 h at 42.4°N) oscillations, so they are part of the local scale.
    spike_min_scale
        Floor (°C) of the robust σ, so that an exceptionally quiet day (σ of a few
        thousandths of a degree) does not turn ordinary 0.1 °C wiggles into spikes.
    spike_max_hours
        Only runs of consecutive candidates lasting at most this long (h) are removed:
        instrument glitches last one or two samples, whereas a cold cascading pulse
        lasts hours to days and must be kept even when it departs abruptly from the
        median.
    min_daily_coverage
        Minimum fraction of a day's expected samples that must be valid for the daily
        mean to be kept; below it a mean would be biased by the tidal/diurnal phase
        of the hours that remain.
    sampling_interval_hours
        Nominal sampling interval (h); ``None`` infers it from the median time step.
    long_gap_hours
        Gaps in the valid data at least this long (h) are listed in the report.
    storage_options
        Passed to fsspec for remote paths (credentials, anonymous access…).
    """

    model_config = ConfigDict(extra="forbid")

    path: str
    format: Literal["auto", "netcdf", "csv"] = "auto"
    variable: str = "TEMP"
    qc_variable: str | None = "TEMP_QC"
    time_name: str | None = None
    depth_name: str | None = None
    depths: list[float] = Field(default_factory=lambda: [500.0, 1000.0], min_length=1)
    depth_tolerance_m: float = Field(default=25.0, ge=0.0)
    good_flags: list[int] = Field(default_factory=lambda: [1, 2], min_length=1)
    units: str | None = None
    fill_values: list[float] = Field(default_factory=lambda: [99999.0, 999999.0, -99999.0])
    valid_range: tuple[float, float] = (-2.5, 40.0)
    spike_n_mad: float | None = Field(default=6.0, gt=0.0)
    spike_window_hours: float = Field(default=25.0, gt=0.0)
    spike_min_scale: float = Field(default=0.05, ge=0.0)
    spike_max_hours: float = Field(default=3.0, gt=0.0)
    min_daily_coverage: float = Field(default=0.75, gt=0.0, le=1.0)
    sampling_interval_hours: float | None = Field(default=None, gt=0.0)
    long_gap_hours: float = Field(default=48.0, gt=0.0)
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("depths")
    @classmethod
    def _distinct_depths(cls, value: list[float]) -> list[float]:
        if len(set(value)) != len(value):
            raise ValueError(f"depths must be distinct, got {value}")
        return [float(v) for v in value]

    @model_validator(mode="after")
    def _check_range(self) -> ObservationConfig:
        if self.valid_range[0] >= self.valid_range[1]:
            raise ValueError(f"valid_range must be (low, high), got {self.valid_range}")
        return self


#: Position of the Lacaze-Duthiers canyon mooring (degrees north, degrees east), as the
#: twin world places it (cascadia/twin/ocean.py ``MOORING_LAT``/``MOORING_LON``; the twin
#: may import only itself, so the value is repeated there): the results store's scalar
#: lat/lon coordinates.
MOORING_LATITUDE, MOORING_LONGITUDE = 42.43, 3.545


@dataclass(frozen=True)
class Gap:
    """A stretch without valid data at one depth.

    Attributes
    ----------
    depth
        Nominal depth (m).
    start, end
        First and last missing sample times (UTC).
    hours
        Gap length (h).
    """

    depth: float
    start: pd.Timestamp
    end: pd.Timestamp
    hours: float


@dataclass(frozen=True)
class DepthReport:
    """What happened to the samples of one depth, in processing order.

    Attributes
    ----------
    depth
        Nominal (requested) depth (m).
    source_depth
        Depth (m) of the matching series in the file.
    n_samples
        Time steps in the file.
    n_missing
        Samples missing (fill value / NaN / absent CSV row).
    n_qc_rejected
        Non-missing samples with a flag not in ``good_flags``.
    n_out_of_range
        Trusted samples outside ``valid_range``.
    n_spikes_removed
        Samples removed by the spike rule.
    n_valid
        Samples that went into daily means.
    n_days_valid
        Days with a daily mean.
    n_days_dropped_coverage
        Days with some valid samples but less than ``min_daily_coverage``.
    dropped_days
        Those days (UTC midnight).
    qc_flag_counts
        Occurrences of each QC flag among non-missing samples.
    """

    depth: float
    source_depth: float
    n_samples: int
    n_missing: int
    n_qc_rejected: int
    n_out_of_range: int
    n_spikes_removed: int
    n_valid: int
    n_days_valid: int
    n_days_dropped_coverage: int
    dropped_days: tuple[pd.Timestamp, ...] = ()
    qc_flag_counts: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ObservationReport:
    """Counts of everything removed on the way from the file to daily means."""

    path: str
    format: str
    sampling_interval_hours: float
    depths: tuple[DepthReport, ...]
    long_gaps: tuple[Gap, ...]

    @property
    def n_qc_rejected(self) -> int:
        """Samples rejected by QC flag, all depths."""
        return sum(d.n_qc_rejected for d in self.depths)

    @property
    def n_spikes_removed(self) -> int:
        """Samples removed as spikes, all depths."""
        return sum(d.n_spikes_removed for d in self.depths)

    @property
    def n_days_dropped_coverage(self) -> int:
        """Depth-days dropped for insufficient coverage, all depths."""
        return sum(d.n_days_dropped_coverage for d in self.depths)

    def depth(self, depth: float) -> DepthReport:
        """Return the report of one nominal depth (m)."""
        for rep in self.depths:
            if rep.depth == float(depth):
                return rep
        raise KeyError(f"no report for depth {depth} m; have {[d.depth for d in self.depths]}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (timestamps as ISO strings) for JSON/YAML provenance."""

        def _clean(obj: Any) -> Any:
            if isinstance(obj, pd.Timestamp):
                return obj.isoformat()
            if isinstance(obj, dict):
                return {k: _clean(v) for k, v in obj.items()}
            if isinstance(obj, list | tuple):
                return [_clean(v) for v in obj]
            return obj

        out = _clean(asdict(self))
        out.update(
            n_qc_rejected=self.n_qc_rejected,
            n_spikes_removed=self.n_spikes_removed,
            n_days_dropped_coverage=self.n_days_dropped_coverage,
        )
        return out

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        lines = [f"{self.path} ({self.format}, sampling {self.sampling_interval_hours:g} h)"]
        for d in self.depths:
            lines.append(
                f"  {d.depth:g} m (file {d.source_depth:g} m): {d.n_samples} samples, "
                f"{d.n_missing} missing, {d.n_qc_rejected} QC-rejected, "
                f"{d.n_out_of_range} out of range, {d.n_spikes_removed} spikes; "
                f"{d.n_days_valid} days kept, {d.n_days_dropped_coverage} dropped for coverage"
            )
        for g in self.long_gaps:
            lines.append(f"  gap at {g.depth:g} m: {g.start} → {g.end} ({g.hours:g} h)")
        return "\n".join(lines)


@dataclass(frozen=True)
class MooringSeries:
    """Daily mooring targets and the report of how they were made.

    Attributes
    ----------
    data
        Dataset with dims ``(time, depth)``: ``temperature`` (degree_Celsius, daily
        mean, NaN where dropped) and ``n_valid_hours`` (h of valid data in the day);
        ``time`` is UTC midnight starting each day, ``depth`` the requested depths.
    report
        What was removed, and the long gaps.
    """

    data: xr.Dataset
    report: ObservationReport

    @property
    def temperature(self) -> xr.DataArray:
        """Daily mean temperature (degree_Celsius), dims ``(time, depth)``."""
        return self.data["temperature"]


# --------------------------------------------------------------------------- reading


@dataclass
class _Raw:
    """Samples on a sorted, unique UTC time axis, columns in requested-depth order."""

    times: pd.DatetimeIndex
    temp: np.ndarray  # (time, depth) float64, °C
    qc: np.ndarray | None  # (time, depth) int64, -1 where no flag
    source_depths: list[float]
    attrs: dict[str, Any]


def _is_local(path: str) -> bool:
    return fsspec.utils.get_protocol(path) in ("file", "local")


def _local_path(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _resolve_format(cfg: ObservationConfig) -> Literal["netcdf", "csv"]:
    if cfg.format != "auto":
        return cfg.format
    lower = cfg.path.lower()
    if lower.endswith(_NETCDF_SUFFIXES):
        return "netcdf"
    if lower.endswith(_CSV_SUFFIXES):
        return "csv"
    try:
        with fsspec.open(cfg.path, "rb", **cfg.storage_options) as f:
            magic = f.read(8)
    except FileNotFoundError as err:
        raise ObservationError(f"{cfg.path}: file not found") from err
    except Exception as err:
        raise ObservationError(
            f"{cfg.path}: unreadable file ({type(err).__name__}: {err})"
        ) from err
    if magic.startswith((b"CDF", b"\x89HDF")):
        return "netcdf"
    return "csv"


def _open_netcdf(cfg: ObservationConfig) -> xr.Dataset:
    """Open and load a NetCDF file (local or fsspec URL) fully into memory."""
    try:
        if _is_local(cfg.path):
            path = _local_path(cfg.path)
            if not Path(path).exists():
                raise FileNotFoundError(path)
            with xr.open_dataset(path, decode_timedelta=False) as ds:
                return ds.load()
        with fsspec.open(cfg.path, "rb", **cfg.storage_options) as f:
            payload = f.read()
        import netCDF4  # reads NetCDF-3 and NetCDF-4/HDF5 from memory alike

        nc = netCDF4.Dataset("in-memory.nc", memory=payload)
        with xr.open_dataset(xr.backends.NetCDF4DataStore(nc), decode_timedelta=False) as ds:
            return ds.load()
    except FileNotFoundError as err:
        raise ObservationError(f"{cfg.path}: file not found") from err
    except Exception as err:
        raise ObservationError(
            f"{cfg.path}: unreadable as NetCDF ({type(err).__name__}: {err}); expected a CF/"
            "OceanSITES NetCDF file (set format='csv' for a CSV file)"
        ) from err


def _to_utc_index(values: Any, path: str, name: str) -> pd.DatetimeIndex:
    """Decoded CF times → naive-UTC DatetimeIndex (ns)."""
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.datetime64):
        idx = pd.DatetimeIndex(arr)
    elif arr.dtype == object and arr.size and hasattr(arr.flat[0], "calendar"):
        try:
            idx = xr.CFTimeIndex(arr).to_datetimeindex(time_unit="ns")
        except Exception as err:
            raise ObservationError(
                f"{path}: time {name!r} uses calendar {arr.flat[0].calendar!r}; a mooring "
                "record is expected on the standard (gregorian) calendar"
            ) from err
    else:
        raise ObservationError(
            f"{path}: time {name!r} could not be decoded to dates (dtype {arr.dtype}); "
            "expected CF units such as 'days since 1950-01-01T00:00:00Z'"
        )
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.as_unit("ns")


def _match_depths(present: Sequence[float], cfg: ObservationConfig, what: str) -> list[int]:
    """Index into ``present`` of each requested depth, within the tolerance."""
    pres = np.asarray(present, dtype=float)
    shown = sorted({round(float(p), 2) for p in pres[np.isfinite(pres)]})
    out: list[int] = []
    for depth in cfg.depths:
        dist = np.abs(pres - depth)
        if not np.isfinite(dist).any() or np.nanmin(dist) > cfg.depth_tolerance_m:
            raise ObservationError(
                f"{cfg.path}: no {what} within {cfg.depth_tolerance_m:g} m of the requested "
                f"depth {depth:g} m; depths present: {shown} m (change ObservationConfig.depths "
                "or depth_tolerance_m)"
            )
        j = int(np.nanargmin(dist))
        if j in out:
            raise ObservationError(
                f"{cfg.path}: requested depths {cfg.depths} m map to the same series at "
                f"{pres[j]:g} m; reduce depth_tolerance_m"
            )
        out.append(j)
    return out


def _qc_to_int(values: np.ndarray) -> np.ndarray:
    """QC flags as int64, -1 where absent; accepts ints, floats (NaN) and chars ('1')."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        return np.where(np.isfinite(arr), arr, -1).astype(np.int64)
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    flat = []
    for v in arr.ravel():
        s = v.decode() if isinstance(v, bytes) else str(v)
        s = s.strip()
        flat.append(int(s) if s.lstrip("-").isdigit() else -1)
    return np.asarray(flat, dtype=np.int64).reshape(arr.shape)


def _names(ds: xr.Dataset) -> str:
    return ", ".join(sorted(str(n) for n in ds.variables))


def _find_time(ds: xr.Dataset, da: xr.DataArray, cfg: ObservationConfig) -> tuple[str, str]:
    """Return (time variable name, time dimension name of ``da``)."""
    if cfg.time_name is not None:
        name = cfg.time_name
        if name not in ds.variables:
            raise ObservationError(
                f"{cfg.path}: time coordinate {name!r} not found; variable {cfg.variable!r} has "
                f"dims {list(da.dims)} and the file has variables: {_names(ds)}"
            )
        tdims = ds[name].dims
        if len(tdims) != 1 or tdims[0] not in da.dims:
            raise ObservationError(
                f"{cfg.path}: time {name!r} has dims {list(tdims)}, expected one dimension of "
                f"{cfg.variable!r} {list(da.dims)}"
            )
        return str(name), str(tdims[0])
    for dim in da.dims:
        if dim in ds.variables:
            var = ds[dim]
            if (
                np.issubdtype(var.dtype, np.datetime64)
                or var.attrs.get("axis") == "T"
                or var.attrs.get("standard_name") == "time"
                or str(dim).lower() in _TIME_NAMES
            ):
                return str(dim), str(dim)
    for name, var in ds.variables.items():
        if var.ndim == 1 and var.dims[0] in da.dims and np.issubdtype(var.dtype, np.datetime64):
            return str(name), str(var.dims[0])
    raise ObservationError(
        f"{cfg.path}: cannot find the time axis of {cfg.variable!r} (dims {list(da.dims)}); "
        f"set ObservationConfig.time_name to one of: {_names(ds)}"
    )


def _find_depth_var(
    ds: xr.Dataset, da: xr.DataArray, cfg: ObservationConfig
) -> xr.DataArray | None:
    if cfg.depth_name is not None:
        if cfg.depth_name not in ds.variables:
            raise ObservationError(
                f"{cfg.path}: depth {cfg.depth_name!r} not found; variable {cfg.variable!r} has "
                f"dims {list(da.dims)} and the file has variables: {_names(ds)}"
            )
        return ds[cfg.depth_name]
    candidates = []
    for name, var in ds.variables.items():
        if name == cfg.variable or not set(var.dims) <= set(da.dims):
            continue
        score = 0
        if var.attrs.get("axis") == "Z" or var.attrs.get("standard_name") == "depth":
            score = 2
        elif str(name).lower() in _DEPTH_NAMES:
            score = 1
        if score:
            candidates.append((score, str(name) in da.dims, str(name)))
    if candidates:
        return ds[max(candidates)[2]]
    for key in ("sensor_depth", "nominal_depth", "depth"):
        if key in da.attrs:
            return xr.DataArray(float(np.asarray(da.attrs[key]).ravel()[0]), name=key)
    return None


def _read_netcdf(cfg: ObservationConfig) -> _Raw:
    ds = _open_netcdf(cfg)
    if cfg.variable not in ds.variables:
        hint = [str(n) for n in ds.variables if str(n).lower() == cfg.variable.lower()]
        raise ObservationError(
            f"{cfg.path}: variable {cfg.variable!r} not found"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; the file has: {_names(ds)} (set ObservationConfig.variable)"
        )
    da = ds[cfg.variable]
    tname, tdim = _find_time(ds, da, cfg)
    times = _to_utc_index(ds[tname].values, cfg.path, tname)

    dvar = _find_depth_var(ds, da, cfg)
    if dvar is None:
        raise ObservationError(
            f"{cfg.path}: cannot find the depth of {cfg.variable!r} (dims {list(da.dims)}); set "
            f"ObservationConfig.depth_name to one of: {_names(ds)}"
        )
    other = [d for d in dvar.dims if d != tdim]
    if len(other) > 1 or (other and other[0] not in da.dims):
        raise ObservationError(
            f"{cfg.path}: depth {dvar.name!r} has dims {list(dvar.dims)}; expected a scalar, a "
            f"depth dimension of {cfg.variable!r} {list(da.dims)}, or (time, depth)"
        )
    ddim = str(other[0]) if other else None
    dvals = dvar.values.astype(float)
    if tdim in dvar.dims:  # measured depths varying in time: nominal = median
        axis = dvar.dims.index(tdim)
        dvals = np.nanmedian(dvals, axis=axis) if np.isfinite(dvals).any() else dvals.mean(axis)
    present = np.atleast_1d(dvals)

    extra = [d for d in da.dims if d not in (tdim, ddim)]
    for d in extra:
        if da.sizes[d] != 1:
            raise ObservationError(
                f"{cfg.path}: {cfg.variable!r} has an extra dimension {d!r} of size "
                f"{da.sizes[d]}; expected only time and depth (size-1 dims are dropped)"
            )

    def _2d(var: xr.DataArray) -> np.ndarray:
        var = var.isel({d: 0 for d in extra if d in var.dims})
        var = var.transpose(tdim, ddim) if ddim else var.expand_dims("_d", axis=-1)
        return np.asarray(var.values)

    idx = _match_depths(present, cfg, f"series of {cfg.variable!r}")
    temp = _2d(da).astype(np.float64)[:, idx]

    qc = None
    if cfg.qc_variable is not None:
        if cfg.qc_variable not in ds.variables:
            raise ObservationError(
                f"{cfg.path}: QC variable {cfg.qc_variable!r} not found; the file has: "
                f"{_names(ds)} (set ObservationConfig.qc_variable, or None for no QC flags)"
            )
        qvar = ds[cfg.qc_variable]
        if set(qvar.dims) != set(da.dims):
            raise ObservationError(
                f"{cfg.path}: QC variable {cfg.qc_variable!r} has dims {list(qvar.dims)}, "
                f"expected those of {cfg.variable!r}: {list(da.dims)}"
            )
        qc = _qc_to_int(_2d(qvar))[:, idx]

    attrs = {"source_units": cfg.units or da.attrs.get("units")}
    for key, names in (
        ("latitude", ("LATITUDE", "latitude", "lat")),
        ("longitude", ("LONGITUDE", "longitude", "lon")),
    ):
        for n in names:
            if n in ds.variables and ds[n].size == 1:
                attrs[key] = float(ds[n].values.ravel()[0])
                break
    for key in ("site_code", "platform_code", "title", "institution"):
        if key in ds.attrs:
            attrs[key] = ds.attrs[key]
    return _Raw(times, temp, qc, [float(present[j]) for j in idx], attrs)


def _pick_column(
    columns: Sequence[str], wanted: str | None, candidates: Sequence[str]
) -> str | None:
    if wanted is not None:
        return wanted if wanted in columns else None
    for c in columns:
        if c.strip().lower() in candidates:
            return c
    return None


def _read_csv(cfg: ObservationConfig) -> _Raw:
    try:
        if _is_local(cfg.path):
            df = pd.read_csv(_local_path(cfg.path), comment="#", skipinitialspace=True)
        else:
            df = pd.read_csv(
                cfg.path,
                comment="#",
                skipinitialspace=True,
                storage_options=cfg.storage_options or None,
            )
    except FileNotFoundError as err:
        raise ObservationError(f"{cfg.path}: file not found") from err
    except Exception as err:
        raise ObservationError(
            f"{cfg.path}: unreadable as CSV ({type(err).__name__}: {err}); expected a long-format "
            "CSV with columns time,depth,TEMP,TEMP_QC"
        ) from err
    df.columns = [str(c).strip() for c in df.columns]
    cols = list(df.columns)
    listed = ", ".join(cols)
    tcol = _pick_column(cols, cfg.time_name, _TIME_NAMES)
    if tcol is None:
        raise ObservationError(
            f"{cfg.path}: time column {cfg.time_name or 'time'!r} not found; columns are: "
            f"{listed} (set ObservationConfig.time_name)"
        )
    dcol = _pick_column(cols, cfg.depth_name, _DEPTH_NAMES)
    if dcol is None:
        raise ObservationError(
            f"{cfg.path}: depth column {cfg.depth_name or 'depth'!r} not found; columns are: "
            f"{listed} (set ObservationConfig.depth_name)"
        )
    if cfg.variable not in cols:
        raise ObservationError(
            f"{cfg.path}: variable column {cfg.variable!r} not found; columns are: {listed} "
            "(set ObservationConfig.variable)"
        )
    if cfg.qc_variable is not None and cfg.qc_variable not in cols:
        raise ObservationError(
            f"{cfg.path}: QC column {cfg.qc_variable!r} not found; columns are: {listed} (set "
            "ObservationConfig.qc_variable, or None for no QC flags)"
        )
    try:
        times = pd.to_datetime(df[tcol], utc=True, format="ISO8601").dt.tz_localize(None)
    except (ValueError, TypeError) as err:
        raise ObservationError(
            f"{cfg.path}: column {tcol!r} is not ISO 8601 times (first value "
            f"{df[tcol].iloc[0]!r}): {err}"
        ) from err
    depth = pd.to_numeric(df[dcol], errors="coerce").to_numpy(dtype=float)
    present = np.unique(depth[np.isfinite(depth)])
    _match_depths(present, cfg, "rows")  # raises with the depths present
    values = pd.to_numeric(df[cfg.variable], errors="coerce").to_numpy(dtype=float)
    qc_all = _qc_to_int(df[cfg.qc_variable].to_numpy()) if cfg.qc_variable else None

    series: list[tuple[pd.DatetimeIndex, np.ndarray, np.ndarray | None]] = []
    sources: list[float] = []
    for d in cfg.depths:
        sel = np.abs(depth - d) <= cfg.depth_tolerance_m
        nearest = present[np.argmin(np.abs(present - d))]
        others = [x for x in cfg.depths if x != d]
        # rows closer to another requested depth belong to that one
        for o in others:
            sel &= np.abs(depth - d) <= np.abs(depth - o)
        t = pd.DatetimeIndex(times[sel]).as_unit("ns")
        if t.has_duplicates:
            dup = t[t.duplicated()][0]
            raise ObservationError(
                f"{cfg.path}: duplicate rows for depth {d:g} m at {dup.isoformat()}; expected "
                "one row per time and depth"
            )
        series.append((t, values[sel], None if qc_all is None else qc_all[sel]))
        sources.append(float(np.median(depth[sel])) if sel.any() else float(nearest))

    union = series[0][0]
    for t, _, _ in series[1:]:
        union = union.union(t)
    union = union.sort_values()
    temp = np.full((len(union), len(series)), np.nan)
    qc = None if qc_all is None else np.full((len(union), len(series)), -1, dtype=np.int64)
    for j, (t, v, q) in enumerate(series):
        pos = union.get_indexer(t)
        temp[pos, j] = v
        if qc is not None and q is not None:
            qc[pos, j] = q
    return _Raw(union, temp, qc, sources, {"source_units": cfg.units})


# ------------------------------------------------------------------------ processing


def _to_celsius(temp: np.ndarray, units: str | None, path: str, variable: str) -> np.ndarray:
    if units is None:
        return temp
    u = units.strip().lower()
    if u in _CELSIUS_UNITS:
        return temp
    if u in _KELVIN_UNITS:
        return temp - 273.15
    raise ObservationError(
        f"{path}: {variable!r} has units {units!r}; expected degree_Celsius or K (set "
        "ObservationConfig.units if the attribute is wrong)"
    )


def _spike_mask(series: pd.Series, cfg: ObservationConfig, dt: pd.Timedelta) -> np.ndarray:
    """Boolean mask (aligned with ``series``, finite values only) of spikes to remove.

    Rolling statistics use a time-based centred window, so irregular sampling and
    gaps are handled; points with fewer than half a window of neighbours are kept.
    """
    n = len(series)
    if cfg.spike_n_mad is None or n < 3:
        return np.zeros(n, dtype=bool)
    window = pd.Timedelta(hours=cfg.spike_window_hours)
    min_periods = max(3, math.ceil(0.5 * (window / dt)))
    med = series.rolling(window, center=True, min_periods=min_periods).median()
    resid = series - med
    mad = resid.abs().rolling(window, center=True, min_periods=min_periods).median()
    scale = np.maximum(MAD_TO_SIGMA * mad.to_numpy(), cfg.spike_min_scale)
    with np.errstate(invalid="ignore"):
        cand = np.abs(resid.to_numpy()) > cfg.spike_n_mad * scale
    cand &= np.isfinite(scale) & np.isfinite(resid.to_numpy())
    if not cand.any():
        return cand
    # keep only short runs of consecutive candidates: long excursions are physical
    times = series.index
    edges = np.diff(np.concatenate([[0], cand.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    out = np.zeros(n, dtype=bool)
    max_len = pd.Timedelta(hours=cfg.spike_max_hours)
    for s, e in zip(starts, ends, strict=True):
        if times[e] - times[s] + dt <= max_len:
            out[s : e + 1] = True
    return out


def _gaps(
    times: pd.DatetimeIndex, valid: np.ndarray, dt: pd.Timedelta, depth: float, min_hours: float
) -> list[Gap]:
    """Stretches of the file's time span without valid data, at least ``min_hours`` long."""
    tv = times[valid]
    hour = pd.Timedelta(hours=1)
    if len(tv) == 0:
        return [Gap(depth, times[0], times[-1], (times[-1] - times[0] + dt) / hour)]
    # virtual valid samples just outside the record make leading/trailing gaps regular
    edges = pd.DatetimeIndex([times[0] - dt]).append(tv).append(pd.DatetimeIndex([times[-1] + dt]))
    step = edges[1:] - edges[:-1]
    out = []
    for i in np.flatnonzero(step > dt * 1.5):
        hours = (step[i] - dt) / hour
        if hours >= min_hours:
            out.append(Gap(depth, edges[i] + dt, edges[i + 1] - dt, float(hours)))
    return out


def _process(raw: _Raw, cfg: ObservationConfig, fmt: str) -> MooringSeries:
    path = cfg.path
    times = raw.times
    if len(times) == 0:
        raise ObservationError(f"{path}: no time steps in the file")
    order = np.argsort(times.asi8, kind="stable")
    if not (order == np.arange(len(order))).all():
        times, raw.temp = times[order], raw.temp[order]
        raw.qc = None if raw.qc is None else raw.qc[order]
    if times.has_duplicates:
        raise ObservationError(
            f"{path}: duplicated time {times[times.duplicated()][0].isoformat()}; expected one "
            "sample per time step"
        )
    if cfg.sampling_interval_hours is not None:
        dt = pd.Timedelta(hours=cfg.sampling_interval_hours)
    elif len(times) > 1:
        dt = pd.Timedelta(np.median(np.diff(times.asi8)), unit="ns")
    else:
        dt = pd.Timedelta(hours=1)
    if dt > pd.Timedelta(days=1):
        raise ObservationError(
            f"{path}: sampling interval {dt} is longer than a day; expected hourly (or daily) data"
        )

    temp = _to_celsius(raw.temp, raw.attrs.get("source_units"), path, cfg.variable)
    for fill in cfg.fill_values:
        temp = np.where(np.isclose(raw.temp, fill), np.nan, temp)
    missing = ~np.isfinite(temp)
    qc_good = np.ones_like(missing) if raw.qc is None else np.isin(raw.qc, cfg.good_flags)
    qc_rejected = ~missing & ~qc_good
    x = np.where(qc_good & ~missing, temp, np.nan)
    lo, hi = cfg.valid_range
    with np.errstate(invalid="ignore"):
        out_of_range = np.isfinite(x) & ((x < lo) | (x > hi))
    x[out_of_range] = np.nan

    per_day = pd.Timedelta(days=1) / dt
    dt_hours = dt / pd.Timedelta(hours=1)
    day_index = pd.date_range(times[0].floor("D"), times[-1].floor("D"), freq="D", unit="ns")
    reports: list[DepthReport] = []
    gaps: list[Gap] = []
    means = np.full((len(day_index), len(cfg.depths)), np.nan)
    hours = np.zeros((len(day_index), len(cfg.depths)))
    for j, depth in enumerate(cfg.depths):
        col = x[:, j]
        flag_counts: dict[int, int] = {}
        if raw.qc is not None:
            flags, counts = np.unique(raw.qc[~missing[:, j], j], return_counts=True)
            flag_counts = {int(f): int(c) for f, c in zip(flags, counts, strict=True)}
        finite = np.isfinite(col)
        if not finite.any():
            raise ObservationError(
                f"{path}: no usable {cfg.variable!r} at {depth:g} m: all {len(col)} samples are "
                f"missing, flagged bad or out of range (QC flags of non-missing samples: "
                f"{flag_counts or 'none'}; good_flags={cfg.good_flags}, "
                f"valid_range={cfg.valid_range} °C)"
            )
        s = pd.Series(col[finite], index=times[finite])
        spikes_local = _spike_mask(s, cfg, dt)
        spikes = np.zeros(len(col), dtype=bool)
        spikes[np.flatnonzero(finite)[spikes_local]] = True
        col = np.where(spikes, np.nan, col)
        valid = np.isfinite(col)
        daily = pd.Series(col, index=times).resample("1D")
        mean = daily.mean().reindex(day_index)
        count = daily.count().reindex(day_index, fill_value=0)
        coverage = count.to_numpy() / per_day
        keep = coverage >= cfg.min_daily_coverage - 1e-9
        dropped = (count.to_numpy() > 0) & ~keep
        means[:, j] = np.where(keep, mean.to_numpy(), np.nan)
        hours[:, j] = count.to_numpy() * dt_hours
        gaps.extend(_gaps(times, valid, dt, depth, cfg.long_gap_hours))
        reports.append(
            DepthReport(
                depth=depth,
                source_depth=raw.source_depths[j],
                n_samples=len(col),
                n_missing=int(missing[:, j].sum()),
                n_qc_rejected=int(qc_rejected[:, j].sum()),
                n_out_of_range=int(out_of_range[:, j].sum()),
                n_spikes_removed=int(spikes.sum()),
                n_valid=int(valid.sum()),
                n_days_valid=int(keep.sum()),
                n_days_dropped_coverage=int(dropped.sum()),
                dropped_days=tuple(day_index[dropped]),
                qc_flag_counts=flag_counts,
            )
        )

    report = ObservationReport(
        path=path,
        format=fmt,
        sampling_interval_hours=float(dt_hours),
        depths=tuple(reports),
        long_gaps=tuple(gaps),
    )
    coords: dict[str, Any] = {
        "time": ("time", day_index, {"standard_name": "time", "long_name": "UTC day (start)"}),
        "depth": (
            "depth",
            np.asarray(cfg.depths, dtype=float),
            {"standard_name": "depth", "units": "m", "positive": "down", "axis": "Z"},
        ),
        "source_depth": (
            "depth",
            np.asarray(raw.source_depths, dtype=float),
            {"long_name": "nominal depth of the series in the source file", "units": "m"},
        ),
    }
    for key in ("latitude", "longitude"):
        if key in raw.attrs:
            units = "degrees_north" if key == "latitude" else "degrees_east"
            coords[key] = ((), raw.attrs[key], {"standard_name": key, "units": units})
    data = xr.Dataset(
        {
            "temperature": (
                ("time", "depth"),
                means,
                {
                    "standard_name": "sea_water_temperature",
                    "long_name": "daily mean sea water temperature",
                    "units": "degree_Celsius",
                    "cell_methods": "time: mean",
                    "comment": (
                        f"QC flags kept {cfg.good_flags}; spikes > {cfg.spike_n_mad} robust sigma "
                        f"from a {cfg.spike_window_hours:g} h running median removed; days with "
                        f"< {cfg.min_daily_coverage:.0%} valid coverage dropped"
                    ),
                },
            ),
            "n_valid_hours": (
                ("time", "depth"),
                hours,
                {"long_name": "hours of valid data in the day", "units": "h"},
            ),
        },
        coords=coords,
        attrs={
            "source": path,
            "source_format": fmt,
            **{
                k: v
                for k, v in raw.attrs.items()
                if k not in ("latitude", "longitude", "source_units") and v is not None
            },
        },
    )
    return MooringSeries(data=data, report=report)


def load_mooring(config: ObservationConfig | Mapping[str, Any]) -> MooringSeries:
    """Read a mooring file and return QC'd daily mean temperatures with a report.

    Parameters
    ----------
    config
        An :class:`ObservationConfig` or a mapping validated into one (e.g. a YAML
        section).

    Returns
    -------
    MooringSeries
        ``data`` with dims ``(time, depth)`` — ``temperature`` (degree_Celsius) and
        ``n_valid_hours`` (h) on UTC days — and the processing ``report``.

    Raises
    ------
    ObservationError
        Unreadable file, unknown variable/column names (the message lists what the file
        has), no series within the depth tolerance (lists the depths present), or a
        depth whose samples are all missing or flagged bad.
    """
    cfg = config if isinstance(config, ObservationConfig) else ObservationConfig(**config)
    fmt = _resolve_format(cfg)
    raw = _read_netcdf(cfg) if fmt == "netcdf" else _read_csv(cfg)
    return _process(raw, cfg, fmt)
