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
  predictors with bulk formulas (:func:`surface_fluxes`).

Pure numpy (xarray only to read calendar fields); no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr

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

# Physical constants (SI).
G = 9.81  # gravity, m s-2
RHO0 = 1029.0  # reference sea-water density, kg m-3
CP = 3985.0  # sea-water heat capacity, J kg-1 K-1
RHO_FRESH = 1000.0  # fresh water density (E and P as volume fluxes), kg m-3
#: Thermal expansion (K-1) and haline contraction (kg g-1) of Gulf of Lion shelf
#: water in winter (≈ 13 °C, S ≈ 38.3): TEOS-10 values rounded; constant because
#: the index only has to rank days and winters, not close a budget.
ALPHA = 2.0e-4
BETA = 7.6e-4
S0 = 38.3  # shelf salinity, g kg-1
R_DRY = 287.05  # gas constant of dry air, J kg-1 K-1
CPA = 1004.6  # heat capacity of air, J kg-1 K-1
LV = 2.5e6  # latent heat of vaporisation, J kg-1
C_H = 1.1e-3  # Stanton number (Large & Pond 1982)
C_E = 1.2e-3  # Dalton number (Large & Pond 1982)
SIGMA_SB = 5.67e-8  # Stefan–Boltzmann, W m-2 K-4
EMISSIVITY = 0.98
SOLAR_CONSTANT = 1361.0  # W m-2
DEFAULT_CLOUD = 0.5  # cloud fraction assumed when clt is not a predictor
SECONDS_PER_DAY = 86400.0


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


def climatological_sst(time: Any) -> FloatArray:
    """Climatological Gulf of Lion sea-surface temperature (°C).

    Why: the net heat flux needs a surface temperature, which is not an
    atmospheric predictor (and a model-simulated SST would leak the ocean state).
    A fixed seasonal cycle, 17.5 + 4.5 cos(2π(φ − 0.62)) — ≈ 13 °C in
    mid-February, ≈ 22 °C in mid-August, a rounded reading of the shelf's
    observed surface climatology — makes the heat loss respond to the
    atmosphere only: a cold, windy, dry winter loses more heat, as it should.
    Its cost: the feedback of a cooling sea on its own heat loss is missing,
    so the index overestimates losses late in severe winters.
    """
    return 17.5 + 4.5 * np.cos(2.0 * np.pi * (_phase(time) - 0.62))


def _saturation_vapour_pressure(t_celsius: FloatArray) -> FloatArray:
    """Over water, hPa (Bolton 1980)."""
    return 6.112 * np.exp(17.67 * t_celsius / (t_celsius + 243.5))


def _specific_humidity(e_hpa: FloatArray, p_pa: FloatArray) -> FloatArray:
    p_hpa = p_pa / 100.0
    return 0.622 * e_hpa / (p_hpa - 0.378 * e_hpa)


def _toa_insolation(time: Any, lat_deg: float) -> FloatArray:
    """Daily-mean top-of-atmosphere insolation (W m-2)."""
    phase = _phase(time)
    decl = np.deg2rad(-23.44) * np.cos(2.0 * np.pi * (phase + 10.0 / 365.0))
    lat = np.deg2rad(lat_deg)
    h0 = np.arccos(np.clip(-np.tan(lat) * np.tan(decl), -1.0, 1.0))
    dist = 1.0 + 0.033 * np.cos(2.0 * np.pi * phase)
    return (
        SOLAR_CONSTANT
        / np.pi
        * dist
        * (h0 * np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.sin(h0))
    )


@dataclass(frozen=True)
class SurfaceFluxes:
    """Daily air–sea fluxes from bulk formulas.

    Attributes
    ----------
    q_net : numpy.ndarray
        Net heat flux into the ocean (W m-2; negative = the sea loses heat).
    evaporation, precipitation : numpy.ndarray
        Fresh-water fluxes (m s-1 of fresh water, both ≥ 0 for E ≥ 0, P ≥ 0).
    buoyancy_loss : numpy.ndarray
        B = g[α(−Q_net)/(ρ0 c_p) + β S (E − P)] (m2 s-3): positive when the sea
        loses buoyancy (is made denser). This is the note's formula with Q_net
        counted as the heat the ocean *loses*; the winter buoyancy loss is then
        BL = ∫B dt (the note's −∫B dt when B is counted into the ocean).
    sst : numpy.ndarray
        Surface temperature used (°C).
    """

    q_net: FloatArray
    evaporation: FloatArray
    precipitation: FloatArray
    buoyancy_loss: FloatArray
    sst: FloatArray


