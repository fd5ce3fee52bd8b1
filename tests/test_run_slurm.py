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

import os
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import test_cluster
import xarray as xr
import yaml
from helpers import RUN_TWIN, small_preset

from cascadia.run.cluster import open_cluster
from cascadia.run.pipeline import RunSummary, run_pipeline
from cascadia.run.store import open_cube

PRESET = small_preset("slurm-twin", **RUN_TWIN)
# The session fixture that starts (or reuses) the local SLURM, shared with test_cluster.py.
local_slurm = test_cluster.local_slurm
_queued_jobs = test_cluster._queued_jobs
_wait_until_gone = test_cluster._wait_until_gone
N_COMBOS = 3  # ERA5, CMIP historical + ssp585

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def twin(local_slurm: str, run_twin: dict[str, Any], tmp_path_factory) -> dict[str, Any]:
    """The session's run twin (tests/conftest.py: world, catalogs, trained model), after the
    SLURM check (no build if skipped); this module's runs write under their own root."""
    catalogs = run_twin["catalogs"]
    return {
        "root": tmp_path_factory.mktemp("run-slurm"),
        "catalogs": [str(catalogs / "era5-run.yaml"), str(catalogs / "cmip6-run.yaml")],
        "model": run_twin["model"],
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
    left = _wait_until_gone(local_slurm)
    return {"out": out, "summary": summary, "logs": logs, "left": left}


def _open(path: str) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.open_zarr(path).close()
        return open_cube(path).load()


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


def _assert_same_store(local_out: str, other_out: str) -> None:
    local, other = _open(local_out), _open(other_out)
    assert set(other.data_vars) == set(local.data_vars)
    assert {"temperature_mean", "event_days"} <= set(local.data_vars)
    for name in local.variables:
        a, b = local[name].values, other[name].values
        if np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(b, a, err_msg=name)
    assert int((local.status == "done").sum()) == N_COMBOS
    assert bool(local.temperature_mean.notnull().any())


def test_slurm_store_equals_local_store(
    local_run: tuple[str, RunSummary], slurm_run: dict[str, Any]
) -> None:
    local_out, local_summary = local_run
    assert local_summary.ok and local_summary.count("done") == N_COMBOS
    assert {r.batch_job for r in local_summary.results} == {""}
    _assert_same_store(local_out, slurm_run["out"])


# --- a job reaching its walltime mid-run -----------------------------------------------------

WALLTIME = "00:02:00"  # workers retire after 84 s (derived from it), staggered +- 1 s here


def _retirements(logs: Path) -> dict[str, float]:
    """Batch job -> when its worker left on reaching its lifetime (epoch seconds)."""
    out = {}
    for log in logs.glob("dask-worker-*.err"):
        for line in log.read_text().splitlines():
            if "Reason: worker-lifetime-reached" in line and "Closing worker" in line:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                out[log.stem.removeprefix("dask-worker-")] = stamp.timestamp()
                break
    return out


@pytest.fixture(scope="module")
def walltime_run(twin: dict[str, Any], local_slurm: str) -> dict[str, Any]:
    """A run on 2 SLURM jobs of 2 minutes whose workers reach their lifetime mid-run.

    The jobs start first; the run starts 6 s before the first worker's lifetime (derived
    from the walltime: 84 s, counted from the worker process's start) ends. The stagger is
    1 s here, not the derived 6 s: with lifetimes up to 12 s apart, a run of about 20 s on
    an idle machine could finish inside the later first job, and no new job would take any
    work over. With both first jobs gone 6-8 s in, the rest of the run is theirs.
    """
    root = twin["root"]
    logs = root / "walltime-logs"
    logs.mkdir()
    out = str(root / "walltime.zarr")
    assert _queued_jobs(local_slurm) == []
    with open_cluster(
        "slurm",
        jobs=2,  # fixed: the jobs that end are replaced all the same
        queue=local_slurm,
        memory="2GiB",
        walltime=WALLTIME,
        lifetime={"stagger": "1s"},
        interface="lo",
        log_directory=str(logs),
        local_directory=str(root / "walltime-space"),
        dashboard_address=None,
    ) as client:
        client.wait_for_workers(2, timeout=120)
        first_jobs = set(client.run(lambda: os.environ["SLURM_JOB_ID"]).values())
        ends = client.run(
            lambda dask_worker: __import__("psutil").Process().create_time() + dask_worker.lifetime
        )
        time.sleep(max(0.0, min(ends.values()) - 6 - time.time()))
        started = time.time()
        summary = run_pipeline(
            twin["catalogs"], twin["model"], out, cache=str(root / "cache-walltime"), client=client
        )
        ended = time.time()
    print(f"walltime run: {ended - started:.1f} s")
    left = _wait_until_gone(local_slurm)
    return {
        "out": out,
        "summary": summary,
        "logs": logs,
        "first_jobs": first_jobs,
        "run": (started, ended),
        "left": left,
    }


def test_a_job_reaching_its_walltime_hands_its_work_over(
    local_run: tuple[str, RunSummary], walltime_run: dict[str, Any]
) -> None:
    summary: RunSummary = walltime_run["summary"]
    assert summary.ok, [r.reason for r in summary.failed]
    assert summary.count("done") == N_COMBOS
    started, ended = walltime_run["run"]
    retired = _retirements(walltime_run["logs"])
    # both first jobs' workers left on their lifetime while the run was going on ...
    assert walltime_run["first_jobs"] <= retired.keys(), retired
    for job in walltime_run["first_jobs"]:
        assert started < retired[job] < ended, (job, retired[job] - started)
    print(
        f"first jobs retired {sorted(round(retired[j] - started, 1) for j in retired)} s into "
        f"the {ended - started:.1f} s run; jobs {sorted(retired)}"
    )
    # ... before SLURM's time limit, which killed no job
    for log in walltime_run["logs"].glob("dask-worker-*"):
        assert "DUE TO TIME LIMIT" not in log.read_text(), log
    # new jobs took over and finished the run
    done_in = {r.batch_job for r in summary.results}
    assert done_in - walltime_run["first_jobs"], done_in
    _assert_same_store(local_run[0], walltime_run["out"])
    assert walltime_run["left"] == [], f"jobs left in the queue: {walltime_run['left']}"


# --- the client inside a job: deploy/slurm/run-in-job.sbatch ---------------------------------

BATCH_SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "slurm" / "run-in-job.sbatch"


def test_the_batch_script_runs_the_client_inside_a_job(
    twin: dict[str, Any], local_run: tuple[str, RunSummary], local_slurm: str
) -> None:
    """`sbatch run-in-job.sbatch ...`: the run's client and scheduler live in that job and
    submit the worker jobs from there (predictors come from the local run's cache, so
    the run is the inference and the writes)."""
    root = twin["root"] / "batch-script"
    worker_logs = root / "worker-logs"
    worker_logs.mkdir(parents=True)
    config = {
        "cascadia": {
            "cluster": {
                "slurm": {
                    "queue": local_slurm,
                    "memory": "2GiB",
                    "walltime": "00:10:00",
                    "interface": "lo",
                    "log_directory": str(worker_logs),
                    "dashboard_address": None,
                    "adaptive": {"enabled": True, "minimum_jobs": 0, "maximum_jobs": 1},
                }
            }
        }
    }
    (root / "cascadia.yaml").write_text(yaml.safe_dump(config))
    out = str(root / "results.zarr")
    run_args = [arg for catalog in twin["catalogs"] for arg in ("--catalog", catalog)]
    run_args += ["--model", str(twin["model"]), "--out", out]
    run_args += ["--cache", str(twin["root"] / "cache-local")]
    env = {**os.environ, "DASK_CONFIG": str(root / "cascadia.yaml"), "CASCADIA_VENV": sys.prefix}
    # one CPU for the driver: the 2-CPU test node keeps the other for a worker job
    submit = ["sbatch", "--wait", "--parsable", "-p", local_slurm, "--cpus-per-task=1"]
    submit += ["--mem=2G", "-o", str(root / "driver-%j.log"), str(BATCH_SCRIPT), *run_args]
    done = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
    driver = done.stdout.strip().split(";")[0]
    log = (root / f"driver-{driver}.log").read_text()
    assert done.returncode == 0, f"{done.stderr}\n{log[-3000:]}"
    assert f"cascadia run in job {driver} on " in log
    assert "3 done, 0 up to date, 0 failed" in log
    assert "finished with exit status 0" in log
    worker_jobs = {p.stem.removeprefix("dask-worker-") for p in worker_logs.glob("*.err")}
    assert worker_jobs and driver not in worker_jobs  # workers ran in jobs of their own
    _assert_same_store(local_run[0], out)
    assert _wait_until_gone(local_slurm) == []
