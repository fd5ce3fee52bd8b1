"""The ``cascadia-ensemble`` command: a thin shell over the Python API."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.config
from rich.console import Console

from cascadia import __version__

if TYPE_CHECKING:
    from rich.table import Table

    from cascadia.sources.selection import Skipped

#: Exit status for bad input (as argparse uses for usage errors).
EXIT_USAGE = 2

console = Console(stderr=True)


def _stdout() -> Console:
    """Standard output for tables: a terminal's width, or, in a log (not a terminal), wide
    enough that no row is wrapped (rich would wrap at 80 columns)."""
    screen = Console()
    return screen if screen.is_terminal else Console(width=250)


def _fail(message: str) -> int:
    print(f"cascadia-ensemble: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _add_device(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        metavar="auto|cpu|cuda",
        help=f"where the model {what}: auto (a GPU when torch sees one, else the CPU), cpu, "
        "cuda or cuda:N (docs/deploy.md, GPU workers); the model directory does not depend on it",
    )


def _device_error(device: str) -> str | None:
    """Why ``--device`` cannot be used here, or None (checked before any work)."""
    from cascadia.learning.device import DeviceError, resolve_device

    try:
        resolve_device(device)
    except DeviceError as exc:
        return str(exc)
    return None


def _print_failure(out: Console, label: str, reason: str) -> None:
    """One line per failure, never wrapped, its text never read as rich markup."""
    from rich.markup import escape

    out.print(f"[red]failed[/] {escape(label)}: {escape(reason)}", soft_wrap=True)


def _synth(args: argparse.Namespace) -> int:
    import fsspec

    from cascadia.twin.presets import PRESETS
    from cascadia.twin.world import MANIFEST, WorldExistsError, build_world

    if args.preset not in PRESETS:
        return _fail(f"unknown preset {args.preset!r}; expected one of: {', '.join(PRESETS)}")
    started = time.perf_counter()
    try:
        with console.status("building the twin world") as status:

            def step(text: str) -> None:
                status.update(f"[bold]{args.preset}[/] world: {text}")
                console.log(text)

            manifest = build_world(
                args.out, args.preset, args.seed, overwrite=args.overwrite, step=step
            )
    except (WorldExistsError, NotADirectoryError, PermissionError, OSError) as exc:
        if isinstance(exc, WorldExistsError | NotADirectoryError | PermissionError):
            return _fail(f"cannot write the world to {args.out}: {exc}")
        _discard(args.out, fsspec)
        return _fail(f"writing the world to {args.out} failed: {exc}")
    except BaseException:
        _discard(args.out, fsspec)
        raise
    elapsed = time.perf_counter() - started
    out = args.out.rstrip("/")
    print(f"twin world ({args.preset}, seed {args.seed}) written to {out} in {elapsed:.1f} s")
    print(f"  manifest      {out}/{MANIFEST}")
    for name in manifest["collections"]:
        print(f"  collection    {out}/{name}")
    for name in manifest["catalogs"]:
        print(f"  run catalog   {out}/{name}")
    print(f"  observations  {out}/{manifest['observations']} (and .csv)")
    print(f"  truth         {out}/{manifest['truth']}")
    print(f"  figure        {out}/figures/winters.png")
    return 0


def _discard(out: str, fsspec_module: object) -> None:
    """Remove a half-written world so nothing incomplete is left behind."""
    try:
        fs, path = fsspec_module.core.url_to_fs(out)  # type: ignore[attr-defined]
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except Exception as exc:  # cleanup must never hide the original error
        print(f"cascadia-ensemble: warning: could not remove {out}: {exc}", file=sys.stderr)


def _load_catalogs(paths: list[str]):
    from cascadia.sources.config import CatalogError, load_run_catalog

    catalogs = []
    for path in paths:
        try:
            catalogs.append(load_run_catalog(path))
        except CatalogError as exc:
            raise _UsageError(str(exc)) from None
    return catalogs


class _UsageError(Exception):
    """Bad input: reported on stderr with exit status 2."""


def _skipped_table(source: str, skipped: Sequence[Skipped]) -> Table:
    """The datasets the selection rules skipped, one row per combination and reason."""
    from rich.table import Table

    groups: dict[tuple[str, str], list[str]] = {}
    for s in skipped:
        groups.setdefault((s.combination, s.reason), []).append(s.variable)
    table = Table(title=f"{source}: {len(skipped)} dataset(s) skipped by the selection rules")
    for column in ("combination", "variables", "reason"):
        table.add_column(column)
    for (combination, reason), variables in groups.items():
        table.add_row(combination, " ".join(sorted(variables)), reason)
    return table


def _catalog_check(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from cascadia.sources.catalog import SourceError, list_combos, open_collection

    try:
        catalogs = _load_catalogs(args.catalog)
    except _UsageError as exc:
        return _fail(str(exc))
    out = _stdout()
    problems = 0
    for catalog in catalogs:
        out.print(
            f"[bold]{escape(catalog.path)}[/]: {len(catalog.sources)} source(s), "
            f"regions {', '.join(r.name for r in catalog.regions)}",
            soft_wrap=True,
        )
        for source in catalog.sources:
            try:
                datastore = open_collection(catalog, source)
                listing = list_combos(catalog, source, datastore)
            except SourceError as exc:
                problems += 1
                out.print(f"  [red]✗[/] {escape(source.name)}: {escape(str(exc))}", soft_wrap=True)
                continue
            combos = listing.combos
            table = Table(title=f"{source.name} ({source.role}): {len(combos)} combination(s)")
            columns = ["source_id", "experiment_id", "member_id", "assets", "missing"]
            driving = source.driving_model
            oceans = source.deep_ocean is not None or (driving is not None and driving.deep_ocean)
            if oceans:  # whose ocean the background after the record takes
                columns.append("deep ocean")
            for column in columns:
                table.add_column(column)
            for combo in combos:
                problems += bool(combo.missing)
                cells = [*combo.labels.values(), str(len(combo.assets)), ", ".join(combo.missing)]
                if oceans:
                    cells.append(combo.ocean_of or "none: held (anomaly-only)")
                table.add_row(*(cell or "-" for cell in cells))
            out.print(table)
            if listing.skipped:
                out.print(_skipped_table(source.name, listing.skipped))
            if args.open:
                problems += not _check_opens(out, catalog, source, combos, datastore)
    return 1 if problems else 0


def _check_opens(out: Console, catalog, source, combos, datastore) -> bool:
    """``catalog check --open``: one combination of a source, opened and read; one line."""
    from rich.markup import escape

    from cascadia.sources.catalog import SourceError
    from cascadia.sources.extraction import check_combo

    complete = [c for c in combos if not c.missing]
    if not complete:
        out.print(f"  [red]✗[/] {escape(source.name)}: no combination has every variable")
        return False
    combo = complete[0]
    started = time.perf_counter()
    try:
        extracted = check_combo(catalog, source, combo, datastore)
    except SourceError as exc:
        out.print(f"  [red]✗[/] {escape(source.name)}: {escape(str(exc))}", soft_wrap=True)
        return False
    data = extracted.data
    out.print(
        f"  [green]✓[/] {escape(source.name)}: {escape(combo.label)} opens: "
        f"{', '.join(sorted(map(str, data.data_vars)))} over {data.sizes['region']} region(s) "
        f"from {str(data['time'].values[0])[:10]} ({time.perf_counter() - started:.1f} s)",
        soft_wrap=True,
    )
    return True


def _catalog_build(args: argparse.Namespace) -> int:
    import json

    from rich.table import Table

    from cascadia.sources.builder import BuildError, build_collection

    facets = {}
    for item in args.facet or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            return _fail(f"--facet expects KEY=VALUE, got {item!r}")
        facets[key] = value
    try:
        options = json.loads(args.storage_options) if args.storage_options else {}
    except json.JSONDecodeError as exc:
        return _fail(f"--storage-options is not valid JSON: {exc}")
    if not isinstance(options, dict):
        return _fail("--storage-options must be a JSON object, e.g. '{\"anon\": true}'")
    try:
        with console.status(f"scanning {args.folder}"):
            result = build_collection(args.folder, args.out, storage_options=options, facets=facets)
    except BuildError as exc:
        return _fail(str(exc))
    out = _stdout()
    table = Table(title=f"collection {result.json_url}")
    keys = ["project", "source_id", "experiment_id", "member_id", "frequency"]
    for column in (*keys, "variables", "assets"):
        table.add_column(column)
    frame = result.frame
    for values, group in frame.groupby(keys, sort=True):
        variables = ", ".join(sorted(set(group["variable_id"])))
        table.add_row(*map(str, values), variables, str(group["path"].nunique()))
    out.print(table)
    print(
        f"{result.assets} assets, {len(frame)} rows written to {result.json_url} "
        f"and {result.csv_url}"
    )
    if result.skipped:
        shown = result.skipped[:SKIPPED_SHOWN]
        print(f"{len(result.skipped)} file(s) not catalogued (listed in {result.skipped_url}):")
        for item in shown:
            print(f"  {item.path}: {item.reason}")
        if len(result.skipped) > len(shown):
            print(f"  ... and {len(result.skipped) - len(shown)} more")
    return 0


#: Files not catalogued that ``catalog build`` prints (all are in the .skipped.csv).
SKIPPED_SHOWN = 20


def _extract(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from cascadia.sources.adjustment import adjust_projections
    from cascadia.sources.cache import PredictorCache, default_cache_url, fill_cache

    try:
        catalogs = _load_catalogs(args.catalog)
    except _UsageError as exc:
        return _fail(str(exc))
    cache = PredictorCache(args.cache or default_cache_url())
    outcomes = []
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        for catalog in catalogs:
            task = progress.add_task(f"extract {catalog.path}", total=None)

            def advance(outcome, task=task):
                progress.advance(task)
                if outcome.status == "failed":
                    _print_failure(progress.console, outcome.combo, outcome.reason)

            def total(n, task=task):
                progress.update(task, total=n)

            outcomes += fill_cache(catalog, cache, args.source, on_combo=advance, on_total=total)
            if catalog.bias_adjustment is not None and not args.no_bias_adjustment:
                task = progress.add_task(f"bias-adjust {catalog.path}", total=None)
                outcomes += adjust_projections(
                    catalog, cache, on_combo=lambda o, task=task: advance(o, task)
                )
    table = Table(title=f"predictor cache {cache.url}")
    for column in ("source", "combination", "status", "seconds", "long gaps"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(o.source, o.combo, o.status, f"{o.seconds:.1f}", str(o.long_gaps))
    _stdout().print(table)
    failed = [o for o in outcomes if o.status == "failed"]
    statuses = ("extracted", "adjusted", "cached", "failed")
    counts = {s: sum(o.status == s for o in outcomes) for s in statuses}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    return 1 if failed else 0


@contextlib.contextmanager
def _training_display(candidates: int, metric: str) -> Iterator[Callable[[Any], None]]:
    """Show the candidates' training: a live bar on a terminal (candidates done, the
    epoch each is at, the best validation score so far, time left); in a log, one line
    per finished candidate."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    started = time.perf_counter()
    epochs: dict[int, int] = {}
    best = [float("inf")]
    done = [0]
    label = f"validation {metric.upper()}"

    def describe() -> str:
        running = ", ".join(f"#{i} epoch {e}" for i, e in sorted(epochs.items())[:4])
        score = f"best {label} {best[0]:.4f}" if best[0] < float("inf") else ""
        return f"train candidates ({'; '.join(x for x in (running, score) if x)})"

    if not console.is_terminal:

        def log_line(step: Any) -> None:
            if not step.done:
                return
            done[0] += 1
            best[0] = min(best[0], step.score)
            elapsed = time.perf_counter() - started
            left = elapsed / done[0] * (candidates - done[0])
            console.log(
                f"candidate {step.candidate} done ({done[0]}/{candidates}): best epoch "
                f"{step.epoch}, {label} {step.score:.4f}; best so far {best[0]:.4f}; "
                f"{elapsed:.0f} s elapsed, about {left:.0f} s left"
            )

        yield log_line
        return
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(describe(), total=candidates)

        def update(step: Any) -> None:
            if step.done:
                epochs.pop(step.candidate, None)
                bar.advance(task)
            else:
                epochs[step.candidate] = step.epoch
            best[0] = min(best[0], step.score)
            bar.update(task, description=describe())

        yield update


