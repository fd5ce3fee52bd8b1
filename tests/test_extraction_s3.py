"""The same extraction through intake-esm from a local folder and from a loopback S3 bucket.

Why: the real archives (ARCO-ERA5, Pangeo CMIP6, EURO-CORDEX) live in object
storage and are reached through intake-esm collections, not through s3fs
directly; a bug that only bites behind intake-esm (storage options dropped or
rejected, relative catalog files, NetCDF over HTTP) is invisible to a local
test. The twin world is written twice with the same seed, once to ``tmp_path``
and once straight into a bucket of a real S3 API server (moto, in its own
process); run catalogs, collections and assets of the copy are read over
``s3://`` only, and the computed predictors must be identical.
"""

from __future__ import annotations

import json
import re
from typing import Any

import dask
import dask.array
import fsspec
import pytest
import s3_server
import s3fs
import xarray as xr

from cascadia.sources.catalog import enumerate_combos, open_collection
from cascadia.sources.config import RunCatalog, SourceConfig, load_run_catalog
from cascadia.sources.extraction import extract_combo
from cascadia.twin.presets import Preset, get_preset
from cascadia.twin.world import build_world

pytestmark = pytest.mark.s3
s3_options = s3_server.s3_options

SEED = 0


def _trimmed_tiny() -> Preset:
    """``tiny`` with only the stores these tests read.

    Why: moto answers ~100 PUTs a second here and the full tiny world is ~5000
    objects (45-70 s to write); two CMIP sources (noleap A, 360_day B) with one
    member and one CORDEX run cut it to ~1800 objects. Same physics, same code path.
    """
    tiny = get_preset("tiny")
    return tiny.model_copy(
        update={
            "cmip_sources": tiny.cmip_sources[:2],
            "cmip_members": 1,
            "cordex": tiny.cordex[:1],
            "cordex_experiments": ("historical",),
        }
    )


#: (run catalog, source, combination label, calendar of the stored Zarr time axis)
CASES = [
    ("reanalysis", "era5", "ERA5/reanalysis/r1", None),  # Zarr v3, hourly
    ("reanalysis", "20cr", "20CRv3/reanalysis/mem001", None),  # NetCDF (h5netcdf)
    ("cmip6", "cmip6", "TWIN-ESM-A/historical/r1i1p1f1", "noleap"),  # Zarr v2
    ("cmip6", "cmip6", "TWIN-ESM-B/ssp585/r1i1p1f1", "360_day"),
    ("cordex", "cordex", "TWIN-ESM-A_TWIN-RCM-X/historical/r1i1p1f1", None),  # rotated, NetCDF
]


def _absolute_catalog_files(root: str, storage_options: dict[str, Any]) -> None:
    """Make each collection's ``catalog_file`` an absolute URL (a no-op once the writer does).

    Why: intake-esm 2025.12.12 resolves a relative ``catalog_file`` against the
    JSON's protocol-less path (``bucket/world/collections``) and opens that as a
    *local* file: a collection in a bucket is unreadable unless the CSV is named
    by its full URL. Local worlds are unaffected.
    """
    fs, path = fsspec.core.url_to_fs(root, **storage_options)
    for collection in fs.glob(f"{path}/collections/*.json"):
        spec = json.loads(fs.cat_file(collection))
        if "://" not in spec["catalog_file"]:
            folder = collection.rsplit("/", 1)[0]
            spec["catalog_file"] = f"s3://{folder}/{spec['catalog_file']}"
            fs.pipe_file(collection, (json.dumps(spec, indent=2) + "\n").encode())
    fs.invalidate_cache()


@pytest.fixture(scope="module")
def worlds(tmp_path_factory, s3_options) -> dict[str, tuple[str, dict[str, Any]]]:
    """The same world twice: ``local`` (a folder) and ``s3`` (a bucket), with their options."""
    preset = _trimmed_tiny()
    local = str(tmp_path_factory.mktemp("world-local") / "world")
    build_world(local, preset, seed=SEED)
    remote = f"s3://{s3_server.BUCKET}/world"
    build_world(remote, preset, seed=SEED, storage_options=s3_options)
    _absolute_catalog_files(remote, s3_options)
    return {"local": (local, {}), "s3": (remote, s3_options)}


def _open(
    root: str, options: dict[str, Any], catalog_name: str, source_name: str, label: str
) -> tuple[RunCatalog, SourceConfig, Any, Any]:
    """Run catalog (read through fsspec), its source reading with ``options``, datastore, combo."""
    catalog = load_run_catalog(f"{root}/catalogs/{catalog_name}.yaml", options or None)
    # the collection (JSON + CSV) and the assets each take their own options
    source = catalog.source(source_name).model_copy(
        update={"storage_options": options, "collection_storage_options": options}
    )
    datastore = open_collection(catalog, source)
    combos = {c.label: c for c in enumerate_combos(catalog, source, datastore)}
    assert label in combos, sorted(combos)
    return catalog, source, datastore, combos[label]


