"""Verification scores for deterministic, probabilistic and event predictions.

Pure numpy functions on arrays (any shape), with NaN handling: a pair is
scored only where the observation and every prediction input are finite, so a
gap in the mooring record or a missing member never poisons a score. Scores
reduce over all elements (``axis=None``) or along one axis (e.g. ``axis=0`` for
per-depth scores of ``(time, depth)`` arrays); a reduction with no valid pair
gives NaN.

Conventions: temperatures and anomalies in °C, so RMSE, CRPS and spreads are
in °C; NSE, KGE, coverage, ratios and rates are dimensionless. Event arrays are
booleans, or floats with NaN for "unknown" (e.g. a day without observation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr, ndtri

__all__ = [
    "ContingencyScores",
    "contingency_scores",
    "crps_gaussian",
    "crps_mixture",
    "csi",
    "far",
    "gaussian_interval",
    "interval_coverage",
    "kge",
    "nse",
    "pod",
    "rmse",
    "spread_skill_ratio",
]

ArrayLike = npt.ArrayLike
Axis = int | None
_SQRT_PI = np.sqrt(np.pi)


def _arrays(*arrays: ArrayLike) -> tuple[list[npt.NDArray[np.float64]], npt.NDArray[np.bool_]]:
    """Broadcast to float arrays and return them with the joint finite mask."""
    out = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in arrays))
    valid = np.logical_and.reduce([np.isfinite(a) for a in out])
    return [np.where(valid, a, 0.0) for a in out], valid


def _mean(values: npt.NDArray[np.float64], valid: npt.NDArray[np.bool_], axis: Axis) -> np.ndarray:
    n = valid.sum(axis=axis)
    total = np.where(valid, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _scalar(value: np.ndarray) -> np.ndarray | float:
    return float(value) if np.ndim(value) == 0 else value


def rmse(obs: ArrayLike, pred: ArrayLike, axis: Axis = None) -> np.ndarray | float:
    """Root-mean-square error (units of the inputs, °C for temperature).

    Parameters
    ----------
    obs, pred : array-like
        Observations and predictions, broadcastable.
    axis : int, optional
        Axis to reduce (all if None).
    """
    (o, p), valid = _arrays(obs, pred)
    return _scalar(np.sqrt(_mean((p - o) ** 2, valid, axis)))


def nse(obs: ArrayLike, pred: ArrayLike, axis: Axis = None) -> np.ndarray | float:
    """Nash–Sutcliffe efficiency, 1 − Σ(p − o)² / Σ(o − ō)² (1).

    1 is perfect, 0 is as good as the mean of the observations over the
    evaluated period (which is a stronger reference than a climatology: it
    knows the period's mean), negative is worse.
    """
    (o, p), valid = _arrays(obs, pred)
    mean_o = _mean(o, valid, axis)
    if axis is not None:
        mean_o = np.expand_dims(mean_o, axis)
    sse = np.where(valid, (p - o) ** 2, 0.0).sum(axis=axis)
    sst = np.where(valid, (o - mean_o) ** 2, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scalar(np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan))


def kge(
    obs: ArrayLike, pred: ArrayLike, axis: Axis = None, components: bool = False
) -> np.ndarray | float | tuple[np.ndarray | float, ...]:
    """Kling–Gupta efficiency (Gupta et al. 2009), 1 − √((r−1)² + (α−1)² + (β−1)²) (1).

    r is the Pearson correlation, α = σ_p/σ_o the variability ratio and
    β = μ_p/μ_o the bias ratio. Compute it on temperatures (°C), not on
    anomalies: an anomaly's mean is near zero, which makes β meaningless.

    Parameters
    ----------
    obs, pred : array-like
        Observations and predictions.
    axis : int, optional
        Axis to reduce.
    components : bool
        Also return ``(r, alpha, beta)``.

    Returns
    -------
    float or numpy.ndarray, or tuple
        KGE, or ``(kge, r, alpha, beta)``.
    """
    (o, p), valid = _arrays(obs, pred)
    mo, mp = _mean(o, valid, axis), _mean(p, valid, axis)
    eo = np.expand_dims(mo, axis) if axis is not None else mo
    ep = np.expand_dims(mp, axis) if axis is not None else mp
    do, dp = np.where(valid, o - eo, 0.0), np.where(valid, p - ep, 0.0)
    so = np.sqrt(_mean(do**2, valid, axis))
    sp = np.sqrt(_mean(dp**2, valid, axis))
    cov = _mean(do * dp, valid, axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / (so * sp)
        alpha = sp / so
        beta = mp / mo
    value = 1.0 - np.sqrt((r - 1.0) ** 2 + (alpha - 1.0) ** 2 + (beta - 1.0) ** 2)
    if components:
        return tuple(_scalar(np.asarray(v)) for v in (value, r, alpha, beta))
    return _scalar(np.asarray(value))


def _crps_gaussian_pointwise(
    y: npt.NDArray[np.float64], mu: npt.NDArray[np.float64], sigma: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    z = (y - mu) / sigma
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
    return sigma * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * pdf - 1.0 / _SQRT_PI)


def crps_gaussian(
    obs: ArrayLike, mu: ArrayLike, sigma: ArrayLike, axis: Axis = None, reduce: bool = True
) -> np.ndarray | float:
    """Continuous ranked probability score of a Gaussian forecast (°C), closed form.

    CRPS(N(μ, σ²), y) = σ [z(2Φ(z) − 1) + 2φ(z) − 1/√π], z = (y − μ)/σ
    (Gneiting & Raftery 2007). It rewards sharpness and calibration at once and
    reduces to the absolute error when σ → 0.

    Parameters
    ----------
    obs, mu, sigma : array-like
        Observation, mean and standard deviation (σ > 0), broadcastable.
    axis : int, optional
        Axis of the mean (all if None).
    reduce : bool
        Return the mean CRPS (True) or the pointwise values (NaN where invalid).
    """
    (y, m, s), valid = _arrays(obs, mu, sigma)
    valid &= s > 0
    crps = _crps_gaussian_pointwise(y, m, np.where(valid, s, 1.0))
    if not reduce:
        return np.where(valid, crps, np.nan)
    return _scalar(_mean(crps, valid, axis))


def _a_term(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E|X| for X ~ N(mean, sd²)."""
    z = mean / sd
    return 2.0 * sd * np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi) + mean * (2.0 * ndtr(z) - 1.0)


