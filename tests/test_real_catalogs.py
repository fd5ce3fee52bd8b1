"""The run catalogs shipped for the real archives (catalogs/*.yaml), checked offline.

Nothing here contacts a real host: the remote collections (Pangeo CMIP6,
EURO-CORDEX on AWS, the ARCO-ERA5 store) are checked for the URLs and
``storage_options`` that docs/catalogs.md documents; the local example
collections are opened as intake-esm datastores (their placeholder assets are
never opened); an unreachable collection URL is a closed port on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import intake_esm
import pandas as pd
import pytest

from cascadia.sources.catalog import SourceError, enumerate_combos, open_collection
from cascadia.sources.config import RunCatalog, SourceConfig, load_run_catalog

ROOT = Path(__file__).resolve().parents[1]
CATALOGS = ROOT / "catalogs"
YAMLS = sorted(CATALOGS.glob("*.yaml"))
REGIONS = ["gulf_of_lion_shelf", "tramontane", "mistral"]

ARCO_STORE = "gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3"
PANGEO_CMIP6 = "https://storage.googleapis.com/cmip6/pangeo-cmip6.json"
EURO_CORDEX = "https://euro-cordex.s3.eu-central-1.amazonaws.com/catalog/CORDEX-CMIP5.json"

#: (catalog, source) -> (collection, storage_options) of every source read from the cloud.
REMOTE = {
    ("era5.yaml", "era5"): ("collections/arco-era5.json", {"token": "anon"}),
    ("cmip6.yaml", "cmip6"): (PANGEO_CMIP6, {"token": "anon"}),
    ("cordex.yaml", "euro-cordex"): (EURO_CORDEX, {"anon": True}),
}


def _sources() -> list[tuple[RunCatalog, SourceConfig]]:
    pairs = []
    for path in YAMLS:
        catalog = load_run_catalog(str(path))
        pairs.extend((catalog, source) for source in catalog.sources)
    return pairs


def _local_sources() -> list[tuple[RunCatalog, SourceConfig]]:
    return [(c, s) for c, s in _sources() if "://" not in s.collection]


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
    assert catalog.sources


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
    assert era5.accumulated == {
        "total_precipitation": "period_ending",
        "surface_solar_radiation_downwards": "period_ending",
    }


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


def test_20cr_members_are_the_member_axis():
    catalog = load_run_catalog(str(CATALOGS / "20cr.yaml"))
    source = catalog.source("20cr")
    combos = enumerate_combos(catalog, source)
    members = [c.labels["member_id"] for c in combos]
    assert members == sorted(members) and len(members) > 1
    assert all(m.startswith("mem") and len(m) == 6 for m in members)


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
            "gn",
            f"gs://cmip6/x/{member}/{var}/",
            "",
            "20200101",
        ]
        for member in ("r1i1p1f1", "r2i1p1f1")
        for var in ("tas", "hurs", "pr", "uas", "vas", "sfcWind", "psl")
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
