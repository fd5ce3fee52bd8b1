"""Batch jobs through dask-jobqueue: a site's ``jobqueue`` config, walltimes, worker lifetimes.

Three things HPC users expect of a tool built on dask-jobqueue, which
:mod:`cascadia.run.cluster` builds on:

* **The site's config applies.** Sites describe their batch system once, in the standard
  ``jobqueue.<kind>`` namespace of ``dask.config`` (a ``jobqueue.yaml`` in
  ``~/.config/dask/``, ``/etc/dask/`` or ``$DASK_CONFIG``, or ``DASK_JOBQUEUE__SLURM__...``
  variables). :func:`site_settings` reads what the site set there, leaving dask-jobqueue's
  own packaged defaults out, so cascadia's fallbacks fill only what the site left unset.
* **Jobs end; work does not.** A worker started with ``--lifetime`` retires before its job's
  walltime: the scheduler copies its results to other workers and reschedules its running
  task without counting a failure. :func:`lifetime_args` derives the lifetime from the
  walltime (:func:`walltime_seconds`).
* **Expired jobs are replaced.** :class:`JobAdaptive` submits a new job for every job whose
  workers have all left, including jobs of several worker processes, which distributed's
  own adaptive scaling never replaces (dask/distributed#9102).

dask_jobqueue is never imported here: importing it writes ``~/.config/dask/jobqueue.yaml``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import dask.config
import yaml
from dask.utils import parse_timedelta
from distributed.deploy.adaptive import Adaptive

__all__ = [
    "DEPRECATED_KEYS",
    "JOB_KEYS",
    "JobAdaptive",
    "derived_lifetime",
    "lifetime_args",
    "restore_jobqueue_defaults",
    "site_settings",
    "walltime_seconds",
]

JOB_KEYS: dict[str, tuple[str, ...]] = {
    kind: (
        "queue",
        "account",
        "cores",
        "processes",
        "memory",
        "walltime",
        "job_extra_directives",
        "job_script_prologue",
        "worker_extra_args",
        "interface",
        "local_directory",
        "log_directory",
        "python",
        *extra,
    )
    for kind, extra in (("slurm", ()), ("pbs", ("resource_spec",)))
}
"""dask-jobqueue keys cascadia resolves per kind (argument, cascadia config, site, fallback)."""

DEPRECATED_KEYS = {
    "job_extra_directives": "job_extra",
    "job_script_prologue": "env_extra",
    "worker_extra_args": "extra",
}
"""Old dask-jobqueue names a site's config may still use for a key (it warns about them)."""

_UNLIMITED = frozenset({"infinite", "unlimited"})
# Derived lifetime: the worker retires within [lifetime - stagger, lifetime + stagger] of
# its start, so the job keeps at least `margin` before its walltime for the hand-over (and
# for the seconds the job spent starting Python before the worker's clock began).
_STAGGER_FRACTION, _STAGGER_MAX = 0.05, 300.0
_MARGIN_FRACTION, _MARGIN_MIN, _MARGIN_MAX = 0.10, 30.0, 600.0


def _underscored(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k).replace("-", "_"): _underscored(v) for k, v in value.items()}
    return value


@cache
def _jobqueue_yaml() -> str:
    """dask-jobqueue's packaged ``jobqueue.yaml``, read without importing the package."""
    found = importlib.util.find_spec("dask_jobqueue")
    if found is None or found.origin is None:
        return "jobqueue: {}"
    return Path(found.origin).with_name("jobqueue.yaml").read_text(encoding="utf-8")


def _jobqueue_defaults() -> dict[str, Any]:
    return _underscored(yaml.safe_load(_jobqueue_yaml()).get("jobqueue") or {})


def restore_jobqueue_defaults() -> None:
    """Put back dask-jobqueue's defaults that are missing from ``dask.config``; override none.

    dask-jobqueue registers its defaults once, on first import. A ``dask.config.set``
    block entered before that import deletes them again on exit (it restores the config
    as it was), and the next cluster then fails with ``KeyError: 'jobqueue'``.
    """
    dask.config.update(dask.config.config, yaml.safe_load(_jobqueue_yaml()), priority="old")


