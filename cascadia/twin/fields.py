"""Gridded fields from the regional weather: patterns, grid noise and sub-daily cycles.

A grid point's value is the shelf-mean weather plus a climatological spatial
pattern (colder to the north and inland), the wind-corridor pattern of the
day's northerly episode (the Tramontane between the Pyrenees and the Massif
Central, the Mistral down the Rhône valley) and small grid-scale noise. The
patterns average to zero (additive) or one (wind multipliers) over the shelf
box, so the area mean of any grid over the shelf recovers the regional state.
"""

from __future__ import annotations

import numpy as np

from cascadia.twin.atmosphere import RegionalWeather
from cascadia.twin.grids import (
    ROTATED_POLE_LAT,
    ROTATED_POLE_LON,
    CurvilinearGrid,
    RegularGrid,
    RotatedGrid,
    bounds,
    rotated_to_geographic,
)

#: The box the regional weather stands for (Gulf of Lion shelf), degrees.
SHELF_BOX = {"lat_min": 42.3, "lat_max": 43.6, "lon_min": 3.0, "lon_max": 5.0}

#: Canonical daily variables the generator produces, in CF units.
DAILY_VARIABLES = ("tas", "hurs", "huss", "pr", "uas", "vas", "sfcWind", "psl", "rsds")


def _gauss(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float, scale: float) -> np.ndarray:
    return np.exp(-(((lat - lat0) ** 2) + ((lon - lon0) * 0.74) ** 2) / scale**2)


def shelf_normalised(
    pattern: np.ndarray, lat: np.ndarray, lon: np.ndarray, mean: float
) -> np.ndarray:
    """Shift (mean 0) or scale (mean 1) a pattern to the wanted value over the shelf box.

    On grids too coarse to have a point in the box the pattern is left as is.
    """
    inside = (
        (lat >= SHELF_BOX["lat_min"])
        & (lat <= SHELF_BOX["lat_max"])
        & (lon >= SHELF_BOX["lon_min"])
        & (lon <= SHELF_BOX["lon_max"])
    )
    if not inside.any():
        return pattern
    weights = np.cos(np.deg2rad(lat))[inside]
    current = float(np.sum(pattern[inside] * weights) / np.sum(weights))
    return pattern - current if mean == 0.0 else pattern * (mean / current)


