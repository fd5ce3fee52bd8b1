"""``cascadia-ensemble run``: every combination of the run catalogs, on Dask, into one store.

A run is planned on the client and executed on the workers:

1. **Plan** (client). Enumerate every combination of every catalog source
   (reanalyses and their members, projections per source / experiment / member)
   after the source's selection rules (one grid, the newest version, no retracted
   or duplicate copy; what each rule skipped goes to the store's
   ``dataset_selection`` attribute and to each combination's ``selection``),
   fingerprint each one's inputs (:func:`cascadia.sources.cache.fingerprint`) and derive
   its *result fingerprint*: inputs, bias adjustment (reference and historical
   fingerprints, settings), the historical run a scenario continues, the model
   checksum and the inference settings. Prepare the results store
   (:func:`cascadia.run.store.prepare_store`): its time axis is the union of the
   sources' periods on the standard daily calendar; an existing store grows (new
   combinations appended, a longer period added at its end) and gets a history line.
   Combinations stored "done" with the same fingerprint are skipped. A combination
   lacking a predictor the model reads (``tos`` of a source or model without it:
   optional per source, strict per model) fails here with the reason; the others run.
2. **Graph** (workers). One task chain per remaining combination: extraction into
   the predictor cache → for projections, the member's QDM fit on its historical
   run against the reference (itself extracted once) → adjustment → prediction
   and a region write of the combination's chunk. Shared steps (the reference,
   a member's historical run and fit) are one task each. Every step reads and
   writes the caches, so a step already done in an earlier run returns at once.
   The extraction of a source read in time blocks (``time_block_days``: ARCO-ERA5)
   submits its block reads to the cluster from its task, so they run on every worker.
3. **Collect** (client). As combinations finish, failures are recorded in the
   store (:func:`cascadia.run.store.mark_failed`, with the reason) and never stop the
   others. At the end the spread statistics are (re)written when the set of done
   combinations changed.

Workers load the model once per process (:func:`cascadia.run.inference.cached_model`);
tasks carry only its directory and checksum. A run killed at any point leaves
every combination "done" (complete, with its fingerprint), "writing"/"missing"
(redone by the next run) or "failed".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import pandas as pd
import xarray as xr

from cascadia import __version__
from cascadia.learning.device import DeviceError, resolve_device
from cascadia.mooring.events import winter_labels
from cascadia.run.deep_ocean import DeepOceanInput, after_record_background
from cascadia.run.inference import InferenceConfig, TrainedModel, cached_model
from cascadia.run.lock import LeaseLostError, StoreLock, StoreLockedError, check_held
from cascadia.run.spread import write_spread
from cascadia.run.store import (
    COMBO_DIMS,
    MODEL_OCEAN_KIND,
    SIBLING_OCEAN_KIND,
    ResultsSchema,
    StoreError,
    combo_status,
    mark_failed,
    prepare_store,
    record_families,
    root_attrs,
    update_attrs,
    write_combo,
)
from cascadia.sources.adjustment import MemberFit, adjust_combo, bias_config, fit_member
from cascadia.sources.cache import (
    AssetIdentities,
    PredictorCache,
    cache_combo,
    default_cache_url,
    fingerprint,
)
from cascadia.sources.catalog import (
    Combo,
    SourceError,
    enumerate_combos,
    list_combos,
    open_collection,
    open_combo,
    predictors_of,
)
from cascadia.sources.config import CatalogError, RunCatalog, SourceConfig, load_run_catalog
from cascadia.sources.predictors.canonical import CANONICAL_UNITS

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["ComboResult", "RunInputError", "RunSummary", "run_pipeline"]

StoreCombo = tuple[str, str, str]  # (experiment, source_id, member_id), as the store names it

logger = logging.getLogger(__name__)


class RunInputError(ValueError):
    """Bad input to a run (catalog, model, store, cluster): nothing was computed."""


@dataclass(frozen=True)
class ComboResult:
    """What happened to one combination (or to a whole source that could not be listed)."""

    label: str  # "source_id/experiment/member" (or "<source> *")
    entry: str  # "<catalog> [<source>]"
    status: str  # "done", "skipped" (up to date in the store) or "failed"
    seconds: float = 0.0
    reason: str = ""
    combo: StoreCombo | None = None
    batch_job: str = ""  # SLURM/PBS job whose worker predicted it ("" outside batch jobs)


@dataclass
class RunSummary:
    """The outcome of a run: one row per combination, tasks submitted, spread hook."""

    store: str
    results: list[ComboResult] = field(default_factory=list)
    tasks_submitted: int = 0
    spread: str = ""
    seconds: float = 0.0
    #: "<catalog> [<source>]" -> its selection rules and the datasets they skipped.
    selection: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Status and provenance per stored combination when the run started (new ones
    #: "missing"), indexed by (experiment, source_id, member_id); None: no store.
    stored: pd.DataFrame | None = None
    #: Another run took this run's lease over: it stopped writing (no spread, no history).
    lease_lost: bool = False
    #: Superseded versions deleted from the predictor cache (:meth:`PredictorCache.prune`).
    cache_versions_deleted: int = 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[ComboResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.spread.startswith("failed")


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class _Entry:
    """One combination of one catalog source, with its input fingerprint."""

    catalog: RunCatalog
    source: SourceConfig
    combo: Combo
    key: str  # input fingerprint ("" when it could not be computed)

    @property
    def where(self) -> str:
        return f"{self.catalog.path} [{self.source.name}]"

    @property
    def store_combo(self) -> StoreCombo:
        labels = self.combo.labels
        return (labels["experiment_id"], labels["source_id"], labels["member_id"])

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.catalog.path, self.source.name, self.combo.slug)

    @property
    def is_historical(self) -> bool:
        return self.combo.labels["experiment_id"] == "historical"


@dataclass
class _Plan:
    """Every combination of a run and how each one gets its predictors."""

    entries: list[_Entry]
    failures: dict[tuple[str, str, str], str]  # entry id -> why it cannot run
    source_failures: list[ComboResult]
    references: dict[str, _Entry]  # catalog path -> reference of its bias adjustment
    historical: dict[tuple[str, str, str], _Entry]  # entry id -> historical run it continues
    years: dict[tuple[str, str, str], tuple[int, int]]  # entry id -> first and last year
    selection: dict[str, dict[str, Any]]  # "<catalog> [<source>]" -> rules and skipped datasets


def _load_catalogs(catalogs: Sequence[str | RunCatalog]) -> list[RunCatalog]:
    loaded = []
    for catalog in catalogs:
        try:
            loaded.append(catalog if isinstance(catalog, RunCatalog) else load_run_catalog(catalog))
        except CatalogError as exc:
            raise RunInputError(str(exc)) from None
    if not loaded:
        raise RunInputError("no run catalog given")
    return loaded


def _member(entry: _Entry) -> tuple[str, str, str, str]:
    return (entry.catalog.path, entry.source.name, *entry.store_combo[1:])


def _reference(catalog: RunCatalog, identities: AssetIdentities) -> _Entry:
    """The reference reanalysis of a catalog's bias adjustment (one combination)."""
    section = catalog.bias_adjustment
    assert section is not None
    ref_catalog = load_run_catalog(catalog.resolve(section.reference.catalog))
    source = ref_catalog.source(section.reference.source)
    combos = enumerate_combos(ref_catalog, source, open_collection(ref_catalog, source))
    if len(combos) != 1:
        raise SourceError(
            f"{ref_catalog.path} [{source.name}]: a bias-adjustment reference must be one "
            f"combination, the query selects {[c.label for c in combos]}"
        )
    key = fingerprint(ref_catalog, source, combos[0], identities)
    return _Entry(ref_catalog, source, combos[0], key)


