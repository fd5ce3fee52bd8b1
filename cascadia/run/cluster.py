"""Open the Dask cluster cascadia runs on: local processes, SLURM, PBS or a running scheduler.

Every combo of the ensemble is one Dask task graph, so where those graphs run is a
deployment choice, not code: a laptop (``LocalCluster``), an HPC batch system
(dask-jobqueue's ``SLURMCluster`` / ``PBSCluster``), or a scheduler someone already
started. The choice and its settings live in the ``cascadia.cluster`` namespace of
``dask.config`` with a packaged, commented default (``cascadia/run/cluster.yaml``; an
editable copy is ``deploy/jobqueue.yaml``).

Settings resolve one way, in one function (:func:`resolve_spec`), key by key::

    explicit argument  ->  dask.config ("cascadia.cluster")  ->  packaged default

For the batch-job keys of ``slurm`` / ``pbs`` (cores, memory, walltime, queue, account,
job_extra_directives, ...) the site's standard dask-jobqueue config comes in between::

    explicit argument  ->  cascadia.cluster.<kind>.<key>  ->  jobqueue.<kind>.<key> (site)
                       ->  cascadia.cluster.<kind>.fallback.<key>  ->  dask-jobqueue default

so a site's ``jobqueue.yaml`` applies unchanged and cascadia's fallbacks only fill what it
leaves unset (:mod:`cascadia.run.batch`). Batch workers retire before their job's walltime
(``--lifetime`` derived from it) and adaptive scaling replaces every job that ended.

Workers run one thread each and torch is held to ``torch_threads`` (default 1) threads
per worker, because the parallelism comes from Dask: N workers each spinning up N
OpenMP threads oversubscribe the cores. This module never imports torch itself; the
worker plugin imports it lazily on the workers.

Examples
--------
>>> from cascadia.run.cluster import open_cluster
>>> with open_cluster("local", workers=2) as client:  # doctest: +SKIP
...     client.submit(sum, [1, 2]).result()
3
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from functools import cache
from importlib import import_module, resources
from inspect import signature
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta
from distributed.diagnostics.plugin import WorkerPlugin
from pydantic import (
    BaseModel,
    ConfigDict,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)

from cascadia.run.batch import (
    JOB_KEYS,
    JobAdaptive,
    lifetime_args,
    restore_jobqueue_defaults,
    site_settings,
)

if TYPE_CHECKING:
    from distributed import Client, Worker

__all__ = [
    "KINDS",
    "NAMESPACE",
    "AdaptiveSettings",
    "AddressSettings",
    "ClusterSpec",
    "JobFallback",
    "JobQueueSettings",
    "LifetimeSettings",
    "LocalSettings",
    "PBSSettings",
    "SlurmSettings",
    "TorchThreads",
    "job_script",
    "open_cluster",
    "packaged_defaults",
    "resolve_spec",
]

NAMESPACE = "cascadia.cluster"
"""The ``dask.config`` key under which cluster settings live."""

KINDS = ("local", "slurm", "pbs", "address")
"""Valid values of ``kind``; a string containing ``://`` is read as ``address``."""

# Module and class names per batch system, imported only when used: importing
# dask_jobqueue writes ~/.config/dask/jobqueue.yaml, which a plain `import cascadia`
# must not do.
_JOBQUEUE: dict[str, tuple[str, str, str]] = {
    "slurm": ("dask_jobqueue.slurm", "SLURMCluster", "SLURMJob"),
    "pbs": ("dask_jobqueue.pbs", "PBSCluster", "PBSJob"),
}
_PLACEHOLDER_SCHEDULER = "tcp://<scheduler-address>:8786"
_TOP_LEVEL_OVERRIDES = frozenset({"torch_threads"})
# Keys of a jobqueue section that are cascadia's, not dask-jobqueue keywords.
_CASCADIA_ONLY = frozenset({"jobs", "adaptive", "lifetime", "fallback", "extra_kwargs"})
# Keywords of the *cluster* class that a single Job does not take (job_script()).
_CLUSTER_ONLY = frozenset({"scheduler_options"})