def crps_mixture(
    obs: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
    weights: ArrayLike | None = None,
    member_axis: int = -1,
    axis: Axis = None,
    reduce: bool = True,
) -> np.ndarray | float:
    """CRPS of a mixture of Gaussians (deep-ensemble members), analytic (°C).

    CRPS = Σ_i w_i E|X_i − y| − ½ Σ_ij w_i w_j E|X_i − X_j|, with X_i − X_j ~
    N(μ_i − μ_j, σ_i² + σ_j²) and E|N(m, s²)| = 2sφ(m/s) + m(2Φ(m/s) − 1)
    (Grimit et al. 2006). Exact, so no sampling noise enters the comparison with
    baselines. A member with a non-finite μ or σ is dropped (weights
    renormalised).

    Parameters
    ----------
    obs : array-like
        Observations, shape ``S`` (the member axis removed).
    mu, sigma : array-like
        Member means and standard deviations, shape ``S`` with a member axis.
    weights : array-like, optional
        Member weights along the member axis (equal if None).
    member_axis : int
        Axis of ``mu``/``sigma`` holding the members.
    axis : int, optional
        Axis of the mean over the remaining (obs-shaped) array.
    reduce : bool
        Return the mean (True) or the pointwise CRPS.
    """
    m = np.moveaxis(np.asarray(mu, dtype=np.float64), member_axis, -1)
    s = np.moveaxis(np.asarray(sigma, dtype=np.float64), member_axis, -1)
    m, s = np.broadcast_arrays(m, s)
    y = np.asarray(obs, dtype=np.float64)
    n = m.shape[-1]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    member_ok = np.isfinite(m) & np.isfinite(s) & (s > 0)
    w = np.where(member_ok, np.broadcast_to(w, m.shape), 0.0)
    wsum = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = w / wsum[..., None]
    m = np.where(member_ok, m, 0.0)
    s = np.where(member_ok, s, 1.0)
    yb = np.broadcast_to(y[..., None], m.shape)
    with np.errstate(invalid="ignore"):
        first = (w * _a_term(yb - m, s)).sum(axis=-1)
        diff = m[..., :, None] - m[..., None, :]
        sd = np.sqrt(s[..., :, None] ** 2 + s[..., None, :] ** 2)
        second = (w[..., :, None] * w[..., None, :] * _a_term(diff, sd)).sum(axis=(-2, -1))
    crps = first - 0.5 * second
    valid = np.isfinite(y) & (wsum > 0) & np.isfinite(crps)
    if not reduce:
        return np.where(valid, crps, np.nan)
    return _scalar(_mean(np.where(valid, crps, 0.0), valid, axis))


