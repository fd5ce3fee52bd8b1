"""Time whole-series deep-ensemble inference against a per-day sliding window, and per core.

Why: a 150-year hindcast or projection has ~55,000 days per combination; the
design runs each sequence model once over the whole series (stateful LSTM, or
long segments with an exact warm-up for the stateless TCN and transformer)
instead of re-running a year of context for every day. This measures, in one
run, on one random series of the default model-input width and on the same
members (built from the registry with fixed seeds: weights do not change the
cost, so nothing is trained):

(a) whole-series inference (``predict_series``, what ``DeepEnsemble.predict``
    runs per member) against a batched per-day sliding window over the days
    each output depends on, timed on a random sample of days and extrapolated
    per day; the two outputs are compared on the sampled days;
(d) member-timesteps per second per core of ensemble inference, next to the
    rate of the LSTM's gate matmul ``(batch, input+hidden) x (input+hidden,
    4 hidden)`` on this machine, timed the same way.

    python benchmarks/inference.py [--quick] [--days N] [--members M] [--repeat R]

torch runs with one thread (``torch.set_num_threads(1)``). Prints measured
numbers only: two tables and one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from cascadia.learning.ensemble import DeepEnsemble, Normalisation
from cascadia.learning.features import PHYSICS_COLUMNS
from cascadia.learning.models import SequenceModel, build_model, exact_warmup, predict_series
from cascadia.learning.models.seasonal import N_SEASONAL_FEATURES
from cascadia.twin.catalogs import DERIVED_FROM_DEWPOINT, ERA5_VARIABLES, REGIONS

#: Days of a 150-year daily series (1951-2100, standard calendar).
SERIES_DAYS = 54_787
#: Context of a training window (jobs/train.yaml ``lookback_days``).
LOOKBACK_DAYS = 365
#: Largest |whole-series − sliding-window| (standardised model units) accepted for a
#: stateless model, whose sliding window spans its whole context: float32 rounding only.
EXACT_TOLERANCE = 1e-4
#: Same, for the LSTM, whose window starts from a zero state 365 days back while
#: the whole series carries the state from day 0: close, not identical.
LSTM_TOLERANCE = 1e-3
#: Windows per batch tried for the baseline; the faster is reported (a fair baseline).
BASELINE_BATCHES: tuple[int, ...] = (64, 256)


@dataclass(frozen=True)
class Case:
    """One architecture as benchmarked: registry name, hyperparameters, sample size.

    ``segment`` is the whole-series segment of a stateless model (days, exact
    warm-up; None: one pass). ``sample_days`` is how many days the sliding
    window is timed on (the transformer's windows are costly, hence fewer).
    """

    name: str
    hparams: dict[str, Any] = field(default_factory=dict)
    sample_days: int = 512
    segment: int | None = None


#: The default job (jobs/train.yaml: LSTM hidden 32) and the registry defaults of the others.
DEFAULT_CASES: tuple[Case, ...] = (
    Case("lstm", {"hidden": 32, "layers": 1, "dropout": 0.3}, sample_days=512),
    Case("transformer", {}, sample_days=64, segment=1826),
    Case("tcn", {}, sample_days=512, segment=1826),
)


def default_input_width() -> int:
    """Model input columns of the default job: ERA5 predictors x regions + physics + season.

    ERA5 gives its six variables, ``hurs`` from the dewpoint and ``sfcWind``
    derived from the components (8), in each of the 3 regions; ``features``
    adds the 4 buoyancy-loss columns, the model 2 seasonal encodings: 30.
    """
    variables = set(ERA5_VARIABLES) | set(DERIVED_FROM_DEWPOINT) | {"sfcWind"}
    return len(variables) * len(REGIONS) + len(PHYSICS_COLUMNS) + N_SEASONAL_FEATURES


def build_members(case: Case, n_features: int, members: int, seed: int) -> list[SequenceModel]:
    """``members`` models of ``case``, member i seeded with ``seed + i`` (as training does)."""
    built = []
    for i in range(members):
        torch.manual_seed(seed + i)
        model = build_model(case.name, n_features=n_features, n_depths=2, **case.hparams)
        built.append(model.eval())
    return built


def baseline_window(model: SequenceModel, lookback: int) -> int:
    """Days the sliding window runs over for each day.

    ``lookback`` for the LSTM (its memory is unbounded; training uses this
    context); the full context of a stateless model if longer, so the baseline
    computes exactly what the whole-series pass computes.
    """
    return lookback if model.stateful else max(lookback, exact_warmup(model) + 1)


def _stack_heads(out: Any) -> np.ndarray:
    """(…, time, 3·depths): mean, log-variance and event logit side by side."""
    return torch.cat([out.mean, out.log_var, out.event_logit], dim=-1).numpy()


@dataclass(frozen=True)
class Timing:
    """Best wall and process-CPU seconds of repeated runs.

    Why both: on a shared machine the wall time also counts the time other jobs
    held the core, the process's CPU time does not; with one torch thread the
    two are equal on an idle machine.
    """

    wall: float
    cpu: float

    def per(self, count: float) -> Timing:
        """Seconds per unit of ``count`` units."""
        return Timing(self.wall / count, self.cpu / count)


def best_time(repeat: int, run: Callable[[], Any]) -> tuple[Timing, Any]:
    """Smallest wall and CPU times of ``repeat`` runs (the least disturbed) and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(min(walls), min(cpus)), result


def whole_series(members: Sequence[SequenceModel], x: torch.Tensor, segment: int | None) -> Any:
    """Every member over the whole series ``x`` (time, features): (member, time, 3·depths)."""
    return np.stack([_stack_heads(predict_series(m, x, segment=segment)) for m in members])


@torch.no_grad()
def sliding_window(
    members: Sequence[SequenceModel], x: torch.Tensor, days: np.ndarray, window: int, batch: int
) -> np.ndarray:
    """Per-day baseline: for each day, run the model over its ``window`` preceding days.

    Windows are gathered ``batch`` at a time (one tensor per batch) and only
    the last output of each is kept. Returns (member, day, 3·depths).
    """
    offsets = torch.arange(-window + 1, 1)
    parts: list[list[np.ndarray]] = [[] for _ in members]
    for start in range(0, len(days), batch):
        index = torch.as_tensor(days[start : start + batch])[:, None] + offsets
        windows = x[index]
        for i, model in enumerate(members):
            head, _ = model(windows)
            parts[i].append(_stack_heads(type(head)(*(h[:, -1] for h in head))))
    return np.stack([np.concatenate(p) for p in parts])


def sample_days(n_days: int, window: int, size: int, seed: int) -> np.ndarray:
    """``size`` distinct sorted days, each with a full window before it."""
    rng = np.random.default_rng(seed)
    candidates = np.arange(window - 1, n_days)
    return np.sort(rng.choice(candidates, size=min(size, candidates.size), replace=False))


@dataclass(frozen=True)
class Comparison:
    """Measurement (a) for one architecture (times cover all members)."""

    architecture: str
    members: int
    days: int
    window: int
    segment: int | None
    whole: Timing
    sample_days: int
    batch: int
    sliding: Timing
    max_abs_diff: float
    tolerance: float

    @property
    def speedup(self) -> float:
        """Per-day wall time of the sliding window over that of the whole-series pass."""
        return self.sliding.per(self.sample_days).wall / self.whole.per(self.days).wall

    @property
    def cpu_speedup(self) -> float:
        """The same ratio of CPU times (robust to other jobs on the machine)."""
        return self.sliding.per(self.sample_days).cpu / self.whole.per(self.days).cpu

    @property
    def agrees(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def compare(
    case: Case,
    x: torch.Tensor,
    models: Sequence[SequenceModel],
    *,
    seed: int = 0,
    repeat: int = 3,
    lookback: int = LOOKBACK_DAYS,
    batches: Sequence[int] = BASELINE_BATCHES,
) -> Comparison:
    """Measurement (a): whole series vs sliding window on the same members and series."""
    window = baseline_window(models[0], lookback)
    whole_time, whole = best_time(repeat, lambda: whole_series(models, x, case.segment))
    days = sample_days(x.shape[0], window, case.sample_days, seed)
    best: tuple[Timing, int] | None = None
    diff = 0.0
    for batch in sorted({min(b, len(days)) for b in batches}):
        timing, slid = best_time(1, lambda b=batch: sliding_window(models, x, days, window, b))
        diff = max(diff, float(np.abs(whole[:, days] - slid).max()))
        if best is None or timing.cpu < best[0].cpu:
            best = (timing, batch)
    assert best is not None
    return Comparison(
        architecture=case.name,
        members=len(models),
        days=x.shape[0],
        window=window,
        segment=case.segment,
        whole=whole_time,
        sample_days=len(days),
        batch=best[1],
        sliding=best[0],
        max_abs_diff=diff,
        tolerance=LSTM_TOLERANCE if models[0].stateful else EXACT_TOLERANCE,
    )


@dataclass(frozen=True)
class MatmulRate:
    """The LSTM gate matmul (batch, input+hidden) x (input+hidden, 4 hidden), timed."""

    batch: int
    inner: int
    outer: int
    steps: int
    sequential: Timing
    batched: Timing

    @property
    def batched_gflops_per_cpu_second(self) -> float:
        """Arithmetic rate of the one-call matmul."""
        return 2.0 * self.steps * self.batch * self.inner * self.outer / self.batched.cpu / 1e9


def lstm_matmul_rate(
    n_features: int, hidden: int, steps: int, batch: int = 1, repeat: int = 3
) -> MatmulRate:
    """Time ``steps`` gate matmuls (with bias, as ``addmm``) looped, and as one matmul."""
    generator = torch.Generator().manual_seed(0)
    inner, outer = n_features + hidden, 4 * hidden
    weight = torch.randn(inner, outer, generator=generator)
    bias = torch.randn(outer, generator=generator)
    row = torch.randn(batch, inner, generator=generator)
    rows = torch.randn(steps * batch, inner, generator=generator)

    def looped() -> None:
        for _ in range(steps):
            torch.addmm(bias, row, weight)

    with torch.no_grad():
        sequential, _ = best_time(repeat, looped)
        batched, _ = best_time(repeat, lambda: torch.addmm(bias, rows, weight))
    return MatmulRate(batch, inner, outer, steps, sequential, batched)


def ensemble_predict_time(case: Case, x: np.ndarray, members: int, repeat: int) -> Timing:
    """Time of ``DeepEnsemble.predict`` (inputs, members, mixture statistics)."""
    n_inputs = x.shape[1]
    n_predictors = n_inputs - N_SEASONAL_FEATURES
    norm = Normalisation(
        feature_names=tuple(f"f{i}" for i in range(n_predictors)),
        feature_mean=(0.0,) * n_predictors,
        feature_std=(1.0,) * n_predictors,
        target_mean=(0.0, 0.0),
        target_std=(1.0, 1.0),
    )
    models = build_members(case, n_inputs, members, seed=0)
    ensemble = DeepEnsemble(models, norm, {}, list(range(members)))
    time_axis = np.datetime64("1951-01-01") + np.arange(x.shape[0]).astype("timedelta64[D]")
    predictors = x[:, :n_predictors]
    timing, _ = best_time(
        repeat, lambda: ensemble.predict(predictors, time_axis, segment=case.segment)
    )
    return timing


def quick_cases() -> tuple[Case, ...]:
    """The default cases with small samples (a smoke run of the whole script)."""
    return tuple(replace(c, sample_days=max(8, c.sample_days // 16)) for c in DEFAULT_CASES)


def _json_line(measurement: str, **values: Any) -> str:
    return json.dumps({"benchmark": "inference", "measurement": measurement, **values})


def report_comparisons(results: Sequence[Comparison]) -> None:
    """Table and JSON lines of measurement (a)."""
    print(
        "\n(a) whole series vs per-day sliding window; the sliding window is timed on a "
        "random sample of days and extrapolated per day to the whole series"
    )
    print(
        f"{'arch':12} {'window d':>8} {'whole s':>8} {'ms/day':>7} {'sample d':>8} "
        f"{'batch':>5} {'slide ms/d':>10} {'slide s extrap.':>15} {'speed-up':>8} "
        f"{'cpu':>7} {'max|diff|':>9} {'tol':>6}"
    )
    for r in results:
        slide = r.sliding.per(r.sample_days)
        print(
            f"{r.architecture:12} {r.window:8d} {r.whole.wall:8.3f} "
            f"{1e3 * r.whole.per(r.days).wall:7.4f} {r.sample_days:8d} {r.batch:5d} "
            f"{1e3 * slide.wall:10.3f} {slide.wall * r.days:15.1f} {r.speedup:7.0f}x "
            f"{r.cpu_speedup:6.0f}x {r.max_abs_diff:9.1e} {r.tolerance:6.0e}"
            + ("" if r.agrees else "  DISAGREE")
        )
    print(
        "wall times over all members; speed-up: sliding-window wall time per day over the "
        "whole-series one, cpu: the same with process CPU time (what other jobs on the machine "
        "do not inflate). Whole series: one pass (LSTM, state carried) or segments of "
        f"{', '.join(sorted({str(r.segment) for r in results if r.segment}))} days with an "
        "exact warm-up (stateless). Window: the LSTM's lookback, the full context of a "
        "stateless model. Diff: max over mean, log-variance and event logit (standardised "
        "units) on the sampled days; the LSTM's window starts from a zero state, so it agrees "
        f"once that start is forgotten (tolerance {LSTM_TOLERANCE:g})."
    )
    for r in results:
        print(
            _json_line(
                "whole_vs_sliding",
                architecture=r.architecture,
                members=r.members,
                days=r.days,
                window_days=r.window,
                segment_days=r.segment,
                whole_seconds=round(r.whole.wall, 4),
                whole_cpu_seconds=round(r.whole.cpu, 4),
                sliding_sample_days=r.sample_days,
                sliding_batch=r.batch,
                sliding_seconds=round(r.sliding.wall, 4),
                sliding_cpu_seconds=round(r.sliding.cpu, 4),
                sliding_seconds_extrapolated=round(r.sliding.per(r.sample_days).wall * r.days, 1),
                speedup=round(r.speedup, 1),
                cpu_speedup=round(r.cpu_speedup, 1),
                max_abs_diff=r.max_abs_diff,
                tolerance=r.tolerance,
                agrees=r.agrees,
            )
        )


def report_rates(
    results: Sequence[Comparison], predict: Timing, matmul: MatmulRate, threads: int
) -> None:
    """Table and JSON lines of measurement (d): timesteps per wall second per thread, per CPU s."""
    print(f"\n(d) member-timesteps per second per core ({threads} torch thread)")
    lstm = next(r for r in results if r.architecture == "lstm")
    shape = f"({matmul.batch},{matmul.inner})x({matmul.inner},{matmul.outer})"
    rows: list[tuple[str, str, float, Timing, dict[str, Any]]] = [
        (
            f"ensemble_{r.architecture}",
            f"{r.members} x {r.architecture} members, predict_series",
            r.members * r.days,
            r.whole,
            {"members": r.members, "days": r.days},
        )
        for r in results
    ]
    rows.append(
        (
            "ensemble_lstm_deepensemble_predict",
            f"{lstm.members} x lstm, DeepEnsemble.predict (+ mixture statistics)",
            lstm.members * lstm.days,
            predict,
            {"members": lstm.members, "days": lstm.days},
        )
    )
    facts = {"shape": shape, "steps": matmul.steps}
    rows.append(
        (
            "lstm_gate_matmul_looped",
            f"gate matmul {shape}, one call per step",
            matmul.steps,
            matmul.sequential,
            facts,
        )
    )
    rows.append(
        (
            "lstm_gate_matmul_batched",
            f"gate matmul, all {matmul.steps} steps in one call",
            matmul.steps,
            matmul.batched,
            {**facts, "gflops_per_cpu_second": round(matmul.batched_gflops_per_cpu_second, 2)},
        )
    )
    lstm_cpu_rate = rows[0][2] / rows[0][3].cpu
    print(f"{'':62} {'steps/s/core':>12} {'steps/cpu-s':>11} {'lstm/this':>9}")
    for _, label, steps, timing, _ in rows:
        cpu_rate = steps / timing.cpu
        print(
            f"{label:62} {steps / timing.wall / threads:12.3g} {cpu_rate:11.3g} "
            f"{lstm_cpu_rate / cpu_rate:9.3f}"
        )
    print(
        "steps/s/core: member-timesteps per wall second per torch thread; steps/cpu-s: per "
        "second of process CPU time; lstm/this: the LSTM ensemble's CPU rate over the row's "
        "(0.2 = at 20 % of it). One matmul call per step is what a recurrence must do, call "
        "overhead included; one call for all steps is the arithmetic rate of these shapes "
        f"({matmul.batched_gflops_per_cpu_second:.1f} GFLOP per CPU second)."
    )
    for key, label, steps, timing, extra in rows:
        print(
            _json_line(
                key,
                description=label,
                timesteps_per_second_per_core=round(steps / timing.wall / threads, 1),
                timesteps_per_cpu_second=round(steps / timing.cpu, 1),
                seconds=round(timing.wall, 5),
                cpu_seconds=round(timing.cpu, 5),
                **extra,
            )
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10-year series, 2 members, 1 try")
    parser.add_argument("--days", type=int, help=f"series length (default {SERIES_DAYS})")
    parser.add_argument("--members", type=int, help="members per ensemble (default 5)")
    parser.add_argument("--repeat", type=int, help="whole-series tries, best kept (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    days = args.days or (3650 if args.quick else SERIES_DAYS)
    members = args.members or (2 if args.quick else 5)
    repeat = args.repeat or (1 if args.quick else 3)
    cases = quick_cases() if args.quick else DEFAULT_CASES
    torch.set_num_threads(1)
    width = default_input_width()
    x = torch.randn(days, width, generator=torch.Generator().manual_seed(args.seed))
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"torch {torch.__version__}, torch.set_num_threads(1); load average before: {load}\n"
        f"series: {days} days x {width} model inputs (random standard normal); "
        f"{members} members per architecture, seeds {args.seed}..{args.seed + members - 1}; "
        f"whole series best of {repeat}"
    )
    results = [
        compare(c, x, build_members(c, width, members, args.seed), seed=args.seed, repeat=repeat)
        for c in cases
    ]
    report_comparisons(results)
    lstm_case = next(c for c in cases if c.name == "lstm")
    predict = ensemble_predict_time(lstm_case, x.numpy(), members, repeat)
    hidden = int(lstm_case.hparams.get("hidden", 64))
    matmul = lstm_matmul_rate(width, hidden, days, repeat=repeat)
    report_rates(results, predict, matmul, torch.get_num_threads())
    print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
