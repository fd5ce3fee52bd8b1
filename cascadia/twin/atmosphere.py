"""The twin world's atmosphere over the Gulf of Lion shelf, one value per day.

A weather generator, not a climate model: a seasonal cycle, red-noise synoptic
weather, Tramontane/Mistral northerly episodes (cold, dry, strong; Markov
starts with geometric durations, more frequent in severe winters), marine
south-easterly episodes that bring rain, a per-winter severity index for
interannual variability, and a warming trend that depends on the scenario and
the model's climate sensitivity. Spatial fields are built from this regional
state in :mod:`cascadia.twin.fields`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

from cascadia.twin.timeaxis import DayAxis

#: Winters the mooring record calls intense (Durrieu de Madron et al. 2013;
#: Peña-Izquierdo et al. 2025). The twin's *history* leans these winters
#: towards severity; the ocean decides whether they cascade.
INTENSE_WINTERS = (1999, 2000, 2005, 2006, 2012, 2013)


@dataclass
class RegionalWeather:
    """Daily shelf-mean atmospheric state (CF units) and its hidden drivers."""

    tas: np.ndarray  # K
    hurs: np.ndarray  # %
    pr: np.ndarray  # kg m-2 s-1
    uas: np.ndarray  # m s-1, eastward
    vas: np.ndarray  # m s-1, northward
    psl: np.ndarray  # Pa
    rsds: np.ndarray  # W m-2
    clt: np.ndarray  # cloud fraction, 1
    northerly: np.ndarray  # bool, a Tramontane/Mistral day
    mistral: np.ndarray  # bool, northerly day of the Mistral kind
    marine: np.ndarray  # bool, south-easterly rainy day
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def sfcWind(self) -> np.ndarray:
        return np.hypot(self.uas, self.vas)

    def copy(self) -> RegionalWeather:
        values = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}
        values["extra"] = dict(self.extra)
        return RegionalWeather(**values)


def red_noise(rng: np.random.Generator, n: int, phi: float, std: float) -> np.ndarray:
    """AR(1) series of stationary standard deviation ``std`` and lag-1 correlation ``phi``."""
    white = rng.standard_normal(n) * std * np.sqrt(1.0 - phi**2)
    white[0] = rng.standard_normal() * std  # start in the stationary state
    return lfilter([1.0], [1.0, -phi], white)


def severity_by_winter(
    rng: np.random.Generator, first: int, last: int, history: bool
) -> dict[int, float]:
    """Per-winter severity (dimensionless, ~N(0,1)) with weak year-to-year memory.

    For the twin's *history* the winters the record calls intense get a push of
    +1.3 and the quiet 1988-1998 decade a pull of -0.5, so that the reanalyses
    resemble the real sequence without dictating the ocean's answer.
    """
    years = np.arange(first - 1, last + 2)
    values = red_noise(rng, years.size, phi=0.3, std=1.0)
    out = dict(zip(years.tolist(), values.tolist(), strict=True))
    if history:
        for year in out:
            if year in INTENSE_WINTERS:
                out[year] = 0.6 * out[year] + 1.3
            elif 1988 <= year <= 1998:
                out[year] = 0.6 * out[year] - 0.5
    return out


def air_climatology(phase: np.ndarray) -> np.ndarray:
    """Shelf-mean near-surface air temperature of a 1900 climate without weather, K."""
    return 287.6 - 6.8 * np.cos(2 * np.pi * (phase - 0.055))


def warming(year: np.ndarray, scenario: str | None, sensitivity: float) -> np.ndarray:
    """Regional near-surface warming relative to 1900, K.

    Historical: ~1.2 K by 2014 (the Mediterranean warms faster than the globe).
    Futures from 2015: ssp126 levels off ~1 K higher, ssp245 ~+2.2 K and
    ssp585 ~+4.4 K by 2100, scaled by the model's sensitivity.
    """
    year = np.asarray(year, dtype=float)
    hist = 1.4 * (np.clip(np.minimum(year, 2014.0) - 1900.0, 0.0, None) / 120.0) ** 2.2
    hist = hist * (0.6 + 0.4 * sensitivity)
    d = np.clip(year - 2015.0, 0.0, None)  # scenarios start on 1 January 2015
    if scenario is None or scenario == "historical":
        future = 0.018 * d  # a reanalysis or a historical run past 2014 keeps the trend
    elif scenario == "ssp126":
        future = 1.0 * (1.0 - np.exp(-d / 25.0))
    elif scenario == "ssp245":
        future = 0.026 * d
    elif scenario == "ssp585":
        future = 0.03 * d + 0.00025 * d**2
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    return hist + sensitivity * future * (year >= 2015)


def _episodes(
    rng: np.random.Generator, p_start: np.ndarray, mean_days: float
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean episode mask and the index of the episode covering each day (-1: none)."""
    n = p_start.size
    starts = np.flatnonzero(rng.random(n) < p_start)
    durations = rng.geometric(1.0 / mean_days, size=starts.size)
    owner = np.full(n, -1)
    for k, (s, d) in enumerate(zip(starts, durations, strict=True)):
        owner[s : min(n, s + d)] = k
    return owner >= 0, owner


