"""``cascadia-ensemble reprocess``: one scheduled pass that brings a results store up to date.

A pass is a run (:func:`cascadia.run.pipeline.run_pipeline`) judged against what the
store held before it:

* **unchanged**: stored "done" with the same result fingerprint (the inputs' content,
  chunk by chunk, the catalog entry, the bias adjustment, the model checksum and the
  inference settings) - not recomputed, not rewritten;
* **recomputed**: stored, but something it depends on changed (or it was not done);
* **appended**: newly catalogued: the store held no result for it before;
* **failed**: as in a run, with the reason; a stored result of a combination whose
  inputs cannot be read is kept;
* **not in catalog**: stored, but no catalog of this pass lists it any more - kept in
  the store and reported, never deleted silently.

The spread statistics are rewritten only when the set of done combinations or one of
their fingerprints changed, and the store's CF ``history`` gets one line per pass.
The cluster is opened only when something must be computed. The model and the
inference settings default to the ones the store records, so a schedule needs only
the catalogs and the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec
import pandas as pd

from cascadia.run.inference import InferenceConfig
from cascadia.run.lock import StoreLock, StoreLockedError
from cascadia.run.pipeline import ComboResult, RunInputError, RunSummary, run_pipeline
from cascadia.run.store import append_history, root_attrs
from cascadia.sources.config import RunCatalog

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["OUTCOMES", "ReprocessSummary", "read_history", "reprocess_pass"]

StoreCombo = tuple[str, str, str]

#: What a pass did to a combination, in the order a summary lists them.
OUTCOMES = ("recomputed", "appended", "unchanged", "failed", "not in catalog")


@dataclass(frozen=True)
class ReprocessRow:
    """One combination of a pass: its outcome and why."""

    combo: StoreCombo | None  # None: a whole catalog source that could not be listed
    label: str
    entry: str
    outcome: str  # one of OUTCOMES
    why: str = ""
    seconds: float = 0.0


@dataclass
class ReprocessSummary:
    """The outcome of one reprocessing pass (what the CLI prints, the service returns)."""

    store: str
    rows: list[ReprocessRow] = field(default_factory=list)
    spread: str = ""
    tasks_submitted: int = 0
    model_checksum: str = ""
    history: str = ""  # the line this pass appended to the store's history
    seconds: float = 0.0

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.rows)

    def combos(self, outcome: str) -> list[StoreCombo]:
        return [r.combo for r in self.rows if r.outcome == outcome and r.combo is not None]

    @property
    def ok(self) -> bool:
        return not self.count("failed") and not self.spread.startswith("failed")

    def counts(self) -> str:
        """``1 recomputed, 0 appended, 9 unchanged, 0 failed, 0 not in catalog``."""
        return ", ".join(f"{self.count(o)} {o}" for o in OUTCOMES)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the HTTP service's answer)."""
        return {
            "store": self.store,
            "counts": {o: self.count(o) for o in OUTCOMES},
            "combinations": [
                {
                    "experiment": r.combo[0] if r.combo else None,
                    "source_id": r.combo[1] if r.combo else None,
                    "member_id": r.combo[2] if r.combo else None,
                    "label": r.label,
                    "entry": r.entry,
                    "outcome": r.outcome,
                    "why": r.why,
                    "seconds": round(r.seconds, 3),
                }
                for r in self.rows
            ],
            "spread": self.spread,
            "tasks_submitted": self.tasks_submitted,
            "model_checksum": self.model_checksum,
            "history": self.history,
            "seconds": round(self.seconds, 3),
        }


def _store_exists(url: str, storage_options: Mapping[str, Any] | None) -> bool:
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    return bool(fs.exists(f"{path.rstrip('/')}/.zmetadata"))


