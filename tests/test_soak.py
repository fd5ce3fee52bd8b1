"""A soak of scheduled reprocessing: 30 passes, each after a random edit of the inputs.

Issue 17: whatever changes between passes - a chunk of an input store rewritten, a chunk
deleted and later restored, a NetCDF file rewritten, a new member catalogued - the store
after each pass must equal what a clean run on the same inputs writes (every listed
combination's status, values and the spread statistics), the pass must recompute exactly
the combinations whose inputs changed, and disk use must stay bounded: the store near a
clean run's size, the predictor cache not growing with every pass.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import yaml
import zarr
from helpers import two_year_preset, world_and_smoke_model

from cascadia.run.pipeline import run_pipeline
from cascadia.run.store import COMBO_DIMS, RESULT_VARS, combo_status, open_cube, open_spread
from cascadia.service.reprocess import reprocess_pass
from cascadia.sources.cache import KEEP_VERSIONS
from cascadia.sources.catalog import enumerate_combos, open_collection
from cascadia.sources.config import load_run_catalog
from cascadia.twin.presets import ReanalysisSpec, Years

PASSES = 30
PRESET = two_year_preset("soak").model_copy(
    update={
        "twentycr": ReanalysisSpec(years=Years(start=2013, end=2014), resolution=3.0, members=5)
    }
)
ERA5 = ("reanalysis", "ERA5", "r1")
ERA20C = ("reanalysis", "ERA-20C", "r1")
CMIP_HIST = ("historical", "TWIN-ESM-A", "r1i1p1f1")
CMIP_SSP = ("ssp585", "TWIN-ESM-A", "r1i1p1f1")
#: Which combinations read each editable input (a reference's chunk: the reference and
#: the projections adjusted against it; a historical run's: its scenario too, whose
#: adjustment it anchors).
READERS = {
    "era5": {ERA5, CMIP_HIST, CMIP_SSP},
    "cmip-historical": {CMIP_HIST, CMIP_SSP},
    "cmip-ssp585": {CMIP_SSP},
    "era20c": {ERA20C},
}

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def _chunk_index(array: zarr.Array) -> int:
    """The time chunk the edits touch: the second one, or the only one."""
    return min(1, -(-array.shape[0] // array.chunks[0]) - 1)


def _shift(store: Path, variable: str, kelvin: float) -> None:
    """New values in one time chunk of one variable of an input store (rewritten through
    zarr, as a producer updating it would)."""
    array = zarr.open_array(str(store / variable), mode="r+")
    start = _chunk_index(array) * array.chunks[0]
    stop = min(start + array.chunks[0], array.shape[0])
    array[start:stop] = array[start:stop] + np.float32(kelvin)


def _chunk_file(store: Path, variable: str) -> Path:
    """The file of that chunk (key "i.0.0" of zarr 2, "c/i/0/0" of zarr 3)."""
    index = str(_chunk_index(zarr.open_array(str(store / variable), mode="r")))
    files = [p for p in (store / variable).rglob("*") if p.is_file()]
    chunks = [p for p in files if not p.name.startswith(".") and p.name != "zarr.json"]
    keys = {p: p.relative_to(store / variable).as_posix().removeprefix("c/") for p in chunks}
    return sorted(p for p, key in keys.items() if key.replace("/", ".").split(".")[0] == index)[0]


def _catalogs(world: Path, members: int) -> list[str]:
    """Run catalogs listing the first ``members`` 20CR members and the CMIP runs."""
    catalogs = world / "catalogs"
    reanalysis = yaml.safe_load((catalogs / "reanalysis.yaml").read_text())
    for source in reanalysis["sources"]:
        if source["name"] == "20cr":
            source["query"]["member_id"] = [f"mem{m:03d}" for m in range(1, members + 1)]
    cmip = yaml.safe_load((catalogs / "cmip6.yaml").read_text())
    cmip["sources"][0]["query"]["experiment_id"] = ["historical", "ssp585"]
    cmip["bias_adjustment"]["min_overlap_years"] = 1.5  # a two-year world
    paths = [catalogs / "reanalysis-soak.yaml", catalogs / "cmip6-soak.yaml"]
    paths[0].write_text(yaml.safe_dump(reanalysis))
    paths[1].write_text(yaml.safe_dump(cmip))
    return [str(p) for p in paths]


def _asset(catalog_path: str, source: str, experiment: str, part: str) -> Path:
    """The local folder of one asset a combination reads (after the selection rules)."""
    catalog = load_run_catalog(catalog_path)
    config = catalog.source(source)
    combos = enumerate_combos(catalog, config, open_collection(catalog, config))
    (combo,) = [c for c in combos if c.labels["experiment_id"] == experiment]
    (url,) = [a for a in combo.assets if part in a]
    return Path(url.removeprefix("file://"))


class Inputs:
    """The world's editable inputs and their state: which chunks are flipped or deleted,
    how many members are listed. An edit returns the combinations it touches."""

    def __init__(self, world: Path, rng: random.Random) -> None:
        self.world, self.rng = world, rng
        self.members = 2
        reanalysis, cmip = self.catalogs()
        self.stores = {
            "era5": (_asset(reanalysis, "era5", "reanalysis", "era5"), "2m_temperature"),
            "cmip-historical": (_asset(cmip, "cmip6", "historical", "/day/tas/"), "tas"),
            "cmip-ssp585": (_asset(cmip, "cmip6", "ssp585", "/day/tas/"), "tas"),
        }
        self.backup: dict[str, tuple[Path, bytes]] = {}
        self.netcdf = sorted((world / "reanalysis/era20c").glob("*sfc*.nc"))[0]
        self.deleted: set[str] = set()

    def catalogs(self) -> list[str]:
        return _catalogs(self.world, self.members)

    def edit(self) -> tuple[str, set[tuple[str, str, str]]]:
        kinds = ["flip", "flip", "netcdf", "delete"] + (["member"] if self.members < 5 else [])
        kind = self.rng.choice(kinds)
        if kind == "member":
            self.members += 1
            return f"new member mem{self.members:03d}", {
                ("reanalysis", "20CRv3", f"mem{self.members:03d}")
            }
        if kind == "netcdf":
            with xr.open_dataset(self.netcdf) as ds:
                changed = ds.load()
            changed["t2m"] = changed["t2m"] + self.rng.choice([-0.5, 0.5])
            changed.to_netcdf(self.netcdf.with_suffix(".new"))
            self.netcdf.with_suffix(".new").replace(self.netcdf)
            return "ERA-20C file rewritten", READERS["era20c"]
        if kind == "delete":
            name = self.rng.choice(["cmip-ssp585", "cmip-historical"])
            if name in self.deleted:
                chunk, data = self.backup.pop(name)
                chunk.write_bytes(data)
                self.deleted.discard(name)
                return f"{name} chunk restored", READERS[name]
            chunk = _chunk_file(*self.stores[name])
            self.backup[name] = (chunk, chunk.read_bytes())
            chunk.unlink()
            self.deleted.add(name)
            return f"{name} chunk deleted", READERS[name]
        name = self.rng.choice([n for n in self.stores if n not in self.deleted])
        _shift(*self.stores[name], self.rng.choice([-0.5, 0.5]))
        return f"{name} chunk rewritten", READERS[name]


@pytest.fixture(scope="module")
def soak_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("soak")
    world_and_smoke_model(root, PRESET)
    return {"root": root, "model": root / "model", "cache": str(root / "cache")}


def _du(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _assert_equals_clean(store: str, clean: str, listed: set[tuple[str, str, str]]) -> None:
    """Every listed combination's status and results, and the spread, as a clean run's."""
    ours = combo_status(store).set_index(list(COMBO_DIMS))
    theirs = combo_status(clean).set_index(list(COMBO_DIMS))
    assert "writing" not in set(ours["status"])
    assert set(theirs.index) == listed
    for combo in listed:
        assert ours.loc[combo, "status"] == theirs.loc[combo, "status"], combo
    a, b = open_cube(store, spread=False), open_cube(clean, spread=False)
    for combo in listed:
        where = dict(zip(COMBO_DIMS, combo, strict=True))
        for name in RESULT_VARS:
            if name in b:
                np.testing.assert_allclose(
                    a[name].sel(where).values,
                    b[name].sel(where).values,
                    rtol=1e-5,
                    atol=1e-6,
                    equal_nan=True,
                    err_msg=f"{name} of {'/'.join(combo)}",
                )
    spread_a, spread_b = open_spread(store), open_spread(clean)
    assert (spread_a is None) == (spread_b is None)
    if spread_b is not None:
        for name in spread_b.data_vars:
            np.testing.assert_allclose(
                spread_a[name].values,
                spread_b[name].values,
                rtol=1e-5,
                atol=1e-6,
                equal_nan=True,
                err_msg=f"spread {name}",
            )


def _chunk_files(store: str, combos: set[tuple[str, str, str]]) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every result chunk of the given combinations (chunk keys start
    with the combination's index along ``combo``)."""
    with xr.open_zarr(store) as ds:
        order = list(zip(*([str(x) for x in ds[d].values] for d in COMBO_DIMS), strict=True))
    prefixes = tuple(f"{order.index(c)}." for c in combos)
    found = {}
    for name in RESULT_VARS:
        folder = Path(store) / name
        for file in folder.iterdir() if prefixes and folder.exists() else []:
            if file.name.startswith(prefixes):
                found[f"{name}/{file.name}"] = (file.read_bytes(), file.stat().st_mtime_ns)
    return found


