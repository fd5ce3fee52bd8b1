"""One output calendar, and short-gap filling of daily series.

Reanalyses use the standard calendar, CMIP and CORDEX models also ``noleap``
and ``360_day``. The model, the bias adjustment and the results store need one
calendar, so every daily series is converted to it (default ``standard``,
numpy ``datetime64``). Days the source calendar lacks (Feb 29 of a ``noleap``
model, five or six days a year of a ``360_day`` one) are filled by linear
interpolation between their neighbours. ``360_day`` data are aligned on the
year (``align_on="year"``): day *d* of 360 maps to the same fraction of the
target year, so no season is shifted.

Then short gaps (missing values over a few days) are interpolated and longer
ones are kept as NaN and listed in a :class:`GapReport`.

All operations are lazy and chunk-friendly (forward/backward fills, no
rechunking along time).
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from xarray.coding.cftimeindex import CFTimeIndex

__all__ = [
    "Gap",
    "GapReport",
    "fill_short_gaps",
    "linear_fill",
    "to_calendar",
]

_SAME_AS_STANDARD = frozenset({"standard", "gregorian"})


def _calendar(ds: xr.Dataset | xr.DataArray) -> str:
    return str(ds["time"].dt.calendar)


def _daily_range(index: pd.Index, calendar: str, cftime: bool) -> xr.DataArray:
    times = xr.date_range(
        index[0], index[-1], freq="D", calendar=calendar, use_cftime=cftime, unit="ns"
    )
    return xr.DataArray(times, dims="time", name="time")


def linear_fill(obj: xr.DataArray, max_gap: int) -> xr.DataArray:
    """Linearly interpolate runs of at most ``max_gap`` NaNs along ``time``.

    Why: a daily series with a short gap should not lose its lookback windows;
    nothing is extrapolated past the first or last valid value. Positions are
    index positions, so the time axis must be regular. Lazy for dask inputs,
    one task per variable: ``time`` is gathered into one chunk (the daily
    regional series this fills are small), which a per-step formulation in
    dask would spread over a dozen layers of tasks.

    Parameters
    ----------
    obj : xarray.DataArray
        Data with a ``time`` dimension, any units.
    max_gap : int
        Longest run of consecutive NaN steps that is filled.

    Returns
    -------
    xarray.DataArray
        Same shape, attributes and units, short runs filled.
    """
    if max_gap < 1 or obj.dtype.kind not in "fc":
        return obj
    filled = xr.apply_ufunc(
        _linear_fill,
        obj,
        kwargs={"max_gap": max_gap},
        input_core_dims=[["time"]],
        output_core_dims=[["time"]],
        dask="parallelized",
        dask_gufunc_kwargs={"allow_rechunk": True},
        output_dtypes=[np.result_type(obj.dtype, np.float64)],
        keep_attrs=True,
    )
    return filled.transpose(*obj.dims)


def _linear_fill(values: np.ndarray, max_gap: int) -> np.ndarray:
    """:func:`linear_fill` on an array whose last axis is time."""
    n = values.shape[-1]
    steps = np.arange(n)
    valid = ~np.isnan(values)
    prev = np.maximum.accumulate(np.where(valid, steps, -1), axis=-1)
    after = np.minimum.accumulate(np.where(valid, steps, n)[..., ::-1], axis=-1)[..., ::-1]
    prev_val = np.take_along_axis(values, np.clip(prev, 0, n - 1), axis=-1)
    next_val = np.take_along_axis(values, np.clip(after, 0, n - 1), axis=-1)
    span = (after - prev).astype(np.float64)
    bounded = (prev >= 0) & (after < n)
    with np.errstate(invalid="ignore", divide="ignore"):
        # valid points have span 0: masked, so that no 0/0 is evaluated
        share = (steps - prev) / np.where(span > 0, span, np.nan)
        interp = prev_val + (next_val - prev_val) * share
    return np.where(valid, values, np.where(bounded & (span - 1 <= max_gap), interp, np.nan))


def _fill_where(ds: xr.Dataset, mask: xr.DataArray, max_gap: int) -> xr.Dataset:
    out = {}
    for name, da in ds.data_vars.items():
        if "time" in da.dims:
            out[name] = da.where(~mask, linear_fill(da, max_gap)).assign_attrs(da.attrs)
        else:
            out[name] = da
    return ds.assign(out)


def to_calendar(
    ds: xr.Dataset,
    calendar: str = "standard",
    align_on: Literal["year", "date"] = "year",
) -> xr.Dataset:
    """Convert daily data to one calendar, interpolating days the source lacks.

    Why: all sources must share one daily time axis. ``noleap`` lacks Feb 29,
    ``360_day`` lacks five or six days a year: those days are inserted and
    filled by linear interpolation between their neighbours (only those days:
    genuine gaps of the source are left to :func:`fill_short_gaps`). Days the
    target lacks (e.g. Feb 30 of ``360_day`` with ``align_on="date"``) are
    dropped.

    Parameters
    ----------
    ds : xarray.Dataset
        Daily data, time stamps at 00:00, any cftime or numpy calendar.
    calendar : str
        Target calendar; ``standard`` (default) gives numpy ``datetime64``.
    align_on : {"year", "date"}
        How ``360_day`` maps to other calendars (see
        :meth:`xarray.Dataset.convert_calendar`); ``"year"`` spreads the
        missing days over the year so that seasons keep their day of year.

    Returns
    -------
    xarray.Dataset
        Data on a complete daily axis of the target calendar (lazy for dask).
    """
    source = _calendar(ds)
    to_numpy = calendar in _SAME_AS_STANDARD or calendar == "proleptic_gregorian"
    is_numpy = not isinstance(ds.indexes["time"], CFTimeIndex)
    if (to_numpy and is_numpy) or (not to_numpy and not is_numpy and source == calendar):
        return ds
    needs_align = "360_day" in {source, calendar}
    converted = ds.convert_calendar(
        calendar, dim="time", align_on=align_on if needs_align else None, use_cftime=not to_numpy
    )
    full = _daily_range(converted.indexes["time"], calendar, not to_numpy)
    inserted = ~full.isin(converted["time"].values)
    inserted = inserted.assign_coords(time=full)
    out = converted.reindex(time=full)
    if bool(inserted.any()):
        out = _fill_where(out, inserted, max_gap=1)
    out["time"].attrs = dict(ds["time"].attrs)
    return out


@dataclass(frozen=True)
class Gap:
    """A run of consecutive missing days left after gap filling.

    Attributes
    ----------
    variable : str
        Variable name.
    region : str
        Label along the non-time dims (the region name for regional series).
    start, end : object
        First and last missing day (``numpy.datetime64`` or cftime date).
    length_days : int
        Number of missing days.
    """

    variable: str
    region: str
    start: object
    end: object
    length_days: int


@dataclass
class GapReport:
    """Gaps longer than ``max_gap_days`` (kept as NaN) of a daily dataset.

    Why: a long gap must be visible to the user, not silently interpolated;
    the report is lazy, so building it does not compute the data: the gaps
    are found (one small computation) on first access to :attr:`gaps`.

    Attributes
    ----------
    max_gap_days : int
        Longest gap that was filled.
    missing : xarray.Dataset
        Boolean (possibly dask-backed) mask of values still missing.
    """

    max_gap_days: int
    missing: xr.Dataset = field(repr=False)

    @functools.cached_property
    def gaps(self) -> tuple[Gap, ...]:
        """All runs of missing days, per variable and region (computes the mask)."""
        found: list[Gap] = []
        computed = self.missing.compute()
        for name, mask in computed.data_vars.items():
            found.extend(_runs(str(name), mask))
        return tuple(found)

    def __iter__(self) -> Iterator[Gap]:
        return iter(self.gaps)

    def __len__(self) -> int:
        return len(self.gaps)

    def for_variable(self, variable: Hashable) -> list[Gap]:
        """Gaps of one variable."""
        return [g for g in self.gaps if g.variable == variable]


def _runs(name: str, mask: xr.DataArray) -> list[Gap]:
    other = [d for d in mask.dims if d != "time"]
    mask = mask.transpose(*other, "time")
    times = mask["time"].values
    values = np.asarray(mask.values, dtype=bool)
    found = []
    for idx in np.ndindex(*values.shape[:-1]):
        label = ",".join(str(mask[d].values[i]) for d, i in zip(other, idx, strict=True))
        series = values[idx]
        edges = np.diff(np.concatenate([[0], series.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        for s, e in zip(starts, ends, strict=True):
            found.append(Gap(name, label, times[s], times[e - 1], int(e - s)))
    return found


def fill_short_gaps(ds: xr.Dataset, max_gap_days: int = 3) -> tuple[xr.Dataset, GapReport]:
    """Interpolate short gaps of a daily dataset; report the long ones.

    Why: a day or two of missing predictors (a failed download, a masked
    value) should not break a winter's lookback window, while a long gap must
    stay missing and be reported. Missing days in the time axis are first
    inserted as NaN, so they count as gaps too. Gaps at the start or end of
    the series cannot be interpolated and are reported whatever their length.

    Parameters
    ----------
    ds : xarray.Dataset
        Daily data, time stamps at 00:00, any calendar.
    max_gap_days : int
        Longest run of consecutive missing days filled by linear interpolation.

    Returns
    -------
    tuple of (xarray.Dataset, GapReport)
        The filled data on a complete daily axis (lazy for dask), and the
        (lazy) report of what is still missing.

    Raises
    ------
    ValueError
        If ``max_gap_days`` is negative.
    """
    if max_gap_days < 0:
        raise ValueError(f"max_gap_days must be >= 0, got {max_gap_days}.")
    index = ds.indexes["time"]
    if len(index) > 1:
        full = _daily_range(index, _calendar(ds), isinstance(index, CFTimeIndex))
        if full.size != len(index):
            ds = ds.reindex(time=full)
    filled = ds.assign(
        {
            name: linear_fill(da, max_gap_days)
            for name, da in ds.data_vars.items()
            if "time" in da.dims
        }
    )
    missing = filled[[n for n, da in filled.data_vars.items() if "time" in da.dims]].isnull()
    return filled, GapReport(max_gap_days=max_gap_days, missing=missing)
