"""Dense shelf water cascading events in daily deep temperature series.

A cascading event is a run of days when the canyon water at a given depth is
markedly colder than its slowly varying background: dense shelf water (near 11 °C
in 2005) flows down the canyon and, mixed with ambient water, lowers the
temperature at 500 m and 1000 m by ~0.3–1 °C for days to weeks.  The definitions
(background, thresholds, duration and gap rules, winters) and the reasoning behind
their defaults are in ``docs/events.md``.

Every function takes daily series whose time dimension is ``dim`` (default
``"time"``) and that may carry any other dimensions (``depth``, ``member``,
``source_id``…).  Time may be on any calendar (``standard``, ``noleap``,
``360_day`` via cftime): windows and durations are counted in days (samples), and
winters use only year and month.  numpy- and dask-backed arrays are both accepted;
dask arrays stay lazy (the time dimension is rechunked to one chunk, since events
and running statistics need whole series).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "EventConfig",
    "EventError",
    "anomalies",
    "background_series",
    "event_days",
    "event_probability",
    "events_from_flags",
    "events_table",
    "winter_labels",
    "winter_statistics",
]

_DIFF_ATTRS = {"units": "degree_Celsius", "units_metadata": "temperature: difference"}


class EventError(ValueError):
    """Event detection cannot run on the given data or configuration."""


class EventConfig(BaseModel):
    """How cascading events are defined.

    Attributes
    ----------
    thresholds
        Anomaly threshold (°C, positive) per nominal depth (m): a day is *below
        threshold* when ``temperature - background < -threshold``.  Defaults 0.15 °C
        at 500 m and 0.10 °C at 1000 m (see ``docs/events.md``).
    depth_tolerance_m
        Tolerance (m) when matching a data depth to a ``thresholds`` key.
    min_duration_days
        An event needs at least this many below-threshold days (after merging).
    max_gap_days
        Runs of below-threshold days separated by at most this many days are merged
        into one event (cascading pulses every 3–6 days with brief relaxations).
    background_window_days
        Length (days) of the window of the background quantile; ~1 year so the
        background cannot follow a cascading season (weeks to two months).
    background_window
        ``centred`` on the day, or ``trailing``: ending on it, so the background sees
        no future. Why trailing: under a warming deep background a centred window
        anticipates the warming by half a window, and the anomalies of every cold day
        deepen — on the demo world's true 500 m series, 1994–2022, 18.4 event days per
        winter against 14.7 with the trailing window and 14.1 on the physical anomaly
        (docs/events.md). A trailing window lags a trend instead, by half a window of
        it: the cold side of the anomaly is not inflated.
    background_quantile
        Quantile (0.5–1) of the window used as background.  A high quantile is set by
        the warm, non-cascading days, so cold events barely move it.
    background_smooth_days
        Length (days) of the running mean (centred or trailing, as the window)
        applied to the quantile series, which removes the day-to-day jitter of a
        running order statistic.
    background_min_fraction
        Fraction of the window that must hold data for a background value.
    winter_start_month
        First month of a winter year: winter *Y* runs from this month of *Y − 1* to
        the month before it in *Y* (default 11: winter 2005 = Nov 2004 – Oct 2005).
    season_months
        If set, only these months may hold event days (e.g. ``[1, 2, 3, 4]``, the
        usual cascading season); ``None`` accepts events in any month.
    """

    model_config = ConfigDict(extra="forbid")

    thresholds: dict[float, float] = Field(default_factory=lambda: {500.0: 0.15, 1000.0: 0.10})
    depth_tolerance_m: float = Field(default=1.0, ge=0.0)
    min_duration_days: int = Field(default=2, ge=1)
    max_gap_days: int = Field(default=1, ge=0)
    background_window_days: int = Field(default=365, ge=3)
    background_window: Literal["centred", "trailing"] = "centred"
    background_quantile: float = Field(default=0.8, gt=0.5, lt=1.0)
    background_smooth_days: int = Field(default=31, ge=1)
    background_min_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    winter_start_month: int = Field(default=11, ge=1, le=12)
    season_months: list[int] | None = None

    @field_validator("thresholds")
    @classmethod
    def _positive(cls, value: dict[float, float]) -> dict[float, float]:
        if not value:
            raise ValueError("thresholds must name at least one depth")
        bad = {k: v for k, v in value.items() if not v > 0}
        if bad:
            raise ValueError(f"thresholds are positive °C (a cooling), got {bad}")
        return value

    @field_validator("season_months")
    @classmethod
    def _months(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(not 1 <= m <= 12 for m in value)):
            raise ValueError(f"season_months must be months 1..12, got {value}")
        return value

    def threshold_for(self, depth: float) -> float:
        """Threshold (°C) for a nominal depth (m), within ``depth_tolerance_m``."""
        for key, value in self.thresholds.items():
            if abs(float(key) - float(depth)) <= self.depth_tolerance_m:
                return float(value)
        raise EventError(
            f"no event threshold for depth {float(depth):g} m; EventConfig.thresholds has "
            f"{sorted(self.thresholds)} m"
        )


# ------------------------------------------------------------------------ helpers


def _check_dim(da: xr.DataArray, dim: str) -> None:
    if dim not in da.dims:
        raise EventError(f"expected a daily series with dimension {dim!r}, got dims {da.dims}")


def _one_time_chunk(da: xr.DataArray, dim: str) -> xr.DataArray:
    """Dask arrays: whole series in one chunk along ``dim`` (no-op for numpy)."""
    if da.chunks is not None:
        return da.chunk({dim: -1})
    return da


def _threshold(
    anomaly: xr.DataArray, threshold: float | Mapping[float, float] | None, config: EventConfig
) -> float | xr.DataArray:
    """Threshold (°C, positive) broadcastable against ``anomaly``."""
    if threshold is not None and not isinstance(threshold, Mapping):
        if not threshold > 0:
            raise EventError(f"threshold is a positive cooling in °C, got {threshold}")
        return float(threshold)
    cfg = config if threshold is None else config.model_copy(update={"thresholds": threshold})
    if "depth" not in anomaly.coords:
        if len(cfg.thresholds) == 1:
            return float(next(iter(cfg.thresholds.values())))
        raise EventError(
            "anomaly has no 'depth' coordinate, so the per-depth thresholds "
            f"{cfg.thresholds} cannot be applied; pass threshold=<°C>"
        )
    depth = anomaly["depth"]
    if depth.ndim == 0:
        return cfg.threshold_for(float(depth))
    values = [cfg.threshold_for(float(d)) for d in depth.values]
    return xr.DataArray(values, dims=depth.dims, coords={depth.dims[0]: depth.values})


def _runs(flag: np.ndarray, max_gap: int, min_count: int) -> list[tuple[int, int]]:
    """(first, last) indices of merged runs of True with ≥ ``min_count`` True values."""
    idx = np.flatnonzero(flag)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > max_gap + 1)
    first = np.concatenate([[0], breaks + 1])
    last = np.concatenate([breaks, [idx.size - 1]])
    return [
        (int(idx[f]), int(idx[la]))
        for f, la in zip(first, last, strict=True)
        if la - f + 1 >= min_count
    ]


def _event_mask_np(below: np.ndarray, max_gap: int, min_count: int) -> np.ndarray:
    """Event-day mask over the last axis of a boolean array of any leading shape."""
    below = np.asarray(below, dtype=bool)
    out = np.zeros(below.shape, dtype=bool)
    flat_in = below.reshape(-1, below.shape[-1])
    flat_out = out.reshape(-1, below.shape[-1])
    for row in range(flat_in.shape[0]):
        for first, last in _runs(flat_in[row], max_gap, min_count):
            flat_out[row, first : last + 1] = True
    return out


def _rolling_background(
    arr: np.ndarray, window: int, quantile: float, smooth: int, min_periods: int, center: bool
) -> np.ndarray:
    """Running quantile then running mean along the last axis (pandas, O(n log w))."""
    shape = arr.shape
    frame = pd.DataFrame(np.asarray(arr, dtype=np.float64).reshape(-1, shape[-1]).T)
    quant = frame.rolling(window, center=center, min_periods=min_periods).quantile(quantile)
    smoothed = quant.rolling(smooth, center=center, min_periods=1).mean()
    return smoothed.to_numpy().T.reshape(shape)


# ---------------------------------------------------------------------- public API


def background_series(
    temperature: xr.DataArray,
    window_days: int = 365,
    quantile: float = 0.8,
    smooth_days: int = 31,
    min_fraction: float = 0.5,
    *,
    trailing: bool = False,
    dim: str = "time",
) -> xr.DataArray:
    """Slowly varying deep-water background that cascading events do not drag down.

    The background is the ``quantile`` of a centred ``window_days`` window, smoothed
    by a centred ``smooth_days`` running mean.  Why a high quantile of a long window:
    cascading only ever *cools* the deep canyon, for days to about two months per
    winter.  If cold event days are a fraction *f* < ``quantile`` of the window and
    colder than the other days, the q-quantile of the window equals the
    (q − f)/(1 − f) quantile of the non-event days — it moves within the spread of
    ordinary variability (hundredths of a degree), not by the event drop (tenths).
    A running mean would instead sink by *f* × drop, and a short window would track
    the event itself.  The cost is a small warm bias (≈ +0.8 σ of ordinary daily
    variability for q = 0.8) and a background that anticipates abrupt steps (e.g. the
    +0.3 °C step of 2014) by up to ``(1 − q)`` × window; pass your own background
    series where that matters.

    Parameters
    ----------
    temperature
        Daily temperature (°C) with dimension ``dim``, one value per calendar day
        (missing days as NaN); other dims are independent series.
    window_days
        Window length in days (samples); ~365 spans one full cascading cycle.
    quantile
        Quantile in (0.5, 1).
    smooth_days
        Running-mean length in days applied after the quantile.
    min_fraction
        Minimum fraction of the window with data, else NaN.
    trailing
        Windows (quantile and mean) that end on the day instead of being centred on
        it: a background from the past only, which lags a step instead of
        anticipating it (:class:`EventConfig` ``background_window``).
    dim
        Time dimension name.

    Returns
    -------
    xarray.DataArray
        Background temperature (°C), same shape and dims as ``temperature``.
    """
    _check_dim(temperature, dim)
    if not 0.5 < quantile < 1.0:
        raise EventError(f"quantile must be in (0.5, 1), got {quantile}")
    if window_days < 3 or smooth_days < 1:
        raise EventError(
            f"need window_days ≥ 3 and smooth_days ≥ 1, got {window_days}, {smooth_days}"
        )
    min_periods = max(1, int(np.ceil(min_fraction * window_days)))
    out = xr.apply_ufunc(
        _rolling_background,
        _one_time_chunk(temperature, dim),
        input_core_dims=[[dim]],
        output_core_dims=[[dim]],
        dask="parallelized",
        output_dtypes=[np.float64],
        kwargs={
            "window": int(window_days),
            "quantile": float(quantile),
            "smooth": int(smooth_days),
            "min_periods": min_periods,
            "center": not trailing,
        },
        keep_attrs=True,
    ).transpose(*temperature.dims)
    out.name = "background"
    side = "trailing" if trailing else "centred"
    out.attrs.update(
        long_name="deep-water background temperature",
        comment=(
            f"q{quantile:g} of a {side} {window_days}-day window, smoothed by a {side} "
            f"{smooth_days}-day running mean"
        ),
    )
    return out


def anomalies(
    temperature: xr.DataArray,
    background: xr.DataArray | None = None,
    *,
    config: EventConfig | None = None,
    dim: str = "time",
) -> xr.DataArray:
    """Temperature minus background (°C; negative = colder than background).

    Parameters
    ----------
    temperature
        Daily temperature (°C).
    background
        Background (°C) broadcastable against ``temperature``; ``None`` computes
        :func:`background_series` with the ``config`` settings.
    config
        Event settings (defaults when ``None``).
    dim
        Time dimension name.
    """
    cfg = config or EventConfig()
    if background is None:
        background = background_series(
            temperature,
            cfg.background_window_days,
            cfg.background_quantile,
            cfg.background_smooth_days,
            cfg.background_min_fraction,
            trailing=cfg.background_window == "trailing",
            dim=dim,
        )
    out = temperature - background
    out.name = "anomaly"
    out.attrs = {"long_name": "temperature anomaly from the background", **_DIFF_ATTRS}
    return out


def event_days(
    anomaly: xr.DataArray,
    threshold: float | Mapping[float, float] | None = None,
    *,
    config: EventConfig | None = None,
    dim: str = "time",
) -> xr.DataArray:
    """Boolean mask of days belonging to a cascading event.

    A day is below threshold when ``anomaly < -threshold``; runs of such days
    separated by at most ``max_gap_days`` are merged (the bridging days become event
    days), and a merged run is an event when it holds at least
    ``min_duration_days`` below-threshold days.  NaN anomalies are never below
    threshold.

    Parameters
    ----------
    anomaly
        Daily anomaly (°C) from :func:`anomalies`, with dimension ``dim``.
    threshold
        °C (positive) for all series, a ``{depth: °C}`` mapping, or ``None`` for
        ``config.thresholds`` matched on the ``depth`` coordinate.
    config
        Event settings (defaults when ``None``).
    dim
        Time dimension name.

    Returns
    -------
    xarray.DataArray
        bool, same dims as ``anomaly``.
    """
    cfg = config or EventConfig()
    _check_dim(anomaly, dim)
    thr = _threshold(anomaly, threshold, cfg)
    return events_from_flags(anomaly < -thr, config=cfg, dim=dim)


def events_from_flags(
    below: xr.DataArray, *, config: EventConfig | None = None, dim: str = "time"
) -> xr.DataArray:
    """Event days from daily "below threshold" flags (the duration and gap rule).

    The second half of :func:`event_days`, for flags that do not come from an
    anomaly — e.g. a forecast's probability of being below the threshold.
    """
    cfg = config or EventConfig()
    _check_dim(below, dim)
    if cfg.season_months is not None:
        below = below & below[dim].dt.month.isin(cfg.season_months)
    mask = xr.apply_ufunc(
        _event_mask_np,
        _one_time_chunk(below, dim),
        input_core_dims=[[dim]],
        output_core_dims=[[dim]],
        dask="parallelized",
        output_dtypes=[bool],
        kwargs={"max_gap": cfg.max_gap_days, "min_count": cfg.min_duration_days},
    ).transpose(*below.dims)
    mask.name = "event"
    mask.attrs = {
        "long_name": "day belonging to a cascading event",
        "comment": (
            f"anomaly below -threshold for >= {cfg.min_duration_days} days, gaps <= "
            f"{cfg.max_gap_days} day(s) merged"
        ),
    }
    return mask


def winter_labels(time: xr.DataArray, start_month: int = 11) -> xr.DataArray:
    """Winter year of each time: the year of the January it contains.

    Parameters
    ----------
    time
        Time coordinate (datetime64 or cftime, any calendar).
    start_month
        First month of a winter year (11: winter 2005 = Nov 2004 – Oct 2005).

    Returns
    -------
    xarray.DataArray
        int, named ``winter``, along the time dimension.
    """
    year, month = time.dt.year, time.dt.month
    out = (year + (month >= start_month).astype(int)) if start_month > 1 else year
    return out.astype(np.int64).rename("winter")


def winter_statistics(
    anomaly: xr.DataArray,
    threshold: float | Mapping[float, float] | None = None,
    *,
    config: EventConfig | None = None,
    events: xr.DataArray | None = None,
    dim: str = "time",
) -> xr.Dataset:
    """Per-winter cascading statistics.

    Parameters
    ----------
    anomaly
        Daily anomaly (°C), dimension ``dim`` plus any others (depth, member…).
    threshold, config, dim
        As in :func:`event_days`.
    events
        A precomputed :func:`event_days` mask (recomputed when ``None``).

    Returns
    -------
    xarray.Dataset
        Dims of ``anomaly`` with ``dim`` replaced by ``winter`` (int years):

        * ``event_days`` — days in events;
        * ``event_count`` — events starting in the winter (an event crossing the
          winter boundary counts in the winter it starts);
        * ``mean_intensity`` — mean cooling (°C, positive = colder than background)
          over the winter's event days, NaN without events;
        * ``peak_intensity`` — largest cooling (°C) on an event day, NaN without events;
        * ``valid_days`` — days with an anomaly, to spot incomplete winters.
    """
    cfg = config or EventConfig()
    _check_dim(anomaly, dim)
    ev = events if events is not None else event_days(anomaly, threshold, config=cfg, dim=dim)
    winter = winter_labels(anomaly[dim], cfg.winter_start_month)
    cooling = (-anomaly).where(ev)
    start = ev & ~ev.shift({dim: 1}, fill_value=False)
    out = xr.Dataset(
        {
            "event_days": ev.groupby(winter).sum(dim).astype(np.int64),
            "event_count": start.groupby(winter).sum(dim).astype(np.int64),
            "mean_intensity": cooling.groupby(winter).mean(dim),
            "peak_intensity": cooling.groupby(winter).max(dim),
            "valid_days": anomaly.notnull().groupby(winter).sum(dim).astype(np.int64),
        }
    )
    order = [("winter" if d == dim else d) for d in anomaly.dims]
    out = out.transpose(*order)
    out["winter"].attrs = {
        "long_name": "winter (year of its January)",
        "comment": f"winter Y = month {cfg.winter_start_month} of Y-1 to the month before in Y",
    }
    out["event_days"].attrs = {"long_name": "days in cascading events", "units": "day"}
    out["event_count"].attrs = {"long_name": "cascading events starting in the winter"}
    out["mean_intensity"].attrs = {
        "long_name": "mean cooling below background on event days",
        **_DIFF_ATTRS,
    }
    out["peak_intensity"].attrs = {
        "long_name": "largest cooling below background on an event day",
        **_DIFF_ATTRS,
    }
    out["valid_days"].attrs = {"long_name": "days with a valid anomaly", "units": "day"}
    return out


def events_table(
    anomaly: xr.DataArray,
    threshold: float | Mapping[float, float] | None = None,
    *,
    config: EventConfig | None = None,
    events: xr.DataArray | None = None,
    dim: str = "time",
) -> pd.DataFrame:
    """One row per event per series (computes dask inputs).

    Parameters
    ----------
    anomaly, threshold, config, events, dim
        As in :func:`winter_statistics`.

    Returns
    -------
    pandas.DataFrame
        Columns: one per non-time dimension of ``anomaly`` (e.g. ``depth``), then
        ``start``, ``end`` (first/last event day, time coordinate values),
        ``duration_days`` (days from start to end inclusive), ``days_below``
        (days below threshold), ``mean_intensity`` and ``peak_intensity`` (°C,
        positive = colder than background), ``peak_time`` and ``winter``.
    """
    cfg = config or EventConfig()
    _check_dim(anomaly, dim)
    ev = events if events is not None else event_days(anomaly, threshold, config=cfg, dim=dim)
    thr = _threshold(anomaly, threshold, cfg)
    below = (anomaly < -thr).transpose(*anomaly.dims)
    other = [d for d in anomaly.dims if d != dim]
    anom = anomaly.transpose(*other, dim)
    values = np.asarray(anom.values, dtype=np.float64)
    mask = np.asarray(ev.transpose(*other, dim).values, dtype=bool)
    below_np = np.asarray(below.transpose(*other, dim).values, dtype=bool)
    times = anomaly[dim].values
    winters = winter_labels(anomaly[dim], cfg.winter_start_month).values
    coords = {
        d: anomaly[d].values if d in anomaly.coords else np.arange(anomaly.sizes[d]) for d in other
    }
    rows: list[dict[Hashable, Any]] = []
    for index in np.ndindex(*values.shape[:-1]):
        for first, last in _runs(mask[index], 0, 1):
            seg = -values[index][first : last + 1]
            peak = int(np.nanargmax(seg)) if np.isfinite(seg).any() else 0
            row: dict[Hashable, Any] = {d: coords[d][i] for d, i in zip(other, index, strict=True)}
            row.update(
                start=times[first],
                end=times[last],
                duration_days=last - first + 1,
                days_below=int(below_np[index][first : last + 1].sum()),
                mean_intensity=float(np.nanmean(seg)) if np.isfinite(seg).any() else np.nan,
                peak_intensity=float(seg[peak]),
                peak_time=times[first + peak],
                winter=int(winters[first]),
            )
            rows.append(row)
    columns = [
        *other,
        "start",
        "end",
        "duration_days",
        "days_below",
        "mean_intensity",
        "peak_intensity",
        "peak_time",
        "winter",
    ]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values([*other, "start"], ignore_index=True) if rows else table


def event_probability(
    anomalies: xr.DataArray,
    threshold: float | Mapping[float, float] | None = None,
    *,
    dim: str | Sequence[str] = "member",
    config: EventConfig | None = None,
    mode: Literal["below", "event"] = "below",
    time_dim: str = "time",
) -> xr.DataArray:
    """Fraction of members/samples in which a day is cascading.

    Parameters
    ----------
    anomalies
        Anomalies (°C) of ensemble members or predictive samples along ``dim``.
    threshold, config
        As in :func:`event_days`.
    dim
        Dimension(s) holding the members/samples, reduced away.
    mode
        ``"below"``: the day's anomaly is below ``-threshold`` (a per-day
        probability); ``"event"``: the day is an event day of that member
        (duration and gap rules applied per member along ``time_dim``).
    time_dim
        Time dimension, used by ``mode="event"``.

    Returns
    -------
    xarray.DataArray
        Probability in [0, 1] (NaN members excluded; NaN where all are NaN).
    """
    cfg = config or EventConfig()
    dims = [dim] if isinstance(dim, str) else list(dim)
    missing = [d for d in dims if d not in anomalies.dims]
    if missing:
        raise EventError(f"member dimension(s) {missing} not in anomaly dims {anomalies.dims}")
    if mode == "below":
        flag = anomalies < -_threshold(anomalies, threshold, cfg)
    elif mode == "event":
        flag = event_days(anomalies, threshold, config=cfg, dim=time_dim)
    else:
        raise EventError(f"mode must be 'below' or 'event', got {mode!r}")
    valid = anomalies.notnull()
    n_valid = valid.sum(dims)
    prob = flag.where(valid).sum(dims) / n_valid
    prob = prob.where(n_valid > 0)
    prob.name = "event_probability"
    prob.attrs = {"long_name": "probability of a cascading day", "units": "1", "mode": mode}
    return prob
