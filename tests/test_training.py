"""Training and the deep ensemble end to end on a synthetic lagged, thresholded target."""

from __future__ import annotations

import dataclasses
import functools
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest
import torch
import yaml

from cascadia.learning.baselines import ClimatologyBaseline
from cascadia.learning.ensemble import (
    CheckpointError,
    DeepEnsemble,
    Normalisation,
    load_checkpoint,
    mixture_moments,
    mixture_quantiles,
)
from cascadia.learning.metrics import crps_gaussian, crps_mixture, interval_coverage
from cascadia.learning.training import (
    MemberResult,
    SeriesData,
    TrainingConfig,
    gate_features,
    prepare_series,
    resolve_gate,
    select_candidates,
    train_ensemble,
    train_member,
)

TRAIN = [*range(1992, 2002), 2003, 2004]
VALIDATION = [2002, 2005]
TEST = [2006, 2007, 2008]
THRESHOLDS = np.array([0.15, 0.10])  # °C, as cascadia.mooring.events defaults


def synthetic_series(n_winters: int = 18, seed: int = 0) -> SeriesData:
    """Deep anomalies as a known lagged nonlinear function of a 'cooling' input.

    The shelf 'densifies' with a 60-day leaky integral of winter cooling (a
    severity that varies from winter to winter plus red noise); the deep
    canyon cools only when the integral exceeds a threshold (deeper: a higher
    one, a weaker response), plus 0.03 °C noise. A second input is irrelevant.
    """
    rng = np.random.default_rng(seed)
    time = pd.date_range("1990-11-01", f"{1990 + n_winters}-10-31", freq="D")
    n = len(time)
    phase = (time.day_of_year.values - 0.5) / np.where(time.is_leap_year, 366, 365)
    weight = np.clip(np.cos(2 * np.pi * (phase - 0.08)), 0, None) ** 2
    winter = time.year.values + (time.month.values >= 11)
    severity = rng.normal(0, 1, n_winters + 1)[winter - winter.min()]
    noise = np.zeros(n)
    integral = np.zeros(n)
    for t in range(1, n):
        noise[t] = 0.7 * noise[t - 1] + rng.normal(0, 0.5)
    cooling = weight * np.maximum(0.0, 1.0 + 0.7 * severity + noise)
    for t in range(1, n):
        integral[t] = np.exp(-1 / 60) * integral[t - 1] + cooling[t]
    target = np.stack(
        [-0.04 * np.maximum(integral - 35, 0), -0.03 * np.maximum(integral - 42, 0)], axis=1
    )
    target += rng.normal(0, 0.03, target.shape)
    target[100:130, 0] = np.nan  # a mooring gap
    events = np.where(np.isnan(target), np.nan, (target < -THRESHOLDS).astype(float))
    return SeriesData(
        time=time.values,
        predictors=np.stack([cooling, rng.normal(0, 1, n)], axis=1),
        targets=target,
        feature_names=("cooling", "humidity"),
        events=events,
    )


def _config(**overrides: object) -> TrainingConfig:
    base: dict[str, object] = {
        "architectures": [
            {"name": "lstm", "hparams": {"hidden": 24}},
            {"name": "tcn", "hparams": {"channels": 16, "dropout": 0.0}},
        ],
        "members": 2,
        "seed": 11,
        "lookback_days": 365,
        "window_days": 180,
        "batch_size": 8,
        "batches_per_epoch": 10,
        "epochs": 30,
        "patience": 6,
        "learning_rate": 3e-3,
        "train_winters": TRAIN,
        "validation_winters": VALIDATION,
        "test_winters": TEST,
    }
    base.update(overrides)
    return TrainingConfig.model_validate(base)


# ------------------------------------------------------------------- config


def test_config_is_strict() -> None:
    with pytest.raises(pydantic.ValidationError, match="extra"):
        _config(learning_rat=1e-3)
    with pytest.raises(pydantic.ValidationError, match="365"):
        _config(lookback_days=200)
    with pytest.raises(pydantic.ValidationError, match="both train and test"):
        _config(test_winters=[2001])
    with pytest.raises(pydantic.ValidationError, match="unknown model architecture"):
        _config(architectures=None, architecture="gru")
    with pytest.raises(pydantic.ValidationError, match="set from the data"):
        _config(architectures=[{"name": "lstm", "hparams": {"n_features": 3}}])
    with pytest.raises(pydantic.ValidationError, match="seeds"):
        _config(seeds=[1, 2, 3])


