"""The run catalogs shipped for the real archives (catalogs/*.yaml), checked offline.

Nothing here contacts a real host: the remote collections (Pangeo CMIP6, the
EURO-CORDEX table on AWS, the ARCO-ERA5 store) are checked for the URLs and
``storage_options`` that docs/catalogs.md documents; every shipped collection JSON
is parsed and validated by intake-esm's own schema; the local example collections
are opened as intake-esm datastores (their placeholder assets are never opened);
the shipped EURO-CORDEX copy is read with a local table in the bucket's columns;
an unreachable collection URL is a closed port on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import intake_esm
import pandas as pd
import pytest
from intake_esm.cat import ESMCatalogModel

from cascadia.sources.catalog import SourceError, enumerate_combos, open_collection
from cascadia.sources.config import RunCatalog, SourceConfig, load_run_catalog

ROOT = Path(__file__).resolve().parents[1]
CATALOGS = ROOT / "catalogs"
YAMLS = sorted(CATALOGS.glob("*.yaml"))
REGIONS = ["gulf_of_lion_shelf", "tramontane", "mistral"]

ARCO_STORE = "gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3"
PANGEO_CMIP6 = "https://storage.googleapis.com/cmip6/pangeo-cmip6.json"
#: The table the published EURO-CORDEX collection (and the shipped copy) names.
EURO_CORDEX_TABLE = "https://euro-cordex.s3.eu-central-1.amazonaws.com/catalog/CORDEX.csv"
COLLECTIONS = sorted((CATALOGS / "collections").glob("*.json"))

#: (catalog, source) -> (collection, storage_options) of every source read from the cloud.
REMOTE = {
    ("era5.yaml", "era5"): ("collections/arco-era5.json", {"token": "anon"}),
    ("cmip6.yaml", "cmip6"): (PANGEO_CMIP6, {"token": "anon"}),
    ("cordex.yaml", "euro-cordex"): ("collections/euro-cordex.json", {"anon": True}),
}


def _sources() -> list[tuple[RunCatalog, SourceConfig]]:
    pairs = []
    for path in YAMLS:
        catalog = load_run_catalog(str(path))
        pairs.extend((catalog, source) for source in catalog.sources)
    return pairs


def _remote_table(collection: Path) -> bool:
    return "://" in json.loads(collection.read_text()).get("catalog_file", "")


def _local_sources() -> list[tuple[RunCatalog, SourceConfig]]:
    """Sources whose collection, JSON and table, is in this repository."""
    return [
        (c, s)
        for c, s in _sources()
        if "://" not in s.collection and not _remote_table(Path(c.resolve(s.collection)))
    ]


def _id(pair: tuple[RunCatalog, SourceConfig]) -> str:
    return f"{Path(pair[0].path).name}:{pair[1].name}"


def test_every_expected_catalog_is_shipped():
    names = {p.name for p in YAMLS}
    expected = {"era5.yaml", "era5-cds.yaml", "cmip6.yaml", "cordex.yaml", "20cr.yaml"}
    assert expected | {"era20c.yaml"} <= names


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_catalog_validates_with_the_twin_regions(path: Path):
    catalog = load_run_catalog(str(path))
    assert [r.name for r in catalog.regions] == REGIONS
    assert [r.surface for r in catalog.regions] == ["sea", "all", "all"]
    assert catalog.sources
    assert all(s.land_fraction.variable for s in catalog.sources)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_projections_are_adjusted_against_era5(path: Path):
    catalog = load_run_catalog(str(path))
    if not any(s.role == "projection" for s in catalog.sources):
        assert catalog.bias_adjustment is None
        return
    bias = catalog.bias_adjustment
    assert bias is not None
    assert (bias.reference.catalog, bias.reference.source) == ("era5.yaml", "era5")
    assert (bias.overlap.start, bias.overlap.end) == (1981, 2010)
    reference = load_run_catalog(catalog.resolve(bias.reference.catalog))
    source = reference.source(bias.reference.source)
    assert source.role == "reference"
    assert source.period.start <= 1981 and source.period.end >= 2010
    # The settings docs/bias-adjustment.md measured, for every variable the catalog reads.
    assert set(bias.variables) >= set(catalog.sources[0].variables)
    pr = bias.for_variable("pr")
    assert (pr.kind, pr.group, pr.nquantiles, pr.tail_nodes) == ("*", "time.season", 300, 5e-4)
    assert (pr.adapt_freq_thresh, pr.preserve_mean_change) == ("1 mm/day", True)
    assert {bias.kind_for(v) for v in ("tas", "hurs", "psl", "uas", "vas")} == {"+"}
    assert bias.kind_for("sfcWind") == "*"


@pytest.mark.parametrize(("catalog", "source"), list(REMOTE))
def test_remote_sources_point_where_the_docs_say(catalog: str, source: str):
    config = load_run_catalog(str(CATALOGS / catalog)).source(source)
    collection, storage_options = REMOTE[(catalog, source)]
    assert config.collection == collection
    assert config.storage_options == storage_options
    assert collection in (ROOT / "docs" / "catalogs.md").read_text()


def test_sources_read_from_the_cloud_are_exactly_the_documented_ones():
    cloud = {
        (Path(c.path).name, s.name)
        for c, s in _sources()
        if "://" in s.collection or s.storage_options
    }
    assert cloud == set(REMOTE)


def test_arco_collection_describes_the_one_store_by_variable():
    datastore = intake_esm.esm_datastore(str(CATALOGS / "collections" / "arco-era5.json"))
    control = datastore.esmcat.aggregation_control
    assert "variable_id" in control.groupby_attrs  # multi-variable asset: never merged with itself
    frame = datastore.df
    assert set(frame["path"]) == {ARCO_STORE}
    assert set(frame["format"]) == {"zarr"}  # not zarr3: that format drops storage_options
    assert frame["variable_id"].is_unique
    era5 = load_run_catalog(str(CATALOGS / "era5.yaml")).source("era5")
    assert set(era5.source_variables) <= set(frame["variable_id"])
    assert era5.land_fraction.variable in set(frame["variable_id"])
    assert era5.accumulated == {
        "total_precipitation": "period_ending",
        "surface_solar_radiation_downwards": "period_ending",
    }
    # one global hour per chunk: read cropped, in blocks of a month of chunks per task,
    # which needs a collection that joins nothing (each combination is the one store)
    assert era5.time_block_days == 31 and "chunks" not in era5.xarray_open_kwargs
    assert not control.aggregations


@pytest.mark.parametrize("pair", _local_sources(), ids=_id)
def test_local_collection_is_an_esm_datastore_listing_every_variable(pair):
    catalog, source = pair
    path = Path(catalog.resolve(source.collection))
    assert path.is_file()
    datastore = intake_esm.esm_datastore(str(path))  # the JSON only: assets are placeholders
    frame = datastore.df
    asset = datastore.esmcat.assets.column_name
    assert all(str(uri).startswith(("file:///", "gs://", "s3://")) for uri in frame[asset])
    combos = enumerate_combos(catalog, source, datastore)
    assert combos
    for combo in combos:
        assert not combo.missing, f"{combo.label} lacks {combo.missing}"
        assert all(combo.labels[k] for k in ("source_id", "experiment_id", "member_id"))
        # the shelf averages over sea: every combination finds its land fraction
        assert combo.land_fraction in set(frame[asset]), f"{combo.label}: no land fraction"


def test_20cr_members_are_the_member_axis():
    catalog = load_run_catalog(str(CATALOGS / "20cr.yaml"))
    source = catalog.source("20cr")
    # the template's datastore as such: open_collection refuses placeholder assets
    datastore = intake_esm.esm_datastore(catalog.resolve(source.collection))
    combos = enumerate_combos(catalog, source, datastore)
    members = [c.labels["member_id"] for c in combos]
    assert members == sorted(members) and len(members) > 1
    assert all(m.startswith("mem") and len(m) == 6 for m in members)


@pytest.mark.parametrize("path", COLLECTIONS, ids=lambda p: p.name)
def test_every_shipped_collection_is_valid_json_and_a_valid_esm_collection(path: Path):
    spec = json.loads(path.read_text())  # strict JSON: no trailing or missing commas
    model = ESMCatalogModel.model_validate({**spec, "catalog_file": None, "catalog_dict": []})
    assert model.assets.column_name and model.aggregation_control.variable_column_name
    table = spec["catalog_file"]
    if "://" in table:
        assert table == EURO_CORDEX_TABLE  # the only table read from the network
        return
    frame = intake_esm.esm_datastore(str(path)).df
    assert set(model.aggregation_control.groupby_attrs) <= set(frame.columns)
    assert model.assets.column_name in frame.columns


def test_euro_cordex_copy_reads_the_bucket_table_in_its_columns(tmp_path: Path):
    """The shipped copy with a local table of rows as the bucket's ``CORDEX.csv`` lists
    them (its columns; paths as the upload workflow writes them): the run catalog's
    query and ``combo_id`` name each GCM/RCM simulation."""
    spec = json.loads((CATALOGS / "collections/euro-cordex.json").read_text())
    assert spec["assets"] == {"column_name": "path", "format": "zarr"}
    assert spec["aggregation_control"]["aggregations"] == [
        {"type": "union", "attribute_name": "variable_id"}
    ]
    columns = [a["column_name"] for a in spec["attributes"]]
    simulations = [
        ("CLMcom", "CNRM-CERFACS-CNRM-CM5", "CCLM4-8-17", "v1", "v20140515"),
        ("SMHI", "MPI-M-MPI-ESM-LR", "RCA4", "v1a", "v20131026"),
    ]
    rows = []
    for institute, gcm, rcm, rcm_version, version in simulations:
        for experiment in ("historical", "rcp85"):
            for frequency in ("day", "mon"):
                for variable in ("tas", "hurs", "pr", "uas", "vas", "sfcWind", "psl"):
                    facets = ["cordex", "output", "EUR-11", institute, gcm, experiment]
                    facets += ["r1i1p1", rcm, rcm_version, frequency, variable, version]
                    row = dict(zip(columns, facets, strict=True))
                    row["path"] = "s3://euro-cordex/CMIP5/" + "/".join(facets)
                    rows.append(row)
    pd.DataFrame(rows).to_csv(tmp_path / "CORDEX.csv", index=False)
    (tmp_path / "euro-cordex.json").write_text(json.dumps({**spec, "catalog_file": "CORDEX.csv"}))
    cordex = load_run_catalog(str(CATALOGS / "cordex.yaml"))
    source = cordex.source("euro-cordex")
    datastore = intake_esm.esm_datastore(str(tmp_path / "euro-cordex.json"))
    combos = enumerate_combos(cordex, source, datastore)
    assert sorted(c.label for c in combos) == [
        f"{gcm}_{institute}-{rcm}_{rcm_version}/{experiment}/r1i1p1"
        for institute, gcm, rcm, rcm_version, _ in sorted(simulations, key=lambda s: s[1])
        for experiment in ("historical", "rcp85")
    ]
    assert all(len(c.assets) == 7 and not c.missing for c in combos)  # daily only
    # the driving GCM is each simulation's model family (spread statistics weight it once)
    assert {c.label: c.family for c in combos} == {
        c.label: c.labels["source_id"].split("_")[0] for c in combos
    }
    assert {c.family for c in combos} == {"CNRM-CERFACS-CNRM-CM5", "MPI-M-MPI-ESM-LR"}


def test_multi_variable_netcdf_collections_group_by_variable():
    for name in ("era5-cds.example.json", "era20c.example.json"):
        spec = json.loads((CATALOGS / "collections" / name).read_text())
        assert "variable_id" in spec["aggregation_control"]["groupby_attrs"], name


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("storage_options", [{}, {"token": "anon"}, {"anon": True}])
def test_unreachable_collection_url_says_it_cannot_be_reached(storage_options):
    url = f"http://127.0.0.1:{_closed_port()}/pangeo-cmip6.json"
    cmip6 = load_run_catalog(str(CATALOGS / "cmip6.yaml"))
    source = cmip6.source("cmip6").model_copy(
        update={"collection": url, "storage_options": storage_options}
    )
    with pytest.raises(SourceError, match="cannot be reached"):
        open_collection(cmip6, source)


def test_pangeo_layout_enumerates_one_combination_per_member(tmp_path: Path):
    columns = [
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
    rows = [
        [
            "ScenarioMIP",
            "INST",
            "MODEL",
            "ssp585",
            member,
            "day",
            var,
            grid,
            f"gs://cmip6/x/{member}/{var}/{grid}/",
            "",
            "20200101",
        ]
        for member in ("r1i1p1f1", "r2i1p1f1")
        for var in ("tas", "hurs", "pr", "uas", "vas", "sfcWind", "psl")
        for grid in ("gn", "gr")
    ]
    pd.DataFrame(rows, columns=columns).to_csv(tmp_path / "pangeo.csv", index=False)
    spec = {  # the aggregation_control of the published pangeo-cmip6.json
        "esmcat_version": "0.1.0",
        "id": "pangeo-cmip6-layout",
        "description": "Pangeo CMIP6 layout",
        "catalog_file": "pangeo.csv",
        "attributes": [{"column_name": c, "vocabulary": ""} for c in columns if c != "zstore"],
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
                {
                    "type": "join_new",
                    "attribute_name": "dcpp_init_year",
                    "options": {"coords": "minimal", "compat": "override"},
                },
            ],
        },
    }
    (tmp_path / "pangeo.json").write_text(json.dumps(spec))
    cmip6 = load_run_catalog(str(CATALOGS / "cmip6.yaml"))
    source = cmip6.source("cmip6").model_copy(
        update={"collection": str(tmp_path / "pangeo.json"), "storage_options": {}}
    )
    combos = enumerate_combos(cmip6, source)
    assert sorted(c.labels["member_id"] for c in combos) == ["r1i1p1f1", "r2i1p1f1"]
    # without a combo_id family a model is its own family (its source_id label)
    assert {c.family for c in combos} == {c.labels["source_id"] for c in combos} == {"MODEL"}
    # gn and gr copies give one combination each member (gn), the empty cell stays empty
    assert {g.facets["grid_label"] for c in combos for g in c.groups} == {"gn"}
    assert {c.facets["dcpp_init_year"] for c in combos} == {""}
    first = "CMIP6.ScenarioMIP.INST.MODEL.ssp585.r1i1p1f1.day.hurs.gn.v20200101"
    assert combos[0].datasets[0] == first


def test_the_pangeo_catalog_drops_the_height_coordinate():
    source = load_run_catalog(str(CATALOGS / "cmip6.yaml")).source("cmip6")
    assert source.xarray_open_kwargs == {"drop_variables": ["height"]}
    assert source.selection.grids[0] == "gn" and source.selection.dataset_id is not None
