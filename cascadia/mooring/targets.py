"""Training targets: daily deep temperature split into a slow background and an anomaly.

Why split: the deep canyon water warms for reasons the local atmosphere does
not reveal (intermediate-water warming, ~0.06 °C/yr over 2007–2017, and the
+0.3 °C step of 2014). A network fed atmospheric predictors cannot learn that
drift, and asking it to would make it learn the calendar instead. So the model
learns the **anomaly** ``temperature − background`` (°C), which holds the
cascading signal, and predictions are turned back into temperature by adding
the background again.

The background (:class:`BackgroundConfig`):

* **inside the observed record** — :func:`cascadia.mooring.events.background_series`
  of the observed daily temperature (a high running quantile of a 365-day
  window, smoothed; robust to the cold events, see ``docs/events.md``). With
  ``exclude_test_winters`` (default) the test winters' observations are masked
  *before* the background is computed, and the background is linearly
  interpolated across them: no test-winter observation enters the targets that
  the test is scored against (otherwise the background would leak a test
  winter's mean level into the "prediction"). Mooring gaps are interpolated the
  same way.
* **outside it** — ``extrapolation``: ``hold`` (default) keeps the value at
  the nearest end of the record; ``linear_trend`` continues a least-squares
  line fitted to the last (first) ``trend_years`` of the background. ``hold``
  is the default because the background's drift is not an atmospheric
  response: a 10-year trend continued over a century (hindcasts to 1900,
  projections to 2100) would invent degrees of warming or cooling. Before the
  record, a job's ``targets.before_record`` takes the changes of an ocean analysis
  instead (:mod:`cascadia.learning.before_record`); projections would need their own
  ocean's deep temperature, which is not read yet (values after the record are
  flagged anomaly-only in the results store).

Also here: the canonical daily predictors of every region flattened into
feature columns ``<variable>@<region>`` and aligned with the daily mooring
targets (numpy/xarray only; no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from cascadia.mooring.events import EventConfig, background_series, event_days, winter_labels

__all__ = [
    "AlignedSeries",
    "BackgroundConfig",
    "TargetError",
    "align_series",
    "compute_background",
    "extend_background",
    "flatten_predictors",
    "held_out_targets",
]

FloatArray = npt.NDArray[np.float64]


class TargetError(ValueError):
    """The predictors and observations cannot be turned into training targets."""


class BackgroundConfig(BaseModel):
    """How the slowly warming deep background is estimated and projected.

    Attributes
    ----------
    method
        ``running_quantile``: :func:`cascadia.mooring.events.background_series` with the
        window, quantile and smoothing of the job's :class:`EventConfig`, so that
        the targets and the event definition share one background.
    exclude_test_winters
        Mask the test winters' observations before computing the background and
        interpolate across them (no test observation leaks into the targets).
    extrapolation
        Outside the observed record: ``hold`` the end value, or continue a
        ``linear_trend`` fitted to the last/first ``trend_years``.
    trend_years
        Length (years) of the end of the record used by ``linear_trend``.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["running_quantile"] = "running_quantile"
    exclude_test_winters: bool = True
    extrapolation: Literal["hold", "linear_trend"] = "hold"
    trend_years: float = Field(10.0, gt=0)


def flatten_predictors(
    data: xr.Dataset,
    variables: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
) -> tuple[xr.DataArray, tuple[str, ...]]:
    """Canonical daily predictors ``(time, region)`` → feature matrix ``(time, feature)``.

    Parameters
    ----------
    data : xarray.Dataset
        Cached predictors: canonical variables with dims ``(time, region)`` in CF
        units.
    variables, regions : sequence of str, optional
        Subsets (all, sorted, if None).

    Returns
    -------
    tuple
        ``(time, feature)`` array (float64) and the feature names
        ``<variable>@<region>`` in column order.
    """
    names = sorted(data.data_vars) if variables is None else list(variables)
    missing = [n for n in names if n not in data.data_vars]
    if missing:
        raise TargetError(f"predictors {missing} are not in the cache; it has {sorted(data)}")
    all_regions = [str(r) for r in data["region"].values]
    chosen = all_regions if regions is None else list(regions)
    unknown = [r for r in chosen if r not in all_regions]
    if unknown:
        raise TargetError(f"regions {unknown} are not in the cache; it has {all_regions}")
    columns, labels = [], []
    for name in names:
        for region in chosen:
            columns.append(np.asarray(data[name].sel(region=region).values, dtype=np.float64))
            labels.append(f"{name}@{region}")
    matrix = xr.DataArray(
        np.stack(columns, axis=1),
        dims=("time", "feature"),
        coords={"time": data["time"].values, "feature": labels},
    )
    return matrix, tuple(labels)


