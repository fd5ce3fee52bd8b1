"""Runs and reprocessing passes submitted to the service, executed in background threads.

A run is :func:`cascadia.run.pipeline.run_pipeline` over the submitted run catalogs into
the served store, on the Dask cluster the service was started with (``--cluster``:
opened through :func:`cascadia.run.cluster.open_cluster` only when something must be
computed). A reprocessing pass is ``cascadia.service.reprocess.reprocess_pass`` when
that module is installed. Progress (combinations finished of the total, failures with
their reasons) is kept per run for ``GET /runs/{id}``; at most ``max_active`` runs are
queued or running at once, since they write the one store.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cascadia.run.pipeline import ComboResult, RunInputError, run_pipeline
from cascadia.sources.config import CatalogError, load_run_catalog

try:
    from cascadia.service.reprocess import reprocess_pass
except ModuleNotFoundError:  # the reprocessing pass (issue 15 item 5) is not installed
    reprocess_pass = None

__all__ = ["KINDS", "RunBusy", "RunManager", "RunRefused", "RunState"]

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("run", "reprocess")


class RunRefused(ValueError):
    """A submission that cannot start (bad catalog, unavailable kind): nothing ran."""


class RunBusy(RuntimeError):
    """Too many runs queued or running."""


@dataclass
class RunState:
    """What ``GET /runs/{id}`` reports about one submission."""

    id: str
    kind: str
    catalogs: list[str]
    status: str = "queued"  # queued, running, done (every combination done), failed
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    total: int | None = None
    finished_combinations: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    spread: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "catalogs": list(self.catalogs),
            "status": self.status,
            "submitted": self.submitted,
            "started": self.started,
            "finished": self.finished,
            "progress": {"done": self.finished_combinations, "total": self.total},
            "counts": dict(self.counts),
            "errors": list(self.errors),
            "spread": self.spread,
        }


class RunManager:
    """Starts submissions in threads and keeps their state.

    Parameters
    ----------
    results, storage_options
        The served store and its fsspec options.
    model, cache, cluster, workers
        As for ``cascadia-ensemble run``.
    max_active
        Runs queued or running at once (they write the same store).
    on_finish
        Called after each submission ends, whatever its outcome, with its state.
    """

    def __init__(
        self,
        results: str,
        *,
        model: str,
        cache: str | None = None,
        cluster: str | None = None,
        workers: int | None = None,
        storage_options: dict[str, Any] | None = None,
        max_active: int = 1,
        on_finish: Callable[[RunState], None] | None = None,
    ) -> None:
        self.results = results
        self.model = model
        self.cache = cache
        self.cluster = cluster
        self.workers = workers
        self.storage_options = storage_options
        self.max_active = max_active
        self.on_finish = on_finish
        self._runs: dict[str, RunState] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        with self._lock:
            return sum(r.status in ("queued", "running") for r in self._runs.values())

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            state = self._runs.get(run_id)
            return state.as_dict() if state else None

    def submit(self, kind: str, catalogs: Sequence[str]) -> dict[str, Any]:
        """Check the submission, start it in a thread, return its state.

        Raises
        ------
        RunRefused
            Unknown or unavailable kind, or a catalog that does not load.
        RunBusy
            ``max_active`` runs are queued or running.
        """
        if kind not in KINDS:
            raise RunRefused(f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")
        if kind == "reprocess" and reprocess_pass is None:
            raise RunRefused(
                "kind 'reprocess' is unavailable: cascadia.service.reprocess is not installed"
            )
        if not catalogs:
            raise RunRefused("catalogs: at least one run catalog is needed")
        for path in catalogs:
            try:
                load_run_catalog(path)
            except CatalogError as exc:
                raise RunRefused(str(exc)) from None
            except Exception as exc:  # an unknown protocol, an unreachable URL
                raise RunRefused(f"{path}: cannot be read: {type(exc).__name__}: {exc}") from None
        with self._lock:
            active = [r.id for r in self._runs.values() if r.status in ("queued", "running")]
            if len(active) >= self.max_active:
                raise RunBusy(
                    f"{len(active)} run(s) already queued or running ({', '.join(active)}); "
                    f"the service runs at most {self.max_active} at once"
                )
            state = RunState(id=uuid.uuid4().hex[:12], kind=kind, catalogs=list(catalogs))
            self._runs[state.id] = state
        thread = threading.Thread(
            target=self._execute, args=(state,), name=f"cascadia-run-{state.id}", daemon=True
        )
        thread.start()
        return state.as_dict()

    # ------------------------------------------------------------------ the thread

    def _total(self, state: RunState, total: int) -> None:
        with self._lock:
            state.total = total

    def _result(self, state: RunState, result: ComboResult) -> None:
        with self._lock:
            state.finished_combinations += 1
            state.counts[result.status] = state.counts.get(result.status, 0) + 1
            if result.status == "failed":
                state.errors.append(f"{result.label}: {result.reason}")

    def _call(self, state: RunState) -> Any:
        progress = {
            "on_total": lambda n: self._total(state, n),
            "on_result": lambda r: self._result(state, r),
        }
        common = {
            "cache": self.cache,
            "storage_options": self.storage_options,
            "cluster": self.cluster,
            "workers": self.workers,
            **progress,
        }
        if state.kind == "reprocess":
            assert reprocess_pass is not None
            return reprocess_pass(state.catalogs, self.model, self.results, **common)
        return run_pipeline(state.catalogs, self.model, self.results, **common)

    def _execute(self, state: RunState) -> None:
        with self._lock:
            state.status, state.started = "running", time.time()
        try:
            summary = self._call(state)
        except (RunInputError, CatalogError) as exc:
            outcome, errors, spread = "failed", [str(exc)], ""
        except Exception as exc:  # a run must end with a state, never kill the service
            log.exception("run %s failed", state.id)
            outcome, errors, spread = "failed", [f"{type(exc).__name__}: {exc}"], ""
        else:
            spread = str(getattr(summary, "spread", ""))
            outcome = "done" if summary.ok else "failed"
            errors = []
        with self._lock:
            state.errors.extend(errors)
            state.spread = spread
            state.status, state.finished = outcome, time.time()
        if self.on_finish:
            self.on_finish(state)