def test_config_seeds_and_mixed_architectures() -> None:
    cfg = _config(members=5)
    assert cfg.candidate_seeds() == [11, 12, 13, 14, 15]
    assert [cfg.member_architecture(i).name for i in range(5)] == ["lstm", "tcn"] * 2 + ["lstm"]
    assert _config(seeds=[7, 3]).candidate_seeds() == [7, 3]
    assert TrainingConfig.model_validate(cfg.resolved()).candidate_seeds() == cfg.candidate_seeds()


def test_candidates_cover_the_members() -> None:
    with pytest.raises(pydantic.ValidationError, match="candidates"):
        _config(members=3, candidates=2)
    with pytest.raises(pydantic.ValidationError, match="3 candidates"):
        _config(members=2, candidates=3, seeds=[1, 2])
    assert _config(members=2, candidates=3).candidate_seeds() == [11, 12, 13]


def _result(index: int) -> MemberResult:
    return MemberResult(
        index=index,
        seed=100 + index,
        architecture="lstm",
        hparams={},
        state={},
        curve=[],
        best_epoch=1,
        best_val_score=0.0,
    )


def test_selection_keeps_the_best_on_validation_in_candidate_order() -> None:
    results = [_result(i) for i in range(5)]
    scores = [0.5, float("nan"), 0.2, 0.4, 0.2]
    assert [r.index for r in select_candidates(results, scores, 3)] == [2, 3, 4]
    # A diverged candidate comes last; ties keep the earlier candidate.
    assert [r.index for r in select_candidates(results, scores, 4)] == [0, 2, 3, 4]
    assert [r.index for r in select_candidates(results[:3], scores[:3], 1)] == [2]


def test_ensemble_of_selected_candidates(tmp_path: Path) -> None:
    data = synthetic_series(n_winters=16)
    config = _config(
        architectures=None, hparams={"hidden": 8}, members=2, candidates=3, epochs=3, patience=3
    )
    ensemble = train_ensemble(config, data, tmp_path / "model", workers=1)
    record = json.loads((tmp_path / "model" / "candidates.json").read_text())["candidates"]
    assert [c["seed"] for c in record] == [11, 12, 13]
    kept = [c for c in record if c["kept"]]
    dropped = [c for c in record if not c["kept"]]
    assert len(kept) == 2 and len(dropped) == 1
    assert max(c["validation_crps"] for c in kept) <= dropped[0]["validation_crps"]
    assert ensemble.seeds == [c["seed"] for c in kept]
    loaded = DeepEnsemble.load(tmp_path / "model")
    assert len(loaded.members) == 2
    assert [i["candidate"] for i in loaded.info] == [c["candidate"] for c in kept]
    # The selection score is the members' validation CRPS in °C, mean of the depths.
    pred = loaded.predict(data.predictors, data.time)
    val = np.isin(data.winters(), VALIDATION)
    for m, candidate in enumerate(kept):
        per_depth = [
            crps_gaussian(
                data.targets[val, d], pred.member_mean[m, val, d], pred.member_std[m, val, d]
            )
            for d in range(2)
        ]
        assert candidate["validation_crps"] == pytest.approx(np.mean(per_depth), rel=1e-3)


def test_normalisation_uses_training_winters_only() -> None:
    data = synthetic_series()
    cfg = _config()
    _, norm = prepare_series(data, cfg)
    spoiled = data.predictors.copy()
    winters = data.winters()
    spoiled[~np.isin(winters, TRAIN)] += 1000.0
    targets = data.targets.copy()
    targets[np.isin(winters, TEST)] -= 50.0
    changed = SeriesData(data.time, spoiled, targets, data.feature_names, data.events)
    _, norm2 = prepare_series(changed, cfg)
    assert norm2 == norm
    train = np.isin(winters, TRAIN)
    np.testing.assert_allclose(norm.feature_mean, data.predictors[train].mean(0))
    np.testing.assert_allclose(norm.target_mean, np.nanmean(data.targets[train], 0))


