"""Sea and land regions: weights from a source's own land fraction, on every kind of grid.

Expected numbers are computed here with numpy from the fixture arrays: boxes are
chosen to hold whole cells (so the area weight of a cell is exactly cos(lat)),
or the cell fractions are written out by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cascadia.sources.config import CatalogError, load_run_catalog
from cascadia.sources.predictors.masks import as_land_fraction
from cascadia.sources.predictors.regions import Region, region_weights, regional_means
from cascadia.twin.grids import rotated_to_geographic

TIME = pd.date_range("2001-01-01", periods=4, freq="D")


def _sftlf(values: np.ndarray, dims: tuple[str, ...], coords: dict) -> xr.DataArray:
    """A CMIP-like sftlf (%) on the given grid."""
    return xr.DataArray(
        values,
        dims=dims,
        coords=coords,
        name="sftlf",
        attrs={"units": "%", "standard_name": "land_area_fraction"},
    )


def _regular() -> tuple[xr.Dataset, xr.DataArray, Region]:
    """ERA5-like grid (descending lat, 0-360 lon) and a box holding whole cells."""
    lat = np.array([44.0, 43.0, 42.0, 41.0])
    lon = np.array([0.0, 1, 2, 3, 4, 359])
    rng = np.random.default_rng(3)
    ds = xr.Dataset(
        {"tas": (("time", "latitude", "longitude"), rng.normal(285, 3, (4, 4, 6)), {"units": "K"})},
        coords={"time": TIME, "latitude": lat, "longitude": lon},
    )
    percent = np.array(
        [
            [100, 100, 100, 100, 100, 100],
            [100, 60, 0, 0, 0, 100],
            [100, 20, 0, 0, 0, 100],
            [100, 0, 0, 0, 0, 100],
        ],
        dtype=float,
    )
    land = _sftlf(percent, ("latitude", "longitude"), {"latitude": lat, "longitude": lon})
    # cells lat 42..44, lon -1..2 entirely: edges midway between centres
    box = Region(name="box", lat_min=41.5, lat_max=44.5, lon_min=-1.5, lon_max=2.5, surface="sea")
    return ds, land, box


def _rotated() -> tuple[xr.Dataset, xr.DataArray, Region]:
    """A EURO-CORDEX-like rotated-pole grid (rlat/rlon, 2-D lat/lon) and a box around it all."""
    rlat, rlon = np.arange(-9.5, -4.0, 0.5), np.arange(-14.0, -7.0, 0.5)
    lat2, lon2 = rotated_to_geographic(*np.meshgrid(rlat, rlon, indexing="ij"), 39.25, -162.0)
    rng = np.random.default_rng(4)
    coords = {
        "rlat": rlat,
        "rlon": rlon,
        "lat": (("rlat", "rlon"), lat2, {"standard_name": "latitude"}),
        "lon": (("rlat", "rlon"), lon2, {"standard_name": "longitude"}),
    }
    shape = (rlat.size, rlon.size)
    ds = xr.Dataset(
        {"tas": (("time", "rlat", "rlon"), rng.normal(285, 3, (4, *shape)), {"units": "K"})},
        coords={"time": TIME, **coords},
    )
    percent = np.where(lat2 > 43.4, 100.0, np.where(lon2 < 3.0, 35.0, 0.0))
    return ds, _sftlf(percent, ("rlat", "rlon"), coords), _wide_box(lat2, lon2)


def _curvilinear() -> tuple[xr.Dataset, xr.DataArray, Region]:
    """A NEMO-like curvilinear grid (y/x, nav_lat/nav_lon in 0-360) and a box around it all."""
    ii, jj = np.meshgrid(np.arange(6.0), np.arange(7.0), indexing="ij")
    lat2 = 41.0 + 0.5 * ii + 0.1 * jj
    lon2 = (1.0 + 0.6 * jj - 0.15 * ii) % 360.0
    rng = np.random.default_rng(5)
    coords = {"nav_lat": (("y", "x"), lat2), "nav_lon": (("y", "x"), lon2)}
    ds = xr.Dataset(
        {"tas": (("time", "y", "x"), rng.normal(285, 3, (4, 6, 7)), {"units": "K"})},
        coords={"time": TIME, **coords},
    )
    percent = np.where(lat2 > 43.0, 100.0, np.where(jj < 2, 50.0, 0.0))
    lon180 = (lon2 + 180.0) % 360.0 - 180.0
    return ds, _sftlf(percent, ("y", "x"), coords), _wide_box(lat2, lon180)


def _wide_box(lat: np.ndarray, lon: np.ndarray) -> Region:
    """A sea box holding every cell entirely: each cell's area weight is cos(lat)."""
    return Region(
        name="box",
        lat_min=float(lat.min()) - 2,
        lat_max=float(lat.max()) + 2,
        lon_min=float(lon.min()) - 2,
        lon_max=float(lon.max()) + 2,
        surface="sea",
    )


