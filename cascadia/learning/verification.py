"""Verification beyond the mean scores: reliability, conditioned scores, event tables, intervals.

Pure numpy/scipy functions on one depth's daily series (``(time,)`` arrays, NaN
where unknown); :mod:`cascadia.learning.evaluation` applies them to every forecast
and writes the results to ``metrics.json``. Why each exists:

* **PIT histogram** (:func:`pit_histogram`): the CRPS mixes sharpness and
  calibration; the histogram of the predictive CDF at the observation separates
  them. Flat = calibrated, U = under-dispersed (observations fall in the tails:
  the spread is too small), dome = over-dispersed, sloped = biased.
* **Reliability diagram** (:func:`reliability_diagram`): does a day forecast with
  a 30 % event probability see the event 30 % of the time? Counts per bin say how
  much each point of the diagram can be trusted.
* **Conditioned scores** (:func:`conditioned_scores`): the mean CRPS and coverage
  are dominated by the many quiet days; a forecast can be well calibrated there
  and over-confident on the few cascade days that matter.
* **Same-week contingency table** (:func:`matched_contingency`): the same-week
  "hit rate" counts observed event days only (recall); this table adds the
  forecast's side (false alarms) under the same ±3-day tolerance.
* **Skill intervals** (:func:`winter_bootstrap`, :func:`crps_skill_interval`): a
  CRPS skill over 5 test winters is one noisy number; a bias-corrected and
  accelerated (BCa) bootstrap over whole winters (days within a winter are
  strongly correlated) says how noisy.

Units: CRPS in °C, probabilities, frequencies, coverages and ratios in 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.ndimage import maximum_filter1d

from cascadia.learning.metrics import (
    ContingencyScores,
    event_flags,
    interval_coverage,
    spread_skill_ratio,
)

__all__ = [
    "MatchedContingency",
    "conditioned_scores",
    "coverage_interval",
    "coverage_of_drawn_winters",
    "crps_skill_interval",
    "matched_contingency",
    "mean_contingency",
    "mean_matched_contingency",
    "pit_histogram",
    "reliability_diagram",
    "winter_bootstrap",
    "winter_sums",
]

FloatArray = npt.NDArray[np.float64]


def _number(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


# ------------------------------------------------------------------ reliability


def pit_histogram(pit: npt.ArrayLike, bins: int = 10) -> dict[str, Any]:
    """Histogram of probability integral transform values and its flatness (1).

    Parameters
    ----------
    pit : array-like
        PIT values in [0, 1] (the predictive CDF at each observation); NaN skipped.
    bins : int
        Number of equal-width bins.

    Returns
    -------
    dict
        ``bin_edges``, ``counts``, ``n``; ``delta`` — the Candille & Talagrand
        (2005) flatness ratio Σ(s_i − N/B)² / (N(B − 1)/B), whose expectation is 1
        for independent PITs of a calibrated forecast and which grows with any
        departure from flatness; ``p_value`` of the χ² test of uniformity (χ² =
        δ(B − 1)); ``mean`` (0.5 when unbiased; > 0.5: observations above the
        forecast, i.e. a cold bias of the forecast); ``dispersion`` = 12 × the
        PIT variance (1 when flat, > 1 U-shaped = under-dispersed, < 1 dome-shaped
        = over-dispersed). Daily PITs are autocorrelated, so the p-value assumes
        far more independent days than there are: read it as a screen, not a test.
    """
    values = np.asarray(pit, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    n = values.size
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.histogram(np.clip(values, 0.0, 1.0), bins=edges)[0]
    out: dict[str, Any] = {
        "bin_edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "n": int(n),
        "delta": None,
        "p_value": None,
        "mean": None,
        "dispersion": None,
    }
    if n == 0:
        return out
    delta = float(((counts - n / bins) ** 2).sum() / (n * (bins - 1) / bins))
    out.update(
        delta=delta,
        p_value=_number(stats.chi2.sf(delta * (bins - 1), bins - 1)),
        mean=float(values.mean()),
        dispersion=float(12.0 * values.var()),
    )
    return out


def _binned_mean(
    index: npt.NDArray[np.int64], values: FloatArray, bins: int
) -> tuple[FloatArray, FloatArray]:
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    sums = np.bincount(index, weights=values, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts, np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)


def reliability_diagram(
    probability: npt.ArrayLike,
    outcome: npt.ArrayLike,
    bins: int = 10,
    event_days: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """Binned forecast probability against the observed frequency, with counts per bin.

    Parameters
    ----------
    probability : array-like
        Forecast probability of the outcome (1), in [0, 1].
    outcome : array-like
        What the probability is of: 1/0 (or bool), NaN when unknown.
    bins : int
        Equal-width probability bins (the last one includes 1).
    event_days : array-like, optional
        A second observed indicator (1/0/NaN; e.g. the observed event days after the
        duration rule) whose frequency per bin is reported too, on the same days.

    Returns
    -------
    dict
        Per bin (lists): ``n``, ``mean_probability``, ``observed_frequency`` (None in
        empty bins) and, with ``event_days``, ``event_day_frequency``; ``bin_edges``,
        ``n_total``, ``base_rate``; the Brier score and its Murphy (1973)
        decomposition over the bins, ``brier_reliability`` (0 for a reliable
        forecast: Σ n_k (p̄_k − ō_k)² / N) and ``brier_resolution``.
    """
    p = np.asarray(probability, dtype=np.float64).ravel()
    o = np.asarray(outcome, dtype=np.float64).ravel()
    ok = np.isfinite(p) & np.isfinite(o)
    extra = None
    if event_days is not None:
        extra = np.asarray(event_days, dtype=np.float64).ravel()
        ok &= np.isfinite(extra)
    p, o = np.clip(p[ok], 0.0, 1.0), o[ok]
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts, mean_p = _binned_mean(index, p, bins)
    _, freq = _binned_mean(index, o, bins)
    out: dict[str, Any] = {
        "bin_edges": [float(e) for e in np.linspace(0.0, 1.0, bins + 1)],
        "n": [int(c) for c in counts],
        "mean_probability": [_number(v) for v in mean_p],
        "observed_frequency": [_number(v) for v in freq],
    }
    if extra is not None:
        _, day_freq = _binned_mean(index, extra[ok], bins)
        out["event_day_frequency"] = [_number(v) for v in day_freq]
    n = int(p.size)
    out["n_total"] = n
    if n == 0:
        out.update(base_rate=None, brier=None, brier_reliability=None, brier_resolution=None)
        return out
    base = float(o.mean())
    full = counts > 0
    out.update(
        base_rate=base,
        brier=float(((p - o) ** 2).mean()),
        brier_reliability=float((counts[full] * (mean_p[full] - freq[full]) ** 2).sum() / n),
        brier_resolution=float((counts[full] * (freq[full] - base) ** 2).sum() / n),
    )
    return out


# ------------------------------------------------------------------ conditioned scores


def conditioned_scores(
    observed: npt.ArrayLike,
    mean: npt.ArrayLike,
    std: npt.ArrayLike,
    crps: npt.ArrayLike,
    lower: npt.ArrayLike,
    upper: npt.ArrayLike,
    observed_events: npt.ArrayLike,
) -> dict[str, float | int | None]:
    """CRPS, 90 % coverage and spread-skill on observed event days and on quiet days.

    Parameters
    ----------
    observed, mean, std : array-like
        ``(time,)`` observation, predictive mean and total std (°C).
    crps : array-like
        ``(time,)`` pointwise CRPS (°C), NaN where not scored.
    lower, upper : array-like
        ``(time,)`` bounds of the central 90 % interval (°C).
    observed_events : array-like
        ``(time,)`` observed event days: 1 event, 0 quiet, NaN unknown (neither).

    Returns
    -------
    dict
        ``crps_event``, ``crps_quiet`` (°C), ``coverage_90_event``,
        ``coverage_90_quiet``, ``spread_skill_event``, ``spread_skill_quiet`` (1),
        ``n_event_days``, ``n_quiet_days`` (days with an observation, a forecast and a
        known event flag); None where a class has no day.
    """
    obs = np.asarray(observed, dtype=np.float64)
    flags = np.asarray(observed_events, dtype=np.float64)
    score = np.asarray(crps, dtype=np.float64)
    scored = np.isfinite(obs) & np.isfinite(np.asarray(mean, dtype=np.float64))
    scored &= np.isfinite(score)
    out: dict[str, float | int | None] = {}
    for name, cls in (("event", flags > 0.5), ("quiet", flags < 0.5)):
        days = scored & np.isfinite(flags) & cls
        o = np.where(days, obs, np.nan)
        out[f"crps_{name}"] = _number(score[days].mean()) if days.any() else None
        out[f"coverage_90_{name}"] = _number(interval_coverage(o, lower, upper))
        out[f"spread_skill_{name}"] = _number(spread_skill_ratio(o, mean, std))
        out[f"n_{name}_days"] = int(days.sum())
    return out


# ------------------------------------------------------------------ events with tolerance


@dataclass(frozen=True)
class MatchedContingency:
    """Contingency table of event days with a ±``half_window_days`` tolerance.

    Attributes
    ----------
    hits : int
        Observed event days with a forecast event day within the tolerance.
    misses : int
        Observed event days without one.
    false_alarms : int
        Forecast event days with no observed event day within the tolerance.
    correct_negatives : int
        Days with neither an observed nor a forecast event day within the tolerance.
    observed_days, forecast_days : int
        Observed and forecast event days scored (the other flag known).
    pod : float
        hits / observed_days: the "same-week hit rate" (recall only).
    far : float
        false_alarms / forecast_days: the share of forecast event days with no
        observed event near them.
    csi : float
        hits / (hits + misses + false_alarms).
    frequency_bias : float
        forecast_days / observed_days (matching does not change the counts).
    """

    hits: int
    misses: int
    false_alarms: int
    correct_negatives: int
    observed_days: int
    forecast_days: int
    pod: float
    far: float
    csi: float
    frequency_bias: float


def _near(flags: npt.NDArray[np.bool_], half_window: int) -> npt.NDArray[np.bool_]:
    """Days with a flagged day within ±``half_window`` days (1-D, consecutive days)."""
    if half_window <= 0:
        return flags.copy()
    size = 2 * half_window + 1
    return maximum_filter1d(flags.astype(np.uint8), size, mode="constant", cval=0) > 0


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def matched_contingency(
    observed: npt.ArrayLike, predicted: npt.ArrayLike, half_window_days: int = 3
) -> MatchedContingency:
    """Event contingency table with a time tolerance, from both sides.

    Matching from the observed side gives hits and misses: an observed event day is a
    hit when a forecast event day lies within ±``half_window_days`` days, so the POD is
    the "same-week" hit rate of Peña-Izquierdo et al. (2025), who reproduced 84 % of
    observed intense-cascading days within the same week and 56 % on the exact day.
    Matching from the forecast side gives the false alarms. ``half_window_days=0`` is
    the plain daily table. Days where the other flag is unknown (NaN) are not counted.

    Parameters
    ----------
    observed, predicted : array-like
        ``(time,)`` daily event flags (bool, or 1/0 with NaN), consecutive days.
    half_window_days : int
        Tolerance (3: a centred 7-day week).
    """
    obs, ok_o = event_flags(observed)
    pred, ok_p = event_flags(predicted)
    if obs.ndim != 1 or obs.shape != pred.shape:
        raise ValueError(
            f"matched_contingency needs two 1-D daily series of one length, got shapes "
            f"{obs.shape} and {pred.shape}"
        )
    obs_on, pred_on = obs & ok_o, pred & ok_p
    near_pred, near_obs = _near(pred_on, half_window_days), _near(obs_on, half_window_days)
    scored_obs, scored_pred = obs_on & ok_p, pred_on & ok_o
    hits = int((scored_obs & near_pred).sum())
    n_obs, n_pred = int(scored_obs.sum()), int(scored_pred.sum())
    false_alarms = int((scored_pred & ~near_obs).sum())
    quiet = ok_o & ok_p & ~near_obs & ~near_pred
    misses = n_obs - hits
    return MatchedContingency(
        hits=hits,
        misses=misses,
        false_alarms=false_alarms,
        correct_negatives=int(quiet.sum()),
        observed_days=n_obs,
        forecast_days=n_pred,
        pod=_ratio(hits, n_obs),
        far=_ratio(false_alarms, n_pred),
        csi=_ratio(hits, hits + misses + false_alarms),
        frequency_bias=_ratio(n_pred, n_obs),
    )


def mean_contingency(tables: Sequence[ContingencyScores]) -> ContingencyScores:
    """The members' mean daily table: counts averaged, scores from the mean counts.

    Why: a level fitted on single members' forecasts is a member's level, so an ensemble
    that counts its event days per member (:attr:`Calibration.counts_members`) is scored
    per member too; averaging the counts, not the ratios, keeps the table's identities
    (``hits + misses`` = observed days) and its frequency bias that of the mean count.
    """
    a, b, c, d = (
        float(np.mean([getattr(t, k) for t in tables]))
        for k in ("hits", "false_alarms", "misses", "correct_negatives")
    )
    return ContingencyScores(
        hits=a,
        misses=c,
        false_alarms=b,
        correct_negatives=d,
        pod=_ratio(a, a + c),
        far=_ratio(b, a + b),
        csi=_ratio(a, a + b + c),
        frequency_bias=_ratio(a + b, a + c),
    )


def mean_matched_contingency(tables: Sequence[MatchedContingency]) -> MatchedContingency:
    """The members' mean same-week table (as :func:`mean_contingency`)."""
    mean = {
        k: float(np.mean([getattr(t, k) for t in tables]))
        for k in (
            "hits",
            "misses",
            "false_alarms",
            "correct_negatives",
            "observed_days",
            "forecast_days",
        )
    }
    return MatchedContingency(
        **mean,  # type: ignore[arg-type]
        pod=_ratio(mean["hits"], mean["observed_days"]),
        far=_ratio(mean["false_alarms"], mean["forecast_days"]),
        csi=_ratio(mean["hits"], mean["hits"] + mean["misses"] + mean["false_alarms"]),
        frequency_bias=_ratio(mean["forecast_days"], mean["observed_days"]),
    )


