"""Sea surface temperature (``tos``) as a canonical predictor, through real files.

The files are written here (small CMIP-like Zarr stores on a curvilinear ocean grid
with ``areacello`` and ``sftof`` in ``Ofx``, an ERA5-like NetCDF in K with NaN over
land) and read through intake-esm collections and run catalogs, as a run reads them.
Expected means are computed by hand with numpy on the same arrays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from cascadia.sources.bias import DEFAULT_ADJUSTMENTS, BiasAdjustmentConfig, fit
from cascadia.sources.catalog import SourceError, list_combos, open_collection
from cascadia.sources.config import load_run_catalog
from cascadia.sources.extraction import extract_combo
from cascadia.sources.predictors.daily import to_daily

#: Cell edges fall on multiples of 0.5 degrees, so this box holds whole cells only.
SHELF = {"name": "shelf", "lat_min": 42.5, "lat_max": 43.5, "lon_min": 3.0, "lon_max": 5.0}
DAYS = 60
COLUMNS = [
    "activity_id",
    "institution_id",
    "source_id",
    "experiment_id",
    "member_id",
    "table_id",
    "variable_id",
    "grid_label",
    "zstore",
    "version",
]


# ----------------------------------------------------------------- CMIP-like ocean


def _ocean_grid() -> dict[str, Any]:
    """A 2-D (j, i) ocean grid: 0.5 degree cells, 0-360 longitudes crossing 0."""
    j, i = np.meshgrid(np.arange(8), np.arange(14), indexing="ij")
    lat = 41.25 + 0.5 * j
    lon = (-0.75 + 0.5 * i) % 360.0  # 359.25, 359.75, 0.25, ...
    # strongly varying cell areas (a stretched grid): cos(lat) weights would differ
    area = 1.0e8 * (1.0 + 3.0 * (i / 13.0) ** 2) * np.cos(np.deg2rad(lat))
    sea = np.clip((44.0 - lat) / 1.0, 0.0, 1.0) * 100.0  # % sea: land north of 44
    sea[:, :3] = 0.0  # a western coast
    sea[5, 9] = 40.0  # a coastal cell, partly sea
    return {"lat": lat, "lon": lon, "area": area, "sea": sea}


def _coords(grid: dict[str, Any]) -> dict[str, Any]:
    return {
        "latitude": (
            ("j", "i"),
            grid["lat"],
            {"standard_name": "latitude", "units": "degrees_north"},
        ),
        "longitude": (
            ("j", "i"),
            grid["lon"],
            {"standard_name": "longitude", "units": "degrees_east"},
        ),
    }


def _tos_values(grid: dict[str, Any], steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = 13.0 + 0.8 * (44.0 - grid["lat"]) + 0.3 * np.arange(grid["lat"].shape[1])
    values = base[None] + rng.normal(0.0, 0.5, (steps, *grid["lat"].shape))
    values[:, grid["sea"] == 0.0] = np.nan  # land cells are missing
    return values


def _write(ds: xr.Dataset, path: Path) -> str:
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    return path.as_uri()


def _row(model: str, table: str, variable: str, grid: str, url: str) -> dict[str, str]:
    return {
        "activity_id": "CMIP",
        "institution_id": "LAB",
        "source_id": model,
        "experiment_id": "historical",
        "member_id": "r1i1p1f1",
        "table_id": table,
        "variable_id": variable,
        "grid_label": grid,
        "zstore": url,
        "version": "v20260101",
    }


def _collection(rows: list[dict[str, str]], folder: Path) -> str:
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "cmip.csv", index=False)
    spec = {
        "esmcat_version": "0.1.0",
        "id": "tos-test",
        "description": "CMIP-like stores for the tos tests",
        "catalog_file": "cmip.csv",
        "attributes": [{"column_name": c, "vocabulary": ""} for c in COLUMNS if c != "zstore"],
        "assets": {"column_name": "zstore", "format": "zarr"},
        "aggregation_control": {
            "variable_column_name": "variable_id",
            "groupby_attrs": [
                "activity_id",
                "institution_id",
                "source_id",
                "experiment_id",
                "table_id",
                "grid_label",
            ],
            "aggregations": [
                {"type": "union", "attribute_name": "variable_id"},
                {
                    "type": "join_new",
                    "attribute_name": "member_id",
                    "options": {"coords": "minimal", "compat": "override"},
                },
            ],
        },
    }
    path = folder / "cmip.json"
    path.write_text(json.dumps(spec))
    return str(path)


@pytest.fixture(scope="module")
def cmip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Models with tas (day, gr) and tos on the ocean grid (gn), written as Zarr stores.

    OCN-A: tos in Oday and Omon (Oday is read); OCN-B: Omon only;
    OCN-C: no tos at all; OCN-D: Oday tos without areacello.
    """
    root = tmp_path_factory.mktemp("tos-cmip")
    grid = _ocean_grid()
    rows: list[dict[str, str]] = []
    lat = np.arange(41.0, 45.5, 1.0)
    lon = np.arange(0.0, 8.5, 1.0)
    noleap = xr.date_range(
        "2000-01-01 12:00", periods=DAYS, freq="D", calendar="noleap", use_cftime=True
    )
    truth: dict[str, Any] = {"grid": grid}
    for n, model in enumerate(["OCN-A", "OCN-B", "OCN-C", "OCN-D"]):
        tas = xr.Dataset(
            {
                "tas": (
                    ("time", "lat", "lon"),
                    280.0 + n + np.zeros((DAYS, lat.size, lon.size)),
                    {"units": "K"},
                )
            },
            coords={
                "time": noleap,
                "lat": ("lat", lat, {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"}),
            },
        )
        rows.append(_row(model, "day", "tas", "gr", _write(tas, root / f"{model}-tas")))
        sftlf = xr.Dataset(
            {
                "sftlf": (
                    ("lat", "lon"),
                    np.where(lat[:, None] > 43.8, 100.0, 0.0) + 0 * lon,
                    {"units": "%"},
                )
            },
            coords=tas[["lat", "lon"]].coords,
        )
        rows.append(_row(model, "fx", "sftlf", "gr", _write(sftlf, root / f"{model}-sftlf")))
        if model == "OCN-C":  # an ocean model's salinity, but no tos
            sos = xr.Dataset(
                {
                    "sos": (
                        ("time", "j", "i"),
                        np.full((3, *grid["lat"].shape), 38.0),
                        {"units": "0.001"},
                    )
                },
                coords={
                    "time": [cftime.datetime(2000, m, 16, calendar="noleap") for m in (1, 2, 3)],
                    **_coords(grid),
                },
            )
            rows.append(_row(model, "Omon", "sos", "gn", _write(sos, root / f"{model}-sos-mon")))
            continue
        fixed = {
            "areacello": xr.Dataset(
                {"areacello": (("j", "i"), grid["area"], {"units": "m2"})}, coords=_coords(grid)
            ),
            "sftof": xr.Dataset(
                {
                    "sftof": (
                        ("j", "i"),
                        grid["sea"],
                        {"units": "%", "standard_name": "sea_area_fraction"},
                    )
                },
                coords=_coords(grid),
            ),
        }
        for name, ds in fixed.items():
            if model == "OCN-D" and name == "areacello":
                continue
            rows.append(_row(model, "Ofx", name, "gn", _write(ds, root / f"{model}-{name}")))
        tos_attrs = {
            "units": "degC",
            "standard_name": "sea_surface_temperature",
            "cell_measures": "area: areacello",
        }
        if model in ("OCN-A", "OCN-D"):
            values = _tos_values(grid, DAYS, seed=n)
            values[5, 4, 8] = np.nan  # one sea cell missing on one day only
            daily = xr.Dataset(
                {"tos": (("time", "j", "i"), values, tos_attrs)},
                coords={"time": noleap, **_coords(grid)},
            )
            rows.append(_row(model, "Oday", "tos", "gn", _write(daily, root / f"{model}-tos-day")))
            truth[model] = values
        if model in ("OCN-A", "OCN-B"):
            stamps = [cftime.datetime(2000, m, 16, 12, calendar="noleap") for m in range(1, 4)]
            values = _tos_values(grid, 3, seed=10 + n)
            monthly = xr.Dataset(
                {"tos": (("time", "j", "i"), values, tos_attrs)},
                coords={"time": stamps, **_coords(grid)},
            )
            rows.append(
                _row(model, "Omon", "tos", "gn", _write(monthly, root / f"{model}-tos-mon"))
            )
            truth[f"{model}-monthly"] = values
    truth["collection"] = _collection(rows, root)
    truth["root"] = root
    return truth


def _cmip_catalog(collection: str, folder: Path, **update: Any) -> str:
    source = {
        "name": "cmip",
        "collection": collection,
        "role": "hindcast",
        "query": {"table_id": ["day", "Oday", "Omon"], "variable_id": ["tas", "tos"]},
        "variables": {"tas": "tas", "tos": "tos"},
        "optional": ["tos"],
        "land_fraction": {
            "variable": "sftlf",
            "query": {"table_id": "fx"},
            "match": ["source_id", "grid_label"],
        },
        "tables": {
            "column": "table_id",
            "prefer": {"tos": ["Oday", "Omon"]},
            "grids": [
                {
                    "tables": ["Oday", "Omon"],
                    "land_fraction": {
                        "variable": "sftof",
                        "fraction_of": "sea",
                        "query": {"table_id": "Ofx"},
                        "match": ["source_id", "grid_label"],
                    },
                    "cell_area": {
                        "variable": "areacello",
                        "query": {"table_id": "Ofx"},
                        "match": ["source_id", "grid_label"],
                    },
                }
            ],
        },
        **update,
    }
    catalog = {"version": 1, "regions": [{**SHELF, "surface": "sea"}], "sources": [source]}
    path = folder / f"run-{abs(hash(json.dumps(update, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return str(path)


def _combo(catalog_path: str, model: str):
    catalog = load_run_catalog(catalog_path)
    source = catalog.sources[0]
    listing = list_combos(catalog, source, open_collection(catalog, source))
    combos = {c.labels["source_id"]: c for c in listing.combos}
    return catalog, source, combos[model], listing


def _sea_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over the valid cells of each step, weights renormalised (numpy)."""
    valid = np.isfinite(values)
    w = np.where(valid, weights[None], 0.0)
    return np.nansum(np.where(valid, values, 0.0) * w, axis=(1, 2)) / w.sum(axis=(1, 2))


def _inside(grid: dict[str, Any]) -> np.ndarray:
    lon = (grid["lon"] + 180.0) % 360.0 - 180.0
    return (
        (grid["lat"] > SHELF["lat_min"])
        & (grid["lat"] < SHELF["lat_max"])
        & (lon > SHELF["lon_min"])
        & (lon < SHELF["lon_max"])
    )


def test_areacello_weighted_sea_mean_of_two_tables(cmip: dict[str, Any]) -> None:
    """Oday tos on the ocean grid beside day tas on the atmosphere grid, in one combination."""
    path = _cmip_catalog(cmip["collection"], cmip["root"])
    catalog, source, combo, listing = _combo(path, "OCN-A")
    # the combination's own (atmosphere) grid first, the ocean's table after
    assert [(g.table, g.facets["grid_label"]) for g in combo.groups] == [
        ("day", "gr"),
        ("Oday", "gn"),
    ]
    ocean = combo.groups[1]
    assert ocean.cell_area.endswith("OCN-A-areacello") and ocean.land_fraction.endswith(
        "OCN-A-sftof"
    )
    assert combo.groups[0].land_fraction.endswith("OCN-A-sftlf")
    skipped = [s for s in listing.skipped if s.combination.startswith("OCN-A/")]
    assert [(s.variable, s.reason) for s in skipped] == [
        ("tos", "table Omon: table Oday is read, first of tables.prefer.tos ['Oday', 'Omon']")
    ]
    data = extract_combo(catalog, source, combo).compute().data
    grid = cmip["grid"]
    weights = grid["area"] * grid["sea"] / 100.0 * _inside(grid)
    expected = _sea_mean(cmip["OCN-A"], weights)
    # noleap -> standard: 29 February is added and filled (a one-day gap)
    got = data["tos"].sel(region="shelf").drop_sel(time="2000-02-29").values
    assert data["tos"].attrs["units"] == "degC"
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # the weights matter: cos(lat) instead of areacello gives another mean
    coslat = np.cos(np.deg2rad(grid["lat"])) * grid["sea"] / 100.0 * _inside(grid)
    assert np.max(np.abs(_sea_mean(cmip["OCN-A"], coslat) - expected)) > 0.05
    # the atmosphere group on its own grid, merged on the same daily axis
    np.testing.assert_allclose(data["tas"].sel(region="shelf").values, 280.0)
    assert data.sizes["time"] == DAYS + 1 and not np.isnan(got).any()
    assert "sftof" in data.attrs["land_fraction"] and "areacello" in data.attrs["land_fraction"]


def test_omon_interpolated_to_daily(cmip: dict[str, Any]) -> None:
    """A model with only monthly tos: linear between mid-month stamps, in its own calendar."""
    path = _cmip_catalog(cmip["collection"], cmip["root"])
    catalog, source, combo, _ = _combo(path, "OCN-B")
    assert {g.table for g in combo.groups} == {"Omon", "day"}
    data = extract_combo(catalog, source, combo).compute().data
    grid = cmip["grid"]
    weights = grid["area"] * grid["sea"] / 100.0 * _inside(grid)
    months = _sea_mean(cmip["OCN-B-monthly"], weights)  # Jan, Feb, Mar means
    tos = data["tos"].sel(region="shelf").to_series()
    assert tos.index[0] == pd.Timestamp("2000-01-01") and tos.index[-1] == pd.Timestamp(
        "2000-03-31"
    )
    step = (months[1] - months[0]) / 31.0  # 31 days from 16 Jan 12:00 to 16 Feb 12:00
    assert tos["2000-01-01"] == pytest.approx(months[0], rel=1e-9)  # held before the stamp
    assert tos["2000-01-17"] == pytest.approx(months[0] + 0.5 * step, rel=1e-9)
    assert tos["2000-02-01"] == pytest.approx(months[0] + 15.5 * step, rel=1e-9)
    assert tos["2000-03-20"] == pytest.approx(months[2], rel=1e-9)  # held after the last
    # noleap -> standard: 29 February is added, filled between its neighbours
    feb28, mar1 = tos["2000-02-28"], tos["2000-03-01"]
    assert tos["2000-02-29"] == pytest.approx(0.5 * (feb28 + mar1), rel=1e-9)
    # tas is daily 2000-01-01 .. 2000-03-01 (60 days of noleap): tos covers March as well
    assert np.isnan(data["tas"].sel(region="shelf").sel(time="2000-03-20").item())


def test_monthly_to_daily_in_a_360_day_calendar() -> None:
    """Interpolation runs in the series' own calendar: 30-day months of 360_day."""
    stamps = [cftime.datetime(1990, m, 16, calendar="360_day") for m in range(1, 13)]
    means = np.array([13.0, 12.5, 13.0, 14.2, 16.5, 19.8, 22.6, 23.4, 21.5, 19.0, 16.4, 14.3])
    ds = xr.Dataset(
        {"tos": (("time", "region"), means[:, None], {"units": "degC"})},
        coords={"time": stamps, "region": ["shelf"]},
    )
    daily = to_daily(ds)["tos"].sel(region="shelf")
    index = daily.indexes["time"]
    assert index.calendar == "360_day" and len(index) == 360
    assert daily.sel(time="1990-02-01").item() == pytest.approx(13.0 - 0.5 * 15 / 30)
    assert daily.sel(time="1990-07-16").item() == pytest.approx(22.6)  # the monthly value
    assert daily.sel(time="1990-12-30").item() == pytest.approx(14.3)  # held after the last
    assert daily.attrs["cell_methods"].endswith("time: mean (monthly)")


def test_source_without_tos_has_none(cmip: dict[str, Any]) -> None:
    """A model without tos has none; a table holding only what the source does not read
    (Omon sos, the query naming no variables) is not opened."""
    query = {"table_id": ["day", "Oday", "Omon"]}
    path = _cmip_catalog(cmip["collection"], cmip["root"], query=query)
    catalog, source, combo, _ = _combo(path, "OCN-C")
    assert combo.absent == ("tos",) and combo.missing == ()
    assert "sos" in combo.variables and [g.table for g in combo.groups] == ["day"]
    data = extract_combo(catalog, source, combo).compute().data
    assert sorted(data.data_vars) == ["tas"]


def test_curvilinear_ocean_without_areacello_is_refused(cmip: dict[str, Any]) -> None:
    path = _cmip_catalog(cmip["collection"], cmip["root"])
    catalog, source, combo, _ = _combo(path, "OCN-D")
    with pytest.raises(
        SourceError, match=r"OCN-D/historical/r1i1p1f1 table Oday: no cell area 'areacello'"
    ):
        extract_combo(catalog, source, combo)
    # without any cell_area in the catalog: refused by the data's own cell_measures
    data = yaml.safe_load(Path(path).read_text())
    del data["sources"][0]["tables"]["grids"][0]["cell_area"]
    Path(path).write_text(yaml.safe_dump(data))
    catalog, source, combo, _ = _combo(path, "OCN-D")
    with pytest.raises(
        SourceError, match=r"table Oday: variable\(s\) \['tos'\] lie on a curvilinear ocean grid"
    ):
        extract_combo(catalog, source, combo)
    # cos(latitude), only when the catalog says so
    data["sources"][0]["tables"]["grids"][0]["cell_area"] = "cos_lat"
    Path(path).write_text(yaml.safe_dump(data))
    catalog, source, combo, _ = _combo(path, "OCN-D")
    got = extract_combo(catalog, source, combo).compute().data["tos"].sel(region="shelf")
    got = got.drop_sel(time="2000-02-29").values
    grid = cmip["grid"]
    coslat = np.cos(np.deg2rad(grid["lat"])) * grid["sea"] / 100.0 * _inside(grid)
    np.testing.assert_allclose(got, _sea_mean(cmip["OCN-D"], coslat), rtol=1e-10)


# ------------------------------------------------------------------- ERA5-like


def test_era5_sst_kelvin_land_nan_to_degc(tmp_path: Path) -> None:
    """ERA5 sst in K with NaN over land: a degC sea mean over valid cells, land ignored."""
    lat = np.arange(44.0, 40.99, -0.25)  # descending, as ERA5
    lon = np.arange(0.0, 6.01, 0.25)
    time = pd.date_range("2001-01-01", periods=10, freq="D")
    lsm = np.where(lat[:, None] > 43.3, 1.0, 0.0) + 0.0 * lon
    lsm[np.ix_(lat == 43.25, lon == 4.0)] = 0.3  # a coastal cell, 70 % sea
    rng = np.random.default_rng(3)
    sst = 287.0 + rng.normal(0.0, 0.4, (time.size, lat.size, lon.size))
    sst[:, lsm > 0.5] = np.nan
    ds = xr.Dataset(
        {
            "sst": (("time", "latitude", "longitude"), sst, {"units": "K"}),
            "lsm": (
                ("time", "latitude", "longitude"),
                np.broadcast_to(lsm, sst.shape),
                {"units": "(0 - 1)"},
            ),
        },
        coords={"time": time, "latitude": lat, "longitude": lon},
    )
    ds.to_netcdf(tmp_path / "era5.nc", engine="h5netcdf")
    columns = ["source_id", "experiment_id", "member_id", "variable_id", "path"]
    rows = [
        ["ERA5", "reanalysis", "r1", v, (tmp_path / "era5.nc").as_uri()] for v in ("sst", "lsm")
    ]
    pd.DataFrame(rows, columns=columns).to_csv(tmp_path / "era5.csv", index=False)
    (tmp_path / "era5.json").write_text(
        json.dumps(
            {
                "esmcat_version": "0.1.0",
                "id": "era5",
                "description": "ERA5-like",
                "catalog_file": "era5.csv",
                "attributes": [{"column_name": c, "vocabulary": ""} for c in columns[:-1]],
                "assets": {"column_name": "path", "format": "netcdf"},
                "aggregation_control": {
                    "variable_column_name": "variable_id",
                    "groupby_attrs": ["source_id", "experiment_id", "member_id", "variable_id"],
                    "aggregations": [],
                },
            }
        )
    )
    region = {
        "name": "shelf",
        "lat_min": 42.375,
        "lat_max": 43.375,
        "lon_min": 3.125,
        "lon_max": 4.875,
    }
    catalog = {
        "version": 1,
        "regions": [{**region, "surface": "sea"}],
        "sources": [
            {
                "name": "era5",
                "collection": str(tmp_path / "era5.json"),
                "role": "reference",
                "variables": {"tos": "sst"},
                "land_fraction": {"variable": "lsm"},
            }
        ],
    }
    (tmp_path / "era5.yaml").write_text(yaml.safe_dump(catalog))
    run = load_run_catalog(str(tmp_path / "era5.yaml"))
    source = run.sources[0]
    (combo,) = list_combos(run, source, open_collection(run, source)).combos
    got = extract_combo(run, source, combo).compute().data["tos"].sel(region="shelf").values
    inside = (
        (lat[:, None] > region["lat_min"])
        & (lat[:, None] < region["lat_max"])
        & (lon[None] > region["lon_min"])
        & (lon[None] < region["lon_max"])
    )
    weights = np.cos(np.deg2rad(lat))[:, None] * (1.0 - lsm) * inside
    expected = _sea_mean(sst - 273.15, weights)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert 12.0 < got.mean() < 15.0  # degC, not K, and no land zero pulling it down


# ------------------------------------------------------------ bias adjustment


def test_qdm_on_tos_is_additive_and_keeps_the_mean_change() -> None:
    """tos is adjusted like tas: additive QDM, the model's own warming kept."""
    assert DEFAULT_ADJUSTMENTS["tos"].kind == "+"
    rng = np.random.default_rng(0)
    days = pd.date_range("1981-01-01", "2060-12-31", freq="D")
    doy = np.asarray(days.day_of_year, dtype=float)
    year = np.asarray(days.year)
    season = 4.0 * np.sin(2 * np.pi * (doy - 100) / 365.25)
    trend = np.where(year > 2010, 0.03 * (year - 2010), 0.0)  # 1.5 degC by 2060
    model = 16.0 + season + trend + rng.normal(0, 0.6, days.size)
    reference = 14.5 + 1.2 * season + rng.normal(0, 0.5, days.size)

    def series(values: np.ndarray, time: pd.DatetimeIndex) -> xr.Dataset:
        da = xr.DataArray(
            values[:, None], dims=("time", "region"), coords={"time": time, "region": ["shelf"]}
        )
        return xr.Dataset({"tos": da.assign_attrs(units="degC")})

    hist_time = days[year <= 2010]
    ref = series(reference[year <= 2010], hist_time)
    hist = series(model[year <= 2010], hist_time)
    config = BiasAdjustmentConfig(overlap_start=1981, overlap_end=2010)
    fitted = fit(ref, hist, config)
    future = series(model, days)
    adjusted = fitted.adjust(future)["tos"].sel(region="shelf").to_series()
    raw = future["tos"].sel(region="shelf").to_series()
    late = slice("2041", "2060")
    base = slice("1981", "2010")
    assert adjusted[base].mean() == pytest.approx(reference[year <= 2010].mean(), abs=0.05)
    raw_change = raw[late].mean() - raw[base].mean()
    adjusted_change = adjusted[late].mean() - adjusted[base].mean()
    assert raw_change > 1.0
    assert adjusted_change == pytest.approx(raw_change, abs=0.1)


# ------------------------------------------------------------------- the run


def test_run_refuses_a_combination_without_tos_when_the_model_reads_it(
    cmip: dict[str, Any],
) -> None:
    """Optional per source, strict per model: only the combination lacking tos fails."""
    from cascadia.run.pipeline import _plan, _refuse_missing_inputs

    plan = _plan([load_run_catalog(_cmip_catalog(cmip["collection"], cmip["root"]))])
    _refuse_missing_inputs(plan, ["tas", "tos"], "/models/with-tos")
    reasons = {e.combo.labels["source_id"]: plan.failures.get(e.id) for e in plan.entries}
    assert reasons == {
        "OCN-A": None,
        "OCN-B": None,
        "OCN-C": (
            "model /models/with-tos needs tos; source cmip (OCN-C/historical/r1i1p1f1) has "
            "none — map it in the run catalog or train without tos"
        ),
        "OCN-D": None,  # it has tos (its missing areacello fails when it is extracted)
    }
    # a model trained without tos runs every combination that has its inputs
    plan = _plan([load_run_catalog(_cmip_catalog(cmip["collection"], cmip["root"]))])
    _refuse_missing_inputs(plan, ["tas"], "/models/without-tos")
    assert plan.failures == {}


def test_run_refuses_projections_whose_reference_has_no_tos(cmip: dict[str, Any]) -> None:
    """tos adjusted against a reference without it would vanish: refused, with the reason."""
    from cascadia.run.pipeline import _plan, _refuse_missing_inputs

    root = cmip["root"]
    reference = yaml.safe_load(Path(_cmip_catalog(cmip["collection"], root)).read_text())
    source = reference["sources"][0]
    source.update(role="reference", query={**source["query"], "source_id": "OCN-C"})
    (root / "reference.yaml").write_text(yaml.safe_dump(reference))
    projection = yaml.safe_load(Path(_cmip_catalog(cmip["collection"], root)).read_text())
    source = projection["sources"][0]
    source.update(role="projection", query={**source["query"], "source_id": "OCN-A"})
    projection["bias_adjustment"] = {
        "reference": {"catalog": "reference.yaml", "source": "cmip"},
        "overlap": {"start": 2000, "end": 2000},
    }
    (root / "projection.yaml").write_text(yaml.safe_dump(projection))
    plan = _plan([load_run_catalog(str(root / "projection.yaml"))])
    _refuse_missing_inputs(plan, ["tas", "tos"], "/models/with-tos")
    (reason,) = plan.failures.values()
    assert reason.startswith(
        "model /models/with-tos needs tos; the bias-adjustment reference cmip ("
    ) and reason.endswith("against — map it in the reference's run catalog or train without tos")
