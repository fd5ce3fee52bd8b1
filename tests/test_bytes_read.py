"""Extraction reads only the chunks that intersect the regions, counted at the fsspec layer.

Why: ARCO-ERA5 is a global store; a pipeline that reads more than the chunks
around the Gulf of Lion does not finish on real data. Two stores, both read
through intake-esm and a run catalog with a byte-counting ``countfile://``
filesystem, the bytes read compared with the sizes of the chunk files that
intersect the regions:

* an ERA5-like hourly Zarr v3 store tiled in 2 x 2 cells over a 30 x 40 grid
  much larger than the regions (which tiles are read);
* a twin world whose ERA5 store has ARCO-ERA5's layout, one hour of the whole
  domain per chunk (the full preset's), for one year: 70,080 chunk files (8 variables), each
  to be read once, by block-read tasks spread over the Dask workers, faster
  than the plain ``xr.open_zarr(...).isel(box).mean()`` loop.
"""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from distributed import Client, get_task_stream
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem
from helpers import load_benchmark, small_preset

from cascadia.run.pipeline import _Entry, _extract_task
from cascadia.sources.cache import PredictorCache, fingerprint
from cascadia.sources.catalog import enumerate_combos, open_collection
from cascadia.sources.config import load_run_catalog
from cascadia.sources.extraction import extract_combo
from cascadia.twin.catalogs import run_catalogs, write_collections
from cascadia.twin.presets import ReanalysisSpec, Years, get_preset
from cascadia.twin.stores import ERA5_NAMES, StoreContext
from cascadia.twin.world import build_world
from cascadia.twin.writers import ZARR3_COMPRESSOR

SPACING = 0.25  # degrees, as ARCO-ERA5
LAT = 47.0 - SPACING * np.arange(30)  # descending, 47.0 .. 39.75 N
LON = SPACING * np.arange(40)  # 0.0 .. 9.75 E
TILE = 2  # cells per chunk along latitude and longitude
HOURS = 744  # 31 days per time chunk, as in ERA5 monthly files
YEAR = 2013
#: Read in the store but not needed by the run catalog: must never be read.
UNUSED = "total_cloud_cover"
MASK = "land_sea_mask"


