"""Fixtures shared by several test modules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Predict with one torch thread, as the workers do: on a shared machine a
    recurrent model spread over every core runs its days many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: The results store the reader API, the query command and the service are tested on: a
#: CMIP-like model's historical and ssp585 runs, two members, of a two-year twin world.
TINY_RUN_EXPERIMENTS = ("historical", "ssp585")


def _tiny_run_catalog(world: Path) -> Path:
    """The world's CMIP catalog cut to historical + ssp585: its bias adjustment trains on
    the two overlap years the world has (the shipped catalogs ask for ten)."""
    catalogs = world / "catalogs"
    cmip = yaml.safe_load((catalogs / "cmip6.yaml").read_text())
    cmip["sources"][0]["query"]["experiment_id"] = list(TINY_RUN_EXPERIMENTS)
    cmip["bias_adjustment"]["min_overlap_years"] = 1.5
    path = catalogs / "cmip6-tiny-run.yaml"
    path.write_text(yaml.safe_dump(cmip))
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A smoke model's run over four combinations (2 experiments x 2 members) into a
    results store, on a one-worker local cluster; built once per session for
    tests/test_query.py and tests/test_service.py."""
    from helpers import two_year_preset, world_and_smoke_model

    from cascadia.run.cluster import open_cluster
    from cascadia.run.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("tiny-run")
    started = time.perf_counter()
    preset = two_year_preset("tiny-run").model_copy(update={"cmip_members": 2})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        world_and_smoke_model(root, preset)
    finally:
        torch.set_num_threads(threads)
    catalog = _tiny_run_catalog(root / "world")
    with open_cluster("local", workers=1) as client:
        summary = run_pipeline(
            [str(catalog)], root / "model", str(root / "results.zarr"),
            cache=str(root / "cache"), client=client,
        )  # fmt: skip
    assert summary.ok and summary.count("done") == 4, summary.results
    print(f"tiny run (world, model, run) in {time.perf_counter() - started:.1f} s")
    return {
        "root": root,
        "catalog": str(catalog),
        "model": str(root / "model"),
        "cache": str(root / "cache"),
        "store": str(root / "results.zarr"),
    }


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``cascadia-ensemble demo --preset tiny`` (world, model, run, report with the skill
    ceiling), run once per session for tests/test_demo.py, tests/test_report.py and
    tests/test_before_record.py; those only read it (copies where they change something).
    Its folder is ``seed-0`` under ``base``, as ``cascadia-ensemble validate`` lays out a
    seed: tests/test_validate.py validates seed 0 there, on this world and model."""
    from cascadia.demo import run_demo

    base = tmp_path_factory.mktemp("demo")
    out = base / "seed-0"
    started = time.perf_counter()
    first = run_demo("tiny", out, workers=2)
    print(f"first run_demo {time.perf_counter() - started:.1f} s")
    return {"out": out, "base": base, "first": first}


@pytest.fixture(scope="session")
def run_twin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The run twin (``helpers.RUN_TWIN``: ERA5, 20CR, ERA-20C, one CMIP model, one RCM) and
    a smoke model trained on it, with the predictor cache its training filled; built once
    for tests/test_pipeline.py and tests/test_run_slurm.py. The catalogs ``era5-run.yaml``
    (ERA5 only) and ``cmip6-run.yaml`` (historical and ssp585) are beside the world's own.
    Modules write their outputs in their own folders, and leave the world as they found it."""
    from helpers import RUN_TWIN, small_preset

    from cascadia.learning.jobs import TrainJob, smoke_train_job
    from cascadia.learning.train_job import run_train_job
    from cascadia.twin.world import build_world

    root = tmp_path_factory.mktemp("run-twin")
    started = time.perf_counter()
    build_world(str(root / "world"), small_preset("run-twin", **RUN_TWIN), seed=0)
    catalogs = root / "world/catalogs"
    reanalysis = yaml.safe_load((catalogs / "reanalysis.yaml").read_text())
    reanalysis["sources"] = [s for s in reanalysis["sources"] if s["name"] == "era5"]
    (catalogs / "era5-run.yaml").write_text(yaml.safe_dump(reanalysis))
    cmip = yaml.safe_load((catalogs / "cmip6.yaml").read_text())
    cmip["sources"][0]["query"]["experiment_id"] = ["historical", "ssp585"]
    (catalogs / "cmip6-run.yaml").write_text(yaml.safe_dump(cmip))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        job = smoke_train_job(root / "world", str(root / "cache"))
        run_train_job(TrainJob.model_validate(job), root / "model", log=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    print(f"run twin (world, model) in {time.perf_counter() - started:.1f} s")
    return {
        "root": root,
        "world": root / "world",
        "catalogs": catalogs,
        "model": root / "model",
        "cache": str(root / "cache"),
    }
