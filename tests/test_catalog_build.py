"""``catalog build``: a user's folder of files becomes a collection that check and extract run.

The folder is assembled as a user's disk would be: the twin's CDS-style ERA5
daily files, its CMIP6 stores under Pangeo's DRS directories (``CMIP6/<activity>/
<institution>/<source>/<experiment>/<member>/<table>/<variable>/<grid>/<version>``),
its CORDEX files with DRS names, and things that are not data. Everything goes
through ``cascadia.cli.main`` as a user would type it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import fsspec
import h5netcdf
import intake_esm
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from helpers import small_preset

from cascadia.cli import main
from cascadia.learning.jobs import load_train_job
from cascadia.mooring.observations import ObservationError, load_mooring
from cascadia.sources.builder import (
    Asset,
    AssetInfo,
    LayoutError,
    build_collection,
    parse_asset,
    parse_cmip6,
    parse_cordex,
)
from cascadia.sources.catalog import enumerate_combos, open_collection
from cascadia.sources.config import load_run_catalog
from cascadia.sources.extraction import extract_combo
from cascadia.twin.presets import PRESETS
from cascadia.twin.world import build_world

CMIP_VARIABLES = {v: v for v in ("tas", "hurs", "pr", "uas", "vas", "sfcWind", "psl")}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "world"
    preset = small_preset(
        "build", cordex=PRESETS["tiny"].cordex[:1], cordex_experiments=("historical",)
    )
    build_world(str(out), preset, seed=1)
    return out


@pytest.fixture(scope="module")
def own(world: Path, tmp_path_factory) -> Path:
    """A user's folder: downloads, a DRS mirror, CORDEX files and some clutter."""
    folder = tmp_path_factory.mktemp("own") / "data"
    shutil.copytree(world / "reanalysis" / "era5-cds", folder / "era5-daily")
    shutil.copytree(world / "cmip6", folder / "mirror" / "CMIP6")
    shutil.copytree(world / "cordex", folder / "cordex")
    (folder / "README.txt").write_text("downloaded in May\n")
    (folder / "era5-daily" / "era5_2015.nc").write_bytes(b"<html>quota exceeded</html>")
    shutil.copy(world / "observations" / "lacaze-duthiers.nc", folder / "mooring.nc")
    classic = xr.Dataset({"t2m": ("time", [280.0])}, coords={"time": pd.to_datetime(["1990"])})
    classic.to_netcdf(folder / "era5-daily" / "era5_1990.nc", engine="scipy")  # NetCDF-3
    (folder / "old.zarr").mkdir()
    return folder


def _run_catalog(path: Path, collection: Path) -> Path:
    regions = yaml.safe_load((Path(__file__).parents[1] / "catalogs/era5-cds.yaml").read_text())
    catalog = {
        "version": 1,
        "regions": regions["regions"],
        "sources": [
            {
                "name": "era5",
                "collection": str(collection),
                "role": "reference",
                "query": {"source_id": "ERA5", "frequency": "day"},
                "xarray_open_kwargs": {"drop_variables": ["number", "expver"]},
                "rename": {"valid_time": "time"},
                "variables": {
                    "tas": "t2m",
                    "uas": "u10",
                    "vas": "v10",
                    "sfcWind": "si10",
                    "psl": "msl",
                    "pr": "tp",
                },
                "derived": {"hurs": {"from": {"tas": "t2m", "tdps": "d2m"}}},
                "accumulated": {"tp": "daily_total"},
                "land_fraction": {"variable": "lsm"},
            },
            {
                "name": "cmip6",
                "collection": str(collection),
                "role": "projection",
                "query": {"project": "CMIP6", "table_id": "day", "experiment_id": "historical"},
                "variables": CMIP_VARIABLES,
                "land_fraction": {
                    "variable": "sftlf",
                    "query": {"table_id": "fx"},
                    "match": ["source_id", "grid_label"],
                },
            },
            {
                "name": "cordex",
                "collection": str(collection),
                "role": "projection",
                "query": {"project": "CORDEX", "frequency": "day"},
                "variables": CMIP_VARIABLES,
                "land_fraction": {
                    "variable": "sftlf",
                    "query": {"frequency": "fx"},
                    "match": ["domain_id", "institution_id", "source_id"],
                },
                "combo_id": {
                    "source_id": "{driving_source_id}_{source_id}",
                    "experiment_id": "{experiment_id}",
                    "member_id": "{member_id}",
                },
            },
        ],
    }
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    return path


