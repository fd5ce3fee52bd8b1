"""A fair non-deep baseline: gradient-boosted quantile trees on exactly the model's inputs.

Why: climatology, persistence and a three-index regression are weak references;
a reviewer asks whether a deep ensemble beats a strong tabular learner fed the
same information. :class:`GradientBoostingBaseline` reads the feature matrix the
network reads (the same ``<variable>@<region>`` and physics columns, in the same
order) and, since trees have no memory, the winter's history as lagged
aggregates of every column: trailing 30- and 90-day means and the cumulative sum
since the winter's start of the column's standardised value (an integral of its
anomaly, e.g. of the heat loss), plus the phase of the year. It is fitted on the
winters the members learned from, like every baseline.

Output: scikit-learn's ``HistGradientBoostingRegressor`` with the pinball loss
at the 10, 50 and 90 % quantiles per depth, turned into a Gaussian (mean = the
median, σ = the 10–90 % width / 2.563, times a factor k). k is fitted by CRPS on
out-of-fold predictions (two folds of whole training winters), because
in-sample quantiles of boosted trees are too narrow. The Gaussian is then
scored like every other forecast (CRPS, NSE, coverage, event hits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from cascadia.learning.baselines import BaselinePrediction, _phase, _winters
from cascadia.learning.metrics import crps_gaussian

__all__ = ["GradientBoostingBaseline", "lagged_features"]

FloatArray = npt.NDArray[np.float64]
QUANTILES = (0.1, 0.5, 0.9)
#: Width of N(0, 1) between its 10 % and 90 % quantiles.
GAUSSIAN_WIDTH = 2.5631031310892007
SCALE_GRID = np.geomspace(0.3, 30.0, 80)


def _trailing_mean(x: FloatArray, days: int) -> FloatArray:
    """Mean of the last ``days`` days (the day included) per column, NaN days skipped."""
    finite = np.isfinite(x)
    total = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(np.where(finite, x, 0.0), 0)])
    count = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(finite, 0)])
    idx = np.arange(x.shape[0])
    start = np.maximum(idx + 1 - days, 0)
    n = count[idx + 1] - count[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (total[idx + 1] - total[start]) / n, np.nan)


def lagged_features(
    x: npt.ArrayLike,
    time: Any,
    mean: FloatArray,
    std: FloatArray,
    winter_start_month: int = 11,
    windows: Sequence[int] = (30, 90),
) -> FloatArray:
    """The day's features, their trailing means and winter-to-date sums, and the phase.

    Parameters
    ----------
    x : array-like
        ``(T, F)`` feature matrix on consecutive days (the network's input).
    time : array-like
        Daily stamps ``(T,)``.
    mean, std : numpy.ndarray
        ``(F,)`` training statistics standardising the cumulative sums.
    winter_start_month : int
        Month the winter's sums restart.
    windows : sequence of int
        Trailing-mean windows (days).

    Returns
    -------
    numpy.ndarray
        ``(T, F (2 + len(windows)) + 2)``.
    """
    x = np.asarray(x, dtype=np.float64)
    z = np.nan_to_num((x - mean) / std)
    winters = _winters(time, winter_start_month)
    cumulative = np.zeros_like(z)
    for w in np.unique(winters):
        sel = winters == w
        cumulative[sel] = np.cumsum(z[sel], axis=0)
    angle = 2.0 * np.pi * _phase(time)
    return np.column_stack(
        [x, *(_trailing_mean(x, d) for d in windows), cumulative, np.sin(angle), np.cos(angle)]
    )


class GradientBoostingBaseline:
    """Quantile gradient boosting on the network's features and their lagged aggregates.

    Parameters
    ----------
    winter_start_month : int
        First month of a winter year.
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization, max_bins
        ``HistGradientBoostingRegressor`` settings: shallow trees and large leaves,
        since daily rows of ~20 winters are few independent samples; fixed, not tuned
        on any winter.
    folds : int
        Winter folds of the out-of-fold spread calibration.
    seed : int
        Seed of the trees' random state.
    """

    def __init__(
        self,
        winter_start_month: int = 11,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 40,
        l2_regularization: float = 1.0,
        max_bins: int = 32,
        folds: int = 2,
        seed: int = 0,
    ) -> None:
        self.winter_start_month = winter_start_month
        self.params = {
            "max_iter": max_iter,
            "learning_rate": learning_rate,
            "max_leaf_nodes": max_leaf_nodes,
            "min_samples_leaf": min_samples_leaf,
            "l2_regularization": l2_regularization,
            "max_bins": max_bins,
            "early_stopping": False,
            "random_state": seed,
        }
        self.folds = folds
        self.mean_: FloatArray | None = None
        self.std_: FloatArray | None = None
        self.models_: list[list[HistGradientBoostingRegressor]] | None = None
        self.scale_: FloatArray | None = None

    def _fit_quantiles(self, x: FloatArray, y: FloatArray) -> list[HistGradientBoostingRegressor]:
        # One OpenMP thread: on a shared machine the trees' thread pool oversubscribes the
        # cores and a fit of seconds takes minutes; one thread is also deterministic.
        with threadpool_limits(1):
            return [
                HistGradientBoostingRegressor(loss="quantile", quantile=q, **self.params).fit(x, y)
                for q in QUANTILES
            ]

    @staticmethod
    def _gaussian(
        models: list[HistGradientBoostingRegressor], x: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        with threadpool_limits(1):
            low, median, high = (m.predict(x) for m in models)
        width = np.maximum(high - low, 0.0) / GAUSSIAN_WIDTH
        return median, np.maximum(width, 1e-3)

    def fit(
        self, time: Any, target: npt.ArrayLike, winters: Sequence[int], features: npt.ArrayLike
    ) -> GradientBoostingBaseline:
        """Fit on the training winters' observed days.

        Parameters
        ----------
        time : array-like
            Consecutive daily stamps ``(T,)``.
        target : array-like
            ``(T, depth)`` anomalies (°C).
        winters : sequence of int
            Training winter years.
        features : array-like
            ``(T, F)`` the network's feature matrix on ``time``.
        """
        if not winters:
            raise ValueError("no training winters given")
        y = np.asarray(target, dtype=np.float64)
        y = y[:, None] if y.ndim == 1 else y
        f = np.asarray(features, dtype=np.float64)
        labels = _winters(time, self.winter_start_month)
        train = np.isin(labels, np.asarray(list(winters)))
        self.mean_ = np.nanmean(f[train], axis=0)
        std = np.nanstd(f[train], axis=0)
        self.std_ = np.where(std > 0, std, 1.0)
        x = lagged_features(f, time, self.mean_, self.std_, self.winter_start_month)
        ordered = sorted(set(int(w) for w in winters))
        fold_of = {w: i % self.folds for i, w in enumerate(ordered)}
        models, scales = [], []
        for d in range(y.shape[1]):
            use = train & np.isfinite(y[:, d])
            # Out-of-fold quantiles on whole winters → the spread factor k.
            mu = np.full(y.shape[0], np.nan)
            sigma = np.full(y.shape[0], np.nan)
            fold = np.array([fold_of.get(int(w), -1) for w in labels])
            for k in range(min(self.folds, len(ordered))):
                fit_rows, held = use & (fold != k), use & (fold == k)
                if not fit_rows.any() or not held.any():
                    continue
                mu[held], sigma[held] = self._gaussian(
                    self._fit_quantiles(x[fit_rows], y[fit_rows, d]), x[held]
                )
            ok = np.isfinite(mu)
            if ok.any():
                crps = crps_gaussian(
                    y[ok, d, None], mu[ok, None], sigma[ok, None] * SCALE_GRID[None, :], axis=0
                )
                scales.append(float(SCALE_GRID[int(np.argmin(np.asarray(crps)))]))
            else:
                scales.append(1.0)
            models.append(self._fit_quantiles(x[use], y[use, d]))
        self.models_, self.scale_ = models, np.asarray(scales)
        return self

    def predict(self, time: Any, features: npt.ArrayLike) -> BaselinePrediction:
        """Gaussian anomaly forecast ``(time, depth)`` from the feature matrix."""
        if self.models_ is None or self.scale_ is None or self.mean_ is None or self.std_ is None:
            raise RuntimeError("GradientBoostingBaseline is not fitted")
        x = lagged_features(
            np.asarray(features, dtype=np.float64),
            time,
            self.mean_,
            self.std_,
            self.winter_start_month,
        )
        means, stds = [], []
        for models, scale in zip(self.models_, self.scale_, strict=True):
            mu, sigma = self._gaussian(models, x)
            means.append(mu)
            stds.append(scale * sigma)
        return BaselinePrediction(np.stack(means, axis=1), np.stack(stds, axis=1))
