"""The autocorrelation-corrected Mann-Kendall test: power on a planted trend, size on red noise.

The size check is the one a user relies on when reading a p-value: on 200 pure AR(1)
series (phi = 0.5, no trend) a 5 % test must reject about 10 of them; the count must lie
in the 99 % binomial interval of Bin(200, 0.05). An uncorrected Mann-Kendall test rejects
about a quarter of them (checked below, so the series are red enough to matter).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from cascadia.run.trends import emergence_winter, mann_kendall, trend_statistics

N_SERIES = 200
WINTERS = np.arange(1951, 2051)  # 100 winters


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float = 1.0) -> np.ndarray:
    x = np.empty(n + 50)
    x[0] = rng.normal(0, sigma / np.sqrt(1 - phi**2))
    for i in range(1, x.size):
        x[i] = phi * x[i - 1] + rng.normal(0, sigma)
    return x[50:]


def _plain_pvalue(x: np.ndarray) -> float:
    """Mann-Kendall without any autocorrelation correction (scipy's Kendall tau vs time)."""
    return float(stats.kendalltau(np.arange(x.size), x).pvalue)


def test_rejects_pure_ar1_at_its_nominal_rate() -> None:
    rng = np.random.default_rng(20240514)
    series = [_ar1(rng, WINTERS.size, 0.5) for _ in range(N_SERIES)]
    pvalues = np.array([mann_kendall(x, WINTERS).pvalue for x in series])
    rejected = int((pvalues < 0.05).sum())
    low, high = stats.binom.interval(0.99, N_SERIES, 0.05)
    assert low <= rejected <= high, (rejected, low, high)
    # the naive test is fooled by the persistence
    naive = int(sum(_plain_pvalue(x) < 0.05 for x in series))
    assert naive > high, naive
    # the inflation factor is about (1 + phi) / (1 - phi) = 3 for phi = 0.5
    ratios = [mann_kendall(x, WINTERS).variance_ratio for x in series[:50]]
    assert 2.0 < np.median(ratios) < 4.0


def test_recovers_a_planted_trend() -> None:
    rng = np.random.default_rng(5)
    slope = -0.08  # event days per winter, as a decline of cascading
    hits, slopes, covered = 0, [], 0
    for _ in range(50):
        x = 15.0 + slope * (WINTERS - WINTERS[0]) + _ar1(rng, WINTERS.size, 0.5, sigma=1.5)
        trend = mann_kendall(x, WINTERS)
        hits += trend.pvalue < 0.05
        slopes.append(trend.slope)
        covered += trend.slope_low <= slope <= trend.slope_high
    assert hits >= 45  # power
    assert np.median(slopes) == pytest.approx(slope, abs=0.01)
    assert covered >= 42  # the 95 % interval holds the planted slope (binomial 99 %: >= 43)


def test_ties_gaps_and_short_series() -> None:
    # integer counts with many zeros, a gap: the test still runs on the finite winters
    x = np.array([0, 0, 3, 0, 5, 0, 0, 2, np.nan, 0, 0, 1, 0, 0, 0, 0], dtype=float)
    t = np.arange(2000, 2016)
    trend = mann_kendall(x, t)
    assert trend.winters == 15 and 0 < trend.pvalue <= 1
    assert np.isnan(mann_kendall(x[:5], t[:5]).pvalue)  # fewer than 10 winters
    flat = mann_kendall(np.zeros(20), np.arange(20))
    assert flat.slope == 0.0 and flat.pvalue == 1.0


def test_trend_statistics_on_arrays_equals_the_function() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(2, 3, WINTERS.size)) + 0.05 * np.arange(WINTERS.size)
    da = xr.DataArray(values, dims=("experiment", "depth", "winter"), coords={"winter": WINTERS})
    out = trend_statistics(da)
    for i in range(2):
        for j in range(3):
            one = mann_kendall(values[i, j], WINTERS)
            assert float(out["slope"][i, j]) == one.slope
            assert float(out["pvalue"][i, j]) == one.pvalue
            assert float(out["winters"][i, j]) == WINTERS.size


def test_emergence_winter() -> None:
    winters = np.arange(2000, 2011)
    signal = np.array([0.0, -0.5, -1.2, -2.5, -1.9, -2.2, -2.6, -3.0, np.nan, -3.5, -4.0])
    da = xr.DataArray(signal, dims="winter", coords={"winter": winters})
    # beyond 2 x 1.0 from 2005 on (2004 falls back to -1.9); the NaN winter is skipped
    assert float(emergence_winter(da, xr.DataArray(1.0))) == 2005
    assert np.isnan(float(emergence_winter(da, xr.DataArray(2.5))))  # never beyond 5
    assert float(emergence_winter(-da, xr.DataArray(1.0))) == 2005  # a rise alike
    assert np.isnan(float(emergence_winter(da, xr.DataArray(0.0))))  # no noise estimated