#: A Zarr chunk key (v2 ``0.0.0`` or v3 ``c/0/0/0``) under the array's folder.
CHUNK_KEY = re.compile(r"/(?P<array>[^/]+)/(?:c/)?\d+(?:[./]\d+)*$")


@pytest.fixture
def s3_gets(monkeypatch) -> list[tuple[str, int]]:
    """Every whole-object GET s3fs makes (path, bytes), in order.

    Why: zarr's ``FsspecStore`` reads each chunk with ``_cat_file``; recording it
    (the request still goes to the server) shows *which* chunks were read *when*.
    """
    gets: list[tuple[str, int]] = []
    original = s3fs.S3FileSystem._cat_file

    async def recording(self, path, *args, **kwargs):
        data = await original(self, path, *args, **kwargs)
        gets.append((path, len(data)))
        return data

    monkeypatch.setattr(s3fs.S3FileSystem, "_cat_file", recording)
    return gets


def _data_chunks(gets: list[tuple[str, int]], variables: list[str]) -> list[str]:
    """Paths of chunks of the given data variables among the GETs."""
    return [
        path
        for path, _ in gets
        if (match := CHUNK_KEY.search(path)) and match["array"] in variables
    ]


@pytest.mark.parametrize(("catalog_name", "source_name", "label", "calendar"), CASES)
def test_s3_extraction_through_intake_esm_equals_local(
    worlds, s3_gets, catalog_name: str, source_name: str, label: str, calendar: str | None
) -> None:
    """Identical predictors from the bucket and the folder; the bucket copy is read lazily.

    Lazy means: no chunk of a data variable is fetched before ``.compute()``.
    Not *no dask task at all*: intake-esm opens assets through
    ``dask.compute(delayed opens)`` and, for unions of one-variable stores, its
    ``combine_by_coords`` loads the shared bounds (``time_bnds``...) to compare
    them; crop_to_regions loads 2-D ``lat``/``lon`` of rotated grids. Checked on
    the Zarr assets, whose chunks are separate objects; NetCDF over s3fs is
    read through 5 MB readahead blocks (a tiny file in one GET at open).
    """
    local_root, _ = worlds["local"]
    s3_root, options = worlds["s3"]
    catalog, source, datastore, combo = _open(s3_root, options, catalog_name, source_name, label)
    assert catalog.path.startswith("s3://")
    assert datastore.esmcat.catalog_file.startswith("s3://")
    assert combo.assets and all(a.startswith("s3://") for a in combo.assets), combo.assets
    if calendar:
        stored = xr.open_zarr(combo.assets[0], storage_options=options, decode_times=False)
        assert stored["time"].attrs["calendar"] == calendar

    s3_gets.clear()
    remote = extract_combo(catalog, source, combo, datastore).data
    assert all(isinstance(da.data, dask.array.Array) for da in remote.data_vars.values())
    variables = source.source_variables
    zarr_assets = all(".nc" not in a for a in combo.assets)
    if zarr_assets:
        assert _data_chunks(s3_gets, variables) == [], "data read before .compute()"
    opened = len(s3_gets)
    remote = remote.compute()
    if zarr_assets:
        assert len(_data_chunks(s3_gets[opened:], variables)) >= len(source.variables)

    ref_catalog, ref_source, ref_store, ref_combo = _open(
        local_root, {}, catalog_name, source_name, label
    )
    assert all(a.startswith("file://") for a in ref_combo.assets)
    local = extract_combo(ref_catalog, ref_source, ref_combo, ref_store).data.compute()

    assert remote.sizes["time"] > 300 and remote.sizes["region"] == 3
    assert set(source.canonical_variables) <= set(remote.data_vars)
    assert int(remote.to_array().notnull().sum()) > 0.9 * remote.to_array().size
    # intake-esm stamps the asset path and the key of whichever dataset the merge
    # kept first (thread completion order) into the global attributes
    assert set(_bookkeeping(remote.attrs)) == set(_bookkeeping(local.attrs))
    remote.attrs = _without_bookkeeping(remote.attrs)
    local.attrs = _without_bookkeeping(local.attrs)
    xr.testing.assert_identical(remote, local)


def _bookkeeping(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k.startswith("intake_esm")}


def _without_bookkeeping(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if not k.startswith("intake_esm")}
