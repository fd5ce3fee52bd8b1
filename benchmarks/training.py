"""Time the default deep ensemble's training on the demo world, against the 10-minute budget.

What it measures, in one run on the same data: the default job's ensemble
(``jobs/train.yaml``: 20 candidates in 5 cross-fitting folds, the best of each fold kept)
trained with
the machine's cores as parallel processes, and the same ensemble trained in one
process (``workers=1``) as the baseline — the ratio is the speed-up the parallel
candidates give. Data
preparation (observations, cached predictors, features, targets) is timed
apart and excluded from both; fill the cache once with the train job first.

    python benchmarks/training.py [--job jobs/train.yaml] [--skip-serial]

Prints measured numbers only (and one JSON line).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from cascadia.learning.jobs import load_train_job
from cascadia.learning.train_job import prepare_job_series, training_data
from cascadia.learning.training import train_ensemble

BUDGET_SECONDS = 600.0  # issue 4: < 10 min on the 2-core machine


def _train(job, prepared, workers: int, out: Path) -> float:
    started = time.perf_counter()
    train_ensemble(
        job.training, training_data(prepared.series), out, workers=workers, overwrite=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", default="jobs/train.yaml")
    parser.add_argument("--skip-serial", action="store_true", help="no one-process baseline")
    args = parser.parse_args()

    job = load_train_job(args.job)
    started = time.perf_counter()
    prepared = prepare_job_series(job, log=lambda line: None)
    prepare = time.perf_counter() - started
    cores = os.cpu_count() or 1
    members = job.training.members
    trained = job.training.n_candidates
    processes = min(trained, cores)
    print(f"data: {prepared.series.predictors.shape} predictors, prepared in {prepare:.1f} s")
    with tempfile.TemporaryDirectory(prefix="cascadia-bench-train-") as tmp:
        parallel = _train(job, prepared, processes, Path(tmp) / "parallel")
        serial = None if args.skip_serial else _train(job, prepared, 1, Path(tmp) / "serial")
    load = os.getloadavg()[0]
    print(f"{trained} candidates → {members} members, {processes} processes: {parallel:.1f} s")
    left = BUDGET_SECONDS - parallel
    print(f"budget: {parallel / BUDGET_SECONDS:.2f} of the 10 min limit ({left:.0f} s left)")
    if serial is not None:
        print(f"1 process: {serial:.1f} s; parallel speed-up {serial / parallel:.2f}x")
    print(f"load average after the run: {load:.1f} on {cores} cores")
    print(
        json.dumps(
            {
                "benchmark": "training",
                "members": members,
                "candidates": trained,
                "cores": cores,
                "parallel_seconds": round(parallel, 2),
                "serial_seconds": None if serial is None else round(serial, 2),
                "speedup": None if serial is None else round(serial / parallel, 3),
                "budget_fraction": round(parallel / BUDGET_SECONDS, 3),
                "load_average": round(load, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
