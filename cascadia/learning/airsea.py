"""Air–sea heat and fresh-water fluxes of the model side, from the Mediterranean literature.

Why a module of its own: the physics-shaped features, the shelf slab and the
index-regression baseline all need the shelf's daily net heat flux from the
atmospheric predictors, and the model side must not reuse the twin generator's
formulas or constants (``cascadia/twin`` writes its own world). The formulas here
are the bulk set of the Mediterranean Forecasting System (MFS; Castellari, Pinardi
& Leaman 1998, J. Mar. Syst. 18; Pettenuzzo, Large & Pinardi 2010, JGR 115,
C06022), the standard one for the basin's heat budget:

* **short-wave** — clear-sky irradiance of Rosati & Miyakoda (1988, JPO 18):
  direct ``S0 τ^(1/sin h) sin h`` plus diffuse ``((1 − A_a) S0 sin h − direct)/2``,
  transmission τ = 0.7, water-vapour absorption A_a = 0.09, integrated over the
  day's solar elevation h; cloud reduction of Reed (1977, J. Phys. Oceanogr.):
  ``Q_clear (1 − 0.62 C + 0.0019 β)`` (β noon solar altitude in degrees, no
  reduction below C = 0.3); ocean albedo of Taylor et al. (1996, QJRMS 122)
  ``0.037 / (1.1 μ^1.4 + 0.15)`` (μ = sin h), insolation-weighted over the day
  (the MFS uses Payne's 1972 table; Taylor's fit gives the same few per cent).
  When ``rsds`` is a predictor it replaces Reed's estimate (albedo as above);
* **long-wave** — Bignami, Marullo, Santoleri & Schiano (1995, JGR 100):
  ``Q_B = ε σ T_s⁴ − σ T_a⁴ (0.653 + 0.00535 e_a)(1 + 0.1762 C²)`` (e_a in hPa),
  fitted on Mediterranean radiometer data; ε = 0.97. When ``rlds`` is a
  predictor, ``ε (rlds − σ T_s⁴)``;
* **turbulent fluxes** — bulk formulas with Kondo's (1975, Boundary-Layer
  Meteorol. 9) transfer coefficients: neutral ``10³ C = a + b U^p + c (U − 8)²``
  per wind-speed band, corrected for stability by
  ``S = S0 |S0| / (|S0| + 0.01)``, ``S0 = (T_s − T_a)/U²``: unstable (S > 0)
  ``C (1 + 0.63 √S)``, stable ``C (0.1 + 0.03 S + 0.9 e^(4.8 S))`` (0 below
  S = −3.3). Saturation humidity of Kondo's form as used in the MFS,
  ``q_s = 0.98 · 640380 e^(−5107.4/T)/ρ_a`` (0.98 for sea salt); latent heat
  ``L = 2.5008·10⁶ − 2.3·10³ T_s`` (Gill 1982); moist-air density from the
  ideal-gas law with the virtual temperature.

The Gulf of Lion has the basin's largest winter losses: a Mistral day with
12–15 m s-1 of dry, 5 °C air over a 13 °C sea loses 500–800 W m-2 (Mertens &
Schott 1998, JPO 28; Estournel et al. 2016), the annual mean net long-wave of
the basin is ≈ −80 W m-2 (Bignami et al. 1995) — the tests check these
magnitudes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr

__all__ = [
    "SurfaceFluxes",
    "climatological_sst",
    "day_of_year",
    "kondo_coefficients",
    "net_longwave",
    "net_shortwave",
    "surface_fluxes",
]

FloatArray = npt.NDArray[np.float64]

KELVIN = 273.15
G = 9.81  # gravity, m s-2
RHO0 = 1029.0  # reference sea-water density, kg m-3
CP = 3985.0  # sea-water heat capacity, J kg-1 K-1
RHO_FRESH = 1000.0  # fresh water density (E and P as volume fluxes), kg m-3
#: Thermal expansion (K-1) and haline contraction (kg g-1) of Gulf of Lion shelf
#: water in winter (≈ 13 °C, S ≈ 38.3): TEOS-10 values rounded; constant because
#: the index only has to rank days and winters, not close a budget.
ALPHA = 2.0e-4
BETA = 7.6e-4
S0_SHELF = 38.3  # shelf salinity, g kg-1
R_DRY = 287.05  # gas constant of dry air, J kg-1 K-1
CPA = 1004.6  # heat capacity of dry air at constant pressure, J kg-1 K-1
SIGMA_SB = 5.670374e-8  # Stefan–Boltzmann (CODATA 2018), W m-2 K-4
EMISSIVITY = 0.97  # sea surface, as in the MFS bulk set
SOLAR_CONSTANT = 1361.0  # W m-2 (Kopp & Lean 2011)
TRANSMISSION = 0.7  # clear-sky atmospheric transmission (Rosati & Miyakoda 1988)
VAPOUR_ABSORPTION = 0.09  # water-vapour + ozone absorption A_a (Rosati & Miyakoda 1988)
DEFAULT_CLOUD = 0.5  # cloud fraction assumed when clt is not a predictor
SECONDS_PER_DAY = 86400.0
#: Gulf of Lion shelf sea-surface temperature, monthly means (°C), January first:
#: rounded values (±0.5 °C) of satellite SST climatologies of the shelf (e.g. the
#: Copernicus Mediterranean SST reprocessing): ≈ 13 °C in February, ≈ 23 °C in August.
SST_MONTHLY = (13.3, 12.9, 13.1, 14.3, 16.9, 20.4, 22.6, 22.9, 20.9, 18.2, 15.8, 14.2)

#: Kondo (1975) neutral transfer coefficients, 10³ C = a + b U^p + c (U − 8)²,
#: for sensible heat (H) and evaporation (E), by 10 m wind-speed band (upper bound, m s-1).
_KONDO_BANDS = (2.2, 5.0, 8.0, 25.0, np.inf)
_KONDO_H = ((0.0, 1.185, 0.0, -0.157), (0.927, 0.0546, 0.0, 1.0), (1.15, 0.01, 0.0, 1.0),
            (1.17, 0.0075, -0.00045, 1.0), (1.652, -0.017, 0.0, 1.0))  # fmt: skip
_KONDO_E = ((0.0, 1.23, 0.0, -0.16), (0.969, 0.0521, 0.0, 1.0), (1.18, 0.01, 0.0, 1.0),
            (1.196, 0.008, -0.0004, 1.0), (1.68, -0.016, 0.0, 1.0))  # fmt: skip


def _time(time: Any) -> xr.DataArray:
    return time if isinstance(time, xr.DataArray) else xr.DataArray(np.asarray(time), dims="time")


def day_of_year(time: Any) -> tuple[FloatArray, FloatArray]:
    """Day of year (1-based, float) and the length of each day's year."""
    da = _time(time)
    doy = np.asarray(da.dt.dayofyear.values, dtype=np.float64)
    return doy, np.asarray(da.dt.days_in_year.values, dtype=np.float64)


