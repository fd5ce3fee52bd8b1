"""Baselines the deep ensemble must beat: climatology, persistence, buoyancy-index regression.

All three predict the daily deep-temperature **anomaly** (°C, against the
background of :mod:`cascadia.mooring.events`) at each depth, as a Gaussian
(``mean``, ``std``) so that they are scored with the same probabilistic
metrics (CRPS, coverage) as the ensemble. They are fitted on training winters
only (a winter *Y* runs from 1 November of *Y − 1* to 31 October of *Y*).

* :class:`ClimatologyBaseline` — the day-of-year mean (and spread) of the
  training winters: what one knows without any weather.
* :class:`PersistenceBaseline` — last year's value on the same day: the
  canyon's memory of the previous winter, a strong reference for a slowly
  varying ocean.
* :class:`BuoyancyRegressionBaseline` — the classic index approach: a linear
  regression of the anomaly on the winter's cumulative buoyancy loss, its last
  30 days, and a stratification proxy, all computed from the daily atmospheric
  predictors with the bulk formulas of :mod:`cascadia.learning.airsea` (the
  Mediterranean MFS set, written from the literature, not from the twin).

Pure numpy (xarray only to read calendar fields); no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr

from cascadia.learning.airsea import (
    SECONDS_PER_DAY,
    SurfaceFluxes,
    climatological_sst,
    surface_fluxes,
)
from cascadia.mooring.events import winter_labels

__all__ = [
    "BaselinePrediction",
    "BuoyancyRegressionBaseline",
    "ClimatologyBaseline",
    "PersistenceBaseline",
    "SurfaceFluxes",
    "buoyancy_indices",
    "climatological_sst",
    "surface_fluxes",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class BaselinePrediction:
    """A Gaussian daily prediction of the anomaly.

    Attributes
    ----------
    mean : numpy.ndarray
        ``(time, depth)`` predicted anomaly (°C).
    std : numpy.ndarray
        ``(time, depth)`` predictive standard deviation (°C).
    """

    mean: FloatArray
    std: FloatArray


def _winters(time: Any, start_month: int) -> npt.NDArray[np.int64]:
    da = time if isinstance(time, xr.DataArray) else xr.DataArray(np.asarray(time), dims="time")
    return np.asarray(winter_labels(da, start_month).values, dtype=np.int64)


def _phase(time: Any) -> FloatArray:
    da = time if isinstance(time, xr.DataArray) else xr.DataArray(np.asarray(time), dims="time")
    doy = np.asarray(da.dt.dayofyear.values, dtype=np.float64)
    return (doy - 0.5) / np.asarray(da.dt.days_in_year.values, dtype=np.float64)


def _as_2d(y: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(y, dtype=np.float64)
    return arr[:, None] if arr.ndim == 1 else arr


def _train_mask(time: Any, winters: Sequence[int], start_month: int) -> npt.NDArray[np.bool_]:
    if not winters:
        raise ValueError("no training winters given")
    return np.isin(_winters(time, start_month), np.asarray(list(winters)))


def _circular_smooth(values: FloatArray, counts: FloatArray, width: int) -> FloatArray:
    """Running mean over ``width`` bins of a periodic binned sum (NaN where no data)."""
    if width <= 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, values / np.maximum(counts, 1), np.nan)
    kernel = np.ones(width)
    half = width // 2
    n = values.shape[0]

    def wrap(a: FloatArray) -> FloatArray:
        padded = np.concatenate([a[-half:], a, a[:half]], axis=0)
        return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, padded)[:n]

    s, c = wrap(values), wrap(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


class ClimatologyBaseline:
    """Day-of-year mean and standard deviation of the training winters.

    Days are binned by phase of the year into 365 bins (any calendar), then
    sums are smoothed over ``smooth_days`` bins (periodic) because 10–30
    training winters leave each raw day-of-year mean noisy. The std is the
    smoothed RMS deviation from that mean: the climatological spread, which
    makes the climatology a calibrated (if unsharp) probabilistic forecast.

    Parameters
    ----------
    smooth_days : int
        Width of the running mean over days of the year (odd; 1 = none).
    winter_start_month : int
        First month of a winter year.
    """

    n_bins = 365

    def __init__(self, smooth_days: int = 31, winter_start_month: int = 11) -> None:
        self.smooth_days = smooth_days | 1
        self.winter_start_month = winter_start_month
        self.mean_: FloatArray | None = None
        self.std_: FloatArray | None = None

    def _bins(self, time: Any) -> npt.NDArray[np.int64]:
        return np.minimum((_phase(time) * self.n_bins).astype(np.int64), self.n_bins - 1)

    def fit(self, time: Any, target: npt.ArrayLike, winters: Sequence[int]) -> ClimatologyBaseline:
        """Fit on the days of ``winters``.

        Parameters
        ----------
        time : array-like
            Daily stamps ``(T,)``.
        target : array-like
            ``(T, depth)`` anomalies (°C), NaN for missing days.
        winters : sequence of int
            Training winter years.
        """
        y = _as_2d(target)
        use = _train_mask(time, winters, self.winter_start_month)[:, None] & np.isfinite(y)
        bins = self._bins(time)
        sums = np.zeros((self.n_bins, y.shape[1]))
        counts = np.zeros_like(sums)
        np.add.at(sums, bins, np.where(use, y, 0.0))
        np.add.at(counts, bins, use.astype(np.float64))
        self.mean_ = _circular_smooth(sums, counts, self.smooth_days)
        sq = np.zeros_like(sums)
        np.add.at(sq, bins, np.where(use, (y - self.mean_[bins]) ** 2, 0.0))
        self.std_ = np.sqrt(_circular_smooth(sq, counts, self.smooth_days))
        return self

    def predict(self, time: Any) -> BaselinePrediction:
        """Climatological anomaly and spread for each day of ``time``."""
        if self.mean_ is None or self.std_ is None:
            raise RuntimeError("ClimatologyBaseline is not fitted")
        bins = self._bins(time)
        return BaselinePrediction(self.mean_[bins], self.std_[bins])


class PersistenceBaseline:
    """Last year's anomaly on the same calendar day.

    The prediction for day (Y, m, d) is the observation of (Y − 1, m, d) (29
    February → 28 February). The std is the RMS of the persistence error over
    the training winters, per depth.

    Parameters
    ----------
    winter_start_month : int
        First month of a winter year.
    """

    def __init__(self, winter_start_month: int = 11) -> None:
        self.winter_start_month = winter_start_month
        self.std_: FloatArray | None = None

    @staticmethod
    def shifted(time: Any, target: npt.ArrayLike) -> FloatArray:
        """The series one year earlier, aligned with ``time`` (NaN before its start).

        Parameters
        ----------
        time : array-like
            Consecutive daily stamps ``(T,)``, any calendar.
        target : array-like
            ``(T, depth)`` observed anomalies on ``time`` (°C).
        """
        y = _as_2d(target)
        da = time if isinstance(time, xr.DataArray) else xr.DataArray(np.asarray(time), dims="time")
        year = np.asarray(da.dt.year.values)
        month = np.asarray(da.dt.month.values)
        day = np.asarray(da.dt.day.values)
        index = {(a, b, c): i for i, (a, b, c) in enumerate(zip(year, month, day, strict=True))}
        out = np.full_like(y, np.nan)
        for i, (a, b, c) in enumerate(zip(year, month, day, strict=True)):
            j = index.get((a - 1, b, c))
            if j is None and b == 2 and c == 29:
                j = index.get((a - 1, 2, 28))
            if j is not None:
                out[i] = y[j]
        return out

    def fit(self, time: Any, target: npt.ArrayLike, winters: Sequence[int]) -> PersistenceBaseline:
        """Estimate the persistence error spread on the training winters."""
        y = _as_2d(target)
        err = self.shifted(time, y) - y
        use = _train_mask(time, winters, self.winter_start_month)[:, None] & np.isfinite(err)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.std_ = np.sqrt(np.where(use, err**2, 0.0).sum(0) / use.sum(0))
        return self

    def predict(self, time: Any, target: npt.ArrayLike) -> BaselinePrediction:
        """Predict each day of ``time`` from the observed ``target`` a year before.

        ``target`` is the observed series on ``time`` (test days included: only
        the year-earlier values are read).
        """
        if self.std_ is None:
            raise RuntimeError("PersistenceBaseline is not fitted")
        mean = self.shifted(time, target)
        return BaselinePrediction(mean, np.broadcast_to(self.std_, mean.shape).copy())


def buoyancy_indices(
    buoyancy_loss: npt.ArrayLike,
    time: Any,
    recent_days: int = 30,
    winter_start_month: int = 11,
) -> dict[str, FloatArray]:
    """Daily buoyancy-loss and stratification indices (m2 s-2).

    Parameters
    ----------
    buoyancy_loss : array-like
        Daily B (m2 s-3, positive = densifying), consecutive days.
    time : array-like
        Daily stamps.
    recent_days : int
        Window of the recent buoyancy loss (storm sequences drive the pulses).
    winter_start_month : int
        Month the winter's accumulation starts (November).

    Returns
    -------
    dict
        ``winter_loss``: ∫B dt from the winter's start to the day — the
        densification accumulated so far; ``recent_loss``: ∫B dt over the last
        ``recent_days`` days; ``stratification``: −∫B dt over May–October
        before the winter (the buoyancy stored by the summer and autumn — warm
        seasonal thermocline, autumn rain — a proxy of the preconditioning the
        atmosphere controls; NaN when that period is not covered). NaN days
        count as zero flux in the integrals.
    """
    b = np.nan_to_num(np.asarray(buoyancy_loss, dtype=np.float64)) * SECONDS_PER_DAY
    winters = _winters(time, winter_start_month)
    da = time if isinstance(time, xr.DataArray) else xr.DataArray(np.asarray(time), dims="time")
    month = np.asarray(da.dt.month.values)
    year = np.asarray(da.dt.year.values)
    winter_loss = np.zeros_like(b)
    for w in np.unique(winters):
        sel = winters == w
        winter_loss[sel] = np.cumsum(b[sel])
    csum = np.concatenate([[0.0], np.cumsum(b)])
    idx = np.arange(b.size)
    recent = csum[idx + 1] - csum[np.maximum(idx + 1 - recent_days, 0)]
    summer = (month >= 5) & (month <= 10)
    strat = np.full_like(b, np.nan)
    for w in np.unique(winters):
        # May–October of the calendar year before the winter's January.
        sel = summer & (year == w - 1) & (month < winter_start_month)
        if sel.sum() >= 150:
            strat[winters == w] = -b[sel].sum()
    return {"winter_loss": winter_loss, "recent_loss": recent, "stratification": strat}


class BuoyancyRegressionBaseline:
    """Linear regression of the anomaly on buoyancy-loss and stratification indices.

    Regressors per day: 1, the winter's cumulative buoyancy loss, the last
    ``recent_days`` of it, the pre-winter stratification proxy (see
    :func:`buoyancy_indices`) and sin/cos of the phase of the year (so the
    seasonal cycle of the loss does not masquerade as skill). Indices are
    standardised with training statistics; one least-squares fit per depth on
    training-winter days; the std is the training residual RMS per depth.

    Parameters
    ----------
    recent_days : int
        Window of the recent buoyancy loss (days).
    lat_deg : float
        Latitude for the insolation (°N).
    winter_start_month : int
        First month of a winter year.
    """

    index_names = ("winter_loss", "recent_loss", "stratification")

    def __init__(
        self, recent_days: int = 30, lat_deg: float = 42.5, winter_start_month: int = 11
    ) -> None:
        self.recent_days = recent_days
        self.lat_deg = lat_deg
        self.winter_start_month = winter_start_month
        self.coef_: FloatArray | None = None
        self.std_: FloatArray | None = None
        self.index_mean_: FloatArray | None = None
        self.index_std_: FloatArray | None = None

    def _indices(self, time: Any, predictors: Mapping[str, npt.ArrayLike]) -> FloatArray:
        flux = surface_fluxes(predictors, time, lat_deg=self.lat_deg)
        idx = buoyancy_indices(flux.buoyancy_loss, time, self.recent_days, self.winter_start_month)
        return np.stack([idx[k] for k in self.index_names], axis=1)

    def _design(self, time: Any, indices: FloatArray) -> FloatArray:
        if self.index_mean_ is None or self.index_std_ is None:
            raise RuntimeError("BuoyancyRegressionBaseline is not fitted")
        z = (indices - self.index_mean_) / self.index_std_
        z = np.where(np.isnan(z), 0.0, z)  # unknown stratification → the training mean
        angle = 2.0 * np.pi * _phase(time)
        return np.column_stack([np.ones(len(z)), z, np.sin(angle), np.cos(angle)])

    def fit(
        self,
        time: Any,
        target: npt.ArrayLike,
        winters: Sequence[int],
        predictors: Mapping[str, npt.ArrayLike],
    ) -> BuoyancyRegressionBaseline:
        """Fit on training winters.

        Parameters
        ----------
        time : array-like
            Consecutive daily stamps ``(T,)``.
        target : array-like
            ``(T, depth)`` anomalies (°C).
        winters : sequence of int
            Training winter years.
        predictors : mapping
            Canonical daily predictors on ``time`` (see :func:`surface_fluxes`).
        """
        y = _as_2d(target)
        train = _train_mask(time, winters, self.winter_start_month)
        ind = self._indices(time, predictors)
        self.index_mean_ = np.nanmean(ind[train], axis=0)
        self.index_std_ = np.nanstd(ind[train], axis=0)
        self.index_std_ = np.where(self.index_std_ > 0, self.index_std_, 1.0)
        x = self._design(time, ind)
        coefs, stds = [], []
        for d in range(y.shape[1]):
            use = train & np.isfinite(y[:, d])
            beta, *_ = np.linalg.lstsq(x[use], y[use, d], rcond=None)
            coefs.append(beta)
            stds.append(np.sqrt(np.mean((x[use] @ beta - y[use, d]) ** 2)))
        self.coef_ = np.stack(coefs, axis=1)
        self.std_ = np.asarray(stds)
        return self

    def predict(self, time: Any, predictors: Mapping[str, npt.ArrayLike]) -> BaselinePrediction:
        """Anomaly predicted from the predictors' buoyancy indices."""
        if self.coef_ is None or self.std_ is None:
            raise RuntimeError("BuoyancyRegressionBaseline is not fitted")
        mean = self._design(time, self._indices(time, predictors)) @ self.coef_
        return BaselinePrediction(mean, np.broadcast_to(self.std_, mean.shape).copy())
