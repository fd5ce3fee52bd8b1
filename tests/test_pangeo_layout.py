"""The Pangeo CMIP6 layout as the twin writes it, the selection rules, and a run through it.

The world: one CMIP-like model (TWIN-ESM-A) published as Pangeo publishes CMIP6 —
one Zarr per variable, ``member_id`` and ``dcpp_init_year`` joined, empty
``dcpp_init_year`` cells, a native (``gn``) and a regridded (``gr``) copy of every
dataset, an earlier partial version of the historical ``tas``, and ``height``
coordinates of 2 m / 10 m that break a naive merge of the variables.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import intake_esm
import pandas as pd
import pytest
import xarray as xr
import yaml
from helpers import RUN_TWIN, small_preset

from cascadia.cli import main
from cascadia.learning.jobs import TrainJob, smoke_train_job
from cascadia.learning.train_job import run_train_job
from cascadia.run.store import combo_status, open_cube
from cascadia.sources.catalog import SourceError, list_combos, open_collection, open_combo
from cascadia.sources.config import RunCatalog, load_run_catalog
from cascadia.twin.world import build_world

PRESET = small_preset("pangeo", **{**RUN_TWIN, "cordex": ()})
MODEL = "TWIN-ESM-A"
MEMBER = "r1i1p1f1"
VARIABLES = ["hurs", "pr", "psl", "sfcWind", "tas", "uas", "vas"]  # what the catalog reads
PANGEO_COLUMNS = [
    "activity_id",
    "institution_id",
    "source_id",
    "experiment_id",
    "member_id",
    "table_id",
    "variable_id",
    "grid_label",
    "zstore",
    "dcpp_init_year",
    "version",
]
LATEST, EARLIER = "v20260101", "v20250601"
VARIANTS = itertools.count()


def _id(experiment: str, variable: str, grid: str = "gn", version: str = LATEST) -> str:
    activity = "CMIP" if experiment == "historical" else "ScenarioMIP"
    return (
        f"CMIP6.{activity}.TWINLAB-A.{MODEL}.{experiment}.{MEMBER}.day.{variable}.{grid}." + version
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The world, and its CMIP6 run catalog restricted to historical + ssp585."""
    root = tmp_path_factory.mktemp("pangeo") / "world"
    build_world(str(root), PRESET, seed=0)
    catalog = yaml.safe_load((root / "catalogs/cmip6.yaml").read_text())
    catalog["sources"][0]["query"]["experiment_id"] = ["historical", "ssp585"]
    (root / "catalogs/cmip6-run.yaml").write_text(yaml.safe_dump(catalog))
    return root


def _catalog(world: Path, **source: Any) -> RunCatalog:
    """The run catalog with the source's fields replaced (its selection updated)."""
    data = yaml.safe_load((world / "catalogs/cmip6-run.yaml").read_text())
    selection = source.pop("selection", {})
    data["sources"][0].update(source)
    data["sources"][0]["selection"].update(selection)
    path = world / "catalogs" / f"variant-{next(VARIANTS)}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_run_catalog(str(path))


