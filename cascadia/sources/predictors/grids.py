"""Normalise the horizontal grid of a source dataset.

Sources disagree on how they spell and order their horizontal coordinates:
ARCO-ERA5 has a descending ``latitude`` and a 0–360 ``longitude``, CMIP models
use ``lat``/``lon`` in 0–360, CORDEX uses rotated-pole ``rlat``/``rlon`` with
2-D ``lat``/``lon``, NEMO-like grids use ``nav_lat``/``nav_lon``. Everything
downstream (region weights, regional means) assumes one convention:

* regular grids: 1-D dimension coordinates ``lat`` (ascending, degrees_north)
  and ``lon`` (ascending, degrees_east in [-180, 180));
* curvilinear grids: the native dimensions are kept, and 2-D ``lat``/``lon``
  coordinates are exposed with ``lon`` in [-180, 180).

Only coordinates are touched: reordering is an index selection, so dask-backed
data variables stay lazy.
"""

from __future__ import annotations

from collections.abc import Hashable

import cf_xarray  # noqa: F401  (registers the ``.cf`` accessor used below)
import numpy as np
import xarray as xr

__all__ = [
    "find_lat_lon",
    "horizontal_dims",
    "is_curvilinear",
    "normalize_grid",
    "wrap_longitude",
]

#: Candidate (latitude, longitude) names tried, in order, when cf_xarray finds nothing.
_COMMON_NAMES: tuple[tuple[str, str], ...] = (
    ("lat", "lon"),
    ("latitude", "longitude"),
    ("nav_lat", "nav_lon"),
    ("nav_latitude", "nav_longitude"),
    ("XLAT", "XLONG"),
)


def wrap_longitude(lon: xr.DataArray) -> xr.DataArray:
    """Map longitudes in degrees_east onto [-180, 180).

    Why: region boxes are written in the −180–180 convention (the Gulf of Lion
    straddles the Greenwich meridian), while ERA5 and CMIP store 0–360.

    Parameters
    ----------
    lon : xarray.DataArray
        Longitudes in degrees_east, any range.

    Returns
    -------
    xarray.DataArray
        Same shape and attributes, values in degrees_east within [-180, 180).
    """
    wrapped = ((lon + 180.0) % 360.0) - 180.0
    return wrapped.assign_attrs(lon.attrs)


#: cf_xarray's coordinates of recently seen layouts (names, dims and attributes).
_CF_SEEN: dict[tuple, dict[str, list[Hashable]]] = {}
_CF_SEEN_MAX = 64


def _cf_candidates(ds: xr.Dataset, key: str) -> list[Hashable]:
    """Names that cf_xarray identifies as ``key`` (``"latitude"``/``"longitude"``).

    cf_xarray reads only names, dimensions and attributes, and takes milliseconds
    to; one extraction asks about the same layout a score of times (every
    normalisation, weight and mask), so the answer is kept per layout.
    """
    layout = tuple(
        (str(name), var.dims, tuple(sorted((str(k), repr(v)) for k, v in var.attrs.items())))
        for name, var in ds.variables.items()
    )
    coordinates = _CF_SEEN.get(layout)
    if coordinates is None:
        try:
            coordinates = {k: list(v) for k, v in ds.cf.coordinates.items()}
        except (AttributeError, KeyError, ValueError):
            coordinates = {}
        if len(_CF_SEEN) >= _CF_SEEN_MAX:
            _CF_SEEN.clear()
        _CF_SEEN[layout] = coordinates
    # cf_xarray may flag rotated ``rlat``/``rlon`` on poorly-attributed files; skip them.
    return [n for n in coordinates.get(key, []) if str(n) not in {"rlat", "rlon"}]


def find_lat_lon(ds: xr.Dataset) -> tuple[Hashable, Hashable]:
    """Find the names of the latitude and longitude coordinates.

    Why: each source spells them differently; cf_xarray reads CF attributes
    (``standard_name``, ``units``), and common names cover files without them.

    Parameters
    ----------
    ds : xarray.Dataset
        Source dataset.

    Returns
    -------
    tuple of Hashable
        ``(lat_name, lon_name)``.

    Raises
    ------
    ValueError
        If no latitude/longitude pair can be identified.
    """
    lats = _cf_candidates(ds, "latitude")
    lons = _cf_candidates(ds, "longitude")
    if len(lats) == 1 and len(lons) == 1:
        return lats[0], lons[0]
    for lat, lon in _COMMON_NAMES:
        if lat in ds.variables and lon in ds.variables:
            return lat, lon
    raise ValueError(
        "Cannot identify latitude/longitude coordinates; found variables "
        f"{sorted(map(str, ds.variables))}. Expected CF attributes or one of {_COMMON_NAMES}."
    )


def is_curvilinear(ds: xr.Dataset) -> bool:
    """Whether the dataset's horizontal grid has 2-D latitude/longitude.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset with ``lat``/``lon`` (as left by :func:`normalize_grid`) or any
        names :func:`find_lat_lon` recognises.

    Returns
    -------
    bool
        True for curvilinear or rotated-pole grids (2-D coordinates), False for
        regular grids with 1-D dimension coordinates.
    """
    lat, lon = find_lat_lon(ds)
    return ds[lat].ndim != 1 or ds[lon].ndim != 1