def site_settings(kind: str) -> dict[str, Any]:
    """The keys of ``jobqueue.<kind>`` that the site's dask config sets.

    A key counts as set when a config file or environment variable Dask reads names it,
    or when its current value differs from dask-jobqueue's packaged default (set with
    ``dask.config.set``). ``null`` values count as unset. Deprecated names
    (:data:`DEPRECATED_KEYS`) stand in for their replacement when only they are set.

    Parameters
    ----------
    kind
        ``"slurm"`` or ``"pbs"``.

    Returns
    -------
    dict
        Key (underscored) to the site's value, unchanged.
    """
    current = _underscored(dask.config.get(f"jobqueue.{kind}", default=None) or {})
    written = _underscored(dask.config.collect().get("jobqueue") or {}).get(kind) or {}
    defaults = _jobqueue_defaults().get(kind, {})
    site = {
        key: value
        for key, value in current.items()
        if value is not None and (key in written or value != defaults.get(key))
    }
    for key, old in DEPRECATED_KEYS.items():
        if key not in site and site.get(old):
            site[key] = site[old]
    return site


def walltime_seconds(walltime: str | int, kind: str) -> float | None:
    """A batch walltime in seconds, as the batch system reads it; ``None`` when unlimited.

    SLURM (``sbatch -t``): ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
    ``D-HH:MM:SS``; a bare number is minutes. PBS (``-l walltime``): ``[[HH:]MM:]SS``; a
    bare number is seconds.

    Raises
    ------
    ValueError
        Not a walltime of that batch system.
    """
    text = str(walltime).strip()
    if text.lower() in _UNLIMITED:
        return None
    expected = (
        "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS" if kind == "slurm" else "[[HH:]MM:]SS"
    )
    days, clock = 0.0, text
    if kind == "slurm" and "-" in text:
        day_text, clock = text.split("-", 1)
        days = float(day_text) if day_text.isdigit() else -1.0
    parts = clock.split(":")
    if days < 0 or len(parts) > 3 or not all(re.fullmatch(r"\d+(\.\d+)?", p) for p in parts):
        raise ValueError(f"walltime {walltime!r} is not a {kind} walltime ({expected})")
    numbers = [float(p) for p in parts]
    if kind == "slurm" and "-" in text:  # D-HH[:MM[:SS]]
        units = (3600.0, 60.0, 1.0)
    elif kind == "slurm":  # MM, MM:SS, HH:MM:SS
        units = ((60.0,), (60.0, 1.0), (3600.0, 60.0, 1.0))[len(numbers) - 1]
    else:
        units = ((1.0,), (60.0, 1.0), (3600.0, 60.0, 1.0))[len(numbers) - 1]
    return days * 86400.0 + sum(n * u for n, u in zip(numbers, units, strict=False))


def derived_lifetime(walltime: float) -> tuple[float, float]:
    """Worker lifetime and stagger (s) derived from a job's walltime (s).

    stagger = 5 % of the walltime (at most 5 min); lifetime = walltime - margin - stagger,
    margin = 10 % of the walltime (30 s to 10 min). A 1 h job: 51 min +- 3 min; 24 h:
    23 h 45 min +- 5 min; 2 min: 84 s +- 6 s.

    Raises
    ------
    ValueError
        The walltime leaves no lifetime (under about 32 s).
    """
    stagger = min(_STAGGER_FRACTION * walltime, _STAGGER_MAX)
    margin = min(max(_MARGIN_FRACTION * walltime, _MARGIN_MIN), _MARGIN_MAX)
    lifetime = walltime - margin - stagger
    if lifetime <= 0:
        raise ValueError(
            f"walltime {walltime:g} s is too short to derive a worker lifetime from it "
            f"(it keeps {margin:g} s for the hand-over): set lifetime.duration explicitly, "
            "or null to switch lifetimes off"
        )
    return lifetime, stagger


def _seconds(value: str | float) -> float:
    return float(parse_timedelta(value))


