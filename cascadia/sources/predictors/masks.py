"""A source's own land fraction, in one convention, on the grid of its data.

Regional means over sea (or land) cells weight each cell by the share of its
area that is sea (or land). Every archive ships that share differently: CMIP6
and CORDEX ``sftlf`` in ``%`` (``fx`` tables, no time axis), ERA5 ``lsm`` /
``land_sea_mask`` in ``(0 - 1)`` (ARCO-ERA5 repeats it at every hour), CMIP6
``sftof`` as the *sea* fraction of ocean-grid cells. Here each becomes the land
area fraction in ``1`` (0 = all sea, 1 = all land) with no time axis, by its
units attribute (pint, through :func:`~cascadia.sources.predictors.units.convert_variable`)
and by what the catalog says it is a fraction of, never by guessing from the
values; values outside 0–1 after conversion (a ``%`` field labelled ``1``) stop
with a message.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal

import numpy as np
import xarray as xr

from cascadia.sources.predictors.grids import horizontal_dims, is_curvilinear, normalize_grid
from cascadia.sources.predictors.units import convert_variable

__all__ = [
    "COORD_TOLERANCE",
    "as_cell_area",
    "as_land_fraction",
    "cell_area_on_grid",
    "land_fraction_on_grid",
]

#: Largest difference (degrees) between the land fraction's and the data's cell
#: centres for the two to count as the same grid (float32 vs float64 coordinates).
COORD_TOLERANCE = 1e-3

#: CF standard names of the variables a land fraction is read from, and what
#: they are a fraction of.
_STANDARD_NAMES = {
    "land_area_fraction": "land",
    "land_binary_mask": "land",
    "sea_area_fraction": "sea",
    "sea_binary_mask": "sea",
}


def as_land_fraction(
    da: xr.DataArray,
    fraction_of: Literal["land", "sea"] = "land",
    units: str | None = None,
    name: Hashable | None = None,
) -> xr.DataArray:
    """The land area fraction (``1``) of each cell, without a time axis.

    Why: masks must mean the same whatever the archive; a ``%`` field read as a
    fraction would make every coastal cell count as land.

    Parameters
    ----------
    da : xarray.DataArray
        The source's land-fraction (or sea-fraction) variable with its grid
        coordinates; a ``time`` axis (ARCO-ERA5, ECMWF invariant files) is
        dropped by taking its first step, other length-1 axes (a joined
        ``member_id``) are squeezed.
    fraction_of : {"land", "sea"}
        What ``da`` is a fraction of (``sftlf``, ``lsm``: land; ``sftof``: sea).
    units : str, optional
        Units to assume when ``da`` has no ``units`` attribute; when it has one
        the two must agree.
    name : Hashable, optional
        Name for messages (defaults to ``da.name``).

    Returns
    -------
    xarray.DataArray
        Land fraction in [0, 1] (computed, small), named ``land_fraction``,
        units ``1``; missing values stay missing.

    Raises
    ------
    ValueError
        If the units are missing, not a fraction, or contradict ``units``; if a
        CF ``standard_name`` says the variable is a fraction of the other
        surface; if axes other than the grid's remain; or if values fall
        outside 0–1 after conversion.
    """
    label = da.name if name is None else name
    given = da.attrs.get("units")
    if units is not None:
        if given not in (None, "") and str(given).strip() != units.strip():
            raise ValueError(
                f"land-fraction variable {label!r} has units {given!r} but the catalog "
                f"says {units!r}; remove 'units' from land_fraction (the file's own win)"
            )
        da = da.assign_attrs(units=units)
    elif given in (None, ""):
        raise ValueError(
            f"land-fraction variable {label!r} has no units attribute; give them in the "
            "catalog (land_fraction: {units: '%'} or {units: '1'})"
        )
    standard = _STANDARD_NAMES.get(str(da.attrs.get("standard_name", "")))
    if standard is not None and standard != fraction_of:
        raise ValueError(
            f"land-fraction variable {label!r} has standard_name "
            f"{da.attrs['standard_name']!r} (a {standard} fraction) but the catalog says "
            f"fraction_of: {fraction_of}"
        )
    if "time" in da.dims:
        da = da.isel(time=0, drop=True)
    da = normalize_grid(da.to_dataset(name="land_fraction"))["land_fraction"]
    hdims = horizontal_dims(da.to_dataset())
    extra = [d for d in da.dims if d not in hdims]
    da = da.squeeze([d for d in extra if da.sizes[d] == 1], drop=True)
    still = [d for d in da.dims if d not in hdims]
    if still:
        raise ValueError(
            f"land-fraction variable {label!r} has axes {still} beside its grid {list(hdims)}; "
            "expected one static field"
        )
    converted = convert_variable(da, "1", label).load()
    low, high = float(converted.min()), float(converted.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(
            f"land-fraction variable {label!r} ranges {low:g}..{high:g} after converting "
            f"from {da.attrs['units']!r} to 1; expected 0..1 (are its units right?)"
        )
    land = converted.clip(0.0, 1.0)
    if fraction_of == "sea":
        land = 1.0 - land
    return land.rename("land_fraction").assign_attrs(
        units="1", long_name="land area fraction", source_variable=str(label)
    )


def as_cell_area(
    da: xr.DataArray, units: str | None = None, name: Hashable | None = None
) -> xr.DataArray:
    """The area (``m2``) of each grid cell, without a time axis (CMIP6 ``areacello``).

    Why: cells of a curvilinear ocean grid (tripolar NEMO, displaced-pole POP) differ
    in area in ways cos(latitude) does not follow; the model's own cell areas weight
    its regional means as its own diagnostics do.

    Parameters
    ----------
    da : xarray.DataArray
        The cell-area variable with its grid coordinates (``time`` and length-1 axes
        are dropped as for :func:`as_land_fraction`).
    units : str, optional
        Units to assume when ``da`` has none; when it has some the two must agree.
    name : Hashable, optional
        Name for messages (defaults to ``da.name``).

    Returns
    -------
    xarray.DataArray
        Cell areas in ``m2`` (computed, small), named ``cell_area``; missing or
        negative values become 0 (no weight).

    Raises
    ------
    ValueError
        If the units are missing, not an area, or contradict ``units``, or axes
        other than the grid's remain.
    """
    label = da.name if name is None else name
    given = da.attrs.get("units")
    if units is not None:
        if given not in (None, "") and str(given).strip() != units.strip():
            raise ValueError(
                f"cell-area variable {label!r} has units {given!r} but the catalog says "
                f"{units!r}; remove 'units' from cell_area (the file's own win)"
            )
        da = da.assign_attrs(units=units)
    elif given in (None, ""):
        raise ValueError(
            f"cell-area variable {label!r} has no units attribute; give them in the "
            "catalog (cell_area: {units: m2})"
        )
    if "time" in da.dims:
        da = da.isel(time=0, drop=True)
    da = normalize_grid(da.to_dataset(name="cell_area"))["cell_area"]
    hdims = horizontal_dims(da.to_dataset())
    da = da.squeeze([d for d in da.dims if d not in hdims and da.sizes[d] == 1], drop=True)
    still = [d for d in da.dims if d not in hdims]
    if still:
        raise ValueError(
            f"cell-area variable {label!r} has axes {still} beside its grid {list(hdims)}; "
            "expected one static field"
        )
    area = convert_variable(da, "m2", label).load()
    area = area.where(area > 0, 0.0).fillna(0.0)
    return area.rename("cell_area").assign_attrs(
        units="m2", long_name="cell area", source_variable=str(label)
    )


def cell_area_on_grid(area: xr.DataArray, ds: xr.Dataset) -> xr.DataArray:
    """The cell areas cell by cell on ``ds``'s normalised grid (see :func:`land_fraction_on_grid`).

    Raises
    ------
    ValueError
        If the cell areas are on another grid than the data.
    """
    try:
        return land_fraction_on_grid(area.rename("land_fraction"), ds).rename("cell_area")
    except ValueError as exc:
        raise ValueError(str(exc).replace("land fraction", "cell area")) from None


def land_fraction_on_grid(land: xr.DataArray, ds: xr.Dataset) -> xr.DataArray:
    """The land fraction cell by cell on ``ds``'s normalised grid.

    Why: a land fraction from another store (a CMIP ``fx`` table, a CORDEX
    ``sftlf`` file) must describe the very cells of the data, or a mask would
    fall on the wrong cells without anyone noticing.

    Parameters
    ----------
    land : xarray.DataArray
        Output of :func:`as_land_fraction` (any grid order or longitude convention).
    ds : xarray.Dataset
        Data on a grid normalised by :func:`~cascadia.sources.predictors.grids.normalize_grid`.

    Returns
    -------
    xarray.DataArray
        Land fraction over ``ds``'s horizontal dims, in their order.

    Raises
    ------
    ValueError
        If a data cell has no land-fraction cell within :data:`COORD_TOLERANCE` degrees.
    """
    norm = normalize_grid(land.to_dataset(name="land_fraction"))
    field = norm["land_fraction"]
    hdims = horizontal_dims(ds)
    if not is_curvilinear(ds):
        if is_curvilinear(norm):
            raise ValueError(
                "the land fraction is on a curvilinear grid but the data on a regular one"
            )
        nearest = {"lat": ds["lat"].values, "lon": ds["lon"].values}
        field = field.sel(nearest, method="nearest").transpose("lat", "lon")
        offset = max(
            float(np.max(np.abs(field["lat"].values - ds["lat"].values))),
            float(np.max(np.abs(field["lon"].values - ds["lon"].values))),
        )
        if offset > COORD_TOLERANCE:
            raise ValueError(
                f"the land fraction's grid differs from the data's: cell centres up to "
                f"{offset:.4g} degrees apart (data lat {_span(ds['lat'])}, lon {_span(ds['lon'])};"
                f" land fraction lat {_span(norm['lat'])}, lon {_span(norm['lon'])})"
            )
        return field.assign_coords(lat=ds["lat"], lon=ds["lon"])
    shape = tuple(ds.sizes[d] for d in hdims)
    if set(field.dims) != set(hdims) or tuple(field.sizes[d] for d in hdims) != shape:
        raise ValueError(
            f"the land fraction's grid {dict(field.sizes)} differs from the data's "
            f"{dict(zip(hdims, shape, strict=True))}"
        )
    field = field.transpose(*hdims)
    offset = max(
        float(np.nanmax(np.abs(norm["lat"].transpose(*hdims).values - ds["lat"].values))),
        float(np.nanmax(np.abs(norm["lon"].transpose(*hdims).values - ds["lon"].values))),
    )
    if offset > COORD_TOLERANCE:
        raise ValueError(
            f"the land fraction's 2-D latitudes/longitudes differ from the data's by up to "
            f"{offset:.4g} degrees: not the same grid"
        )
    return field.drop_vars([c for c in field.coords if c not in field.dims]).assign_coords(
        lat=ds["lat"], lon=ds["lon"]
    )


def _span(coord: xr.DataArray) -> str:
    return f"[{float(coord.min()):.3f}, {float(coord.max()):.3f}]"
