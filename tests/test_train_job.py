"""``cascadia-ensemble train --job`` end to end on a small twin world, and its bad inputs."""

from __future__ import annotations

import json
import math
import multiprocessing
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from cascadia.cli import main
from cascadia.learning.baselines import ClimatologyBaseline
from cascadia.learning.jobs import JobError, load_train_job
from cascadia.learning.metrics import crps_gaussian
from cascadia.run.inference import model_checksum
from cascadia.twin.presets import PRESETS, ReanalysisSpec, Years
from cascadia.twin.world import build_world

#: The tiny preset with 12 years of ERA5 and mooring (2003-2014) on a coarse grid,
#: so that whole winters can be split into train / validation / test.
PRESET = PRESETS["tiny"].model_copy(
    update={
        "name": "tiny-12y",
        "era5": ReanalysisSpec(years=Years(start=2003, end=2014), resolution=3.0),
        "observations": Years(start=2003, end=2014),
    }
)
TRAIN = [2004, 2005, 2006, 2007, 2009, 2010, 2011]
VALIDATION = [2008, 2014]
TEST = [2012, 2013]
MODELS = [
    "ensemble",
    "member_0",
    "member_1",
    "climatology",
    "persistence",
    "index_regression",
    "gradient_boosting",
]
METRICS = [
    "rmse",
    "nse",
    "kge",
    "crps",
    "coverage_90",
    "spread_skill",
    "event_hit_week",
    "event_hit_day",
    "csi",
]
EVENT_METRICS = {"event_hit_week", "event_hit_day", "csi"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train-job")
    started = time.perf_counter()
    build_world(str(root / "world"), PRESET, seed=0)
    print(f"tiny-12y world built in {time.perf_counter() - started:.1f} s")
    return root


def _job(root: Path, **sections: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "predictors": {
            "catalog": "world/catalogs/reanalysis.yaml",
            "source": "era5",
            "cache": "cache",
        },
        "observations": {"path": "world/observations/lacaze-duthiers.nc"},
        "targets": {"spinup_days": 365},
        "training": {
            "architecture": "lstm",
            "hparams": {"hidden": 16},
            "members": 2,
            "seed": 3,
            "lookback_days": 365,
            "window_days": 120,
            "batch_size": 4,
            "batches_per_epoch": 4,
            "epochs": 2,
            "patience": 2,
            "workers": 2,
            "train_winters": TRAIN,
            "validation_winters": VALIDATION,
            "test_winters": TEST,
        },
        "evaluation": {"bootstrap_samples": 200},
        "output": "model",
    }
    for key, value in sections.items():
        job[key] = {**job[key], **value} if isinstance(value, dict) else value
    return job


def _write(root: Path, name: str, job: dict[str, Any]) -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return path


@pytest.mark.slow
def test_train_job_end_to_end(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = _write(
        world, "train.yaml", _job(world, evaluation={"warm_split": True, "strong_split": True})
    )
    started = time.perf_counter()
    assert main(["train", "--job", str(job)]) == 0
    print(f"train job in {time.perf_counter() - started:.1f} s")
    out = world / "model"
    captured = capsys.readouterr()
    assert "model directory" in captured.out
    # never silent (issue 17 item 7): in a log, one line per finished candidate
    record = json.loads((out / "candidates.json").read_text())["candidates"]
    for i, candidate in enumerate(sorted(record, key=lambda c: c["candidate"])):
        line = re.search(rf"candidate {i} done \((\d)/2\): best epoch (\d+), ", captured.err)
        assert line is not None, captured.err
        assert int(line.group(2)) == candidate["best_epoch"]
    assert "about 0 s left" in captured.err.replace("\n", " ")
    for name in (
        "config.yaml",
        "job.yaml",
        "normalisation.json",
        "seeds.json",
        "ensemble.json",
        "targets.json",
        "background.csv",
        "timing.json",
        "metrics.json",
        "comparison.json",
        "winter_events.json",
        "members/member_00.safetensors",
        "members/member_01.safetensors",
        "curves/training_curves.png",
        "report/report.md",
        "report/hindcast.png",
        "report/scatter.png",
        "report/events.png",
        "report/pit.png",
        "report/reliability.png",
    ):
        assert (out / name).is_file(), name

    norm = json.loads((out / "normalisation.json").read_text())
    assert "tas@gulf_of_lion_shelf" in norm["feature_names"]
    assert "sfcWind@tramontane" in norm["feature_names"]
    assert json.loads((out / "seeds.json").read_text())["seeds"] == [3, 4]
    resolved = yaml.safe_load((out / "job.yaml").read_text())
    assert Path(resolved["predictors"]["catalog"]).is_absolute()
    assert resolved["targets"]["background"]["extrapolation"] == "hold"

    metrics = json.loads((out / "metrics.json").read_text())
    splits = {side: metrics.pop(f"{side}_split") for side in ("warm", "strong")}
    assert "cold_split" not in metrics  # not asked for
    verification = metrics.pop("verification")
    assert set(metrics) == set(MODELS)
    _check_verification(verification, metrics)
    for side, section in splits.items():
        _check_split(side, out, section, metrics)
    timing = json.loads((out / "timing.json").read_text())
    assert timing["warm_split_seconds"] > 0 and timing["strong_split_seconds"] > 0
    assert timing["cold_split_seconds"] is None
    for model in MODELS:
        assert set(metrics[model]) == {"500", "1000"}
        for depth, row in metrics[model].items():
            assert set(METRICS) <= set(row)
            for metric in METRICS:
                value = row[metric]
                if value is None:
                    # Only event scores may be undefined, and only without observed events.
                    assert metric in EVENT_METRICS, (model, depth, metric)
                    assert row["n_observed_event_days"] == 0 or metric == "csi"
                else:
                    assert math.isfinite(value), (model, depth, metric)
            assert row["crps"] > 0
            assert 0 <= row["coverage_90"] <= 1
    assert metrics["ensemble"]["500"]["n_observed_event_days"] > 0

    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["a"] == "ensemble"
    assert comparison["b"] in MODELS[1:3]
    for depth in ("500", "1000"):
        row = comparison[depth]
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]
        assert row["ci_low_bca"] <= row["ci_high_bca"]  # two test winters: an interval
        assert set(row["per_winter"]) == {str(w) for w in TEST}
    # The member picked on validation (what a user could pick) is scored the same way;
    # the hindsight pick is, by construction, no worse on the test winters.
    chosen = comparison["selected_on_validation"]
    assert chosen["b"] in MODELS[1:3]

    def mean_crps(model: str) -> float:
        return sum(metrics[model][d]["crps"] for d in ("500", "1000")) / 2

    assert mean_crps(comparison["b"]) <= mean_crps(chosen["b"])
    for depth in ("500", "1000"):
        expected = metrics["ensemble"][depth]["crps"] - metrics[chosen["b"]][depth]["crps"]
        assert chosen[depth]["difference"] == pytest.approx(expected, abs=1e-9)

    background = pd.read_csv(out / "background.csv")
    assert background["background_500"].notna().all()
    # hindcast.csv holds the scored forecast: its test days reproduce the metrics.
    hindcast = pd.read_csv(out / "hindcast.csv", parse_dates=["time"])
    assert list(hindcast["time"].dt.strftime("%Y-%m-%d")) == list(background["time"])
    days = pd.DatetimeIndex(hindcast["time"])
    test = np.isin(days.year + (days.month >= 11), TEST)
    for depth in ("500", "1000"):
        obs = background[f"observed_{depth}"].to_numpy()
        ok = test & np.isfinite(obs)
        mean, low, high = (hindcast[f"{k}_{depth}"].to_numpy()[ok] for k in ("mean", "q05", "q95"))
        assert np.sqrt(np.mean((obs[ok] - mean) ** 2)) == pytest.approx(
            metrics["ensemble"][depth]["rmse"], rel=1e-3
        )
        inside = np.mean((obs[ok] >= low) & (obs[ok] <= high))
        assert inside == pytest.approx(metrics["ensemble"][depth]["coverage_90"], abs=0.01)
    report = (out / "report" / "report.md").read_text()
    assert "index_regression" in report and "pit.png" in report
    coverage = verification["coverage_90"]["500"]["coverage"]
    assert f"Coverage of the ensemble's 90 % interval at 500 m: {coverage:.3f}" in report
    assert "winters it was calibrated on" in report
    # the extrapolation checks beside the random split, each side's test winters named
    assert "## Extrapolation checks" in report
    for side in ("warm", "strong"):
        winters = ", ".join(str(w) for w in splits[side]["test_winters"])
        ratio = splits[side][f"crps_ratio_{side}_to_random"]["500"]
        assert f"| {side} | {winters} | 500 m | " in report
        assert f" | {ratio:.2f} | " in report


def _check_verification(verification: dict[str, Any], metrics: dict[str, Any]) -> None:
    """PIT, reliability and skill intervals for the ensemble and every baseline."""
    forecasts = set(MODELS) - {"member_0", "member_1"}
    assert set(verification["pit"]) == set(verification["reliability"]) == forecasts
    assert set(verification["crps_skill"]["against"]) == forecasts - {"ensemble"}
    for model in MODELS:
        for depth, row in metrics[model].items():
            assert set(row) <= set(verification["descriptions"]), (model, depth)
            # The same-week hit rate is the same-week table's POD: recall only.
            assert row["pod_week"] == row["event_hit_week"]
            assert row["hits_week"] + row["misses_week"] == row["n_observed_event_days"]
            known = row["n_event_days"] + row["n_quiet_days"]
            if known == row["n_days"]:
                mean = (
                    row["crps_event"] * row["n_event_days"]
                    + row["crps_quiet"] * row["n_quiet_days"]
                ) / known
                assert mean == pytest.approx(row["crps"])
    for depth in ("500", "1000"):
        pit = verification["pit"]["ensemble"][depth]
        assert sum(pit["counts"]) == pit["n"] == metrics["ensemble"][depth]["n_days"]
        diagram = verification["reliability"]["ensemble"][depth]
        assert sum(diagram["n"]) == diagram["n_total"] > 300
        for baseline, per_depth in verification["crps_skill"]["against"].items():
            skill = per_depth[depth]
            expected = 1 - metrics["ensemble"][depth]["crps"] / metrics[baseline][depth]["crps"]
            assert skill["skill"] == pytest.approx(expected)
            assert skill["n_winters"] == len(TEST)
            assert skill["ci_low"] <= skill["ci_high"]
            print(
                f"{depth} m skill vs {baseline}: {skill['skill']:.3f} "
                f"[{skill['ci_low']:.3f}, {skill['ci_high']:.3f}]"
            )
        _check_coverage(verification, metrics, depth, VALIDATION)


def _check_coverage(
    verification: dict[str, Any], metrics: dict[str, Any], depth: str, calibrated_on: list[int]
) -> None:
    """The test coverage with its interval over winters, read against calibration winters."""
    coverage = verification["coverage_90"][depth]
    assert coverage["coverage"] == pytest.approx(metrics["ensemble"][depth]["coverage_90"])
    assert coverage["n_winters"] == len(TEST) and set(coverage["per_winter"]) == set(map(str, TEST))
    drawn = coverage["calibration_winters"]
    assert drawn["n_pool_winters"] == len(calibrated_on)
    assert drawn["n_winters_drawn"] == len(TEST)
    # The interval of the calibrated forecast on the winters it was calibrated on.
    assert 0.5 < drawn["coverage"] <= 1.0
    assert drawn["low"] <= drawn["coverage"] <= drawn["high"]


def _check_split(side: str, out: Path, split: dict[str, Any], metrics: dict[str, Any]) -> None:
    """A warm split: the warmest third of the winters by shelf air temperature is the test;
    a strong split: the strongest tenth of the cascades."""
    pool = sorted(TRAIN + VALIDATION + TEST)
    ranked_by = "winter_mean_tas_K" if side == "warm" else "winter_cascade_strength"
    value = {int(w): t for w, t in split[ranked_by].items()}
    assert sorted(value) == pool
    norm = json.loads((out / "normalisation.json").read_text())
    assert "tas@gulf_of_lion_shelf" in norm["feature_names"]
    rest = split["train_winters"] + split["validation_winters"]
    if side == "warm":
        # round(11 / 3) = 4 warmest winters, all beyond every learning winter
        assert split["test_winters"] == sorted(sorted(pool, key=lambda w: value[w])[-4:])
        assert min(value[w] for w in split["test_winters"]) > max(value[w] for w in rest)
        assert split["rule"].startswith("test = warmest third")
    else:
        # round(11 / 10) = 1 winter: the one whose coldest anomaly is the most negative
        (held,) = split["test_winters"]
        assert value[held] == min(value.values()) < 0
        assert split["rule"].startswith("test = the strongest tenth")
    assert len(split["validation_winters"]) == len(VALIDATION)
    assert sorted(rest + split["test_winters"]) == pool
    # Its own model directory, trained with the same design and scored the same way.
    config = yaml.safe_load((out / f"{side}_split" / "job.yaml").read_text())
    assert config["training"]["test_winters"] == split["test_winters"]
    assert config["training"]["epochs"] == 2 and config["training"]["members"] == 2
    assert not any(config["evaluation"][f"{s}_split"] for s in ("warm", "cold", "strong"))
    scored = {k: v for k, v in split.items() if k in MODELS}
    assert set(scored) == set(MODELS) - {"member_0", "member_1"}
    assert set(split) - set(scored) == {
        "rule",
        ranked_by,
        "train_winters",
        "validation_winters",
        "test_winters",
        f"crps_ratio_{side}_to_random",
    }
    for depth in ("500", "1000"):
        row = scored["ensemble"][depth]
        assert {"crps", "nse", "coverage_90", "event_hit_week", "far"} <= set(row)
        assert row["crps"] > 0 and row["n_days"] > 75 * len(split["test_winters"])
        ratio = split[f"crps_ratio_{side}_to_random"][depth]
        assert ratio == pytest.approx(row["crps"] / metrics["ensemble"][depth]["crps"])
        print(
            f"{side} split {depth} m: CRPS random {metrics['ensemble'][depth]['crps']:.4f} "
            f"split {row['crps']:.4f} (ratio {ratio:.2f}); gradient boosting random "
            f"{metrics['gradient_boosting'][depth]['crps']:.4f} split "
            f"{scored['gradient_boosting'][depth]['crps']:.4f}"
        )


@pytest.fixture(scope="module")
def folds_model(world: Path) -> Path:
    """The cross-fitted job, trained by two worker processes."""
    job = _job(world, training={"candidates": 4, "folds": 2}, output="model-folds")
    assert main(["train", "--job", str(_write(world, "folds.yaml", job))]) == 0
    return world / "model-folds"


@pytest.mark.slow
def test_cross_fitted_train_job(world: Path, folds_model: Path) -> None:
    """Folds: calibration on the out-of-fold forecast, baselines on the same winters."""
    out = folds_model
    pool = sorted(TRAIN + VALIDATION)
    record = json.loads((out / "candidates.json").read_text())
    assert sorted(w for fold in record["folds"] for w in fold) == pool
    kept = [c["validation_winters"] for c in record["candidates"] if c["kept"]]
    assert sorted(kept) == sorted(record["folds"])  # one member per fold
    calibration = json.loads((out / "calibration.json").read_text())
    assert calibration["fitted_on_winters"] == pool
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["selected_on_validation"]["b"] in MODELS[1:3]
    # The climatology learned from the same winters as the members: train + validation.
    metrics = json.loads((out / "metrics.json").read_text())
    table = pd.read_csv(out / "background.csv", parse_dates=["time"])
    days = pd.DatetimeIndex(table["time"])
    labels = np.asarray(days.year + (days.month >= 11))
    anomaly = np.stack(
        [table[f"observed_{d}"] - table[f"background_{d}"] for d in ("500", "1000")], axis=1
    )
    clim = ClimatologyBaseline().fit(days.values, anomaly, pool).predict(days.values)
    for j, depth in enumerate(("500", "1000")):
        ok = np.isin(labels, TEST) & np.isfinite(anomaly[:, j])
        expected = crps_gaussian(anomaly[ok, j], clim.mean[ok, j], clim.std[ok, j])
        assert metrics["climatology"][depth]["crps"] == pytest.approx(expected, rel=1e-6)
        # The out-of-fold forecast of all nine pool winters is the coverage's reference.
        _check_coverage(metrics["verification"], metrics, depth, pool)
    _check_members_mean_events(out, metrics)


def _check_members_mean_events(out: Path, metrics: dict[str, Any]) -> None:
    """One member per fold: the level is a member's, and the ensemble's event scores and
    per-winter counts are its members' mean at that level, as a run stores its counts."""
    from cascadia.learning.calibration import member_probability_events
    from cascadia.learning.ensemble import DeepEnsemble
    from cascadia.learning.metrics import contingency_scores
    from cascadia.learning.train_job import prepare_job_series

    ensemble = DeepEnsemble.load(out)
    calibration = ensemble.calibration
    assert calibration is not None and calibration.counts_members
    job = load_train_job(out / "job.yaml")
    prepared = prepare_job_series(job, log=lambda _: None)
    series, winters = prepared.series, prepared.winters
    pred = ensemble.predict(series.predictors, series.time)
    flags = member_probability_events(
        pred.member_mean, pred.member_std, series.time, series.depths, calibration, job.events
    )
    test = np.isin(winters, TEST)
    events = json.loads((out / "winter_events.json").read_text())
    for j, depth in enumerate(("500", "1000")):
        observed = np.where(test, series.events[:, j], np.nan)
        tables = [contingency_scores(observed, np.where(test, f[:, j], np.nan)) for f in flags]
        row = metrics["ensemble"][depth]
        assert row["hits"] == pytest.approx(np.mean([t.hits for t in tables]))
        assert row["false_alarms"] == pytest.approx(np.mean([t.false_alarms for t in tables]))
        assert row["hits"] + row["misses"] == pytest.approx(row["n_observed_event_days"])
        flagged = np.mean([t.hits + t.false_alarms for t in tables])
        assert row["frequency_bias"] == pytest.approx(flagged / (row["hits"] + row["misses"]))
        for w in TEST:
            counted = flags[:, winters == w, j].sum(axis=1).mean()
            assert events[depth][str(w)]["ensemble"] == pytest.approx(counted)


def _burn() -> None:
    while True:
        pass


@pytest.mark.slow
def test_the_same_job_gives_the_same_model_on_one_process_and_a_busy_cpu(
    world: Path, folds_model: Path
) -> None:
    """Issue 17 item 8: same job, seeds and commit give byte-identical members whatever the
    process count and the machine's load (one torch thread per candidate, seeds per
    candidate, checkpoint bytes independent of the writing process)."""
    job = _job(world, training={"candidates": 4, "folds": 2, "workers": 1}, output="model-one")
    context = multiprocessing.get_context("spawn")
    burners = [context.Process(target=_burn, daemon=True) for _ in range(2)]
    for burner in burners:
        burner.start()
    try:
        assert main(["train", "--job", str(_write(world, "one.yaml", job))]) == 0
    finally:
        for burner in burners:
            burner.terminate()
    one, two = (
        json.loads((d / "ensemble.json").read_text()) for d in (world / "model-one", folds_model)
    )
    assert [m["sha256"] for m in one["members"]] == [m["sha256"] for m in two["members"]]
    assert model_checksum(world / "model-one") == model_checksum(folds_model)


def test_job_rejects_unknown_keys(tmp_path: Path) -> None:
    job = _job(tmp_path)
    job["training"]["epoch"] = 3
    with pytest.raises(JobError, match=r"training\.epoch"):
        load_train_job(_write(tmp_path, "bad.yaml", job))


def test_job_needs_test_winters(tmp_path: Path) -> None:
    job = _job(tmp_path, training={"test_winters": []})
    with pytest.raises(JobError, match="test_winters"):
        load_train_job(_write(tmp_path, "bad.yaml", job))


def _fails(path: Path, capsys: pytest.CaptureFixture[str], out: Path) -> str:
    assert main(["train", "--job", str(path), "--out", str(out)]) == 2
    assert not out.exists()
    return capsys.readouterr().err


@pytest.mark.slow
def test_unknown_depth_name_is_a_clear_error(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = _job(world, observations={"depth_name": "PRES_NOMINAL"})
    err = _fails(_write(world, "bad-depth.yaml", job), capsys, world / "bad1")
    assert "PRES_NOMINAL" in err and "lacaze-duthiers.nc" in err


@pytest.mark.slow
def test_unknown_depth_is_a_clear_error(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = _job(world, observations={"depths": [500, 1500]})
    err = _fails(_write(world, "bad-depth2.yaml", job), capsys, world / "bad2")
    assert "1500" in err


@pytest.mark.slow
def test_all_data_flagged_is_a_clear_error(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = _job(world, observations={"good_flags": [7]})
    err = _fails(_write(world, "flagged.yaml", job), capsys, world / "bad3")
    assert "no usable" in err and "flagged bad" in err


@pytest.mark.slow
def test_no_overlap_is_a_clear_error(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A mooring record from 1980, long before the predictors (2003-2014).
    hours = pd.date_range("1980-01-01", "1980-03-31 23:00", freq="h")
    rng = np.random.default_rng(0)
    rows = [
        {
            "time": t.isoformat(),
            "depth": depth,
            "TEMP": 13.0 + rng.normal(0, 0.02),
            "TEMP_QC": 1,
        }
        for depth in (500.0, 1000.0)
        for t in hours
    ]
    pd.DataFrame(rows).to_csv(world / "old-mooring.csv", index=False)
    job = _job(world, observations={"path": "old-mooring.csv"})
    err = _fails(_write(world, "no-overlap.yaml", job), capsys, world / "bad4")
    assert "no overlap" in err and "1980-01-01" in err