def _days(time: Any) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(time))).normalize()


def extend_background(
    values: FloatArray, days: pd.DatetimeIndex, cfg: BackgroundConfig
) -> FloatArray:
    """Fill one depth's background: interpolate inside the known span, extrapolate outside."""
    out = values.copy()
    known = np.flatnonzero(np.isfinite(values))
    if known.size == 0:
        return out
    first, last = known[0], known[-1]
    t = (days - days[0]).days.to_numpy(dtype=np.float64)
    inside = np.arange(first, last + 1)
    out[inside] = np.interp(t[inside], t[known], values[known])
    if cfg.extrapolation == "hold":
        out[:first] = out[first]
        out[last + 1 :] = out[last]
        return out
    span = cfg.trend_years * 365.25
    for edge, outside in ((last, np.arange(last + 1, len(out))), (first, np.arange(first))):
        if outside.size == 0:
            continue
        near = known[np.abs(t[known] - t[edge]) <= span]
        slope = np.polyfit(t[near], values[near], 1)[0] if near.size > 30 else 0.0
        out[outside] = out[edge] + slope * (t[outside] - t[edge])
    return out


def compute_background(
    temperature: xr.DataArray,
    config: BackgroundConfig,
    events: EventConfig,
    exclude_winters: Sequence[int] = (),
) -> xr.DataArray:
    """Background temperature (°C) on every day of ``temperature``'s time axis.

    Parameters
    ----------
    temperature : xarray.DataArray
        Observed daily temperature (°C), dims ``(time, depth)``, NaN where not
        observed (the time axis may extend beyond the record: it is filled by
        the extrapolation rule).
    config : BackgroundConfig
        Treatment of the background.
    events : EventConfig
        Window, quantile and smoothing of the running quantile; winter months.
    exclude_winters : sequence of int
        Winters masked before the estimate (the test winters when
        ``config.exclude_test_winters``).

    Returns
    -------
    xarray.DataArray
        ``(time, depth)`` background (°C), finite everywhere a depth has data.
    """
    masked = temperature
    if config.exclude_test_winters and len(exclude_winters):
        winters = winter_labels(temperature["time"], events.winter_start_month)
        masked = temperature.where(~winters.isin(list(exclude_winters)))
    raw = background_series(
        masked,
        events.background_window_days,
        events.background_quantile,
        events.background_smooth_days,
        events.background_min_fraction,
        trailing=events.background_window == "trailing",
    ).transpose("time", "depth")
    days = _days(temperature["time"].values)
    filled = np.stack(
        [extend_background(raw.values[:, j], days, config) for j in range(raw.sizes["depth"])],
        axis=1,
    )
    out = xr.DataArray(filled, dims=("time", "depth"), coords=raw.coords, name="background")
    out.attrs = {
        "long_name": "deep-water background temperature",
        "units": "degree_Celsius",
        "comment": (
            f"{config.method} (q{events.background_quantile:g}, "
            f"{events.background_window} {events.background_window_days} d window, "
            f"{events.background_smooth_days} d smoothing) of the observations"
            + (f" without winters {list(exclude_winters)}" if config.exclude_test_winters else "")
            + f"; interpolated across gaps; outside the record: {config.extrapolation}"
        ),
    }
    return out


def held_out_targets(
    time: Any,
    temperature: FloatArray,
    depths: Sequence[float],
    groups: Sequence[Sequence[int]],
    config: BackgroundConfig,
    events: EventConfig,
    exclude_winters: Sequence[int] = (),
) -> tuple[FloatArray, FloatArray]:
    """Anomalies and event days of each group of winters against a background without them.

    Why: a test winter's anomaly is taken against a background estimated without
    it (``exclude_test_winters``), and so is every hindcast or projection; the
    training targets of the other winters are not. Calibrating the spread on
    validation anomalies whose background saw the validation winters would fit
    it to errors smaller than the ones it will meet. Each group (the validation
    winters, or each fold) is masked together with ``exclude_winters``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(T, D)`` anomaly (°C) and event flags (1/0), NaN outside the groups
        and where unobserved. Without ``config.exclude_test_winters`` the
        background is the usual one (no winter is ever masked).
    """
    temp = xr.DataArray(
        np.asarray(temperature, dtype=np.float64),
        dims=("time", "depth"),
        coords={"time": np.asarray(time), "depth": [float(d) for d in depths]},
    )
    labels = winter_labels(temp["time"], events.winter_start_month).values
    anomaly = np.full(temp.shape, np.nan)
    for group in groups:
        bg = compute_background(temp, config, events, [*exclude_winters, *group])
        days = np.isin(labels, list(group))
        anomaly[days] = (temp - bg).values[days]
    flagged = event_days(xr.DataArray(anomaly, dims=temp.dims, coords=temp.coords), config=events)
    flags = np.where(np.isfinite(anomaly), flagged.values.astype(np.float64), np.nan)
    return anomaly, flags