def test_mixture_moments_and_quantiles() -> None:
    mu = np.array([[0.0, 1.0], [1.0, 1.0], [3.0, 1.0]])
    sd = np.array([[1.0, 0.5], [0.5, 0.5], [2.0, 0.5]])
    mean, std = mixture_moments(mu, sd)
    np.testing.assert_allclose(mean, mu.mean(0))
    np.testing.assert_allclose(std**2, (sd**2 + mu**2).mean(0) - mu.mean(0) ** 2)
    q = mixture_quantiles(mu, sd, [0.05, 0.5, 0.95])
    from scipy.stats import norm

    for k, p in enumerate([0.05, 0.5, 0.95]):
        np.testing.assert_allclose(norm.cdf((q[k] - mu) / sd).mean(0), p, atol=1e-9)
    np.testing.assert_allclose(q[:, 1], norm.ppf([0.05, 0.5, 0.95], 1.0, 0.5))


# --------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[DeepEnsemble, Path, SeriesData]:
    data = synthetic_series()
    out = tmp_path_factory.mktemp("model") / "ensemble"
    ensemble = train_ensemble(_config(), data, out, workers=2)
    return ensemble, out, data


def test_ensemble_beats_climatology_and_is_calibrated(
    trained: tuple[DeepEnsemble, Path, SeriesData],
) -> None:
    ensemble, _, data = trained
    pred = ensemble.predict(data.predictors, data.time)
    test = np.isin(data.winters(), TEST)
    y = data.targets[test]
    assert (data.events[test] == 1).sum() > 20  # the test winters do cascade
    crps_ens = crps_mixture(
        y,
        np.moveaxis(pred.member_mean[:, test], 0, -1),
        np.moveaxis(pred.member_std[:, test], 0, -1),
    )
    clim = ClimatologyBaseline().fit(data.time, data.targets, TRAIN).predict(data.time)
    crps_clim = crps_gaussian(y, clim.mean[test], clim.std[test])
    assert crps_ens < 0.7 * crps_clim, (crps_ens, crps_clim)
    levels = pred.quantile_levels
    coverage = interval_coverage(
        y, pred.quantiles[levels.index(0.05)][test], pred.quantiles[levels.index(0.95)][test]
    )
    assert 0.75 <= coverage <= 0.98, coverage
    assert pred.mean.shape == pred.std.shape == pred.event_probability.shape == (len(data.time), 2)
    assert pred.member_mean.shape == (2, len(data.time), 2)
    np.testing.assert_allclose(pred.std**2, pred.aleatoric_std**2 + pred.epistemic_std**2)
    # Event head: observed event days get higher probabilities than quiet days.
    ev, prob = data.events[test], pred.event_probability[test]
    assert prob[ev == 1].mean() > prob[ev == 0].mean() + 0.15


def test_model_directory_round_trips(trained: tuple[DeepEnsemble, Path, SeriesData]) -> None:
    ensemble, out, data = trained
    for rel in [
        "config.yaml",
        "normalisation.json",
        "seeds.json",
        "ensemble.json",
        "members/member_00.safetensors",
        "members/member_01.safetensors",
        "curves/member_00.csv",
        "curves/training_curves.png",
    ]:
        assert (out / rel).is_file(), rel
    config = TrainingConfig.model_validate(yaml.safe_load((out / "config.yaml").read_text()))
    assert (
        json.loads((out / "seeds.json").read_text())["seeds"]
        == config.candidate_seeds()
        == [11, 12]
    )
    manifest = json.loads((out / "ensemble.json").read_text())
    assert [m["architecture"] for m in manifest["members"]] == ["lstm", "tcn"]
    loaded = DeepEnsemble.load(out)
    assert loaded.normalisation == ensemble.normalisation
    assert [len(c) for c in loaded.curves] == [len(c) for c in ensemble.curves]
    a = ensemble.predict(data.predictors, data.time)
    b = loaded.predict(
        dict(zip(data.feature_names, data.predictors.T, strict=True)), data.time, segment=1000
    )
    np.testing.assert_allclose(b.mean, a.mean, atol=1e-5)
    np.testing.assert_allclose(b.std, a.std, atol=1e-5)
    np.testing.assert_allclose(b.event_probability, a.event_probability, atol=1e-5)


