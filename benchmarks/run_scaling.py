"""Benchmarks (b) and (c) of ``cascadia-ensemble run``: worker scaling and memory per worker.

(b) The full run over a world's run catalogs on a LocalCluster of 2 worker processes vs 1,
    same world, same model, a fresh results store each time, the predictor cache warm for
    both (one untimed run fills it first). Printed as time(1 worker) / time(2 workers).
(c) Peak resident memory of every worker process (``VmHWM`` of /proc/self/status read
    inside each worker: the maximum over its whole life; each measurement starts fresh
    workers; Linux only) for a
    run over N combinations vs one over 4N: it must stay flat (< 2 GB), because workers
    hold one model and one combination at a time, never the run.

Usage (from the repository root, project venv)::

    python benchmarks/run_scaling.py --quick              # builds a tiny world + model in /tmp
    python benchmarks/run_scaling.py --world DIR --model DIR [--cache URL] [--workers 2]

A table and one JSON line per measurement are printed. Run it on an otherwise idle machine
if possible: `uptime` load averages are printed before and after, since on a shared
machine the 2-worker run competes with other jobs for the second core.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from cascadia.run.cluster import open_cluster
from cascadia.run.pipeline import RunSummary, run_pipeline
from cascadia.sources.catalog import enumerate_combos, open_collection
from cascadia.sources.config import load_run_catalog
from cascadia.twin.presets import PRESETS, Preset, ReanalysisSpec, Years

#: The tiny preset with 11 ERA5 years: the bias adjustment needs >= 10 overlap years with
#: the projections' historical runs (2004-2014). 34 combinations: ERA5, 2 x 20CR, ERA-20C,
#: 3 CMIP-like models x 2 members x 4 experiments, 2 CORDEX-like pairs x 3 experiments.
QUICK_PRESET: Preset = PRESETS["tiny"].model_copy(
    update={
        "name": "run-scaling",
        "era5": ReanalysisSpec(years=Years(start=2004, end=2014), resolution=3.0),
        "historical": Years(start=2004, end=2014),
        "future": Years(start=2015, end=2016),
        "observations": Years(start=2004, end=2014),
    }
)
RSS_LIMIT_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class RunInputs:
    """What a run needs: run catalogs, a trained model directory, the predictor cache."""

    catalogs: tuple[str, ...]
    model: Path
    cache: str


@dataclass(frozen=True)
class RunMeasurement:
    """One timed run on a fresh LocalCluster, with each worker's peak RSS."""

    label: str
    workers: int
    combos: int
    done: int
    seconds: float
    task_seconds: float  # sum of the combinations' prediction-task times
    peak_rss: dict[str, int]  # worker address -> bytes

    @property
    def max_rss(self) -> int:
        return max(self.peak_rss.values())


def world_catalogs(world: Path) -> tuple[str, ...]:
    """Every run catalog of a twin world (``catalogs/*.yaml``)."""
    found = tuple(sorted(str(p) for p in (world / "catalogs").glob("*.yaml")))
    if not found:
        raise FileNotFoundError(f"{world / 'catalogs'}: no run catalog (*.yaml) in this world")
    return found


def build_quick_inputs(
    root: Path,
    preset: Preset = QUICK_PRESET,
    seed: int = 0,
    training: dict[str, Any] | None = None,
) -> RunInputs:
    """Build (or reuse) a twin world and a tiny trained model under ``root``.

    ``training`` overrides keys of the job's ``training`` section (e.g. the winters of a
    world with fewer years).
    """
    from cascadia.learning.jobs import TrainJob, smoke_train_job
    from cascadia.learning.train_job import run_train_job
    from cascadia.twin.world import build_world

    world, model, cache = root / "world", root / "model", str(root / "cache")
    if not (world / "world.json").exists():
        build_world(str(world), preset, seed=seed)
    if not (model / "job.yaml").exists():
        if model.exists():
            shutil.rmtree(model)
        spec = smoke_train_job(world, cache)
        spec["training"].update(training or {})
        job = TrainJob.model_validate(spec)
        run_train_job(job, model, log=lambda _: None)
    return RunInputs(world_catalogs(world), model, cache)