@dataclass
class AlignedSeries:
    """Predictors and targets on one consecutive daily axis.

    Attributes
    ----------
    time : numpy.ndarray
        ``(T,)`` datetime64 days.
    predictors : numpy.ndarray
        ``(T, F)`` physical predictors.
    feature_names : tuple of str
        ``<variable>@<region>`` per column.
    temperature : numpy.ndarray
        ``(T, D)`` observed daily temperature (°C), NaN where unobserved.
    background : numpy.ndarray
        ``(T, D)`` background (°C).
    anomaly : numpy.ndarray
        ``(T, D)`` observed anomaly (°C), the training target.
    events : numpy.ndarray
        ``(T, D)`` observed event days (1/0, NaN where unobserved).
    depths : tuple of float
        Depths (m).
    info : dict
        Periods and counts (for the model directory).
    """

    time: npt.NDArray[Any]
    predictors: FloatArray
    feature_names: tuple[str, ...]
    temperature: FloatArray
    background: FloatArray
    anomaly: FloatArray
    events: FloatArray
    depths: tuple[float, ...]
    info: dict[str, Any] = field(default_factory=dict)


def align_series(
    features: xr.DataArray,
    temperature: xr.DataArray,
    background: BackgroundConfig,
    events: EventConfig,
    exclude_winters: Sequence[int] = (),
    spinup_days: int = 730,
) -> AlignedSeries:
    """Cut predictors and observations to a common daily axis and build the targets.

    The axis runs from ``spinup_days`` before the first observed day (context
    for the first targets: the model needs ≥ 1 year of predictors before a
    scored day) to the last observed day, within the predictor period.

    Parameters
    ----------
    features : xarray.DataArray
        ``(time, feature)`` predictors from :func:`flatten_predictors`.
    temperature : xarray.DataArray
        ``(time, depth)`` daily observed temperature (°C).
    background, events : BackgroundConfig, EventConfig
        Target treatment and event definition.
    exclude_winters : sequence of int
        Winters kept out of the background estimate (test winters).
    spinup_days : int
        Predictor days kept before the first observation.

    Raises
    ------
    TargetError
        If the predictor and observation periods do not overlap.
    """
    p_days = _days(features["time"].values)
    o_days = _days(temperature["time"].values)
    observed = o_days[np.isfinite(temperature.values).any(axis=1)]
    p_span = f"{p_days[0].date()}–{p_days[-1].date()}" if len(p_days) else "empty"
    o_span = f"{observed[0].date()}–{observed[-1].date()}" if len(observed) else "empty"
    inside = observed[(observed >= p_days[0]) & (observed <= p_days[-1])] if len(p_days) else []
    if len(inside) == 0:
        raise TargetError(
            f"no overlap between the predictor period ({p_span}) and the observed "
            f"period ({o_span}): nothing to train on"
        )
    start = max(p_days[0], inside[0] - pd.Timedelta(days=spinup_days))
    end = inside[-1]
    axis = pd.date_range(start, end, freq="D")
    feats = features.assign_coords(time=p_days).reindex(time=axis)
    temp = temperature.transpose("time", "depth").assign_coords(time=o_days).reindex(time=axis)
    bg = compute_background(temp, background, events, exclude_winters)
    anomaly = temp - bg
    flags = event_days(anomaly, config=events)
    ev = np.where(np.isfinite(anomaly.values), flags.values.astype(np.float64), np.nan)
    depths = tuple(float(d) for d in temp["depth"].values)
    info = {
        "predictor_period": p_span,
        "observed_period": o_span,
        "series_period": f"{axis[0].date()}–{axis[-1].date()}",
        "n_days": len(axis),
        "n_observed_days": {
            f"{d:g}": int(np.isfinite(temp.values[:, j]).sum()) for j, d in enumerate(depths)
        },
        "n_missing_predictor_values": int(np.isnan(feats.values).sum()),
    }
    return AlignedSeries(
        time=axis.values,
        predictors=np.asarray(feats.values, dtype=np.float64),
        feature_names=tuple(str(f) for f in features["feature"].values),
        temperature=np.asarray(temp.values, dtype=np.float64),
        background=np.asarray(bg.values, dtype=np.float64),
        anomaly=np.asarray(anomaly.values, dtype=np.float64),
        events=ev,
        depths=depths,
        info=info,
    )