def climatological_sst(time: Any) -> FloatArray:
    """Climatological Gulf of Lion shelf sea-surface temperature (°C) on each day.

    Why: the bulk formulas need a surface temperature, and a source without
    ``tos`` gives none. The monthly climatology :data:`SST_MONTHLY`, placed at
    mid-month and interpolated periodically, makes the heat loss respond to the
    atmosphere only; its cost is that a warming sea is invisible (the slab relaxes
    to ``tos`` when the predictors carry it, :mod:`cascadia.learning.shelf`).
    """
    doy, length = day_of_year(time)
    position = 12.0 * (doy - 0.5) / length - 0.5  # 0 = mid-January, in months
    months = np.arange(-1, 13, dtype=np.float64)
    values = np.asarray(SST_MONTHLY, dtype=np.float64)
    table = np.concatenate([[values[-1]], values, [values[0]]])
    return np.interp(position, months, table)


def _solar_geometry(time: Any, lat_deg: float) -> tuple[FloatArray, FloatArray]:
    """Declination (rad) and the Sun–Earth distance factor of each day (Spencer 1971)."""
    doy, length = day_of_year(time)
    g = 2.0 * np.pi * (doy - 1.0) / length
    declination = (
        0.006918
        - 0.399912 * np.cos(g)
        + 0.070257 * np.sin(g)
        - 0.006758 * np.cos(2 * g)
        + 0.000907 * np.sin(2 * g)
        - 0.002697 * np.cos(3 * g)
        + 0.00148 * np.sin(3 * g)
    )
    distance = (
        1.00011
        + 0.034221 * np.cos(g)
        + 0.00128 * np.sin(g)
        + 0.000719 * np.cos(2 * g)
        + 0.000077 * np.sin(2 * g)
    )
    return declination, distance