def _years(entry: _Entry) -> tuple[int, int]:
    """First and last year of a combination: the catalog's period, else its data's."""
    period = entry.source.period
    if period is not None:
        return period.start, period.end
    raw = open_combo(entry.catalog, entry.source, entry.combo)
    years = raw["time"].dt.year.values
    return int(years.min()), int(years.max())


def _plan(catalogs: list[RunCatalog]) -> _Plan:
    entries: list[_Entry] = []
    failures: dict[tuple[str, str, str], str] = {}
    source_failures: list[ComboResult] = []
    references: dict[str, _Entry] = {}
    years: dict[tuple[str, str, str], tuple[int, int]] = {}
    selection: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str, str]] = set()
    identities = AssetIdentities()  # each store listed once per run
    for catalog in catalogs:
        for source in catalog.sources:
            where = f"{catalog.path} [{source.name}]"
            try:
                listing = list_combos(catalog, source, open_collection(catalog, source))
            except SourceError as exc:
                source_failures.append(
                    ComboResult(f"{source.name} *", where, "failed", reason=str(exc))
                )
                continue
            selection[where] = {
                "rules": source.selection.model_dump(mode="json"),
                "skipped": [s.as_dict() for s in listing.skipped],
            }
            for combo in listing.combos:
                entry = _Entry(catalog, source, combo, "")
                if entry.id in seen:  # the same catalog given twice
                    continue
                seen.add(entry.id)
                try:
                    key = fingerprint(catalog, source, combo, identities)
                    entry = _Entry(catalog, source, combo, key)
                    years[entry.id] = _years(entry)
                except Exception as exc:
                    failures[entry.id] = _reason(entry, exc, "cannot read its inputs")
                entries.append(entry)
        # the reference is read only for projections that can still run: an archive
        # that cannot be listed must not cost a reference that nothing uses
        if catalog.bias_adjustment is not None and any(
            e.catalog is catalog and e.source.role == "projection" and e.id not in failures
            for e in entries
        ):
            try:
                references[catalog.path] = _reference(catalog, identities)
            except Exception as exc:
                for entry in entries:
                    if entry.catalog is catalog and entry.source.role == "projection":
                        failures.setdefault(
                            entry.id, _reason(entry, exc, "bias-adjustment reference")
                        )
    _check_unique(entries)
    historical = _link_historical(entries, references, failures)
    return _Plan(entries, failures, source_failures, references, historical, years, selection)


def model_inputs(model: TrainedModel) -> list[str]:
    """The canonical predictors a trained model reads: its feature columns' variables.

    Feature columns are named ``<variable>@<region>``; the feature recipe's own
    ``variables`` list counts too (variables the physics columns read).
    """
    names = {str(n).split("@")[0] for n in model.ensemble.normalisation.feature_names}
    names |= set(model.features.variables or ())
    return sorted(names & set(CANONICAL_UNITS))