class _Strict(BaseModel):
    """Base for settings: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalSettings(_Strict):
    """``LocalCluster`` on this machine: worker processes, one thread each."""

    n_workers: PositiveInt | None
    threads_per_worker: PositiveInt
    memory_limit: str | int | float | None
    host: str
    dashboard_address: str | None


class AdaptiveSettings(_Strict):
    """Adaptive scaling bounds, in batch jobs (not workers)."""

    enabled: bool
    minimum_jobs: NonNegativeInt
    maximum_jobs: PositiveInt

    @model_validator(mode="after")
    def _bounds(self) -> AdaptiveSettings:
        if self.minimum_jobs > self.maximum_jobs:
            raise ValueError(
                f"adaptive minimum_jobs={self.minimum_jobs} exceeds "
                f"maximum_jobs={self.maximum_jobs}"
            )
        return self


class LifetimeSettings(_Strict):
    """How long each batch worker lives (``dask worker --lifetime``), see cluster.yaml."""

    duration: str | float | None
    stagger: str | float | None
    restart: bool

    @field_validator("duration", "stagger")
    @classmethod
    def _duration_parses(cls, value: str | float | None) -> str | float | None:
        if value is not None and value != "auto":
            try:
                parse_timedelta(value)
            except (KeyError, ValueError, TypeError):
                raise ValueError(
                    f"{value!r} is not a duration: expected e.g. '55m', '3300s' or seconds"
                ) from None
        return value


class JobFallback(_Strict):
    """cascadia's values for batch-job keys that neither cascadia's nor the site's config set."""

    cores: PositiveInt
    memory: str | int
    walltime: str
    job_extra_directives: list[str]

    @field_validator("walltime", mode="before")
    @classmethod
    def _walltime_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value


