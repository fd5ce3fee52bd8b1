"""The twin world's ocean: a shelf slab that cascades into a warming canyon.

Process model (daily step, documented with sources in docs/twin-world.md):

* a well-mixed shelf slab of depth ``H`` exchanges heat and freshwater with the
  atmosphere through bulk formulas (sensible, latent, net long-wave, short-wave),
  gains salt by evaporation, loses it to rain and to the Rhône, and is renewed
  by offshore surface water on a time scale ``exchange_days``; that water is a slab
  mixed layer under the realization's own air (:func:`offshore_anomaly`): it warms
  with the source's own sensitivity and follows the air from year to year;
* its density, and that of the ambient water at 500 m and 1000 m, are TEOS-10
  in-situ densities at the target pressure (``gsw``);
* where the shelf water is denser than the ambient water (minus an entrainment
  loss on the way down), it cascades: the deep temperature is pulled towards
  the plume temperature (shelf water mixed with ambient water) at a rate set by
  the density excess and the wind (storms drive the pulses), and relaxes to the
  background afterwards; cascading exports shelf water, which renews the shelf;
* processes the atmosphere does not show: Rhône discharge with its own Alpine
  memory, offshore salinity anomalies, pre-winter stratification, the deep
  background that warms (with the 2014 step) and salts, and deep eddy noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import gsw
import numpy as np
from scipy.signal import lfilter

from cascadia.twin.atmosphere import RegionalWeather, air_climatology, red_noise, warming
from cascadia.twin.timeaxis import DayAxis

DEPTHS = (500.0, 1000.0)
MOORING_LAT, MOORING_LON = 42.43, 3.545  # Lacaze-Duthiers canyon mooring

RHO_AIR = 1.22  # kg m-3
CP_AIR = 1005.0  # J kg-1 K-1
LATENT_HEAT = 2.5e6  # J kg-1
RHO_SEAWATER = 1025.0  # kg m-3
CP_SEAWATER = 3990.0  # J kg-1 K-1
RHO_FRESHWATER = 1000.0  # kg m-3
STEFAN_BOLTZMANN = 5.67e-8  # W m-2 K-4
SECONDS_PER_DAY = 86400.0

# Deep background (in-situ temperature degC, practical salinity) through the
# observed record: slow warming, intermediate-water warming 2007-2017 with a
# +0.3 degC step in 2014 (Margirier et al. 2020), projected afterwards by scenario.
_BG_YEARS = np.array([1900.0, 1950.0, 2006.0, 2013.9, 2014.4, 2017.0, 2025.0])
_BG_T = {
    500.0: np.array([12.95, 13.00, 13.10, 13.22, 13.52, 13.60, 13.72]),
    1000.0: np.array([12.80, 12.84, 12.91, 12.98, 13.12, 13.17, 13.26]),
}
_BG_S = {
    500.0: np.array([38.48, 38.49, 38.51, 38.54, 38.63, 38.65, 38.68]),
    1000.0: np.array([38.45, 38.46, 38.47, 38.49, 38.54, 38.55, 38.58]),
}
#: Background trends after 2025 per scenario, (degC yr-1, yr-1) at 500 m; 1000 m gets 60 %.
_BG_RATES = {
    None: (0.006, 0.0008),
    "historical": (0.006, 0.0008),
    "ssp126": (0.006, 0.0012),
    "ssp245": (0.013, 0.0020),
    "ssp585": (0.024, 0.0035),
}


@dataclass(frozen=True)
class OceanParams:
    """Parameters of the process model (values and sources in docs/twin-world.md)."""

    shelf_depth: float = 70.0  # m, effective depth of the dense-water-forming shelf
    shelf_area: float = 1.2e10  # m2
    exchange_days: float = 40.0  # renewal time of shelf water by offshore water
    export_renewal: float = 0.08  # day-1 per unit cascading flux
    river_mean: float = 1700.0  # m3 s-1, Rhône mean discharge
    river_mixing: float = 0.45  # fraction of the discharge that reaches the slab
    river_factor: float = 1.0  # scales the discharge (sensitivity experiments)
    offshore_salinity: float = 38.0
    offshore_temp_mean: float = 15.0  # degC, 0-70 m offshore mean
    offshore_temp_amp: float = 2.4  # degC, seasonal amplitude; minimum mid-February
    stratification_offset: float = 0.0  # adds to each autumn's stratification index
    stratification_temp: float = 0.5  # degC autumn offshore warming per unit index
    stratification_salt: float = 0.06  # autumn offshore freshening per unit index
    entrainment: tuple[float, float] = (0.4, 0.6)  # ambient fraction in the plume
    entrainment_loss: tuple[float, float] = (0.01, 0.02)  # kg m-3 lost on the way down
    density_scale: float = 0.05  # kg m-3 excess at which the flux saturates
    cascade_rate: float = 0.5  # day-1
    relax_days: tuple[float, float] = (10.0, 16.0)  # restratification time scales
    bulk_ch: float = 1.1e-3
    bulk_ce: float = 1.2e-3
    #: Offshore surface water (0-70 m) as a first-order mixed layer under the regional air:
    #: e-folding response time, days (Frankignoul & Hasselmann 1977), and its equilibrium
    #: response per K of the forced warming and of the air's own year-to-year anomaly.
    offshore_response_days: float = 30.0
    offshore_forced_gain: float = 0.8
    offshore_air_gain: float = 0.3
    #: kg m-3 added to the ambient density at 500/1000 m (uncertainty of the deep water).
    ambient_density_offset: float = 0.0
    #: Storm pulses of the plume flux: floor and the wind speed (m s-1) of a full pulse.
    pulse_floor: float = 0.3
    pulse_wind: float = 12.0
    #: Standard deviation of the deep eddy noise at 500/1000 m, degC.
    deep_noise: tuple[float, float] = (0.025, 0.015)


@dataclass
class HiddenOcean:
    """Ocean drivers of one realization that no atmospheric predictor shows."""

    river: np.ndarray  # m3 s-1
    stratification: np.ndarray  # dimensionless index, per day (constant per winter)
    offshore_salinity_anomaly: np.ndarray
    background_temp: np.ndarray  # (2, N) degC at 500/1000 m
    background_salt: np.ndarray  # (2, N)
    deep_noise: np.ndarray  # (2, N) degC


def background(year: np.ndarray, scenario: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Deep background temperature and salinity at 500 and 1000 m, shape (2, N)."""
    rate_t, rate_s = _BG_RATES[scenario]
    after = np.clip(np.asarray(year, float) - 2025.0, 0.0, None)
    temps, salts = [], []
    for depth, share in zip(DEPTHS, (1.0, 0.6), strict=True):
        clipped = np.minimum(year, 2025.0)
        temps.append(np.interp(clipped, _BG_YEARS, _BG_T[depth]) + share * rate_t * after)
        salts.append(np.interp(clipped, _BG_YEARS, _BG_S[depth]) + share * rate_s * after)
    return np.array(temps), np.array(salts)