class _CountingOpener(LocalFileOpener):
    """A local file whose reads add to :class:`CountingFileSystem`'s tally."""

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        data = super().read(*args, **kwargs)
        CountingFileSystem.add(self.path, len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        n = super().readinto(buffer)
        CountingFileSystem.add(self.path, n or 0)
        return n


class CountingFileSystem(LocalFileSystem):
    """``countfile://``: the local filesystem, counting every byte read, per file.

    Counting file reads (not ``cat_file``) catches every route: zarr's store
    wrapper calls ``cat_file``, which reads through ``_open``.
    """

    protocol = ("countfile",)
    reads: ClassVar[dict[str, int]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def add(cls, path: str, n: int) -> None:
        with cls._lock:
            cls.reads[path] = cls.reads.get(path, 0) + n

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls.reads = {}

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        path = str(path)
        if path.startswith("countfile://"):
            path = path[len("countfile://") :]
        return super()._strip_protocol(path)

    def unstrip_protocol(self, name: str) -> str:
        return f"countfile://{self._strip_protocol(name)}"

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> Any:
        if "r" not in mode:
            return super()._open(path, mode, block_size, **kwargs)
        return _CountingOpener(self._strip_protocol(path), mode, fs=self, **kwargs)


fsspec.register_implementation("countfile", CountingFileSystem, clobber=True)


def _era5_like(rng: np.random.Generator) -> xr.Dataset:
    """Two months of hourly ERA5-like fields (ARCO names and units) on the large grid."""
    time = pd.date_range(f"{YEAR}-01-01", periods=2 * HOURS, freq="h")
    shape = (time.size, LAT.size, LON.size)
    tas = 282.0 + rng.normal(0.0, 2.0, shape)
    values = {
        "2m_temperature": tas,
        "2m_dewpoint_temperature": tas - 3.0 - np.abs(rng.normal(0.0, 2.0, shape)),
        "10m_u_component_of_wind": rng.normal(0.0, 5.0, shape),
        "10m_v_component_of_wind": rng.normal(0.0, 5.0, shape),
        "mean_sea_level_pressure": 101_300.0 + rng.normal(0.0, 600.0, shape),
        "total_precipitation": rng.gamma(0.3, 2e-4, shape),
        "surface_solar_radiation_downwards": rng.uniform(0.0, 2e6, shape),
        "sea_surface_temperature": tas + 3.0,
        UNUSED: rng.uniform(0.0, 1.0, shape),
    }
    names = {
        **ERA5_NAMES,
        "sea_surface_temperature": ("Sea surface temperature", "K", "sst"),
        UNUSED: ("Total cloud cover", "(0 - 1)", "tcc"),
    }
    ds = xr.Dataset(
        {
            name: (
                ("time", "latitude", "longitude"),
                data.astype("float32"),
                {"long_name": names[name][0], "units": names[name][1]},
            )
            for name, data in values.items()
        },
        coords={"time": time, "latitude": LAT, "longitude": LON},
    )
    # the shelf region averages over sea: the static land-sea mask is read too
    land = (LAT[:, None] > 43.5) | (LON[None, :] < 3.0)
    ds[MASK] = (("latitude", "longitude"), land.astype("float32"), {"units": "(0 - 1)"})
    return ds


@pytest.fixture(scope="module")
def tiled(tmp_path_factory) -> dict[str, Any]:
    """The tiled store, its collection and a run catalog reading it through ``countfile://``."""
    root = tmp_path_factory.mktemp("tiled")
    store = root / "era5-tiled.zarr"
    ds = _era5_like(np.random.default_rng(0))
    encoding = {
        name: {"chunks": (HOURS, TILE, TILE)[-ds[name].ndim :], "compressors": [ZARR3_COMPRESSOR]}
        for name in ds.data_vars
    }
    with warnings.catch_warnings():
        # consolidated v3 metadata is an extension; ARCO-ERA5 carries it as well
        warnings.filterwarnings("ignore", message=".*Consolidated metadata.*")
        ds.to_zarr(store, zarr_format=3, consolidated=True, encoding=encoding)
    ctx = StoreContext(root=str(root))
    for name in ds.data_vars:
        ctx.add_row(
            "era5",
            source_id="ERA5",
            experiment_id="reanalysis",
            member_id="r1",
            variable_id=name,
            path=f"countfile://{store}",
            format="zarr",
        )
    write_collections(ctx)
    spec = run_catalogs(get_preset("tiny"))["reanalysis"]
    era5 = next(s for s in spec["sources"] if s["name"] == "era5")
    spec["sources"] = [{**era5, "period": {"start": YEAR, "end": YEAR}}]
    (root / "catalogs").mkdir()
    path = root / "catalogs" / "tiled.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return {"store": store, "catalog": str(path)}


def intersecting_chunks(store: Path, variables: list[str], regions: list[Any]) -> list[Path]:
    """Chunk files of ``variables`` that intersect the regions' block, margin included.

    crop_to_regions keeps the grid cells whose centres lie within the regions'
    bounding box widened by one grid spacing on each side (the margin cell lets
    area weights of partly covered border cells be computed); the chunks to read
    are the 2 x 2 tiles holding any of those cells, at every time chunk of the
    period (here all of them).
    """
    south = min(r.lat_min for r in regions) - SPACING
    north = max(r.lat_max for r in regions) + SPACING
    west = min(r.lon_min for r in regions) - SPACING
    east = max(r.lon_max for r in regions) + SPACING
    rows = np.flatnonzero((south <= LAT) & (north >= LAT))
    cols = np.flatnonzero((west <= LON) & (east >= LON))
    tiles_y = range(rows.min() // TILE, rows.max() // TILE + 1)
    tiles_x = range(cols.min() // TILE, cols.max() // TILE + 1)
    return [
        store / name / "c" / str(t) / str(y) / str(x)
        for name in variables
        for t in range(2)
        for y in tiles_y
        for x in tiles_x
    ] + [store / MASK / "c" / str(y) / str(x) for y in tiles_y for x in tiles_x]


def test_extraction_reads_only_the_intersecting_chunks(tiled: dict[str, Any]) -> None:
    """Bytes read <= 1.2 x the intersecting chunks' bytes, and far below the store's size."""
    catalog = load_run_catalog(tiled["catalog"])
    (source,) = catalog.sources
    datastore = open_collection(catalog, source)
    (combo,) = enumerate_combos(catalog, source, datastore)
    store: Path = tiled["store"]

    CountingFileSystem.reset()
    data = extract_combo(catalog, source, combo, datastore).data.compute()
    reads = dict(CountingFileSystem.reads)

    assert dict(data.sizes) == {"time": 2 * HOURS // 24, "region": 3}
    expected = intersecting_chunks(store, source.source_variables, catalog.regions)
    expected_bytes = sum(p.stat().st_size for p in expected)
    store_bytes = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    read_bytes = sum(reads.values())
    arrays = {*source.source_variables, UNUSED, MASK}
    chunks_read = {Path(p) for p in reads if Path(p).relative_to(store).parts[0] in arrays}
    print(
        f"read {read_bytes} B in {len(reads)} files; intersecting chunks {expected_bytes} B "
        f"in {len(expected)} files; store {store_bytes} B; "
        f"ratio {read_bytes / expected_bytes:.3f}"
    )
    assert chunks_read == set(expected), (
        f"{len(chunks_read - set(expected))} chunks read outside the block, "
        f"{len(set(expected) - chunks_read)} intersecting chunks not read"
    )
    assert not any(f"/{UNUSED}/" in p for p in reads), "a variable the catalog does not use"
    assert read_bytes <= 1.2 * expected_bytes
    assert read_bytes < 0.2 * store_bytes
    assert int(data.to_array().notnull().sum()) > 0.9 * data.to_array().size


# ----------------------------------------------- the twin's ERA5 in ARCO's layout

HOURLY_YEAR = 2014


@pytest.fixture(scope="module")
def hourly(tmp_path_factory) -> dict[str, Any]:
    """A small world whose ERA5 store has one hour of the whole domain per chunk.

    Its collection is rewritten to read the store through ``countfile://``.
    """
    world = tmp_path_factory.mktemp("hourly") / "world"
    era5 = ReanalysisSpec(years=Years(start=HOURLY_YEAR, end=HOURLY_YEAR), resolution=0.5)
    build_world(str(world), small_preset("hourly", era5=era5, era5_time_chunk=1), seed=5)
    collection = world / "collections" / "era5.csv"
    collection.write_text(collection.read_text().replace("file://", "countfile://"))
    catalog = load_run_catalog(str(world / "catalogs" / "reanalysis.yaml"))
    source = catalog.source("era5")
    datastore = open_collection(catalog, source)
    (combo,) = enumerate_combos(catalog, source, datastore)
    store = world / "reanalysis" / "era5" / "era5-hourly-single-levels.zarr"
    return {"catalog": catalog, "source": source, "combo": combo, "store": store}


@pytest.mark.slow
def test_one_hour_chunks_are_read_once_in_blocks_on_every_worker(hourly, tmp_path) -> None:
    """The run's extraction task: every chunk read once, ~744 per task, on both workers."""
    catalog, source, combo, store = (hourly[k] for k in ("catalog", "source", "combo", "store"))
    assert source.time_block_days == 31
    entry = _Entry(catalog, source, combo, fingerprint(catalog, source, combo))
    cache = PredictorCache(str(tmp_path / "cache"))

    CountingFileSystem.reset()
    with (
        Client(processes=False, n_workers=2, threads_per_worker=1) as client,
        get_task_stream(client) as stream,
    ):
        url = client.submit(_extract_task, entry, cache, pure=False).result()
    reads = dict(CountingFileSystem.reads)

    # every chunk holds the whole domain, so every chunk of the period intersects, except
    # the first hour of the amounts stamped at the end of their hour (it ends the day before)
    chunks = {p for name in source.source_variables for p in (store / name / "c").rglob("*")}
    chunks = {p for p in chunks if p.is_file()} - {
        store / name / "c" / "0" / "0" / "0" for name in source.accumulated
    }
    n_vars = len(source.source_variables)  # 8: seven atmospheric and the sea surface
    assert n_vars == 8
    assert len(chunks) == n_vars * 8760 - 2
    chunk_bytes = sum(p.stat().st_size for p in chunks)
    read_bytes = sum(reads.values())
    chunks_read = {Path(p) for p in reads if "/c/" in p and "/time/" not in p}
    print(
        f"read {read_bytes} B in {len(reads)} files; chunks {chunk_bytes} B in "
        f"{len(chunks)} files; ratio {read_bytes / chunk_bytes:.3f}"
    )
    # besides: the grid's coordinates and the land-sea mask, one chunk each
    others = {store / c / "c" / "0" for c in ("latitude", "longitude")}
    assert chunks_read - chunks == others | {store / "land_sea_mask" / "c" / "0" / "0"}
    assert chunks <= chunks_read
    assert read_bytes <= 1.2 * chunk_bytes

    # read tasks: 12 blocks of up to 31 days per variable (70,080 chunks in 96 tasks), run
    # by both workers; dask fuses some reads with what follows into tasks of longer names
    names = [str(t["key"][0] if isinstance(t["key"], tuple) else t["key"]) for t in stream.data]
    blocks = [
        t
        for t, name in zip(stream.data, names, strict=True)
        if "xarray-" in name and not name.startswith("original-")
    ]
    assert len(blocks) == n_vars * 12
    assert len({t["worker"] for t in blocks}) == 2

    daily = cache.open(url)
    assert dict(daily.sizes) == {"time": 365, "region": 3}
    assert int(daily.to_array().notnull().sum()) > 0.99 * daily.to_array().size


@pytest.mark.slow
def test_block_reads_beat_the_plain_xarray_loop(hourly) -> None:
    """cascadia's extraction against ``benchmarks/extraction.py``'s plain loop, same run.

    One variable (2 m temperature) and one region (the shelf) keep the plain loop
    within the test's time: on one-hour chunks it is ~26k dask tasks per region and
    variable for a year (the trap of issue 12; the benchmark measures all of them).
    """
    catalog, source, combo = (hourly[k] for k in ("catalog", "source", "combo"))
    catalog = catalog.model_copy(update={"regions": catalog.regions[:1]})
    tas = source.model_copy(
        update={"variables": {"tas": "2m_temperature"}, "derived": {}, "accumulated": {}}
    )
    bench = load_benchmark("extraction")
    started = time.perf_counter()
    ours = extract_combo(catalog, tas, combo).data.compute()
    seconds_ours = time.perf_counter() - started
    started = time.perf_counter()
    plain = bench.baseline(combo.assets[0], catalog, tas)
    seconds_plain = time.perf_counter() - started
    print(f"cascadia {seconds_ours:.1f} s, plain loop {seconds_plain:.1f} s")
    assert ours.sizes["time"] == plain.sizes["time"] == 365
    # the same weather: the plain box mean over every cell, cascadia's area-weighted over
    # the shelf's sea cells (a sea region), so the series differ but follow each other
    r = np.corrcoef(ours.tas.squeeze(), plain["2m_temperature"].squeeze())[0, 1]
    assert r > 0.95
    assert seconds_plain / seconds_ours > 1.0
