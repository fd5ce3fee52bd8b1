"""The tiny twin world as users meet it: stores, conventions, collections, CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import intake_esm
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from helpers import small_preset

from cascadia import cli
from cascadia.sources.cache import fingerprint
from cascadia.sources.catalog import list_combos, predictors_of
from cascadia.sources.config import CatalogError, load_run_catalog
from cascadia.sources.extraction import extract_combo
from cascadia.twin.ceiling import ModelSeries, regenerate_twin
from cascadia.twin.grids import EARTH_RADIUS
from cascadia.twin.ocean import OceanParams
from cascadia.twin.physics import PARAMS_KEY, params_from_json, seed_params
from cascadia.twin.presets import LAT_RANGE, LON_RANGE, get_preset
from cascadia.twin.stores import CMIP_VERSION
from cascadia.twin.world import build_world

CFTIME = xr.coders.CFDatetimeCoder(use_cftime=True)
#: Sea surface temperatures: NaN over land in every source, as in the archives.
SEA_ONLY = {"sea_surface_temperature", "sst", "tos", "thetao"}  # thetao: below the floor too
TINY_SECONDS = 20.0
#: 20 MB, and the CMIP-like models' monthly thetao (0.45 MB, 12 stores of 3-D ocean).
TINY_BYTES = 20.7e6
#: netCDF4 >= 1.6.1 is not thread-safe and intake-esm opens assets in threads:
#: NetCDF collections are opened with h5netcdf (docs/twin-world.md, "Reading it").
#: Pangeo-layout CMIP6 stores carry height 2 m / 10 m: dropped so the variables merge.
OPEN_KWARGS = {
    "era5": {},
    "cmip6": {"drop_variables": ["height"]},
    "20cr": {"engine": "h5netcdf"},
    "era20c": {"engine": "h5netcdf"},
    "cordex": {"engine": "h5netcdf"},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("twin") / "world"
    started = time.perf_counter()
    build_world(str(out), "tiny", seed=0)
    return out, time.perf_counter() - started


def step(times: np.ndarray) -> pd.Timedelta:
    """The one time step of a regular series (fails if irregular)."""
    (delta,) = set(np.diff(pd.DatetimeIndex(times)))
    return pd.Timedelta(delta)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_tiny_world_is_small_and_fast(tiny):
    out, seconds = tiny
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert seconds < TINY_SECONDS, f"tiny world took {seconds:.1f} s"
    assert size <= TINY_BYTES, f"tiny world is {size / 1e6:.1f} MB"
    manifest = json.loads((out / "world.json").read_text())
    assert manifest["preset"] == "tiny"
    # sources x members x exps x vars, the gr copy of TWIN-ESM-A's first member, one
    # earlier version, and one sftlf fx store per source and grid; tos per source, member
    # and experiment on the ocean grid (Oday or Omon) and its Ofx areacello and sftof;
    # the first member's Omon thetao per source and experiment
    assert manifest["stores"]["cmip6"] == (
        3 * 2 * 4 * 8 + 4 * 8 + 1 + 3 + 1 + 3 * 2 * 4 + 3 * 2 + 3 * 4
    )


def test_same_seed_gives_identical_bytes(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "world"
    build_world(str(again), "tiny", seed=0)
    assert_same_world(out, again)


def assert_same_world(out: Path, again: Path) -> None:
    """Every file byte for byte, but collections and the truth index, which hold
    absolute URIs of their own world: those with the root replaced."""
    first, second = _tree_digest(out), _tree_digest(again)
    for name in [n for n in first if n.endswith((".csv", ".json"))]:
        a = (out / name).read_text().replace(out.as_uri(), "ROOT").replace(str(out), "ROOT")
        b = (again / name).read_text().replace(again.as_uri(), "ROOT")
        assert a == b.replace(str(again), "ROOT"), name
        first.pop(name), second.pop(name)
    assert first == second


@pytest.mark.parametrize("family", sorted(OPEN_KWARGS))
def test_every_collection_opens_every_store(tiny, family):
    out, _ = tiny
    catalog = intake_esm.esm_datastore(str(out / "collections" / f"{family}.json"))
    if family == "cmip6":  # the earlier version of one dataset would join the newest
        catalog = catalog.search(version=CMIP_VERSION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # intake-esm's merge compat default
        datasets = catalog.to_dataset_dict(
            progressbar=False, xarray_open_kwargs=OPEN_KWARGS[family]
        )
    assert datasets and set(datasets) == set(catalog.keys())
    frame = catalog.df
    for key, ds in datasets.items():
        rows = frame[
            frame[catalog.esmcat.aggregation_control.groupby_attrs]
            .astype(str)
            .agg(".".join, axis=1)
            == key
        ]
        assert set(rows.variable_id) <= set(ds.data_vars), key
        for variable in rows.variable_id:
            da = ds[variable]
            if "time" in da.dims:  # land fractions are static
                da = da.isel(time=slice(0, 48))
            if variable in SEA_ONLY:  # missing over land, defined over the sea
                assert np.isfinite(da.values).any() and np.isnan(da.values).any(), key
                continue
            assert np.isfinite(da.values).all(), (key, variable)


def test_era5_like_conventions(tiny):
    out, _ = tiny
    ds = xr.open_zarr(out / "reanalysis/era5/era5-hourly-single-levels.zarr")
    assert ds.latitude.values[0] > ds.latitude.values[-1]  # descending
    assert ds.longitude.max() > 350 and ds.longitude.min() >= 0  # 0-360 with the wrap
    assert step(ds.time.values[:48]) == pd.Timedelta("1h")
    assert ds["2m_temperature"].attrs["units"] == "K"
    # ARCO's layout where it matters: every chunk spans the whole domain; one hour per
    # chunk in the full preset (as ARCO-ERA5), 92 days in the tiny one (quick to write)
    shape = (ds.sizes["latitude"], ds.sizes["longitude"])
    assert ds["2m_temperature"].encoding["chunks"] == (24 * 92, *shape)
    assert get_preset("full").era5_time_chunk == 1
    assert ds["10m_u_component_of_wind"].attrs["units"] == "m s**-1"
    assert ds["total_precipitation"].attrs["units"] == "m"
    assert ds["surface_solar_radiation_downwards"].attrs["units"] == "J m**-2"
    t2m = float(ds["2m_temperature"].mean())
    assert 280 < t2m < 295
    tp = ds["total_precipitation"]
    assert float(tp.min()) >= 0 and float(tp.max()) < 0.08  # metres per hour
    assert (ds["2m_dewpoint_temperature"] <= ds["2m_temperature"] + 1e-3).all()


def test_reanalysis_and_projection_quirks(tiny):
    out, _ = tiny
    era20c = xr.open_dataset(
        next((out / "reanalysis/era20c").glob("era20c_sfc_*.nc")),
        engine="h5netcdf",
        mask_and_scale=False,
    )
    assert era20c["t2m"].dtype == np.int16 and "scale_factor" in era20c["t2m"].attrs
    assert step(xr.decode_cf(era20c).time.values[:8]) == pd.Timedelta("6h")
    air = xr.open_dataset(
        next((out / "reanalysis/20crv3/mem001").glob("air.2m.*.nc")), engine="h5netcdf"
    )
    assert air.lat.values[0] > air.lat.values[-1] and air.lon.max() > 350
    prate = xr.open_dataset(
        next((out / "reanalysis/20crv3/mem001").glob("prate.*.nc")), engine="h5netcdf"
    )
    assert prate.prate.attrs["units"] == "kg/m^2/s"

    calendars = {}
    for store in (out / "cmip6").glob(f"*/*/*/historical/r1i1p1f1/day/tas/gn/v{CMIP_VERSION}"):
        ds = xr.open_zarr(store, decode_times=CFTIME)
        calendars[ds.attrs["source_id"]] = ds.time.dt.calendar
        assert ds.lat.values[0] < ds.lat.values[-1] and ds.lon.max() > 350
        assert ds.time.dt.hour.values[0] == 12 and "time_bnds" in ds.coords
    assert sorted(calendars.values()) == ["360_day", "noleap", "proleptic_gregorian"] or sorted(
        calendars.values()
    ) == ["360_day", "noleap", "standard"]
    pattern = f"*/*/*/historical/r1i1p1f1/day/pr/gn/v{CMIP_VERSION}"
    pr = xr.open_zarr(next((out / "cmip6").glob(pattern)))
    assert pr.pr.attrs["units"] == "kg m-2 s-1"

    cordex = xr.open_dataset(next((out / "cordex").rglob("tas_*.nc")), engine="h5netcdf")
    assert {"rlat", "rlon"} <= set(cordex.dims)
    assert cordex.lat.dims == ("rlat", "rlon") and cordex.lon.dims == ("rlat", "rlon")
    pole = cordex["rotated_pole"].attrs
    assert pole["grid_mapping_name"] == "rotated_latitude_longitude"
    assert cordex.tas.attrs["grid_mapping"] == "rotated_pole"
    # a rotated rectangle covering the domain reaches a little beyond it
    assert 38.0 < float(cordex.lat.min()) < 40.5 and 45 < float(cordex.lat.max()) < 49.0


def test_model_biases_differ_by_source(tiny):
    out, _ = tiny
    means = {}
    for store in (out / "cmip6").glob(f"*/*/*/historical/r1i1p1f1/day/tas/gn/v{CMIP_VERSION}"):
        ds = xr.open_zarr(store)
        means[ds.attrs["source_id"]] = float(ds.tas.mean())
    assert means["TWIN-ESM-B"] - means["TWIN-ESM-A"] > 2.5  # warm vs cold bias


def test_observations_are_oceansites_with_flaws(tiny):
    out, _ = tiny
    ds = xr.open_dataset(out / "observations/lacaze-duthiers.nc", engine="h5netcdf")
    assert list(ds.DEPTH.values) == [500.0, 1000.0]
    assert ds.TEMP.attrs["units"] == "degree_Celsius"
    assert step(ds.TIME.values[:48]) == pd.Timedelta("1h")
    qc = ds.TEMP_QC.values
    gaps = qc == 9
    assert gaps.any() and np.isnan(ds.TEMP.values[gaps]).all()
    spikes = qc == 4
    assert spikes.any()
    median = np.nanmedian(ds.TEMP.values, axis=0)
    assert (np.abs(ds.TEMP.values[spikes[:, 0], 0] - median[0]) > 0.5).all()
    good = ds.TEMP.values[qc == 1]
    assert 12.0 < np.median(good) < 14.5
    csv = pd.read_csv(out / "observations/lacaze-duthiers.csv")
    assert list(csv.columns) == ["time", "depth", "TEMP", "TEMP_QC"]
    assert len(csv) == ds.TIME.size * 2
    np.testing.assert_allclose(
        csv.TEMP.values.reshape(-1, 2), ds.TEMP.values, atol=1e-4, equal_nan=True
    )


def test_truth_covers_every_combination(tiny):
    out, _ = tiny
    index = pd.read_csv(out / "truth/index.csv")
    combos = set()
    for family in ("cmip6", "cordex"):
        frame = pd.read_csv(out / "collections" / f"{family}.csv")
        frame = frame[frame.get("table_id", frame.get("frequency")) == "day"]  # not fx
        combos |= {
            (family, s, e, m)
            for s, e, m in frame[["source_id", "experiment_id", "member_id"]]
            .drop_duplicates()
            .values
        }
    indexed = {
        tuple(r) for r in index[["family", "source_id", "experiment_id", "member_id"]].values
    }
    assert combos <= indexed
    assert {"ERA5", "20CRv3", "ERA-20C"} <= set(index.source_id)
    row = index[(index.source_id == "TWIN-ESM-B") & (index.experiment_id == "ssp585")].iloc[0]
    truth = xr.open_zarr(row.path, decode_times=CFTIME)
    assert truth.time.dt.calendar == "360_day"
    temp = truth.temperature.sel(experiment_id="ssp585", member_id=row.member_id)
    assert np.isfinite(temp.sel(time=slice("2015", None))).all()
    assert np.isnan(temp.sel(time=slice(None, "2014"))).all()
    history = xr.open_zarr(out / "truth/history.zarr")
    assert step(history.time.values[:48]) == pd.Timedelta("1h")


def test_every_source_carries_its_land_fraction(tiny):
    """ERA5 lsm (0 - 1), 20CR land, ERA-20C lsm, CMIP6 sftlf fx stores, CORDEX sftlf (%)."""
    out, _ = tiny
    era5 = xr.open_zarr(out / "reanalysis/era5/era5-hourly-single-levels.zarr")
    lsm = era5["land_sea_mask"]
    assert lsm.dims == ("latitude", "longitude") and lsm.attrs["units"] == "(0 - 1)"
    # the twin's coastline: the north of the domain is land, the open gulf sea
    assert float(lsm.sel(latitude=45.0).min()) > 0.99
    assert float(lsm.sel(latitude=40.5, longitude=5.75)) < 1e-3
    partial = lsm.sel(latitude=42.75, longitude=3.5)  # the cell holding the coast
    assert 0.2 < float(partial) < 0.8
    land = xr.open_dataset(out / "reanalysis/20crv3/land.nc", engine="h5netcdf")["land"]
    assert land.attrs["units"] == "1" and 0.0 <= float(land.min()) < float(land.max()) <= 1.0
    invariant = xr.open_dataset(out / "reanalysis/era20c/era20c_invariant.nc", engine="h5netcdf")
    assert invariant["lsm"].dims == ("time", "latitude", "longitude")

    table = pd.read_csv(out / "collections/cmip6.csv")
    fx = table[table.table_id == "fx"]
    # one per model and grid: TWIN-ESM-A is also published regridded (gr)
    assert sorted(zip(fx.source_id, fx.grid_label, strict=True)) == [
        ("TWIN-ESM-A", "gn"),
        ("TWIN-ESM-A", "gr"),
        ("TWIN-ESM-B", "gn"),
        ("TWIN-ESM-C", "gn"),
    ]
    assert set(fx.variable_id) == {"sftlf"}
    assert set(fx.experiment_id) == {"historical"} and set(fx.member_id) == {"r1i1p1f1"}
    for row in fx.itertuples():
        sftlf = xr.open_zarr(row.zstore.removeprefix("file://"))["sftlf"]
        assert sftlf.dims == ("lat", "lon") and sftlf.attrs["units"] == "%"
        assert sftlf.attrs["standard_name"] == "land_area_fraction"
        assert float(sftlf.max()) > 90.0 and float(sftlf.min()) < 50.0
        day = table[
            (table.source_id == row.source_id)
            & (table.table_id == "day")
            & (table.variable_id == "tas")
            & (table.grid_label == row.grid_label)
        ].zstore.iloc[0]
        tas = xr.open_zarr(day.removeprefix("file://"))
        np.testing.assert_array_equal(sftlf.lat, tas.lat)
        np.testing.assert_array_equal(sftlf.lon, tas.lon)
    cordex = pd.read_csv(out / "collections/cordex.csv")
    files = cordex[cordex.frequency == "fx"]
    assert len(files) == 2 and set(files.member_id) == {"r0i0p0"}
    sftlf = xr.open_dataset(files.path.iloc[0].removeprefix("file://"), engine="h5netcdf")
    assert sftlf.sftlf.dims == ("rlat", "rlon") and sftlf.sftlf.attrs["units"] == "%"
    assert "time" not in sftlf.dims


def test_run_catalogs_refer_to_collections(tiny):
    out, _ = tiny
    for name in ("reanalysis", "cmip6", "cordex"):
        path = out / "catalogs" / f"{name}.yaml"
        catalog = yaml.safe_load(path.read_text())
        for source in catalog["sources"]:
            assert (path.parent / source["collection"]).resolve().exists()
            assert source["role"] in {"reference", "hindcast", "projection"}
            assert source["land_fraction"]["variable"] in {"land_sea_mask", "land", "lsm", "sftlf"}
        surfaces = {r["name"]: r["surface"] for r in catalog["regions"]}
        assert surfaces == {"gulf_of_lion_shelf": "sea", "tramontane": "all", "mistral": "all"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cascadia.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_rejects_an_unknown_preset(tmp_path):
    result = run_cli("synth", "--out", str(tmp_path / "w"), "--preset", "huge")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown preset 'huge'" in result.stderr and "tiny" in result.stderr
    assert not (tmp_path / "w").exists()


def test_cli_refuses_a_non_empty_folder_and_overwrites_on_request(tmp_path):
    out = tmp_path / "w"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run_cli("synth", "--out", str(out), "--preset", "tiny")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--overwrite" in result.stderr
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_reports_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli("synth", "--out", str(blocker / "w"), "--preset", "tiny")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and str(blocker) in result.stderr


def test_a_failed_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch, capsys):
    out = tmp_path / "w"

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("cascadia.twin.world.write_twentycr", broken)
    assert cli.main(["synth", "--out", str(out), "--preset", "tiny"]) == 2
    assert "disk full" in capsys.readouterr().err
    assert not (out / "world.json").exists()


# ------------------------------------------------------------------ sea surface temperature


def _sea_and_land(sst: xr.DataArray, land: np.ndarray, threshold: float) -> None:
    """SST is finite on every cell below ``threshold`` land fraction and NaN on the rest."""
    values = sst.values.reshape(-1, *land.shape)
    assert np.isfinite(values[:, land < threshold]).all()
    assert np.isnan(values[:, land >= threshold]).all()
    assert (land >= threshold).any() and (land < threshold).any()


def test_reanalyses_carry_sea_surface_temperature(tiny):
    """ERA5 ARCO ``sea_surface_temperature`` and CDS ``sst``, 20CR ``sst`` per member,
    ERA-20C ``sst`` packed with the rest: K, NaN over land, a plausible sea."""
    out, _ = tiny
    era5 = xr.open_zarr(out / "reanalysis/era5/era5-hourly-single-levels.zarr")
    sst = era5["sea_surface_temperature"]
    assert sst.attrs == {"long_name": "Sea surface temperature", "units": "K", "short_name": "sst"}
    shape = (era5.sizes["latitude"], era5.sizes["longitude"])
    assert sst.encoding["chunks"] == (24 * 92, *shape)  # the store's one chunking
    _sea_and_land(sst.isel(time=slice(0, 48)), era5["land_sea_mask"].values, 0.8)
    sea = sst.values[:, era5["land_sea_mask"].values < 0.8]
    assert 285.0 < np.mean(sea) < 295.0  # ~17 degC, the NW Mediterranean's annual mean
    february = sst.sel(time=sst.time.dt.month == 2).values[:, era5["land_sea_mask"].values < 0.8]
    august = sst.sel(time=sst.time.dt.month == 8).values[:, era5["land_sea_mask"].values < 0.8]
    assert 284.0 < np.mean(february) < 289.0 and 293.0 < np.mean(august) < 298.0
    day = sst.isel(time=slice(24, 48)).values  # one analysis a day, on its 24 hours
    np.testing.assert_array_equal(day, np.broadcast_to(day[:1], day.shape))

    cds = xr.open_dataset(out / "reanalysis/era5-cds/era5-daily-stats_gulf-of-lion_2014.nc")
    assert cds["sst"].attrs["units"] == "K" and cds["sst"].dims[0] == "valid_time"
    hourly = sst.sel(time="2014").assign_coords(longitude=(era5.longitude + 180) % 360 - 180)
    daily = hourly.sortby("longitude").coarsen(time=24).mean()
    np.testing.assert_allclose(cds["sst"].values, daily.values, atol=1e-3)

    for member in ("mem001", "mem002"):
        files = sorted((out / "reanalysis/20crv3" / member).glob("sst.*.nc"))
        assert [f.name for f in files] == ["sst.2010-2014.nc"]
        twcr = xr.open_dataset(files[0], engine="h5netcdf")["sst"]
        assert (
            twcr.attrs["units"] == "K" and twcr.attrs["standard_name"] == "sea_surface_temperature"
        )
        land = xr.open_dataset(out / "reanalysis/20crv3/land.nc", engine="h5netcdf")["land"]
        _sea_and_land(twcr, land.values, 0.8)
    table = pd.read_csv(out / "collections/20cr.csv")
    assert (table.variable_id == "sst").sum() == 2  # one decade, two members

    packed = xr.open_dataset(
        next((out / "reanalysis/era20c").glob("era20c_sfc_*.nc")),
        engine="h5netcdf",
        mask_and_scale=False,
    )
    assert packed["sst"].dtype == np.int16 and packed["sst"].attrs["units"] == "K"
    era20c = xr.decode_cf(packed)["sst"]
    lsm = xr.open_dataset(out / "reanalysis/era20c/era20c_invariant.nc", engine="h5netcdf")
    _sea_and_land(era20c, lsm["lsm"].values[0], 0.8)
    assert set(pd.read_csv(out / "collections/era20c.csv").variable_id) >= {"sst", "t2m"}


def _zarr(url: str) -> xr.Dataset:
    return xr.open_zarr(url.removeprefix("file://"), decode_times=CFTIME)


def test_cmip_tos_on_curvilinear_ocean_grids_with_areacello(tiny):
    """Oday tos (one model Omon only) for every member and experiment, degC on (j, i)
    with 2-D latitude/longitude, area: areacello, NaN where sftof is 0."""
    out, _ = tiny
    table = pd.read_csv(out / "collections/cmip6.csv")
    tos = table[table.variable_id == "tos"]
    tables = dict(zip(tos.source_id, tos.table_id, strict=True))
    assert tables == {"TWIN-ESM-A": "Oday", "TWIN-ESM-B": "Omon", "TWIN-ESM-C": "Oday"}
    tas = table[(table.table_id == "day") & (table.variable_id == "tas")]
    key = ["source_id", "experiment_id", "member_id"]
    assert set(map(tuple, tos[key].values)) == set(map(tuple, tas[key].values))
    assert set(tos.grid_label) == {"gn"} and set(tos.version.astype(str)) == {CMIP_VERSION}

    ofx = table[table.table_id == "Ofx"]
    assert sorted(zip(ofx.source_id, ofx.variable_id, strict=True)) == sorted(
        (s, v) for s in tables for v in ("areacello", "sftof")
    )
    domain = (
        EARTH_RADIUS**2
        * np.deg2rad(LON_RANGE[1] - LON_RANGE[0])
        * (np.sin(np.deg2rad(LAT_RANGE[1])) - np.sin(np.deg2rad(LAT_RANGE[0])))
    )
    for source, frequency in tables.items():
        rows = ofx[ofx.source_id == source].set_index("variable_id").zstore
        area = _zarr(rows["areacello"])["areacello"].load()
        sftof = _zarr(rows["sftof"])["sftof"].load()
        assert area.attrs["units"] == "m2" and sftof.attrs["units"] == "%"
        assert area.dims == ("j", "i") and set(np.unique(sftof.values)) == {0.0, 100.0}
        # cells about the grid spacing squared; the grid covers the domain and a half-cell rim
        res = float(np.median(np.diff(area.latitude.values, axis=0)))
        cell = EARTH_RADIUS**2 * np.deg2rad(res) ** 2 * np.cos(np.deg2rad(42.75))
        assert 0.9 < float(area.median()) / cell < 1.1
        assert 1.0 < float(area.sum()) / domain < 1.6
        sea_area = float(area.where(sftof > 0).sum())
        assert 0.2 < sea_area / float(area.sum()) < 0.8  # the gulf and the land around it

        for row in tos[tos.source_id == source].itertuples():
            ds = _zarr(row.zstore)
            da = ds["tos"]
            assert da.dims == ("time", "j", "i") and da.attrs["units"] == "degC"
            assert da.attrs["standard_name"] == "sea_surface_temperature"
            assert da.attrs["cell_measures"] == "area: areacello"
            assert ds.latitude.dims == ("j", "i") and ds.longitude.dims == ("j", "i")
            assert ds.vertices_latitude.dims == ("j", "i", "vertices")
            np.testing.assert_array_equal(ds.latitude, area.latitude)
            # rows of constant j are not parallels: a curvilinear grid
            assert float(np.ptp(ds.latitude.values[0])) > 0.1
            assert float(ds.longitude.max()) > 350  # 0-360 with the wrap
            values = da.values
            assert np.isfinite(values[:, sftof.values == 100.0]).all()
            assert np.isnan(values[:, sftof.values == 0.0]).all()
            assert 10.0 < np.nanmean(values) < 25.0  # degC, not K
            steps = np.diff(ds.time.values[:3])
            days = {s.days for s in steps}
            assert days == ({1} if frequency == "Oday" else {30})  # 360_day months


def test_coupled_cordex_rcm_writes_tos(tiny):
    out, _ = tiny
    table = pd.read_csv(out / "collections/cordex.csv")
    tos = table[table.variable_id == "tos"]
    assert set(tos.source_id) == {"TWIN-RCM-X"}
    assert set(tos.experiment_id) == set(get_preset("tiny").cordex_experiments)
    ds = xr.open_dataset(tos.path.iloc[0].removeprefix("file://"), engine="h5netcdf")
    assert ds.tos.dims == ("time", "rlat", "rlon") and ds.tos.attrs["units"] == "degC"
    assert ds.tos.attrs["grid_mapping"] == "rotated_pole"
    fx = table[(table.source_id == "TWIN-RCM-X") & (table.variable_id == "sftlf")]
    sftlf = xr.open_dataset(fx.path.iloc[0].removeprefix("file://"), engine="h5netcdf").sftlf
    _sea_and_land(ds.tos, sftlf.values / 100.0, 0.8)


def _listed(path: Path, source: str = "") -> tuple[Any, Any, list[Any]]:
    catalog = load_run_catalog(str(path))
    src = catalog.source(source) if source else catalog.sources[0]
    return catalog, src, list_combos(catalog, src).combos


def test_uncoupled_rcm_takes_its_driving_models_tos(tiny):
    """The uncoupled RCM's sea surface is its driving GCM's: same series, same days."""
    out, _ = tiny
    catalog, source, combos = _listed(out / "catalogs/cordex.yaml")
    by_label = {c.label: c for c in combos}
    coupled = by_label["TWIN-ESM-A_TWIN-RCM-X/ssp585/r1i1p1f1"]
    uncoupled = by_label["TWIN-ESM-C_TWIN-RCM-Y/ssp585/r1i1p1f1"]
    assert coupled.driving is None and "tos" not in coupled.absent
    assert uncoupled.absent == () and uncoupled.driving.label == (
        "tos from cmip6 TWIN-ESM-C/ssp585/r1i1p1f1"
    )
    assert predictors_of(source, uncoupled) == predictors_of(source, coupled)
    rcm = extract_combo(catalog, source, uncoupled).compute().data
    cmip, cmip_source, cmip_combos = _listed(out / "catalogs/cmip6.yaml")
    (gcm_combo,) = [c for c in cmip_combos if c.label == "TWIN-ESM-C/ssp585/r1i1p1f1"]
    gcm = extract_combo(cmip, cmip_source, gcm_combo).compute().data
    assert rcm.attrs["driving_model"] == "tos from cmip6 TWIN-ESM-C/ssp585/r1i1p1f1"
    np.testing.assert_array_equal(rcm.tos.values, gcm.tos.sel(time=rcm.time).values)
    assert np.isfinite(rcm.tos.values).all() and 10 < float(rcm.tos.mean()) < 25
    # the driving model's data are part of what the cached predictors depend on
    assert fingerprint(catalog, source, uncoupled) != fingerprint(
        catalog, source, replace(uncoupled, driving=None)
    )


def test_a_missing_driving_run_is_named_where_the_model_refuses_it(tiny, tmp_path):
    """No driving scenario in the driving catalog: the RCM lacks tos, and says why."""
    from cascadia.run.pipeline import _plan, _refuse_missing_inputs

    out, _ = tiny
    catalogs = out / "catalogs"
    cmip = yaml.safe_load((catalogs / "cmip6.yaml").read_text())
    cmip["sources"][0]["collection"] = str(out / "collections/cmip6.json")
    cmip["sources"][0]["query"]["experiment_id"] = ["historical"]
    (tmp_path / "cmip6-historical.yaml").write_text(yaml.safe_dump(cmip))
    cordex = yaml.safe_load((catalogs / "cordex.yaml").read_text())
    cordex["bias_adjustment"]["reference"]["catalog"] = str(catalogs / "reanalysis.yaml")
    source = cordex["sources"][0]
    source["collection"] = str(out / "collections/cordex.json")
    source["driving_model"]["catalog"] = "cmip6-historical.yaml"
    source["query"]["source_id"] = "TWIN-RCM-Y"
    (tmp_path / "cordex-y.yaml").write_text(yaml.safe_dump(cordex))
    plan = _plan([load_run_catalog(str(tmp_path / "cordex-y.yaml"))])
    _refuse_missing_inputs(plan, ["tas", "tos"], "/models/with-tos")
    failures = {e.combo.labels["experiment_id"]: plan.failures.get(e.id) for e in plan.entries}
    assert failures["historical"] is None
    where = f"{tmp_path / 'cordex-y.yaml'} [cordex] driving_model"
    assert failures["ssp126"] == (
        "model /models/with-tos needs tos; source cordex "
        "(TWIN-ESM-C_TWIN-RCM-Y/ssp126/r1i1p1f1) has none "
        f"({where}: no combination experiment_id=ssp126, member_id=r1i1p1f1, "
        f"source_id=TWIN-ESM-C in {tmp_path / 'cmip6-historical.yaml'} [cmip6]) "
        "— map it in the run catalog or train without tos"
    )
    # a variable taken from the driving model must be optional: the RCM's own comes first
    source["optional"] = []
    (tmp_path / "cordex.yaml").write_text(yaml.safe_dump(cordex))
    with pytest.raises(CatalogError, match=r"driving_model.variables \['tos'\] must be listed"):
        load_run_catalog(str(tmp_path / "cordex.yaml"))


# ------------------------------------------------------------------ physics drawn per seed


def test_vary_physics_draws_records_and_regenerates(tiny, tmp_path):
    """Same seed + vary_physics: the same world; world.json records the drawn ocean and
    the skill ceiling's regeneration uses it (its truth matches)."""
    tiny_spec = get_preset("tiny")
    preset = small_preset("phys", twentycr=tiny_spec.twentycr.model_copy(update={"members": 1}))
    first, again = tmp_path / "a", tmp_path / "b"
    manifest = build_world(str(first), preset, seed=13, vary_physics=True)
    build_world(str(again), preset, seed=13, vary_physics=True)
    assert_same_world(first, again)
    recorded = json.loads((first / "world.json").read_text())
    assert recorded["vary_physics"] is True and recorded == manifest
    assert params_from_json(recorded[PARAMS_KEY]) == seed_params(13)
    # the oracle's background (a model's): any series will do for the truth check
    days = pd.date_range("2013-01-01", periods=2)
    series = ModelSeries(
        time=days,
        depths=("500", "1000"),
        background=np.array([[13.5, 13.0], [13.5, 13.0]]),
        observed=np.full((2, 2), np.nan),
    )
    assert regenerate_twin(first, series).max_difference < 1e-3

    plain = json.loads((tiny[0] / "world.json").read_text())  # built without the flag
    assert plain["vary_physics"] is False
    assert params_from_json(plain[PARAMS_KEY]) == OceanParams()
    with pytest.raises(ValueError, match="not both"):
        build_world(str(tmp_path / "e"), preset, seed=13, vary_physics=True, params=seed_params(1))
