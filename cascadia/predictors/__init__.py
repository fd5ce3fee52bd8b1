"""Canonical atmospheric predictors: pure, lazy xarray extraction core.

One concern per module: :mod:`~cascadia.predictors.grids` (lat/lon spelling,
order and longitude convention), :mod:`~cascadia.predictors.regions` (named
boxes, area weights, regional means), :mod:`~cascadia.predictors.units`
(CF units via pint/xclim, derived humidity and wind),
:mod:`~cascadia.predictors.daily` (sub-daily to daily),
:mod:`~cascadia.predictors.calendars` (one calendar, gap filling) and
:mod:`~cascadia.predictors.canonical` (the canonical set and the chain).
"""

from cascadia.predictors.calendars import Gap, GapReport, fill_short_gaps, to_calendar
from cascadia.predictors.canonical import (
    CANONICAL_UNITS,
    DERIVATIONS,
    Derivation,
    register_derivation,
    standardise,
    to_canonical,
)
from cascadia.predictors.daily import DAILY_STATISTICS, to_daily
from cascadia.predictors.grids import normalize_grid
from cascadia.predictors.regions import Region, all_nan_regions, region_weights, regional_means
from cascadia.predictors.units import convert_variable, hurs_from_dewpoint, wind_speed

__all__ = [
    "CANONICAL_UNITS",
    "DAILY_STATISTICS",
    "DERIVATIONS",
    "Derivation",
    "Gap",
    "GapReport",
    "Region",
    "all_nan_regions",
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