def _albedo(mu: FloatArray) -> FloatArray:
    """Ocean albedo for the cosine of the solar zenith angle μ (Taylor et al. 1996)."""
    return 0.037 / (1.1 * np.maximum(mu, 1e-3) ** 1.4 + 0.15)


def _daily_clear_sky(time: Any, lat_deg: float, steps: int = 96) -> tuple[FloatArray, FloatArray]:
    """Daily-mean clear-sky irradiance (W m-2) and insolation-weighted albedo.

    Rosati & Miyakoda (1988) at ``steps`` instants of the day.
    """
    declination, distance = _solar_geometry(time, lat_deg)
    # a day of the year has the same sun every year: each distinct day is computed once
    days, of_day = np.unique(declination + 1j * distance, return_inverse=True)
    declination, distance = days.real, days.imag
    lat = np.deg2rad(lat_deg)
    hour_angle = np.pi * (2.0 * (np.arange(steps) + 0.5) / steps - 1.0)
    mu = np.sin(lat) * np.sin(declination)[:, None] + np.cos(lat) * np.cos(declination)[
        :, None
    ] * np.cos(hour_angle[None, :])
    up = mu > 0
    top = SOLAR_CONSTANT * distance[:, None] * np.where(up, mu, 0.0)
    direct = np.where(up, top * TRANSMISSION ** (1.0 / np.where(up, mu, 1.0)), 0.0)
    diffuse = ((1.0 - VAPOUR_ABSORPTION) * top - direct) / 2.0
    clear = direct + diffuse
    albedo = _albedo(mu)
    total = clear.sum(axis=1)
    weighted = np.where(total > 0, (clear * albedo).sum(axis=1) / np.maximum(total, 1e-9), 0.06)
    of_day = of_day.reshape(-1)
    return (total / steps)[of_day], weighted[of_day]


def net_shortwave(
    time: Any, lat_deg: float, cloud: FloatArray, rsds: FloatArray | None = None
) -> FloatArray:
    """Daily net short-wave into the sea (W m-2): Reed (1977) or ``rsds``, minus the albedo."""
    clear, albedo = _daily_clear_sky(time, lat_deg)
    if rsds is not None:
        return (1.0 - albedo) * rsds
    declination, _ = _solar_geometry(time, lat_deg)
    noon_altitude = 90.0 - np.abs(lat_deg - np.rad2deg(declination))
    reduction = np.where(cloud < 0.3, 1.0, 1.0 - 0.62 * cloud + 0.0019 * noon_altitude)
    return clear * np.minimum(reduction, 1.0) * (1.0 - albedo)


def net_longwave(
    ts_k: FloatArray,
    ta_k: FloatArray,
    vapour_hpa: FloatArray,
    cloud: FloatArray,
    rlds: FloatArray | None = None,
) -> FloatArray:
    """Net long-wave into the sea (W m-2, negative): Bignami et al. (1995) or ``rlds``."""
    emitted = EMISSIVITY * SIGMA_SB * ts_k**4
    if rlds is not None:
        return EMISSIVITY * rlds - emitted
    sky = SIGMA_SB * ta_k**4 * (0.653 + 0.00535 * np.maximum(vapour_hpa, 0.0))
    return sky * (1.0 + 0.1762 * cloud**2) - emitted


