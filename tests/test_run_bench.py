"""Run benchmarks (b) and (c): the core functions measure real runs and return sane numbers.

A small twin world (seven ERA5 years) and a tiny model; only the reanalysis catalog is run
(ERA5, two 20CR members, ERA-20C: no bias adjustment, so no numba compilation), which
keeps the four measured runs to seconds each.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType

import pytest
from helpers import load_benchmark

from cascadia.run.store import open_cube
from cascadia.twin.presets import PRESETS, ReanalysisSpec, Years

SMALL = PRESETS["tiny"].model_copy(
    update={
        "name": "run-bench",
        "era5": ReanalysisSpec(years=Years(start=2008, end=2014), resolution=3.0),
        "cmip_sources": PRESETS["tiny"].cmip_sources[:1],
        "cmip_members": 1,
        "cordex": PRESETS["tiny"].cordex[:1],
        "observations": Years(start=2008, end=2014),
    }
)
WINTERS = {"train_winters": [2010, 2011], "validation_winters": [2012], "test_winters": [2013]}
GIB = 1024**3

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("run_scaling")


@pytest.fixture(scope="module")
def setup(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("run-bench")
    started = time.perf_counter()
    inputs = bench.build_quick_inputs(root / "inputs", SMALL, training=WINTERS)
    print(f"world and model: {time.perf_counter() - started:.1f} s")
    (reanalysis,) = [c for c in inputs.catalogs if Path(c).stem == "reanalysis"]
    catalogs = [reanalysis]
    bench.warm_cache(inputs, catalogs, str(root / "warm.zarr"), workers=2)
    return {"root": root, "inputs": inputs, "catalogs": catalogs}


def test_scaling_times_the_same_run_on_one_and_two_workers(bench, setup) -> None:
    one, two = bench.scaling(setup["inputs"], setup["catalogs"], setup["root"], workers=2)
    assert (one.workers, two.workers) == (1, 2)
    assert one.done == two.done == 4  # ERA5, 2 x 20CR, ERA-20C: every one run again
    assert len(one.peak_rss) == 1 and len(two.peak_rss) == 2
    ratio = one.seconds / two.seconds
    print(f"1 worker {one.seconds:.1f} s, 2 workers {two.seconds:.1f} s: {ratio:.2f}x")
    assert one.task_seconds > 0 and two.task_seconds > 0
    assert 0 < ratio < 2.5  # 2 workers cannot beat 2x (2.5: timer noise on tiny runs)
    # both runs wrote complete stores: a measured run, not an empty one
    for name in ("one.zarr", "many.zarr"):
        with open_cube(str(setup["root"] / name)) as ds:
            assert int((ds.status == "done").sum()) == 4
            assert bool(ds.temperature_mean.notnull().any())


def test_peak_rss_per_worker_is_measured_and_under_2_gib(bench, setup) -> None:
    (reanalysis,) = setup["catalogs"]
    folder = setup["root"] / "rss"
    small = [bench.subset_catalog(reanalysis, folder / "n.yaml", sources=["era5"])]
    n, n4 = bench.rss_growth(setup["inputs"], folder, small, setup["catalogs"], workers=2)
    assert (n.done, n4.done) == (1, 4)
    for m in (n, n4):
        assert len(m.peak_rss) == 2
        assert all(0 < rss < 2 * GIB for rss in m.peak_rss.values()), m.peak_rss
        # the busiest worker imported torch, xarray and zarr and ran a model: > 100 MiB
        assert m.max_rss > 100 * 2**20, m.peak_rss
    print(f"peak RSS per worker: {n.max_rss / 2**20:.0f} MiB vs {n4.max_rss / 2**20:.0f} MiB")
    assert n4.max_rss < 1.5 * n.max_rss  # flat: 4x the combinations, not 4x the memory