def test_clamped_inputs_hold_every_predictor_inside_its_months_training_range(
    trained: tuple[DeepEnsemble, Path, SeriesData],
) -> None:
    ensemble, _, data = trained
    config = _config(clamp_inputs=True)
    _, norm = prepare_series(data, config)
    assert norm.clamp and norm.unclamped == ()
    assert Normalisation.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm
    months = pd.DatetimeIndex(data.time).month.to_numpy() - 1
    test = np.isin(data.winters(), TEST)
    hotter = data.predictors.copy()
    hotter[test, 0] = 50.0 * hotter[test, 0] + 100.0  # far beyond any training day
    z = norm.inputs(hotter, data.time)
    edge = (np.asarray(norm.feature_monthly_max)[months, 0] - norm.feature_mean[0]) / (
        norm.feature_std[0]
    )
    np.testing.assert_allclose(z[test, 0], edge[test], rtol=1e-5)
    free = dataclasses.replace(norm, clamp=False).inputs(data.predictors, data.time)
    learning = np.isin(data.winters(), config.learning_winters())
    np.testing.assert_array_equal(norm.inputs(data.predictors, data.time)[learning], free[learning])
    # the members answer a climate 50x and 500x beyond the record alike: the edge's answer
    held = dataclasses.replace(
        ensemble, normalisation=dataclasses.replace(ensemble.normalisation, clamp=True)
    )
    further = hotter.copy()
    further[test, 0] *= 10.0
    a, b = held.predict(hotter, data.time), held.predict(further, data.time)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-6)
    assert not np.allclose(
        ensemble.predict(hotter, data.time).mean, ensemble.predict(further, data.time).mean
    )
    # an unclamped column (a physically signed input) stays free
    fit = functools.partial(
        Normalisation.fit,
        data.predictors,
        data.targets,
        learning,
        data.feature_names,
        time=data.time,
        clamp=True,
    )
    assert fit(unclamped=("cooling",)).inputs(hotter, data.time)[test, 0].max() > 100
    with pytest.raises(ValueError, match="'rain'"):
        fit(unclamped=("rain",))


def test_the_density_gate_reads_the_one_input_the_clamp_leaves_free() -> None:
    names = ("tas@shelf", "shelf_sigma0@shelf", "stratification@shelf")
    gated = _config(architectures=None, hparams={"reservoir": True, "density_gate": True})
    assert gate_features(gated, names) == ("shelf_sigma0@shelf",)
    assert gate_features(_config(), names) == ()


