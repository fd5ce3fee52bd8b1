"""An EN4-like ocean analysis of the twin's history: monthly temperature profiles near the mooring.

Why: outside the mooring record an atmosphere-driven model cannot know the deep
background; the documented source for it before 1993 is an ocean objective analysis
(EN4, Good et al. 2013, JGR 118: monthly 1-degree potential temperature since 1900).
The twin writes one as the archive does: one NetCDF file per month
(``EN.4.2.2.f.analysis.g10.YYYYMM.nc``, NetCDF-3 classic), ``temperature`` in kelvin on
``(time, depth, lat, lon)``, depth positive down, a ``temperature_uncertainty`` beside it,
latitudes ascending and longitudes 0-360, land and levels below the sea floor missing.

What it holds: the history's deep water-mass temperature (the background cascades
depart from: a 1-degree analysis does not resolve a canyon's plumes) and the sea
surface at the top, with what such an analysis gets wrong: a static error smooth in
depth (an offset and a tilt), a red-noise monthly error that grows back in time as
profiles thin out (the century reanalyses' growth,
:func:`cascadia.twin.realizations.century_error_scale`: 0.04 °C after 1980, 0.12 °C
in 1900), and the damping of an analysis with few profiles, which relaxes toward its
climatology: 60 % of the departure from the 1971-2000 mean is kept in 1900, all of it
from 1990.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from cascadia.twin.atmosphere import red_noise
from cascadia.twin.grids import regular_grid
from cascadia.twin.ocean import sea_surface_temperature
from cascadia.twin.realizations import Realization, century_error_scale
from cascadia.twin.sea import sea_mask
from cascadia.twin.stores import StoreContext
from cascadia.twin.writers import write_netcdf

#: EN4's standard levels (m) down to 1750 m.
LEVELS = np.array(
    [5.02, 15.08, 25.16, 35.28, 45.45, 55.76, 66.26, 77.08, 88.38, 100.40, 113.48, 128.10,
     144.97, 165.07, 189.65, 220.19, 258.55, 307.12, 368.87, 446.89, 544.47, 665.04, 812.55,
     990.44, 1202.71, 1453.76, 1748.18]
)  # fmt: skip
#: Depth of the twin's water-mass levels (the deep background's two depths), m.
DEEP = (500.0, 1000.0)
#: North of this latitude the Gulf of Lion's shelf: sea floor at 100 m.
SHELF_LATITUDE = 43.0
FILE_PATTERN = "EN.4.2.2.f.analysis.g10.{stamp}.nc"
#: Years of the analysis' climatology (EN4 relaxes to one where profiles are few).
CLIMATOLOGY = (1971, 2000)


def water_column(sst: np.ndarray, deep: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Temperature profiles ``(time, level)``, degC, from the sea surface ``(time,)`` and the
    deep water mass at 500 and 1000 m ``(time, 2)``: linear between and above the two deep
    levels (down from 300 m), a weaker gradient below 1000 m (the nearly uniform deep
    water), the surface reached over an 80 m e-folding mixed layer."""
    slope = (deep[:, 1] - deep[:, 0]) / (DEEP[1] - DEEP[0])
    below = deep[:, [0]] + slope[:, None] * (np.maximum(levels, 300.0) - DEEP[0])
    beyond = DEEP[1] < levels
    below[:, beyond] = deep[:, [1]] + 0.3 * slope[:, None] * (levels[beyond] - DEEP[1])
    top = np.exp(-levels / 80.0)
    return below + (sst[:, None] - below) * top


def _profiles(history: Realization) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Monthly mean true profiles (month, level), degC, from the history's ocean."""
    ocean = history.ocean
    assert ocean is not None
    time = pd.DatetimeIndex(history.axis.time)
    sst = sea_surface_temperature(ocean.offshore_temp, history.axis.phase)
    daily = pd.DataFrame(
        {"sst": sst, "deep500": ocean.background_temp[0], "deep1000": ocean.background_temp[1]},
        index=time,
    )
    monthly = daily.resample("MS").mean()
    deep = np.stack([monthly["deep500"], monthly["deep1000"]], axis=1)
    return monthly.index, water_column(monthly["sst"].to_numpy(), deep, LEVELS)