def horizontal_dims(ds: xr.Dataset) -> tuple[Hashable, ...]:
    """Dimensions spanned by the horizontal grid.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset with a grid normalised by :func:`normalize_grid`.

    Returns
    -------
    tuple of Hashable
        ``("lat", "lon")`` on regular grids, the native dims of the 2-D
        coordinates (e.g. ``("rlat", "rlon")``, ``("y", "x")``) otherwise.
    """
    lat, lon = find_lat_lon(ds)
    if ds[lat].ndim == 1 and ds[lon].ndim == 1:
        return (ds[lat].dims[0], ds[lon].dims[0])
    return tuple(ds[lat].dims)


def _drop_bounds(ds: xr.Dataset, *names: Hashable) -> xr.Dataset:
    """Drop the cell-bounds variables of ``names``; they are recomputed from centres."""
    bounds = [ds[n].attrs.get("bounds") for n in names]
    return ds.drop_vars([b for b in bounds if b is not None and b in ds.variables])


def _normalize_regular(ds: xr.Dataset, lat: Hashable, lon: Hashable) -> xr.Dataset:
    lat_dim, lon_dim = ds[lat].dims[0], ds[lon].dims[0]
    ds = ds.rename({n: new for n, new in ((lat, "lat"), (lon, "lon")) if n != new})
    # 1-D lat/lon that are not dimension coordinates (e.g. on dims y/x) become them.
    rename_dims = {
        d: new for d, name, new in ((lat_dim, lat, "lat"), (lon_dim, lon, "lon")) if d != name
    }
    if rename_dims:
        ds = ds.swap_dims(rename_dims)

    lon_values = np.asarray(ds["lon"].values, dtype=float)
    wrapped = ((lon_values + 180.0) % 360.0) - 180.0
    if not np.array_equal(wrapped, lon_values):
        ds = _drop_bounds(ds, "lon")
        ds = ds.assign_coords(lon=("lon", wrapped, ds["lon"].attrs))
    # Order longitudes (a 0–360 subset [0..9, 358, 359] becomes [-2, -1, 0..9]),
    # dropping a duplicated meridian (0 and 360 both present).
    order = np.argsort(wrapped, kind="stable")
    order = order[np.concatenate([[True], np.diff(wrapped[order]) > 0])]
    if not np.array_equal(order, np.arange(wrapped.size)):
        ds = ds.isel(lon=order)

    lat_values = np.asarray(ds["lat"].values, dtype=float)
    if lat_values.size > 1 and np.all(np.diff(lat_values) < 0):
        ds = ds.isel(lat=slice(None, None, -1))
    elif lat_values.size > 1 and not np.all(np.diff(lat_values) > 0):
        ds = ds.isel(lat=np.argsort(lat_values, kind="stable"))
    return ds.assign_coords(
        lat=ds["lat"].assign_attrs(units="degrees_north", standard_name="latitude"),
        lon=ds["lon"].assign_attrs(units="degrees_east", standard_name="longitude"),
    )


def _normalize_curvilinear(ds: xr.Dataset, lat: Hashable, lon: Hashable) -> xr.Dataset:
    if ds[lat].dims != ds[lon].dims:
        raise ValueError(
            f"2-D latitude {lat!r} and longitude {lon!r} must share dimensions, "
            f"got {ds[lat].dims} and {ds[lon].dims}."
        )
    ds = ds.rename({n: new for n, new in ((lat, "lat"), (lon, "lon")) if n != new})
    ds = ds.set_coords(["lat", "lon"])
    ds = _drop_bounds(ds, "lon")
    return ds.assign_coords(lon=wrap_longitude(ds["lon"]))


def normalize_grid(ds: xr.Dataset) -> xr.Dataset:
    """Bring a dataset's horizontal grid to the package convention.

    Why: regional means and area weights need one spelling and ordering of
    latitude/longitude whatever the source (ERA5, CMIP, CORDEX, NEMO-like).

    Regular grids get 1-D dimension coordinates ``lat`` (ascending,
    degrees_north) and ``lon`` (ascending, degrees_east in [-180, 180); a 0–360
    regional subset such as ``[0..9, 358, 359.75]`` is reordered so that it is
    monotonic). Curvilinear and rotated-pole grids keep their native dims
    (``rlat``/``rlon``, ``y``/``x``) and get 2-D ``lat``/``lon`` coordinates with
    ``lon`` in [-180, 180). Longitude bounds variables whose values would no
    longer match are dropped: cell bounds are recomputed from centres.

    The function is idempotent and only reads coordinates, so dask-backed
    data variables are not computed.

    Parameters
    ----------
    ds : xarray.Dataset
        Source dataset.

    Returns
    -------
    xarray.Dataset
        The dataset on the normalised grid.

    Raises
    ------
    ValueError
        If no latitude/longitude coordinates can be identified, or 2-D ones do
        not share their dimensions.
    """
    lat, lon = find_lat_lon(ds)
    if ds[lat].ndim == 1 and ds[lon].ndim == 1:
        if ds[lat].dims[0] == ds[lon].dims[0]:
            raise ValueError(
                f"Latitude {lat!r} and longitude {lon!r} share the dimension "
                f"{ds[lat].dims[0]!r}: unstructured grids are not supported."
            )
        return _normalize_regular(ds, lat, lon)
    if ds[lat].ndim == 2 and ds[lon].ndim == 2:
        return _normalize_curvilinear(ds, lat, lon)
    raise ValueError(
        f"Unsupported grid: latitude {lat!r} has {ds[lat].ndim} dims and longitude "
        f"{lon!r} has {ds[lon].ndim}."
    )