def _inside(ds: xr.Dataset, box: Region) -> np.ndarray:
    """Cells whose centre is in the box (whole cells, given how the boxes are drawn)."""
    lat = ds["latitude"].values[:, None] if "latitude" in ds else None
    if lat is not None:
        lon = (ds["longitude"].values[None, :] + 180.0) % 360.0 - 180.0
    else:
        name = "lat" if "lat" in ds.coords else "nav_lat"
        lat = ds[name].values
        lon = (ds["lon" if name == "lat" else "nav_lon"].values + 180.0) % 360.0 - 180.0
    return (lat >= box.lat_min) & (lat <= box.lat_max) & (lon >= box.lon_min) & (lon <= box.lon_max)


def _latitudes(ds: xr.Dataset) -> np.ndarray:
    if "latitude" in ds:
        return np.broadcast_to(ds["latitude"].values[:, None], ds["tas"].shape[1:])
    return ds["lat" if "lat" in ds.coords else "nav_lat"].values


@pytest.mark.parametrize("grid", [_regular, _rotated, _curvilinear], ids=lambda g: g.__name__[1:])
def test_sea_mean_ignores_land_cells(grid) -> None:
    ds, sftlf, box = grid()
    land = as_land_fraction(sftlf)
    values = ds["tas"].values
    inside = _inside(ds, box)
    cos = np.cos(np.deg2rad(_latitudes(ds))) * inside
    all_land = (sftlf.values == 100) & inside
    partial = (sftlf.values > 0) & (sftlf.values < 100) & inside
    assert all_land.any() and partial.any() and (inside & (sftlf.values == 0)).any()

    sea = regional_means(ds, [box], land)["tas"].sel(region="box").values
    w = cos * (1.0 - sftlf.values / 100.0)
    np.testing.assert_allclose(sea, (values * w).sum(axis=(1, 2)) / w.sum(), rtol=1e-12)

    # all-land cells: any value, same sea mean; the mean over every cell moves
    moved = ds.copy(deep=True)
    moved["tas"].values[:, all_land] += 40.0
    again = regional_means(moved, [box], land)["tas"].sel(region="box").values
    np.testing.assert_allclose(again, sea, rtol=1e-12)
    every = box.model_copy(update={"surface": "all"})
    before = regional_means(ds, [every])["tas"].values
    after = regional_means(moved, [every])["tas"].values
    assert np.all(after - before > 1.0)
    # a coastal cell counts by its sea share
    moved["tas"].values[:, partial] += 40.0
    shifted = regional_means(moved, [box], land)["tas"].sel(region="box").values
    np.testing.assert_allclose(shifted - sea, 40.0 * w[partial].sum() / w.sum(), rtol=1e-9)

    # the land mean weights the same cells by their land share
    over_land = box.model_copy(update={"surface": "land", "name": "land"})
    got = regional_means(ds, [over_land], land)["tas"].values[0]
    wl = cos * sftlf.values / 100.0
    np.testing.assert_allclose(got, (values * wl).sum(axis=(1, 2)) / wl.sum(), rtol=1e-12)