def test_the_collection_is_pangeo_cmip6_as_published(world: Path) -> None:
    spec = json.loads((world / "collections/cmip6.json").read_text())
    assert spec["assets"] == {"column_name": "zstore", "format": "zarr"}
    control = spec["aggregation_control"]
    assert control["groupby_attrs"] == [
        "activity_id",
        "institution_id",
        "source_id",
        "experiment_id",
        "table_id",
        "grid_label",
    ]
    assert [(a["type"], a["attribute_name"]) for a in control["aggregations"]] == [
        ("union", "variable_id"),
        ("join_new", "member_id"),
        ("join_new", "dcpp_init_year"),
    ]
    text = (world / "collections/cmip6.csv").read_text().splitlines()
    assert text[0].split(",") == PANGEO_COLUMNS
    frame = pd.read_csv(world / "collections/cmip6.csv")
    assert frame["dcpp_init_year"].isna().all()  # empty cells, read back as NaN
    assert frame["zstore"].str.endswith("/").all()
    assert set(frame.loc[frame.source_id == MODEL, "grid_label"]) == {"gn", "gr"}
    tas = frame[
        (frame.experiment_id == "historical")
        & (frame.member_id == MEMBER)
        & (frame.variable_id == "tas")
        & (frame.grid_label == "gn")
    ]
    assert sorted(tas.version) == [20250601, 20260101]
    for variable, height in (("tas", 2.0), ("hurs", 2.0), ("uas", 10.0), ("sfcWind", 10.0)):
        store = frame.zstore[(frame.variable_id == variable)].iloc[0]
        with xr.open_zarr(store) as ds:
            assert float(ds["height"]) == height
            assert ds["height"].attrs["units"] == "m" and ds["height"].attrs["axis"] == "Z"
    with xr.open_zarr(frame.zstore[frame.variable_id == "pr"].iloc[0]) as ds:
        assert "height" not in ds.coords
    # the gr copy is the gn fields regridded: the same weather on another grid
    copies = {}
    for grid in ("gn", "gr"):
        store = tas.zstore[tas.version == 20260101].iloc[0].replace("/gn/", f"/{grid}/")
        with xr.open_zarr(store) as ds:
            copies[grid] = ds["tas"].load()
    assert copies["gn"].shape[1:] != copies["gr"].shape[1:]
    assert bool(copies["gr"].notnull().all())
    daily = [c.mean(["lat", "lon"]) for c in copies.values()]
    assert float(abs(daily[0] - daily[1]).max()) < 0.5  # K
    assert float(xr.corr(*daily)) > 0.999


def test_a_naive_open_of_the_collection_fails_on_height(world: Path) -> None:
    """The trap as users meet it: intake-esm merges tas (2 m) and uas (10 m)."""
    datastore = intake_esm.esm_datastore(str(world / "collections/cmip6.json"))
    subset = datastore.search(
        experiment_id="ssp585", grid_label="gn", variable_id=["tas", "uas"], member_id=MEMBER
    )
    with warnings.catch_warnings(), pytest.raises(Exception) as failed:
        warnings.simplefilter("ignore", FutureWarning)
        subset.to_dataset_dict(progressbar=False)
    assert "conflicting values for variable 'height'" in str(failed.value.__cause__)