class JobQueueSettings(_Strict):
    """Settings shared by the dask-jobqueue backends (one batch job per worker group).

    The batch-job keys are resolved (argument, cascadia config, the site's
    ``jobqueue.<kind>`` config, ``fallback``) before validation; ``None`` left after that
    means "neither set": dask-jobqueue then applies its own default.
    """

    _kind: ClassVar[str]

    queue: str | None
    account: str | None
    cores: PositiveInt
    processes: PositiveInt
    memory: str | int
    walltime: str
    job_extra_directives: list[str]
    job_script_prologue: list[str] | None
    worker_extra_args: list[str] | None
    interface: str | None
    local_directory: str | None
    log_directory: str | None
    python: str | None
    fallback: JobFallback
    dashboard_address: str | None
    jobs: PositiveInt
    adaptive: AdaptiveSettings
    lifetime: LifetimeSettings
    extra_kwargs: dict[str, Any]

    @field_validator("walltime", mode="before")
    @classmethod
    def _walltime_text(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted 1:00:00 as the integer 3600: keep what the batch
        # system would receive, as text.
        return str(value) if isinstance(value, int) else value

    @field_validator("memory")
    @classmethod
    def _memory_parses(cls, value: str | int) -> str | int:
        parse_bytes(value)  # fail here, with the key name, not at submission time
        return value

    @field_validator("extra_kwargs")
    @classmethod
    def _no_modelled_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        modelled = sorted(value.keys() & cls.model_fields.keys())
        if modelled:
            raise ValueError(
                f"extra_kwargs sets {', '.join(modelled)}: set "
                f"{' and '.join(repr(k) for k in modelled)} in the section itself"
            )
        return value

    @model_validator(mode="after")
    def _whole_threads_and_lifetime(self) -> JobQueueSettings:
        if self.cores % self.processes:
            raise ValueError(
                f"cores={self.cores} is not a multiple of processes={self.processes}: "
                "each worker process gets cores / processes threads"
            )
        self.lifetime_args()  # a walltime or lifetime that cannot work fails here
        return self

    def lifetime_args(self) -> list[str]:
        """The ``dask worker`` lifetime arguments these settings give each worker."""
        return lifetime_args(
            self.lifetime.duration,
            self.lifetime.stagger,
            self.lifetime.restart,
            self.walltime,
            self._kind,
            self.worker_extra_args or (),
        )


class SlurmSettings(JobQueueSettings):
    """``SLURMCluster`` settings (see ``cascadia/run/cluster.yaml`` for each key)."""

    _kind: ClassVar[str] = "slurm"


class PBSSettings(JobQueueSettings):
    """``PBSCluster`` settings; ``resource_spec`` is the ``-l`` request."""

    _kind: ClassVar[str] = "pbs"

    resource_spec: str | None


class AddressSettings(_Strict):
    """A scheduler that is already running; cascadia only connects to it."""

    address: str | None
    scheduler_file: str | None
    timeout: str | float
    wait_for_workers: NonNegativeInt

    @field_validator("timeout")
    @classmethod
    def _timeout_parses(cls, value: str | float) -> str | float:
        parse_timedelta(value)
        return value


class ClusterSpec(_Strict):
    """The resolved cluster settings: which backend, and every backend's settings.

    Build it with :func:`resolve_spec` (which fills it from ``dask.config`` and the
    packaged default); all fields are required so that the packaged YAML stays the only
    place defaults are written. ``model_dump()`` gives what to record beside results.
    """

    kind: Literal["local", "slurm", "pbs", "address"]
    torch_threads: PositiveInt | None
    local: LocalSettings
    slurm: SlurmSettings
    pbs: PBSSettings
    address: AddressSettings

    @model_validator(mode="after")
    def _address_given(self) -> ClusterSpec:
        if self.kind == "address" and not (self.address.address or self.address.scheduler_file):
            raise ValueError(
                "kind 'address' needs a scheduler: pass 'tcp://HOST:PORT' as the kind, or "
                f"set {NAMESPACE}.address.address or {NAMESPACE}.address.scheduler_file"
            )
        return self

    @property
    def settings(self) -> LocalSettings | SlurmSettings | PBSSettings | AddressSettings:
        """Settings of the active ``kind``."""
        return getattr(self, self.kind)


class TorchThreads(WorkerPlugin):
    """Worker plugin holding torch to ``n_threads`` threads on every worker.

    A plugin rather than a one-off ``client.run`` so that workers joining later
    (adaptive scaling, restarted workers) get the same setting. torch is imported on the
    worker, never in the client process; ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` are
    set first so that threads created after this (Dask's task threads) inherit the same
    limit when the OpenMP runtime starts with torch.

    Parameters
    ----------
    n_threads
        Intra-op threads torch may use per worker process.
    """

    name = "cascadia-torch-threads"

    def __init__(self, n_threads: int) -> None:
        self.n_threads = n_threads

    def setup(self, worker: Worker) -> None:
        """Apply the limit on ``worker`` (runs once per worker, on its event loop)."""
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(self.n_threads)
        try:
            import torch
        except ImportError:  # a worker without torch runs no model code: nothing to hold
            return
        torch.set_num_threads(self.n_threads)


@cache
def _packaged_text() -> str:
    return resources.files("cascadia.run").joinpath("cluster.yaml").read_text(encoding="utf-8")


def packaged_defaults() -> dict[str, Any]:
    """The packaged default settings (``cascadia/run/cluster.yaml``), as a fresh dict.

    Returns
    -------
    dict
        The content under ``cascadia.cluster``; a new object on every call, so callers
        may modify it.
    """
    return yaml.safe_load(_packaged_text())["cascadia"]["cluster"]


def _underscored(value: Any) -> Any:
    """Dask treats ``a-b`` and ``a_b`` keys as the same; pydantic needs ``a_b``."""
    if isinstance(value, Mapping):
        return {str(k).replace("-", "_"): _underscored(v) for k, v in value.items()}
    return value


def _unknown_kind(kind: object) -> ValueError:
    valid = ", ".join(repr(k) for k in KINDS)
    return ValueError(
        f"unknown cluster kind {kind!r}: valid kinds are {valid}, "
        "or a scheduler address such as 'tcp://HOST:8786'"
    )


def resolve_spec(
    spec_or_kind: str | ClusterSpec | None = None,
    workers: int | None = None,
    **overrides: Any,
) -> ClusterSpec:
    """Resolve cluster settings: argument, then ``dask.config``, then packaged default.

    This is the one place the fallback happens, so every entry point (Python API, CLI,
    service) sees the same settings for the same inputs. The batch-job keys of ``slurm``
    and ``pbs`` take the site's ``jobqueue.<kind>`` config before cascadia's ``fallback``
    (module docstring, docs/deploy.md).

    Parameters
    ----------
    spec_or_kind
        ``"local"``, ``"slurm"``, ``"pbs"``, ``"address"``, a scheduler address
        (``"tcp://HOST:PORT"``, read as kind ``address``), an already resolved
        :class:`ClusterSpec` (used instead of config and default), or ``None`` for the
        configured ``kind``.
    workers
        Number of Dask workers. ``local``: worker processes. ``slurm``/``pbs``: jobs to
        submit (maximum jobs when adaptive), rounded up to whole jobs of ``processes``
        workers. ``address``: wait until this many workers are connected.
    **overrides
        Keys of the active kind's section (e.g. ``queue="debug"``, ``cores=4``,
        ``adaptive={"enabled": True}``; nested mappings are merged), or
        ``torch_threads``. Unknown keys are errors.

    Returns
    -------
    ClusterSpec
        Validated settings.

    Raises
    ------
    ValueError
        Unknown kind, unknown or invalid keys (pydantic's ``ValidationError`` is a
        ``ValueError``), or ``workers < 1``.
    """
    resolved = isinstance(spec_or_kind, ClusterSpec)
    if isinstance(spec_or_kind, ClusterSpec):
        base = spec_or_kind.model_dump()
        kind: object = base["kind"]
    else:
        configured = _underscored(dask.config.get(NAMESPACE, default=None) or {})
        base = dask.config.merge(packaged_defaults(), configured)
        kind = base.get("kind") if spec_or_kind is None else spec_or_kind

    if isinstance(kind, str) and "://" in kind:
        base["address"] = {**base["address"], "address": kind, "scheduler_file": None}
        kind = "address"
    if kind not in KINDS:
        raise _unknown_kind(kind)
    assert isinstance(kind, str)
    base["kind"] = kind

    overrides = _underscored(overrides)
    for key in _TOP_LEVEL_OVERRIDES & overrides.keys():
        base[key] = overrides.pop(key)
    base[kind] = dask.config.merge(base[kind], overrides)
    if not resolved:
        # The active kind takes the site's jobqueue config; the others only need to
        # validate, and a site's slurm settings must not break a local or pbs run.
        for batch in JOB_KEYS:
            site = site_settings(batch) if batch == kind else {}
            base[batch] = _layer_site(batch, base[batch], site)
    section: dict[str, Any] = base[kind]

    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        _apply_workers(kind, section, workers)
    return ClusterSpec.model_validate(base)


def _layer_site(kind: str, section: dict[str, Any], site: Mapping[str, Any]) -> dict[str, Any]:
    """Fill the batch-job keys nobody set for cascadia: the site's value, else the fallback.

    ``section`` holds the packaged section merged with the user's ``cascadia.cluster``
    config and the explicit arguments, so a key that is not ``None`` there was chosen for
    cascadia and stays; ``site`` is :func:`cascadia.run.batch.site_settings`. ``processes``
    left unset everywhere is ``cores``: one thread per worker process.
    """
    section = dict(section)
    fallback = section.get("fallback") or {}
    for key in JOB_KEYS[kind]:
        if section.get(key) is None:
            section[key] = site.get(key, fallback.get(key))
    if section.get("processes") is None:
        section["processes"] = section.get("cores")
    return section


def _apply_workers(kind: str, section: dict[str, Any], workers: int) -> None:
    """Translate a worker count into the active section's own unit."""
    if kind == "local":
        section["n_workers"] = workers
    elif kind == "address":
        section["wait_for_workers"] = workers
    else:
        jobs = math.ceil(workers / int(section["processes"]))
        adaptive = dict(section["adaptive"])
        if adaptive.get("enabled"):
            adaptive["maximum_jobs"] = jobs
            adaptive["minimum_jobs"] = min(int(adaptive["minimum_jobs"]), jobs)
            section["adaptive"] = adaptive
        else:
            section["jobs"] = jobs


def _jobqueue_kwargs(settings: JobQueueSettings, *, for_job: bool = False) -> dict[str, Any]:
    """Keywords for a dask-jobqueue cluster (or, with ``for_job``, a single Job).

    ``None`` values are left out so dask-jobqueue applies its own config for them.
    """
    kwargs = {
        key: value
        for key, value in settings.model_dump(exclude=set(_CASCADIA_ONLY)).items()
        if value is not None
    }
    kwargs.pop("dashboard_address", None)
    lifetime = settings.lifetime_args()
    if lifetime:
        kwargs["worker_extra_args"] = [*(settings.worker_extra_args or []), *lifetime]
    kwargs.update(settings.extra_kwargs)
    if for_job:
        return {k: v for k, v in kwargs.items() if k not in _CLUSTER_ONLY}
    # dask-jobqueue takes the dashboard only through scheduler_options (a top-level
    # dashboard_address is a ValueError there).
    scheduler_options = dict(kwargs.get("scheduler_options") or {})
    if settings.dashboard_address is None:
        # No dashboard pages; the scheduler's plain HTTP routes (metrics, health) still
        # start, so move them to a free port instead of the default 8787.
        scheduler_options.setdefault("dashboard", False)
        scheduler_options.setdefault("dashboard_address", ":0")
    else:
        scheduler_options.setdefault("dashboard_address", settings.dashboard_address)
    kwargs["scheduler_options"] = scheduler_options
    return kwargs


def _import_jobqueue(module: str) -> Any:
    """A dask_jobqueue module, with the package's defaults in ``dask.config``."""
    imported = import_module(module)
    restore_jobqueue_defaults()
    return imported


def job_script(spec_or_kind: str | ClusterSpec | None, **overrides: Any) -> str:
    """The batch script dask-jobqueue would submit, without any scheduler running.

    Lets users (and tests) check partition, resources and directives before queueing
    anything. The scheduler address in the script is a placeholder.

    Parameters
    ----------
    spec_or_kind
        ``"slurm"`` or ``"pbs"`` (or a :class:`ClusterSpec` of those kinds, or ``None``
        for the configured kind).
    **overrides
        As for :func:`resolve_spec`.

    Returns
    -------
    str
        The job script text.
    """
    spec = resolve_spec(spec_or_kind, **overrides)
    if spec.kind not in _JOBQUEUE:
        raise ValueError(f"kind {spec.kind!r} has no job script; use one of {sorted(_JOBQUEUE)}")
    module, _, job_name = _JOBQUEUE[spec.kind]
    job_cls = getattr(_import_jobqueue(module), job_name)
    base_job = import_module("dask_jobqueue.core").Job
    kwargs = _jobqueue_kwargs(spec.settings, for_job=True)  # type: ignore[arg-type]
    accepted = set(signature(job_cls).parameters) | set(signature(base_job).parameters)
    unknown = kwargs.keys() - accepted
    if unknown:
        # Cluster-level extra_kwargs (e.g. scheduler_options) do not shape the script.
        kwargs = {k: v for k, v in kwargs.items() if k not in unknown}
    job = job_cls(scheduler=_PLACEHOLDER_SCHEDULER, name="dask-worker", **kwargs)
    return str(job.job_script())


def _open_in_process(stack: ExitStack) -> Client:
    """One worker thread in this process: for work that is one sequential chain, where
    worker processes would only add their start-up (seconds, and the imports of every
    module a task needs) and a second process would sit idle."""
    from distributed import Client, LocalCluster

    cluster = stack.enter_context(
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            memory_limit=0,  # the worker is this process: no nanny to restart it
            dashboard_address=None,  # in-process transport, no dashboard; the scheduler's
            # own HTTP endpoints still listen: on a free loopback port, not on the 8787
            # another run may hold (a warning otherwise)
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )
    )
    return stack.enter_context(Client(cluster))