def _winter_weight(phase: np.ndarray) -> np.ndarray:
    """1 in late January, 0 from May to October."""
    return np.clip(np.cos(2 * np.pi * (phase - 0.07)), 0.0, None) ** 1.5


def _clear_sky_rsds(phase: np.ndarray, lat: float = 42.5) -> np.ndarray:
    """Daily-mean clear-sky shortwave at the surface, W m-2 (TOA x 0.75)."""
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (phase - 0.22))
    phi = np.deg2rad(lat)
    h0 = np.arccos(np.clip(-np.tan(phi) * np.tan(decl), -1, 1))
    toa = (1361.0 / np.pi) * (
        h0 * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(h0)
    )
    return 0.75 * toa


def regional_weather(
    axis: DayAxis,
    rng: np.random.Generator,
    severity: dict[int, float],
    scenario: str | None = None,
    sensitivity: float = 1.0,
) -> RegionalWeather:
    """Generate the physical (unbiased) daily shelf-mean weather on ``axis``."""
    n = axis.size
    phase = axis.phase
    winter = _winter_weight(phase)
    sev = np.array([severity.get(int(w), 0.0) for w in axis.winter_of_day()])
    autumn = np.clip(np.cos(2 * np.pi * (phase - 0.86)), 0.0, None) ** 2

    p_north = np.clip(0.05 + 0.12 * winter * (1.0 + 0.55 * sev), 0.01, 0.5)
    northerly, owner = _episodes(rng, p_north, mean_days=2.8)
    event_speed = np.clip(11.5 + 3.0 * rng.standard_normal(owner.max() + 2), 7.0, 24.0)
    event_mistral = rng.random(owner.max() + 2) < 0.55
    speed = np.where(northerly, event_speed[owner] + 1.5 * sev * winter, 0.0)
    mistral = northerly & event_mistral[owner]

    p_marine = np.clip(0.03 + 0.07 * autumn - 0.02 * winter * sev, 0.005, 0.3)
    marine, _ = _episodes(rng, p_marine, mean_days=1.8)
    marine &= ~northerly

    tas = (
        air_climatology(phase)
        + warming(axis.year + phase, scenario, sensitivity)
        - 1.0 * winter * sev
        + red_noise(rng, n, 0.7, 1.8)
        - np.where(northerly, 2.0 + 0.28 * (speed - 8.0), 0.0)
        + np.where(marine, 1.2, 0.0)
    )
    hurs = np.clip(
        74.0
        + red_noise(rng, n, 0.6, 6.0)
        - np.where(northerly, 20.0 + 0.8 * (speed - 10.0), 0.0)
        + np.where(marine, 14.0, 0.0)
        - 3.0 * winter * sev,
        15.0,
        100.0,
    )
    clt = np.clip(0.45 + red_noise(rng, n, 0.5, 0.2) - 0.3 * northerly + 0.45 * marine, 0.02, 1.0)
    summer_dry = 1.0 - 0.6 * np.clip(np.cos(2 * np.pi * (phase - 0.58)), 0.0, None)
    rain_mm = np.where(marine, rng.gamma(0.9, 20.0, n), 0.0)
    light = (~northerly) & (~marine) & (rng.random(n) < 0.14 * summer_dry)
    rain_mm += np.where(light, rng.gamma(0.7, 4.0, n), 0.0)
    pr = rain_mm / 86400.0  # mm/day of water -> kg m-2 s-1

    # Tramontane blows from the north-west, Mistral from the north (towards SSE).
    u_dir = np.where(mistral, 0.35, 0.72)
    v_dir = np.where(mistral, -0.94, -0.69)
    marine_speed = 6.0 + 2.0 * rng.standard_normal(n).clip(-2, 3)
    uas = 1.0 + red_noise(rng, n, 0.6, 2.6)
    vas = red_noise(rng, n, 0.6, 2.6)
    uas = np.where(northerly, u_dir * speed, np.where(marine, -0.6 * marine_speed, uas))
    vas = np.where(northerly, v_dir * speed, np.where(marine, 0.8 * marine_speed, vas))

    psl = (
        101550.0
        + 350.0 * np.cos(2 * np.pi * phase)
        + red_noise(rng, n, 0.75, 650.0)
        + np.where(northerly, 450.0, 0.0)
        - np.where(marine, 900.0, 0.0)
    )
    rsds = _clear_sky_rsds(phase) * (1.0 - 0.7 * clt)
    return RegionalWeather(
        tas=tas,
        hurs=hurs,
        pr=pr,
        uas=uas,
        vas=vas,
        psl=psl,
        rsds=rsds,
        clt=clt,
        northerly=northerly,
        mistral=mistral,
        marine=marine,
        extra={"severity": sev},
    )