def _refuse_missing_inputs(plan: _Plan, needed: Sequence[str], model_dir: str) -> None:
    """A combination lacking a predictor the model reads (``tos``) fails, with the reason.

    Why: a predictor may be optional per source (``tos`` of an uncoupled model), but a
    model trained with it needs it everywhere it runs; the other combinations run.
    """
    for entry in plan.entries:
        lacking = [v for v in needed if v not in predictors_of(entry.source, entry.combo)]
        if lacking and entry.id not in plan.failures:
            names = ", ".join(lacking)
            why = f" ({entry.combo.driving_note})" if entry.combo.driving_note else ""
            plan.failures[entry.id] = (
                f"model {model_dir} needs {names}; source {entry.source.name} "
                f"({entry.combo.label}) has none{why} — map it in the run catalog or train "
                f"without {names}"
            )
    for entry in plan.entries:  # an adjusted projection keeps only what the reference has
        ref = plan.references.get(entry.catalog.path)
        if entry.source.role != "projection" or ref is None:
            continue
        lacking = [v for v in needed if v not in predictors_of(ref.source, ref.combo)]
        if lacking:
            names = ", ".join(lacking)
            plan.failures.setdefault(
                entry.id,
                f"model {model_dir} needs {names}; the bias-adjustment reference "
                f"{ref.source.name} ({ref.where}) has none to adjust {entry.combo.label} "
                f"against — map it in the reference's run catalog or train without {names}",
            )
    for entry in plan.entries:  # a scenario is adjusted by its historical run's fit
        hist = plan.historical.get(entry.id)
        adjusted = entry.catalog.bias_adjustment is not None
        if adjusted and hist is not None and hist.id in plan.failures:
            plan.failures.setdefault(
                entry.id, f"{entry.where} {entry.combo.label}: {plan.failures[hist.id]}"
            )


def _check_unique(entries: list[_Entry]) -> None:
    by_combo: dict[StoreCombo, _Entry] = {}
    for entry in entries:
        other = by_combo.setdefault(entry.store_combo, entry)
        if other is not entry:
            raise RunInputError(
                f"two catalog entries give the same result labels {entry.store_combo}: "
                f"{other.where} {other.combo.label} and {entry.where} {entry.combo.label}; "
                "change one source's combo_id"
            )


def _link_historical(
    entries: list[_Entry],
    references: dict[str, _Entry],
    failures: dict[tuple[str, str, str], str],
) -> dict[tuple[str, str, str], _Entry]:
    """The historical run of each projection combination (its fit and context)."""
    historical = {
        _member(e): e for e in entries if e.source.role == "projection" and e.is_historical
    }
    links = {}
    for entry in entries:
        if entry.source.role != "projection":
            continue
        hist = historical.get(_member(entry))
        adjusted = entry.catalog.bias_adjustment is not None
        if hist is None:
            if adjusted:
                source_id, member = entry.store_combo[1:]
                failures.setdefault(
                    entry.id,
                    f"{entry.where} {entry.combo.label}: no historical run of {source_id} "
                    f"{member} to fit the bias adjustment against",
                )
            continue
        links[entry.id] = hist
        if adjusted and hist.id in failures and entry.id not in failures:
            failures[entry.id] = f"{entry.where} {entry.combo.label}: {failures[hist.id]}"
        if adjusted and entry.catalog.path not in references:
            failures.setdefault(entry.id, f"{entry.where}: no bias-adjustment reference")
    return links


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _result_fingerprint(entry: _Entry, plan: _Plan, checksum: str, config: InferenceConfig) -> str:
    """SHA-256 of everything a combination's stored results depend on."""
    payload: dict[str, Any] = {
        "cascadia": __version__,
        "inputs": entry.key,
        "model": checksum,
        "inference": config.model_dump(mode="json"),
    }
    hist = plan.historical.get(entry.id)
    if hist is not None:
        payload["historical"] = hist.key
    deep = _deep_ocean(entry, plan)
    if deep is not None:
        # the sibling switch shows in the assets (a sibling's thetao, and whose): left out,
        # stores written before it existed keep their fingerprints
        settings = deep.settings.model_dump(mode="json", exclude={"sibling_members"})
        payload["deep_ocean"] = [list(deep.assets), settings]
        if deep.sibling:
            payload["deep_ocean"].append(deep.sibling)
    if entry.source.role == "projection" and entry.catalog.bias_adjustment is not None:
        payload["adjustment"] = {
            "reference": plan.references[entry.catalog.path].key,
            "settings": bias_config(entry.catalog).model_dump(mode="json"),
        }
    return _digest(payload)