def test_weights_by_hand_on_a_small_grid() -> None:
    """Partial cells in the box and partial land: cos(lat) x overlap x sea fraction."""
    lat, lon = np.array([42.0, 43.0]), np.array([3.0, 4.0, 5.0])
    ds = xr.Dataset(coords={"lat": ("lat", lat), "lon": ("lon", lon)})
    sftlf = _sftlf(np.array([[0.0, 25.0, 100.0], [50.0, 0.0, 10.0]]), ("lat", "lon"), ds.coords)
    region = Region(name="r", lat_min=42.25, lat_max=43.5, lon_min=3.0, lon_max=4.75, surface="sea")
    got = region_weights(ds, region, as_land_fraction(sftlf)).values
    # cell 42 covers [41.5, 42.5]: 0.25 in the box; cell 43 all of it.
    # cell 3 covers [2.5, 3.5]: 0.5; cell 4: 1; cell 5 [4.5, 5.5]: 0.25.
    c42, c43 = np.cos(np.deg2rad(42.0)), np.cos(np.deg2rad(43.0))
    expected = np.array(
        [
            [c42 * 0.25 * 0.5 * 1.0, c42 * 0.25 * 1.0 * 0.75, c42 * 0.25 * 0.25 * 0.0],
            [c43 * 1.0 * 0.5 * 0.5, c43 * 1.0 * 1.0 * 1.0, c43 * 1.0 * 0.25 * 0.9],
        ]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    land = region.model_copy(update={"surface": "land"})
    got = region_weights(ds, land, as_land_fraction(sftlf)).values
    np.testing.assert_allclose(got[1], [c43 * 0.5 * 0.5, 0.0, c43 * 0.25 * 0.1], rtol=1e-12)


def test_land_fraction_conventions() -> None:
    """sftlf in %, ERA5 lsm in (0 - 1) with a time axis, sftof as a sea fraction."""
    lat, lon = np.array([42.0, 43.0]), np.array([3.0, 4.0])
    coords = {"lat": ("lat", lat), "lon": ("lon", lon)}
    percent = np.array([[0.0, 40.0], [90.0, 100.0]])
    sftlf = _sftlf(percent, ("lat", "lon"), coords)
    np.testing.assert_allclose(as_land_fraction(sftlf).values, percent / 100.0)

    lsm = xr.DataArray(
        np.stack([percent / 100.0, np.zeros((2, 2))]),
        dims=("time", "latitude", "longitude"),
        coords={"time": TIME[:2], "latitude": lat[::-1], "longitude": lon},
        name="lsm",
        attrs={"units": "(0 - 1)", "long_name": "Land-sea mask"},
    )
    got = as_land_fraction(lsm)
    assert got.dims == ("lat", "lon") and got.attrs["units"] == "1"
    np.testing.assert_allclose(got.values, (percent / 100.0)[::-1])  # the first step only

    sftof = _sftlf(100.0 - percent, ("lat", "lon"), coords).assign_attrs(
        standard_name="sea_area_fraction"
    )
    np.testing.assert_allclose(as_land_fraction(sftof, "sea").values, percent / 100.0)
    with pytest.raises(ValueError, match=r"'sftlf'.*sea_area_fraction.*fraction_of: land"):
        as_land_fraction(sftof)

    member = sftlf.expand_dims(member_id=["r1i1p1f1"])  # a joined member of an fx store
    np.testing.assert_allclose(as_land_fraction(member).values, percent / 100.0)

    bare = sftlf.copy()
    bare.attrs = {}
    with pytest.raises(ValueError, match=r"'sftlf' has no units.*land_fraction: \{units"):
        as_land_fraction(bare)
    np.testing.assert_allclose(as_land_fraction(bare, units="%").values, percent / 100.0)
    with pytest.raises(ValueError, match=r"units '%' but the catalog says '1'"):
        as_land_fraction(sftlf, units="1")
    mislabelled = sftlf.assign_attrs(units="1")
    with pytest.raises(ValueError, match=r"ranges 0\.\.100 .*expected 0\.\.1"):
        as_land_fraction(mislabelled)


def test_sea_regions_without_land_or_sea_are_named() -> None:
    ds, sftlf, box = _regular()
    with pytest.raises(ValueError, match=r"'box' averages over sea cells but no land fraction"):
        regional_means(ds, [box])
    inland = Region(
        name="massif_central", lat_min=43.5, lat_max=44.5, lon_min=0.5, lon_max=2.5, surface="sea"
    )
    with pytest.raises(ValueError, match=r"'massif_central'.*all of its 2 cells land"):
        regional_means(ds, [inland], as_land_fraction(sftlf))
    other_grid = as_land_fraction(sftlf).assign_coords(lat=lambda d: d.lat + 0.5)
    with pytest.raises(ValueError, match=r"'box'.*grid differs.*0\.5 degrees"):
        regional_means(ds, [box], other_grid)


def test_a_sea_region_needs_a_land_fraction_or_an_opt_out(tmp_path) -> None:
    text = """\
version: 1
regions:
- {name: shelf, lat_min: 42.3, lat_max: 43.6, lon_min: 3.0, lon_max: 5.0, surface: sea}
- {name: corridor, lat_min: 41.8, lat_max: 43.0, lon_min: 2.5, lon_max: 4.2}
sources:
- name: my-model
  collection: collection.json
  role: projection
  variables: {tas: tas}
"""
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as err:
        load_run_catalog(str(path))
    message = str(err.value)
    assert "'my-model' has no land_fraction" in message and "'shelf'" in message
    assert "land_fraction: unmasked" in message

    path.write_text(text + "  land_fraction: unmasked\n")
    assert load_run_catalog(str(path)).sources[0].land_fraction == "unmasked"
    path.write_text(
        text + "  land_fraction: {variable: sftlf, query: {table_id: fx}, match: [source_id]}\n"
    )
    spec = load_run_catalog(str(path)).sources[0].land_fraction
    assert spec.variable == "sftlf" and spec.fraction_of == "land"
    path.write_text(text.replace("surface: sea", "surface: ocean"))
    with pytest.raises(CatalogError, match=r"regions\[shelf\]\.surface"):
        load_run_catalog(str(path))
