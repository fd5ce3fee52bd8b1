"""Deep temperature near the mooring from a gridded ocean product (an objective analysis).

Why: before the mooring record the deep background is unknown to a model driven by
the atmosphere; holding the record's first value leaves every hindcast day with the
record's warmth. An ocean objective analysis (EN4, Good et al. 2013; or an ocean
reanalysis such as ORAS5 or the CMEMS Mediterranean reanalysis) gives the water
mass's temperature at the mooring's depths back to 1900.
:mod:`cascadia.mooring.targets` anchors its slow changes on the record's background.

What a product must hold: one variable of sea water (potential) temperature with a
time axis, a vertical axis (``depth``, ``lev``, ``deptht``, ... in m or cm, positive
down or up) and latitude/longitude (1-D, or 2-D on a curvilinear ocean grid), in K or
°C. The files of a path's glob (EN4: one per month) are read one at a time, cut to
the cells within ``radius_km`` of the mooring, interpolated in depth to each target
depth and averaged with cos(latitude) weights over the cells that hold that depth.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from functools import lru_cache
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from cascadia.sources.predictors.grids import find_lat_lon
from cascadia.sources.predictors.units import convert_variable

__all__ = ["OceanAnalysisConfig", "OceanAnalysisError", "deep_temperature"]

#: Names of vertical coordinates when the attributes do not say (CMIP6, NEMO, EN4, ORAS5).
_VERTICAL_NAMES = ("depth", "lev", "deptht", "olevel", "z", "depth_below_sea")
#: Plausible sea water temperature at depth, °C.
_PLAUSIBLE = (-2.5, 35.0)
EARTH_RADIUS_KM = 6371.0


class OceanAnalysisError(ValueError):
    """An ocean product that cannot give the deep temperature (the file and what is wrong)."""


class OceanAnalysisConfig(BaseModel):
    """Where the deep temperature before the mooring record comes from.

    Attributes
    ----------
    path
        A file, a glob of files (EN4's monthly NetCDF) or a Zarr store; relative paths
        are resolved against the job file.
    variable
        The temperature variable (EN4 ``temperature``, CMIP6 ``thetao``, ORAS5
        ``votemper``).
    latitude, longitude
        The mooring (Lacaze-Duthiers, MOOSE).
    radius_km
        Cells whose centre lies within this distance are averaged (a 1-degree analysis
        has a few around a canyon).
    smooth_days
        Trailing mean (days) of the daily-interpolated series: the mooring background
        is a running quantile of the past year, so the two are compared alike.
    anchor_years
        The product's level is anchored on the record's first ``anchor_years`` (the
        decade nearest the hindcasts; later steps of the record, such as 2014's, do not
        shift it).
    min_overlap_years
        Of those, the years the product must also cover.
    storage_options
        fsspec options for a remote path.
    """

    model_config = ConfigDict(extra="forbid")

    path: str
    variable: str = "temperature"
    latitude: float = Field(42.43, ge=-90.0, le=90.0)
    longitude: float = Field(3.545, ge=-180.0, le=360.0)
    radius_km: float = Field(150.0, gt=0.0)
    smooth_days: int = Field(365, gt=0)
    anchor_years: float = Field(10.0, gt=0.0)
    min_overlap_years: float = Field(5.0, gt=0.0)
    storage_options: dict[str, Any] = Field(default_factory=dict)


def _files(cfg: OceanAnalysisConfig) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    fs, path = fsspec.core.url_to_fs(cfg.path, **cfg.storage_options)
    if _is_zarr(fs, path):
        if not fs.exists(path):
            raise OceanAnalysisError(f"ocean analysis {cfg.path}: no such Zarr store")
        return fs, [path.rstrip("/")]
    files = sorted(fs.glob(path)) if any(c in path for c in "*?[") else [path]
    files = [f for f in files if fs.isfile(f)]
    if not files:
        raise OceanAnalysisError(f"ocean analysis {cfg.path}: no file matches")
    return fs, files


def _is_zarr(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    """A Zarr store: named ``*.zarr``, or a folder with Zarr metadata (Pangeo's CMIP6
    ``zstore`` URLs end in the version, ``.../v20190308/``)."""
    path = path.rstrip("/")
    if path.endswith(".zarr"):
        return True
    if any(c in path for c in "*?["):
        return False
    return any(fs.exists(f"{path}/{name}") for name in (".zmetadata", ".zgroup", "zarr.json"))


def _time_index(time: xr.DataArray, where: str) -> pd.DatetimeIndex:
    """Time stamps as standard-calendar days: a model calendar's (noleap, 360_day) dates are
    taken by year, month and day (the 30th of a 360-day February becomes the 28th/29th):
    monthly means only need the month."""
    if np.issubdtype(time.dtype, np.datetime64):
        return pd.DatetimeIndex(time.values)
    try:
        stamps = [(t.year, t.month, t.day) for t in time.values]
    except AttributeError:
        raise OceanAnalysisError(
            f"{where}: time is not decoded to dates (dtype {time.dtype})"
        ) from None
    return pd.DatetimeIndex(
        [pd.Timestamp(y, m, min(d, pd.Timestamp(y, m, 1).days_in_month)) for y, m, d in stamps]
    )


def _is_time(coord: xr.DataArray) -> bool:
    """Decoded dates: numpy datetimes, or cftime dates of a model calendar."""
    if np.issubdtype(coord.dtype, np.datetime64):
        return True
    return coord.dtype == object and coord.size > 0 and hasattr(coord.values[0], "calendar")


def _vertical(da: xr.DataArray, where: str) -> Hashable:
    """The vertical dimension of ``da``: by CF attributes, else by common names."""
    for dim in da.dims:
        if dim not in da.coords:
            continue
        attrs = da[dim].attrs
        if attrs.get("axis") == "Z" or attrs.get("positive") in ("down", "up"):
            return dim
    for dim in da.dims:
        if str(dim).lower() in _VERTICAL_NAMES and dim in da.coords:
            return dim
    raise OceanAnalysisError(
        f"{where}: {da.name!r} has no vertical coordinate (dims {list(map(str, da.dims))}; "
        f"expected axis='Z', a 'positive' attribute or one of {_VERTICAL_NAMES})"
    )


@lru_cache(maxsize=32)
def _linear_units(units: str, target: str) -> tuple[float, float]:
    """``(scale, offset)`` with ``value_in_target = scale * value + offset`` (pint, once per
    unit: every file of a product carries the same one)."""
    probe = xr.DataArray(np.array([0.0, 1.0]), attrs={"units": units}, name="probe")
    zero, one = convert_variable(probe, target).values
    return float(one - zero), float(zero)


def _convert(values: np.ndarray, units: str, target: str, what: str, where: str) -> np.ndarray:
    try:
        scale, offset = _linear_units(units.strip(), target)
    except ValueError:
        raise OceanAnalysisError(
            f"{where}: {what} has units {units!r}, not convertible to {target}"
        ) from None
    return scale * values + offset


def _depth_metres(coord: xr.DataArray, where: str) -> np.ndarray:
    """Depths of a vertical coordinate in m, positive down (CESM's ``lev`` is in cm)."""
    units = str(coord.attrs.get("units", "m"))
    metres = _convert(coord.values.astype(np.float64), units, "m", f"{coord.name!r}", where)
    return np.abs(metres) if coord.attrs.get("positive") == "up" or (metres < 0).all() else metres


def _distance_km(lat: np.ndarray, lon: np.ndarray, cfg: OceanAnalysisConfig) -> np.ndarray:
    p1, p2 = np.radians(cfg.latitude), np.radians(lat)
    dlon = np.radians(lon - cfg.longitude)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _near_profiles(ds: xr.Dataset, cfg: OceanAnalysisConfig, where: str) -> xr.DataArray:
    """The variable at the cells near the mooring, dims ``(time, level, cell)``, °C, with
    ``depth_m`` (level) and ``weight`` (cell) coordinates."""
    if cfg.variable not in ds.data_vars:
        raise OceanAnalysisError(
            f"{where}: no variable {cfg.variable!r} (has {sorted(map(str, ds.data_vars))})"
        )
    da = ds[cfg.variable]
    try:
        lat_name, lon_name = find_lat_lon(ds)
    except ValueError as exc:
        raise OceanAnalysisError(f"{where}: {exc}") from None
    z = _vertical(da, where)
    time = next((d for d in da.dims if d in da.coords and _is_time(da[d])), None)
    if time is None:
        raise OceanAnalysisError(f"{where}: {cfg.variable!r} has no decoded time axis")
    lat, lon = ds[lat_name], ds[lon_name]
    if lat.ndim == 1 and lon.ndim == 1:
        horizontal = [lat.dims[0], lon.dims[0]]
        lon2, lat2 = np.meshgrid(lon.values, lat.values)
    else:
        horizontal = list(lat.dims)
        lat2, lon2 = lat.values, lon.transpose(*horizontal).values
    flat_lat = np.asarray(lat2, dtype=np.float64).ravel()
    flat_lon = ((np.asarray(lon2, dtype=np.float64).ravel() + 180.0) % 360.0) - 180.0
    near = np.flatnonzero(_distance_km(flat_lat, flat_lon, cfg) <= cfg.radius_km)
    if near.size == 0:
        raise OceanAnalysisError(
            f"{where}: no grid cell within {cfg.radius_km:g} km of "
            f"({cfg.latitude:g}N, {cfg.longitude:g}E)"
        )
    # read only the rectangle of cells around the mooring (a global CMIP6 store is GBs)
    rows, cols = np.unravel_index(near, lat2.shape)
    window = {
        horizontal[0]: slice(rows.min(), rows.max() + 1),
        horizontal[1]: slice(cols.min(), cols.max() + 1),
    }
    raw = da.isel(window).transpose(time, z, *horizontal).values
    inside = (rows - rows.min()) * raw.shape[3] + (cols - cols.min())
    cells = raw.reshape(*raw.shape[:2], -1)[:, :, inside]
    units = str(da.attrs.get("units", ""))
    if not units:
        raise OceanAnalysisError(f"{where}: {cfg.variable!r} has no units attribute")
    celsius = _convert(
        np.asarray(cells, dtype=np.float64), units, "degC", repr(cfg.variable), where
    )
    out = xr.DataArray(
        celsius,
        dims=("time", "level", "cell"),
        coords={
            "time": _time_index(da[time], where),
            "depth_m": ("level", _depth_metres(da[z], where)),
            "weight": ("cell", np.cos(np.radians(flat_lat[near]))),
        },
    )
    finite = out.values[np.isfinite(out.values)]
    if finite.size and (finite.min() < _PLAUSIBLE[0] or finite.max() > _PLAUSIBLE[1]):
        raise OceanAnalysisError(
            f"{where}: {cfg.variable!r} ranges {finite.min():.2f} to {finite.max():.2f} °C after "
            f"conversion from {da.attrs.get('units')!r}; expected {_PLAUSIBLE[0]} to "
            f"{_PLAUSIBLE[1]} °C (wrong units attribute?)"
        )
    return out


def _at_depths(profiles: xr.DataArray, depths: Sequence[float]) -> np.ndarray:
    """Cell-weighted mean at each target depth, (time, depth); a cell counts where its
    profile holds the levels on both sides of the depth."""
    z = profiles["depth_m"].values
    order = np.argsort(z)
    values = profiles.values[:, order, :]
    z = z[order]
    weight = profiles["weight"].values
    out = np.full((values.shape[0], len(depths)), np.nan)
    for j, depth in enumerate(depths):
        upper = np.searchsorted(z, depth, side="right") - 1
        if upper < 0 or (upper >= z.size - 1 and z[-1] != depth):
            continue
        lower = min(upper + 1, z.size - 1)
        frac = 0.0 if lower == upper else (depth - z[upper]) / (z[lower] - z[upper])
        at = values[:, upper, :] * (1 - frac) + values[:, lower, :] * frac
        w = np.where(np.isfinite(at), weight[None, :], 0.0)
        with np.errstate(invalid="ignore"):
            out[:, j] = np.nansum(at * w, axis=1) / w.sum(axis=1)
    return out


def deep_temperature(cfg: OceanAnalysisConfig, depths: Sequence[float]) -> pd.DataFrame:
    """The product's temperature (°C) at each depth near the mooring, one row per time step.

    Columns are the depths (float); rows the product's own time stamps (EN4: mid-month),
    sorted. Raises :class:`OceanAnalysisError` naming the file (and variable, depth or
    unit) when a file cannot be read, lacks what is needed, holds no cell near the
    mooring at a depth, or when two files hold the same time step.
    """
    fs, files = _files(cfg)
    frames = []
    for path in files:
        where = f"ocean analysis {fs.unstrip_protocol(path)}"
        try:
            if _is_zarr(fs, path):
                ds = xr.open_zarr(fs.get_mapper(path), decode_timedelta=False)
                profiles = _near_profiles(ds, cfg, where)
            elif "file" in fs.protocol:
                # netCDF4 reads NetCDF-3 too, and opens a small file 3x faster than h5netcdf
                with xr.open_dataset(path, engine="netcdf4") as ds:
                    profiles = _near_profiles(ds, cfg, where)
            else:
                with fs.open(path) as handle:
                    classic = handle.read(3) == b"CDF"  # NetCDF-3: scipy reads file objects
                    handle.seek(0)
                    engine = "scipy" if classic else "h5netcdf"
                    with xr.open_dataset(handle, engine=engine) as ds:
                        profiles = _near_profiles(ds, cfg, where)
        except OceanAnalysisError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise OceanAnalysisError(f"{where}: cannot be read ({exc})") from None
        values = _at_depths(profiles, depths)
        frames.append(pd.DataFrame(values, index=profiles["time"].values, columns=list(depths)))
    table = pd.concat(frames).sort_index()
    repeated = table.index[table.index.duplicated()]
    if repeated.size:
        raise OceanAnalysisError(
            f"ocean analysis {cfg.path}: time {repeated[0]} is in more than one file"
        )
    for depth in depths:
        if not np.isfinite(table[depth]).any():
            raise OceanAnalysisError(
                f"ocean analysis {cfg.path}: no cell within {cfg.radius_km:g} km of the "
                f"mooring holds {cfg.variable!r} at {depth:g} m"
            )
    return table