def _deep_ocean(entry: _Entry, plan: _Plan) -> DeepOceanInput | None:
    """A projection's ocean (the run catalog's ``deep_ocean``, or its driving model's:
    ``driving_model.deep_ocean``; a sibling member's where its own run has none), a
    scenario's historical run first; ``None`` where neither names one or has one for this
    combination (its background stays held after the record)."""
    combo, source = entry.combo, entry.source
    if source.role != "projection" or not combo.deep_ocean:
        return None
    label = f"{entry.where} {combo.label}"
    if combo.ocean_driving is not None:  # the source of the ocean is the driving model's
        driving = combo.ocean_driving
        source = load_run_catalog(driving.catalog).source(driving.source)
        label += f" ({driving.label})"
    if combo.ocean_sibling:
        label += f" (the ocean of member {combo.ocean_sibling})"
    if source.deep_ocean is None:
        return None
    hist = plan.historical.get(entry.id)
    earlier = () if hist is None or hist is entry else (hist.combo.deep_ocean,)
    assets = tuple(a for a in (*earlier, combo.deep_ocean) if a)
    return DeepOceanInput(
        label, assets, source.deep_ocean, dict(source.storage_options), combo.ocean_sibling
    )


def _time_axis(plan: _Plan) -> np.ndarray:
    """Consecutive standard-calendar days from the first to the last year of the run."""
    spans = list(plan.years.values())
    first, last = min(s[0] for s in spans), max(s[1] for s in spans)
    return pd.date_range(f"{first}-01-01", f"{last}-12-31", freq="D").values


# ---------------------------------------------------------------------------- tasks


_INLINE_LOCK = threading.Lock()
_INLINE: list[Any] = [0, None]  # threads inside _inline_dask, and the config they set


@contextmanager
def _inline_dask() -> Iterator[None]:
    """Lazy xarray work inside a task runs in the task's own thread (one per worker).

    dask's config is one dict for the whole process: with several task threads in one
    process (an in-process cluster), one thread leaving a plain ``dask.config.set`` block
    would restore the distributed scheduler under another thread still inside its block,
    whose reads would then wait for worker threads that are all busy (a deadlock). So
    every thread in sets the synchronous scheduler (again: a seceded task's
    ``worker_client`` block sets the distributed one meanwhile) and the last one out
    restores what the first one found.
    """
    with _INLINE_LOCK:
        if _INLINE[0] == 0:
            _INLINE[1] = dask.config.set(scheduler="synchronous")  # keeps what it replaced
        else:
            dask.config.set(scheduler="synchronous")
        _INLINE[0] += 1
    try:
        yield
    finally:
        with _INLINE_LOCK:
            _INLINE[0] -= 1
            if _INLINE[0] == 0:
                _INLINE[1].__exit__(None, None, None)
                _INLINE[1] = None


def _extract_task(entry: _Entry, cache: PredictorCache) -> str:
    args = (entry.catalog, cache, entry.source, entry.combo, entry.key)
    with _inline_dask():
        if entry.source.time_block_days is None:
            # small next to its neighbours: one task, in this worker's thread
            return cache_combo(*args).url
        # hundreds of block reads (ARCO-ERA5): computed as tasks of the whole cluster.
        # worker_client secedes from this worker's thread pool while it waits, so this
        # worker runs block reads too; the stores are opened here, not in tasks.
        from distributed import worker_client

        # Such a graph is ~25 small tasks per block and variable: 200 000 tasks, ~60 MiB,
        # for 85 years of hourly ERA5 in 31-day blocks (the demo world), by design; dask's
        # "Sending large graph" warning would reach the user's terminal on every run.
        quiet = {"distributed.admin.large-graph-warning-threshold": "1GiB"}
        with worker_client() as client, dask.config.set(quiet):
            return cache_combo(*args, scheduler=client).url


def _fit_task(
    hist: _Entry, reference: _Entry, cache: PredictorCache, _hist_url: str, ref_url: str
) -> MemberFit:
    with _inline_dask():
        return fit_member(
            hist.catalog,
            cache,
            hist.source,
            hist.combo,
            hist.key,
            cache.open(ref_url),
            reference.key,
            bias_config(hist.catalog),
        )


def _adjust_task(
    entry: _Entry, cache: PredictorCache, member: MemberFit, ref_url: str, *_inputs: str
) -> str:
    with _inline_dask():
        url, _ = adjust_combo(
            entry.catalog,
            cache,
            entry.source,
            entry.combo,
            entry.key,
            member,
            cache.open(ref_url),
            bias_config(entry.catalog),
        )
        return url


@dataclass(frozen=True)
class _Prediction:
    """What a worker needs to predict and write one combination (no model, no data)."""

    model_dir: str
    checksum: str
    config: InferenceConfig
    store: str
    store_options: dict[str, Any] | None
    cache: PredictorCache
    combo: StoreCombo
    provenance: dict[str, str]
    device: str = "auto"
    lease: str = ""  # the run's lease id: checked just before the combination is written
    deep_ocean: DeepOceanInput | None = None  # its own ocean, for the background after the record


def _batch_job() -> str:
    """The batch job this worker runs in, so a run's summary says where each combo ran."""
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID") or ""


def _identity(value: Any) -> Any:
    return value