def test_catalog_check_lists_the_skipped_datasets(
    world: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one table row per line
    assert main(["catalog", "check", "--catalog", str(world / "catalogs/cmip6-run.yaml")]) == 0
    printed = capsys.readouterr().out
    assert "cmip6: 15 dataset(s) skipped by the selection rules" in printed
    row = next(line for line in printed.splitlines() if "older version" in line)
    assert f"{MODEL}/historical/{MEMBER}" in row and " tas " in row
    assert f"older version {EARLIER} ({LATEST} is read)" in row


def test_default_rules_read_gn_and_the_newest_version(world: Path) -> None:
    catalog = load_run_catalog(str(world / "catalogs/cmip6-run.yaml"))
    source = catalog.source("cmip6")
    listing = list_combos(catalog, source, open_collection(catalog, source))
    assert [c.label for c in listing.combos] == [
        f"{MODEL}/historical/{MEMBER}",
        f"{MODEL}/ssp585/{MEMBER}",
    ]
    for combo in listing.combos:
        assert {g.facets["grid_label"] for g in combo.groups} == {"gn"}
        assert combo.facets["dcpp_init_year"] == ""
        assert not combo.missing
        assert all(".gn." in d and d.endswith(LATEST) for d in combo.datasets)
    historical = listing.combos[0]
    assert _id("historical", "tas") in historical.datasets
    reasons = {s.dataset: s.reason for s in listing.skipped}
    assert reasons[_id("historical", "tas", version=EARLIER)] == (
        f"older version {EARLIER} ({LATEST} is read)"
    )
    # every gr copy (the query's 7 variables on the atmosphere grid x 2 experiments; huss,
    # which the catalog does not read, is not queried), nothing else
    gr = [s for s in listing.skipped if ".gr." in s.dataset]
    assert len(gr) == 14 and len(listing.skipped) == 15
    assert reasons[_id("ssp585", "pr", "gr")] == (
        "grid gr: read on gn, first of selection.grids complete in every experiment of the member"
    )
    # each combination carries its own skipped copies
    assert {s.combination for s in historical.skipped} == {historical.label}
    assert len(historical.skipped) == 8  # 7 gr copies and the earlier tas version


def test_grid_preference_and_retraction(world: Path) -> None:
    def grids(catalog: RunCatalog) -> dict[str, str]:
        source = catalog.source("cmip6")
        combos = list_combos(catalog, source).combos
        # the atmosphere's grid (the first group); the ocean's tos has gn only
        return {c.labels["experiment_id"]: c.groups[0].facets["grid_label"] for c in combos}

    assert grids(_catalog(world, selection={"grids": ["gr", "gn"]})) == {
        "historical": "gr",
        "ssp585": "gr",
    }
    # a retracted gn dataset leaves gn incomplete in ssp585: the whole member moves to gr,
    # so that the scenario is adjusted on the grid of its historical run
    retracted = _catalog(world, selection={"retracted": [_id("ssp585", "pr")]})
    assert grids(retracted) == {"historical": "gr", "ssp585": "gr"}
    listing = list_combos(retracted, retracted.source("cmip6"))
    reasons = {s.dataset: s.reason for s in listing.skipped}
    assert reasons[_id("ssp585", "pr")] == "retracted (listed in selection.retracted)"
    assert reasons[_id("historical", "tas")].startswith("grid gn: read on gr")
    # retracted by asset URL: the same
    frame = pd.read_csv(world / "collections/cmip6.csv")
    url = frame.zstore[frame.zstore.str.contains(f"ssp585/{MEMBER}/day/pr/gn/")].iloc[0]
    assert grids(_catalog(world, selection={"retracted": [url]})) == {
        "historical": "gr",
        "ssp585": "gr",
    }
    # a grid left out of the list is skipped
    only_gr = _catalog(world, selection={"grids": ["gr"]})
    skipped = list_combos(only_gr, only_gr.source("cmip6")).skipped
    assert {s.reason for s in skipped} == {
        f"older version {EARLIER} ({LATEST} is read)",
        "grid gn is not in selection.grids ['gr']",
    }


def test_exact_duplicates_are_skipped(world: Path, tmp_path: Path) -> None:
    """A store listed twice, and a copy of a store at another URL: one is read."""
    frame = pd.read_csv(world / "collections/cmip6.csv", dtype={"dcpp_init_year": str})
    row = frame[
        (frame.variable_id == "psl")
        & (frame.experiment_id == "ssp585")
        & (frame.grid_label == "gn")
        & (frame.member_id == MEMBER)
    ]
    original = row.zstore.iloc[0]
    copy = tmp_path / "mirror" / "psl.zarr"
    shutil.copytree(Path(original.removeprefix("file://")), copy)
    mirrored = row.assign(zstore=copy.as_uri() + "/")
    pd.concat([frame, row, mirrored]).to_csv(tmp_path / "dup.csv", index=False)
    spec = json.loads((world / "collections/cmip6.json").read_text())
    spec["catalog_file"] = str(tmp_path / "dup.csv")
    (tmp_path / "dup.json").write_text(json.dumps(spec))
    catalog = _catalog(world, collection=str(tmp_path / "dup.json"))
    listing = list_combos(catalog, catalog.source("cmip6"))
    psl = [s for s in listing.skipped if s.variable == "psl" and ".gn." in s.dataset]
    first, second = sorted([original, copy.as_uri() + "/"])
    expected = ["listed twice", f"duplicate of {first} (same facets)"]
    assert sorted(s.reason for s in psl) == sorted(expected)
    (ssp,) = [c for c in listing.combos if c.labels["experiment_id"] == "ssp585"]
    assert first in ssp.assets and second not in ssp.assets


def test_a_filled_dcpp_init_year_round_trips(world: Path, tmp_path: Path) -> None:
    """DCPP-style rows (an init year on some rows, empty cells on the others) open too."""
    frame = pd.read_csv(world / "collections/cmip6.csv")  # dcpp_init_year: float, NaN
    frame.loc[frame.experiment_id == "ssp585", "dcpp_init_year"] = 2014.0
    frame.to_csv(tmp_path / "dcpp.csv", index=False)
    spec = json.loads((world / "collections/cmip6.json").read_text())
    spec["catalog_file"] = str(tmp_path / "dcpp.csv")
    (tmp_path / "dcpp.json").write_text(json.dumps(spec))
    catalog = _catalog(world, collection=str(tmp_path / "dcpp.json"))
    source = catalog.source("cmip6")
    datastore = open_collection(catalog, source)
    combos = {c.labels["experiment_id"]: c for c in list_combos(catalog, source, datastore).combos}
    assert combos["historical"].facets["dcpp_init_year"] == ""
    year = combos["ssp585"].facets["dcpp_init_year"]
    assert year in ("2014", "2014.0")  # as the collection's reader gives the cell
    ds = open_combo(catalog, source, combos["ssp585"], datastore)
    assert ds.sizes["time"] == 2 * 365 and "dcpp_init_year" not in ds.dims


def test_empty_dcpp_init_year_round_trips_and_height_options_reach_intake_esm(
    world: Path,
) -> None:
    catalog = load_run_catalog(str(world / "catalogs/cmip6-run.yaml"))
    source = catalog.source("cmip6")
    datastore = open_collection(catalog, source)
    combo = list_combos(catalog, source, datastore).combos[0]
    assert combo.facets["dcpp_init_year"] == ""
    ds = open_combo(catalog, source, combo, datastore)  # drop_variables: [height]
    assert set(VARIABLES) <= set(ds.data_vars)
    assert "height" not in ds.coords and "dcpp_init_year" not in ds.dims
    assert ds.sizes["time"] == 11 * 365  # 2004-2014 in the model's noleap calendar
    # without the option: the layout failure, named
    bare = source.model_copy(update={"xarray_open_kwargs": {}})
    with pytest.raises(SourceError, match="conflicting values for variable 'height'"):
        open_combo(catalog, bare, combo, datastore)
    # or with combine options passed through to intake-esm
    override = bare.model_copy(update={"xarray_combine_by_coords_kwargs": {"compat": "override"}})
    merged = open_combo(catalog, override, combo, datastore)
    assert float(merged["height"]) in (2.0, 10.0)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_run_reads_the_pangeo_layout_and_records_the_selection(
    world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache, model = str(tmp_path / "cache"), tmp_path / "model"
    started = time.perf_counter()
    run_train_job(TrainJob.model_validate(smoke_train_job(world, cache)), model, log=lambda _: None)
    out = str(tmp_path / "results.zarr")
    run = ["run", "--catalog", str(world / "catalogs/cmip6-run.yaml"), "--model", str(model)]
    code = main([*run, "--out", out, "--cache", cache, "--workers", "1"])
    print(f"model and run in {time.perf_counter() - started:.1f} s")
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "selection rules skipped 15 dataset(s)" in printed
    assert "2 done, 0 up to date, 0 failed" in printed
    status = combo_status(out).set_index(["experiment", "source_id", "member_id"])
    historical = json.loads(status.loc[("historical", MODEL, MEMBER), "selection"])
    assert _id("historical", "tas") in historical["datasets"]
    assert all(".gn." in d for d in historical["datasets"])
    skipped = {s["dataset"]: s["reason"] for s in historical["skipped"]}
    assert skipped[_id("historical", "tas", version=EARLIER)].startswith("older version")
    assert skipped[_id("historical", "tas", "gr")].startswith("grid gr: read on gn")
    with open_cube(out) as ds:
        recorded = json.loads(ds.attrs["dataset_selection"])
        results = ds["temperature_mean"].sel(experiment="ssp585", source_id=MODEL).load()
    ((where, selection),) = recorded.items()
    assert where.endswith("[cmip6]")
    assert selection["rules"]["grids"][:2] == ["gn", "gr"]
    assert len(selection["skipped"]) == 15
    assert results.notnull().any()
