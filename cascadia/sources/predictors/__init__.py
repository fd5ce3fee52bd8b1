"""Canonical atmospheric predictors: pure, lazy xarray extraction core.

One concern per module: :mod:`~cascadia.sources.predictors.grids` (lat/lon spelling,
order and longitude convention), :mod:`~cascadia.sources.predictors.regions` (named
boxes, area weights, regional means), :mod:`~cascadia.sources.predictors.masks`
(a source's land fraction, in one convention, on its data's grid),
:mod:`~cascadia.sources.predictors.units` (CF units via pint/xclim, derived
humidity and wind),
:mod:`~cascadia.sources.predictors.daily` (sub-daily to daily),
:mod:`~cascadia.sources.predictors.calendars` (one calendar, gap filling) and
:mod:`~cascadia.sources.predictors.canonical` (the canonical set and the chain).
"""

from cascadia.sources.predictors.calendars import Gap, GapReport, fill_short_gaps, to_calendar
from cascadia.sources.predictors.canonical import (
    CANONICAL_UNITS,
    DERIVATIONS,
    Derivation,
    register_derivation,
    standardise,
    to_canonical,
)
from cascadia.sources.predictors.daily import DAILY_STATISTICS, to_daily
from cascadia.sources.predictors.grids import normalize_grid
from cascadia.sources.predictors.masks import as_land_fraction
from cascadia.sources.predictors.regions import (
    Region,
    all_nan_regions,
    region_weights,
    regional_means,
)
from cascadia.sources.predictors.units import convert_variable, hurs_from_dewpoint, wind_speed

__all__ = [
    "CANONICAL_UNITS",
    "DAILY_STATISTICS",
    "DERIVATIONS",
    "Derivation",
    "Gap",
    "GapReport",
    "Region",
    "all_nan_regions",
    "as_land_fraction",
    "convert_variable",
    "fill_short_gaps",
    "hurs_from_dewpoint",
    "normalize_grid",
    "region_weights",
    "regional_means",
    "register_derivation",
    "standardise",
    "to_calendar",
    "to_canonical",
    "to_daily",
    "wind_speed",
]
