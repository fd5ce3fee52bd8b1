"""``run_pipeline`` on a real single-node SLURM gives the store a LocalCluster run gives.

The same run over a small twin world (ERA5 and one CMIP-like model's historical and ssp585
runs: the reanalysis and the bias-adjusted projection chains) with a tiny trained model
is made twice, each with its own empty predictor cache so that every step (extraction,
QDM fit, adjustment, prediction, region write) runs on each cluster:

(a) ``cluster="local"``, 2 worker processes;
(b) ``cluster="slurm"``: dask-jobqueue's SLURMCluster from the ``cascadia.cluster`` dask
    config, adaptive from zero jobs up to 2, on the SLURM that ``local_slurm`` (from
    test_cluster.py) starts with deploy/slurm/start-local.sh.

Each combination's prediction reports the ``SLURM_JOB_ID`` of the worker that ran it;
every stored variable of (b) must equal (a)'s.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import dask
import numpy as np
import pytest
import test_cluster
import xarray as xr
import yaml
from helpers import RUN_TWIN, small_preset

from cascadia.learning.jobs import TrainJob, smoke_train_job
from cascadia.learning.train_job import run_train_job
from cascadia.run.pipeline import RunSummary, run_pipeline
from cascadia.twin.world import build_world

PRESET = small_preset("slurm-twin", **RUN_TWIN)
# The session fixture that starts (or reuses) the local SLURM, shared with test_cluster.py.
local_slurm = test_cluster.local_slurm
_queued_jobs = test_cluster._queued_jobs
N_COMBOS = 3  # ERA5, CMIP historical + ssp585

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def twin(local_slurm: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """World, run catalogs and trained model (after the SLURM check: no build if skipped)."""
    root = tmp_path_factory.mktemp("run-slurm")
    started = time.perf_counter()
    build_world(str(root / "world"), PRESET, seed=0)
    catalogs = root / "world/catalogs"
    reanalysis = yaml.safe_load((catalogs / "reanalysis.yaml").read_text())
    reanalysis["sources"] = [s for s in reanalysis["sources"] if s["name"] == "era5"]
    (catalogs / "era5-run.yaml").write_text(yaml.safe_dump(reanalysis))
    cmip = yaml.safe_load((catalogs / "cmip6.yaml").read_text())
    cmip["sources"][0]["query"]["experiment_id"] = ["historical", "ssp585"]
    (catalogs / "cmip6-run.yaml").write_text(yaml.safe_dump(cmip))
    job = smoke_train_job(root / "world", str(root / "train-cache"))
    run_train_job(TrainJob.model_validate(job), root / "model", log=lambda _: None)
    print(f"world and model: {time.perf_counter() - started:.1f} s")
    return {
        "root": root,
        "catalogs": [str(catalogs / "era5-run.yaml"), str(catalogs / "cmip6-run.yaml")],
        "model": root / "model",
    }


@pytest.fixture(scope="module")
def local_run(twin: dict[str, Any]) -> tuple[str, RunSummary]:
    out = str(twin["root"] / "local.zarr")
    started = time.perf_counter()
    with dask.config.set({"cascadia.cluster.local.dashboard_address": ":0"}):
        summary = run_pipeline(
            twin["catalogs"],
            twin["model"],
            out,
            cache=str(twin["root"] / "cache-local"),
            cluster="local",
            workers=2,
        )
    print(f"local run: {time.perf_counter() - started:.1f} s")
    return out, summary


@pytest.fixture(scope="module")
def slurm_run(twin: dict[str, Any], local_slurm: str) -> dict[str, Any]:
    root = twin["root"]
    logs = root / "slurm-logs"
    logs.mkdir()
    assert _queued_jobs(local_slurm) == []
    settings = {
        "cascadia.cluster.slurm.queue": local_slurm,
        "cascadia.cluster.slurm.memory": "2GiB",
        "cascadia.cluster.slurm.walltime": "00:10:00",
        "cascadia.cluster.slurm.interface": "lo",  # single node, loopback only
        "cascadia.cluster.slurm.log_directory": str(logs),
        "cascadia.cluster.slurm.local_directory": str(root / "worker-space"),
        "cascadia.cluster.slurm.dashboard_address": None,
        # from zero jobs: the run must not need workers before its tasks are queued
        "cascadia.cluster.slurm.adaptive.enabled": True,
        "cascadia.cluster.slurm.adaptive.minimum_jobs": 0,
    }
    out = str(root / "slurm.zarr")
    started = time.perf_counter()
    with dask.config.set(settings):
        summary = run_pipeline(
            twin["catalogs"],
            twin["model"],
            out,
            cache=str(root / "cache-slurm"),
            cluster="slurm",
            workers=2,
        )
    print(f"SLURM run: {time.perf_counter() - started:.1f} s")
    deadline = time.monotonic() + 15
    while (left := _queued_jobs(local_slurm)) and time.monotonic() < deadline:
        time.sleep(0.2)  # scancel is asynchronous: jobs pass through COMPLETING
    return {"out": out, "summary": summary, "logs": logs, "left": left}


def _open(path: str) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(path).load()


def test_every_combination_ran_inside_slurm_jobs(slurm_run: dict[str, Any]) -> None:
    summary: RunSummary = slurm_run["summary"]
    assert summary.ok, [r.reason for r in summary.failed]
    done = [r for r in summary.results if r.status == "done"]
    assert len(done) == N_COMBOS
    jobs = {r.batch_job for r in done}
    assert all(job.isdigit() for job in jobs), jobs  # every prediction saw a SLURM_JOB_ID
    assert 1 <= len(jobs) <= 2  # adaptive, at most workers=2 jobs of one worker each
    for job in jobs:  # SLURM's own record of each job: the worker it started
        log = slurm_run["logs"] / f"dask-worker-{job}.err"
        assert "Start worker at" in log.read_text(), log
    assert slurm_run["left"] == [], f"jobs left in the queue after the run: {slurm_run['left']}"


def test_slurm_store_equals_local_store(
    local_run: tuple[str, RunSummary], slurm_run: dict[str, Any]
) -> None:
    local_out, local_summary = local_run
    assert local_summary.ok and local_summary.count("done") == N_COMBOS
    assert {r.batch_job for r in local_summary.results} == {""}
    local, slurm = _open(local_out), _open(slurm_run["out"])
    assert set(slurm.data_vars) == set(local.data_vars)
    assert {"temperature_mean", "event_days"} <= set(local.data_vars)
    for name in local.variables:
        a, b = local[name].values, slurm[name].values
        if np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(b, a, err_msg=name)
    assert int((local.status == "done").sum()) == N_COMBOS
    assert bool(local.temperature_mean.notnull().any())