def _versions_per_product(cache: str) -> int:
    """The most versions of one cached product of one combination in the cache."""
    most = 0
    for folder in (p for p in Path(cache).glob("*/*") if p.is_dir()):
        names = [p.name for p in folder.iterdir()]
        kinds = [n.split("-", 1)[0] for n in names if n.endswith(".zarr.done")]
        kinds += ["predictors" for n in names if n.endswith(".json")]
        most = max([most, *(kinds.count(k) for k in set(kinds))])
    return most


def test_thirty_reprocess_passes_with_random_edits_stay_equal_to_a_clean_run(
    soak_world: dict[str, Any], tmp_path: Path
) -> None:
    """After every pass: exactly the edited inputs' combinations (and those that failed
    before) were recomputed, the others' chunks are untouched, a combination fails exactly
    while an input it reads has a deleted chunk and then reads as NaN, nothing is left
    `writing`, and the cache holds at most two versions of anything. Every tenth pass: the
    store equals a clean run on the same inputs, and is no larger than 1.2x the clean
    run's store (a clean run costs a pass; after every pass it would double the soak)."""
    from distributed import Client

    rng = random.Random(17)
    inputs = Inputs(soak_world["root"] / "world", rng)
    store, cache = str(tmp_path / "results.zarr"), soak_world["cache"]
    sizes, seconds, compared = [], [], 0
    with Client(processes=False, n_workers=1, threads_per_worker=2) as client:
        first = reprocess_pass(
            inputs.catalogs(), soak_world["model"], store, client, cache=cache, command="soak"
        )
        assert first.ok and first.count("appended") == 6
        failed: set[tuple[str, str, str]] = set()
        stored = set(map(tuple, combo_status(store)[list(COMBO_DIMS)].values))
        for n in range(1, PASSES + 1):
            what, touched = inputs.edit()
            untouched = stored - touched - failed
            before = _chunk_files(store, untouched)
            started = time.perf_counter()
            summary = reprocess_pass(
                inputs.catalogs(), None, store, client, cache=cache, command="soak"
            )
            seconds.append(time.perf_counter() - started)
            print(f"pass {n:2d}: {what}: {summary.counts()} ({seconds[-1]:.1f} s)")
            rerun = {r.combo for r in summary.rows if r.outcome != "unchanged"}
            # what the edit touched, and what failed before (retried by every pass)
            assert rerun == touched | failed, (n, what, summary.rows)
            assert summary.count("not in catalog") == 0
            assert _chunk_files(store, untouched) == before, (n, what)
            failed = {r.combo for r in summary.rows if r.outcome == "failed"}
            broken = set().union(*(READERS[name] for name in inputs.deleted))
            assert failed == broken, (n, what, summary.rows)
            status = combo_status(store).set_index(list(COMBO_DIMS))["status"]
            assert set(status[status != "done"].index) == failed
            assert _chunk_files(store, failed) == {}  # no data left: they read as NaN
            stored = set(status.index)
            assert _versions_per_product(cache) <= KEEP_VERSIONS
            if n % 10:
                continue
            clean = str(tmp_path / f"clean-{n}.zarr")
            run_pipeline(inputs.catalogs(), soak_world["model"], clean, cache=cache, client=client)
            listed = set(combo_status(clean).set_index(list(COMBO_DIMS)).index)
            _assert_equals_clean(store, clean, listed)
            sizes.append(_du(store) / _du(clean))
            shutil.rmtree(clean)
            compared += 1
    print(
        f"{PASSES} passes, {np.mean(seconds):.1f} s each on average; compared with a clean run "
        f"{compared} times; store size / clean run's: {min(sizes):.2f}-{max(sizes):.2f}; "
        f"cache {_du(cache) / 1e6:.2f} MB"
    )
    assert compared == PASSES // 10 and max(sizes) < 1.2
