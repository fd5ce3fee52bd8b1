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

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import dask
import dask.array as da
import pytest
from distributed import Client, as_completed

from cascadia.run.batch import derived_lifetime, walltime_seconds
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


# --- a site's jobqueue config, walltimes and worker lifetimes ------------------------------

SITE = {  # what a site's jobqueue.yaml says (dask accepts hyphens or underscores)
    "jobqueue.slurm.queue": "big",
    "jobqueue.slurm.account": "lab",
    "jobqueue.slurm.cores": 8,
    "jobqueue.slurm.memory": "32GB",
    "jobqueue.slurm.walltime": "12:00:00",
    "jobqueue.slurm.job-extra-directives": ["--qos=long"],
}


def test_site_jobqueue_config_beats_cascadias_fallbacks() -> None:
    with dask.config.set(SITE):
        slurm = resolve_spec("slurm").slurm
        assert (slurm.queue, slurm.account, slurm.cores, slurm.memory, slurm.walltime) == (
            "big",
            "lab",
            8,
            "32GB",
            "12:00:00",
        )
        assert slurm.job_extra_directives == ["--qos=long"]  # replaces ["--no-requeue"]
        assert slurm.processes == 8  # unset by the site: one thread per worker
        script = job_script("slurm").splitlines()
        for line in ("-p big", "-A lab", "--cpus-per-task=8", "--mem=30G", "-t 12:00:00"):
            assert f"#SBATCH {line}" in script
        assert "#SBATCH --qos=long" in script
        assert "#SBATCH --no-requeue" not in script
    # the site's keys are gone again: cascadia's fallbacks fill them
    slurm = resolve_spec("slurm").slurm
    assert (slurm.cores, slurm.memory, slurm.walltime) == (1, "4GiB", "01:00:00")
    assert slurm.job_extra_directives == ["--no-requeue"]


def test_cascadia_config_beats_the_site_and_arguments_beat_both() -> None:
    chosen = {"cascadia.cluster.slurm.walltime": "02:00:00", "jobqueue.slurm.processes": 2}
    with dask.config.set({**SITE, **chosen}):
        slurm = resolve_spec("slurm").slurm
        assert (slurm.walltime, slurm.cores, slurm.processes) == ("02:00:00", 8, 2)
        slurm = resolve_spec("slurm", walltime="00:30:00", memory="8GB").slurm
        assert (slurm.walltime, slurm.memory, slurm.queue) == ("00:30:00", "8GB", "big")
        # pbs reads its own section: the site's slurm keys do not leak into it
        assert resolve_spec("pbs").pbs.walltime == "01:00:00"
    # a site setting that cannot work fails slurm runs only, with the key named
    with dask.config.set({"jobqueue.slurm.walltime": "soon"}):
        assert resolve_spec("local").kind == "local"
        with pytest.raises(ValueError, match="walltime 'soon' is not a slurm walltime"):
            resolve_spec("slurm")


def test_dask_jobqueues_own_defaults_are_not_site_settings() -> None:
    job_script("slurm")  # imports dask_jobqueue: its defaults are in dask.config now
    assert dask.config.get("jobqueue.slurm.walltime") == "00:30:00"
    assert resolve_spec("slurm").slurm.walltime == "01:00:00"
    # a deprecated name the site still uses counts for its replacement
    with dask.config.set({"jobqueue.slurm.job-extra": ["--qos=old"]}):
        assert resolve_spec("slurm").slurm.job_extra_directives == ["--qos=old"]


@pytest.mark.parametrize(
    ("walltime", "kind", "seconds"),
    [
        ("01:00:00", "slurm", 3600),
        ("90", "slurm", 5400),  # SLURM: a bare number is minutes
        ("30:00", "slurm", 1800),  # MM:SS
        ("2-12", "slurm", 216000),
        ("1-00:30", "slurm", 88200),
        ("1-00:00:10", "slurm", 86410),
        ("UNLIMITED", "slurm", None),
        ("90", "pbs", 90),  # PBS: a bare number is seconds
        ("02:00:00", "pbs", 7200),
    ],
)
def test_walltimes_read_as_the_batch_system_reads_them(
    walltime: str, kind: str, seconds: float | None
) -> None:
    assert walltime_seconds(walltime, kind) == seconds


