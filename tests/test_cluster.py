"""Tests for cascadia.run.cluster: settings resolution, job scripts, real clusters.

The fast tests need nothing but this machine. The ``slurm`` test runs against a real
single-node SLURM that the ``local_slurm`` fixture starts with deploy/slurm/start-local.sh
(packages from deploy/slurm/install.sh, never installed by the tests): without SLURM it
skips on a developer machine and fails when ``CI`` is set, so CI cannot go green by
skipping it.

Functions sent to workers are lambdas or closures so cloudpickle ships them by value:
SLURM workers cannot import this test module.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import dask
import dask.array as da
import pytest
from distributed import Client

from cascadia.run.cluster import (
    KINDS,
    ClusterSpec,
    job_script,
    open_cluster,
    packaged_defaults,
    resolve_spec,
)

# Before any cluster of this session ran: a Dask nanny leaks OMP_NUM_THREADS=1 into the
# process that starts it, which open_cluster must undo.
OMP_AT_IMPORT = os.environ.get("OMP_NUM_THREADS")
REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = REPO / "deploy" / "slurm"
PARTITION = "cascadia"


# --- settings resolution -------------------------------------------------------------------


def test_packaged_default_is_package_data_and_matches_deploy_copy() -> None:
    packaged = resources.files("cascadia.run").joinpath("cluster.yaml").read_text(encoding="utf-8")
    assert (REPO / "deploy" / "jobqueue.yaml").read_text(encoding="utf-8") == packaged
    defaults = packaged_defaults()
    assert defaults["kind"] == "local"
    assert set(KINDS) <= defaults.keys()
    # The packaged default alone validates: it is the only place defaults are written.
    assert resolve_spec().local.threads_per_worker == 1


def test_argument_beats_dask_config_beats_packaged_default() -> None:
    assert resolve_spec("slurm").slurm.walltime == "01:00:00"
    with dask.config.set({"cascadia.cluster.slurm.walltime": "02:00:00"}):
        assert resolve_spec("slurm").slurm.walltime == "02:00:00"
        assert resolve_spec("slurm", walltime="03:00:00").slurm.walltime == "03:00:00"
    assert resolve_spec("slurm").slurm.walltime == "01:00:00"


def test_dask_config_merges_key_by_key_and_sets_kind() -> None:
    settings = {
        "cascadia.cluster.kind": "slurm",
        "cascadia.cluster.slurm.adaptive.maximum-jobs": 7,  # dask allows hyphens
        "cascadia.cluster.torch_threads": 2,
    }
    with dask.config.set(settings):
        spec = resolve_spec()
        assert spec.kind == "slurm"
        assert spec.slurm.adaptive.maximum_jobs == 7
        assert spec.slurm.adaptive.enabled is False  # sibling keys keep their default
        assert spec.slurm.job_extra_directives == ["--no-requeue"]
        assert spec.torch_threads == 2
        assert resolve_spec("local", torch_threads=None).torch_threads is None


def test_workers_mean_processes_jobs_or_a_wait() -> None:
    assert resolve_spec("local", workers=3).local.n_workers == 3
    assert resolve_spec("slurm", workers=5, cores=2, processes=2).slurm.jobs == 3
    adaptive = resolve_spec("pbs", workers=4, adaptive={"enabled": True}).pbs.adaptive
    assert (adaptive.minimum_jobs, adaptive.maximum_jobs) == (0, 4)
    assert resolve_spec("tcp://127.0.0.1:1", workers=2).address.wait_for_workers == 2
    with pytest.raises(ValueError, match="workers must be >= 1"):
        resolve_spec("local", workers=0)


def test_resolved_spec_round_trips() -> None:
    spec = resolve_spec("slurm", queue="debug")
    assert resolve_spec(spec) == spec
    assert ClusterSpec.model_validate(spec.model_dump()) == spec
    assert resolve_spec(spec, cores=2, processes=2).slurm.queue == "debug"


@pytest.mark.parametrize(
    ("kind", "overrides", "message"),
    [
        ("kubernetes", {}, "valid kinds are 'local', 'slurm', 'pbs', 'address'"),
        ("slurm", {"walltme": "1:00:00"}, "walltme"),
        ("slurm", {"cores": 3, "processes": 2}, "not a multiple"),
        ("slurm", {"memory": "lots"}, "memory"),
        ("pbs", {"adaptive": {"minimum_jobs": 5, "maximum_jobs": 2}}, "exceeds"),
        ("address", {}, "needs a scheduler"),
    ],
)
def test_invalid_settings_are_value_errors(
    kind: str, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_spec(kind, **overrides)


def test_unknown_kind_fails_before_starting_anything() -> None:
    with pytest.raises(ValueError, match="unknown cluster kind 'sge'"), open_cluster("sge"):
        pytest.fail("must not get here")


# --- job scripts (no batch system needed) --------------------------------------------------


def test_slurm_job_script_has_partition_resources_and_no_requeue() -> None:
    script = job_script("slurm", queue="short", account="dswc", cores=4, processes=4, memory="8GiB")
    for line in (
        "#SBATCH -p short",
        "#SBATCH -A dswc",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=8G",
        "#SBATCH -t 01:00:00",
        "#SBATCH --no-requeue",
    ):
        assert line in script.splitlines()
    assert "--nthreads 1" in script  # one thread per worker process
    assert "--nworkers 4" in script


def test_slurm_job_script_follows_dask_config() -> None:
    with dask.config.set({"cascadia.cluster.slurm.walltime": "12:00:00"}):
        assert "#SBATCH -t 12:00:00" in job_script("slurm").splitlines()


def test_pbs_job_script_has_pbs_directives() -> None:
    script = job_script("pbs", queue="workq", walltime="02:00:00", memory="2GiB")
    pbs_lines = [line for line in script.splitlines() if line.startswith("#PBS")]
    assert "#PBS -q workq" in pbs_lines
    assert "#PBS -l walltime=02:00:00" in pbs_lines
    assert "#PBS -r n" in pbs_lines
    assert any(line.startswith("#PBS -l select=1:ncpus=1") for line in pbs_lines)
    assert "#SBATCH" not in script


def test_job_script_needs_a_batch_kind() -> None:
    with pytest.raises(ValueError, match="no job script"):
        job_script("local")


def test_slurm_cluster_object_builds_from_packaged_defaults() -> None:
    """Construct SLURMCluster from the defaults; adaptive with minimum 0 submits nothing."""
    with open_cluster(
        "slurm", adaptive={"enabled": True}, dashboard_address=None, interface="lo"
    ) as client:
        cluster = client.cluster
        assert type(cluster).__name__ == "SLURMCluster"
        assert "#SBATCH --no-requeue" in cluster.job_script()
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")


# --- real local cluster and scheduler address ----------------------------------------------


@pytest.fixture(scope="module")
def local_client() -> Iterator[Client]:
    """One LocalCluster with 2 workers shared by the tests below (startup costs seconds)."""
    with open_cluster("local", workers=2, dashboard_address=None) as client:
        yield client


def test_local_workers_are_single_threaded_for_dask_and_torch(local_client: Client) -> None:
    def threads() -> tuple[int, str | None, int]:
        import threading

        import torch

        return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"), threading.get_ident()

    info = local_client.scheduler_info()["workers"]
    assert len(info) == 2
    assert {w["nthreads"] for w in info.values()} == {1}
    # client.run executes on each worker's event loop thread ...
    on_loop = local_client.run(threads)
    assert len(on_loop) == 2
    assert {(n, omp) for n, omp, _ in on_loop.values()} == {(1, "1")}
    # ... tasks run in the worker's executor thread, where the model code runs.
    in_tasks = local_client.gather(local_client.map(lambda _: threads(), range(4), pure=False))
    assert {(n, omp) for n, omp, _ in in_tasks} == {(1, "1")}


def test_local_cluster_leaves_client_environment_alone(local_client: Client) -> None:
    assert os.environ.get("OMP_NUM_THREADS") == OMP_AT_IMPORT


def test_connect_to_existing_scheduler_leaves_it_running(local_client: Client) -> None:
    address = local_client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    with open_cluster(address, workers=2, timeout="5s") as client:
        assert client.scheduler.address == address
        assert len(client.scheduler_info()["workers"]) == 2
        assert client.submit(lambda x: x + 1, 41).result() == 42
    # Leaving the block disconnected us only; the scheduler and its workers still serve.
    assert local_client.submit(lambda x: x * 2, 21).result() == 42


def test_unreachable_address_is_a_one_line_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ConnectionError) as excinfo, open_cluster(address, timeout="1s"):
        pytest.fail("must not connect")
    message = str(excinfo.value)
    assert address in message
    assert "\n" not in message


# --- real single-node SLURM ----------------------------------------------------------------


def _have_slurm() -> bool:
    return all(
        shutil.which(exe) or Path("/usr/sbin", exe).exists()
        for exe in ("slurmctld", "slurmd", "sbatch")
    )


@pytest.fixture(scope="session")
def local_slurm() -> Iterator[str]:
    """A running single-node SLURM; yields the partition name.

    Reuses a SLURM that is already up (and then leaves it up); stops only one it started.
    """
    if not _have_slurm() or os.geteuid() != 0:
        why = "SLURM not installed" if not _have_slurm() else "starting SLURM needs root"
        if os.environ.get("CI"):
            pytest.fail(
                f"CI is set but {why}: run `bash deploy/slurm/install.sh` as root before "
                "pytest (the slurm-marked tests must run in CI, not skip)"
            )
        pytest.skip(f"{why}; run `bash deploy/slurm/install.sh` to enable")

    run_dir = os.environ.get("SLURM_RUN_DIR", "/tmp/cascadia-slurm")
    started = subprocess.run(
        ["bash", str(SLURM_DIR / "start-local.sh"), run_dir],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    if started.returncode != 0:
        pytest.fail(f"start-local.sh failed:\n{started.stdout}\n{started.stderr}")
    we_started = "already running" not in started.stdout
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(Path(run_dir) / "slurm.conf"))
        yield PARTITION
    if we_started:
        subprocess.run(["bash", str(SLURM_DIR / "stop-local.sh"), run_dir], timeout=60, check=False)


def _queued_jobs(partition: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-p", partition, "-o", "%i %T"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split("\n")[:-1]


@pytest.mark.slurm
def test_slurm_cluster_runs_workers_inside_jobs(local_slurm: str, tmp_path: Path) -> None:
    x = da.arange(100_000, chunks=10_000, dtype="int64")
    expected = int(x.sum().compute(scheduler="sync"))
    assert _queued_jobs(local_slurm) == []

    with open_cluster(
        "slurm",
        workers=2,
        queue=local_slurm,
        cores=1,
        processes=1,
        memory="1GiB",
        walltime="00:10:00",
        interface="lo",  # single node, loopback only
        log_directory=str(tmp_path),
        dashboard_address=":0",
    ) as client:
        client.wait_for_workers(2, timeout=60)
        job_ids = client.run(lambda: os.environ.get("SLURM_JOB_ID"))
        assert len(job_ids) == 2
        assert all(job_ids.values()), job_ids
        assert len(set(job_ids.values())) == 2  # one job per worker
        assert int(x.sum().compute()) == expected  # the client is the default scheduler
        threads = client.run(lambda: __import__("torch").get_num_threads())
        assert set(threads.values()) == {1}

    deadline = time.monotonic() + 15
    while (left := _queued_jobs(local_slurm)) and time.monotonic() < deadline:
        time.sleep(0.2)  # scancel is asynchronous: jobs pass through COMPLETING
    assert left == [], f"jobs left in the queue after close: {left}"
