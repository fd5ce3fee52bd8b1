"""Inference benchmark core: whole-series output equals the sliding window's, and is faster."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
import torch
from helpers import load_benchmark

#: Small members so that the three architectures run in a few seconds; the TCN keeps
#: its default ≥ 365-day receptive field (509 days), the transformer a 119-day context.
SMALL = {
    "lstm": {"hidden": 16},
    "tcn": {"channels": 8},
    "transformer": {"d_model": 16, "heads": 4, "layers": 2, "window": 60},
}


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("inference")


@pytest.fixture(scope="module")
def series(bench: ModuleType) -> torch.Tensor:
    width = bench.default_input_width()
    return torch.randn(2000, width, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def comparisons(
    bench: ModuleType, series: torch.Tensor, one_torch_thread: None
) -> dict[str, object]:
    out = {}
    for name, hparams in SMALL.items():
        case = bench.Case(name, hparams, sample_days=64, segment=None if name == "lstm" else 700)
        models = bench.build_members(case, series.shape[1], 2, seed=0)
        out[name] = bench.compare(case, series, models, seed=0, repeat=3)
    return out


def test_default_input_width_counts_predictors_regions_physics_and_season(
    bench: ModuleType,
) -> None:
    from cascadia.learning.features import PHYSICS_COLUMNS

    # 9 ERA5 canonical variables (7 read with tos, hurs and sfcWind derived) in 3 regions.
    assert bench.default_input_width() == 9 * 3 + len(PHYSICS_COLUMNS) + 2


@pytest.mark.parametrize("name", list(SMALL))
def test_whole_series_equals_sliding_window_on_sampled_days(
    comparisons: dict[str, object], name: str, bench: ModuleType
) -> None:
    result = comparisons[name]
    # The lookback (365 d), or a stateless model's whole context where longer (TCN: 509 d).
    expected_window = {"lstm": 365, "tcn": 509, "transformer": 365}[name]
    assert result.window == expected_window
    assert result.sample_days == 64
    tolerance = bench.LSTM_TOLERANCE if name == "lstm" else bench.EXACT_TOLERANCE
    assert result.tolerance == tolerance
    assert result.max_abs_diff <= tolerance, (name, result.max_abs_diff)


@pytest.mark.parametrize("name", list(SMALL))
def test_whole_series_costs_far_less_per_day(comparisons: dict[str, object], name: str) -> None:
    result = comparisons[name]
    # Each sliding-window day re-runs 365-509 days; the whole pass runs each day once.
    # CPU time is what other jobs on a shared machine do not inflate; wall time is looser.
    assert result.cpu_speedup > 10, (name, result.whole, result.sliding)
    assert result.speedup > 5, (name, result.whole, result.sliding)


def test_a_window_shorter_than_the_context_is_caught(
    bench: ModuleType, series: torch.Tensor, one_torch_thread: None
) -> None:
    """The agreement check can fail: a transformer cut to 60 of its 119 context days differs."""
    case = bench.Case("transformer", SMALL["transformer"])
    models = bench.build_members(case, series.shape[1], 1, seed=0)
    days = bench.sample_days(series.shape[0], 119, 16, seed=0)
    whole = bench.whole_series(models, series, None)
    short = bench.sliding_window(models, series, days, 60, 16)
    assert np.abs(whole[:, days] - short).max() > 100 * bench.EXACT_TOLERANCE


def test_gate_matmul_has_the_lstm_gate_shape(bench: ModuleType, one_torch_thread: None) -> None:
    rate = bench.lstm_matmul_rate(33, 32, steps=500, repeat=1)
    assert (rate.batch, rate.inner, rate.outer, rate.steps) == (1, 65, 128, 500)
    # One call for all steps beats one call per step (per-call overhead dominates).
    assert rate.batched.cpu < rate.sequential.cpu
    assert rate.batched_gflops_per_cpu_second > 0.5