def river_discharge(
    axis: DayAxis, weather: RegionalWeather, alpine: float | np.ndarray = 1.0
) -> np.ndarray:
    """Rhône discharge (m3 s-1): a seasonal cycle scaled by the Alps' own memory
    (``alpine``, mean 1) plus the regional rain through a 15-day reservoir."""
    phase = axis.phase
    seasonal = (
        1.0 + 0.25 * np.cos(2 * np.pi * (phase - 0.05)) + 0.15 * np.cos(2 * np.pi * (phase - 0.42))
    )
    rain = weather.pr * SECONDS_PER_DAY
    decay = np.exp(-1.0 / 15.0)
    runoff = lfilter([1.0 - decay], [1.0, -decay], rain)
    runoff = runoff / max(float(np.mean(runoff)), 1e-9)
    return 1700.0 * (0.7 * seasonal * alpine + 0.3 * runoff)


def hidden_ocean(
    axis: DayAxis,
    rng: np.random.Generator,
    weather: RegionalWeather,
    scenario: str | None,
    params: OceanParams | None = None,
) -> HiddenOcean:
    """Draw the hidden drivers of one realization."""
    p = params or OceanParams()
    n = axis.size
    phase = axis.phase
    alpine = np.exp(red_noise(rng, n, np.exp(-1.0 / 90.0), 0.3) - 0.045)
    river = river_discharge(axis, weather, alpine)

    winters = axis.winter_of_day()
    first = int(winters.min())
    per_winter = red_noise(rng, int(winters.max()) - first + 1, 0.3, 1.0)
    stratification = per_winter[winters - first]

    year = axis.year + phase
    bg_t, bg_s = background(year, scenario)
    years = axis.year - axis.year.min()
    yearly = red_noise(rng, int(years.max()) + 1, 0.5, 0.03)[years]
    bg_t = bg_t + np.array([yearly, 0.6 * yearly])
    deep_noise = np.array(
        [red_noise(rng, n, 0.9, p.deep_noise[0]), red_noise(rng, n, 0.92, p.deep_noise[1])]
    )
    return HiddenOcean(
        river=river,
        stratification=stratification,
        offshore_salinity_anomaly=red_noise(rng, n, np.exp(-1.0 / 120.0), 0.05),
        background_temp=bg_t,
        background_salt=bg_s,
        deep_noise=deep_noise,
    )


