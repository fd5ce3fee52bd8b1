"""Where a run's time goes on a cold predictor cache: task time per step.

Why: issue 16 asks ``make demo`` to run in minutes, and on a cold cache the run stage is
mostly extraction and bias adjustment, not prediction. This runs every run catalog of a
world into a new store with an empty predictor cache on a LocalCluster of two worker
processes (one thread each, as ``run`` starts it), records dask's task stream and prints,
per step (``extract``, ``fit``, ``adjust``, ``predict``, and the block reads extractions
submit), the number of tasks and the sum of their compute time, with the run's wall time
and one JSON line. Compare two trees on the same machine in one sitting, e.g.

    python benchmarks/run_stage.py --world demo/world --model demo/model --scratch /tmp/rs
    PYTHONPATH=/path/to/other/tree python benchmarks/run_stage.py ...   # the same, before

Worker start-up is not counted (the cluster starts before the clock).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

from dask.distributed import Client, LocalCluster, get_task_stream

from cascadia.demo import run_catalogs
from cascadia.run.pipeline import run_pipeline

STEPS = ("extract", "fit", "adjust", "predict")


def _step(key: object) -> str:
    """The step a task belongs to: the prefix of its key (``adjust-<combo>-…``)."""
    name = key if isinstance(key, str) else str(key[0])  # type: ignore[index]
    return name.strip("('").split("-")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", required=True, type=Path)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--scratch", required=True, type=Path, help="emptied, then written")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    shutil.rmtree(args.scratch, ignore_errors=True)
    args.scratch.mkdir(parents=True)
    catalogs = [str(args.world / c) for c in run_catalogs(args.world)]
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        started = time.perf_counter()
        with get_task_stream(client) as stream:
            summary = run_pipeline(
                catalogs,
                args.model,
                str(args.scratch / "results.zarr"),
                cache=str(args.scratch / "cache"),
                client=client,
            )
        wall = time.perf_counter() - started
    longest: list[tuple[float, str]] = []
    for task in stream.data:
        for span in task["startstops"]:
            if span["action"] == "compute":
                row = totals[_step(task["key"])]
                row[0] += 1
                row[1] += span["stop"] - span["start"]
                if _step(task["key"]) in STEPS:
                    longest.append((span["stop"] - span["start"], str(task["key"])[:90]))
    steps = {k: {"tasks": int(n), "seconds": round(s, 1)} for k, (n, s) in totals.items()}
    print(
        f"run of {len(summary.results)} combinations on a cold cache, {args.workers} workers: "
        f"{wall:.1f} s wall ({summary.count('done')} done, {summary.count('failed')} failed)"
    )
    print(f"{'step':<12} {'tasks':>6} {'task seconds':>13}")
    for name in sorted(steps, key=lambda k: (k not in STEPS, -steps[k]["seconds"])):
        row = steps[name]
        print(f"{name:<12} {row['tasks']:>6} {row['seconds']:>13.1f}")
    print("longest tasks (an extraction that reads in blocks waits for them, seceded):")
    for seconds, key in sorted(longest, reverse=True)[:8]:
        print(f"  {seconds:7.1f} s  {key}")
    print(json.dumps({"wall_seconds": round(wall, 1), "steps": steps}))


if __name__ == "__main__":
    main()