def _predict_task(
    job: _Prediction, schema: ResultsSchema, predictors_url: str, context_url: str | None
) -> tuple[float, str]:
    started = time.perf_counter()
    with _inline_dask():
        model = cached_model(job.model_dir, job.checksum, job.device)
        daily = job.cache.open(predictors_url).load()
        context = job.cache.open(context_url).load() if context_url else None
        after, provenance = None, job.provenance
        record_end = max(last for _, last in model.records())
        if job.deep_ocean is not None and pd.Timestamp(daily["time"].values[-1]) > record_end:
            after, _ = after_record_background(
                job.deep_ocean, model.background, model.depths, job.cache
            )
            provenance = _with_ocean(provenance, job.deep_ocean)
        sibling = job.deep_ocean is not None and bool(job.deep_ocean.sibling)
        kind = SIBLING_OCEAN_KIND if sibling else MODEL_OCEAN_KIND
        results = model.predict(daily, context, job.config, after, kind)
        if job.lease:  # another run may have taken the store over while this one predicted
            check_held(job.store, job.lease, job.store_options)
        write_combo(job.store, schema, job.combo, results, provenance, job.store_options)
    return time.perf_counter() - started, _batch_job()


# ------------------------------------------------------------------------ the graph


class _Graph:
    """Submits each shared step once and keeps the futures of a run."""

    def __init__(self, client: Client, plan: _Plan, cache: PredictorCache) -> None:
        self.client, self.plan, self.cache = client, plan, cache
        self.run = uuid.uuid4().hex[:8]
        self.futures: dict[tuple[str, ...], Future] = {}

    def _submit(self, key: tuple[str, ...], func: Callable[..., Any], *args: Any) -> Future:
        if key not in self.futures:
            name = f"{key[0]}-{key[-1]}-{_digest(key)[:8]}-{self.run}"
            self.futures[key] = self.client.submit(func, *args, key=name, pure=False)
        return self.futures[key]

    def raw(self, entry: _Entry) -> Future:
        # keyed by what it writes: one source read by two catalogs (a hindcast and the
        # reference of a projection's adjustment) is one cache entry, written by one task
        key = ("extract", entry.source.name, entry.combo.slug, entry.key)
        return self._submit(key, _extract_task, entry, self.cache)

    def fit(self, hist: _Entry) -> Future:
        ref = self.plan.references[hist.catalog.path]
        deps = (self.raw(hist), self.raw(ref))
        return self._submit(("fit", *hist.id), _fit_task, hist, ref, self.cache, *deps)

    def predictors(self, entry: _Entry) -> Future:
        """Future of the URL of the predictors the model reads for ``entry``."""
        if entry.source.role != "projection" or entry.catalog.bias_adjustment is None:
            return self.raw(entry)
        ref = self.plan.references[entry.catalog.path]
        hist = self.plan.historical[entry.id]
        member = self.fit(hist)
        args = (entry, self.cache, member, self.raw(ref), self.raw(entry))
        if hist is not entry:
            # a scenario's diagnostics compare it with its adjusted historical: after the
            # historical's own task, or each scenario would adjust the historical again
            args += (self.predictors(hist),)
        return self._submit(("adjust", *entry.id), _adjust_task, *args)

    def prediction(self, entry: _Entry, job: _Prediction, schema: Future) -> Future:
        hist = self.plan.historical.get(entry.id)
        context = None
        if hist is not None and hist is not entry and job.config.context_days > 0:
            context = self.predictors(hist)
        args = (job, schema, self.predictors(entry), context)
        return self._submit(("predict", *entry.id), _predict_task, *args)


# -------------------------------------------------------------------------- the run


def _reason(entry: _Entry, exc: BaseException, step: str = "") -> str:
    """A failure's reason, naming the catalog entry and the combination."""
    text = str(exc) or type(exc).__name__
    if entry.combo.label in text and entry.source.name in text:
        return text
    prefix = f"{entry.where} {entry.combo.label}"
    kind = "" if isinstance(exc, SourceError) else f"{type(exc).__name__}: "
    return f"{prefix}: {step + ': ' if step else ''}{kind}{text}"


def _winters(time_axis: np.ndarray, start_month: int) -> tuple[int, ...]:
    labels = winter_labels(xr.DataArray(time_axis, dims="time"), start_month).values
    return tuple(int(w) for w in np.unique(labels))


def _selection(combo: Combo) -> str:
    """The datasets a combination was read from and its copies skipped, as JSON."""
    skipped = [{"dataset": s.dataset, "reason": s.reason} for s in combo.skipped]
    return json.dumps({"datasets": list(combo.datasets), "skipped": skipped})


def _with_ocean(provenance: dict[str, str], ocean: DeepOceanInput) -> dict[str, str]:
    """``provenance`` whose selection also names the ocean the background after the record
    came from: its assets, and whose ocean it is (the run's own, or its driving model's)."""
    selection = json.loads(provenance["selection"])
    selection["deep_ocean"] = {"assets": list(ocean.assets), "of": ocean.label}
    return {**provenance, "selection": json.dumps(selection)}


def _store_attrs(
    model: TrainedModel, config: InferenceConfig, catalogs: list[RunCatalog], plan: _Plan
) -> dict[str, Any]:
    return {
        "source": f"cascadia {__version__}: deep ensemble {model.directory.name} "
        f"({model.checksum}) driven by the run catalogs' reanalyses and projections",
        "dataset_selection": json.dumps(plan.selection, sort_keys=True),
        "model_checkpoint_hash": model.checksum,
        "model_directory": str(model.directory.resolve()),
        "inference_config": json.dumps(config.model_dump(mode="json"), sort_keys=True),
        "event_rule": json.dumps(model.events.model_dump(), sort_keys=True),
        "background_extrapolation": model.background_config.extrapolation,
        "cascadia_version": __version__,
        "run_catalogs": json.dumps(sorted({c.path for c in catalogs})),
    }