def gaussian_interval(
    mu: ArrayLike, sigma: ArrayLike, level: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """Central prediction interval of a Gaussian (same units as ``mu``).

    Parameters
    ----------
    mu, sigma : array-like
        Mean and standard deviation.
    level : float
        Nominal probability content, in (0, 1) (0.9: the 5–95 % interval).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    half = ndtri(0.5 + level / 2.0) * np.asarray(sigma, dtype=np.float64)
    centre = np.asarray(mu, dtype=np.float64)
    return centre - half, centre + half


def interval_coverage(
    obs: ArrayLike, lower: ArrayLike, upper: ArrayLike, axis: Axis = None
) -> np.ndarray | float:
    """Fraction of observations inside ``[lower, upper]`` (1).

    For a calibrated 90 % interval this is ≈ 0.9; lower means overconfidence.
    """
    (o, lo, hi), valid = _arrays(obs, lower, upper)
    inside = ((o >= lo) & (o <= hi)).astype(np.float64)
    return _scalar(_mean(inside, valid, axis))


def spread_skill_ratio(
    obs: ArrayLike, mean: ArrayLike, std: ArrayLike, axis: Axis = None
) -> np.ndarray | float:
    """Ratio of the RMS predicted spread to the RMSE of the predicted mean (1).

    √mean(σ²) / √mean((μ − y)²): 1 for a calibrated Gaussian forecast; < 1
    under-dispersed (the spread is too small for the error: overconfident); > 1
    over-dispersed (underconfident). ``std`` is the *total* predictive std (for a
    deep ensemble, the mixture std, aleatoric + epistemic). A ratio of RMS values:
    a few large errors (cascade days) pull it below 1 even when the interval
    coverage of the many quiet days is nominal.
    """
    (o, m, s), valid = _arrays(obs, mean, std)
    spread = np.sqrt(_mean(s**2, valid, axis))
    error = np.sqrt(_mean((m - o) ** 2, valid, axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scalar(np.where(error > 0, spread / np.where(error > 0, error, 1.0), np.nan))


def event_flags(values: ArrayLike) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Boolean events and the known-value mask (NaN = unknown)."""
    arr = np.asarray(values)
    if arr.dtype == bool:
        return arr, np.ones(arr.shape, dtype=bool)
    arr = arr.astype(np.float64)
    known = np.isfinite(arr)
    return np.where(known, arr, 0.0) > 0.5, known


@dataclass(frozen=True)
class ContingencyScores:
    """2 × 2 contingency table of daily events and its scores.

    Attributes
    ----------
    hits, misses, false_alarms, correct_negatives : numpy.ndarray or int
        Day counts.
    pod : numpy.ndarray or float
        Probability of detection, hits / (hits + misses) (1).
    far : numpy.ndarray or float
        False-alarm ratio, false alarms / (hits + false alarms) (1).
    csi : numpy.ndarray or float
        Critical success index, hits / (hits + misses + false alarms) (1);
        ignores the (many) correct quiet days, unlike accuracy.
    frequency_bias : numpy.ndarray or float
        (hits + false alarms) / (hits + misses) (1): forecast over observed event
        days; 1 unbiased, > 1 over-forecasting, < 1 under-forecasting.
    """

    hits: np.ndarray | float
    misses: np.ndarray | float
    false_alarms: np.ndarray | float
    correct_negatives: np.ndarray | float
    pod: np.ndarray | float
    far: np.ndarray | float
    csi: np.ndarray | float
    frequency_bias: np.ndarray | float


def contingency_scores(
    observed: ArrayLike, predicted: ArrayLike, axis: Axis = None
) -> ContingencyScores:
    """Contingency table and POD, FAR, CSI, frequency bias of daily event flags.

    Days where either flag is unknown (NaN) are skipped. A score with a zero
    denominator is NaN (e.g. FAR when nothing was predicted).
    """
    obs, ok_o = event_flags(observed)
    pred, ok_p = event_flags(predicted)
    obs, pred = np.broadcast_arrays(obs, pred)
    known = np.broadcast_to(ok_o, obs.shape) & np.broadcast_to(ok_p, obs.shape)

    def count(flag: np.ndarray) -> np.ndarray:
        return (flag & known).sum(axis=axis)

    a, b = count(obs & pred), count(~obs & pred)
    c, d = count(obs & ~pred), count(~obs & ~pred)
    with np.errstate(invalid="ignore", divide="ignore"):
        pod_ = np.where(a + c > 0, a / np.maximum(a + c, 1), np.nan)
        far_ = np.where(a + b > 0, b / np.maximum(a + b, 1), np.nan)
        csi_ = np.where(a + b + c > 0, a / np.maximum(a + b + c, 1), np.nan)
        bias_ = np.where(a + c > 0, (a + b) / np.maximum(a + c, 1), np.nan)
    return ContingencyScores(
        hits=_scalar(a),
        misses=_scalar(c),
        false_alarms=_scalar(b),
        correct_negatives=_scalar(d),
        pod=_scalar(pod_),
        far=_scalar(far_),
        csi=_scalar(csi_),
        frequency_bias=_scalar(bias_),
    )


def pod(observed: ArrayLike, predicted: ArrayLike, axis: Axis = None) -> np.ndarray | float:
    """Probability of detection (1); see :func:`contingency_scores`."""
    return contingency_scores(observed, predicted, axis).pod


def far(observed: ArrayLike, predicted: ArrayLike, axis: Axis = None) -> np.ndarray | float:
    """False-alarm ratio (1); see :func:`contingency_scores`."""
    return contingency_scores(observed, predicted, axis).far


def csi(observed: ArrayLike, predicted: ArrayLike, axis: Axis = None) -> np.ndarray | float:
    """Critical success index (1); see :func:`contingency_scores`."""
    return contingency_scores(observed, predicted, axis).csi