def _open_local(spec: ClusterSpec, stack: ExitStack) -> Client:
    from dask.system import CPU_COUNT  # honours CPU affinity and cgroup quotas
    from distributed import Client, LocalCluster

    local = spec.local
    # Each Nanny writes distributed.nanny.pre-spawn-environ (OMP_NUM_THREADS=1, ...) into
    # *this* process's os.environ before spawning its worker and never undoes it; torch
    # imported here later, or `nproc` in a subprocess, would then see 1 core. Restored
    # once the workers are up, and again (registered first, so run last) after the
    # cluster has closed, since a restarted worker's nanny sets it again.
    saved = {key: os.environ.get(key) for key in _pre_spawn_keys()}
    stack.callback(_restore_environ, saved)
    nanny_log, slow_exit = logging.getLogger("distributed.nanny"), _SlowExitIsInfo()
    stack.callback(nanny_log.removeFilter, slow_exit)
    with warnings.catch_warnings():
        # a second run on this machine finds the dashboard's port taken: distributed then
        # serves it on another port (its scheduler logs where, shown with -v), no warning
        warnings.filterwarnings("ignore", message="Port .* is already in use", module="distributed")
        cluster = stack.enter_context(
            LocalCluster(
                n_workers=local.n_workers or CPU_COUNT,
                threads_per_worker=local.threads_per_worker,
                processes=True,  # the nanny gives each worker OMP_NUM_THREADS=1
                memory_limit=local.memory_limit,
                host=local.host,
                dashboard_address=local.dashboard_address,
            )
        )
    stack.callback(nanny_log.addFilter, slow_exit)  # from the client's exit to the cluster's
    _restore_environ(saved)  # the workers have their environment; give ours back now
    return stack.enter_context(Client(cluster))