def run_pipeline(
    catalogs: Sequence[str | RunCatalog],
    model_dir: str | Path,
    out: str,
    *,
    cache: str | PredictorCache | None = None,
    storage_options: Mapping[str, Any] | None = None,
    config: InferenceConfig | None = None,
    client: Client | None = None,
    cluster: str | None = None,
    workers: int | None = None,
    on_total: Callable[[int], None] | None = None,
    on_result: Callable[[ComboResult], None] | None = None,
    lock_wait: float = 0.0,
    replace_model: bool = False,
    command_name: str = "run",
    command: str | None = None,
    device: str = "auto",
) -> RunSummary:
    """Run the model over every combination of ``catalogs`` into the store ``out``.

    Parameters
    ----------
    catalogs
        Run catalogs (paths, URLs or loaded).
    model_dir
        A model directory written by ``cascadia-ensemble train``.
    out
        Results store (folder or fsspec URL); created, or reused if it can take the run.
    cache
        Predictor cache (default ``~/.cache/cascadia/predictors``).
    storage_options
        fsspec options of ``out``.
    config
        Inference settings (segments, scenario context, member series).
    client
        A connected Dask client (its workers get the torch thread limit of the
        ``cascadia.cluster`` settings, as clusters opened here do); otherwise a cluster
        is opened with :func:`cascadia.run.cluster.open_cluster` (``cluster``, ``workers``)
        and closed.
    on_total, on_result
        Progress: the number of combinations once planned; each result as it comes.
    lock_wait
        Seconds to wait for another run's lease on ``out`` (:mod:`cascadia.run.lock`);
        0 refuses at once.
    replace_model
        Accept a store written with another model: every combination is recomputed with
        this one (otherwise such a store is refused: a store belongs to one model).
    command_name
        What holds the lease (``run``, ``reprocess``), for the message another run prints.
    command
        How the run was invoked, for the store's history lines (default: the
        equivalent ``cascadia-ensemble run`` command line).
    device
        Where each worker predicts: ``auto`` (a GPU where the worker's torch sees one),
        ``cpu``, ``cuda`` or ``cuda:N``; checked here before any work, resolved on each
        worker. Not part of a combination's fingerprint.

    Returns
    -------
    RunSummary

    Raises
    ------
    RunInputError
        Bad catalogs, model directory, store or cluster settings, a store another run is
        writing, written by another model, or that cannot be written (nothing computed).
    """
    started = time.perf_counter()
    try:
        resolve_device(device)  # "cuda" on a machine without one: before any work
    except DeviceError as exc:
        raise RunInputError(str(exc)) from None
    config = config or InferenceConfig()
    cache = (
        cache if isinstance(cache, PredictorCache) else PredictorCache(cache or default_cache_url())
    )
    loaded = _load_catalogs(catalogs)
    try:
        model = TrainedModel.load(model_dir)
    except ValueError as exc:  # InferenceError, CheckpointError
        raise RunInputError(str(exc)) from None
    plan = _plan(loaded)
    _refuse_missing_inputs(plan, model_inputs(model), str(model.directory))
    if not plan.years:  # no combination could even be read: no time axis, no store
        return _nothing_runs(plan, out, started, on_total, on_result)
    time_axis = _time_axis(plan)
    schema = ResultsSchema(
        combos=tuple(e.store_combo for e in plan.entries),
        time=time_axis,
        depth=model.depths,
        quantiles=model.quantiles,
        n_members=model.n_members,
        winters=_winters(time_axis, model.events.winter_start_month),
        member_series=config.member_series,
    )
    attrs = _store_attrs(model, config, loaded, plan)
    command = command or _command(loaded, model.directory, out)
    lock = StoreLock(out, command_name, wait=lock_wait, storage_options=storage_options)
    try:
        lock.acquire()
    except StoreLockedError as exc:
        raise RunInputError(str(exc)) from None
    except OSError as exc:  # read-only, full or forbidden: before any work
        raise RunInputError(f"cannot write the results store {out}: {exc}") from None
    try:
        return _run_locked(
            plan,
            model,
            config,
            loaded,
            schema,
            attrs,
            command,
            out,
            cache,
            storage_options,
            client,
            cluster,
            workers,
            on_total,
            on_result,
            replace_model,
            started,
            device,
            lock,
        )
    finally:
        lock.release()


