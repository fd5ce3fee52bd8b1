"""``cascadia-ensemble tune``: a resumable optuna search on a small twin world, pruning,
the test winters kept from the search, and the statistics of the comparison table."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import test_train_job
import yaml
from scipy import stats

import cascadia.learning.tuning as tuning
from cascadia.cli import main
from cascadia.learning.evaluation import Forecast, bootstrap_crps_difference, diebold_mariano
from cascadia.learning.tuning import load_tune_job
from cascadia.twin.world import build_world

# The 12-year tiny preset and winter splits of the train job tests (2003-2014 ERA5 and mooring).
PRESET, TRAIN, VALIDATION, TEST = (
    test_train_job.PRESET,
    test_train_job.TRAIN,
    test_train_job.VALIDATION,
    test_train_job.TEST,
)


def _job(**search: Any) -> dict[str, Any]:
    return {
        "predictors": {
            "catalog": "world/catalogs/reanalysis.yaml",
            "source": "era5",
            "cache": "cache",
        },
        "observations": {"path": "world/observations/lacaze-duthiers.nc"},
        "targets": {"spinup_days": 400},
        "training": {
            "architecture": "lstm",
            "members": 2,
            "seed": 3,
            "window_days": 120,
            "batch_size": 4,
            "batches_per_epoch": 3,
            "epochs": 2,
            "patience": 2,
            "workers": 1,
            "train_winters": TRAIN,
            "validation_winters": VALIDATION,
            "test_winters": TEST,
        },
        "evaluation": {"bootstrap_samples": 500, "seed": 1},
        "search": {
            "study_name": "tiny",
            "storage": "tune/study.db",
            "trials": 3,
            "sampler": "random",
            "seed": 5,
            "pruner": {"kind": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
            "top_k": 2,
            "space": {
                "architecture": ["lstm", "tcn"],
                "hidden": [8],
                "layers": 1,
                "lookback_days": [365, 400],
                "learning_rate": {"low": 3e-4, "high": 3e-3, "log": True},
                "dropout": {"low": 0.0, "high": 0.3},
            },
            **search,
        },
    }


def _write(root: Path, name: str, job: dict[str, Any]) -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tune")
    build_world(str(root / "world"), PRESET, seed=0)
    return root


@pytest.fixture(scope="module")
def seen() -> list[dict[str, Any]]:
    """What every trial's training loop received (filled by the spy in ``first_search``)."""
    return []


@pytest.fixture(scope="module")
def first_search(world: Path, seen: list[dict[str, Any]]) -> Iterator[Path]:
    """A 3-trial search through the CLI, with a spy on the objective's training data."""
    real = tuning.train_member

    def spy(config: Any, series: Any, index: int, on_epoch: Any = None, device: Any = None) -> Any:
        seen.append(
            {
                "y": series.y.copy(),
                "events": series.events.copy(),
                "train": series.train.copy(),
                "validation": series.validation.copy(),
            }
        )
        return real(config, series, index, on_epoch=on_epoch, device=device)

    job = _write(world, "tune.yaml", _job())
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tuning, "train_member", spy)
        assert main(["tune", "--job", str(job)]) == 0
    print(f"3-trial search and comparison in {time.perf_counter() - started:.1f} s")
    yield world / "tune"


def _test_days(world: Path) -> tuple[np.ndarray, np.ndarray]:
    """Winter of each series day and the observed anomaly, from the job's own preparation."""
    from cascadia.learning.train_job import prepare_job_series

    job = load_tune_job(world / "tune.yaml")
    prepared = prepare_job_series(job.train, log=lambda _: None)
    return prepared.winters, prepared.series.anomaly