def kondo_coefficients(
    wind: FloatArray, ts_c: FloatArray, ta_c: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Stability-dependent transfer coefficients (C_H, C_E) of Kondo (1975), 10 m wind.

    Parameters
    ----------
    wind : numpy.ndarray
        10 m wind speed (m s-1); below 0.3 m s-1 (Kondo's lowest band) it counts as 0.3.
    ts_c, ta_c : numpy.ndarray
        Sea-surface and air temperature (°C).
    """
    u = np.maximum(np.asarray(wind, dtype=np.float64), 0.3)
    band = np.searchsorted(np.asarray(_KONDO_BANDS), np.nan_to_num(u, nan=1.0), side="right")
    band = np.minimum(band, len(_KONDO_BANDS) - 1)

    def neutral(table: tuple[tuple[float, float, float, float], ...]) -> FloatArray:
        a, b, c, p = (np.asarray([row[i] for row in table])[band] for i in range(4))
        return 1e-3 * (a + b * u**p + c * (u - 8.0) ** 2)

    s0 = (ts_c - ta_c) / u**2
    s = s0 * np.abs(s0) / (np.abs(s0) + 0.01)
    stable = np.where(s > -3.3, 0.1 + 0.03 * s + 0.9 * np.exp(4.8 * np.minimum(s, 0.0)), 0.0)
    factor = np.where(s >= 0.0, 1.0 + 0.63 * np.sqrt(np.maximum(s, 0.0)), stable)
    return neutral(_KONDO_H) * factor, neutral(_KONDO_E) * factor


def _saturation_humidity(t_k: FloatArray, rho_air: FloatArray) -> FloatArray:
    """Saturation specific humidity over fresh water (kg kg-1), Kondo's exponential fit."""
    return 640380.0 * np.exp(-5107.4 / t_k) / rho_air


@dataclass(frozen=True)
class SurfaceFluxes:
    """Daily air–sea fluxes from bulk formulas.

    Attributes
    ----------
    q_net : numpy.ndarray
        Net heat flux into the ocean (W m-2; negative = the sea loses heat).
    shortwave, longwave, sensible, latent : numpy.ndarray
        Its terms (W m-2, into the ocean).
    evaporation, precipitation : numpy.ndarray
        Fresh-water fluxes (m s-1 of fresh water, both ≥ 0 for E ≥ 0, P ≥ 0).
    buoyancy_loss : numpy.ndarray
        B = g[α(−Q_net)/(ρ0 c_p) + β S (E − P)] (m2 s-3): positive when the sea
        loses buoyancy (is made denser); the winter buoyancy loss is BL = ∫B dt.
    sst : numpy.ndarray
        Surface temperature used (°C).
    """

    q_net: FloatArray
    shortwave: FloatArray
    longwave: FloatArray
    sensible: FloatArray
    latent: FloatArray
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

    The MFS bulk set (module docstring). Cloud fraction C is ``clt``/100, or
    :data:`DEFAULT_CLOUD` when absent.

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

    Raises
    ------
    KeyError
        A needed predictor is absent (the message names it).
    """
    missing = [v for v in ("tas", "sfcWind", "psl", "pr") if v not in predictors]
    if "huss" not in predictors and "hurs" not in predictors:
        missing.append("huss or hurs")
    if missing:
        raise KeyError(f"surface_fluxes needs predictors {missing}; got {sorted(predictors)}")

    def get(name: str) -> FloatArray:
        return np.asarray(predictors[name], dtype=np.float64)

    ta_k = get("tas")
    ta_c = ta_k - KELVIN
    wind = get("sfcWind")
    psl = get("psl")
    ts_c = climatological_sst(time) if sst is None else np.asarray(sst, dtype=np.float64)
    ts_k = ts_c + KELVIN
    rho_dry = psl / (R_DRY * ta_k)
    if "huss" in predictors:
        qa = get("huss")
    else:
        qa = get("hurs") / 100.0 * _saturation_humidity(ta_k, rho_dry)
    rho_air = psl / (R_DRY * ta_k * (1.0 + 0.608 * qa))
    if "hurs" in predictors and "huss" not in predictors:
        qa = get("hurs") / 100.0 * _saturation_humidity(ta_k, rho_air)
    vapour_hpa = qa * psl / (0.622 + 0.378 * qa) / 100.0
    qs = 0.98 * _saturation_humidity(ts_k, rho_air)
    c_h, c_e = kondo_coefficients(wind, ts_c, ta_c)
    latent_heat = 2.5008e6 - 2.3e3 * ts_c
    sensible = -rho_air * CPA * c_h * wind * (ts_c - ta_c)
    latent = -rho_air * latent_heat * c_e * wind * (qs - qa)
    cloud = get("clt") / 100.0 if "clt" in predictors else np.full_like(ta_k, DEFAULT_CLOUD)
    longwave = net_longwave(
        ts_k, ta_k, vapour_hpa, cloud, get("rlds") if "rlds" in predictors else None
    )
    shortwave = net_shortwave(
        time, lat_deg, cloud, get("rsds") if "rsds" in predictors else None
    ) + np.zeros_like(ta_k)
    q_net = shortwave + longwave + sensible + latent
    evaporation = np.maximum(-latent, 0.0) / (RHO_FRESH * latent_heat)
    precipitation = np.maximum(get("pr"), 0.0) / RHO_FRESH
    buoyancy = G * (
        ALPHA * (-q_net) / (RHO0 * CP) + BETA * S0_SHELF * (evaporation - precipitation)
    )
    return SurfaceFluxes(
        q_net, shortwave, longwave, sensible, latent, evaporation, precipitation, buoyancy, ts_c
    )