def test_an_anchored_gate_sits_below_the_training_event_days_and_is_not_learned() -> None:
    """``density_gate: events``: per depth the threshold is the margin below the least dense
    gate input on which the candidate's *training* days saw an event (a lighter event in a
    validation winter is not read), and neither it nor the steepness moves in training."""
    base = synthetic_series()
    # a density-like input: the shelf's leaky 60-day integral of cooling (what the events follow)
    shelf = pd.Series(base.predictors[:, 0]).ewm(alpha=1 - np.exp(-1 / 60)).mean().to_numpy()
    data = dataclasses.replace(
        base,
        predictors=np.stack([shelf, base.predictors[:, 1]], axis=1),
        feature_names=("shelf_sigma0@shelf", "wind"),
    )
    config = _config(
        architectures=None,
        architecture="lstm",
        hparams={"hidden": 8, "reservoir": True, "density_gate": "events", "gate_margin": 0.3},
        epochs=2,
        min_epochs=1,
        batches_per_epoch=2,
    )
    series, _ = prepare_series(data, config)
    density = series.x[:, 0]
    # an event on the lightest validation day: an anchor that read it would sit far lower
    lightest = np.flatnonzero(series.validation)[np.argmin(density[series.validation])]
    events = series.events.copy()
    events[lightest] = 1.0
    series = dataclasses.replace(series, events=events)
    expected = [float(density[series.train & (events[:, d] > 0.5)].min()) - 0.3 for d in range(2)]
    assert density[lightest] < expected[0] - 1.0  # at 500 m it would move the anchor

    result = train_member(config, series, 0)
    assert result.hparams["gate_column"] == 0
    np.testing.assert_allclose(result.hparams["gate_threshold"], expected, atol=1e-6)
    assert result.hparams["gate_steepness"] == 10.0
    gate = result.model().gate
    np.testing.assert_allclose(gate.threshold.detach().numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(
        torch.nn.functional.softplus(gate.raw_steepness).detach().numpy(), 10.0, rtol=1e-5
    )
    # at its threshold the gate is half open, a standard deviation above it fully
    at = torch.tensor([[expected[0], expected[0] + 1.0]])
    np.testing.assert_allclose(gate(at)[0, :, 0].exp().detach().numpy(), [0.5, 1.0], atol=1e-4)

    # no event at 1000 m among the training days: it takes the highest floor of the others;
    # none anywhere: nothing to anchor on, the gate stays learned (and the hparams say so)
    no_deep = dataclasses.replace(series, events=np.where(np.arange(2) == 1, 0.0, events))
    assert (
        resolve_gate(config.hparams, series.feature_names, no_deep)["gate_threshold"]
        == [pytest.approx(expected[0], abs=1e-6)] * 2
    )
    none = dataclasses.replace(series, events=np.zeros_like(events))
    assert resolve_gate(config.hparams, series.feature_names, none) == {
        "hidden": 8,
        "reservoir": True,
        "gate_column": 0,
    }
    with pytest.raises(ValueError, match="density_gate must be true, false or 'events'"):
        train_member(_config(architectures=None, hparams={"density_gate": "yes"}), series, 0)


class _Sentinel:
    """Unpickling this creates a file: proof that a pickle was (not) executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.path),))  # type: ignore[return-value]


def test_pickle_checkpoints_are_refused(
    trained: tuple[DeepEnsemble, Path, SeriesData], tmp_path: Path
) -> None:
    ensemble, out, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    member = copy / "members" / "member_01.safetensors"
    torch.save(ensemble.members[1].state_dict(), member)
    with pytest.raises(CheckpointError, match="pickle"):
        DeepEnsemble.load(copy)
    sentinel = tmp_path / "executed"
    member.write_bytes(pickle.dumps({"weight": _Sentinel(sentinel)}))
    with pytest.raises(CheckpointError, match="pickle"):
        DeepEnsemble.load(copy)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(member)
    assert not sentinel.exists()
    # A tampered safetensors file fails its manifest digest.
    shutil.copy(out / "members" / "member_00.safetensors", member)
    with pytest.raises(CheckpointError, match="SHA-256"):
        DeepEnsemble.load(copy)


def test_checkpoints_outside_the_model_directory_or_unchecked_are_refused(
    trained: tuple[DeepEnsemble, Path, SeriesData], tmp_path: Path
) -> None:
    """Issue 17 item 5: a manifest cannot point a load outside its directory, and a
    checkpoint without its SHA-256 is never read, even when the file itself is valid."""
    _, out, _ = trained
    copy = tmp_path / "model"
    shutil.copytree(out, copy)
    outside = tmp_path / "outside.safetensors"
    shutil.copy(copy / "members" / "member_00.safetensors", outside)
    manifest_path = copy / "ensemble.json"
    original = json.loads(manifest_path.read_text())

    def load_with(change: dict) -> None:
        manifest = json.loads(json.dumps(original))
        manifest["members"][0].update(change)
        manifest["members"][0] = {k: v for k, v in manifest["members"][0].items() if v is not None}
        manifest_path.write_text(json.dumps(manifest))
        DeepEnsemble.load(copy)

    digest = original["members"][0]["sha256"]
    with pytest.raises(CheckpointError, match=r"'\.\./outside\.safetensors' is outside the model"):
        load_with({"checkpoint": "../outside.safetensors"})
    with pytest.raises(CheckpointError, match="is outside the model"):
        load_with({"checkpoint": str(outside)})  # absolute
    (copy / "members" / "link.safetensors").symlink_to(outside)
    with pytest.raises(CheckpointError, match="is outside the model"):
        load_with({"checkpoint": "members/link.safetensors", "sha256": digest})
    with pytest.raises(CheckpointError, match="has no sha256 of its checkpoint"):
        load_with({"sha256": None})
    load_with({})  # the untouched manifest loads
