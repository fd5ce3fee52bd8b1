"""The sea surface each source sees: gridded fields of the twin's offshore surface water.

A source's ``tos`` / ``sst`` is the sea surface temperature of the realization it
describes (:func:`cascadia.twin.ocean.sea_surface_temperature` of the offshore water
the shelf is renewed by) plus a static spatial pattern (warmer to the south and
east; zero on average over the shelf box), the source's own static bias, a red-noise
error common to the domain (its analysis or model error) and small grid-scale noise.
Cells whose land fraction is 0.5 or more are NaN on an ocean model's grid (its
land-sea mask, ``sftof``, is binary), as in ERA5's ``sst``. The twin's atmospheric
grids are 2-6 times coarser than the archives' (1.5 degrees where ERA5 has 0.25),
so a coastal cell there still holds much sea: on those grids SST is missing only
where a cell is mostly land (:data:`COARSE_LAND_THRESHOLD`), which keeps a sea
surface in the small shelf box on every preset's reference grid.
"""

from __future__ import annotations

import numpy as np

from cascadia.twin.atmosphere import red_noise
from cascadia.twin.fields import land_fraction, shelf_normalised
from cascadia.twin.grids import CurvilinearGrid, RegularGrid, RotatedGrid

Grid = RegularGrid | RotatedGrid | CurvilinearGrid
#: Land fraction from which an ocean model's cell is land (its binary mask).
OCEAN_LAND_THRESHOLD = 0.5
#: Land fraction from which a coarse atmospheric grid's SST is missing.
COARSE_LAND_THRESHOLD = 0.8


def sea_mask(grid: Grid, land_threshold: float = OCEAN_LAND_THRESHOLD) -> np.ndarray:
    """True on the cells whose land fraction is below ``land_threshold``."""
    return land_fraction(grid) < land_threshold


def sea_surface_field(
    sst: np.ndarray,
    grid: Grid,
    rng: np.random.Generator,
    *,
    bias: float = 0.0,
    error_std: float | np.ndarray = 0.1,
    noise_std: float = 0.05,
    land_threshold: float = OCEAN_LAND_THRESHOLD,
) -> np.ndarray:
    """Daily SST fields (time, *grid shape), degC, NaN over land, from the regional SST.

    ``error_std`` is the source's day-to-day error of the domain mean (red noise with
    a ten-day memory: analyses and models err on synoptic to monthly scales),
    ``noise_std`` the grid-scale noise. ``error_std`` may be a series (errors that grow
    back in time). Cells whose land fraction reaches ``land_threshold`` are NaN.
    """
    lat, lon = grid.mesh()
    pattern = shelf_normalised(-0.35 * (lat - 42.5) + 0.1 * (lon - 4.0), lat, lon, 0.0)
    n = sst.size
    error = red_noise(rng, n, np.exp(-1.0 / 10.0), 1.0) * error_std
    values = (
        (sst + bias + error)[:, None, None] + pattern + rng.normal(0.0, noise_std, (n, *lat.shape))
    )
    values[:, ~sea_mask(grid, land_threshold)] = np.nan
    return values
