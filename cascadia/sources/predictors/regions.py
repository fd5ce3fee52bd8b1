"""Named regions and area-weighted regional means.

The model reads a handful of regional series (Gulf of Lion shelf, Tramontane
and Mistral corridors), not gridded fields, so each source is reduced to one
value per region and time step. The weights must be right on every grid the
project meets: a 0.25° regular reanalysis grid, a 1–2° CMIP grid where a
region covers a few partial cells, and a rotated-pole CORDEX grid. A region
may average over sea (or land) cells only: each cell is then weighted by the
share of its area that is sea (or land), from the source's own land fraction
(:mod:`cascadia.sources.predictors.masks`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Literal, Self

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cascadia.sources.predictors.grids import horizontal_dims, is_curvilinear, normalize_grid
from cascadia.sources.predictors.masks import cell_area_on_grid, land_fraction_on_grid

__all__ = ["Region", "all_nan_regions", "region_weights", "regional_means"]


class Region(BaseModel):
    """A latitude/longitude box with a name, and the surface it averages over.

    Why: regions are configuration (YAML), validated once, and reused on every
    source grid. Longitudes use the −180–180 convention of
    :func:`cascadia.sources.predictors.grids.normalize_grid`; boxes crossing the
    antimeridian are not supported.

    ``surface`` defaults to ``all``: a box is the box unless it says otherwise,
    and masking needs the source's land fraction, which a catalog then has to
    name. The Gulf of Lion shelf, whose air feeds the air–sea fluxes, is
    ``sea``; the wind corridors are ``all``, because the Tramontane and the
    Mistral are channelled over land and fan out over the sea, one flow across
    the coast.

    Attributes
    ----------
    name : str
        Identifier, used as the label along the ``region`` dimension.
    lat_min, lat_max : float
        Southern and northern edges, degrees_north, within [-90, 90].
    lon_min, lon_max : float
        Western and eastern edges, degrees_east, within [-180, 180].
    surface : {"all", "sea", "land"}
        Which part of each cell counts: all of it, or its sea (land) share.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    lat_min: float = Field(ge=-90.0, le=90.0)
    lat_max: float = Field(ge=-90.0, le=90.0)
    lon_min: float = Field(ge=-180.0, le=180.0)
    lon_max: float = Field(ge=-180.0, le=180.0)
    surface: Literal["all", "sea", "land"] = "all"

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        if not self.lat_min < self.lat_max:
            raise ValueError(
                f"region {self.name!r}: lat_min ({self.lat_min}) must be < lat_max ({self.lat_max})"
            )
        if not self.lon_min < self.lon_max:
            raise ValueError(
                f"region {self.name!r}: lon_min ({self.lon_min}) must be < lon_max ({self.lon_max})"
            )
        return self