def test_search_writes_a_sqlite_study_and_the_comparison(first_search: Path) -> None:
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{first_search / 'study.db'}")
    finished = [t for t in study.trials if t.state in tuning.FINISHED]
    assert len(finished) == 3
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert trial.params["architecture"] in ("lstm", "tcn")
        assert 3e-4 <= trial.params["learning_rate"] <= 3e-3
        crps = trial.user_attrs["validation_crps"]
        assert trial.value == pytest.approx(np.mean([crps["500"], crps["1000"]]))
        assert 0.0 < trial.value < 1.0  # °C: the anomaly's CRPS, not standardised units
    for name in (
        "comparison.json",
        "comparison.csv",
        "comparison.md",
        "trials.csv",
        "study.json",
        "best-train-job.yaml",
        "optimization_history.png",
    ):
        assert (first_search / name).is_file(), name

    comparison = json.loads((first_search / "comparison.json").read_text())
    ranked = sorted(
        study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.value
    )
    assert comparison["reference"]["trial"] == ranked[0].number
    assert comparison["test_winters"] == TEST
    rows = list(csv.DictReader((first_search / "comparison.csv").open()))
    assert len(rows) == 2 * len(comparison["candidates"])
    for cand in comparison["candidates"]:
        for depth, score in cand["test"].items():
            # The test CRPS is the day-weighted mean of the per-winter CRPS.
            per_winter = score["per_winter"]
            days = np.array([v["days"] for v in per_winter.values()], dtype=float)
            mine = np.array([v["crps"] for v in per_winter.values()])
            ref = np.array([v["reference_crps"] for v in per_winter.values()])
            assert score["crps"] == pytest.approx((mine * days).sum() / days.sum(), rel=1e-9)
            assert score["difference"] == pytest.approx(
                ((mine - ref) * days).sum() / days.sum(), abs=1e-12
            )
            # Diebold-Mariano on the per-winter differences is the paired t-test (h = 1).
            if cand["rank"] > 1:
                t = stats.ttest_rel(mine, ref)
                assert score["dm"]["statistic"] == pytest.approx(t.statistic, rel=1e-9)
                assert score["dm"]["p_value"] == pytest.approx(t.pvalue, rel=1e-9)
            row = next(r for r in rows if int(r["trial"]) == cand["trial"] and r["depth"] == depth)
            assert float(row["test_crps"]) == pytest.approx(score["crps"])
    md = (first_search / "comparison.md").read_text()
    assert "| rank | trial | architecture |" in md and "reference" in md
    best_job = yaml.safe_load((first_search / "best-train-job.yaml").read_text())
    best = comparison["candidates"][0]["candidate"]
    assert best_job["training"]["architecture"] == best["architecture"]
    assert best_job["training"]["lookback_days"] == best["lookback_days"]


def test_test_winters_never_reach_the_objective(
    first_search: Path, world: Path, seen: list[dict[str, Any]]
) -> None:
    winters, anomaly = _test_days(world)
    test = np.isin(winters, TEST)
    assert np.isfinite(anomaly[test]).sum() > 300  # the test winters are observed…
    assert len(seen) >= 3
    for data in seen:  # …but the search's training loop never sees them
        assert data["y"].shape[0] == winters.size
        assert not np.isfinite(data["y"][test]).any()
        assert not np.isfinite(data["events"][test]).any()
        assert not data["train"][test].any() and not data["validation"][test].any()
        assert np.isfinite(data["y"][~test]).sum() > 1000