def _train(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from cascadia.learning.jobs import JobError, load_train_job
    from cascadia.learning.train_job import run_train_job
    from cascadia.mooring.events import EventError
    from cascadia.mooring.observations import ObservationError
    from cascadia.mooring.targets import TargetError

    if bad := _device_error(args.device):
        return _fail(bad)
    started = time.perf_counter()
    try:
        job = load_train_job(args.job)
        training = job.training
        with _training_display(training.n_candidates, training.early_stopping) as progress:
            result = run_train_job(
                job,
                args.out,
                overwrite=args.overwrite,
                log=lambda line: console.log(line),
                progress=progress,
                device=args.device,
            )
    except (JobError, ObservationError, TargetError, EventError, ValidationError) as exc:
        return _fail(str(exc))
    elapsed = time.perf_counter() - started
    seconds = f"{elapsed:.0f} s; training {result.train_seconds:.1f} s"
    print(f"model directory {result.directory} ({seconds})")
    for depth, row in result.metrics["ensemble"].items():
        cells = ", ".join(
            f"{k} {v:.3f}" if v is not None else f"{k} -"
            for k, v in row.items()
            if k in ("crps", "nse", "coverage_90", "event_hit_week", "event_hit_day", "csi")
        )
        print(f"  ensemble {depth} m: {cells}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from cascadia.learning.jobs import JobError
    from cascadia.learning.tuning import load_tune_job, run_tune_job
    from cascadia.mooring.events import EventError
    from cascadia.mooring.observations import ObservationError
    from cascadia.mooring.targets import TargetError

    if args.trials is not None and args.trials < 1:
        return _fail(f"--trials must be at least 1, got {args.trials}")
    if bad := _device_error(args.device):
        return _fail(bad)
    started = time.perf_counter()
    try:
        job = load_tune_job(args.job)
        result = run_tune_job(
            job,
            args.study_dir,
            args.trials,
            log=lambda line: console.log(line),
            device=args.device,
        )
    except (JobError, ObservationError, TargetError, EventError, ValidationError) as exc:
        return _fail(str(exc))
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.states.items()))
    best = result.best
    print(f"study {result.storage} ({states}; {time.perf_counter() - started:.0f} s)")
    print(
        f"  best trial {best['trial']}: validation CRPS {best['validation_crps']:.4f} °C, "
        f"{best['candidate']['architecture']} {best['candidate']['hparams']}, "
        f"lookback {best['candidate']['lookback_days']} d, "
        f"learning rate {best['candidate']['learning_rate']:.2e}"
    )
    print(f"  comparison  {result.directory / 'comparison.md'} (.csv, .json)")
    print(f"  best job    {result.directory / 'best-train-job.yaml'}")
    return 0


