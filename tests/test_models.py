"""Architectures: registry, forward contract, causality, exact long-series inference."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from scipy.signal import lfilter

from cascadia.learning.models import (
    ModelOutput,
    SequenceModel,
    available_models,
    build_model,
    exact_warmup,
    predict_series,
    register,
    seasonal_features,
    year_phase,
)
from cascadia.learning.models import base as models_base
from cascadia.learning.models.reservoir import ColdReservoir, DensityGate
from cascadia.learning.training import resolve_gate

SMALL = {
    "lstm": {"hidden": 16},
    "tcn": {"channels": 8},
    "transformer": {"d_model": 16, "heads": 4, "layers": 2, "window": 60},
}


def test_registry_lists_and_builds_the_three_architectures() -> None:
    assert {"lstm", "transformer", "tcn"} <= set(available_models())
    for name, hp in SMALL.items():
        model = build_model(name, n_features=5, **hp)
        assert isinstance(model, SequenceModel)
        assert model.name == name
        assert model.hparams == {"n_features": 5, **hp}


def test_registry_errors_name_the_alternatives() -> None:
    with pytest.raises(KeyError, match="registered"):
        build_model("gru", n_features=3)
    with pytest.raises(TypeError, match="hiden"):
        build_model("lstm", n_features=3, hiden=8)


def test_register_a_new_architecture_and_refuse_a_clash() -> None:
    @register("test-linear")
    class Linear(SequenceModel):
        def __init__(self, n_features: int, n_depths: int = 2) -> None:
            super().__init__(n_features, n_depths)
            self.head = models_base.GaussianEventHead(n_features, n_depths)

        def forward(self, x: torch.Tensor, state: None = None) -> tuple[ModelOutput, None]:
            return self.head(x), None

        @property
        def context_length(self) -> int:
            return 1

    try:
        out, _ = build_model("test-linear", n_features=3)(torch.zeros(1, 4, 3))
        assert out.mean.shape == (1, 4, 2)
        with pytest.raises(ValueError, match="already registered"):
            register("lstm")(Linear)
    finally:
        models_base._REGISTRY.pop("test-linear", None)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_contract_shapes(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, n_features=4, **SMALL[name]).eval()
    out, state = model(torch.randn(3, 100, 4))
    assert isinstance(out, ModelOutput)
    for part in out:
        assert part.shape == (3, 100, 2)
        assert torch.isfinite(part).all()
    assert (state is not None) == model.stateful
    with pytest.raises(ValueError, match="expects input"):
        model(torch.randn(3, 100, 5))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_models_are_causal(name: str) -> None:
    torch.manual_seed(1)
    model = build_model(name, n_features=3, **SMALL[name]).eval()
    x = torch.randn(1, 200, 3)
    y = x.clone()
    y[:, 120:] += 5.0
    a, _ = model(x)
    b, _ = model(y)
    torch.testing.assert_close(a.mean[:, :120], b.mean[:, :120], rtol=0, atol=1e-6)
    assert not torch.allclose(a.mean[:, 120:], b.mean[:, 120:])


def test_receptive_fields_cover_a_year() -> None:
    assert build_model("tcn", n_features=2).context_length >= 365
    assert build_model("transformer", n_features=2).context_length >= 365
    with pytest.raises(ValueError, match="receptive field"):
        build_model("tcn", n_features=2, levels=3)
    assert exact_warmup(build_model("lstm", n_features=2)) == 0


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("segment", [700, 1001])
def test_segmented_inference_equals_one_pass(name: str, segment: int) -> None:
    torch.manual_seed(2)
    model = build_model(name, n_features=4, **SMALL[name])
    x = torch.randn(2, 3000, 4)
    whole = predict_series(model, x)
    parts = predict_series(model, x, segment=segment)
    for a, b in zip(whole, parts, strict=True):
        assert a.shape == b.shape == (2, 3000, 2)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_short_warmup_is_warned_and_inexact() -> None:
    torch.manual_seed(3)
    model = build_model("tcn", n_features=2, channels=8)
    x = np.random.default_rng(0).normal(size=(1500, 2)).astype(np.float32)
    whole = predict_series(model, x)
    assert whole.mean.shape == (1500, 2)  # no batch dimension in, none out
    with pytest.warns(UserWarning, match="warm-up"):
        short = predict_series(model, x, segment=500, warmup=10)
    assert (whole.mean - short.mean).abs().max() > 1e-4


def test_150_years_in_one_pass_or_long_segments() -> None:
    n = 55_000  # ≈ 150 years of days
    x = torch.randn(1, n, 6)
    t0 = time.perf_counter()
    for name, hp, segment in [
        ("lstm", {"hidden": 16}, None),
        ("tcn", {"channels": 8}, None),
        ("transformer", {"d_model": 16, "layers": 1}, 10_000),
    ]:
        out = predict_series(build_model(name, n_features=6, **hp), x, segment=segment)
        assert out.mean.shape == (1, n, 2)
        assert torch.isfinite(out.log_var).all()
    assert time.perf_counter() - t0 < 30


def test_seasonal_features_in_any_calendar() -> None:
    days = pd.date_range("2000-01-01", "2001-12-31", freq="D")
    feats = seasonal_features(days)
    assert feats.shape == (len(days), 2) and feats.dtype == np.float32
    np.testing.assert_allclose((feats**2).sum(axis=1), 1.0, rtol=1e-6)
    # 1 January ≈ phase 0 (sin ≈ 0, cos ≈ 1); 1 July ≈ phase 0.5.
    assert abs(feats[0, 0]) < 0.01 and feats[0, 1] > 0.99
    assert feats[days.get_loc("2001-07-02"), 1] < -0.99
    for calendar in ("noleap", "360_day"):
        other = xr.date_range("2001-01-01", "2001-12-30", freq="D", calendar=calendar)
        phase = year_phase(other)
        assert phase.min() > 0 and phase.max() < 1
        # 1 April sits at the same phase (±1 day) in every calendar.
        april = next(i for i, t in enumerate(other) if (t.month, t.day) == (4, 1))
        assert abs(phase[april] - year_phase(pd.DatetimeIndex(["2001-04-01"]))[0]) < 1.5 / 360


def test_reservoir_head_integrates_cold_inputs_and_segments_exactly() -> None:
    torch.manual_seed(3)
    model = build_model("lstm", n_features=4, hidden=16, reservoir=True).eval()
    x = torch.randn(2, 3000, 4)
    whole = predict_series(model, x)
    parts = predict_series(model, x, segment=700)
    for a, b in zip(whole, parts, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    with torch.no_grad():
        h, _ = model.lstm(x)
        inflow = torch.nn.functional.softplus(model.reservoir.source(h))
        level, _ = model.reservoir(h)
        out, _ = model(x)
    keep = torch.sigmoid(model.reservoir.keep_logit).detach().numpy()
    for d in range(2):
        expected = lfilter([1.0], [1.0, -keep[d]], inflow[0, :, d].double().numpy())
        np.testing.assert_allclose(level[0, :, d].numpy(), expected, rtol=1e-4, atol=1e-6)
    # The reservoir only ever cools: the mean is the plain head's minus a level ≥ 0.
    assert (level >= 0).all()
    torch.testing.assert_close(out.mean, model.head(h).mean - level)
    np.testing.assert_allclose(model.reservoir.timescale_days.detach().numpy(), 12.0, rtol=1e-4)


def test_the_density_gate_only_lowers_cascading_as_the_shelf_gets_lighter() -> None:
    """Whatever the network says, lighter shelf water cannot raise the event probability
    or the cold-water input: far below the learned threshold both vanish."""
    torch.manual_seed(4)
    model = build_model("lstm", n_features=4, hidden=16, reservoir=True, gate_column=2).eval()
    assert model.hparams["gate_column"] == 2
    x = torch.randn(1, 800, 4)
    probabilities, levels = [], []
    for shift in (3.0, 0.0, -3.0, -30.0):
        shifted = x.clone()
        shifted[..., 2] += shift
        with torch.no_grad():
            out, _ = model(shifted)
            h, _ = model.lstm(shifted)
            level, _ = model.reservoir(h, None, model.gate(shifted[..., 2]))
        torch.testing.assert_close(out.mean, model.head(h).mean - level)
        probabilities.append(torch.sigmoid(out.event_logit).mean().item())
        levels.append(level.mean().item())
    # The LSTM sees the shifted column too, so only the far end is a clean comparison:
    # 30 standard deviations lighter than the threshold the gate is ~e^-60.
    assert probabilities[-1] < 1e-12 and levels[-1] < 1e-12
    assert probabilities[0] > 0.1 and levels[0] > 1e-3
    gate = DensityGate(2)
    density = torch.linspace(-5, 5, 101)[None]
    log_gate = gate(density)
    assert log_gate.shape == (1, 101, 2) and (log_gate <= 0).all()
    assert (torch.diff(log_gate, dim=1) > 0).all()
    parts = predict_series(model, x, segment=300)
    for a, b in zip(predict_series(model, x), parts, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_the_job_names_the_gate_and_the_inputs_resolve_its_column() -> None:
    names = ("tas@shelf", "tos@shelf", "shelf_temperature@shelf", "shelf_sigma0@shelf")
    assert resolve_gate({"hidden": 8, "density_gate": True}, names) == {
        "hidden": 8,
        "gate_column": 3,
    }
    assert resolve_gate({"hidden": 8, "density_gate": False}, names) == {"hidden": 8}
    with pytest.raises(ValueError, match=r"shelf_sigma0 input column.*'tas@shelf'"):
        resolve_gate({"density_gate": True}, names[:2])
    with pytest.raises(ValueError, match="gate_column 7 is not one of 4 inputs"):
        build_model("lstm", n_features=4, gate_column=7)


@pytest.mark.parametrize("timescale", [0.5, 12.0, 200.0])
def test_chunked_reservoir_equals_the_dense_kernel_and_the_recursion(timescale: float) -> None:
    """The chunked form (issue 16: O(n L + (n/L)^2) instead of a dense kernel per block)
    gives the levels and gradients of one dense ``λ^(t-s)`` kernel over the whole series
    within 1e-6, from a non-empty start level, for fast and slow recoveries."""
    torch.manual_seed(5)
    chunked = ColdReservoir(hidden=8, n_depths=2, timescale_days=timescale, chunk=64)
    dense = ColdReservoir(hidden=8, n_depths=2, timescale_days=timescale, chunk=4096)
    dense.load_state_dict(chunked.state_dict())
    h = torch.randn(3, 3000, 8)
    start = torch.rand(3, 2)
    a, last_a = chunked(h, start)
    b, _ = dense(h, start)
    scale = b.detach().abs().clamp_min(1.0)
    assert float(((a - b).detach().abs() / scale).max()) < 1e-6
    torch.testing.assert_close(last_a, a[:, -1])
    grads = [torch.autograd.grad(x.sum(), m.keep_logit)[0] for x, m in ((a, chunked), (b, dense))]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=0)
    # and both are the recursion r_t = λ r_(t-1) + s_t, started from the given level
    inflow = torch.nn.functional.softplus(chunked.source(h)).detach().double().numpy()
    keep = torch.sigmoid(chunked.keep_logit).detach().double().numpy()
    for d in range(2):
        expected, _ = lfilter([1.0], [1.0, -keep[d]], inflow[1, :, d], zi=[keep[d] * start[1, d]])
        got = a[1, :, d].detach().numpy()
        assert np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected))) < 1e-5


def test_reservoir_learns_the_recovery_time() -> None:
    torch.manual_seed(4)
    pulses = (torch.rand(1, 600, 1) < 0.03).float()
    keep_true = float(np.exp(-1.0 / 30.0))
    inflow_true = torch.nn.functional.softplus(3.0 * pulses - 4.0)[0, :, 0].numpy()
    target = torch.from_numpy(lfilter([1.0], [1.0, -keep_true], inflow_true)).float()
    head = ColdReservoir(hidden=1, n_depths=1)
    optimiser = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(400):
        level, _ = head(pulses)
        loss = ((level[0, :, 0] - target) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float(head.timescale_days.detach()) == pytest.approx(30.0, rel=0.1)