@dataclass
class OceanResult:
    """Daily ocean state of a batch of realizations, arrays (R, N) or (R, 2, N)."""

    temperature: np.ndarray  # (R, 2, N) degC at 500/1000 m, with deep noise
    cascading_flux: np.ndarray  # (R, 2, N) dimensionless plume flux, 0 = none
    density_excess: np.ndarray  # (R, 2, N) kg m-3, shelf minus ambient (at depth)
    shelf_temp: np.ndarray  # (R, N) degC
    shelf_salt: np.ndarray  # (R, N)
    shelf_sigma0: np.ndarray  # (R, N) kg m-3
    offshore_temp: np.ndarray  # (R, N) degC, 0-70 m offshore water the shelf is renewed by
    heat_flux: np.ndarray  # (R, N) W m-2, positive into the ocean
    background_temp: np.ndarray  # (R, 2, N)


def offshore_anomaly(
    axis: DayAxis,
    weather: RegionalWeather,
    scenario: str | None,
    sensitivity: float = 1.0,
    params: OceanParams | None = None,
) -> np.ndarray:
    """Offshore surface-water (0-70 m) temperature anomaly of one realization, degC.

    A slab mixed layer under the realization's own air (Frankignoul & Hasselmann
    1977): it relaxes on ``offshore_response_days`` towards a share of the regional
    forced warming (the source's own sensitivity and scenario) plus a share of the
    air's internal anomaly, the air temperature minus its climatology, the forced
    warming and the mean seasonal departure of the realization's years up to 2014
    (the years every scenario of a member shares, so the historical segment is the
    same on every path; the filter is causal for the same reason).
    """
    p = params or OceanParams()
    forced = warming(axis.year + axis.phase, scenario, sensitivity)
    internal = weather.tas - air_climatology(axis.phase) - forced
    month = np.minimum((axis.phase * 12).astype(int), 11)
    base = axis.year <= 2014
    sums = np.bincount(month[base], internal[base], minlength=12)
    counts = np.bincount(month[base], minlength=12)
    internal = internal - (sums / np.maximum(counts, 1))[month]
    target = p.offshore_forced_gain * forced + p.offshore_air_gain * internal
    decay = np.exp(-1.0 / p.offshore_response_days)
    start = float(np.mean(target[: int(p.offshore_response_days)]))
    anomaly, _ = lfilter([1.0 - decay], [1.0, -decay], target, zi=[decay * start])
    return anomaly