#: Where ``run`` finds its model and writes its results when not told (docs/run.md).
MODEL_ENV, DEFAULT_MODEL = "CASCADIA_MODEL", "model"
RESULTS_ENV, DEFAULT_RESULTS = "CASCADIA_RESULTS", "results.zarr"


def _run_locations(args: argparse.Namespace) -> tuple[str, str] | str:
    """The model directory and results store of a run, or why there is no model."""
    out = args.out or os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS
    if args.model:
        return args.model, out
    model = os.environ.get(MODEL_ENV)
    if model:
        return model, out
    if not Path(DEFAULT_MODEL, "ensemble.json").is_file():
        return (
            f"no model given and no ./{DEFAULT_MODEL} model directory here: pass --model DIR "
            f"or set {MODEL_ENV}; a model comes from cascadia-ensemble train --job JOB "
            "(jobs/lacaze-duthiers.yaml for the real mooring, docs/training.md)"
        )
    return DEFAULT_MODEL, out


def _run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        return _fail(f"--workers must be at least 1, got {args.workers}")
    located = _run_locations(args)  # before the heavy imports: a usage error is instant
    if isinstance(located, str):
        return _fail(located)
    model, out = located
    try:  # a catalog's own errors, before the heavy imports: within a second
        _load_catalogs(args.catalog)
    except _UsageError as exc:
        return _fail(str(exc))

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from cascadia.run.inference import InferenceConfig
    from cascadia.run.pipeline import RunInputError, run_pipeline

    counts = {"done": 0, "skipped": 0, "failed": 0}
    total = [0]
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # the bar starts once the inputs are checked: bad input prints one line only
    planning = console.status("planning the run: catalogs, input fingerprints, results store")
    progress = Progress(*columns, console=console)

    def describe() -> str:
        left = total[0] - sum(counts.values())
        return (
            f"combinations: {counts['done'] + counts['skipped']} done "
            f"({counts['skipped']} up to date), {counts['failed']} failed, {left} left"
        )

    def on_total(n: int) -> None:
        planning.stop()
        total[0] = n
        progress.start()
        progress.add_task(describe(), total=n)

    def on_result(result) -> None:
        counts[result.status] += 1
        progress.update(progress.task_ids[0], advance=1, description=describe())
        if result.status == "failed":
            _print_failure(progress.console, result.label, result.reason)

    planning.start()
    try:
        summary = run_pipeline(
            args.catalog,
            model,
            out,
            cache=args.cache,
            config=InferenceConfig(member_series=not args.no_member_series),
            lock_wait=args.wait_for_lock,
            replace_model=args.replace_model,
            cluster=args.cluster,
            workers=args.workers,
            on_total=on_total,
            on_result=on_result,
            device=args.device,
        )
    except RunInputError as exc:
        return _fail(str(exc))
    finally:
        planning.stop()
        progress.stop()
    if any(r.combo is not None for r in summary.results):  # else: no store, failures listed
        table = Table(title=f"results store {summary.store}")
        for column in ("combination", "catalog entry", "status", "seconds", "reason"):
            table.add_column(column, overflow="fold")
        for r in sorted(summary.results, key=lambda r: (r.entry, r.label)):
            table.add_row(r.label, r.entry, r.status, f"{r.seconds:.1f}", r.reason)
        _stdout().print(table)
    skipped = sum(len(s["skipped"]) for s in summary.selection.values())
    if skipped:
        print(
            f"selection rules skipped {skipped} dataset(s) (listed by `catalog check`, "
            "recorded in the store's dataset_selection attribute)"
        )
    print(
        f"{summary.count('done')} done, {summary.count('skipped')} up to date, "
        f"{summary.count('failed')} failed; {summary.tasks_submitted} tasks; "
        f"spread statistics: {summary.spread}; {summary.seconds:.0f} s"
    )
    return 0 if summary.ok else 1


