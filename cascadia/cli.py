"""The ``cascadia-ensemble`` command: a thin shell over the Python API."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from rich.console import Console

from cascadia import __version__

#: Exit status for bad input (as argparse uses for usage errors).
EXIT_USAGE = 2

console = Console(stderr=True)


def _fail(message: str) -> int:
    print(f"cascadia-ensemble: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _synth(args: argparse.Namespace) -> int:
    import fsspec

    from cascadia.synthetic.presets import PRESETS
    from cascadia.synthetic.world import MANIFEST, WorldExistsError, build_world

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
    from cascadia.config import CatalogError, load_run_catalog

    catalogs = []
    for path in paths:
        try:
            catalogs.append(load_run_catalog(path))
        except CatalogError as exc:
            raise _UsageError(str(exc)) from None
    return catalogs


class _UsageError(Exception):
    """Bad input: reported on stderr with exit status 2."""


def _catalog_check(args: argparse.Namespace) -> int:
    from rich.table import Table

    from cascadia.catalog import SourceError, enumerate_combos, open_collection

    try:
        catalogs = _load_catalogs(args.catalog)
    except _UsageError as exc:
        return _fail(str(exc))
    out = Console()
    problems = 0
    for catalog in catalogs:
        out.print(
            f"[bold]{catalog.path}[/]: {len(catalog.sources)} source(s), "
            f"regions {', '.join(r.name for r in catalog.regions)}"
        )
        for source in catalog.sources:
            try:
                combos = enumerate_combos(catalog, source, open_collection(catalog, source))
            except SourceError as exc:
                problems += 1
                out.print(f"  [red]✗[/] {source.name}: {exc}")
                continue
            table = Table(title=f"{source.name} ({source.role}): {len(combos)} combination(s)")
            for column in ("source_id", "experiment_id", "member_id", "assets", "missing"):
                table.add_column(column)
            for combo in combos:
                problems += bool(combo.missing)
                table.add_row(
                    *combo.labels.values(), str(len(combo.assets)), ", ".join(combo.missing) or "-"
                )
            out.print(table)
    return 1 if problems else 0


def _extract(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from cascadia.adjustment import adjust_projections
    from cascadia.cache import PredictorCache, default_cache_url, fill_cache

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
                    progress.console.print(f"[red]failed[/] {outcome.combo}: {outcome.reason}")

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
    Console().print(table)
    failed = [o for o in outcomes if o.status == "failed"]
    statuses = ("extracted", "adjusted", "cached", "failed")
    counts = {s: sum(o.status == s for o in outcomes) for s in statuses}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    return 1 if failed else 0


def _train(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from cascadia.events import EventError
    from cascadia.jobs import JobError, load_train_job
    from cascadia.observations import ObservationError
    from cascadia.targets import TargetError
    from cascadia.train_job import run_train_job

    started = time.perf_counter()
    try:
        job = load_train_job(args.job)
        result = run_train_job(
            job, args.out, overwrite=args.overwrite, log=lambda line: console.log(line)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cascadia-ensemble",
        description="Dense shelf water cascading in the Gulf of Lion from atmospheric "
        "predictors: twin world, predictors, deep ensemble, runs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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

    catalog = commands.add_parser("catalog", help="inspect run catalogs")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True)
    check = catalog_commands.add_parser(
        "check",
        help="validate run catalogs and list their combinations",
        description="Validate run catalogs, open their collections and list every "
        "(source, experiment, member) combination; exit 1 if a collection cannot be "
        "reached or a combination lacks a variable.",
    )
    check.add_argument(
        "--catalog",
        action="append",
        required=True,
        metavar="FILE",
        help="run catalog YAML (repeatable)",
    )
    check.set_defaults(handler=_catalog_check)

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
    train.set_defaults(handler=_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
