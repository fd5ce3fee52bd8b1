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
    ceiling), run once per session for tests/test_demo.py and tests/test_report.py; those
    only read it (copies where they change something)."""
    from cascadia.demo import run_demo

    out = tmp_path_factory.mktemp("demo") / "out"
    started = time.perf_counter()
    first = run_demo("tiny", out, workers=2)
    print(f"first run_demo {time.perf_counter() - started:.1f} s")
    return {"out": out, "first": first}