def subset_catalog(
    catalog: str, out: Path, sources: Sequence[str] | None = None, **query: list[str]
) -> str:
    """A copy of ``catalog`` with only ``sources`` (all if None), each query also selecting
    ``query``; paths made absolute. Lets (c) run N and 4N combinations of the same world
    without touching its files.
    """
    source_file = Path(catalog).resolve()
    data = yaml.safe_load(source_file.read_text(encoding="utf-8"))
    if sources is not None:
        data["sources"] = [s for s in data["sources"] if s["name"] in sources]
    for source in data["sources"]:
        source["collection"] = str((source_file.parent / source["collection"]).resolve())
        source.setdefault("query", {}).update(query)
    reference = (data.get("bias_adjustment") or {}).get("reference")
    if reference:
        reference["catalog"] = str((source_file.parent / reference["catalog"]).resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(out)


def count_combos(catalogs: Sequence[str]) -> int:
    """Combinations the catalogs enumerate (what a run plans)."""
    total = 0
    for path in catalogs:
        catalog = load_run_catalog(path)
        for source in catalog.sources:
            total += len(enumerate_combos(catalog, source, open_collection(catalog, source)))
    return total


def rss_catalogs(inputs: RunInputs, folder: Path) -> tuple[list[str], list[str]]:
    """Run catalogs of N and 4N projection combinations of the same CMIP-like catalog.

    N: one model, one member, all its experiments; 4N: two models x two members.
    """
    (cmip,) = [c for c in inputs.catalogs if Path(c).stem == "cmip6"]
    catalog = load_run_catalog(cmip)
    (source,) = catalog.sources
    combos = enumerate_combos(catalog, source, open_collection(catalog, source))
    models = sorted({c.labels["source_id"] for c in combos})
    members = sorted({c.labels["member_id"] for c in combos})
    if len(models) < 2 or len(members) < 2:
        raise ValueError(f"{cmip}: (c) needs >= 2 models and >= 2 members, got {models} {members}")
    small = subset_catalog(
        cmip, folder / "cmip6-n.yaml", source_id=models[:1], member_id=members[:1]
    )
    large = subset_catalog(
        cmip, folder / "cmip6-4n.yaml", source_id=models[:2], member_id=members[:2]
    )
    return [small], [large]


def peak_rss_bytes(proc_status: str) -> int:
    """Peak resident set size (``VmHWM``) from a ``/proc/<pid>/status`` text, in bytes.

    Not ``getrusage().ru_maxrss``: Linux carries it across fork + exec, so a worker
    spawned by a nanny in a big client process reports the client's peak.
    """
    for line in proc_status.splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"/proc status VmHWM in {unit!r}, expected 'kB'")
            return int(value) * 1024
    raise ValueError("no VmHWM line in /proc/<pid>/status (peak RSS needs Linux)")


def measure_run(
    inputs: RunInputs, catalogs: Sequence[str], workers: int, out: str, label: str
) -> RunMeasurement:
    """Time ``run_pipeline`` into a fresh store ``out`` on a fresh LocalCluster.

    The cluster is started before the clock starts (worker start-up is not the run's
    cost); the time covers planning, every task, the final consolidation and spread.
    """
    shutil.rmtree(out, ignore_errors=True)
    with open_cluster("local", workers=workers, dashboard_address=":0") as client:
        client.wait_for_workers(workers)
        started = time.perf_counter()
        summary: RunSummary = run_pipeline(
            list(catalogs), inputs.model, out, cache=inputs.cache, client=client
        )
        seconds = time.perf_counter() - started
        # a bound method, not a function of this file: workers cannot import benchmarks/
        status = client.run(Path("/proc/self/status").read_text)
    if summary.failed:
        raise RuntimeError(f"{label}: failed combinations: {[r.reason for r in summary.failed]}")
    return RunMeasurement(
        label=label,
        workers=workers,
        combos=len(summary.results),
        done=summary.count("done"),
        seconds=seconds,
        task_seconds=sum(r.seconds for r in summary.results),
        peak_rss={worker: peak_rss_bytes(text) for worker, text in status.items()},
    )


def warm_cache(inputs: RunInputs, catalogs: Sequence[str], out: str, workers: int = 2) -> float:
    """One untimed run that fills the predictor cache (extractions, fits, adjustments)."""
    return measure_run(inputs, catalogs, workers, out, "warm-up").seconds


