"""Whole-series inference of the default job's reservoir LSTM against the plain LSTM.

Why: the default model (jobs/train.yaml) adds a cold-water reservoir to the LSTM's mean
(cascadia/learning/models/reservoir.py). Its leaky integral used to be a dense
``λ^(t-s)`` kernel rebuilt for every 512-day block, 3.5x the cost of the LSTM itself over a
150-year series (issue 16); the chunked form must keep the reservoir model within 1.5x of
the plain LSTM's rate. Measured in one run, on one random series of the default input
width, the same members (fixed seeds; weights do not change the cost), one torch thread:

    python benchmarks/reservoir.py [--days N] [--members M] [--repeat R]

Prints one table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from inference import SERIES_DAYS, Case, best_time, build_members, default_input_width

from cascadia.learning.models import predict_series

HPARAMS = {"hidden": 32, "layers": 1, "dropout": 0.2}  # jobs/train.yaml


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=SERIES_DAYS)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    width = default_input_width()
    x = torch.randn(args.days, width, generator=torch.Generator().manual_seed(args.seed))
    timings = {}
    for label, reservoir in (("lstm", False), ("lstm+reservoir", True)):
        case = Case("lstm", {**HPARAMS, "reservoir": reservoir})
        members = build_members(case, width, args.members, args.seed)

        def run(members=members) -> None:
            with torch.no_grad():
                for m in members:
                    predict_series(m, x)

        timings[label], _ = best_time(args.repeat, run)
    days = args.days * args.members
    print(f"{'model':<16}{'wall s':>9}{'cpu s':>9}{'member-days/s':>16}")
    for label, t in timings.items():
        print(f"{label:<16}{t.wall:>9.3f}{t.cpu:>9.3f}{days / t.wall:>16,.0f}")
    ratio = timings["lstm+reservoir"].wall / timings["lstm"].wall
    print(f"reservoir / plain wall-time ratio: {ratio:.2f} (target <= 1.5)")
    print(
        json.dumps(
            {
                "days": args.days,
                "members": args.members,
                "width": width,
                **{f"{k}_wall_s": round(v.wall, 4) for k, v in timings.items()},
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