class _SlowExitIsInfo(logging.Filter):
    """While a cluster whose work is done closes, a nanny kills a worker that has not
    exited within 4 s (a loaded machine, torch's threads winding down): harmless then, so
    logged at INFO (shown with ``-v``) rather than as a warning after a clean run."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and record.getMessage().startswith(
            "Worker process still alive"
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def _pre_spawn_keys() -> list[str]:
    return list(dask.config.get("distributed.nanny.pre-spawn-environ", default=None) or {})


def _restore_environ(saved: Mapping[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _open_jobqueue(spec: ClusterSpec, stack: ExitStack) -> Client:
    from distributed import Client

    settings = spec.settings
    assert isinstance(settings, JobQueueSettings)
    module, cluster_name, _ = _JOBQUEUE[spec.kind]
    cluster_cls = getattr(_import_jobqueue(module), cluster_name)
    # Entering the cluster's context makes close() (which cancels every job) run on exit,
    # after the client below has disconnected.
    cluster = stack.enter_context(cluster_cls(**_jobqueue_kwargs(settings)))
    # A fixed number of jobs is adaptive scaling between equal bounds: jobs that end
    # (walltime, worker lifetime, node failure) are replaced either way.
    adaptive = settings.adaptive
    bounds = (adaptive.minimum_jobs, adaptive.maximum_jobs) if adaptive.enabled else None
    minimum, maximum = bounds or (settings.jobs, settings.jobs)
    cluster.adapt(minimum_jobs=minimum, maximum_jobs=maximum, Adaptive=JobAdaptive)
    return stack.enter_context(Client(cluster))


def _open_address(spec: ClusterSpec, stack: ExitStack) -> Client:
    from distributed import Client

    settings = spec.address
    where = settings.address or f"scheduler file {settings.scheduler_file}"
    timeout = parse_timedelta(settings.timeout)
    try:
        client = Client(settings.address, scheduler_file=settings.scheduler_file, timeout=timeout)
    except OSError as exc:  # TimeoutError and refused connections alike
        raise ConnectionError(
            f"cannot reach Dask scheduler at {where} within {settings.timeout} "
            f"({type(exc).__name__})"
        ) from None
    stack.enter_context(client)  # closes only our connection, never their scheduler
    if settings.wait_for_workers:
        try:
            client.wait_for_workers(settings.wait_for_workers, timeout=timeout)
        except TimeoutError:
            raise TimeoutError(
                f"Dask scheduler at {where} has fewer than {settings.wait_for_workers} "
                f"workers after {settings.timeout}"
            ) from None
    return client


_OPENERS: dict[str, Callable[[ClusterSpec, ExitStack], Client]] = {
    "local": _open_local,
    "slurm": _open_jobqueue,
    "pbs": _open_jobqueue,
    "address": _open_address,
}


@contextmanager
def open_cluster(
    spec_or_kind: str | ClusterSpec | None = None,
    workers: int | None = None,
    *,
    one_chain: bool = False,
    **overrides: Any,
) -> Iterator[Client]:
    """Start (or connect to) a Dask cluster and yield a client; shut it down on exit.

    Parameters
    ----------
    spec_or_kind, workers, **overrides
        As for :func:`resolve_spec`.
    one_chain
        The work is one sequential chain of tasks (a scheduled pass that recomputes one
        combination): a ``local`` cluster is then one worker thread in this process, with
        no worker start-up and torch free to use every core; other kinds are unchanged.

    Yields
    ------
    distributed.Client
        Connected client. Workers of ``local`` clusters are up; batch jobs of
        ``slurm``/``pbs`` may still be queued (use ``client.wait_for_workers``).

    Raises
    ------
    ValueError
        Unknown kind or invalid settings.
    ConnectionError
        ``address`` kind and the scheduler does not answer within ``timeout``.

    Notes
    -----
    On exit, even after an error or ``KeyboardInterrupt``, the client disconnects and a
    cluster this function started is closed; for ``slurm``/``pbs`` that cancels every
    job it submitted. A scheduler given by address is left running.
    """
    spec = resolve_spec(spec_or_kind, workers, **overrides)
    with ExitStack() as stack:
        if one_chain and spec.kind == "local":
            yield _open_in_process(stack)
            return
        client = _OPENERS[spec.kind](spec, stack)
        if spec.torch_threads is not None:
            client.register_plugin(TorchThreads(spec.torch_threads), name=TorchThreads.name)
        yield client