def sea_surface_temperature(offshore_temp: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Sea surface temperature (degC) over the offshore water of mean 0-70 m temperature.

    Mixed to 70 m and beyond from December to March, the surface is the layer's
    temperature; the summer thermocline (20-30 m) makes it up to 5 degC warmer in
    August (Gulf of Lion SST ~13 degC in February, ~22-23 degC in August).
    """
    return offshore_temp + 2.5 * (1.0 + np.cos(2 * np.pi * (phase - 0.62)))


def _saturation_humidity(temp_c: np.ndarray, psl: np.ndarray) -> np.ndarray:
    """Specific humidity at saturation, kg kg-1 (Bolton 1980 vapour pressure)."""
    e_sat = 611.2 * np.exp(17.67 * temp_c / (temp_c + 243.5))
    return 0.622 * e_sat / (psl - 0.378 * e_sat)


def _stack(values: list[np.ndarray], n: int) -> np.ndarray:
    """Pad each series with its last value to length ``n`` and stack them."""
    return np.stack(
        [np.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, n - v.shape[-1])], "edge") for v in values]
    )


def run_ocean(
    axes: list[DayAxis],
    weathers: list[RegionalWeather],
    hiddens: list[HiddenOcean],
    scenarios: list[str | None],
    params: OceanParams | None = None,
    spinup_days: int = 3 * 365,
    sensitivities: list[float] | None = None,
) -> list[OceanResult]:
    """Integrate the process model for a batch of realizations at once.

    ``sensitivities`` (default 1 each) is each realization's climate sensitivity,
    which sets its offshore water's forced warming (:func:`offshore_anomaly`).

    Realizations of different lengths and calendars are padded and run together
    (one Python loop over days for the whole batch). Each starts with a spin-up
    that replays its first ``spinup_days`` of forcing.
    """
    p = params or OceanParams()
    lengths = [a.size for a in axes]
    spin = min(spinup_days, *lengths)

    def series(values: list[np.ndarray]) -> np.ndarray:
        return _stack([np.concatenate([v[..., :spin], v], axis=-1) for v in values], n)

    n = max(lengths) + spin
    tas = series([w.tas for w in weathers]) - 273.15
    hurs = series([w.hurs for w in weathers])
    pr = series([w.pr for w in weathers])
    wind = series([w.sfcWind for w in weathers])
    psl = series([w.psl for w in weathers])
    rsds = series([w.rsds for w in weathers])
    clt = series([w.clt for w in weathers])
    phase = series([a.phase for a in axes])
    sensitivities = sensitivities or [1.0] * len(axes)
    off_warming = series(
        [
            offshore_anomaly(a, w, s, k, p)
            for a, w, s, k in zip(axes, weathers, scenarios, sensitivities, strict=True)
        ]
    )
    river = series([h.river for h in hiddens]) * p.river_factor
    strat = series([h.stratification for h in hiddens]) + p.stratification_offset
    sal_anom = series([h.offshore_salinity_anomaly for h in hiddens])
    bg_t = series([h.background_temp for h in hiddens])
    bg_s = series([h.background_salt for h in hiddens])
    noise = series([h.deep_noise for h in hiddens])

    autumn = (phase > 0.67).astype(float)
    off_temp = (
        p.offshore_temp_mean
        + p.offshore_temp_amp * np.cos(2 * np.pi * (phase - 0.62))
        + off_warming
        + p.stratification_temp * strat * autumn
    )
    off_salt = p.offshore_salinity + sal_anom - p.stratification_salt * strat * autumn

    pressures = np.array(DEPTHS)[None, :, None]  # dbar ~ m
    sa_bg = gsw.SR_from_SP(bg_s)
    ct_bg = gsw.CT_from_t(sa_bg, bg_t, pressures)
    rho_ambient = gsw.rho(sa_bg, ct_bg, pressures) + p.ambient_density_offset

    e_sat = 611.2 * np.exp(17.67 * tas / (tas + 243.5))
    q_air = 0.622 * (hurs / 100.0) * e_sat / (psl - 0.378 * (hurs / 100.0) * e_sat)
    vapour_hpa = (hurs / 100.0) * e_sat / 100.0
    heat_per_day = SECONDS_PER_DAY / (RHO_SEAWATER * CP_SEAWATER * p.shelf_depth)
    river_rate = p.river_mixing / (p.shelf_area * p.shelf_depth) * SECONDS_PER_DAY
    entrain = np.array(p.entrainment)[None, :]
    loss = np.array(p.entrainment_loss)[None, :]
    relax = np.array(p.relax_days)[None, :]

    r = len(axes)
    ts = off_temp[:, 0].copy()
    ss = off_salt[:, 0].copy()
    td = bg_t[:, :, 0].copy()
    out_td = np.empty((r, 2, n))
    out_flux = np.empty((r, 2, n))
    out_excess = np.empty((r, 2, n))
    out_ts, out_ss, out_q = np.empty((r, n)), np.empty((r, n)), np.empty((r, n))
    for i in range(n):
        ts_k = ts + 273.15
        dq = q_air[:, i] - 0.98 * _saturation_humidity(ts, psl[:, i])
        latent = RHO_AIR * LATENT_HEAT * p.bulk_ce * wind[:, i] * dq
        sensible = RHO_AIR * CP_AIR * p.bulk_ch * wind[:, i] * (tas[:, i] - ts)
        longwave = -0.98 * STEFAN_BOLTZMANN * ts_k**4 * (
            0.39 - 0.05 * np.sqrt(vapour_hpa[:, i])
        ) * (1 - 0.6 * clt[:, i] ** 2) - 4 * 0.98 * STEFAN_BOLTZMANN * ts_k**3 * (ts - tas[:, i])
        q_net = 0.93 * rsds[:, i] + longwave + sensible + latent
        evaporation = -latent / (RHO_FRESHWATER * LATENT_HEAT) * SECONDS_PER_DAY  # m day-1
        precip = pr[:, i] / RHO_FRESHWATER * SECONDS_PER_DAY  # m day-1

        sa = gsw.SR_from_SP(ss)
        ct = gsw.CT_from_pt(sa, ts)
        rho_shelf = gsw.rho(sa[:, None], ct[:, None], pressures[:, :, 0])
        excess = rho_shelf - rho_ambient[:, :, i]
        pulse = p.pulse_floor + (1.0 - p.pulse_floor) * np.minimum(
            (wind[:, i] / p.pulse_wind) ** 2, 2.0
        )
        flux = np.clip((excess - loss) / p.density_scale, 0.0, 2.0) * pulse[:, None]
        plume = (1 - entrain) * ts[:, None] + entrain * bg_t[:, :, i]
        td = td + p.cascade_rate * flux * (plume - td) + (bg_t[:, :, i] - td) / relax

        renewal = 1.0 / p.exchange_days + p.export_renewal * flux[:, 0]
        ts = ts + q_net * heat_per_day + renewal * (off_temp[:, i] - ts)
        ss = ss + (
            ss * (evaporation - precip) / p.shelf_depth
            - ss * river_rate * river[:, i]
            + renewal * (off_salt[:, i] - ss)
        )
        out_td[:, :, i], out_flux[:, :, i], out_excess[:, :, i] = td, flux, excess
        out_ts[:, i], out_ss[:, i], out_q[:, i] = ts, ss, q_net

    sigma0 = gsw.sigma0(gsw.SR_from_SP(out_ss), gsw.CT_from_pt(gsw.SR_from_SP(out_ss), out_ts))
    results = []
    for k, length in enumerate(lengths):
        keep = slice(spin, spin + length)
        results.append(
            OceanResult(
                temperature=out_td[k, :, keep] + noise[k, :, keep],
                cascading_flux=out_flux[k, :, keep],
                density_excess=out_excess[k, :, keep],
                shelf_temp=out_ts[k, keep],
                shelf_salt=out_ss[k, keep],
                shelf_sigma0=sigma0[k, keep],
                offshore_temp=off_temp[k, keep],
                heat_flux=out_q[k, keep],
                background_temp=bg_t[k, :, keep],
            )
        )
    return results


def hourly_temperature(daily: np.ndarray, flux: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hourly deep temperature (2, N*24) from daily values (2, N).

    Linear interpolation between daily means at noon, plus internal waves: a
    semi-diurnal tide, a near-inertial oscillation (17.8 h at 42.4 N) and red
    noise, with extra sub-daily variability while a cascading pulse passes.
    """
    n_days = daily.shape[-1]
    hours = np.arange(n_days * 24) + 0.5
    day_centres = np.arange(n_days) * 24 + 12.0
    out = np.empty((2, hours.size))
    for d in range(2):
        base = np.interp(hours, day_centres, daily[d])
        amp = (0.012, 0.008)[d]
        tide = amp * np.sin(2 * np.pi * hours / 12.42 + rng.uniform(0, 2 * np.pi))
        inertial = amp * np.sin(2 * np.pi * hours / 17.8 + rng.uniform(0, 2 * np.pi))
        pulse_std = np.repeat(0.06 * np.clip(flux[d], 0, 2), 24)
        out[d] = (
            base
            + tide
            + inertial
            + red_noise(rng, hours.size, 0.95, (0.01, 0.006)[d])
            + pulse_std * red_noise(rng, hours.size, 0.8, 1.0)
        )
    return out