# ------------------------------------------------------------------ bootstrap over winters


def winter_sums(
    values: npt.ArrayLike, winters: npt.ArrayLike, test_winters: Sequence[int]
) -> tuple[FloatArray, FloatArray, list[int]]:
    """Per-winter sums and day counts of the finite ``values`` (winters with a day only).

    Returns
    -------
    tuple
        ``(sums, counts, winters)`` in the order of ``test_winters``.
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(winters)
    sums, counts, kept = [], [], []
    for winter in test_winters:
        sel = (w == winter) & np.isfinite(v)
        if sel.any():
            sums.append(v[sel].sum())
            counts.append(float(sel.sum()))
            kept.append(int(winter))
    return np.asarray(sums), np.asarray(counts), kept


def winter_bootstrap(
    samples: Sequence[npt.ArrayLike],
    statistic: Callable[..., Any],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float | None, float | None, str | None]:
    """BCa interval of a statistic of paired per-winter samples (scipy.stats.bootstrap).

    Parameters
    ----------
    samples : sequence of array-like
        One value per winter in each array (paired: resampled together, so that a
        drawn winter brings all its numbers).
    statistic : callable
        ``statistic(*samples, axis=-1)``, vectorised.
    confidence, n_resamples, seed
        Interval level, resamples and seed of the bootstrap.

    Returns
    -------
    tuple
        ``(low, high, note)``: None bounds and a reason when no interval exists (fewer
        than two winters, or all resamples equal).
    """
    arrays = [np.asarray(s, dtype=np.float64) for s in samples]
    n = arrays[0].size
    if n < 2:
        return None, None, f"{n} winter(s): a bootstrap over winters needs at least 2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples: reported as None below
        result = stats.bootstrap(
            tuple(arrays),
            statistic,
            paired=True,
            vectorized=True,
            method="BCa",
            n_resamples=n_resamples,
            confidence_level=confidence,
            rng=np.random.default_rng(seed),
        )
    low, high = _number(result.confidence_interval.low), _number(result.confidence_interval.high)
    if low is None or high is None:
        return None, None, "degenerate resamples (every winter gives the same value)"
    return low, high, None


def _skill_statistic(a: FloatArray, b: FloatArray, axis: int = -1) -> FloatArray:
    return 1.0 - a.sum(axis=axis) / b.sum(axis=axis)


def _fraction_statistic(inside: FloatArray, days: FloatArray, axis: int = -1) -> FloatArray:
    return inside.sum(axis=axis) / days.sum(axis=axis)


def coverage_interval(
    inside: npt.ArrayLike,
    winters: npt.ArrayLike,
    test_winters: Sequence[int],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Interval coverage over the test days, with a BCa interval over whole winters.

    Why winters: a forecast's misses come in winter-long runs (a background off by a few
    hundredths of a degree for a whole quiet winter leaves most of its days outside a
    narrow interval), so days are far from independent and five winters are few.

    Parameters
    ----------
    inside : array-like
        ``(time,)`` 1 where the observation lies inside the interval, 0 outside, NaN
        where it is not scored.
    winters, test_winters, confidence, n_resamples, seed
        As :func:`crps_skill_interval`.

    Returns
    -------
    dict
        ``coverage``, ``ci_low``, ``ci_high``, ``n_winters``, ``n_days``, ``per_winter``
        coverage and ``note`` (why an interval is missing, or None).
    """
    sums, counts, kept = winter_sums(inside, winters, test_winters)
    out: dict[str, Any] = {
        "coverage": None,
        "ci_low": None,
        "ci_high": None,
        "n_winters": len(kept),
        "n_days": int(counts.sum()),
        "per_winter": {},
        "note": None,
    }
    if not kept:
        out["note"] = "no scored test day"
        return out
    low, high, note = winter_bootstrap(
        (sums, counts),
        _fraction_statistic,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )
    out.update(
        coverage=float(sums.sum() / counts.sum()),
        ci_low=low,
        ci_high=high,
        per_winter={str(w): float(s / c) for w, s, c in zip(kept, sums, counts, strict=True)},
        note=note,
    )
    return out