@pytest.mark.parametrize("walltime", ["1h", "1-2-3", "00:00:00:10", "-5"])
def test_a_malformed_walltime_is_an_error_naming_the_format(walltime: str) -> None:
    with pytest.raises(ValueError, match=f"walltime '{walltime}' is not a slurm walltime"):
        resolve_spec("slurm", walltime=walltime)


def test_worker_lifetime_is_derived_from_the_walltime() -> None:
    assert derived_lifetime(3600) == (3060, 180)  # 51 min +- 3 min
    assert derived_lifetime(86400) == (85500, 300)  # margin and stagger capped
    assert derived_lifetime(120) == (84, 6)
    command = job_script("slurm").splitlines()[-1]
    assert command.endswith("--lifetime 51m --lifetime-stagger 3m")
    command = job_script("slurm", walltime="00:02:00").splitlines()[-1]
    assert command.endswith("--lifetime 84s --lifetime-stagger 6s")
    pbs = job_script("pbs", walltime="24:00:00").splitlines()[-1]
    assert pbs.endswith("--lifetime 1425m --lifetime-stagger 5m")


def test_worker_lifetime_settings() -> None:
    def command(**overrides: object) -> str:
        return job_script("slurm", **overrides).splitlines()[-1]

    assert "--lifetime" not in command(lifetime={"duration": None})
    assert command(lifetime={"duration": "55m", "stagger": "4m"}).endswith(
        "--lifetime 55m --lifetime-stagger 4m"
    )
    assert command(lifetime={"stagger": None}).endswith("--lifetime 51m")
    assert command(lifetime={"restart": True}).endswith("--lifetime-restart")
    assert "--lifetime" not in command(walltime="UNLIMITED")
    # a --lifetime of the site's (or yours) among the worker arguments is kept as it is
    site_args = ["--resources", "GPU=1", "--lifetime", "50m"]
    assert command(worker_extra_args=site_args).endswith("--resources GPU=1 --lifetime 50m")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lifetime": {"duration": "59m"}}, "reaches the walltime 01:00:00"),
        ({"walltime": "0:20"}, "too short to derive a worker lifetime"),
        ({"lifetime": {"duration": "soon"}}, "lifetime"),
        ({"extra_kwargs": {"worker_extra_args": ["--lifetime", "1h"]}}, "'worker_extra_args'"),
    ],
)
def test_lifetimes_that_cannot_work_are_value_errors(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_spec("slurm", **overrides)


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


def test_one_chain_runs_in_this_process_with_no_port_and_torch_unheld() -> None:
    """A pass with one sequential chain starts no worker process (seconds of start-up and
    imports) and leaves torch the machine's cores; port 8787 held by another run's
    dashboard gives no warning."""
    import torch

    before = torch.get_num_threads()
    busy = socket.socket()
    with contextlib.suppress(OSError):  # held by someone else already: busy either way
        busy.bind(("127.0.0.1", 8787))
        busy.listen()
    with busy, warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        started = time.perf_counter()
        with open_cluster("local", workers=2, one_chain=True) as client:
            opened = time.perf_counter() - started
            info = client.scheduler_info()["workers"]
            assert len(info) == 1 and {w["nthreads"] for w in info.values()} == {1}
            assert all(address.startswith("inproc://") for address in info)
            assert client.submit(os.getpid, pure=False).result() == os.getpid()
            assert client.submit(torch.get_num_threads, pure=False).result() == before
    assert opened < 5.0, f"an in-process cluster took {opened:.1f} s to open"
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

    left = _wait_until_gone(local_slurm)
    assert left == [], f"jobs left in the queue after close: {left}"


def _wait_until_gone(partition: str) -> list[str]:
    deadline = time.monotonic() + 15
    while (left := _queued_jobs(partition)) and time.monotonic() < deadline:
        time.sleep(0.2)  # scancel is asynchronous: jobs pass through COMPLETING
    return left


# A site's jobqueue.yaml as HPC users write it (hyphens, quoted walltime), read by Dask
# from DASK_CONFIG at start-up. Keys cascadia does not model (death-timeout) still apply.
SITE_JOBQUEUE_YAML = """
jobqueue:
  slurm:
    queue: {partition}
    account: dswc-site
    cores: 2
    processes: 1
    memory: 2GiB
    walltime: '00:07:00'
    job-extra-directives: ["--comment=from-site-jobqueue"]
    worker-extra-args: ["--resources", "site=1"]
    death-timeout: 90
    interface: lo
    log-directory: {logs}
"""

SITE_SCRIPT = """
import json, os, subprocess, sys, time
started = time.perf_counter()
from cascadia.run.cluster import job_script, open_cluster
print(f"imported: {time.perf_counter() - started:.0f} s", file=sys.stderr)
with open_cluster("slurm", dashboard_address=None) as client:
    client.wait_for_workers(1, timeout=180)
    print(f"worker up: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    (job,) = set(client.run(lambda: os.environ["SLURM_JOB_ID"]).values())
    shown = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True,
                           text=True, check=True).stdout
    (worker,) = client.run(lambda dask_worker: [dask_worker.state.total_resources,
                           dask_worker.state.nthreads, dask_worker.lifetime]).values()
    print(json.dumps({"script": client.cluster.job_script(), "scontrol": shown.split(),
                      "worker": worker, "argument": job_script("slurm", walltime="00:09:00")}))
print(f"closed: {time.perf_counter() - started:.0f} s", file=sys.stderr)
"""


@pytest.mark.slurm
def test_site_jobqueue_yaml_reaches_the_job_script_and_slurm_unchanged(
    local_slurm: str, tmp_path: Path
) -> None:
    site = tmp_path / "dask"
    site.mkdir()
    logs = tmp_path / "logs"
    text = SITE_JOBQUEUE_YAML.format(partition=local_slurm, logs=logs)
    (site / "jobqueue.yaml").write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", SITE_SCRIPT],
        env={**os.environ, "DASK_CONFIG": str(site)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    directives = [line for line in seen["script"].splitlines() if line.startswith("#SBATCH")]
    for line in (
        f"-p {local_slurm}",
        "-A dswc-site",
        "--cpus-per-task=2",
        "--mem=2G",
        "-t 00:07:00",
        "--comment=from-site-jobqueue",
    ):
        assert f"#SBATCH {line}" in directives
    assert "#SBATCH --no-requeue" not in directives  # cascadia's fallback list stays out
    command = seen["script"].splitlines()[-1]
    assert "--nthreads 2 " in command  # the site's processes: 1, not one per core
    for argument in ("--death-timeout 90", "--interface lo"):
        assert f"{argument} " in f"{command} "
    # the site's worker arguments, then the lifetime derived from the site's walltime:
    # 420 s - 42 s margin - 21 s stagger
    assert "--resources site=1 --lifetime 357s --lifetime-stagger 21s" in command
    # ... and SLURM ran the job with exactly those resources
    fields = dict(item.split("=", 1) for item in seen["scontrol"] if "=" in item)
    assert fields["Partition"] == local_slurm
    assert fields["Account"] == "dswc-site"
    assert fields["TimeLimit"] == "00:07:00"
    assert fields["NumCPUs"] == "2"
    assert fields["MinMemoryNode"] == "2G"
    assert fields["Comment"] == "from-site-jobqueue"
    resources, nthreads, lifetime = seen["worker"]
    assert (resources, nthreads) == ({"site": 1}, 2)
    assert 357 - 21 <= lifetime <= 357 + 21
    # an explicit argument still wins over the site
    assert "#SBATCH -t 00:09:00" in seen["argument"].splitlines()
    assert _wait_until_gone(local_slurm) == []


@pytest.mark.slurm
def test_jobs_of_several_workers_are_replaced_when_their_workers_retire(
    local_slurm: str, tmp_path: Path
) -> None:
    """Workers retire at their lifetime; new jobs take over, also with 2 workers per job.

    distributed alone never replaces a job of several workers (dask/distributed#9102):
    without cascadia's JobAdaptive this run stalls once the first jobs are gone.
    """
    n_tasks, seconds = 320, 0.5  # 40 s of work for 4 workers: outlasts a 20 s lifetime
    with open_cluster(
        "slurm",
        jobs=2,
        cores=2,
        processes=2,
        memory="1GiB",
        walltime="00:02:00",
        lifetime={"duration": "20s", "stagger": "3s"},
        queue=local_slurm,
        interface="lo",
        log_directory=str(tmp_path),
        dashboard_address=None,
        # two 2-worker jobs on the 2-CPU test node: request no CPUs per task; a loaded
        # test machine may need more than the default 60 s to start a worker
        extra_kwargs={"job_directives_skip": ["--cpus-per-task"], "death_timeout": 120},
    ) as client:

        def task(i: int) -> tuple[int, str]:
            time.sleep(seconds)
            return i * i, os.environ["SLURM_JOB_ID"]

        results, jobs = [], set()
        for future in as_completed(client.map(task, range(n_tasks))):
            value, job = future.result()
            results.append(value)
            jobs.add(job)
            future.release()
    assert sorted(results) == [i * i for i in range(n_tasks)]
    assert len(jobs) > 2, f"no replacement job ran a task: {jobs}"
    retired = [
        log.name
        for log in tmp_path.glob("dask-worker-*.err")
        if "Reason: worker-lifetime-reached" in log.read_text()
    ]
    assert retired, "no worker reached its lifetime"
    assert _wait_until_gone(local_slurm) == []


QUIET_SCRIPT = """
import sys
from cascadia import cli
cli._quiet_library_logs(library_info=sys.argv[1] == "-v")
import xclim  # its import gives the root logger a stderr handler
import socket
import time
from distributed import WorkerPlugin
from cascadia.run.cluster import open_cluster

busy = socket.socket()  # the dashboard's port taken, as by another run on this machine
try:
    busy.bind(("127.0.0.1", 8787))
    busy.listen()
except OSError:
    pass  # taken already

class SlowExit(WorkerPlugin):  # a worker 6 s to exit, as on a loaded machine
    def teardown(self, worker):
        time.sleep(6)

with open_cluster("local", workers=1) as client:
    client.register_plugin(SlowExit())
    assert client.submit(sum, [1, 2]).result() == 3
print("done")
"""


@pytest.mark.parametrize("flag", ["", "-v"])
def test_a_local_cluster_is_quiet_unless_asked(flag: str) -> None:
    """Quiet by default: the scheduler's INFO lines reach the terminal with -v only, and
    so does the nanny's "Worker process still alive after 4.0 seconds, killing" when a
    worker is slow to exit once the work is done (no warning after a clean run); the
    dashboard's port taken by another run moves the dashboard without a warning."""
    done = subprocess.run(
        [os.environ.get("PYTHON", sys.executable), "-c", QUIET_SCRIPT, flag],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "already in use" not in done.stderr, done.stderr
    if flag:
        assert "INFO:distributed.scheduler" in done.stderr
        assert "INFO:distributed.nanny:Worker process still alive" in done.stderr
        dashboard = re.search(r"dashboard at:\s+http://127\.0\.0\.1:(\d+)/status", done.stderr)
        assert dashboard is not None and dashboard[1] != "8787", done.stderr
    else:
        assert "INFO" not in done.stderr, done.stderr
        assert "still alive" not in done.stderr and "WARNING" not in done.stderr, done.stderr