def _run_locked(
    plan: _Plan,
    model: TrainedModel,
    config: InferenceConfig,
    loaded: list[RunCatalog],
    schema: ResultsSchema,
    attrs: dict[str, Any],
    command: str,
    out: str,
    cache: PredictorCache,
    storage_options: Mapping[str, Any] | None,
    client: Client | None,
    cluster: str | None,
    workers: int | None,
    on_total: Callable[[int], None] | None,
    on_result: Callable[[ComboResult], None] | None,
    replace_model: bool,
    started: float,
    device: str,
    lock: StoreLock,
) -> RunSummary:
    """The part of a run that writes the store, while this run holds its lease."""
    replacing = _refuse_another_model(out, model, storage_options, replace_model)
    try:
        with _inline_dask():  # small client-side reads: never a round trip to the workers
            schema = prepare_store(out, schema, attrs, storage_options, history=command)
            # a catalog property, not a result: recorded for skipped combinations too
            families = {e.store_combo: e.combo.family or e.store_combo[1] for e in plan.entries}
            record_families(out, families, storage_options)
            stored = combo_status(out, storage_options).set_index(list(COMBO_DIMS))
    except StoreError as exc:
        raise RunInputError(str(exc)) from None

    summary = RunSummary(out, list(plan.source_failures), selection=plan.selection, stored=stored)
    if on_total:
        on_total(len(plan.entries) + len(plan.source_failures))

    def record(result: ComboResult) -> None:
        summary.results.append(result)
        if on_result:
            on_result(result)

    for result in plan.source_failures:
        if on_result:
            on_result(result)
    todo: list[tuple[_Entry, str]] = []
    for entry in plan.entries:
        label, combo = entry.combo.label, entry.store_combo
        if entry.id in plan.failures:
            reason = plan.failures[entry.id]
            if stored.loc[combo, "status"] == "done" and not replacing:
                reason += " (the stored result is kept)"
            else:
                reason += _marked_failed(out, combo, reason, storage_options)
            record(ComboResult(label, entry.where, "failed", reason=reason, combo=combo))
            continue
        fp = _result_fingerprint(entry, plan, model.checksum, config)
        row = stored.loc[combo]
        if row["status"] == "done" and row["fingerprint"] == fp:
            record(ComboResult(label, entry.where, "skipped", combo=combo))
        else:
            todo.append((entry, fp))
    if todo:
        with _client(client, cluster, workers, one_chain=len(todo) == 1) as dask_client:
            summary.tasks_submitted = _execute(
                dask_client,
                plan,
                cache,
                schema,
                todo,
                model,
                config,
                out,
                storage_options,
                record,
                device,
                lock,
            )
        summary.cache_versions_deleted = _prune_cache(plan, cache)
    if lock.lost or not lock.still_held():
        summary.lease_lost = True
        summary.spread = "not written: another run took the store's lease over"
        summary.seconds = time.perf_counter() - started
        return summary
    summary.spread = _spread(out, storage_options, command)
    summary.seconds = time.perf_counter() - started
    return summary


def _nothing_runs(
    plan: _Plan,
    out: str,
    started: float,
    on_total: Callable[[int], None] | None,
    on_result: Callable[[ComboResult], None] | None,
) -> RunSummary:
    """The summary of a run none of whose combinations can start: every failure, no store.

    Typically offline or with unreachable archives: nothing is computed and the
    results store is neither created nor touched (it would have no time axis).
    """
    results = list(plan.source_failures)
    if not results and not plan.entries:
        raise RunInputError("the run catalogs list no source")
    for entry in plan.entries:
        reason = plan.failures[entry.id]
        results.append(
            ComboResult(entry.combo.label, entry.where, "failed", reason=reason, combo=None)
        )
    if on_total:
        on_total(len(results))
    for result in results:
        if on_result:
            on_result(result)
    return RunSummary(
        store=out,
        results=results,
        spread="not written: no combination could run, the store was not touched",
        seconds=time.perf_counter() - started,
    )


@contextmanager
def _client(
    client: Client | None, cluster: str | None, workers: int | None, *, one_chain: bool = False
) -> Iterator[Client]:
    from cascadia.run.cluster import TorchThreads, open_cluster, resolve_spec

    if client is not None:
        # as open_cluster does for the clusters it starts: per-step sequence models run
        # many times slower when each worker's torch spreads over every core
        threads = resolve_spec("local").torch_threads
        workers = client.scheduler_info().get("workers", {})
        # in-process workers are the caller's own process: its threads are not ours to hold
        in_process = bool(workers) and all(a.startswith("inproc://") for a in workers)
        if threads is not None and not in_process:
            client.register_plugin(TorchThreads(threads), name=TorchThreads.name)
        yield client
        return

    try:
        opened = open_cluster(cluster, workers=workers, one_chain=one_chain)
        dask_client = opened.__enter__()
    except (ValueError, ConnectionError, TimeoutError) as exc:
        raise RunInputError(f"cluster {cluster or '(configured)'}: {exc}") from None
    try:
        yield dask_client
    finally:
        opened.__exit__(None, None, None)