def write_ocean_analysis(
    ctx: StoreContext, history: Realization, seed: np.random.SeedSequence
) -> list[str]:
    """Write the monthly files over the history's years; return their URLs."""
    rng = np.random.default_rng(seed)
    months, truth = _profiles(history)
    n_months = truth.shape[0]
    year = months.year.to_numpy(dtype=np.float64)
    scale = np.interp(year, history.axis.year, century_error_scale(history.axis))
    # errors of an analysis are smooth in the vertical: an offset and a tilt per world
    offset, tilt = rng.normal(0.0, 0.03, 2)
    level_bias = offset + tilt * (LEVELS - 700.0) / 1000.0
    error = red_noise(rng, n_months, np.exp(-1.0 / 6.0), 1.0)[:, None] * 0.1 * scale[:, None]
    # where profiles are few the analysis relaxes to its climatology (1971-2000, or all years)
    base = (year >= CLIMATOLOGY[0]) & (year <= CLIMATOLOGY[1])
    climatology = truth[base if base.any() else slice(None)].mean(axis=0)
    weight = np.clip(0.6 + 0.4 * (year - 1900.0) / 90.0, 0.6, 1.0)[:, None]
    analysed = (
        climatology
        + weight * (truth - climatology)
        + level_bias
        + error * np.exp(-np.abs(LEVELS - 700.0) / 2000.0)
    )
    grid = regular_grid(1.0, lat_descending=False, lon_0_360=True)
    lat, _ = grid.mesh()
    floor = np.where(lat > SHELF_LATITUDE, 100.0, 2500.0)
    valid = sea_mask(grid)[None] & (LEVELS[:, None, None] < floor[None])
    uncertainty = np.broadcast_to((0.1 * scale)[:, None], truth.shape)
    urls = []
    for m, start in enumerate(months):
        noise = rng.normal(0.0, 0.01, valid.shape)
        field = np.where(valid, analysed[m][:, None, None] + noise, np.nan) + 273.15
        sigma = np.where(valid, uncertainty[m][:, None, None], np.nan)
        ds = xr.Dataset(
            {
                "temperature": (
                    ("time", "depth", "lat", "lon"),
                    field[None].astype("float32"),
                    {"standard_name": "sea_water_potential_temperature", "units": "K"},
                ),
                "temperature_uncertainty": (
                    ("time", "depth", "lat", "lon"),
                    sigma[None].astype("float32"),
                    {"long_name": "uncertainty of the analysed temperature", "units": "K"},
                ),
            },
            coords={
                "time": ("time", [start + pd.Timedelta(days=14)], {"standard_name": "time"}),
                "depth": (
                    "depth",
                    LEVELS.astype("float32"),
                    {"units": "metres", "positive": "down", "axis": "Z", "standard_name": "depth"},
                ),
                "lat": ("lat", grid.lat.astype("float32"), {"units": "degrees_north"}),
                "lon": ("lon", grid.lon.astype("float32"), {"units": "degrees_east"}),
            },
            attrs={
                "title": "cascadia twin world: EN4-like objective analysis (not Met Office data)",
                "Conventions": "CF-1.6",
            },
        )
        url = ctx.url("ocean", "en4", FILE_PATTERN.format(stamp=start.strftime("%Y%m")))
        encoding = {"time": {"units": "days since 1800-01-01 00:00:00", "dtype": "float64"}}
        # NetCDF-3 (classic) files: a reader must not assume HDF5
        write_netcdf(
            ds,
            url,
            storage_options=ctx.storage_options,
            encoding=encoding,
            netcdf_format="NETCDF3_64BIT",
        )
        urls.append(url)
    return urls