def _duration(seconds: float) -> str:
    """Whole seconds as ``dask worker`` reads them: ``51m`` or ``84s``."""
    whole = round(seconds)
    return f"{whole // 60}m" if whole % 60 == 0 else f"{whole}s"


def lifetime_args(
    duration: str | float | None,
    stagger: str | float | None,
    restart: bool,
    walltime: str | int,
    kind: str,
    worker_extra_args: Sequence[str] = (),
) -> list[str]:
    """``dask worker`` arguments that retire each worker before its job's walltime.

    Parameters
    ----------
    duration, stagger
        ``"auto"`` (derived from ``walltime``, :func:`derived_lifetime`), a duration
        (``"55m"``, seconds as a number) or ``None`` (no lifetime / no stagger).
    restart
        ``--lifetime-restart``: restart the worker in the same job after its lifetime.
        Only for jobs that outlive their workers (no walltime); a batch job near its
        walltime must end instead.
    walltime, kind
        The job's walltime and batch system (``"slurm"``, ``"pbs"``).
    worker_extra_args
        The other worker arguments: if they already hold ``--lifetime`` (a site's own
        choice), nothing is added.

    Returns
    -------
    list of str
        Empty when lifetimes are off.

    Raises
    ------
    ValueError
        A lifetime (plus stagger) that reaches the walltime: the batch system would kill
        the workers before they hand their work over.
    """
    if duration is None or any(a.split("=")[0] == "--lifetime" for a in worker_extra_args):
        return []
    limit = walltime_seconds(walltime, kind)
    if limit is None and (duration == "auto" or stagger == "auto"):
        return []  # unlimited walltime: nothing to retire before
    auto = derived_lifetime(limit) if limit is not None else (0.0, 0.0)
    life = auto[0] if duration == "auto" else _seconds(duration)
    spread = 0.0 if stagger is None else auto[1] if stagger == "auto" else _seconds(stagger)
    if life <= 0 or spread < 0:
        raise ValueError(f"worker lifetime {duration!r} +- {stagger!r} must be positive")
    if limit is not None and life + spread >= limit:
        raise ValueError(
            f"worker lifetime {life:g} s + stagger {spread:g} s reaches the walltime "
            f"{walltime} ({limit:g} s): workers would be killed before they hand their work "
            "over; shorten lifetime.duration or lengthen the walltime"
        )
    args = ["--lifetime", _duration(life)]
    if round(spread):
        args += ["--lifetime-stagger", _duration(spread)]
    if restart:
        args.append("--lifetime-restart")
    return args


class JobAdaptive(Adaptive):
    """Adaptive scaling that replaces every batch job whose workers have all left, at once.

    A job ends at its walltime, when its workers reach ``--lifetime``, or when a node
    fails. distributed's ``SpecCluster`` notices such a job only if it ran a single
    worker, and only after ``distributed.deploy.lost-worker-timeout`` (15 s) with no
    worker at all in between; a job of several worker processes stays "requested"
    forever (dask/distributed#9102), so a long run ends up with no workers. Here a job
    whose workers joined and have all gone is cancelled (in case it lingers) and dropped
    from the cluster's plan on the next cycle (1 s); the usual scale-up then submits a new
    job, under a new name.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._joined: set[str] = set()
        self._closing: set[asyncio.Future[Any]] = set()

    async def recommendations(self, target: int) -> dict[str, Any]:
        """Drop ended jobs, then recommend as distributed's ``Adaptive`` does."""
        self._drop_ended_jobs()
        return await super().recommendations(target)

    def _drop_ended_jobs(self) -> None:
        cluster = self.cluster
        observed = cluster.observed
        for name, job in list(cluster.workers.items()):
            spec = cluster.worker_spec.get(name) or {}
            workers = {f"{name}{suffix}" for suffix in spec["group"]} if "group" in spec else {name}
            if workers & observed:
                self._joined.add(name)
            elif name in self._joined:
                self._joined.discard(name)
                del cluster.workers[name]
                cluster.worker_spec.pop(name, None)
                closing = asyncio.ensure_future(job.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