def read_history(url: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """The lines of the store's CF ``history`` attribute, oldest first."""
    text = str(root_attrs(url, storage_options).get("history", ""))
    return [line for line in text.splitlines() if line.strip()]


def _model_and_config(
    model: str | Path | None,
    config: InferenceConfig | None,
    attrs: Mapping[str, Any],
    results: str,
) -> tuple[str | Path, InferenceConfig]:
    """The model and inference settings of a pass: given, else those the store records."""
    if model is None:
        model = attrs.get("model_directory")
        if not model:
            where = "records none (model_directory)" if attrs else "does not exist yet"
            raise RunInputError(
                f"no model given and the results store {results} {where}: pass --model DIR"
            )
    if config is None:
        recorded = attrs.get("inference_config")
        try:
            config = InferenceConfig.model_validate(json.loads(recorded)) if recorded else None
        except ValueError as exc:
            raise RunInputError(
                f"{results}: attribute inference_config is not valid ({exc}); "
                "repair it or write to a new store"
            ) from None
    return model, config or InferenceConfig()


def _done_outcome(before: pd.DataFrame | None, combo: StoreCombo, checksum: str) -> tuple[str, str]:
    """Appended (the store held no result for it) or recomputed, and why."""
    if before is None or combo not in before.index:
        return "appended", "new in the catalog"
    row = before.loc[combo]
    if row["status"] == "missing":
        return "appended", "no result stored before"
    if row["status"] != "done":
        return "recomputed", f"was {row['status']}"
    if row["model_checkpoint_hash"] != checksum:
        return "recomputed", "model changed"
    return "recomputed", "inputs or settings changed"


def _rows(run: RunSummary, checksum: str) -> list[ReprocessRow]:
    before = run.stored
    rows = []
    listed: set[StoreCombo] = set()
    for r in run.results:
        if r.combo is not None:
            listed.add(r.combo)
        if r.status == "skipped":
            outcome, why = "unchanged", ""
        elif r.status == "failed" or r.combo is None:
            outcome, why = "failed", r.reason
        else:
            outcome, why = _done_outcome(before, r.combo, checksum)
        rows.append(ReprocessRow(r.combo, r.label, r.entry, outcome, why, r.seconds))
    unlisted_sources = any(r.combo is None for r in run.results)
    for index in [] if before is None else before.index:
        combo = (str(index[0]), str(index[1]), str(index[2]))
        if combo in listed:
            continue
        assert before is not None
        why = "kept in the store: no catalog of this pass lists it" + (
            " (some sources could not be listed)" if unlisted_sources else ""
        )
        label = f"{combo[1]}/{combo[0]}/{combo[2]}"
        entry = str(before.loc[combo, "catalog_entry"])
        rows.append(ReprocessRow(combo, label, entry, "not in catalog", why))
    return rows


def _record(
    url: str, command: str, what: str, storage_options: Mapping[str, Any] | None, wait: float
) -> str:
    """Append the pass's summary line under the store's lease; the line, or why not.

    The run released the lease when it returned; another writer may hold it by now.
    """
    try:
        with StoreLock(url, "reprocess", wait=wait, storage_options=storage_options):
            append_history(url, command, what, storage_options)
    except (StoreLockedError, OSError) as exc:
        return f"not written: {exc}"
    return read_history(url, storage_options)[-1]


def reprocess_pass(
    catalogs: Sequence[str | RunCatalog],
    model: str | Path | None,
    results: str,
    client: Client | None = None,
    *,
    cache: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    config: InferenceConfig | None = None,
    cluster: str | None = None,
    workers: int | None = None,
    lock_wait: float = 0.0,
    replace_model: bool = False,
    command: str = "cascadia reprocess_pass",
    on_total: Callable[[int], None] | None = None,
    on_result: Callable[[ComboResult], None] | None = None,
    device: str = "auto",
) -> ReprocessSummary:
    """Recompute what changed, append what is new, record the pass in the store's history.

    Parameters
    ----------
    catalogs
        Run catalogs (paths, URLs or loaded) listing every combination the store should hold.
    model
        Model directory; ``None``: the one the store records (``model_directory``).
    results
        Results store URL (created by the first pass when absent).
    client
        A connected Dask client; otherwise a cluster (``cluster``, ``workers``) is opened
        only if something must be computed.
    cache, storage_options, on_total, on_result, device
        As for :func:`cascadia.run.pipeline.run_pipeline`.
    config
        Inference settings; ``None``: those the store records (``inference_config``).
    lock_wait, replace_model
        As for :func:`~cascadia.run.pipeline.run_pipeline`: seconds to wait for another
        run's lease on the store; accept a store of another model (all recomputed).
    command
        How the pass was invoked, for the history line.

    Raises
    ------
    RunInputError
        Bad catalogs, model, store or cluster settings: nothing computed, no history line.
    """
    started = time.perf_counter()
    exists = _store_exists(results, storage_options)
    attrs = root_attrs(results, storage_options) if exists else {}
    model, config = _model_and_config(model, config, attrs, results)
    run = run_pipeline(
        catalogs,
        model,
        results,
        cache=cache,
        storage_options=storage_options,
        config=config,
        client=client,
        cluster=cluster,
        workers=workers,
        on_total=on_total,
        on_result=on_result,
        lock_wait=lock_wait,
        replace_model=replace_model,
        command_name="reprocess",
        command=command,
        device=device,
    )
    summary = ReprocessSummary(results, spread=run.spread, tasks_submitted=run.tasks_submitted)
    # nothing could run (the store was neither created nor touched), or another run took
    # the store over mid-pass (its history is that run's to write)
    if run.stored is None or run.lease_lost:
        summary.rows = _rows(run, "")
        summary.seconds = time.perf_counter() - started
        return summary
    summary.model_checksum = str(root_attrs(results, storage_options)["model_checkpoint_hash"])
    summary.rows = _rows(run, summary.model_checksum)
    what = f"{summary.counts()}; model {summary.model_checksum}"
    summary.history = _record(results, command, what, storage_options, max(lock_wait, 60.0))
    summary.seconds = time.perf_counter() - started
    return summary