def scaling(
    inputs: RunInputs, catalogs: Sequence[str], folder: Path, workers: int = 2
) -> tuple[RunMeasurement, RunMeasurement]:
    """(b): the same run on 1 worker and on ``workers`` workers, cache warm for both."""
    one = measure_run(inputs, catalogs, 1, str(folder / "one.zarr"), "run, 1 worker")
    many = measure_run(
        inputs, catalogs, workers, str(folder / "many.zarr"), f"run, {workers} workers"
    )
    return one, many


def rss_growth(
    inputs: RunInputs,
    folder: Path,
    small: Sequence[str],
    large: Sequence[str],
    workers: int = 2,
) -> tuple[RunMeasurement, RunMeasurement]:
    """(c): peak RSS per worker over ``small`` (N combinations) and ``large`` (4N).

    The cache is warmed with ``large`` first, so both measure the same kind of run.
    """
    warm_cache(inputs, large, str(folder / "warm-4n.zarr"), workers)
    n = measure_run(inputs, small, workers, str(folder / "n.zarr"), "N combos")
    n4 = measure_run(inputs, large, workers, str(folder / "4n.zarr"), "4N combos")
    return n, n4


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _json_line(measurement: str, **values: Any) -> str:
    return json.dumps({"benchmark": "run_scaling", "measurement": measurement, **values})


def report(
    scaled: tuple[RunMeasurement, RunMeasurement], rss: tuple[RunMeasurement, RunMeasurement]
) -> None:
    """Print the table and the JSON lines."""
    rows = [*scaled, *rss]
    print(f"{'run':<16}{'workers':>8}{'combos':>8}{'wall s':>9}{'task s':>9}{'max RSS MiB':>13}")
    for m in rows:
        print(
            f"{m.label:<16}{m.workers:>8}{m.done:>8}{m.seconds:>9.1f}{m.task_seconds:>9.1f}"
            f"{m.max_rss / 2**20:>13.0f}"
        )
    one, many = scaled
    ratio = one.seconds / many.seconds
    print(f"(b) speed-up {many.workers} workers vs 1: {ratio:.2f}x (target >= 1.7x)")
    n, n4 = rss
    growth = n4.max_rss / n.max_rss
    print(
        f"(c) peak RSS per worker: {n.max_rss / 2**20:.0f} MiB for {n.done} combos, "
        f"{n4.max_rss / 2**20:.0f} MiB for {n4.done} ({growth:.2f}x; limit 2 GiB)"
    )
    for m in rows:
        print(_json_line("run", **{k: v for k, v in asdict(m).items()}))
    print(_json_line("speedup", workers=many.workers, ratio=ratio))
    print(_json_line("rss_growth", combos=[n.done, n4.done], ratio=growth, max_bytes=n4.max_rss))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, help="a twin world (its catalogs/*.yaml)")
    parser.add_argument("--model", type=Path, help="a model directory (cascadia-ensemble train)")
    parser.add_argument("--cache", help="predictor cache (default: a folder under the work dir)")
    parser.add_argument("--quick", action="store_true", help="build a tiny world + model in /tmp")
    parser.add_argument("--workers", type=int, default=2, help="workers of the parallel run")
    parser.add_argument("--work", type=Path, help="where stores go (default: a temp folder)")
    args = parser.parse_args(argv)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    work = args.work or Path(tempfile.mkdtemp(prefix="cascadia-run-scaling-"))
    if args.quick:
        inputs = build_quick_inputs(work / "inputs")
    elif args.world and args.model:
        cache = args.cache or str(work / "cache")
        inputs = RunInputs(world_catalogs(args.world), args.model, cache)
    else:
        parser.error("give --world DIR --model DIR, or --quick")
    print(f"work folder {work}; {_load()}")
    warm = warm_cache(inputs, inputs.catalogs, str(work / "warm.zarr"), args.workers)
    print(f"cache warm-up run: {warm:.1f} s over {count_combos(inputs.catalogs)} combinations")
    scaled = scaling(inputs, inputs.catalogs, work, args.workers)
    rss = rss_growth(inputs, work, *rss_catalogs(inputs, work), workers=args.workers)
    report(scaled, rss)
    print(_load())


if __name__ == "__main__":
    main()