def _cell_edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges of a monotonic ascending 1-D coordinate, midway between centres."""
    mid = 0.5 * (centres[1:] + centres[:-1])
    first = centres[0] - (mid[0] - centres[0])
    last = centres[-1] + (centres[-1] - mid[-1])
    return np.concatenate([[first], mid, [last]])


def _overlap_fraction(centres: np.ndarray, lo: float, hi: float, clip: float | None) -> np.ndarray:
    """Fraction of each 1-D cell (bounds from centres) that lies within [lo, hi]."""
    if centres.size == 1:
        return ((centres >= lo) & (centres <= hi)).astype(float)
    edges = _cell_edges(centres)
    if clip is not None:
        edges = np.clip(edges, -clip, clip)
    lower, upper = edges[:-1], edges[1:]
    width = upper - lower
    overlap = np.clip(np.minimum(upper, hi) - np.maximum(lower, lo), 0.0, None)
    return np.divide(overlap, width, out=np.zeros_like(overlap), where=width > 0)


def _corners(values: np.ndarray) -> np.ndarray:
    """Cell corners (ny+1, nx+1) of 2-D centres: means of neighbours, extrapolated at edges."""
    padded = np.pad(values, 1, mode="reflect", reflect_type="odd")
    return 0.25 * (padded[:-1, :-1] + padded[1:, :-1] + padded[:-1, 1:] + padded[1:, 1:])


def _curvilinear_fraction(
    lat: np.ndarray, lon: np.ndarray, region: Region, samples: int = 7
) -> np.ndarray:
    """Fraction of each curvilinear cell inside the box, from a sub-grid of sample points."""
    clat, clon = _corners(lat), _corners(lon)
    t = (np.arange(samples) + 0.5) / samples
    s_, t_ = np.meshgrid(t, t, indexing="ij")
    s_, t_ = s_.reshape(-1, 1, 1), t_.reshape(-1, 1, 1)

    def bilinear(c: np.ndarray) -> np.ndarray:
        return (
            (1 - s_) * (1 - t_) * c[:-1, :-1]
            + s_ * (1 - t_) * c[1:, :-1]
            + (1 - s_) * t_ * c[:-1, 1:]
            + s_ * t_ * c[1:, 1:]
        )

    plat, plon = bilinear(clat), bilinear(clon)
    inside = (
        (plat >= region.lat_min)
        & (plat <= region.lat_max)
        & (plon >= region.lon_min)
        & (plon <= region.lon_max)
    )
    return inside.mean(axis=0)


def _extent(lat: np.ndarray, lon: np.ndarray) -> str:
    return (
        f"lat [{np.nanmin(lat):.3f}, {np.nanmax(lat):.3f}], "
        f"lon [{np.nanmin(lon):.3f}, {np.nanmax(lon):.3f}]"
    )


def region_weights(
    ds: xr.Dataset,
    region: Region,
    land_fraction: xr.DataArray | None = None,
    cell_area: xr.DataArray | None = None,
) -> xr.DataArray:
    """Area weights of the grid cells for one region.

    Why: a plain mean over grid points over-weights high latitudes, ignores that
    a coarse cell may be only partly in the box, and mixes land air into a sea
    region.

    The weight of a cell is ``a × f × s``, ``a`` its area: ``cos(lat)`` (exact on
    regular grids), or the source's own cell areas where given (``areacello`` of a
    curvilinear ocean grid, m2). ``f`` is the fraction of the
    cell inside the box: on regular grids from bounds midway between centres
    (latitudes clipped to ±90°); on curvilinear grids from sampling each cell on
    a 7 x 7 sub-grid (corners midway between neighbouring centres, bilinear in
    between), so a coarse regional-model cell that only straddles the box still
    counts. ``s`` is 1 for ``surface: all``, the sea fraction ``1 − land`` for
    ``sea`` and the land fraction for ``land``: fractional, so a coastal cell
    counts by its share and means change smoothly with the grid (a threshold
    would leave a 2° model with no shelf cell at all); a cell with a missing
    land fraction gets no weight. The grid is first normalised with
    :func:`~cascadia.sources.predictors.grids.normalize_grid`, so the weights
    carry the normalised coordinates (lon in −180–180, lat ascending). Only
    coordinates and the land fraction are read.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset whose horizontal grid is used.
    region : Region
        The box and its surface.
    land_fraction : xarray.DataArray, optional
        Land area fraction (``1``) of the same grid, from
        :func:`~cascadia.sources.predictors.masks.as_land_fraction`; needed
        unless ``region.surface`` is ``all``.
    cell_area : xarray.DataArray, optional
        Cell areas (m2) of the same grid, from
        :func:`~cascadia.sources.predictors.masks.as_cell_area`, used instead of
        cos(latitude).

    Returns
    -------
    xarray.DataArray
        Non-negative weights (dimensionless, unnormalised) over the horizontal
        dims, named ``weights``.

    Raises
    ------
    ValueError
        If no cell of the grid has a positive weight for the region (the
        message names the region and gives the grid's extent), if a sea or land
        region has no land fraction or no cell of its surface, or if the land
        fraction or the cell areas are on another grid.
    """
    ds = normalize_grid(ds)
    lat = np.asarray(ds["lat"].values, dtype=float)
    lon = np.asarray(ds["lon"].values, dtype=float)
    coslat = np.cos(np.deg2rad(lat))
    if cell_area is not None:
        try:
            coslat = np.asarray(cell_area_on_grid(cell_area, ds).values, dtype=float)
        except ValueError as exc:
            raise ValueError(f"Region {region.name!r}: {exc}.") from None
    if is_curvilinear(ds):
        values = coslat * _curvilinear_fraction(lat, lon, region)
        dims = ds["lat"].dims
    else:
        flat = _overlap_fraction(lat, region.lat_min, region.lat_max, clip=90.0)
        flon = _overlap_fraction(lon, region.lon_min, region.lon_max, clip=None)
        values = (coslat * flat)[:, None] * flon[None, :]
        dims = ("lat", "lon")
    coords = {"lat": ds["lat"], "lon": ds["lon"]}
    values = np.clip(values, 0.0, None)  # cos(±90°) may round to a tiny negative
    if not np.any(values > 0):
        raise ValueError(
            f"Region {region.name!r} (lat [{region.lat_min}, {region.lat_max}], "
            f"lon [{region.lon_min}, {region.lon_max}]) has no grid cell on this grid: "
            f"{_extent(lat, lon)}."
        )
    if region.surface != "all":
        values = values * _surface_share(ds, region, land_fraction, values > 0)
    return xr.DataArray(
        values,
        dims=dims,
        coords=coords,
        name="weights",
        attrs={"units": "1", "long_name": f"area weights of region {region.name}"},
    )


def _surface_share(
    ds: xr.Dataset, region: Region, land_fraction: xr.DataArray | None, touched: np.ndarray
) -> np.ndarray:
    """Sea (or land) share of each cell of the normalised grid, 0 where unknown."""
    if land_fraction is None:
        raise ValueError(
            f"Region {region.name!r} averages over {region.surface} cells but no land "
            "fraction was given for this grid."
        )
    try:
        land = land_fraction_on_grid(land_fraction, ds).values
    except ValueError as exc:
        raise ValueError(f"Region {region.name!r}: {exc}.") from None
    share = np.nan_to_num(1.0 - land if region.surface == "sea" else land, nan=0.0)
    if not np.any(share[touched] > 0):
        other = "land" if region.surface == "sea" else "sea"
        raise ValueError(
            f"Region {region.name!r} averages over {region.surface} cells but the land "
            f"fraction makes all of its {int(touched.sum())} cells {other} (or unknown): "
            f"no {region.surface} to average over; use surface: all or another box."
        )
    return share


def regional_means(
    ds: xr.Dataset,
    regions: Iterable[Region],
    land_fraction: xr.DataArray | None = None,
    cell_area: xr.DataArray | None = None,
) -> xr.Dataset:
    """Area-weighted means of every gridded variable over named regions.

    Why: the model reads regional series. Missing values must not bias the
    mean: at each time step the weights are renormalised over the valid points,
    so a region is NaN only where all its cells are NaN. Sea and land regions
    weight each cell by its sea or land share (:func:`region_weights`).

    Variables lacking the horizontal dimensions (grid-mapping scalars, time
    bounds) are left out. The computation is lazy, one task per chunk of each
    variable (:func:`_weighted_means`), so dask inputs give dask outputs.

    Parameters
    ----------
    ds : xarray.Dataset
        Gridded data, any units (units attributes are kept).
    regions : iterable of Region
        Regions; names must be unique.
    land_fraction : xarray.DataArray, optional
        Land area fraction (``1``) of the grid; needed by sea and land regions.
    cell_area : xarray.DataArray, optional
        Cell areas (m2) of the grid, weighting cells instead of cos(latitude).

    Returns
    -------
    xarray.Dataset
        The variables with the horizontal dims replaced by a ``region``
        dimension labelled by region name.

    Raises
    ------
    ValueError
        If no region is given, names repeat, a region has no cell (of its
        surface) on the grid, or a sea or land region has no land fraction.
    """
    regions = list(regions)
    names = [r.name for r in regions]
    if not regions:
        raise ValueError("regional_means needs at least one region.")
    if len(set(names)) != len(names):
        raise ValueError(f"Region names must be unique, got {names}.")
    ds = normalize_grid(ds)
    hdims = horizontal_dims(ds)
    weights = xr.concat(
        [
            region_weights(ds, r, land_fraction, cell_area).drop_vars(["lat", "lon"])
            for r in regions
        ],
        dim="region",
    ).assign_coords(region=("region", names))
    gridded = [name for name, da in ds.data_vars.items() if set(hdims) <= set(da.dims)]
    if not gridded:
        raise ValueError(f"No data variable spans the horizontal dims {hdims}.")
    sub = ds[gridded]
    # Drop 2-D coordinates (curvilinear lat/lon) and other grid coordinates before reducing.
    grid_coords: list[Hashable] = [c for c in sub.coords if set(sub[c].dims) & set(hdims)]
    sub = sub.drop_vars(grid_coords)
    weights = weights.transpose("region", *hdims)
    out = xr.Dataset(
        {name: _weighted_means(da, weights, hdims) for name, da in sub.data_vars.items()},
        coords={"region": weights["region"]},
    )
    out["region"].attrs = {"long_name": "named region of the regional mean"}
    return out.transpose("region", ...).assign_attrs(ds.attrs)


def _weighted_means(
    da: xr.DataArray, weights: xr.DataArray, hdims: tuple[Hashable, ...]
) -> xr.DataArray:
    """One variable's weighted means over the horizontal dims, one dask task per chunk.

    Why: ``xarray``'s weighted mean is five dask layers (fill, two contractions and
    their sums, a division) that do not fuse; on a small regional box read in
    many time blocks their tasks, not the arithmetic, take the time. The
    arithmetic is the same: the sum of weight x value over valid cells divided by
    the sum of the weights of the valid cells, NaN where that is zero.
    """
    other = [d for d in da.dims if d not in hdims]
    da = da.transpose(*other, *hdims)
    w = weights.transpose("region", *hdims).values
    if da.chunks is None:
        data = _region_means(da.values, w)
    else:
        whole = da.data.rechunk({da.ndim - 1 - i: -1 for i in range(len(hdims))})
        data = whole.map_blocks(
            _region_means,
            w,
            drop_axis=list(range(len(other), da.ndim)),
            new_axis=len(other),
            chunks=(*whole.chunks[: len(other)], (w.shape[0],)),
            dtype=np.result_type(da.dtype, w.dtype),
            meta=np.array((), dtype=np.result_type(da.dtype, w.dtype)),
        )
    coords = {c: v for c, v in da.coords.items() if not set(v.dims) & set(hdims)}
    coords["region"] = weights["region"]
    return xr.DataArray(data, dims=(*other, "region"), coords=coords, attrs=da.attrs)


def _region_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``values`` (..., *h) averaged with each region's ``weights`` (region, *h): (..., region)."""
    ncells = int(np.prod(weights.shape[1:]))
    flat = values.reshape(*values.shape[: values.ndim - weights.ndim + 1], ncells)
    valid = ~np.isnan(flat) if flat.dtype.kind in "fc" else np.ones(flat.shape, dtype=bool)
    w = weights.reshape(weights.shape[0], ncells).T
    total = np.where(valid, flat, 0) @ w
    share = valid.astype(w.dtype) @ w
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / np.where(share != 0.0, share, np.nan)


def all_nan_regions(ds: xr.Dataset, how: Literal["any", "all"] = "any") -> list[str]:
    """Regions whose series are NaN at every time step.

    Why: a region can be on the grid but only over masked cells (e.g. a
    land-only field over a sea box); its means stay NaN rather than raising,
    and this check reports it. It computes a small reduction of the data.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of :func:`regional_means` (has a ``region`` dimension).
    how : {"any", "all"}
        ``"any"``: report a region if at least one variable is entirely NaN in
        it; ``"all"``: only if every variable is.

    Returns
    -------
    list of str
        Region names, in the order of the ``region`` dimension.
    """
    variables = [name for name, da in ds.data_vars.items() if "region" in da.dims]
    if not variables:
        return []
    flags = [ds[v].isnull().all(dim=[d for d in ds[v].dims if d != "region"]) for v in variables]
    stacked = xr.concat(flags, dim="variable")
    hit = stacked.any("variable") if how == "any" else stacked.all("variable")
    hit = hit.compute()
    return [str(r) for r, flag in zip(hit["region"].values, hit.values, strict=True) if flag]