def test_a_rerun_with_more_trials_resumes_the_study(
    first_search: Path, world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{first_search / 'study.db'}"
    before = optuna.load_study(study_name="tiny", storage=storage).trials
    assert main(["tune", "--job", str(world / "tune.yaml"), "--trials", "5"]) == 0
    assert "best trial" in capsys.readouterr().out
    after = optuna.load_study(study_name="tiny", storage=storage).trials
    assert len([t for t in after if t.state in tuning.FINISHED]) == 5
    for old, new in zip(before, after[: len(before)], strict=True):
        assert (new.number, new.state, new.value, new.params) == (
            old.number,
            old.state,
            old.value,
            old.params,
        )
    # The resumed sampler is reseeded: the new trials are not replays of the first ones.
    assert {repr(t.params) for t in after[3:]} - {repr(t.params) for t in before}


def test_a_trial_the_pruner_stops_is_recorded_as_pruned(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every validation CRPS exceeds this threshold: the pruner stops each trial at epoch 1.
    pruner = {"kind": "threshold", "upper": -1.0, "n_warmup_steps": 0}
    job = _write(world, "tune-pruned.yaml", _job(pruner=pruner, trials=2))
    study_dir = world / "pruned"
    assert main(["tune", "--job", str(job), "--study-dir", str(study_dir)]) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert len(errors) == 1 and "no completed trial" in errors[0] and "PRUNED" in errors[0]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_dir / 'study.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert [sorted(t.intermediate_values) for t in study.trials] == [[1], [1]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"space": {"architecture": ["gru"]}}, "gru"),
        ({"space": {"lookback_days": [365, 800]}}, "spinup_days"),
        ({"pruner": {"kind": "threshold"}}, "upper"),
        ({"trails": 3}, "search.trails"),
    ],
)
def test_bad_search_section_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], message: str
) -> None:
    job = _job()
    job["search"] = {**job["search"], **change}
    path = _write(tmp_path, "bad.yaml", job)
    assert main(["tune", "--job", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err


def test_diebold_mariano_with_harvey_correction_matches_known_numbers() -> None:
    d = np.array([0.012, -0.004, 0.021, 0.008, 0.015, -0.002])
    # h = 1: the corrected statistic is the paired t statistic, t with n - 1 df.
    one = diebold_mariano(d, horizon=1, confidence=0.9)
    t = stats.ttest_1samp(d, 0.0)
    ci = t.confidence_interval(0.9)
    assert one["statistic"] == pytest.approx(t.statistic, rel=1e-12)
    assert one["p_value"] == pytest.approx(t.pvalue, rel=1e-12)
    assert (one["ci_low"], one["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert one["statistic"] == pytest.approx(2.0891, abs=1e-4)  # d̄ = 0.00833, s = 0.00977
    # h = 2 by hand: V = γ0 + 2γ1, DM = d̄ / √(V/n), × √((n + 1 − 2h + h(h − 1)/n)/n).
    e = np.array([0.012, 0.010, 0.021, 0.018, 0.004, -0.002, 0.001, 0.009])
    m = e.size
    dev = e - e.mean()
    gamma0, gamma1 = dev @ dev / m, dev[1:] @ dev[:-1] / m
    dm = e.mean() / np.sqrt((gamma0 + 2 * gamma1) / m)
    hln = dm * np.sqrt((m + 1 - 4 + 2 / m) / m)
    two = diebold_mariano(e, horizon=2)
    assert two["statistic"] == pytest.approx(hln, rel=1e-12)
    assert two["p_value"] == pytest.approx(2 * stats.t.sf(abs(hln), m - 1), rel=1e-12)
    # A negative long-run variance (here γ0 + 2γ1 < 0) gives no statistic.
    assert diebold_mariano(d, horizon=2)["statistic"] is None
    # Undefined cases are None, not a made-up number.
    assert diebold_mariano([0.01])["statistic"] is None
    assert diebold_mariano([0.01, 0.01, 0.01])["statistic"] is None
    with pytest.raises(ValueError, match="horizon"):
        diebold_mariano(d, horizon=0)


def test_paired_bootstrap_interval_matches_an_independent_resampling() -> None:
    # Two near-deterministic forecasts (σ → 0: CRPS = |error|) over 5 winters of 10 days.
    winters = np.repeat(np.arange(2001, 2006), 10)
    obs = np.zeros((winters.size, 1))
    err_a = np.repeat([0.10, 0.30, 0.20, 0.50, 0.05], 10)
    err_b = np.repeat([0.20, 0.25, 0.40, 0.45, 0.15], 10)
    obs[3] = np.nan  # one missing day: winters are weighted by their observed days

    def point(name: str, err: np.ndarray) -> Forecast:
        mean = err[None, :, None]
        std = np.full_like(mean, 1e-9)
        return Forecast(name, mean, std, mean[0], mean[0], np.zeros(mean[0].shape, bool))

    out = bootstrap_crps_difference(
        point("a", err_a),
        point("b", err_b),
        obs,
        winters,
        list(range(2001, 2006)),
        [500.0],
        samples=4000,
        confidence=0.9,
        seed=7,
    )["500"]
    days = np.array([9, 10, 10, 10, 10], dtype=float)
    diff = np.array([-0.10, 0.05, -0.20, 0.05, -0.10])
    assert out["difference"] == pytest.approx((diff * days).sum() / days.sum(), abs=1e-9)
    draws = np.random.default_rng(7).integers(0, 5, size=(4000, 5))
    boot = (diff * days)[draws].sum(axis=1) / days[draws].sum(axis=1)
    assert out["ci_low"] == pytest.approx(np.quantile(boot, 0.05), abs=1e-9)
    assert out["ci_high"] == pytest.approx(np.quantile(boot, 0.95), abs=1e-9)
    # And, with an independent generator, SciPy's percentile bootstrap of the same
    # day-weighted mean agrees within resampling noise.
    res = stats.bootstrap(
        (diff, days),
        lambda x, w: (x * w).sum() / w.sum(),
        paired=True,
        vectorized=False,
        n_resamples=4000,
        confidence_level=0.9,
        method="percentile",
        rng=np.random.default_rng(11),
    )
    assert out["ci_low"] == pytest.approx(res.confidence_interval.low, abs=0.01)
    assert out["ci_high"] == pytest.approx(res.confidence_interval.high, abs=0.01)
