"""Sub-daily (hourly, 3-hourly, 6-hourly) to daily aggregation.

The model works on daily predictors. Which statistic turns a day of
sub-daily values into one number depends on the variable, and is data (the
:data:`DAILY_STATISTICS` table), not code branches. Days are calendar days
labelled at 00:00 of the time coordinate's own calendar (any cftime calendar
works, as ``resample(time="1D")`` does on a ``CFTimeIndex``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from cascadia.sources.predictors.units import time_step_seconds, wind_speed

__all__ = [
    "DAILY_STATISTICS",
    "floor_to_day",
    "monthly_to_daily",
    "one_time_chunk",
    "steps_per_day",
    "to_daily",
]

#: Median steps (days) that make a series monthly: 28 (February) to 31 days.
MONTHLY_STEP_DAYS = (27.5, 31.5)

#: Daily statistic per canonical variable. Means of instantaneous or
#: step-averaged states and fluxes; ``pr`` is a flux by then (kg m-2 s-1), so
#: its daily mean is the daily mean rate; ``sfcWind`` is the mean of sub-daily
#: speeds (never the speed of the mean wind).
DAILY_STATISTICS: dict[str, str] = {
    "tas": "mean",
    "tdps": "mean",
    "hurs": "mean",
    "huss": "mean",
    "pr": "mean",
    "psl": "mean",
    "ps": "mean",
    "uas": "mean",
    "vas": "mean",
    "sfcWind": "mean",
    "rsds": "mean",
    "rlds": "mean",
    "clt": "mean",
    "tos": "mean",
    "tasmax": "max",
    "tasmin": "min",
    "sfcWindmax": "max",
}

_ALLOWED = frozenset({"mean", "max", "min", "sum", "median"})
_DAY_SECONDS = 86400.0


def one_time_chunk(ds: xr.Dataset) -> xr.Dataset:
    """Every dask variable of ``ds`` in one chunk along ``time``.

    Why not ``ds.chunk({"time": -1})``: xarray names the new chunks by hashing every
    variable, the time index included, and a cftime index hashes by pickling each date
    (~0.8 s for 90 years); dask's own ``rechunk`` names them from the array's name.
    """
    return ds.assign(
        {
            name: da.copy(data=da.data.rechunk({da.get_axis_num("time"): -1}))
            for name, da in ds.data_vars.items()
            if da.chunks is not None and "time" in da.dims
        }
    )


def steps_per_day(time: xr.DataArray) -> float:
    """Number of time steps per day implied by the median sampling step.

    Parameters
    ----------
    time : xarray.DataArray
        1-D time coordinate (numpy datetime64 or cftime).

    Returns
    -------
    float
        ``86400 s / step``; 24 for hourly data, 1 for daily, below 1 for coarser.
    """
    return _DAY_SECONDS / time_step_seconds(time)


def monthly_to_daily(ds: xr.Dataset) -> xr.Dataset:
    """Daily values of monthly means, linear in time between the monthly stamps.

    Why: CMIP6 models without ``Oday`` publish sea surface temperature monthly
    (``Omon``) only; the model reads daily series. Each monthly mean is taken as the
    value at its own time stamp (CMIP stamps mid-month) and days in between are
    interpolated linearly, in the series' own calendar (``noleap``, ``360_day``), before
    the calendar conversion that every daily source goes through. Linear
    interpolation keeps every monthly value at its stamp and the seasonal cycle's
    phase; it damps a pure annual cycle by about 1 % (the triangle kernel of linear
    interpolation between samples already averaged over a month), which the bias
    adjustment against the daily reference then maps like any other bias; a
    mean-preserving (e.g. Taylor et al. 2000) scheme would need the whole series at
    once and overshoots at sharp month-to-month changes. Days before the first stamp
    and after the last one (half a month at each end) hold the nearest monthly
    value; a missing month leaves its days missing (a gap in the report), never filled.

    Parameters
    ----------
    ds : xarray.Dataset
        Monthly data (one value per month) with a ``time`` coordinate, any calendar.

    Returns
    -------
    xarray.Dataset
        Daily data from the first day of the first month to the last day of the last
        month, stamps at 00:00, same calendar, attributes kept.
    """
    index = ds.indexes["time"]
    cftime = isinstance(index, xr.CFTimeIndex)
    calendar = index.calendar if cftime else "standard"
    first, last = index[0], index[-1]
    months = xr.date_range(
        f"{last.year:04d}-{last.month:02d}-01",
        periods=2,
        freq="MS",
        calendar=calendar,
        use_cftime=cftime,
    )
    days = xr.date_range(
        f"{first.year:04d}-{first.month:02d}-01",
        months[1] - timedelta(days=1),
        freq="D",
        calendar=calendar,
        use_cftime=cftime,
    )
    timed = [name for name, da in ds.data_vars.items() if "time" in da.dims]
    sub = one_time_chunk(ds[timed])
    out = sub.interp(time=days, method="linear", kwargs={"fill_value": np.nan})
    target = xr.DataArray(days, dims="time", coords={"time": days})
    out = out.where(target >= first, sub.isel(time=0, drop=True))
    out = out.where(target <= last, sub.isel(time=-1, drop=True))
    for name in timed:
        methods = (ds[name].attrs.get("cell_methods", "") + " time: mean (monthly)").strip()
        out[name].attrs = {
            **ds[name].attrs,
            "cell_methods": methods,
            "comment": "monthly means interpolated linearly to daily values",
        }
    out.attrs = dict(ds.attrs)
    out["time"].attrs = dict(ds["time"].attrs)
    return out


def is_monthly(time: xr.DataArray) -> bool:
    """Whether a time coordinate steps by months (median step of 28 to 31 days)."""
    if time.size < 2:
        return False
    days = time_step_seconds(time) / _DAY_SECONDS
    return MONTHLY_STEP_DAYS[0] <= days <= MONTHLY_STEP_DAYS[1]


def floor_to_day(ds: xr.Dataset) -> xr.Dataset:
    """Put daily time stamps at 00:00 of their day.

    Why: daily CMIP files stamp days at 12:00, reanalyses at 00:00; mixing
    them would misalign series by a day after any reindexing.

    Parameters
    ----------
    ds : xarray.Dataset
        Daily data with a ``time`` coordinate (any calendar).

    Returns
    -------
    xarray.Dataset
        Same data, time stamps floored to the day.

    Raises
    ------
    ValueError
        If two time stamps fall on the same day.
    """
    index = ds.indexes["time"]
    floored = _floor_cftime(index) if isinstance(index, xr.CFTimeIndex) else index.floor("D")
    if floored.has_duplicates:
        raise ValueError("Several time steps fall on the same day; the data are not daily.")
    return ds.assign_coords(time=ds["time"].copy(data=floored))


def _floor_cftime(index: xr.CFTimeIndex) -> xr.CFTimeIndex:
    """``index.floor("D")`` through cftime's vectorised conversions: the same dates, 2-5x
    faster on a 150-year daily series (CFTimeIndex.floor loops over the dates in Python)."""
    import cftime

    units = "days since 1850-01-01"
    days = cftime.date2num(np.asarray(index), units, calendar=index.calendar)
    return xr.CFTimeIndex(cftime.num2date(np.floor(days), units, calendar=index.calendar))


def _statistic(name: str, table: Mapping[str, str]) -> str:
    try:
        stat = table[name]
    except KeyError:
        raise ValueError(
            f"No daily statistic for variable {name!r}; add it to the statistics table "
            f"(known: {sorted(table)})."
        ) from None
    if stat not in _ALLOWED:
        raise ValueError(f"Unknown daily statistic {stat!r} for {name!r}; use one of {_ALLOWED}.")
    return stat


def to_daily(
    ds: xr.Dataset,
    min_coverage: float = 0.75,
    statistics: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """Aggregate sub-daily data to daily values.

    Why: predictors are daily; each variable needs its own statistic, and a
    day with too few valid sub-daily steps must not pass for a full day.

    If ``sfcWind`` is absent but ``uas`` and ``vas`` are present, ``sfcWind``
    is computed from them at every sub-daily step before averaging, i.e. from
    whatever the inputs are (on the grid in
    :func:`cascadia.sources.predictors.canonical.standardise`, where speed is derived
    before the regional means). Already-daily data pass through with time
    stamps at 00:00; monthly data are interpolated to daily values
    (:func:`monthly_to_daily`). Everything stays lazy for dask inputs.

    Parameters
    ----------
    ds : xarray.Dataset
        Data with a ``time`` dimension, regular sub-daily or daily sampling,
        any calendar.
    min_coverage : float
        Minimum fraction (0–1] of the day's expected steps that must be valid
        (non-NaN) for the daily value to be kept; otherwise it is NaN.
    statistics : mapping, optional
        Variable name → statistic (``mean``, ``max``, ``min``, ``sum``,
        ``median``); defaults to :data:`DAILY_STATISTICS`.

    Returns
    -------
    xarray.Dataset
        Daily data, time stamps at 00:00, units and attributes kept.

    Raises
    ------
    ValueError
        If ``min_coverage`` is out of (0, 1], the sampling is coarser than daily
        or does not divide a day, or a variable has no statistic.
    """
    if not 0.0 < min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}.")
    table = DAILY_STATISTICS if statistics is None else statistics
    if "sfcWind" not in ds.data_vars and {"uas", "vas"} <= set(ds.data_vars):
        ds = ds.assign(sfcWind=wind_speed(ds["uas"], ds["vas"]))
    if is_monthly(ds["time"]):
        return monthly_to_daily(ds)
    per_day = steps_per_day(ds["time"]) if ds.sizes["time"] > 1 else 1.0
    if math.isclose(per_day, 1.0, rel_tol=1e-3):
        return floor_to_day(ds)
    if per_day < 1.0 or not math.isclose(per_day, round(per_day), rel_tol=1e-6):
        raise ValueError(
            f"Cannot aggregate a sampling of {per_day:.4g} steps per day to daily values."
        )
    needed = math.ceil(min_coverage * round(per_day) - 1e-9)

    timed = [name for name, da in ds.data_vars.items() if "time" in da.dims]
    whole_days = _whole_days(ds, round(per_day))
    out = {}
    for name in timed:
        da = ds[name]
        stat = _statistic(str(name), table)
        if whole_days:
            daily = _by_reshape(da, round(per_day), stat, needed)
        else:
            resampled = da.resample(time="1D")
            daily = getattr(resampled, stat)(keep_attrs=True)
            valid = da.notnull().resample(time="1D").sum()
            daily = daily.where(valid >= needed)
        daily = daily.assign_attrs(da.attrs)
        methods = (da.attrs.get("cell_methods", "") + f" time: {stat}").strip()
        out[name] = daily.assign_attrs(cell_methods=methods)
    result = xr.Dataset(out, attrs=ds.attrs)
    result["time"].attrs = dict(ds["time"].attrs)
    return result


def _whole_days(ds: xr.Dataset, per_day: int) -> bool:
    """Whether the data are days of ``per_day`` regular steps from 00:00, chunked by whole days.

    Then the daily statistics are a reshape of each chunk (:func:`_by_reshape`), one
    task per chunk, instead of a resampling's group-by machinery: on many small
    chunks (a store read in time blocks) that machinery, not the arithmetic, is the
    cost. Only numpy time axes qualify (a cftime axis would cost more to check).
    """
    index = ds.indexes["time"]
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2 or index[0] != index[0].floor("D"):
        return False
    stamps = index.asi8
    if not np.all(np.diff(stamps) == (stamps[1] - stamps[0])):
        return False
    if any(c != "time" and "time" in ds[c].dims for c in ds.coords):
        return False
    for da in ds.data_vars.values():
        if "time" in da.dims and da.chunks is not None:
            edges = np.cumsum(da.chunks[da.get_axis_num("time")])[:-1]
            if np.any(edges % per_day):
                return False
    return True


def _by_reshape(da: xr.DataArray, per_day: int, stat: str, needed: int) -> xr.DataArray:
    """Daily ``stat`` of ``da`` (see :func:`_whole_days`); NaN on days under ``needed`` values."""
    axis = da.get_axis_num("time")
    days = da.indexes["time"][::per_day]
    kernel = _DayStatistic(axis, per_day, stat, needed)
    probe = np.zeros((per_day,) + (1,) * (da.ndim - 1), dtype=da.dtype).swapaxes(0, axis)
    dtype = kernel(probe).dtype
    if da.chunks is not None:
        chunks = list(da.chunks)
        chunks[axis] = tuple(-(-c // per_day) for c in chunks[axis])
        data = da.data.map_blocks(kernel, chunks=tuple(chunks), dtype=dtype)
    else:
        data = kernel(da.values)
    coords = {c: v for c, v in da.coords.items() if "time" not in v.dims}
    time = xr.DataArray(days, dims="time", attrs=da["time"].attrs)
    return xr.DataArray(data, dims=da.dims, coords={**coords, "time": time})


class _DayStatistic:
    """A day statistic of whole days of ``per_day`` steps along ``axis`` (a picklable kernel)."""

    reducers: ClassVar[dict[str, Callable[..., np.ndarray]]] = {
        "mean": np.nanmean,
        "max": np.nanmax,
        "min": np.nanmin,
        "sum": np.nansum,
        "median": np.nanmedian,
    }

    def __init__(self, axis: int, per_day: int, stat: str, needed: int) -> None:
        self.axis, self.per_day, self.stat, self.needed = axis, per_day, stat, needed

    def __call__(self, values: np.ndarray) -> np.ndarray:
        values = np.moveaxis(values, self.axis, -1)
        short = -values.shape[-1] % self.per_day  # a last day cut short by the data's end
        if short:
            pad = np.full((*values.shape[:-1], short), np.nan, dtype=np.result_type(values, 1.0))
            values = np.concatenate([values, pad], axis=-1)
        days = values.reshape(*values.shape[:-1], -1, self.per_day)
        valid = np.count_nonzero(~np.isnan(days), axis=-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN days: masked below
            reduced = self.reducers[self.stat](days, axis=-1)
        out = np.where(valid >= self.needed, reduced, np.nan)
        return np.moveaxis(out, -1, self.axis)