def test_a_folder_becomes_a_collection_that_check_and_extract_run(
    own, world, tmp_path, capsys, monkeypatch
):
    collection = tmp_path / "collections" / "own.json"
    assert main(["catalog", "build", str(own), "--out", str(collection)]) == 0
    out = capsys.readouterr().out
    reasons = {
        own / "README.txt": "neither NetCDF (.nc, .nc4) nor a Zarr store",
        own / "old.zarr": "named .zarr but holds no Zarr metadata",
        own / "era5-daily" / "era5_2015.nc": "cannot be opened as NetCDF",
        own / "mooring.nc": "no known layout",
        own / "era5-daily" / "era5_1990.nc": "cannot be opened as NetCDF: a NetCDF-3 (classic)",
    }
    for path, reason in reasons.items():
        assert f"{path}: {reason}" in out
    skipped = pd.read_csv(tmp_path / "collections" / "own.skipped.csv")
    assert sorted(skipped["path"]) == sorted(map(str, reasons))
    assert "'TEMP', 'TEMP_QC'] are not ECMWF short names" in " ".join(skipped["reason"])

    datastore = intake_esm.esm_datastore(str(collection))
    frame = datastore.df
    assert frame["path"].str.startswith("file:///").all()
    per_asset = frame.drop_duplicates("path")
    assert per_asset["project"].value_counts().to_dict() == {
        # experiments x variables x grids (gn, gr), one Zarr store each; an earlier
        # version of the historical tas; fx sftlf per grid; Oday tos per experiment on the
        # ocean grid (gn only) and its Ofx areacello and sftof; Omon thetao per experiment
        "CMIP6": 4 * 8 * 2 + 1 + 2 + 4 + 2 + 4,
        "CORDEX": 7 + 1 + 1,  # variables, one file each; the fx sftlf file; the coupled tos
        "reanalysis": 2,  # the yearly CDS files, eight variables each
    }
    era5 = frame[frame["project"] == "reanalysis"]
    assert sorted(set(era5["variable_id"])) == sorted(
        ["d2m", "lsm", "msl", "si10", "ssrd", "sst", "t2m", "tp", "u10", "v10"]
    )
    assert set(era5["frequency"]) == {"day"} and set(era5["time_range"]) == {
        "20130101-20131231",
        "20140101-20141231",
    }
    tas = frame[(frame["project"] == "CMIP6") & (frame["variable_id"] == "tas")]
    historical = tas[
        (tas["experiment_id"] == "historical")
        & (tas["grid_label"] == "gn")
        & (tas["version"] == "v20260101")
    ].iloc[0]
    assert historical[["activity_id", "institution_id", "source_id", "member_id"]].tolist() == [
        "CMIP",
        "TWINLAB-A",
        "TWIN-ESM-A",
        "r1i1p1f1",
    ]
    assert historical[["table_id", "grid_label", "version", "time_range"]].tolist() == [
        "day",
        "gn",
        "v20260101",
        "20120101-20141231",
    ]
    fx = frame[(frame["variable_id"] == "sftlf") & (frame["grid_label"] != "gr")]
    fx = fx.set_index("project")
    assert fx.loc["CMIP6", ["table_id", "time_range"]].tolist() == ["fx", "none"]
    assert fx.loc["CORDEX", ["frequency", "member_id"]].tolist() == ["fx", "r0i0p0"]
    cordex = frame[frame["project"] == "CORDEX"].iloc[0]
    assert cordex[["domain_id", "driving_source_id", "institution_id", "source_id"]].tolist() == [
        "MED-TWIN",
        "TWIN-ESM-A",
        "TWINRCM-X",
        "TWIN-RCM-X",
    ]
    control = json.loads(collection.read_text())["aggregation_control"]
    assert "variable_id" in control["groupby_attrs"]
    assert "version" not in control["groupby_attrs"]

    run = _run_catalog(tmp_path / "own.yaml", collection)
    assert main(["catalog", "check", "--catalog", str(run)]) == 0
    assert "TWIN-ESM-A_TWIN-RCM-X" in capsys.readouterr().out
    cache = tmp_path / "cache"
    assert main(["extract", "--catalog", str(run), "--cache", str(cache)]) == 0
    assert "3 extracted, 0 adjusted, 0 cached, 0 failed" in capsys.readouterr().out

    # the same files through the twin's own collection give the same predictors; the
    # collection mixes NetCDF and Zarr, and its NetCDF files are opened once, by h5netcdf
    catalog = load_run_catalog(str(run))
    source = catalog.source("era5")
    datastore = open_collection(catalog, source)
    (combo,) = enumerate_combos(catalog, source, datastore)
    opened: list[str] = []
    original = h5netcdf.File.__init__

    def counting(self, path, *args, **kwargs):
        opened.append(str(path))
        original(self, path, *args, **kwargs)

    monkeypatch.setattr(h5netcdf.File, "__init__", counting)
    built = extract_combo(catalog, source, combo, datastore).data.compute()
    files = sorted(a.removeprefix("file://") for a in combo.assets)
    assert sorted(opened) == sorted([*files, combo.land_fraction.removeprefix("file://")])
    monkeypatch.undo()
    twin = load_run_catalog(str(world / "catalogs" / "era5-cds.yaml"))
    twin_source = twin.source("era5")
    (twin_combo,) = enumerate_combos(twin, twin_source)
    reference = extract_combo(twin, twin_source, twin_combo).data.compute()
    for name in built.data_vars:
        xr.testing.assert_allclose(built[name], reference[name])


