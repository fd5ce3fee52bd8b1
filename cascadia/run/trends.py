"""Trends of winter series and the time of emergence of a forced change.

Why: winter event days are counts with ties and strong year-to-year persistence (deep
water preconditions the next winter), so an ordinary regression or a plain Mann-Kendall
test finds "significant" trends in pure red noise. Here:

* the Mann-Kendall statistic *S* (with the tie correction of its variance) is tested
  with its variance inflated for lag-1 autocorrelation by the effective-sample-size
  factor of Yue & Wang (2004), ``n/n* = 1 + 2 sum_{k=1}^{n-1} (1 - k/n) phi^k``, where
  ``phi`` is the lag-1 autocorrelation of the series detrended by its Sen slope,
  corrected for its first-order bias after removing a mean and a trend,
  ``phi = (n r1 + 2) / (n - 4)``. On simulated AR(1) series with ``phi`` = 0.5 this
  test rejects at 4.7-6.5 % for a nominal 5 % (n = 30-150); the Hamed & Rao (1998) rank
  correction with significant lags only rejected at 15-17 % (docs/spread.md);
* the slope is Sen's (the median of the pairwise slopes) with its confidence interval
  from the same inflated variance of *S* (Gilbert 1987, as ``scipy.stats.theilslopes``
  computes it for independent data).

Time of emergence: the first winter from which the smoothed change stays beyond
``k`` standard deviations of internal variability (``k`` = 2), on the side of its last
value; NaN when it has not emerged by the last winter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import stats

TREND_FIELDS: tuple[str, ...] = ("slope", "slope_low", "slope_high", "pvalue", "winters")
MIN_WINTERS = 10
EMERGENCE_SIGMAS = 2.0


@dataclass(frozen=True)
class Trend:
    """Sen slope (per unit of ``times``), its confidence interval, the autocorrelation-
    corrected Mann-Kendall p-value (two-sided) and the number of values used."""

    slope: float
    slope_low: float
    slope_high: float
    pvalue: float
    winters: int
    phi: float  # bias-corrected lag-1 autocorrelation of the detrended values
    variance_ratio: float  # n / n*: how much the variance of S was inflated


def _lag1(residuals: np.ndarray) -> float:
    centred = residuals - residuals.mean()
    denominator = float(np.sum(centred**2))
    if denominator == 0.0:
        return 0.0
    return float(np.sum(centred[:-1] * centred[1:]) / denominator)


def mann_kendall(
    values: np.ndarray,
    times: np.ndarray,
    *,
    confidence: float = 0.95,
    min_values: int = MIN_WINTERS,
) -> Trend:
    """Trend of ``values`` over ``times`` (NaN skipped), as described in the module doc.

    Fewer than ``min_values`` finite values (at least 5) give NaN statistics.
    """
    values = np.asarray(values, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    ok = np.isfinite(values) & np.isfinite(times)
    x, t = values[ok], times[ok]
    n = int(x.size)
    if n < max(min_values, 5):
        return Trend(np.nan, np.nan, np.nan, np.nan, n, np.nan, np.nan)
    order = np.argsort(t, kind="stable")
    x, t = x[order], t[order]
    i, j = np.triu_indices(n, 1)
    dx, dt = x[j] - x[i], t[j] - t[i]
    s = float(np.sign(dx).sum())
    _, ties = np.unique(x, return_counts=True)
    var_s = (n * (n - 1) * (2 * n + 5) - np.sum(ties * (ties - 1) * (2 * ties + 5))) / 18.0
    slopes = np.sort(dx / dt)
    slope = float(np.median(slopes))
    r1 = _lag1(x - slope * t)
    phi = float(np.clip((n * r1 + 2.0) / (n - 4.0), -0.99, 0.99))
    k = np.arange(1, n)
    ratio = float(1.0 + 2.0 * np.sum((1.0 - k / n) * phi**k))
    var_s *= ratio
    if var_s <= 0.0:  # every value tied: no trend to test
        return Trend(0.0, 0.0, 0.0, 1.0, n, phi, ratio)
    z = (s - np.sign(s)) / np.sqrt(var_s)
    pvalue = float(2.0 * stats.norm.sf(abs(z)))
    spread = stats.norm.ppf(0.5 + confidence / 2.0) * np.sqrt(var_s)
    low = max(round(float(slopes.size - spread) / 2.0), 0)
    high = min(round(float(slopes.size + spread) / 2.0), slopes.size - 1)
    return Trend(slope, float(slopes[low]), float(slopes[high]), pvalue, n, phi, ratio)


def _trend_fields(values: np.ndarray, times: np.ndarray, min_values: int) -> tuple[float, ...]:
    trend = mann_kendall(values, times, min_values=min_values)
    return tuple(float(getattr(trend, name)) for name in TREND_FIELDS)


def trend_statistics(
    series: xr.DataArray, *, dim: str = "winter", min_values: int = MIN_WINTERS
) -> dict[str, xr.DataArray]:
    """:func:`mann_kendall` along ``dim`` of every series: one array per :data:`TREND_FIELDS`."""
    out = xr.apply_ufunc(
        _trend_fields,
        series,
        input_core_dims=[[dim]],
        output_core_dims=[[] for _ in TREND_FIELDS],
        vectorize=True,
        kwargs={
            "times": np.asarray(series[dim].values, dtype=np.float64),
            "min_values": min_values,
        },
    )
    return dict(zip(TREND_FIELDS, out, strict=True))


def _emerged(signal: np.ndarray, threshold: float, winters: np.ndarray) -> float:
    ok = np.flatnonzero(np.isfinite(signal))
    if not ok.size or not np.isfinite(threshold) or threshold <= 0.0:
        return np.nan  # no internal variability to emerge from (e.g. never an event)
    values = signal[ok]
    if abs(values[-1]) <= threshold:
        return np.nan
    beyond = (np.abs(values) > threshold) & (np.sign(values) == np.sign(values[-1]))
    below = np.flatnonzero(~beyond)
    first = int(below[-1]) + 1 if below.size else 0
    return float(winters[ok[first]])


def emergence_winter(
    signal: xr.DataArray, noise_std: xr.DataArray, *, sigmas: float = EMERGENCE_SIGMAS
) -> xr.DataArray:
    """First winter from which ``signal`` stays beyond ``sigmas`` x ``noise_std`` (on the
    side of its last value); NaN where it has not emerged by its last winter, or where
    the noise is zero or NaN (no internal variability estimated)."""
    return xr.apply_ufunc(
        _emerged,
        signal,
        sigmas * noise_std,
        input_core_dims=[["winter"], []],
        vectorize=True,
        kwargs={"winters": np.asarray(signal["winter"].values)},
    )
