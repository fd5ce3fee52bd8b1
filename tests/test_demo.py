"""``run_demo`` end to end on the tiny twin: the four outputs, resumability, and the truth
comparison checked against an independent computation from the two stores."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers import trailing_background_numpy

from cascadia.demo import TRUTH_PERIODS, run_demo
from cascadia.mooring.events import EventConfig, event_days
from cascadia.run.store import open_cube

pytestmark = pytest.mark.slow

SCENARIO = "ssp585"
DEPTH = 500.0


def _tree(root: Path) -> dict[str, int]:
    """Modification times of every file under ``root`` (nanoseconds)."""
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def demo(tiny_demo: dict[str, Any]) -> dict[str, Any]:
    """The session's tiny demo (tests/conftest.py), then a second call over it."""
    out = tiny_demo["out"]
    before = {name: _tree(out / name) for name in ("world", "model", "results.zarr")}
    started = time.perf_counter()
    second = run_demo("tiny", out, workers=2)
    second_seconds = time.perf_counter() - started
    after = {name: _tree(out / name) for name in ("world", "model", "results.zarr")}
    print(f"second run_demo {second_seconds:.1f} s")
    return {
        "out": out,
        "first": tiny_demo["first"],
        "second": second,
        "second_seconds": second_seconds,
        "before": before,
        "after": after,
    }


