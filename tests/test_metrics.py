"""Scores against hand-computed and scipy references; baselines on known signals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from cascadia.learning.baselines import (
    BuoyancyRegressionBaseline,
    ClimatologyBaseline,
    PersistenceBaseline,
    buoyancy_indices,
    climatological_sst,
    surface_fluxes,
)
from cascadia.learning.metrics import (
    contingency_scores,
    crps_gaussian,
    crps_mixture,
    csi,
    far,
    gaussian_interval,
    interval_coverage,
    kge,
    nse,
    pod,
    rmse,
    spread_skill_ratio,
)
from cascadia.learning.verification import matched_contingency

OBS = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
PRED = np.array([1.5, 2.0, 2.0, 5.0, 9.0])


def test_rmse_nse_kge_by_hand_with_nan() -> None:
    # valid pairs: errors 0.5, 0, -1, 1 → MSE 2.25/4
    assert rmse(OBS, PRED) == pytest.approx(np.sqrt(2.25 / 4))
    # Σ(o − ō)² = 5 for 1..4
    assert nse(OBS, PRED) == pytest.approx(1 - 2.25 / 5)
    o, p = OBS[:4], PRED[:4]
    r = stats.pearsonr(o, p).statistic
    alpha, beta = p.std() / o.std(), p.mean() / o.mean()
    value, r_, a_, b_ = kge(OBS, PRED, components=True)
    assert (r_, a_, b_) == pytest.approx((r, alpha, beta))
    assert value == pytest.approx(1 - np.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2))
    assert kge(o, o) == pytest.approx(1.0) and nse(o, o) == pytest.approx(1.0)


def test_scores_reduce_along_an_axis() -> None:
    obs = np.stack([OBS, 2 * OBS], axis=1)  # (time, depth)
    pred = np.stack([PRED, 2 * PRED], axis=1)
    per_depth = rmse(obs, pred, axis=0)
    np.testing.assert_allclose(per_depth, [rmse(OBS, PRED), 2 * rmse(OBS, PRED)])
    assert np.isnan(rmse([np.nan], [1.0]))


def _crps_numeric(cdf, y: float, lo: float, hi: float) -> float:
    left = integrate.quad(lambda x: cdf(x) ** 2, lo, y, limit=200)[0]
    right = integrate.quad(lambda x: (1 - cdf(x)) ** 2, y, hi, limit=200)[0]
    return left + right


@pytest.mark.parametrize(("y", "mu", "sigma"), [(0.3, 0.0, 1.0), (-1.2, 0.5, 0.4), (2.0, 2.0, 0.1)])
def test_crps_gaussian_matches_the_integral(y: float, mu: float, sigma: float) -> None:
    ref = _crps_numeric(stats.norm(mu, sigma).cdf, y, mu - 12 * sigma, mu + 12 * sigma)
    assert crps_gaussian(y, mu, sigma) == pytest.approx(ref, rel=1e-6)


def test_crps_gaussian_tends_to_absolute_error_and_skips_nan() -> None:
    assert crps_gaussian(1.0, 0.2, 1e-9) == pytest.approx(0.8, rel=1e-6)
    pointwise = crps_gaussian([0.0, np.nan, 1.0], 0.0, 1.0, reduce=False)
    assert np.isnan(pointwise[1])
    assert crps_gaussian([0.0, np.nan, 1.0], 0.0, 1.0) == pytest.approx(np.nanmean(pointwise))


def test_crps_mixture_matches_the_integral_and_sampling() -> None:
    mu = np.array([-0.5, 0.2, 1.0])
    sigma = np.array([0.3, 0.6, 0.2])
    y = 0.4

    def cdf(x: float) -> float:
        return float(np.mean(stats.norm.cdf(x, mu, sigma)))

    ref = _crps_numeric(cdf, y, -10.0, 10.0)
    assert crps_mixture(y, mu, sigma) == pytest.approx(ref, rel=1e-6)
    # Energy form E|X − y| − ½E|X − X'| with a fixed seed.
    rng = np.random.default_rng(0)
    k = rng.integers(0, 3, size=(2, 400_000))
    x1, x2 = rng.normal(mu[k[0]], sigma[k[0]]), rng.normal(mu[k[1]], sigma[k[1]])
    sampled = np.mean(np.abs(x1 - y)) - 0.5 * np.mean(np.abs(x1 - x2))
    assert crps_mixture(y, mu, sigma) == pytest.approx(sampled, abs=3e-3)


def test_crps_mixture_of_one_and_of_identical_members_is_gaussian() -> None:
    obs = np.array([0.1, -0.3, np.nan])
    mu = np.array([[0.0], [0.2], [0.0]])
    sd = np.array([[0.5], [0.1], [0.5]])
    np.testing.assert_allclose(
        crps_mixture(obs, mu, sd, reduce=False),
        crps_gaussian(obs, mu[:, 0], sd[:, 0], reduce=False),
        rtol=1e-12,
    )
    same = crps_mixture(obs, np.repeat(mu, 4, 1), np.repeat(sd, 4, 1), reduce=False)
    np.testing.assert_allclose(same, crps_gaussian(obs, mu[:, 0], sd[:, 0], reduce=False))
    # A NaN member is dropped: the remaining one is scored.
    with_nan = crps_mixture(0.1, np.array([0.0, np.nan]), np.array([0.5, 0.5]))
    assert with_nan == pytest.approx(crps_gaussian(0.1, 0.0, 0.5))


def test_interval_coverage_and_spread_skill() -> None:
    lo, hi = gaussian_interval(0.0, 2.0, level=0.9)
    assert hi == pytest.approx(2.0 * stats.norm.ppf(0.95)) and lo == pytest.approx(-hi)
    obs = np.array([0.0, 1.0, 5.0, -4.0, np.nan])
    assert interval_coverage(obs, -3.0, 3.0) == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    y = rng.normal(0.0, 1.0, 200_000)
    lo, hi = gaussian_interval(np.zeros_like(y), np.ones_like(y))
    assert interval_coverage(y, lo, hi) == pytest.approx(0.9, abs=0.005)
    assert spread_skill_ratio(y, 0.0, 1.0) == pytest.approx(1.0, abs=0.01)
    # hand: spread √((1+4)/2), errors 1, 1 → RMSE 1
    assert spread_skill_ratio([1.0, -1.0], [0.0, 0.0], [1.0, 2.0]) == pytest.approx(np.sqrt(2.5))


def test_same_week_and_exact_day_hit_rates() -> None:
    obs = np.zeros(30, dtype=bool)
    obs[[5, 6, 7, 20]] = True
    pred = np.zeros(30)
    pred[[7, 9]] = 1.0  # day 7 exact; 5, 6 within ±3 of 7 or 9; day 20 missed
    week = matched_contingency(obs, pred, half_window_days=3)
    assert week.observed_days == 4
    assert matched_contingency(obs, pred, half_window_days=0).pod == pytest.approx(1 / 4)
    assert week.pod == pytest.approx(3 / 4)
    pred[20] = np.nan  # an unknown prediction is not scored
    assert matched_contingency(obs, pred).observed_days == 3
    assert np.isnan(matched_contingency(np.zeros(5), np.ones(5)).pod)


def test_contingency_pod_far_csi_by_hand() -> None:
    obs = np.array([1, 1, 1, 0, 0, 0, 0, np.nan])
    pred = np.array([1, 1, 0, 1, 0, 0, 0, 1], dtype=float)
    table = contingency_scores(obs, pred)
    assert (table.hits, table.misses, table.false_alarms, table.correct_negatives) == (2, 1, 1, 3)
    assert pod(obs, pred) == pytest.approx(2 / 3)
    assert far(obs, pred) == pytest.approx(1 / 3)
    assert csi(obs, pred) == pytest.approx(2 / 4)
    assert np.isnan(far([True, False], [False, False]))


# ------------------------------------------------------------------ baselines


def _daily(start: str = "2000-11-01", end: str = "2006-10-31") -> pd.DatetimeIndex:
    return pd.date_range(start, end, freq="D")


def test_climatology_recovers_a_seasonal_cycle_from_training_winters() -> None:
    time = _daily()
    phase = (time.day_of_year.values - 0.5) / 365.25
    truth = -0.3 * np.exp(-(((phase - 0.15) / 0.05) ** 2))
    rng = np.random.default_rng(0)
    y = np.stack([truth, 0.5 * truth], 1) + rng.normal(0, 0.02, (len(time), 2))
    y[time.year == 2006] += 5.0  # a test winter that must not leak into the fit
    clim = ClimatologyBaseline(smooth_days=15).fit(time, y, [2001, 2002, 2003, 2004, 2005])
    pred = clim.predict(time)
    sel = time.year < 2006
    assert rmse(np.stack([truth, 0.5 * truth], 1)[sel], pred.mean[sel]) < 0.02
    assert np.all((pred.std > 0.01) & (pred.std < 0.05))


def test_persistence_is_last_years_same_day() -> None:
    time = _daily("2003-01-01", "2005-03-05")
    y = np.arange(len(time), dtype=float)[:, None] * np.ones((1, 2))
    shifted = PersistenceBaseline.shifted(time, y)
    i = time.get_loc("2004-02-29")
    assert shifted[i, 0] == y[time.get_loc("2003-02-28"), 0]
    assert shifted[time.get_loc("2005-03-01"), 0] == y[time.get_loc("2004-03-01"), 0]
    assert np.isnan(shifted[time.get_loc("2003-06-01"), 0])
    pers = PersistenceBaseline().fit(time, y, [2004, 2005])
    np.testing.assert_allclose(pers.std_, [365.5, 365.5], atol=1.0)


def _weather(time: pd.DatetimeIndex, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    phase = (time.day_of_year.values - 0.5) / 365.25
    n = len(time)
    return {
        "tas": 287.6 - 6.8 * np.cos(2 * np.pi * (phase - 0.055)) + rng.normal(0, 2, n),
        "hurs": np.clip(70 + rng.normal(0, 8, n), 20, 100),
        "pr": rng.gamma(0.3, 3e-5, n),
        "sfcWind": np.abs(6 + rng.normal(0, 3, n)),
        "psl": 101_500 + rng.normal(0, 600, n),
    }


def test_surface_fluxes_physics() -> None:
    time = pd.DatetimeIndex(["2005-02-01", "2005-02-01", "2005-08-01"])
    cold_windy_dry = {"tas": 276.0, "hurs": 40.0, "sfcWind": 15.0, "psl": 102_000.0, "pr": 0.0}
    mild_calm = {"tas": 285.0, "hurs": 85.0, "sfcWind": 3.0, "psl": 101_000.0, "pr": 0.0}
    summer = {"tas": 297.0, "hurs": 70.0, "sfcWind": 4.0, "psl": 101_500.0, "pr": 0.0}
    pred = {k: np.array([cold_windy_dry[k], mild_calm[k], summer[k]]) for k in cold_windy_dry}
    flux = surface_fluxes(pred, time)
    np.testing.assert_allclose(flux.sst, climatological_sst(time))
    assert flux.sst[0] == pytest.approx(13.0, abs=0.3)
    # A Tramontane day: several hundred W m-2 lost, strong buoyancy loss.
    assert -900 < flux.q_net[0] < -300
    assert flux.buoyancy_loss[0] > 5 * max(flux.buoyancy_loss[1], 1e-9)
    assert flux.q_net[2] > 0 and flux.buoyancy_loss[2] < 0  # summer: the sea gains heat
    wet = dict(pred, pr=np.array([1e-3, 0.0, 0.0]))  # 86 mm/day of rain freshens
    assert surface_fluxes(wet, time).buoyancy_loss[0] < flux.buoyancy_loss[0]
    with pytest.raises(KeyError, match="huss or hurs"):
        surface_fluxes({k: v for k, v in pred.items() if k != "hurs"}, time)


def test_buoyancy_indices_accumulate_by_winter() -> None:
    time = _daily("2000-05-01", "2002-04-30")
    b = np.full(len(time), 1e-8)
    idx = buoyancy_indices(b, time, recent_days=30)
    first_nov = time.get_loc("2000-11-01")
    assert idx["winter_loss"][first_nov] == pytest.approx(1e-8 * 86400)
    assert idx["winter_loss"][first_nov - 1] == pytest.approx(1e-8 * 86400 * 184)  # since 1 May
    assert idx["recent_loss"][-1] == pytest.approx(1e-8 * 86400 * 30)
    assert idx["stratification"][first_nov] == pytest.approx(-1e-8 * 86400 * 184)
    assert np.isnan(idx["stratification"][0])  # May–Oct 1999 not covered


def test_buoyancy_regression_beats_climatology_when_the_index_drives_the_target() -> None:
    time = _daily("1999-05-01", "2011-10-31")
    weather = _weather(time)
    weather["tas"] -= 3.0 * np.repeat(np.random.default_rng(5).normal(0, 1, 14), 366)[: len(time)]
    flux = surface_fluxes(weather, time)
    idx = buoyancy_indices(flux.buoyancy_loss, time)
    z = (idx["winter_loss"] - idx["winter_loss"].mean()) / idx["winter_loss"].std()
    y = np.stack([-0.1 * z, -0.05 * z], 1) + np.random.default_rng(1).normal(
        0, 0.02, (len(time), 2)
    )
    train, test = list(range(2000, 2009)), [2009, 2010, 2011]
    reg = BuoyancyRegressionBaseline().fit(time, y, train, weather)
    clim = ClimatologyBaseline().fit(time, y, train)
    sel = np.isin(time.year + (time.month >= 11), test)
    p_reg, p_clim = reg.predict(time, weather), clim.predict(time)
    assert rmse(y[sel], p_reg.mean[sel]) < 0.03
    assert crps_gaussian(y[sel], p_reg.mean[sel], p_reg.std[sel]) < 0.5 * crps_gaussian(
        y[sel], p_clim.mean[sel], p_clim.std[sel]
    )