def landness(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Smooth 0 (sea) to 1 (land) mask of a crude Gulf of Lion coastline."""
    north = 1 / (1 + np.exp(-(lat - 43.45) / 0.12))
    west = 1 / (1 + np.exp(-((3.15 - 0.45 * (42.5 - lat)) - lon) / 0.15))
    return np.clip(north + west, 0.0, 1.0)


def land_fraction(
    grid: RegularGrid | RotatedGrid | CurvilinearGrid, samples: int = 8
) -> np.ndarray:
    """Share of each cell's area that is land under the twin's coastline, 0-1, store order.

    The cell (bounds halfway between centres; on the rotated grid, the rotated
    square around the centre) is sampled on ``samples`` x ``samples`` points and
    :func:`landness` averaged over them: the same coastline the fields are built
    on, as an archive's ``sftlf`` / ``lsm`` describes its model's own surface.
    """
    t = (np.arange(samples) + 0.5) / samples
    with np.errstate(over="ignore"):  # far from the coast the logistic saturates
        return _sampled_landness(grid, t)


def _sampled_landness(
    grid: RegularGrid | RotatedGrid | CurvilinearGrid, t: np.ndarray
) -> np.ndarray:
    if isinstance(grid, CurvilinearGrid):
        offsets = t - 0.5
        y = np.arange(grid.ny)[:, None, None, None] + offsets[None, None, :, None]
        x = np.arange(grid.nx)[None, :, None, None] + offsets[None, None, None, :]
        lat, lon = grid.position(*np.broadcast_arrays(y, x))
        return landness(lat, lon).mean(axis=(2, 3))
    if isinstance(grid, RegularGrid):
        lat_b, lon_b = bounds(grid.lat), bounds(grid.lon)
        plat = lat_b[:, :1] + (lat_b[:, 1:] - lat_b[:, :1]) * t  # (lat, samples)
        plon = lon_b[:, :1] + (lon_b[:, 1:] - lon_b[:, :1]) * t  # (lon, samples)
        lat = plat[:, None, :, None]  # (lat, lon, sample_lat, sample_lon)
        lon = ((plon + 180.0) % 360.0 - 180.0)[None, :, None, :]
        return landness(lat, lon).mean(axis=(2, 3))
    half_lat = 0.5 * float(np.median(np.diff(grid.rlat)))
    half_lon = 0.5 * float(np.median(np.diff(grid.rlon)))
    offsets = 2.0 * t - 1.0
    rlat = grid.rlat[:, None, None, None] + half_lat * offsets[None, None, :, None]
    rlon = grid.rlon[None, :, None, None] + half_lon * offsets[None, None, None, :]
    rlat, rlon = np.broadcast_arrays(rlat, rlon)
    lat, lon = rotated_to_geographic(rlat, rlon, ROTATED_POLE_LAT, ROTATED_POLE_LON)
    return landness(lat, lon).mean(axis=(2, 3))


def daily_fields(
    weather: RegionalWeather,
    lat: np.ndarray,
    lon: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Daily fields (time, *grid shape) in CF units on any grid.

    ``lat``/``lon`` are 2-D arrays of cell centres (regular grids meshed, rotated
    grids as they are), longitudes in -180..180.
    """
    n = weather.tas.size
    shape = (n, *lat.shape)
    land = landness(lat, lon)
    tas_pattern = shelf_normalised(-0.6 * (lat - 42.5) - 1.5 * land, lat, lon, 0.0)
    tramontane = shelf_normalised(0.5 + _gauss(lat, lon, 42.6, 3.4, 0.7), lat, lon, 1.0)
    mistral = shelf_normalised(0.5 + _gauss(lat, lon, 43.3, 4.9, 0.7), lat, lon, 1.0)
    calm = shelf_normalised(1.0 - 0.35 * land, lat, lon, 1.0)
    psl_gradient = shelf_normalised((lat - 42.5) - 0.6 * (lon - 4.0), lat, lon, 0.0)

    kind = np.where(weather.mistral, 2, np.where(weather.northerly, 1, 0))
    corridor = np.stack([calm, tramontane, mistral])[kind]

    def noise(std: float) -> np.ndarray:
        return rng.normal(0.0, std, shape)

    tas = weather.tas[:, None, None] + tas_pattern + noise(0.35)
    tas -= (weather.northerly[:, None, None] * 1.5) * (land - land.mean())
    hurs = np.clip(weather.hurs[:, None, None] + 4.0 * (0.5 - land) + noise(2.5), 5.0, 100.0)
    uas = weather.uas[:, None, None] * corridor + noise(0.6)
    vas = weather.vas[:, None, None] * corridor + noise(0.6)
    wet = np.exp(0.3 * rng.standard_normal(shape) + 0.2 * (land - 0.5))
    pr = weather.pr[:, None, None] * wet
    psl = (
        weather.psl[:, None, None]
        + 140.0 * weather.northerly[:, None, None] * psl_gradient
        + noise(25.0)
    )
    rsds = np.clip(weather.rsds[:, None, None] * (1.0 + noise(0.04)), 0.0, None)
    huss = specific_humidity(tas, hurs, psl)
    return {
        "tas": tas,
        "hurs": hurs,
        "huss": huss,
        "pr": pr,
        "uas": uas,
        "vas": vas,
        "sfcWind": np.hypot(uas, vas),
        "psl": psl,
        "rsds": rsds,
    }


def specific_humidity(tas: np.ndarray, hurs: np.ndarray, psl: np.ndarray) -> np.ndarray:
    """Specific humidity (1) from temperature (K), relative humidity (%) and pressure (Pa)."""
    t_c = tas - 273.15
    e = hurs / 100.0 * 611.2 * np.exp(17.67 * t_c / (t_c + 243.5))
    return 0.622 * e / (psl - 0.378 * e)


def dewpoint(tas: np.ndarray, hurs: np.ndarray) -> np.ndarray:
    """Dew-point temperature (K) by inverting the Magnus/Bolton formula."""
    t_c = tas - 273.15
    gamma = np.log(np.clip(hurs, 1e-3, None) / 100.0) + 17.67 * t_c / (t_c + 243.5)
    return 243.5 * gamma / (17.67 - gamma) + 273.15


def subdaily(
    daily: dict[str, np.ndarray], steps_per_day: int, phase: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Sub-daily fields (time*steps, ...) from daily ones, keeping daily means.

    Temperature gets a diurnal cycle (maximum 15 h UTC, larger in summer and on
    land), wind components a gusty, veering sub-daily part (so the mean of the
    hourly speeds exceeds the speed of the daily-mean wind, as in nature), rain
    falls in a spell of several steps, and pressure carries the semi-diurnal
    atmospheric tide.
    """
    n = daily["tas"].shape[0]
    grid = daily["tas"].shape[1:]
    hours = (np.arange(steps_per_day) + 0.5) * 24.0 / steps_per_day

    def spread(values: np.ndarray) -> np.ndarray:
        return np.repeat(values, steps_per_day, axis=0)

    diurnal = np.cos(2 * np.pi * (hours - 15.0) / 24.0)
    amplitude = 2.0 + 1.5 * np.cos(2 * np.pi * (phase - 0.55))
    tas = spread(daily["tas"]) + (amplitude[:, None] * diurnal[None, :]).reshape(-1)[:, None, None]
    hurs = np.clip(
        spread(daily["hurs"])
        - (4.0 * amplitude[:, None] * diurnal[None, :]).reshape(-1)[:, None, None],
        5.0,
        100.0,
    )
    total = n * steps_per_day
    gust = 1.0 + 0.25 * rng.standard_normal((total, *grid))
    veer = np.deg2rad(25.0) * rng.standard_normal((total, *grid))
    u_day, v_day = spread(daily["uas"]), spread(daily["vas"])
    uas = gust * (u_day * np.cos(veer) - v_day * np.sin(veer))
    vas = gust * (u_day * np.sin(veer) + v_day * np.cos(veer))
    # rain: the day's amount over a spell of consecutive steps, at least 3 hours long
    share = np.zeros((n, steps_per_day))
    start = rng.integers(0, steps_per_day, n)
    length = rng.integers(max(1, steps_per_day // 8), steps_per_day + 1, n)
    for k in range(int(length.max())):
        rows = np.flatnonzero(length > k)
        share[rows, (start[rows] + k) % steps_per_day] = 1.0
    share /= share.sum(axis=1, keepdims=True)
    pr = spread(daily["pr"]) * share.reshape(-1)[:, None, None] * steps_per_day
    tide = 100.0 * np.cos(2 * np.pi * (hours - 10.0) / 12.0)
    psl = spread(daily["psl"]) + np.tile(tide, n)[:, None, None]
    sun = np.clip(np.cos(2 * np.pi * (hours - 12.0) / 24.0), 0.0, None)
    rsds = spread(daily["rsds"]) * np.tile(sun / sun.mean(), n)[:, None, None]
    return {"tas": tas, "hurs": hurs, "uas": uas, "vas": vas, "pr": pr, "psl": psl, "rsds": rsds}