def coverage_of_drawn_winters(
    inside: npt.ArrayLike,
    winters: npt.ArrayLike,
    n_winters: int,
    confidence: float = 0.95,
    draws: int = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """What the coverage of ``n_winters`` winters drawn from a calibrated set looks like.

    ``inside`` is scored on winters the forecast was calibrated on (out of fold): its
    overall coverage is the calibration's, and the range of the coverage of ``n_winters``
    of them drawn without replacement is how far a test set of that size can fall from
    it by the draw of winters alone. A test coverage inside that range is no evidence of
    miscalibration; outside it, it is.

    Returns
    -------
    dict
        ``coverage`` (all winters), ``n_pool_winters``, ``n_winters_drawn``, ``low`` and
        ``high`` (central ``confidence`` range of the drawn coverage), ``draws``; bounds
        None when fewer winters than ``n_winters`` are scored.
    """
    values = np.asarray(inside, dtype=np.float64)
    labels = np.asarray(winters)
    pool = [int(w) for w in np.unique(labels[np.isfinite(values)])]
    sums, counts, kept = winter_sums(values, labels, pool)
    out: dict[str, Any] = {
        "coverage": float(sums.sum() / counts.sum()) if kept else None,
        "n_pool_winters": len(kept),
        "n_winters_drawn": int(n_winters),
        "low": None,
        "high": None,
        "draws": int(draws),
    }
    if n_winters < 1 or len(kept) < n_winters:
        return out
    rng = np.random.default_rng(seed)
    picks = np.argsort(rng.random((draws, len(kept))), axis=1)[:, :n_winters]
    drawn = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    alpha = (1.0 - confidence) / 2
    out.update(low=float(np.quantile(drawn, alpha)), high=float(np.quantile(drawn, 1 - alpha)))
    return out


def crps_skill_interval(
    crps: npt.ArrayLike,
    reference_crps: npt.ArrayLike,
    winters: npt.ArrayLike,
    test_winters: Sequence[int],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """CRPS skill 1 − CRPS/CRPS_ref over the test days, with a BCa interval over winters.

    The skill is day-weighted (the ratio of the mean CRPS over all common days), and so
    is every resample: whole winters are drawn with replacement, each bringing the sums
    of its days' CRPS for both forecasts.

    Parameters
    ----------
    crps, reference_crps : array-like
        ``(time,)`` pointwise CRPS of the forecast and of the reference (°C).
    winters : array-like
        ``(time,)`` winter year of each day.
    test_winters : sequence of int
        Winters to resample.
    confidence, n_resamples, seed
        As :func:`winter_bootstrap`.

    Returns
    -------
    dict
        ``skill``, ``ci_low``, ``ci_high``, ``n_winters``, ``n_days``, ``crps``,
        ``reference_crps`` (°C, day means), ``per_winter`` skill and ``note`` (why an
        interval is missing, or None).
    """
    a = np.asarray(crps, dtype=np.float64)
    b = np.asarray(reference_crps, dtype=np.float64)
    common = np.isfinite(a) & np.isfinite(b)
    sa, counts, kept = winter_sums(np.where(common, a, np.nan), winters, test_winters)
    sb, _, _ = winter_sums(np.where(common, b, np.nan), winters, test_winters)
    out: dict[str, Any] = {
        "skill": None,
        "ci_low": None,
        "ci_high": None,
        "n_winters": len(kept),
        "n_days": int(counts.sum()),
        "crps": None,
        "reference_crps": None,
        "per_winter": {},
        "note": None,
    }
    if not kept or not sb.sum() > 0:
        out["note"] = "no test day with both forecasts scored"
        return out
    with np.errstate(invalid="ignore", divide="ignore"):
        per_winter = 1.0 - sa / sb
    out.update(
        skill=_number(_skill_statistic(sa, sb)),
        crps=float(sa.sum() / counts.sum()),
        reference_crps=float(sb.sum() / counts.sum()),
        per_winter={str(w): _number(s) for w, s in zip(kept, per_winter, strict=True)},
    )
    low, high, note = winter_bootstrap(
        (sa, sb), _skill_statistic, confidence=confidence, n_resamples=n_resamples, seed=seed
    )
    out.update(ci_low=low, ci_high=high, note=note)
    return out