def _reprocess(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        return _fail(f"--workers must be at least 1, got {args.workers}")
    from rich.table import Table

    from cascadia.run.pipeline import RunInputError
    from cascadia.service.reprocess import reprocess_pass

    def on_result(result) -> None:
        if result.status == "failed":
            _print_failure(console, result.label, result.reason)

    command = "cascadia-ensemble reprocess " + " ".join(
        [*(f"--catalog {c}" for c in args.catalog), f"--results {args.results}"]
        + [f"--{k} {getattr(args, k)}" for k in ("model", "cluster") if getattr(args, k)]
    )
    try:
        summary = reprocess_pass(
            args.catalog,
            args.model,
            args.results,
            cache=args.cache,
            cluster=args.cluster,
            workers=args.workers,
            lock_wait=args.wait_for_lock,
            replace_model=args.replace_model,
            command=command,
            on_result=on_result,
            device=args.device,
        )
    except RunInputError as exc:
        return _fail(str(exc))
    if summary.rows:
        table = Table(title=f"results store {summary.store}")
        for column in ("combination", "catalog entry", "outcome", "seconds", "why"):
            table.add_column(column, overflow="fold")
        for r in sorted(summary.rows, key=lambda r: (r.entry, r.label)):
            table.add_row(r.label, r.entry, r.outcome, f"{r.seconds:.1f}", r.why)
        _stdout().print(table)
    print(
        f"{summary.counts()}; {summary.tasks_submitted} tasks; "
        f"spread statistics: {summary.spread}; {summary.seconds:.0f} s"
    )
    if summary.history:
        print(f"history: {summary.history}")
    return 0 if summary.ok else 1


def _demo(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from cascadia.demo import DemoError, run_demo
    from cascadia.learning.jobs import JobError
    from cascadia.run.pipeline import RunInputError

    if args.workers is not None and args.workers < 1:
        return _fail(f"--workers must be at least 1, got {args.workers}")
    if bad := _device_error(args.device):
        return _fail(bad)
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    progress = Progress(*columns, console=console)
    status = console.status("demo: synth")
    names = iter(("train", "run", "report"))

    def on_stage(stage) -> None:
        progress.stop()
        mark = "[dim]skipped[/]" if stage.skipped else "[green]done[/]"
        console.print(f"{stage.name:<7} {mark} {stage.seconds:7.1f} s  {stage.detail}")
        status.update(f"demo: {next(names, 'finishing')}")

    def on_total(n: int) -> None:
        status.stop()
        progress.start()
        progress.add_task("combinations", total=n)

    def on_result(result) -> None:
        progress.update(progress.task_ids[0], advance=1)
        if result.status == "failed":
            _print_failure(progress.console, result.label, result.reason)

    status.start()
    try:
        result = run_demo(
            args.preset,
            args.out,
            workers=args.workers,
            seed=args.seed,
            log=lambda line: status.update(f"demo: {line}"),
            on_stage=on_stage,
            on_total=on_total,
            on_result=on_result,
            device=args.device,
        )
    except (DemoError, JobError, RunInputError) as exc:
        return _fail(str(exc))
    finally:
        status.stop()
        progress.stop()
    total = sum(s.seconds for s in result.stages)
    print(f"demo ({args.preset}, seed {args.seed}) in {total:.0f} s under {result.out}")
    print(f"  world         {result.world}")
    print(f"  model         {result.model} (job {result.out / 'train.yaml'})")
    print(f"  results       {result.results}")
    for path in result.report.files if result.report else []:
        print(f"  report        {path}")
    for path in result.ceiling_files:
        print(f"  ceiling       {path}")
    return 0 if result.ok else 1


def _report(args: argparse.Namespace) -> int:
    from cascadia.report import ReportError, write_run_report

    periods = {}
    for name in ("base", "future"):
        value = getattr(args, name)
        if value is not None:
            if value[0] > value[1]:
                return _fail(f"--{name} FIRST LAST: FIRST must not be after LAST, got {value}")
            periods[name] = (value[0], value[1])
    try:
        with console.status("writing the report"):
            result = write_run_report(
                args.results,
                args.out,
                truth_index=args.truth,
                model_dir=args.model,
                **periods,
            )
    except ReportError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write the report to {args.out}: {exc}")
    print(f"report of {args.results} written to {result.out}")
    for path in result.files:
        print(f"  {path.suffix[1:]:<5} {path}")
    return 0


def _query(args: argparse.Namespace) -> int:
    from cascadia.service.formats import encode
    from cascadia.service.query import Query, run_query
    from cascadia.service.results import ResultsError, open_results

    query = Query(
        experiment=args.experiment,
        source_id=args.source_id,
        member_id=args.member_id,
        depth=args.depth,
        start=args.start,
        end=args.end,
        stat=args.stat,
        variables=args.variable,
    )
    try:
        with open_results(args.results) as results:
            answer = run_query(results, query)
            blocks = encode(answer.table, answer.dataset, args.format)
            if args.out:
                with open(args.out, "wb") as out:
                    for block in blocks:
                        out.write(block)
            else:
                for block in blocks:
                    sys.stdout.buffer.write(block)
                sys.stdout.buffer.flush()
    except ResultsError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write {args.out or 'stdout'}: {exc}")
    if args.out:
        print(f"{answer.rows} rows of {args.stat} written to {args.out}", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from cascadia.service.serve import ServeError, serve

    try:
        serve(
            args.results,
            host=args.host,
            port=args.port,
            cluster=args.cluster,
            workers=args.workers,
            model=args.model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL,
            cache=args.cache,
            token_file=args.token_file,
            max_rows=args.max_rows,
            max_days=args.max_days,
            max_runs=args.max_runs,
        )
    except ServeError as exc:
        return _fail(str(exc))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from cascadia.run.migrate import migrate_store
    from cascadia.run.store import StoreError

    try:
        with console.status(f"migrating {args.results}"):
            done = migrate_store(args.results, args.out)
    except StoreError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot migrate {args.results}: {exc}")
    states = ", ".join(f"{n} {s}" for s, n in sorted(done.statuses.items()))
    print(
        f"{done.source} -> {done.out}: {done.combos} combinations ({states}), "
        f"{done.holes} empty cells dropped; spread {'recomputed' if done.spread else 'none'}"
    )
    if done.backup:
        print(f"  the old store is kept as {done.backup}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from cascadia.learning.jobs import JobError
    from cascadia.run.pipeline import RunInputError
    from cascadia.validate import SUMMARY_MD, ValidateError, run_validate

    if args.workers is not None and args.workers < 1:
        return _fail(f"--workers must be at least 1, got {args.workers}")
    if bad := _device_error(args.device):
        return _fail(bad)
    status = console.status("validate")
    say = (lambda line: console.print(line)) if args.verbose else status.update
    status.start()
    try:
        result = run_validate(
            args.seeds,
            preset=args.preset,
            out=args.out,
            job=args.job,
            workers=args.workers,
            vary_physics=not args.fixed_physics,
            allow_development_seeds=args.allow_development_seeds,
            log=say,
            device=args.device,
        )
    except (ValidateError, JobError, RunInputError) as exc:
        return _fail(str(exc))
    finally:
        status.stop()
    if result.skipped:
        print(f"seeds already done (skipped): {', '.join(map(str, result.skipped))}")
    text = (result.out / SUMMARY_MD).read_text(encoding="utf-8")
    print("\n".join(line for line in text.splitlines() if line.startswith("|")))
    for path in result.files:
        print(f"  {path}")
    return 0


def _ceiling(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.table import Table

    from cascadia.twin.ceiling import (
        TABLE_COLUMNS,
        CeilingError,
        compute_ceiling,
        share_sentence,
        table_rows,
        write_ceiling,
    )

    out = Path(args.out) if args.out else Path(args.model) / "report" / "ceiling"
    try:
        with console.status("regenerating the twin's history and scoring the oracles"):
            result = compute_ceiling(args.world, args.model)
    except CeilingError as exc:
        return _fail(str(exc))
    try:
        paths = write_ceiling(result, out)
    except OSError as exc:
        return _fail(f"cannot write the ceiling to {out}: {exc}")
    screen = _stdout()
    for depth, entry in result["depths"].items():
        table = Table(title=f"{depth} m: {entry['n_test_days']} test days, skill vs best baseline")
        for i, column in enumerate(TABLE_COLUMNS):
            table.add_column(column, justify="right" if i else "left", no_wrap=not i)
        for row in table_rows(result, depth):
            table.add_row(*row)
        screen.print(table)
        screen.print(share_sentence(result, depth))
    for path in paths:
        print(f"  {path.suffix[1:]:<5} {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cascadia-ensemble",
        description="Dense shelf water cascading in the Gulf of Lion from atmospheric "
        "predictors: twin world, predictors, deep ensemble, runs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v",
        "--verbose-logs",
        dest="library_info",
        action="store_true",
        help="show the libraries' INFO logs (dask's scheduler and workers, ...): before the "
        "command, e.g. cascadia-ensemble -v run ...",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser(
        "synth",
        help="build the synthetic Gulf of Lion twin world",
        description="Build the twin world (reanalysis and projection stores, mooring, "
        "truth, intake-esm collections and run catalogs) under a folder or fsspec URL.",
    )
    synth.add_argument("--out", required=True, help="output folder or fsspec URL")
    synth.add_argument("--preset", default="demo", help="tiny | demo | full (default: demo)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.add_argument(
        "--overwrite", action="store_true", help="replace the contents of a non-empty output folder"
    )
    synth.set_defaults(handler=_synth)

    catalog = commands.add_parser("catalog", help="inspect run catalogs, build collections")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True)
    check = catalog_commands.add_parser(
        "check",
        help="validate run catalogs and list their combinations",
        description="Validate run catalogs, open their collections and list every "
        "(source, experiment, member) combination; exit 1 if a collection cannot be "
        "reached, is a placeholder template, or a combination lacks a variable. With "
        "--open, also open one combination per source and standardise its first time "
        "steps, so layout failures show in seconds rather than minutes into a run.",
    )
    check.add_argument(
        "--catalog",
        action="append",
        required=True,
        metavar="FILE",
        help="run catalog YAML (repeatable)",
    )
    check.add_argument(
        "--open",
        action="store_true",
        help="open one combination per source and read its first time steps",
    )
    check.set_defaults(handler=_catalog_check)
    build = catalog_commands.add_parser(
        "build",
        help="build an intake-esm collection from a folder of NetCDF files and Zarr stores",
        description="Scan a folder (or fsspec URL) of NetCDF files and Zarr stores - ERA5 "
        "downloads from the CDS, a CMIP6 mirror in DRS paths (Pangeo's Zarr layout "
        "included), CORDEX files with DRS names - and write an intake-esm collection "
        "(JSON + CSV) that a run catalog can name (see docs/own-data.md). Files that cannot "
        "be catalogued are listed with the reason. Exit 0 when a collection is written.",
    )
    build.add_argument("folder", metavar="DIR", help="folder or fsspec URL to scan")
    build.add_argument(
        "--out", required=True, metavar="FILE", help="collection JSON (the CSV goes beside it)"
    )
    build.add_argument(
        "--facet",
        action="append",
        metavar="KEY=VALUE",
        help="set a column on every row, e.g. source_id=ERA-20C (repeatable)",
    )
    build.add_argument(
        "--storage-options",
        metavar="JSON",
        help="fsspec options to scan and read DIR, e.g. '{\"anon\": true}'",
    )
    build.set_defaults(handler=_catalog_build)

    extract = commands.add_parser(
        "extract",
        help="fill the predictor cache",
        description="Extract canonical daily regional predictors of every combination "
        "into the predictor cache; cached combinations are skipped, failures are listed "
        "without stopping the others (exit 1 if any failed).",
    )
    extract.add_argument(
        "--catalog",
        action="append",
        required=True,
        metavar="FILE",
        help="run catalog YAML (repeatable)",
    )
    extract.add_argument(
        "--cache",
        metavar="URL",
        help="cache folder or fsspec URL (default: ~/.cache/cascadia/predictors)",
    )
    extract.add_argument(
        "--source",
        action="append",
        metavar="NAME",
        help="only these sources of the catalogs (repeatable)",
    )
    extract.add_argument(
        "--no-bias-adjustment",
        action="store_true",
        help="extract only; skip the catalog's bias adjustment of projections",
    )
    extract.set_defaults(handler=_extract)

    train = commands.add_parser(
        "train",
        help="train and evaluate a deep ensemble from a job file",
        description="Fill the predictor cache, build the targets, train the deep ensemble "
        "of a job YAML (see docs/training.md) and evaluate it on the test winters: "
        "model directory with checkpoints, metrics.json and a report.",
    )
    train.add_argument("--job", required=True, metavar="FILE", help="training job YAML")
    train.add_argument("--out", metavar="DIR", help="model directory (default: the job's output)")
    train.add_argument(
        "--overwrite", action="store_true", help="replace an existing model directory"
    )
    _add_device(train, "trains")
    train.set_defaults(handler=_train)

    tune = commands.add_parser(
        "tune",
        help="hyperparameter search (optuna) and comparison of the best configurations",
        description="Search architecture, size, lookback, learning rate and dropout with "
        "optuna (pruning; SQLite study that resumes) on the train/validation winters of a "
        "tune job (see docs/tuning.md), retrain the top configurations as ensembles and "
        "compare them on the test winters (bootstrap and Diebold-Mariano tables).",
    )
    tune.add_argument("--job", required=True, metavar="FILE", help="tune job YAML")
    tune.add_argument(
        "--study-dir",
        metavar="DIR",
        help="study directory for the SQLite file and results (default: the storage's folder)",
    )
    tune.add_argument(
        "--trials", type=int, metavar="N", help="total trials of the study (default: the job's)"
    )
    _add_device(tune, "trains")
    tune.set_defaults(handler=_tune)
    run = commands.add_parser(
        "run",
        help="run a trained model over every combination of run catalogs into a results store",
        description="Enumerate every (source, experiment, member) combination of the run "
        "catalogs and run, on a Dask cluster, one task chain per combination: cached "
        "extraction, bias adjustment (projections), features, deep-ensemble inference, "
        "events, written by region into one consolidated Zarr store (see docs/run.md). "
        "Combinations already stored with the same fingerprint are skipped; failures are "
        "listed without stopping the others. Exit 0 when every combination is done, 1 when "
        "some failed, 2 for bad input.",
    )
    run.add_argument(
        "--catalog",
        action="append",
        required=True,
        metavar="FILE",
        help="run catalog YAML (repeatable)",
    )
    run.add_argument(
        "--model",
        metavar="DIR",
        help=f"model directory (cascadia-ensemble train); default: ${MODEL_ENV}, else "
        f"./{DEFAULT_MODEL}",
    )
    run.add_argument(
        "--out",
        metavar="URL",
        help=f"results store (Zarr folder or fsspec URL); default: ${RESULTS_ENV}, else "
        f"./{DEFAULT_RESULTS} (every catalog's run goes into the one store)",
    )
    run.add_argument(
        "--cache",
        metavar="URL",
        help="predictor cache folder or fsspec URL (default: ~/.cache/cascadia/predictors)",
    )
    run.add_argument(
        "--cluster",
        metavar="KIND",
        help="local | slurm | pbs | tcp://HOST:PORT (default: cascadia.cluster config, local)",
    )
    run.add_argument(
        "--workers", type=int, metavar="N", help="Dask workers (default: cores for local)"
    )
    run.add_argument(
        "--no-member-series",
        action="store_true",
        help="do not store each member's daily series (temperature_member)",
    )
    run.add_argument(
        "--wait-for-lock",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another run writing the same store (default: refuse at once)",
    )
    run.add_argument(
        "--replace-model",
        action="store_true",
        help="the store holds another model's results: recompute every combination with "
        "this model (a store belongs to one model)",
    )
    _add_device(run, "predicts (on each Dask worker)")
    run.set_defaults(handler=_run)
    reprocess = commands.add_parser(
        "reprocess",
        help="bring a results store up to date: recompute what changed, append what is new",
        description="One scheduled pass over a results store (see docs/deploy.md): "
        "combinations whose inputs changed (catalog entry, input store content chunk by "
        "chunk, model checksum, inference settings) are recomputed, newly catalogued ones "
        "appended, the others left untouched; the spread statistics are rewritten only when "
        "something changed; combinations no catalog lists any more are kept and reported. "
        "Each pass appends one line to the store's history attribute. Exit 0 when nothing "
        "failed, 1 when some combinations failed, 2 for bad input.",
    )
    reprocess.add_argument(
        "--catalog",
        action="append",
        required=True,
        metavar="FILE",
        help="run catalog YAML (repeatable): every combination the store should hold",
    )
    reprocess.add_argument(
        "--results", required=True, metavar="URL", help="results store (Zarr folder or URL)"
    )
    reprocess.add_argument(
        "--model",
        metavar="DIR",
        help="model directory (default: the one the store records; another model needs "
        "--replace-model and recomputes every combination)",
    )
    reprocess.add_argument(
        "--cache",
        metavar="URL",
        help="predictor cache folder or fsspec URL (default: ~/.cache/cascadia/predictors)",
    )
    reprocess.add_argument(
        "--cluster",
        metavar="KIND",
        help="local | slurm | pbs | tcp://HOST:PORT (default: cascadia.cluster config, "
        "local); opened only when something must be computed",
    )
    reprocess.add_argument(
        "--workers", type=int, metavar="N", help="Dask workers (default: cores for local)"
    )
    reprocess.add_argument(
        "--wait-for-lock",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another run writing the same store (default: refuse at once)",
    )
    reprocess.add_argument(
        "--replace-model",
        action="store_true",
        help="--model differs from the store's: recompute every combination with it",
    )
    _add_device(reprocess, "predicts (on each Dask worker)")
    reprocess.set_defaults(handler=_reprocess)
    demo = commands.add_parser(
        "demo",
        help="the whole chain on the embedded twin world: synth, train, run, report",
        description="Build the twin world, train the deep ensemble on it, run it over every "
        "reanalysis and projection of the world into one results store and write a report "
        "that compares the projected change of cascading with the twin's truth. Stages "
        "whose output is already complete under --out are skipped (see docs/run.md).",
    )
    demo.add_argument("--preset", default="demo", help="tiny | demo (default: demo)")
    demo.add_argument("--out", default="demo", metavar="DIR", help="output folder (default: demo)")
    demo.add_argument(
        "--workers", type=int, metavar="N", help="Dask workers (default: one per core)"
    )
    demo.add_argument("--seed", type=int, default=0, help="twin world seed (default: 0)")
    _add_device(demo, "trains and predicts")
    demo.set_defaults(handler=_demo)
    report = commands.add_parser(
        "report",
        help="an HTML report of a results store, with PNG and PDF figures and CSV tables",
        description="Write report.html (one self-contained page) with its figures beside it "
        "as PNG and PDF and its tables as CSV: the hindcast since 1993 against the mooring, "
        "the reconstruction through every reanalysis with the known extreme winters, per "
        "scenario the multi-model mean and spread of winter event days and intensity, the "
        "change of the last period with its robustness, the variance partition when the "
        "store has one, and per-winter event statistics of every combination (see "
        "docs/run.md). With --truth (a twin world's truth/index.csv) also the comparison with "
        "the truth (truth_comparison.json).",
    )
    report.add_argument(
        "--results", required=True, metavar="URL", help="results store (cascadia-ensemble run)"
    )
    report.add_argument(
        "--model",
        metavar="DIR",
        help="model directory: the mooring series and event rule for the observations",
    )
    report.add_argument(
        "--truth",
        metavar="INDEX",
        help="a twin world's truth/index.csv: compare the run with the truth (needs --model)",
    )
    report.add_argument("--out", required=True, metavar="DIR", help="output folder")
    report.add_argument(
        "--base",
        type=int,
        nargs=2,
        metavar=("FIRST", "LAST"),
        help="baseline winters of the truth comparison (default: 1993 2022)",
    )
    report.add_argument(
        "--future",
        type=int,
        nargs=2,
        metavar=("FIRST", "LAST"),
        help="future winters of the truth comparison and the change shown (default: 2080 2100)",
    )
    report.set_defaults(handler=_report)
    _query_parser(commands)
    _serve_parser(commands)
    migrate = commands.add_parser(
        "migrate",
        help="convert a results store of the old experiment x source_id x member_id layout "
        "into the growing (combo) layout (docs/run.md)",
    )
    migrate.add_argument(
        "--results", required=True, metavar="URL", help="the store of the old layout"
    )
    migrate.add_argument(
        "--out",
        metavar="URL",
        help="the new store (default: convert in place, keeping the old one as <URL>.cube-layout)",
    )
    migrate.set_defaults(handler=_migrate)
    validate = commands.add_parser(
        "validate",
        help="judge the frozen job on fresh twin worlds: per seed and as mean and range",
        description="For each seed: build a fresh twin world (its physical parameters drawn "
        "per seed), train the frozen job on it, run it over every catalog of the world and "
        "compare with the truth; then write validate.json and validate.md under --out: "
        "test-winter scores, warm- and cold-split scores, run-vs-truth change in winter event "
        "days per scenario and the hindcast before the mooring record, per seed and as mean and "
        "range. Seeds already done with the same settings are skipped (see docs/run.md).",
    )
    validate.add_argument(
        "--seeds", type=int, nargs="+", required=True, metavar="N", help="twin world seeds"
    )
    validate.add_argument(
        "--job", metavar="YAML", help="frozen training job (default: the preset's in jobs/)"
    )
    validate.add_argument("--preset", default="demo", help="tiny | demo (default: demo)")
    validate.add_argument(
        "--out", default="validate", metavar="DIR", help="output folder (default: validate)"
    )
    validate.add_argument(
        "--workers", type=int, metavar="N", help="Dask workers (default: one per core)"
    )
    validate.add_argument(
        "--fixed-physics",
        action="store_true",
        help="keep the twin's default physical parameters instead of drawing them per seed",
    )
    validate.add_argument(
        "--allow-development-seeds",
        action="store_true",
        help="accept seeds the repository was developed on (0-5, 7, 9, 100): not a validation",
    )
    validate.add_argument("--verbose", action="store_true", help="print every progress line")
    _add_device(validate, "trains and predicts")
    validate.set_defaults(handler=_validate)
    ceiling = commands.add_parser(
        "ceiling",
        help="skill ceiling on the twin world: oracles next to the trained model",
        description="Regenerate the twin world's history (checked against its truth) and "
        "score a full-ocean oracle, an atmosphere-only oracle and the background alone on the "
        "model's test days, next to the ensemble and baselines of its metrics.json (see "
        "docs/ceiling.md). Writes ceiling.json, ceiling.md and ceiling.png.",
    )
    ceiling.add_argument(
        "--model", required=True, metavar="DIR", help="model directory (cascadia-ensemble train)"
    )
    ceiling.add_argument(
        "--world", required=True, metavar="DIR", help="twin world the model was trained on"
    )
    ceiling.add_argument(
        "--out", metavar="DIR", help="output folder (default: <model>/report/ceiling)"
    )
    ceiling.set_defaults(handler=_ceiling)
    return parser


#: ``query --stat`` and ``--format`` values (cascadia.service.query.STATS, formats.FORMATS;
#: written out here so that building the parser imports nothing heavy).
QUERY_STATS = (
    "mean", "std", "band", "quantiles", "anomaly", "background", "probability", "members",
    "events", "spread", "combinations", "variables",
)  # fmt: skip
QUERY_FORMATS = ("csv", "json", "netcdf")


def _query_parser(commands: argparse._SubParsersAction) -> None:
    query = commands.add_parser(
        "query",
        help="read a results store: series, per-winter events, spread or combinations",
        description="Select combinations, depths and a period of a results store and write "
        "one statistic as CSV or JSON (stdout, or --out) or NetCDF (see docs/run.md, "
        "'Reading the results'). Every filter takes several values (--experiment historical "
        "ssp585, or repeated). Exit 2 with one line for an unknown label, depth, variable or "
        "date.",
    )
    query.add_argument(
        "--results", required=True, metavar="URL", help="results store (folder or fsspec URL)"
    )
    for name, meta in (("experiment", "NAME"), ("source-id", "ID"), ("member-id", "ID")):
        query.add_argument(
            f"--{name}", nargs="+", action="extend", metavar=meta, help=f"{name} (default: all)"
        )
    query.add_argument(
        "--depth", nargs="+", action="extend", type=float, metavar="M", help="depth, m"
    )
    query.add_argument("--start", metavar="DATE", help="first day (YYYY, YYYY-MM, YYYY-MM-DD)")
    query.add_argument("--end", metavar="DATE", help="last day (YYYY: through 31 December)")
    query.add_argument(
        "--stat",
        default="mean",
        choices=QUERY_STATS,
        help="daily mean, std, band (mean, std, quantiles as columns), quantiles, anomaly, "
        "background, probability, members; per-winter events; the multi-model spread; the "
        "combinations; or the --variable(s) named (default: mean)",
    )
    query.add_argument(
        "--variable",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="variables (stat variables, spread)",
    )
    query.add_argument(
        "--format", default="csv", choices=QUERY_FORMATS, help="output format (default: csv)"
    )
    query.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    query.set_defaults(handler=_query)


def _serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a results store over HTTP: queries, the Zarr store, runs, metrics",
        description="An HTTP service on one results store (see docs/serve.md): health, "
        "combinations, series and per-winter events with the query filters as JSON, CSV or "
        "NetCDF, the Zarr store read-only under /zarr (xr.open_zarr('http://HOST:PORT/zarr')), "
        "runs and reprocessing passes on the Dask cluster (POST /runs, bearer token), "
        "Prometheus /metrics, the OpenAPI schema and a page that plots a series.",
    )
    serve.add_argument(
        "--results", required=True, metavar="URL", help="results store (folder or fsspec URL)"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument(
        "--cluster",
        metavar="KIND",
        help="where POST /runs computes: local | slurm | pbs | tcp://HOST:PORT "
        "(default: cascadia.cluster config, local)",
    )
    serve.add_argument("--workers", type=int, metavar="N", help="Dask workers of a run")
    serve.add_argument(
        "--model",
        metavar="DIR",
        help=f"model directory of runs; default: ${MODEL_ENV}, else ./{DEFAULT_MODEL}",
    )
    serve.add_argument("--cache", metavar="URL", help="predictor cache of runs")
    serve.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the bearer token of POST /runs (default: $CASCADIA_SERVICE_TOKEN; "
        "neither: runs are refused)",
    )
    serve.add_argument(
        "--max-rows",
        type=int,
        default=1_000_000,
        metavar="N",
        help="largest table one request may get, rows (413 beyond; default: 1000000)",
    )
    serve.add_argument(
        "--max-days",
        type=int,
        default=36_600,
        metavar="N",
        help="longest period of a daily statistic one request may get, days (413 beyond; "
        "default: 36600)",
    )
    serve.add_argument(
        "--max-runs",
        type=int,
        default=1,
        metavar="N",
        help="runs queued or running at once (429 beyond; default: 1)",
    )
    serve.set_defaults(handler=_serve)


#: Libraries that log a whole traceback for an error they also raise (gcsfs logs one per
#: failed request after its retries): the raised error is reported in one line already.
QUIET_LOGGERS = ("gcsfs", "s3fs", "fsspec", "aiobotocore", "botocore", "aiohttp", "intake_esm")


class _OneLine(logging.StreamHandler):
    """Log records to the current ``sys.stderr``, one line each, without their tracebacks."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)  # no stream of its own: ``stream`` follows sys.stderr

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    def format(self, record: logging.LogRecord) -> str:
        return f"cascadia-ensemble: {record.name}: {' '.join(record.getMessage().split())}"


#: Libraries that log progress at INFO (a LocalCluster's scheduler and nannies), on stderr
#: by their own handler or, once xclim's import has called ``logging.info`` (which gives
#: the root logger a stderr handler), by the root's: shown with ``-v`` only.
INFO_LOGGERS = ("distributed",)


def _quiet_library_logs(library_info: bool = False) -> None:
    """Library warnings and errors on one line each, without their tracebacks; the
    libraries' INFO logs only when asked for (``-v``)."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _OneLine) for h in logger.handlers):
            logger.addHandler(_OneLine())
            logger.propagate = False
    level = "info" if library_info else "warning"
    for name in INFO_LOGGERS:
        if name in sys.modules:
            logging.getLogger(name).setLevel(level.upper())
        else:  # set on import, from dask's config (distributed.config.initialize_logging)
            dask.config.set({f"logging.{name}": level})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_library_logs(args.library_info)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