def test_nothing_to_catalogue_is_an_error_naming_each_file(tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    assert main(["catalog", "build", str(folder), "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "nothing could be catalogued" in err
    assert f"{folder / 'notes.txt'}: neither NetCDF" in err
    assert not (tmp_path / "c.json").exists()
    assert main(["catalog", "build", str(tmp_path / "missing"), "--out", "c.json"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_any_fsspec_url_is_scanned_and_written(world):
    """The same walk and reads through fsspec: here its in-process memory filesystem."""
    fs = fsspec.filesystem("memory")
    drs = "CMIP6/CMIP/TWINLAB-A/TWIN-ESM-A/historical/r1i1p1f1/day/tas/gn/v20260101"
    fs.put(str(world / "reanalysis" / "era5-cds"), "/bucket/data/era5", recursive=True)
    fs.put(str(world / "cmip6" / drs.removeprefix("CMIP6/")), f"/bucket/data/{drs}", recursive=True)
    fs.pipe("/bucket/data/notes.txt", b"x")
    try:
        result = build_collection("memory://bucket/data", "memory://bucket/c/mine.json")
        datastore = intake_esm.esm_datastore("memory://bucket/c/mine.json")
        assets = sorted(set(datastore.df["path"]))
        assert assets == [
            f"memory:///bucket/data/{drs}",
            "memory:///bucket/data/era5/era5-daily-stats_gulf-of-lion_2013.nc",
            "memory:///bucket/data/era5/era5-daily-stats_gulf-of-lion_2014.nc",
        ]
        assert len(result.frame) == 1 + 2 * 10  # tas; ten variables a year (lsm, sst included)
        assert [(s.path, s.reason) for s in result.skipped] == [
            ("memory:///bucket/data/notes.txt", "neither NetCDF (.nc, .nc4) nor a Zarr store")
        ]
        assert fs.exists("/bucket/c/mine.skipped.csv")
    finally:
        fs.rm("/bucket", recursive=True)


def _info(*variables: str, **attrs: str) -> AssetInfo:
    return AssetInfo(
        variables={v: ("time", "lat", "lon") for v in variables},
        attrs=attrs,
        time_dim="time",
        time_range="20150101-20201231",
        frequency="day",
    )


def test_drs_names_and_paths_give_the_facets():
    name = "pr_day_CNRM-CM6-1_ssp585_r1i1p1f2_gr_20150101-20201231.nc"
    drs = "CMIP6/ScenarioMIP/CNRM-CERFACS/CNRM-CM6-1/ssp585/r1i1p1f2/day/pr/gr/v20190219"
    (row,) = parse_cmip6(Asset(f"file:///d/{drs}/{name}", f"{drs}/{name}", "netcdf"), _info("pr"))
    assert row["institution_id"] == "CNRM-CERFACS" and row["grid_label"] == "gr"
    assert row["version"] == "v20190219" and row["member_id"] == "r1i1p1f2"

    # a file without its DRS folders: the institution comes from the global attributes
    asset = Asset(f"file:///d/{name}", name, "netcdf")
    info = _info("pr", activity_id="ScenarioMIP", institution_id="CNRM-CERFACS")
    (row,) = parse_cmip6(asset, info)
    assert row["institution_id"] == "CNRM-CERFACS" and row["version"] == "none"

    stem = "tas_EUR-11_MPI-M-MPI-ESM-LR_rcp85_r1i1p1_CLMcom-CCLM4-8-17_v1_day_20060101-20101231"
    asset = Asset(f"file:///d/{stem}.nc", f"{stem}.nc", "netcdf")
    # real CORDEX-CMIP5 files repeat the institute in model_id; some give the model alone
    for model_id in ("CLMcom-CCLM4-8-17", "CCLM4-8-17"):
        (row,) = parse_cordex(asset, _info("tas", institute_id="CLMcom", model_id=model_id))
        assert (row["institution_id"], row["source_id"]) == ("CLMcom", "CCLM4-8-17")
    assert (row["domain_id"], row["driving_source_id"]) == ("EUR-11", "MPI-M-MPI-ESM-LR")
    assert (row["member_id"], row["rcm_version"], row["frequency"]) == ("r1i1p1", "v1", "day")

    stem = "tas_EUR-12_MPI-ESM1-2-HR_ssp370_r1i1p1f1_GERICS_REMO2020_v1-r1_day_20150101-20151231"
    asset = Asset(f"file:///d/{stem}.nc", f"{stem}.nc", "netcdf")
    layout, (row,) = parse_asset(asset, _info("tas"))
    assert layout == "cordex" and (row["institution_id"], row["source_id"]) == (
        "GERICS",
        "REMO2020",
    )

    # a DRS that names another variable than the store holds is reported, not catalogued
    asset = Asset(f"file:///d/{drs}", drs, "zarr")
    with pytest.raises(LayoutError, match=r"names variable 'pr' but it holds \['tas'\]"):
        parse_asset(asset, _info("tas"))
    with pytest.raises(LayoutError, match=r"2 ensemble members"):
        parse_asset(
            Asset("file:///d/x.nc", "x.nc", "netcdf"),
            AssetInfo({"t2m": ("number", "time", "lat", "lon")}, {}, "time", members=2),
        )


#: A CDS download's grid (latitude descending) and its land: the coast of the Gulf of Lion.
CDS_LAT = np.arange(44.5, 41.49, -0.25)
CDS_LON = np.arange(2.0, 6.01, 0.25)
CDS_LAND = (
    (CDS_LAT[:, None] > 43.2) | (np.broadcast_to(CDS_LON, (CDS_LAT.size, CDS_LON.size)) < 3.1)
).astype("float32")


def _cds_file(path: Path, times: pd.DatetimeIndex, **fields: np.ndarray) -> None:
    """A file as the new CDS writes it: ``valid_time`` in seconds, ``number``, ``expver``."""
    seconds = (times - pd.Timestamp("1970-01-01")) // pd.Timedelta("1s")
    coords = {
        "valid_time": (
            "valid_time",
            np.asarray(seconds, dtype="int64"),
            {"units": "seconds since 1970-01-01", "calendar": "proleptic_gregorian"},
        ),
        "latitude": ("latitude", CDS_LAT, {"units": "degrees_north"}),
        "longitude": ("longitude", CDS_LON, {"units": "degrees_east"}),
        "number": ((), np.int64(0)),
        "expver": ("valid_time", np.array(["0001"] * len(times), dtype=object)),
    }
    units = {"t2m": "K", "lsm": "(0 - 1)"}
    data = {
        name: (
            ("valid_time", "latitude", "longitude"),
            values.astype("float32"),
            {"units": units[name]},
        )
        for name, values in fields.items()
    }
    xr.Dataset(data, coords=coords).to_netcdf(path, engine="h5netcdf")


def _cds_days(path: Path, start: str, with_lsm: bool = True) -> None:
    """Five days of t2m from ``start``: 290 K on land, 280 K at sea, one kelvin more a day
    from 2000-12-27 on."""
    times = pd.date_range(start, periods=5)
    days = np.asarray((times - pd.Timestamp("2000-12-27")).days, dtype=float)
    t2m = np.where(CDS_LAND > 0.5, 290.0, 280.0)[None] + days[:, None, None]
    lsm = {"lsm": np.repeat(CDS_LAND[None], 5, axis=0)} if with_lsm else {}
    _cds_file(path, times, t2m=t2m, **lsm)


def _era5_catalog(path: Path, collection: str) -> Path:
    """The shipped catalogs/era5-cds.yaml source (query, land_fraction…), reading tas only."""
    shipped = yaml.safe_load((Path(__file__).parents[1] / "catalogs/era5-cds.yaml").read_text())
    source = {**shipped["sources"][0], "collection": collection, "variables": {"tas": "t2m"}}
    for key in ("period", "derived", "accumulated"):
        source.pop(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump({"version": 1, "regions": shipped["regions"], "sources": [source]})
    )
    return path


def _shelf_tas(run: Path) -> tuple[Any, np.ndarray]:
    """The one combination of the catalog and its daily tas over the (sea-only) shelf."""
    catalog = load_run_catalog(str(run))
    source = catalog.source("era5")
    (combo,) = enumerate_combos(catalog, source)
    data = extract_combo(catalog, source, combo).data.compute()
    return combo, data["tas"].sel(region="gulf_of_lion_shelf").values


#: The shelf's daily tas from 2000-12-27 to 2001-01-05 when the land-sea mask is applied:
#: its sea cells alone.
SEA_TAS = 280.0 + np.arange(10.0)


def test_paths_with_spaces_and_accents_are_built_opened_and_read(tmp_path, capsys):
    data = (tmp_path / "ERA5 downloads" / "données").resolve()
    data.mkdir(parents=True)
    _cds_days(data / "era5_2000 (1).nc", "2000-12-27")
    _cds_days(data / "era5_2001.nc", "2001-01-01")
    collection = tmp_path / "my collections" / "era5 (v1).json"
    assert main(["catalog", "build", str(data), "--out", str(collection)]) == 0
    assert "%20" not in capsys.readouterr().out

    frame = intake_esm.esm_datastore(str(collection)).df
    assert sorted(set(frame["path"])) == [
        f"file://{data}/era5_2000 (1).nc",
        f"file://{data}/era5_2001.nc",
    ]
    run = _era5_catalog(tmp_path / "run catalogs" / "era5.yaml", "../my collections/era5 (v1).json")
    _, shelf = _shelf_tas(run)
    np.testing.assert_allclose(shelf, SEA_TAS, rtol=1e-6)


def test_a_land_sea_mask_downloaded_once_serves_a_daily_source(tmp_path):
    """The CDS returns the invariant lsm with one time step: catalogued with frequency
    ``none``, it still masks the shipped catalog's ``frequency: day`` source."""
    data = tmp_path / "data"
    data.mkdir()
    _cds_days(data / "era5_2000.nc", "2000-12-27", with_lsm=False)
    _cds_days(data / "era5_2001.nc", "2001-01-01", with_lsm=False)
    mask = data / "era5_land-sea-mask.nc"
    _cds_file(mask, pd.DatetimeIndex(["2000-01-01"]), lsm=CDS_LAND[None])
    result = build_collection(str(data), str(tmp_path / "era5.json"))
    lsm = result.frame[result.frame["variable_id"] == "lsm"]
    assert lsm[["frequency", "time_range"]].values.tolist() == [["none", "20000101-20000101"]]

    combo, shelf = _shelf_tas(_era5_catalog(tmp_path / "era5.yaml", "era5.json"))
    assert combo.land_fraction == f"file://{mask.resolve()}"
    assert len(combo.assets) == 2  # the mask is no data file of the combination
    np.testing.assert_allclose(shelf, SEA_TAS, rtol=1e-6)


def _cordex_file(folder: Path, variable: str, rcm: str, attrs: dict[str, str]) -> None:
    """A CORDEX-CMIP5 file with its DRS name and its ESGF global attributes."""
    fx = variable == "sftlf"
    member, tail = ("r0i0p0", "fx") if fx else ("r1i1p1", "day_20060101-20060105")
    name = f"{variable}_EUR-11_MPI-M-MPI-ESM-LR_rcp85_{member}_{rcm}_v1_{tail}.nc"
    grid = {"rlat": np.arange(3.0), "rlon": np.arange(4.0)}
    if fx:
        ds = xr.Dataset({variable: (("rlat", "rlon"), np.full((3, 4), 50.0))}, coords=grid)
    else:
        time = pd.date_range("2006-01-01", periods=5)
        ds = xr.Dataset(
            {variable: (("time", "rlat", "rlon"), np.full((5, 3, 4), 280.0))},
            coords={"time": time, **grid},
        )
    ds.attrs = {"project_id": "CORDEX", "CORDEX_domain": "EUR-11", **attrs}
    ds.to_netcdf(folder / name, engine="h5netcdf")


def test_real_cordex_attributes_split_institute_and_model_in_a_flat_folder(tmp_path):
    """ESGF's CORDEX-CMIP5 files repeat the institute in ``model_id``
    (``CLMcom``/``CLMcom-CCLM4-8-17``): without DRS folders the split comes from them."""
    data = tmp_path / "cordex"
    data.mkdir()
    rcms = {"CLMcom-CCLM4-8-17": "CLMcom", "SMHI-RCA4": "SMHI"}
    for rcm, institute in rcms.items():
        for variable in ("tas", "sftlf"):
            _cordex_file(data, variable, rcm, {"institute_id": institute, "model_id": rcm})
    frame = build_collection(str(data), str(tmp_path / "cordex.json")).frame
    assert sorted(set(zip(frame["institution_id"], frame["source_id"], strict=True))) == [
        ("CLMcom", "CCLM4-8-17"),
        ("SMHI", "RCA4"),
    ]

    # the run catalog of docs/own-data.md: its land fraction matched on the institution
    catalog = {
        "version": 1,
        "regions": [{"name": "box", "lat_min": 0, "lat_max": 1, "lon_min": 0, "lon_max": 1}],
        "sources": [
            {
                "name": "euro-cordex",
                "collection": "cordex.json",
                "role": "projection",
                "query": {"project": "CORDEX", "frequency": "day"},
                "variables": {"tas": "tas"},
                "land_fraction": {
                    "variable": "sftlf",
                    "query": {"frequency": "fx"},
                    "match": ["domain_id", "institution_id", "source_id"],
                },
                "combo_id": {
                    "source_id": "{driving_source_id}_{institution_id}-{source_id}_{rcm_version}",
                    "experiment_id": "{experiment_id}",
                    "member_id": "{member_id}",
                },
            }
        ],
    }
    (tmp_path / "cordex.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False))
    run = load_run_catalog(str(tmp_path / "cordex.yaml"))
    combos = enumerate_combos(run, run.source("euro-cordex"))
    assert [(c.label, Path(c.land_fraction).name) for c in combos] == [
        (
            f"MPI-M-MPI-ESM-LR_{rcm}_v1/rcp85/r1i1p1",
            f"sftlf_EUR-11_MPI-M-MPI-ESM-LR_rcp85_r0i0p0_{rcm}_v1_fx.nc",
        )
        for rcm in sorted(rcms)
    ]


#: The placeholders of jobs/lacaze-duthiers.yaml, and what a tiny world puts there.
PLACEHOLDERS = {
    "/path/to/run-catalogs/era5.yaml": "catalogs/era5-cds.yaml",
    "/path/to/mooring/OS_LACAZE-DUTHIERS_TEMP.nc": "observations/lacaze-duthiers.nc",
}


def test_the_lacaze_duthiers_job_validates_once_its_paths_are_filled(world, tmp_path):
    template = (Path(__file__).parents[1] / "jobs" / "lacaze-duthiers.yaml").read_text()
    placeholders = set(re.findall(r"^\s*\w+: (/path/to/\S+)", template, flags=re.MULTILINE))
    assert placeholders == {
        *PLACEHOLDERS,
        "/path/to/cache/predictors",
        "/path/to/models/lacaze-duthiers",
    }
    shipped = load_train_job(_job(tmp_path, template))  # valid as shipped, pointing nowhere
    with pytest.raises(ObservationError, match=r"OS_LACAZE-DUTHIERS_TEMP\.nc"):
        load_mooring(shipped.observations)
    filled = template.replace("/path/to/cache/predictors", str(tmp_path / "cache"))
    filled = filled.replace("/path/to/models/lacaze-duthiers", str(tmp_path / "model"))
    for placeholder, relative in PLACEHOLDERS.items():
        filled = filled.replace(placeholder, str(world / relative))
    job = load_train_job(_job(tmp_path, filled))
    assert job.training.members == 5 and job.observations.depths == [500.0, 1000.0]
    catalog = load_run_catalog(job.predictors.catalog)
    assert catalog.source(job.predictors.source).role == "reference"
    mooring = load_mooring(job.observations)
    assert list(mooring.data.depth.values) == [500.0, 1000.0]
    assert int(mooring.data.temperature.notnull().sum()) > 600  # two years, both depths


def _job(folder: Path, text: str) -> Path:
    path = folder / "job.yaml"
    path.write_text(text)
    return path