def test_the_four_outputs_exist_and_every_combination_is_done(demo) -> None:
    out, first = demo["out"], demo["first"]
    for name in ("world/world.json", "model/timing.json", "results.zarr/.zmetadata"):
        assert (out / name).is_file(), name
    for name in ("report.html", "hindcast-temperature.png", "scenarios.png", "truth-change.png"):
        assert (out / "report" / name).stat().st_size > 1000, name
    assert [s.name for s in first.stages] == ["synth", "train", "run", "report"]
    assert not any(s.skipped for s in first.stages[:3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.open_zarr(out / "results.zarr").close()
        ds = open_cube(str(out / "results.zarr"))
    status = [str(v) for v in ds["status"].values.ravel()]
    listed = [v for v in status if v != "not_in_catalog"]
    assert len(listed) == len(first.summary.results) >= 20
    assert set(listed) == {"done"}
    assert first.ok
    report = (out / "report/report.html").read_text()
    assert "Against the twin's truth" in report and SCENARIO in report
    # both truths are described in words, not as a mapping's repr
    assert "truth_physical: the same rule on the physical anomaly" in report
    assert "{&#x27;truth" not in report and "{'truth" not in report
    # the report says where the deep temperature is anomaly-only and shows the OOD scores
    assert "anomaly-only" in report and "Out-of-distribution inputs" in report
    assert (out / "report/ood.png").stat().st_size > 1000
    # The skill ceiling of the twin next to the model, on the model's own test days.
    ceiling = json.loads((out / "report/ceiling/ceiling.json").read_text())
    metrics = json.loads((out / "model/metrics.json").read_text())
    rows = ceiling["depths"]["500"]["rows"]
    assert rows["ensemble"]["crps"] == pytest.approx(metrics["ensemble"]["500"]["crps"], abs=1e-5)
    assert rows["full_ocean"]["crps"] < rows["background_only"]["crps"]


def test_the_stored_event_days_are_the_members_mean_count(demo) -> None:
    """The tiny job is cross-fitted with one member per fold: its event level was fitted on
    single members' out-of-fold forecasts, so every combination's per-winter event days
    and events are the mean of its members' counts at that level (NaN where it has no
    winter), and the store says so."""
    out = demo["out"]
    calibration = json.loads((out / "model/calibration.json").read_text())
    assert calibration["level_fitted_members"] == 1
    ds = xr.open_zarr(out / "results.zarr")
    assert ds.attrs["event_rule"]  # the rule's settings stay recorded
    assert "mean of the members' counts" in ds["event_days"].attrs["comment"]
    done = (ds["status"] == 2).values  # CF flag 2: done
    assert done.sum() >= 20
    compared = 0
    for name in ("event_days", "event_count"):
        stored = ds[name].values[done]
        members = ds[f"member_{name}"].values[done]
        # a winter without a run is NaN for every member alike, and for the ensemble
        np.testing.assert_allclose(stored, members.mean(axis=2), atol=1e-6)
        compared += int(np.isfinite(stored).sum())
    assert compared > 100


def test_a_second_call_skips_synth_train_and_run_and_rewrites_nothing(demo) -> None:
    second = demo["second"]
    assert [s.skipped for s in second.stages] == [True, True, True, False]
    assert second.summary.count("skipped") == len(second.summary.results)
    assert demo["after"] == demo["before"]
    assert demo["second_seconds"] < 60, demo["second_seconds"]


def _season_counts(flags: np.ndarray, finite: np.ndarray, months, years) -> pd.Series:
    """Event days per winter over its Nov-Apr season, scaled to the standard season."""
    label = years + (months >= 11)
    season = np.isin(months, [11, 12, 1, 2, 3, 4])
    out = {}
    for w in np.unique(label):
        full = (pd.Timestamp(w, 5, 1) - pd.Timestamp(w - 1, 11, 1)).days
        have = (season & finite)[label == w].sum()
        n = (flags & season)[label == w].sum()
        out[int(w)] = n * full / have if have >= 0.9 * full else np.nan
    return pd.Series(out)


def _run_winter_event_days(ds: xr.Dataset, source: str, member: str) -> pd.Series:
    """Per-winter event days at DEPTH as the store counts them (its Nov-Apr ``event_days``),
    the scenario joined to its historical run (historical winters before the scenario's
    first winter), scaled to the full standard season by the joined series' covered days."""
    one = ds.sel(source_id=source, member_id=member)
    hist, scen = one.sel(experiment="historical"), one.sel(experiment=SCENARIO)
    daily_h = hist["temperature_mean"].notnull().any("depth").values
    daily_s = scen["temperature_mean"].notnull().any("depth").values
    cut = int(np.flatnonzero(daily_s)[0])
    covered = np.concatenate([daily_h[:cut], daily_s[cut:]])
    days = pd.DatetimeIndex(ds["time"].values)
    first_winter = days[cut].year + (days[cut].month >= 11)
    winters = ds["winter"].values
    counts = np.where(
        winters < first_winter,
        hist["event_days"].sel(depth=DEPTH).values,
        scen["event_days"].sel(depth=DEPTH).values,
    )
    label = days.year + (days.month >= 11)
    season = np.isin(days.month, [11, 12, 1, 2, 3, 4])
    out = {}
    for w, n in zip(winters, counts, strict=True):
        full = (pd.Timestamp(w, 5, 1) - pd.Timestamp(w - 1, 11, 1)).days
        have = (season & covered)[label == w].sum()
        out[int(w)] = n * full / have if have >= 0.9 * full else np.nan
    return pd.Series(out)


def _truth_winter_event_days(
    truth: xr.Dataset, member: str, events: EventConfig, physical: bool
) -> pd.Series:
    """The truth's event days against the trailing running quantile of the true temperature,
    or on the physical anomaly (temperature - background_temperature)."""
    one = truth.sel(member_id=member, depth=DEPTH)
    joined = one.sel(experiment_id="historical").combine_first(one.sel(experiment_id=SCENARIO))
    temperature = joined["temperature"].load()
    background = (
        joined["background_temperature"].load()
        if physical
        else temperature.copy(data=trailing_background_numpy(temperature.values))
    )
    anomaly = temperature - background
    flags = event_days(anomaly, config=events).values
    months = anomaly["time"].dt.month.values
    years = anomaly["time"].dt.year.values
    return _season_counts(flags, np.isfinite(anomaly.values), months, years)


def _change(per_model: dict[str, list[pd.Series]]) -> dict[str, float]:
    """Members averaged, then period means (both winters needed) and their change."""
    (b0, b1), (f0, f1) = TRUTH_PERIODS["tiny"]
    changes = {}
    for source, members in per_model.items():
        mean = pd.concat(members, axis=1).mean(axis=1)
        base = mean.reindex(range(b0, b1 + 1))
        future = mean.reindex(range(f0, f1 + 1))
        # a period mean needs 80 % of its winters (cascadia.run.spread's rule)
        if base.count() >= 0.8 * base.size and future.count() >= 0.8 * future.size:
            changes[source] = future.mean() - base.mean()
    return changes


def test_truth_comparison_equals_an_independent_computation(demo) -> None:
    out = demo["out"]
    table = json.loads((out / "report/truth_comparison.json").read_text())
    row = table["scenarios"][SCENARIO]
    events = EventConfig.model_validate(table["event_rule"])
    ds = open_cube(str(out / "results.zarr"))
    index = pd.read_csv(out / "world/truth/index.csv")
    status = ds["status"].sel(experiment=SCENARIO).to_pandas()
    run_models: dict[str, list[pd.Series]] = {}
    true_models: dict[str, list[pd.Series]] = {}
    physical_models: dict[str, list[pd.Series]] = {}
    for source in status.index:
        for member in status.columns:
            if str(status.loc[source, member]) != "done":
                continue
            run_models.setdefault(source, []).append(_run_winter_event_days(ds, source, member))
            rcm = source.rsplit("_", 1)[-1]
            rows = index[(index.experiment_id == SCENARIO) & (index.member_id == member)]
            path = rows[rows.source_id.isin([source, rcm])].path.iloc[0]
            truth = xr.open_zarr(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))
            true_models.setdefault(source, []).append(
                _truth_winter_event_days(truth, member, events, physical=False)
            )
            physical_models.setdefault(source, []).append(
                _truth_winter_event_days(truth, member, events, physical=True)
            )
    run = _change(run_models)
    true = _change(true_models)
    physical = _change(physical_models)
    assert len(run) == row["run"]["n_models"] >= 3
    assert row["run"]["change"] == pytest.approx(np.mean(list(run.values())), abs=2e-3)
    assert row["run"]["model_min"] == pytest.approx(min(run.values()), abs=2e-3)
    assert row["run"]["model_max"] == pytest.approx(max(run.values()), abs=2e-3)
    assert row["truth"]["change"] == pytest.approx(np.mean(list(true.values())), abs=2e-3)
    assert row["truth"]["model_min"] == pytest.approx(min(true.values()), abs=2e-3)
    assert row["truth"]["model_max"] == pytest.approx(max(true.values()), abs=2e-3)
    assert row["truth_physical"]["change"] == pytest.approx(
        np.mean(list(physical.values())), abs=2e-3
    )
    # the truth is a different thing than the run: not trivially the same numbers
    assert row["truth"]["per_model"] != row["run"]["per_model"]
