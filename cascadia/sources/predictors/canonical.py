"""The canonical predictor set, and the glue from a source dataset to it.

Internally every source becomes one daily dataset with CMIP short names and CF
units (:data:`CANONICAL_UNITS`), dims ``time`` (one calendar, stamps at 00:00)
and ``region``. How a source's names map to canonical ones is data (the
catalog YAML gives e.g. ``{"2m_temperature": "tas"}``); what can be derived
from what is a small registry (:data:`DERIVATIONS`), in the spirit of
intake-esm's derived-variable registry.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass

import xarray as xr

from cascadia.sources.predictors.calendars import GapReport, fill_short_gaps, to_calendar
from cascadia.sources.predictors.daily import one_time_chunk, to_daily
from cascadia.sources.predictors.grids import normalize_grid
from cascadia.sources.predictors.regions import Region, regional_means
from cascadia.sources.predictors.units import (
    convert_dataset,
    hurs_from_dewpoint,
    huss_from_hurs,
    wind_speed,
)

__all__ = [
    "CANONICAL_ATTRS",
    "CANONICAL_UNITS",
    "DERIVATIONS",
    "Derivation",
    "derive",
    "register_derivation",
    "standardise",
    "to_canonical",
]

#: Canonical predictors and their CF units.
CANONICAL_UNITS: dict[str, str] = {
    "tas": "K",
    "hurs": "%",
    "huss": "1",
    "pr": "kg m-2 s-1",
    "uas": "m s-1",
    "vas": "m s-1",
    "sfcWind": "m s-1",
    "psl": "Pa",
    "rsds": "W m-2",
    "rlds": "W m-2",
    "clt": "%",
    # sea surface temperature: degC, the CMIP6 unit (ERA5's K is converted by pint)
    "tos": "degC",
}

#: CF standard names and long names written on canonical variables.
CANONICAL_ATTRS: dict[str, dict[str, str]] = {
    "tas": {"standard_name": "air_temperature", "long_name": "Near-Surface Air Temperature"},
    "hurs": {"standard_name": "relative_humidity", "long_name": "Near-Surface Relative Humidity"},
    "huss": {"standard_name": "specific_humidity", "long_name": "Near-Surface Specific Humidity"},
    "pr": {"standard_name": "precipitation_flux", "long_name": "Precipitation"},
    "uas": {"standard_name": "eastward_wind", "long_name": "Eastward Near-Surface Wind"},
    "vas": {"standard_name": "northward_wind", "long_name": "Northward Near-Surface Wind"},
    "sfcWind": {"standard_name": "wind_speed", "long_name": "Near-Surface Wind Speed"},
    "psl": {"standard_name": "air_pressure_at_mean_sea_level", "long_name": "Sea Level Pressure"},
    "rsds": {
        "standard_name": "surface_downwelling_shortwave_flux_in_air",
        "long_name": "Surface Downwelling Shortwave Radiation",
    },
    "rlds": {
        "standard_name": "surface_downwelling_longwave_flux_in_air",
        "long_name": "Surface Downwelling Longwave Radiation",
    },
    "clt": {"standard_name": "cloud_area_fraction", "long_name": "Total Cloud Cover Percentage"},
    "tos": {"standard_name": "sea_surface_temperature", "long_name": "Sea Surface Temperature"},
}


@dataclass(frozen=True)
class Derivation:
    """How to compute one variable from others.

    Attributes
    ----------
    variable : str
        Name of the derived variable.
    inputs : tuple of str
        Names of the variables passed, in order, to ``func`` (after renaming
        to canonical/CMIP names, e.g. ``tdps`` for dewpoint).
    func : callable
        ``func(*inputs) -> DataArray`` with a ``units`` attribute; must be lazy.
    description : str
        One line for documentation and error messages.
    """

    variable: str
    inputs: tuple[str, ...]
    func: Callable[..., xr.DataArray]
    description: str = ""


#: Registered derivations, keyed by the name requested in ``derivations``.
DERIVATIONS: dict[str, Derivation] = {
    "hurs": Derivation(
        "hurs", ("tas", "tdps"), hurs_from_dewpoint, "relative humidity from dewpoint"
    ),
    "sfcWind": Derivation("sfcWind", ("uas", "vas"), wind_speed, "wind speed from components"),
    "huss": Derivation(
        "huss",
        ("tas", "hurs", "psl"),
        huss_from_hurs,
        "specific humidity from relative humidity, sea-level pressure standing for ps",
    ),
}


def register_derivation(
    variable: str, inputs: Iterable[str], description: str = "", name: str | None = None
) -> Callable[[Callable[..., xr.DataArray]], Callable[..., xr.DataArray]]:
    """Register a derivation (decorator).

    Parameters
    ----------
    variable : str
        Derived variable name.
    inputs : iterable of str
        Input variable names, in the order ``func`` takes them.
    description : str
        One line describing the derivation.
    name : str, optional
        Registry key (defaults to ``variable``).

    Returns
    -------
    callable
        Decorator returning the function unchanged.
    """

    def decorator(func: Callable[..., xr.DataArray]) -> Callable[..., xr.DataArray]:
        DERIVATIONS[name or variable] = Derivation(variable, tuple(inputs), func, description)
        return func

    return decorator


def derive(ds: xr.Dataset, derivations: Iterable[str]) -> xr.Dataset:
    """Apply registered derivations in order.

    Why: some sources lack a canonical variable but carry what it is computed
    from (ERA5: dewpoint → ``hurs``; sub-daily components → ``sfcWind``, which
    must be computed at each time step before any averaging). A variable
    already present is kept, not recomputed.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset with canonical/CMIP names.
    derivations : iterable of str
        Keys of :data:`DERIVATIONS`; later ones may use earlier outputs.

    Returns
    -------
    xarray.Dataset
        Dataset with the derived variables added (lazy).

    Raises
    ------
    ValueError
        If a derivation is unknown or its inputs are missing.
    """
    for key in derivations:
        try:
            spec = DERIVATIONS[key]
        except KeyError:
            raise ValueError(
                f"Unknown derivation {key!r}; registered: {sorted(DERIVATIONS)}."
            ) from None
        if spec.variable in ds.data_vars:
            continue
        missing = [v for v in spec.inputs if v not in ds.data_vars]
        if missing:
            raise ValueError(
                f"Derivation {key!r} ({spec.description}) needs {list(spec.inputs)}; "
                f"missing {missing} (variables present: {sorted(map(str, ds.data_vars))})."
            )
        ds = ds.assign({spec.variable: spec.func(*(ds[v] for v in spec.inputs))})
    return ds


def to_canonical(
    ds: xr.Dataset,
    mapping: Mapping[Hashable, str],
    derivations: Iterable[str] = (),
) -> xr.Dataset:
    """Rename, derive and convert a source dataset to canonical predictors.

    Why: downstream code only knows CMIP short names in CF units; the source
    specifics are data (``mapping``, ``derivations``) from the catalog.
    Variables that are not canonical after renaming and derivation (e.g. the
    dewpoint once ``hurs`` is derived) are dropped.

    Parameters
    ----------
    ds : xarray.Dataset
        Source dataset (any grid, any time sampling).
    mapping : mapping
        Source variable name → canonical (or intermediate, e.g. ``tdps``) name.
    derivations : iterable of str
        Keys of :data:`DERIVATIONS` to apply after renaming.

    Returns
    -------
    xarray.Dataset
        Canonical variables in :data:`CANONICAL_UNITS` with CF attributes (lazy).

    Raises
    ------
    ValueError
        If a mapped variable is absent, no canonical variable results, or a
        unit is missing, unknown or incompatible.
    """
    absent = [k for k in mapping if k not in ds.data_vars]
    if absent:
        raise ValueError(
            f"Mapped source variables {absent} not in the dataset "
            f"(present: {sorted(map(str, ds.data_vars))})."
        )
    ds = ds.rename({k: v for k, v in mapping.items() if k != v})
    ds = derive(ds, derivations)
    keep = [name for name in CANONICAL_UNITS if name in ds.data_vars]
    if not keep:
        raise ValueError(
            f"No canonical variable {sorted(CANONICAL_UNITS)} after renaming; "
            f"variables present: {sorted(map(str, ds.data_vars))}."
        )
    out = convert_dataset(ds[keep], {name: CANONICAL_UNITS[name] for name in keep})
    return out.assign({name: out[name].assign_attrs(CANONICAL_ATTRS[name]) for name in keep})


def standardise(
    ds: xr.Dataset,
    regions: Iterable[Region],
    mapping: Mapping[Hashable, str],
    derivations: Iterable[str] = (),
    calendar: str = "standard",
    max_gap_days: int = 3,
    min_coverage: float = 0.75,
    statistics: Mapping[str, str] | None = None,
    land_fraction: xr.DataArray | None = None,
    cell_area: xr.DataArray | None = None,
) -> tuple[xr.Dataset, GapReport]:
    """From a raw source dataset to daily regional canonical predictors.

    Why: one entry point per source, the same for reanalyses and projections.
    The order matters: grids → canonical names, derivations and units on the
    sub-daily grid (wind speed from sub-daily components at each grid point;
    precipitation amounts to fluxes while the step length is known) →
    area-weighted regional means → daily statistics → one calendar → short
    gaps filled. ``sfcWind`` is derived on the grid from ``uas``/``vas`` whenever
    the source lacks it, requested or not. Nothing is computed: dask inputs
    give dask outputs, and the gap report is evaluated on first access.

    Parameters
    ----------
    ds : xarray.Dataset
        Source dataset.
    regions : iterable of Region
        Named regions for the spatial means.
    mapping : mapping
        Source variable name → canonical name.
    derivations : iterable of str
        Keys of :data:`DERIVATIONS` (e.g. ``["hurs", "sfcWind"]``).
    calendar : str
        Output calendar (``standard`` gives numpy datetime64).
    max_gap_days : int
        Longest run of missing days filled by linear interpolation.
    min_coverage : float
        Minimum fraction of valid sub-daily steps for a valid daily value.
    statistics : mapping, optional
        Per-variable daily statistic (defaults to
        :data:`cascadia.sources.predictors.daily.DAILY_STATISTICS`).
    land_fraction : xarray.DataArray, optional
        The source's land area fraction (``1``) on the same grid
        (:func:`~cascadia.sources.predictors.masks.as_land_fraction`); needed
        when a region averages over sea or land only.
    cell_area : xarray.DataArray, optional
        Cell areas (m2) of the grid (:func:`~cascadia.sources.predictors.masks.as_cell_area`),
        weighting the regional means instead of cos(latitude).

    Returns
    -------
    tuple of (xarray.Dataset, GapReport)
        Daily dataset with dims ``(time, region)`` in canonical units, and the
        report of gaps left as NaN.
    """
    grid = normalize_grid(ds)
    canonical = to_canonical(grid, mapping, derivations)
    if "sfcWind" not in canonical.data_vars and {"uas", "vas"} <= set(canonical.data_vars):
        # Speed on the sub-daily grid, never from regional or daily mean components.
        speed = wind_speed(canonical["uas"], canonical["vas"])
        canonical = canonical.assign(sfcWind=speed.assign_attrs(CANONICAL_ATTRS["sfcWind"]))
    regional = regional_means(canonical, regions, land_fraction, cell_area)
    daily = to_daily(regional, min_coverage=min_coverage, statistics=statistics)
    if any(da.chunks is not None for da in daily.data_vars.values()):
        # a few kB per variable and year: the calendar and the gap filling run on one chunk
        daily = one_time_chunk(daily)
    daily = to_calendar(daily, calendar=calendar)
    filled, report = fill_short_gaps(daily, max_gap_days=max_gap_days)
    filled = filled.transpose("time", "region", ...)
    return filled, report