def _execute(
    client: Client,
    plan: _Plan,
    cache: PredictorCache,
    schema: ResultsSchema,
    todo: list[tuple[_Entry, str]],
    model: TrainedModel,
    config: InferenceConfig,
    out: str,
    storage_options: Mapping[str, Any] | None,
    record: Callable[[ComboResult], None],
    device: str,
    lock: StoreLock,
) -> int:
    """Submit the chains of ``todo``, record each combination as it finishes; stop (the
    queued chains cancelled, nothing more written) once another run took the lease."""
    from distributed import as_completed

    graph = _Graph(client, plan, cache)
    # A task rather than client.scatter: scatter needs running workers and times out
    # while batch jobs (SLURM/PBS, adaptive scaling from zero jobs) are still queued.
    shared_schema = client.submit(_identity, schema, key=f"schema-{graph.run}", pure=False)
    pending: dict[str, _Entry] = {}
    for entry, fp in todo:
        job = _Prediction(
            model_dir=str(model.directory),
            checksum=model.checksum,
            config=config,
            store=out,
            store_options=dict(storage_options) if storage_options else None,
            cache=cache,
            combo=entry.store_combo,
            provenance={
                "fingerprint": fp,
                "model_checkpoint_hash": model.checksum,
                "package_version": __version__,
                "catalog_entry": f"{entry.where} {entry.combo.label}",
                "selection": _selection(entry.combo),
            },
            device=device,
            lease=lock.run_id,
            deep_ocean=_deep_ocean(entry, plan),
        )
        pending[graph.prediction(entry, job, shared_schema).key] = entry
    submitted = len(graph.futures)
    waiting = as_completed([graph.futures[("predict", *e.id)] for e in pending.values()])
    for future in waiting:
        entry = pending.pop(future.key)
        label, combo = entry.combo.label, entry.store_combo
        if future.status == "finished":
            seconds, job = future.result()
            record(ComboResult(label, entry.where, "done", seconds, combo=combo, batch_job=job))
        else:
            try:
                exc = future.exception()
            except Exception as cancelled:  # a cancelled future has no exception to give
                exc = cancelled
            reason = _reason(entry, exc)
            if not isinstance(exc, LeaseLostError):  # the store is no longer ours to mark
                reason += _marked_failed(out, combo, reason, storage_options)
            record(ComboResult(label, entry.where, "failed", reason=reason, combo=combo))
        future.release()
        if pending and not lock.still_held():
            # another run took the store over: queued chains are cancelled (a prediction
            # already running checks the lease again before it writes)
            client.cancel(list(graph.futures.values()))
            holder = lock.holder()
            who = holder.describe(time.time()) if holder is not None else "nobody"
            for entry in pending.values():
                reason = f"{entry.where} {entry.combo.label}: not run: the store's lease "
                reason += f"was taken over by {who}"
                record(
                    ComboResult(
                        entry.combo.label,
                        entry.where,
                        "failed",
                        reason=reason,
                        combo=entry.store_combo,
                    )
                )
            break
    return submitted


def _prune_cache(plan: _Plan, cache: PredictorCache) -> int:
    """Drop superseded cache versions of every combination this run read, so a cache
    shared by scheduled passes over changing inputs stays bounded; housekeeping only:
    a cache that cannot be listed or written is left as it is."""
    folders = {}
    for entry in [*plan.entries, *plan.references.values(), *plan.historical.values()]:
        folders[(entry.source.name, entry.combo.slug)] = entry
    deleted = 0
    for entry in folders.values():
        try:
            deleted += cache.prune(entry.source, entry.combo)
        except OSError as exc:
            logger.info("predictor cache of %s not pruned: %s", entry.combo.label, exc)
    return deleted


def _marked_failed(
    out: str, combo: StoreCombo, reason: str, storage_options: Mapping[str, Any] | None
) -> str:
    """Mark a combination failed; what to add to its reason when even that write fails
    (a full or read-only disk): the run goes on and the summary says so."""
    try:
        with _inline_dask():  # a client-side write: never a round trip to the workers
            mark_failed(out, combo, reason, storage_options)
    except OSError as exc:
        return f" (could not be marked failed in the store: {exc})"
    return ""


def _refuse_another_model(
    out: str, model: TrainedModel, storage_options: Mapping[str, Any] | None, replace: bool
) -> bool:
    """A store belongs to one model: refuse another unless told to replace it; whether
    this run replaces another model's results (none of them is then kept)."""
    try:
        stored = root_attrs(out, storage_options).get("model_checkpoint_hash")
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return False  # no store yet (or not one: prepare_store names that)
    if stored and stored != model.checksum and not replace:
        raise RunInputError(
            f"the results store {out} holds results of another model ({stored[:12]}); "
            f"this model {model.directory} is {model.checksum[:12]}. Write to a new --out, or "
            "pass --replace-model to recompute every combination with this model"
        )
    return bool(stored) and stored != model.checksum


def _command(catalogs: list[RunCatalog], model_dir: Path, out: str) -> str:
    """The run as a command line, for the store's history."""
    args = [f"--catalog {c.path}" for c in catalogs]
    return " ".join(["cascadia-ensemble run", *args, f"--model {model_dir}", f"--out {out}"])


def _spread(out: str, storage_options: Mapping[str, Any] | None, command: str) -> str:
    """Write the spread statistics when the set of done combinations changed."""
    with _inline_dask():
        status = combo_status(out, storage_options)
    done = status[status["status"] == "done"]
    inputs = _digest(sorted(map(list, done[[*COMBO_DIMS, "fingerprint"]].values.tolist())))
    if root_attrs(out, storage_options).get("spread_inputs") == inputs:
        return "up to date"

    try:
        write_spread(out, dict(storage_options) if storage_options else None, history=command)
    except Exception as exc:
        return f"failed: {type(exc).__name__}: {exc}"
    update_attrs(out, {"spread_inputs": inputs}, storage_options)
    return "written"
