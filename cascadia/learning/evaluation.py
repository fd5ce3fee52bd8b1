"""Scoring on held-out winters: ``metrics.json``, the paired bootstrap and the report.

Every forecast — the deep ensemble, each member, each baseline — is a mixture
of Gaussians of the daily **temperature** (°C): the background plus the
predicted anomaly (a member or a baseline is a one-component mixture). All are
scored the same way, on the same test-winter days (observation finite), with
the same event definition (:func:`cascadia.mooring.events.event_days` applied to the
forecast's mean anomaly against the same background as the observations), so
that no model gains from a different denominator:

``rmse``, ``nse``, ``kge`` (on temperature), ``nse_anomaly`` (on the anomaly:
the part the background does not explain — the honest measure of cascading
skill, since the temperature NSE also credits the background's year-to-year
level), ``crps`` (exact for Gaussian mixtures), ``coverage_90`` (of the central
90 % interval), ``spread_skill`` (RMS spread / RMSE: < 1 under-dispersed, the
spread too small for the error), ``event_hit_week``, ``event_hit_day``
(fraction of observed event days predicted within ±3 days / on the day: recall
only, blind to false alarms), ``csi``, ``pod``, ``far`` and ``n_days``; and, from
:mod:`cascadia.learning.verification`, the daily contingency table (``hits``,
``misses``, ``false_alarms``, ``correct_negatives``, ``frequency_bias``), the
same-week table (``*_week``: false alarms counted too), and CRPS, coverage and
spread-skill on observed event days and on quiet days (``*_event``, ``*_quiet``).
Every key is explained in ``metrics.json`` itself (``verification.descriptions``,
:data:`METRIC_DESCRIPTIONS`).

The ``verification`` section adds, for the ensemble and every baseline, the PIT
histogram per depth with its flatness, the reliability diagram of the event
probability, and the ensemble's CRPS skill against each baseline with a BCa
bootstrap interval over whole test winters.

The ensemble is compared with its best single member (lowest test CRPS: the
strongest comparator, chosen with hindsight, which favours the member) by a
paired bootstrap over test winters: winters are resampled with replacement and
the day-weighted mean CRPS difference recomputed; the percentile interval and,
next to it, the BCa interval are reported. Winters, not days, are resampled
because days within a winter are strongly correlated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from scipy.special import ndtr
from scipy.stats import t as student_t

from cascadia.learning.metrics import (
    ContingencyScores,
    contingency_scores,
    crps_mixture,
    interval_coverage,
    kge,
    nse,
    rmse,
    spread_skill_ratio,
)
from cascadia.learning.verification import (
    MatchedContingency,
    conditioned_scores,
    coverage_interval,
    coverage_of_drawn_winters,
    crps_skill_interval,
    matched_contingency,
    mean_contingency,
    mean_matched_contingency,
    pit_histogram,
    reliability_diagram,
    winter_bootstrap,
)
from cascadia.mooring.events import EventConfig, event_days, winter_labels

__all__ = [
    "METRIC_DESCRIPTIONS",
    "Forecast",
    "bootstrap_crps_difference",
    "diebold_mariano",
    "evaluate_forecasts",
    "forecast_events",
    "verification_section",
    "write_report",
]

FloatArray = npt.NDArray[np.float64]
METRICS = (
    "rmse",
    "nse",
    "kge",
    "crps",
    "coverage_90",
    "spread_skill",
    "event_hit_week",
    "event_hit_day",
    "csi",
)
#: Half width (days) of the "same week" of the event hit rate and the same-week table.
SAME_WEEK_HALF_WINDOW = 3
#: What each per-depth score of ``metrics.json`` means (written into the file itself).
METRIC_DESCRIPTIONS: dict[str, str] = {
    "rmse": "root-mean-square error of the predictive mean (degC)",
    "nse": "Nash-Sutcliffe efficiency of the mean temperature (1; 1 perfect, 0 = the "
    "test period's own mean)",
    "kge": "Kling-Gupta efficiency of the mean temperature (1)",
    "nse_anomaly": "NSE of the anomaly against the background (1): the cascading skill",
    "crps": "continuous ranked probability score of the predictive mixture, mean over "
    "test days (degC; lower is better)",
    "coverage_90": "fraction of test days inside the central 90 % interval (1; 0.9 nominal, "
    "lower = over-confident)",
    "spread_skill": "RMS predictive spread / RMSE of the mean (1). 1: the spread matches "
    "the error; < 1: UNDER-dispersed, the spread is too small for the error "
    "(over-confident); > 1: over-dispersed. A ratio of RMS values, dominated by the "
    "largest errors (cascade days): see spread_skill_event / spread_skill_quiet",
    "event_hit_week": "RECALL ONLY: fraction of observed event days with a forecast event "
    "day within +-3 days; blind to false alarms (see far_week, csi_week); equals pod_week",
    "event_hit_day": "recall only: fraction of observed event days forecast on the day "
    "(equals pod)",
    "hits": "daily table: observed event days forecast as event days. For an ensemble "
    "whose event level is a single member's (calibration.json level_fitted_members 1, "
    "the cross-fitted default) every event key is its members' mean at that level - "
    "counts averaged, ratios from the mean counts - as the run counts event days",
    "misses": "daily table: observed event days not forecast",
    "false_alarms": "daily table: forecast event days not observed",
    "correct_negatives": "daily table: days neither observed nor forecast as event days",
    "pod": "probability of detection, hits / (hits + misses) (1)",
    "far": "false-alarm ratio, false_alarms / (hits + false_alarms) (1)",
    "csi": "critical success index, hits / (hits + misses + false_alarms) (1)",
    "frequency_bias": "forecast / observed event days, (hits + false_alarms) / (hits + "
    "misses) (1; > 1 over-forecasting); matching does not change it, so it also holds "
    "for the same-week table",
    "hits_week": "same-week table: observed event days with a forecast event day within "
    "+-3 days (counted on the observed side)",
    "misses_week": "same-week table: observed event days with no forecast event day "
    "within +-3 days",
    "false_alarms_week": "same-week table: forecast event days with no observed event day "
    "within +-3 days (counted on the forecast side)",
    "correct_negatives_week": "same-week table: days with neither an observed nor a "
    "forecast event day within +-3 days",
    "pod_week": "hits_week / (hits_week + misses_week) (1): the same-week hit rate",
    "far_week": "false_alarms_week / forecast event days (1): forecast event days with no "
    "observed event near them",
    "csi_week": "hits_week / (hits_week + misses_week + false_alarms_week) (1)",
    "crps_event": "mean CRPS on observed event days (degC)",
    "crps_quiet": "mean CRPS on observed quiet days (degC)",
    "coverage_90_event": "90 % interval coverage on observed event days (1)",
    "coverage_90_quiet": "90 % interval coverage on observed quiet days (1)",
    "spread_skill_event": "spread-skill ratio on observed event days (1; < 1 under-dispersed)",
    "spread_skill_quiet": "spread-skill ratio on observed quiet days (1; < 1 under-dispersed)",
    "n_days": "test days scored (observation and forecast finite)",
    "n_observed_event_days": "observed event days scored by the event scores",
    "n_event_days": "observed event days of the conditioned scores",
    "n_quiet_days": "observed quiet days of the conditioned scores",
}


@dataclass(frozen=True)
class Forecast:
    """A Gaussian-mixture forecast of daily temperature.

    Attributes
    ----------
    name : str
        Key in ``metrics.json`` (``ensemble``, ``member_0``, ``climatology``…).
    member_mean, member_std : numpy.ndarray
        ``(component, time, depth)`` component means and stds of the
        temperature (°C); one component for a single Gaussian.
    lower, upper : numpy.ndarray
        ``(time, depth)`` bounds of the central 90 % interval (°C).
    events : numpy.ndarray
        ``(time, depth)`` predicted event days (bool).
    event_probability : numpy.ndarray, optional
        ``(time, depth)`` forecast probability of an anomaly below the event threshold
        (1), whose reliability diagram ``metrics.json`` reports.
    member_events : numpy.ndarray, optional
        ``(member, time, depth)`` each member's event days at the ensemble's level, for
        an ensemble that counts its event days per member (a level fitted on single
        members' forecasts, :attr:`~cascadia.learning.calibration.Calibration.counts_members`):
        its event scores and per-winter counts are then the members' mean, as the run
        stores them, instead of those of ``events``.
    """

    name: str
    member_mean: FloatArray
    member_std: FloatArray
    lower: FloatArray
    upper: FloatArray
    events: npt.NDArray[np.bool_]
    event_probability: FloatArray | None = None
    member_events: npt.NDArray[np.bool_] | None = None

    @property
    def mean(self) -> FloatArray:
        """Mixture mean (°C)."""
        return self.member_mean.mean(axis=0)

    @property
    def std(self) -> FloatArray:
        """Mixture total std (°C): √(mean σ² + var μ)."""
        return np.sqrt((self.member_std**2).mean(axis=0) + self.member_mean.var(axis=0))

    def crps(self, obs: FloatArray) -> FloatArray:
        """Pointwise CRPS (°C), NaN where ``obs`` is NaN."""
        return np.asarray(
            crps_mixture(
                obs,
                np.moveaxis(self.member_mean, 0, -1),
                np.moveaxis(self.member_std, 0, -1),
                reduce=False,
            )
        )

    def pit(self, obs: FloatArray) -> FloatArray:
        """Probability integral transform: the mixture CDF at the observation (1)."""
        with np.errstate(invalid="ignore"):
            return ndtr((obs[None] - self.member_mean) / self.member_std).mean(axis=0)


def forecast_events(
    anomaly: FloatArray, time: Any, depths: Sequence[float], config: EventConfig
) -> npt.NDArray[np.bool_]:
    """Event days of a forecast's mean anomaly ``(time, depth)`` (°C)."""
    da = xr.DataArray(
        anomaly, dims=("time", "depth"), coords={"time": np.asarray(time), "depth": list(depths)}
    )
    return np.asarray(event_days(da, config=config).values, dtype=bool)


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _count(value: Any) -> int | float:
    """A day count: an integer, or a members' mean (a fraction where they disagree)."""
    value = float(value)
    return int(value) if value.is_integer() else value


def _event_tables(
    fc: Forecast, observed: FloatArray, scored: npt.NDArray[np.bool_], j: int
) -> tuple[ContingencyScores, MatchedContingency]:
    """The forecast's daily and same-week tables at depth ``j`` on the ``scored`` days.

    The members' mean tables for an ensemble that counts event days per member.
    """
    if fc.member_events is None:
        flags = np.where(scored, fc.events[:, j].astype(float), np.nan)
        return (
            contingency_scores(observed, flags),
            matched_contingency(observed, flags, SAME_WEEK_HALF_WINDOW),
        )
    per_member = [np.where(scored, m[:, j].astype(float), np.nan) for m in fc.member_events]
    return (
        mean_contingency([contingency_scores(observed, f) for f in per_member]),
        mean_matched_contingency(
            [matched_contingency(observed, f, SAME_WEEK_HALF_WINDOW) for f in per_member]
        ),
    )


def _table_scores(day: ContingencyScores, week: MatchedContingency) -> dict[str, Any]:
    """The daily and the same-week contingency tables as ``metrics.json`` keys."""
    return {
        "hits": _count(day.hits),
        "misses": _count(day.misses),
        "false_alarms": _count(day.false_alarms),
        "correct_negatives": _count(day.correct_negatives),
        "frequency_bias": _finite(day.frequency_bias),
        "hits_week": _count(week.hits),
        "misses_week": _count(week.misses),
        "false_alarms_week": _count(week.false_alarms),
        "correct_negatives_week": _count(week.correct_negatives),
        "pod_week": _finite(week.pod),
        "far_week": _finite(week.far),
        "csi_week": _finite(week.csi),
    }


def evaluate_forecasts(
    forecasts: Sequence[Forecast],
    observed: FloatArray,
    background: FloatArray,
    observed_events: FloatArray,
    test: npt.NDArray[np.bool_],
    depths: Sequence[float],
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Scores of every forecast on the test days, ``{model: {depth: {metric: value}}}``.

    Parameters
    ----------
    forecasts : sequence of Forecast
        Forecasts on the full daily axis.
    observed : numpy.ndarray
        ``(time, depth)`` observed temperature (°C), NaN where missing.
    background : numpy.ndarray
        ``(time, depth)`` background (°C).
    observed_events : numpy.ndarray
        ``(time, depth)`` observed event days (1/0, NaN unknown).
    test : numpy.ndarray
        ``(time,)`` test-winter days.
    depths : sequence of float
        Depths (m); keys are written as ``"500"``, ``"1000"``.

    Returns
    -------
    dict
        Scores; a score without any valid pair (e.g. hit rates without observed
        events) is ``None`` (JSON null).
    """
    obs = np.where(test[:, None], observed, np.nan)
    obs_ev = np.where(test[:, None], observed_events, np.nan)
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for fc in forecasts:
        mean, std = fc.mean, fc.std
        crps = fc.crps(obs)
        per_depth: dict[str, dict[str, float | None]] = {}
        for j, depth in enumerate(depths):
            o, m, s = obs[:, j], mean[:, j], std[:, j]
            scored = test & np.isfinite(m)
            table, week = _event_tables(fc, obs_ev[:, j], scored, j)
            per_depth[f"{depth:g}"] = {
                "rmse": _finite(rmse(o, m)),
                "nse": _finite(nse(o, m)),
                "kge": _finite(kge(o, m)),
                "crps": _finite(np.nanmean(crps[:, j])),
                "coverage_90": _finite(interval_coverage(o, fc.lower[:, j], fc.upper[:, j])),
                "spread_skill": _finite(spread_skill_ratio(o, m, s)),
                "event_hit_week": _finite(week.pod),
                "event_hit_day": _finite(table.pod),
                "csi": _finite(table.csi),
                "pod": _finite(table.pod),
                "far": _finite(table.far),
                "nse_anomaly": _finite(nse(o - background[:, j], m - background[:, j])),
                "n_days": int(np.isfinite(o + m).sum()),
                "n_observed_event_days": int(week.observed_days),
                **_table_scores(table, week),
                **conditioned_scores(
                    o, m, s, crps[:, j], fc.lower[:, j], fc.upper[:, j], obs_ev[:, j]
                ),
            }
        out[fc.name] = per_depth
    return out


def verification_section(
    forecasts: Sequence[Forecast],
    observed: FloatArray,
    background: FloatArray,
    observed_events: FloatArray,
    test: npt.NDArray[np.bool_],
    winters: npt.NDArray[np.int64],
    test_winters: Sequence[int],
    depths: Sequence[float],
    thresholds: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    calibration_inside: FloatArray | None = None,
) -> dict[str, Any]:
    """The ``verification`` section of ``metrics.json``: reliability and skill intervals.

    For the ensemble and every baseline (members are left out: they are not what a
    user receives), per depth: the PIT histogram of the predictive mixture on the test
    days and the reliability diagram of the event probability against the observed
    anomaly below −threshold (and the observed event-day frequency per bin); and the
    ensemble's CRPS skill against each baseline with its BCa interval over whole test
    winters.

    Parameters
    ----------
    forecasts : sequence of Forecast
        The scored forecasts; the one named ``ensemble`` is the skill's subject.
    observed, background, observed_events, test, depths
        As :func:`evaluate_forecasts`.
    winters : numpy.ndarray
        ``(time,)`` winter year of each day.
    test_winters : sequence of int
        Winters the bootstrap resamples.
    thresholds : sequence of float
        Event anomaly threshold per depth (°C, positive).
    confidence, n_resamples, seed
        Level, resamples and seed of the bootstrap.
    calibration_inside : numpy.ndarray, optional
        ``(time, depth)`` 1/0 where the calibration winters' held-out anomaly lay
        inside/outside the calibrated forecast's 90 % interval (NaN elsewhere): the
        range of coverage that as many of those winters give is what the ensemble's
        test coverage is read against (``coverage_90``).
    """
    obs = np.where(test[:, None], observed, np.nan)
    anomaly = obs - background
    below = np.where(np.isfinite(anomaly), anomaly < -np.asarray(thresholds), np.nan)
    obs_ev = np.where(test[:, None], observed_events, np.nan)
    keys = [f"{d:g}" for d in depths]
    scored = [f for f in forecasts if not f.name.startswith("member_")]
    pit: dict[str, Any] = {}
    reliability: dict[str, Any] = {}
    for fc in scored:
        values = fc.pit(obs)
        pit[fc.name] = {k: pit_histogram(values[:, j]) for j, k in enumerate(keys)}
        if fc.event_probability is not None:
            prob = np.where(test[:, None], fc.event_probability, np.nan)
            reliability[fc.name] = {
                k: reliability_diagram(prob[:, j], below[:, j], event_days=obs_ev[:, j])
                for j, k in enumerate(keys)
            }
    names = [f.name for f in scored]
    if "ensemble" not in names:
        raise ValueError(f"verification_section needs a forecast named 'ensemble', got {names}")
    ensemble = scored[names.index("ensemble")]
    crps = ensemble.crps(obs)
    against = {}
    for ref in scored:
        if ref is ensemble:
            continue
        ref_crps = ref.crps(obs)
        against[ref.name] = {
            k: crps_skill_interval(
                crps[:, j], ref_crps[:, j], winters, test_winters, confidence, n_resamples, seed
            )
            for j, k in enumerate(keys)
        }
    n_winters = len([w for w in test_winters if np.any(test & (winters == w))])
    inside = np.where(np.isfinite(obs), (obs >= ensemble.lower) & (obs <= ensemble.upper), np.nan)
    coverage: dict[str, Any] = {}
    for j, k in enumerate(keys):
        coverage[k] = coverage_interval(
            inside[:, j], winters, test_winters, confidence, n_resamples, seed
        )
        if calibration_inside is not None:
            coverage[k]["calibration_winters"] = coverage_of_drawn_winters(
                calibration_inside[:, j], winters, n_winters, confidence, seed=seed
            )
    return {
        "descriptions": METRIC_DESCRIPTIONS,
        "pit": pit,
        "pit_reading": (
            "PIT = predictive CDF at the observation, test days, 10 bins. Flat: calibrated; "
            "U-shaped (dispersion > 1): under-dispersed, observations in the tails; "
            "dome (dispersion < 1): over-dispersed; mean > 0.5: observations above the "
            "forecast. delta: Candille-Talagrand flatness ratio, about 1 for independent "
            "PITs of a calibrated forecast; days are autocorrelated, so delta and the "
            "chi-square p_value overstate the evidence (a screen, not a test)."
        ),
        "reliability": reliability,
        "reliability_reading": (
            "event probability = forecast P(anomaly < -threshold) per day, binned by "
            "tenths; observed_frequency: fraction of those test days whose observed "
            "anomaly was below -threshold (the event the probability is of); "
            "event_day_frequency: fraction that were observed event days (after the "
            "duration and gap rule); n: days per bin - a point from a few days is noise. "
            "Reliable: observed_frequency = mean_probability."
        ),
        "crps_skill": {
            "statistic": "1 - CRPS(ensemble) / CRPS(baseline), day-weighted over the test days",
            "interval": (
                "BCa bootstrap (scipy.stats.bootstrap) over whole test winters, paired: a "
                "resampled winter brings the CRPS sums of its days for both forecasts"
            ),
            "confidence": confidence,
            "n_resamples": n_resamples,
            "seed": seed,
            "n_winters": n_winters,
            "caveat": (
                f"{n_winters} test winter(s): a bootstrap over so few winters takes few "
                "distinct values and its interval is itself uncertain; in simulation "
                "(tests/test_verification.py) a nominal 95 % BCa interval over 5 winters "
                "covered the true skill in 85 % of 2000 simulated test sets (93 % with "
                "30). Read it as a rough range, not a significance test."
            ),
            "against": against,
        },
        "coverage_90": {
            "statistic": (
                "fraction of the test days whose observation lies inside the ensemble's "
                "central 90 % interval (0.9 nominal)"
            ),
            "interval": (
                "BCa bootstrap over whole test winters: a resampled winter brings its days "
                "inside and its days scored"
            ),
            "calibration_winters": (
                "the same kind of interval on the winters the calibration was fitted on "
                "(out of fold: for a cross-fitted ensemble each day's forecast by the "
                "members that never learned its winter - one member per fold by default, "
                "so slightly narrower than the five-member mixture), scored against "
                "held-out anomalies: coverage over all of them, and the central range "
                "(confidence) of the coverage of as many of them as there are test "
                "winters, drawn without replacement. Misses come in winter-long runs, so "
                "a few winters scatter widely: a test coverage inside that range is what "
                "a calibrated forecast gives on so few winters"
            ),
            "confidence": confidence,
            **coverage,
        },
    }


def _ratio_of_sums(a: FloatArray, b: FloatArray, axis: int = -1) -> FloatArray:
    return a.sum(axis=axis) / b.sum(axis=axis)


def bootstrap_crps_difference(
    a: Forecast,
    b: Forecast,
    observed: FloatArray,
    winters: npt.NDArray[np.int64],
    test_winters: Sequence[int],
    depths: Sequence[float],
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired bootstrap over test winters of mean CRPS(a) − CRPS(b) (°C; < 0: a better).

    Returns
    -------
    dict
        Per depth: ``difference`` (all test days), ``ci_low``, ``ci_high``
        (percentile interval), ``ci_low_bca``, ``ci_high_bca`` (BCa interval of
        :func:`scipy.stats.bootstrap` over the same winters; None with fewer than two),
        ``relative`` (difference / CRPS(b)), ``p_a_not_better`` (fraction of
        resamples with difference ≥ 0) and ``per_winter`` CRPS of both.
    """
    rng = np.random.default_rng(seed)
    crps_a, crps_b = a.crps(observed), b.crps(observed)
    tw = [w for w in test_winters if np.isin(winters, [w]).any()]
    draws = rng.integers(0, len(tw), size=(samples, len(tw)))
    alpha = (1.0 - confidence) / 2.0
    out: dict[str, Any] = {"a": a.name, "b": b.name, "samples": samples, "confidence": confidence}
    for j, depth in enumerate(depths):
        sums, counts, per_winter = [], [], {}
        for w in tw:
            sel = (winters == w) & np.isfinite(crps_a[:, j]) & np.isfinite(crps_b[:, j])
            d = crps_a[sel, j] - crps_b[sel, j]
            sums.append(d.sum())
            counts.append(sel.sum())
            per_winter[str(w)] = {
                a.name: _finite(crps_a[sel, j].mean()) if sel.any() else None,
                b.name: _finite(crps_b[sel, j].mean()) if sel.any() else None,
                "days": int(sel.sum()),
            }
        s, c = np.asarray(sums), np.asarray(counts, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = s[draws].sum(axis=1) / c[draws].sum(axis=1)
        boot = boot[np.isfinite(boot)]
        total = s.sum() / max(c.sum(), 1.0)
        sel_all = np.isfinite(crps_b[:, j]) & np.isfinite(crps_a[:, j])
        base = float(crps_b[sel_all, j].mean()) if sel_all.any() else float("nan")
        has_days = c > 0
        bca_low, bca_high, _ = winter_bootstrap(
            (s[has_days], c[has_days]), _ratio_of_sums, confidence, samples, seed
        )
        out[f"{depth:g}"] = {
            "difference": _finite(total),
            "ci_low": _finite(np.quantile(boot, alpha)) if boot.size else None,
            "ci_high": _finite(np.quantile(boot, 1.0 - alpha)) if boot.size else None,
            "ci_low_bca": bca_low,
            "ci_high_bca": bca_high,
            "relative": _finite(total / base) if base > 0 else None,
            "p_a_not_better": _finite((boot >= 0).mean()) if boot.size else None,
            "per_winter": per_winter,
        }
    return out


def diebold_mariano(
    differences: npt.ArrayLike, horizon: int = 1, confidence: float = 0.95
) -> dict[str, float | int | None]:
    """Diebold–Mariano test of equal accuracy, with the Harvey et al. (1997) correction.

    ``differences`` are loss differentials d_t = L(a)_t − L(b)_t (e.g. per-winter
    mean CRPS; < 0: a better). DM = d̄ / √(V/n) with V = γ₀ + 2 Σ_{k<h} γ_k
    (autocovariances of d, divisor n); the small-sample statistic multiplies it by
    √((n + 1 − 2h + h(h − 1)/n) / n) and is referred to Student's t with n − 1
    degrees of freedom. Why: with a handful of test winters the asymptotic normal
    DM test rejects far too often; for h = 1 the corrected statistic is exactly
    the paired t statistic. The interval for the mean differential inverts the
    corrected test.

    Returns
    -------
    dict
        ``mean``, ``statistic``, ``p_value`` (two-sided), ``ci_low``, ``ci_high``
        and ``n``; None where undefined (n < 2 or a non-positive variance).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    d = np.asarray(differences, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    n = d.size
    out: dict[str, float | int | None] = {
        "mean": _finite(d.mean()) if n else None,
        "statistic": None,
        "p_value": None,
        "ci_low": None,
        "ci_high": None,
        "n": int(n),
        "horizon": horizon,
    }
    if n < 2 or horizon >= n:
        return out
    dev = d - d.mean()
    gamma = [float(dev[k:] @ dev[: n - k]) / n for k in range(horizon)]
    variance = gamma[0] + 2.0 * sum(gamma[1:])
    if not variance > 0:
        return out
    correction = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    scale = math.sqrt(variance / n) / correction
    statistic = float(d.mean()) / scale
    quantile = float(student_t.ppf(0.5 + confidence / 2.0, n - 1))
    out.update(
        statistic=_finite(statistic),
        p_value=_finite(2.0 * student_t.sf(abs(statistic), n - 1)),
        ci_low=_finite(d.mean() - quantile * scale),
        ci_high=_finite(d.mean() + quantile * scale),
    )
    return out


def _winter_count(fc: Forecast, days: npt.NDArray[np.bool_], j: int) -> int | float:
    """A forecast's event days among ``days`` at depth ``j`` (its members' mean count)."""
    if fc.member_events is None:
        return int(fc.events[days, j].sum())
    return _count(fc.member_events[:, days, j].sum(axis=1).mean())


def per_winter_event_days(
    forecasts: Sequence[Forecast],
    observed_events: FloatArray,
    winters: npt.NDArray[np.int64],
    test_winters: Sequence[int],
    depths: Sequence[float],
) -> dict[str, dict[str, dict[str, int | float]]]:
    """Event days per test winter: ``{depth: {winter: {"observed": n, model: n}}}``."""
    out: dict[str, dict[str, dict[str, int | float]]] = {}
    for j, depth in enumerate(depths):
        rows: dict[str, dict[str, int | float]] = {}
        for w in test_winters:
            sel = winters == w
            row = {"observed": int(np.nansum(observed_events[sel, j] > 0.5))}
            row.update({fc.name: _winter_count(fc, sel, j) for fc in forecasts})
            rows[str(w)] = row
        out[f"{depth:g}"] = rows
    return out


# ---------------------------------------------------------------------- report


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _comparison_line(comparison: Mapping[str, Any], key: str, label: str) -> str:
    """One sentence: CRPS(a) − CRPS(b) at a depth with its bootstrap interval."""
    row = comparison[key]
    bca = (
        f"; BCa {_fmt(row['ci_low_bca'], 4)} … {_fmt(row['ci_high_bca'], 4)}"
        if row.get("ci_low_bca") is not None
        else ""
    )
    return (
        f"- CRPS {comparison['a']} − {comparison['b']} ({label}): "
        f"{_fmt(row['difference'], 4)} °C ({int(100 * comparison['confidence'])} % CI "
        f"{_fmt(row['ci_low'], 4)} … {_fmt(row['ci_high'], 4)}{bca}; paired bootstrap over "
        f"test winters, {comparison['samples']} resamples)."
    )


#: Columns of the report's event and conditioned-score table.
_VERIFICATION_COLUMNS = (
    "hits",
    "misses",
    "false_alarms",
    "correct_negatives",
    "pod",
    "far",
    "csi",
    "frequency_bias",
    "hits_week",
    "false_alarms_week",
    "far_week",
    "csi_week",
    "crps_event",
    "crps_quiet",
    "coverage_90_event",
    "coverage_90_quiet",
    "spread_skill_event",
    "spread_skill_quiet",
)


def _verification_lines(
    metrics: Mapping[str, Mapping[str, Mapping[str, Any]]],
    verification: Mapping[str, Any],
    key: str,
) -> list[str]:
    """Event tables, event/quiet-day scores and skill intervals at one depth (markdown)."""
    models = [m for m in metrics if not m.startswith("member_")]
    lines = [
        f"Events and event/quiet days at {key} m (daily table; `_week`: ±3-day matching, "
        "where `event_hit_week` above is the recall `hits_week / observed event days` "
        "only; spread-skill < 1 = spread too small for the error):",
        "",
        "| model | " + " | ".join(_VERIFICATION_COLUMNS) + " |",
        "|---" * (len(_VERIFICATION_COLUMNS) + 1) + "|",
    ]
    for model in models:
        row = metrics[model][key]
        cells = [
            str(row[c]) if isinstance(row[c], int) else _fmt(row[c]) for c in _VERIFICATION_COLUMNS
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    skill = verification["crps_skill"]
    level = f"{100 * skill['confidence']:.0f} %"
    lines += ["", f"CRPS skill of the ensemble ({level} BCa interval over test winters):", ""]
    for name, per_depth in skill["against"].items():
        row = per_depth[key]
        interval = (
            f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
            if row["ci_low"] is not None
            else f"no interval: {row['note']}"
        )
        lines.append(f"- vs {name}: {_fmt(row['skill'])} {interval}")
    pit = verification["pit"]["ensemble"][key]
    lines += ["", skill["caveat"], "", *_coverage_lines(verification, key)]
    lines += [
        f"Ensemble PIT at {key} m: δ {_fmt(pit['delta'], 2)} (≈ 1 flat), dispersion "
        f"{_fmt(pit['dispersion'], 2)} (> 1 U-shaped: under-dispersed, < 1 dome: "
        f"over-dispersed), mean {_fmt(pit['mean'], 2)} over {pit['n']} days.",
        "",
    ]
    return lines


def _coverage_lines(verification: Mapping[str, Any], key: str) -> list[str]:
    """The test coverage, its interval over winters and what calibration winters give."""
    section = verification.get("coverage_90", {})
    row = section.get(key)
    if row is None or row["coverage"] is None:  # metrics written before it existed
        return []
    level = f"{100 * section['confidence']:.0f} %"
    interval = (
        f"{level} BCa interval over test winters [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
        if row["ci_low"] is not None
        else f"no interval: {row['note']}"
    )
    per_winter = ", ".join(f"{w} {_fmt(v, 2)}" for w, v in row["per_winter"].items())
    line = (
        f"Coverage of the ensemble's 90 % interval at {key} m: {_fmt(row['coverage'])} "
        f"({interval}; per winter {per_winter})."
    )
    drawn = row.get("calibration_winters")
    if drawn and drawn["low"] is not None:
        line += (
            f" On the {drawn['n_pool_winters']} winters it was calibrated on, the "
            f"calibrated interval covered {_fmt(drawn['coverage'])}; {drawn['n_winters_drawn']} "
            f"of them drawn at random cover {_fmt(drawn['low'])} … {_fmt(drawn['high'])} "
            f"({level} of draws): misses come in winter-long runs, so a test coverage "
            "inside that range is what a calibrated interval gives on so few winters."
        )
    return [line, ""]


def _split_lines(splits: Mapping[str, Mapping[str, Any]], depths: Sequence[float]) -> list[str]:
    """The warm, cold and strong splits beside the random split: can the design extrapolate?"""
    lines = [
        "## Extrapolation checks",
        "",
        "The same design trained on two thirds of the winters ranked by November-April shelf "
        "air temperature and scored on the other, most extreme third (warm split: the "
        "warmest, as in the projections; cold split: the coldest, as before the record), "
        "and on the strongest tenth of the cascades (strong split: cascades stronger than "
        "any learned; its ratio is above 1 by construction, read it beside gradient "
        "boosting). CRPS ratio: split over random split (above 1: worse than on the random "
        "test winters).",
        "",
        "| split | test winters | depth | CRPS | ratio to random | NSE | same-week hit | "
        "frequency bias | gradient boosting CRPS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for side, section in splits.items():
        winters = ", ".join(str(w) for w in section["test_winters"])
        for depth in depths:
            key = f"{depth:g}"
            row = section["ensemble"][key]
            boosting = section.get("gradient_boosting", {}).get(key, {}).get("crps")
            ratio = section[f"crps_ratio_{side}_to_random"].get(key)
            cells = [_fmt(row.get("crps"), 4), _fmt(ratio, 2), _fmt(row.get("nse"), 2)]
            cells += [_fmt(row.get("event_hit_week"), 2), _fmt(row.get("frequency_bias"), 2)]
            cells.append(_fmt(boosting, 4))
            lines.append(f"| {side} | {winters} | {key} m | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _reliability_figure(
    path: Path, verification: Mapping[str, Any], depths: Sequence[float]
) -> Path:
    """Reliability diagram of the event probability, one panel per depth, with counts."""
    fig = _figure(4.2 * len(depths), 4.4)
    for j, depth in enumerate(depths):
        key = f"{depth:g}"
        ax = fig.add_subplot(1, len(depths), j + 1)
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, label="reliable")
        for name, per_depth in verification["reliability"].items():
            diagram = per_depth[key]
            pairs = [
                (p, f, n)
                for p, f, n in zip(
                    diagram["mean_probability"],
                    diagram["observed_frequency"],
                    diagram["n"],
                    strict=True,
                )
                if n > 0 and p is not None and f is not None
            ]
            if not pairs:
                continue
            p, f, n = (np.asarray(v, dtype=np.float64) for v in zip(*pairs, strict=True))
            style = {"lw": 1.8, "zorder": 3} if name == "ensemble" else {"lw": 0.9, "alpha": 0.7}
            (line,) = ax.plot(p, f, marker="o", ms=3, label=name, **style)
            if name == "ensemble":
                for x, y, count in zip(p, f, n, strict=True):
                    ax.annotate(
                        f"{int(count)}",
                        (x, y),
                        xytext=(3, -9),
                        textcoords="offset points",
                        fontsize=6,
                        color=line.get_color(),
                    )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("forecast P(anomaly < −threshold)")
        ax.set_ylabel("observed frequency")
        ax.set_title(f"{key} m, test days (numbers: ensemble days per bin)", fontsize=8)
    fig.axes[0].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def write_report(
    directory: Path,
    metrics: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    comparison: Mapping[str, Any],
    winter_events: Mapping[str, Mapping[str, Mapping[str, int]]],
    ensemble: Forecast,
    baselines: Sequence[Forecast],
    time: Any,
    observed: FloatArray,
    background: FloatArray,
    test: npt.NDArray[np.bool_],
    test_winters: Sequence[int],
    depths: Sequence[float],
    header: Sequence[str] = (),
    verification: Mapping[str, Any] | None = None,
    splits: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Path]:
    """Write ``report.md`` and its PNGs (hindcast, scatter, event bars, PIT) in ``directory``.

    With ``verification`` (the section of :func:`verification_section`) the report adds
    ``reliability.png``, the PIT flatness, the event tables, the event/quiet-day scores
    and the CRPS skill against each baseline with its interval; with ``splits`` (the
    ``warm_split`` / ``cold_split`` / ``strong_split`` sections by side) the extrapolation checks.

    Returns
    -------
    list of Path
        The files written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    time = np.asarray(time)
    winters = np.asarray(winter_labels(xr.DataArray(time, dims="time")).values, dtype=np.int64)
    mean, lo, hi = ensemble.mean, ensemble.lower, ensemble.upper
    files: list[Path] = []

    # Hindcast vs observations over every test winter, with the 90 % band.
    fig = _figure(6.0 * len(depths), 2.2 * len(test_winters))
    axes = fig.subplots(len(test_winters), len(depths), squeeze=False)
    for i, w in enumerate(test_winters):
        sel = winters == w
        for j, depth in enumerate(depths):
            ax = axes[i, j]
            t = time[sel]
            ax.fill_between(t, lo[sel, j], hi[sel, j], color="tab:blue", alpha=0.25, lw=0)
            ax.plot(t, mean[sel, j], color="tab:blue", lw=1, label="ensemble mean, 90 %")
            ax.plot(t, observed[sel, j], color="k", lw=0.8, label="observed")
            ax.plot(t, background[sel, j], color="grey", lw=0.8, ls="--", label="background")
            ax.set_title(f"winter {w}, {depth:g} m", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_ylabel("°C", fontsize=7)
    axes[0, 0].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    files.append(directory / "hindcast.png")
    fig.savefig(files[-1], dpi=90)

    # Scatter of the ensemble mean against observations (test days).
    fig = _figure(4.0 * len(depths), 3.8)
    for j, depth in enumerate(depths):
        ax = fig.add_subplot(1, len(depths), j + 1)
        ok = test & np.isfinite(observed[:, j]) & np.isfinite(mean[:, j])
        ax.scatter(observed[ok, j], mean[ok, j], s=2, alpha=0.4)
        both = np.concatenate([observed[ok, j], mean[ok, j]])
        if both.size:
            lims = (float(both.min()), float(both.max()))
            ax.plot(lims, lims, color="k", lw=0.8)
        ax.set_xlabel("observed (°C)")
        ax.set_ylabel("ensemble mean (°C)")
        ax.set_title(f"{depth:g} m, test winters", fontsize=9)
    fig.tight_layout()
    files.append(directory / "scatter.png")
    fig.savefig(files[-1], dpi=90)

    # Event days per test winter: observed, ensemble, baselines.
    names = ["observed", ensemble.name, *(b.name for b in baselines)]
    fig = _figure(5.0 * len(depths), 3.5)
    width = 0.8 / len(names)
    for j, depth in enumerate(depths):
        ax = fig.add_subplot(1, len(depths), j + 1)
        rows = winter_events[f"{depth:g}"]
        x = np.arange(len(test_winters))
        for k, name in enumerate(names):
            ax.bar(
                x + (k - (len(names) - 1) / 2) * width,
                [rows[str(w)].get(name, 0) for w in test_winters],
                width,
                label=name,
            )
        ax.set_xticks(x, [str(w) for w in test_winters], fontsize=7)
        ax.set_ylabel("event days")
        ax.set_title(f"{depth:g} m", fontsize=9)
    fig.axes[0].legend(fontsize=6)
    fig.tight_layout()
    files.append(directory / "events.png")
    fig.savefig(files[-1], dpi=90)

    # PIT histogram: flat for a calibrated forecast.
    pit = ensemble.pit(np.where(test[:, None], observed, np.nan))
    fig = _figure(4.0 * len(depths), 3.2)
    for j, depth in enumerate(depths):
        ax = fig.add_subplot(1, len(depths), j + 1)
        values = pit[np.isfinite(pit[:, j]), j]
        ax.hist(values, bins=10, range=(0, 1), density=True, color="tab:blue", alpha=0.7)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xlabel("PIT")
        ax.set_ylabel("density (1 = flat)")
        title = f"{depth:g} m, test winters"
        if verification is not None:
            hist = verification["pit"]["ensemble"][f"{depth:g}"]
            title += f"\nδ {_fmt(hist['delta'], 2)}, dispersion {_fmt(hist['dispersion'], 2)}"
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    files.append(directory / "pit.png")
    fig.savefig(files[-1], dpi=90)
    if verification is not None:
        files.append(_reliability_figure(directory / "reliability.png", verification, depths))

    lines = ["# Evaluation on the test winters", "", *header, ""]
    lines += [f"Test winters: {', '.join(str(w) for w in test_winters)}.", ""]
    for depth in depths:
        key = f"{depth:g}"
        lines += [f"## {key} m", "", "| model | " + " | ".join(METRICS) + " | nse_anomaly |"]
        lines.append("|---" * (len(METRICS) + 2) + "|")
        for model, per_depth in metrics.items():
            row = per_depth[key]
            cells = [_fmt(row[m]) for m in (*METRICS, "nse_anomaly")]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines += ["", _comparison_line(comparison, key, "best member on the test winters")]
        if "selected_on_validation" in comparison:
            lines.append(
                _comparison_line(
                    comparison["selected_on_validation"], key, "best member on validation"
                )
            )
        lines.append("")
        if verification is not None:
            lines += _verification_lines(metrics, verification, key)
    if splits:
        lines += _split_lines(splits, depths)
    lines += [
        "![hindcast](hindcast.png)",
        "",
        "![scatter](scatter.png)",
        "",
        "![events](events.png)",
        "",
        "![PIT](pit.png)",
        "",
    ]
    if verification is not None:
        lines += ["![reliability](reliability.png)", ""]
    files.append(directory / "report.md")
    files[-1].write_text("\n".join(lines), encoding="utf-8")
    return files


def write_json(path: Path, data: Any) -> None:
    """JSON with NaN/inf written as null (strict JSON readers refuse NaN)."""

    def clean(obj: Any) -> Any:
        if isinstance(obj, float | np.floating):
            return float(obj) if math.isfinite(float(obj)) else None
        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, Mapping):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [clean(v) for v in obj]
        return obj

    path.write_text(json.dumps(clean(data), indent=2), encoding="utf-8")