def surface_fluxes(
    predictors: Mapping[str, npt.ArrayLike],
    time: Any,
    lat_deg: float = 42.5,
    sst: npt.ArrayLike | None = None,
) -> SurfaceFluxes:
    """Net heat, fresh-water and buoyancy fluxes from daily canonical predictors.

    Bulk formulas as in the twin world and standard practice: sensible
    ρ_a c_pa C_H U (T_a − T_s), latent ρ_a L_v C_E U (q_a − 0.98 q_sat(T_s))
    (Large & Pond 1982), net long-wave ε(rlds − σT_s⁴) when ``rlds`` is given,
    otherwise Clark et al. (1974) with a cloud correction; short-wave 0.93
    ``rsds`` (albedo 0.07), otherwise the daily top-of-atmosphere insolation ×
    0.7 (clear-sky transmission) × (1 − 0.62 C) (Reed 1977, without the noon
    altitude term). Cloud fraction C is ``clt``/100, or 0.5 when absent.

    Parameters
    ----------
    predictors : mapping
        Canonical daily arrays ``(T,)``: ``tas`` (K), ``sfcWind`` (m s-1),
        ``psl`` (Pa), ``pr`` (kg m-2 s-1), and ``huss`` (1) or ``hurs`` (%);
        optionally ``rsds``, ``rlds`` (W m-2) and ``clt`` (%).
    time : array-like
        Daily stamps ``(T,)`` (season of the SST and insolation).
    lat_deg : float
        Latitude of the insolation (°N); the Gulf of Lion shelf by default.
    sst : array-like, optional
        Surface temperature (°C); :func:`climatological_sst` if None.

    Returns
    -------
    SurfaceFluxes
        Daily fluxes; NaN wherever a needed predictor is NaN.
    """
    missing = [v for v in ("tas", "sfcWind", "psl", "pr") if v not in predictors]
    if "huss" not in predictors and "hurs" not in predictors:
        missing.append("huss or hurs")
    if missing:
        raise KeyError(f"surface_fluxes needs predictors {missing}; got {sorted(predictors)}")

    def get(name: str) -> FloatArray:
        return np.asarray(predictors[name], dtype=np.float64)

    ta = get("tas")
    ta_c = ta - 273.15
    wind = get("sfcWind")
    psl = get("psl")
    ts = climatological_sst(time) if sst is None else np.asarray(sst, dtype=np.float64)
    ts_k = ts + 273.15
    if "huss" in predictors:
        qa = get("huss")
        e_a = qa * psl / 100.0 / (0.622 + 0.378 * qa)  # hPa
    else:
        e_a = get("hurs") / 100.0 * _saturation_vapour_pressure(ta_c)
        qa = _specific_humidity(e_a, psl)
    rho_a = psl / (R_DRY * ta * (1.0 + 0.61 * qa))
    q_sat = 0.98 * _specific_humidity(_saturation_vapour_pressure(ts), psl)
    sensible = rho_a * CPA * C_H * wind * (ta - ts_k)
    latent = rho_a * LV * C_E * wind * (qa - q_sat)
    cloud = get("clt") / 100.0 if "clt" in predictors else np.full_like(ta, DEFAULT_CLOUD)
    if "rlds" in predictors:
        longwave = EMISSIVITY * (get("rlds") - SIGMA_SB * ts_k**4)
    else:
        longwave = -EMISSIVITY * SIGMA_SB * ts_k**4 * (0.39 - 0.05 * np.sqrt(np.maximum(e_a, 0.0)))
        longwave = longwave * (1.0 - 0.69 * cloud**2)
        longwave -= 4.0 * EMISSIVITY * SIGMA_SB * ts_k**3 * (ts_k - ta)
    if "rsds" in predictors:
        shortwave = 0.93 * get("rsds")
    else:
        shortwave = 0.93 * 0.7 * _toa_insolation(time, lat_deg) * (1.0 - 0.62 * cloud)
    q_net = shortwave + longwave + sensible + latent
    evaporation = np.maximum(-latent, 0.0) / (RHO_FRESH * LV)
    precipitation = np.maximum(get("pr"), 0.0) / RHO_FRESH
    buoyancy = G * (ALPHA * (-q_net) / (RHO0 * CP) + BETA * S0 * (evaporation - precipitation))
    return SurfaceFluxes(q_net, evaporation, precipitation, buoyancy, ts)


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
