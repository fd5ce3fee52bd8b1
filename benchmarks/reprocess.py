"""A scheduled pass after one input changed, against the full run, on a world's copy.

Why: issue 15 asks a reprocess pass that recomputes 1 of >= 10 combinations to take at
most 10 % of the full run. Measured in one run, both through the command line a user
types (imports and cluster start-up included), on a copy of the world so the original is
never touched:

1. the full run: ``cascadia-ensemble run`` of every run catalog of the world into a new
   store with an empty predictor cache (every combination extracted, adjusted, predicted);
2. one chunk of one CMIP6 input store rewritten (+0.05 K on its first 100 days of
   ``tas``), then ``cascadia-ensemble reprocess`` of the same catalogs and store.

    python benchmarks/reprocess.py --world demo/world --model demo/model [--scratch DIR]

Prints both wall times, the ratio and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from cascadia.demo import run_catalogs


def _timed(args: list[str]) -> tuple[float, str]:
    """Wall seconds of a command and its summary line."""
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:2])} exited {done.returncode}:\n{done.stderr[-2000:]}")
    summary = [
        line for line in done.stdout.splitlines() if re.match(r"\d+ (done|recomputed),", line)
    ]
    return seconds, summary[-1] if summary else ""


def _one_combination_tas(world: Path) -> list[str]:
    """The ``tas`` stores (every grid) of the first ScenarioMIP combination the world's
    CMIP6 collection lists."""
    rows = pd.read_csv(world / "collections" / "cmip6.csv")
    tas = rows[(rows["variable_id"] == "tas") & (rows["activity_id"] == "ScenarioMIP")]
    if tas.empty:
        sys.exit(f"{world}: its CMIP6 collection lists no ScenarioMIP tas store")
    combo = ["source_id", "experiment_id", "member_id"]
    first = tas[(tas[combo] == tas[combo].iloc[0]).all(axis=1)]
    return [str(url).removeprefix("file://") for url in first["zstore"]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--scratch", type=Path, default=None, help="where the copy goes")
    args = parser.parse_args(argv)
    beside = shutil.which("cascadia-ensemble", path=str(Path(sys.executable).parent))
    exe = beside or shutil.which("cascadia-ensemble") or sys.exit("no cascadia-ensemble")
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        root = Path(scratch)
        world = root / "world"
        shutil.copytree(args.world, world)
        # the collections name the original's absolute paths: point them at the copy
        for table in [
            *(world / "collections").glob("*.csv"),
            *(world / "collections").glob("*.json"),
        ]:
            text = table.read_text().replace(str(args.world.resolve()), str(world))
            table.write_text(text)
        catalogs = [f"--catalog={world / c}" for c in run_catalogs(world)]
        common = [*catalogs, f"--model={args.model}", f"--cache={root / 'cache'}"]
        store = root / "results.zarr"
        full, full_summary = _timed([exe, "run", *common, f"--out={store}"])
        for path in _one_combination_tas(world):
            tas = zarr.open_group(path, mode="r+")["tas"]
            tas[:100] = tas[:100] + np.float32(0.05)
        one, one_summary = _timed([exe, "reprocess", *common, f"--results={store}"])
    print(f"full run (empty predictor cache): {full:.1f} s  [{full_summary}]")
    print(f"reprocess, one input chunk changed: {one:.1f} s  [{one_summary}]")
    print(f"ratio: {100 * one / full:.1f} % of the full run")
    print(json.dumps({"full_s": round(full, 1), "one_change_s": round(one, 1)}))


if __name__ == "__main__":
    main()
