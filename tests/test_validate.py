"""``cascadia-ensemble validate`` end to end on one tiny seed: validate.json's structure and
numbers, the pre-record hindcast score, resuming, and the refusal of development seeds.

The seed is the session's tiny demo (tests/conftest.py), laid out as validate's ``seed-0``:
validate finds its world, model and run done and scores them (the stages that would
rebuild them are the demo's, tested in tests/test_demo.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cascadia.cli import main
from cascadia.validate import DEVELOPMENT_SEEDS, ValidateError, run_validate, split_scores

pytestmark = pytest.mark.slow

#: the tiny demo's world (listed in DEVELOPMENT_SEEDS: this test is development)
SEED = 0
SCENARIOS = {"ssp126", "ssp245", "ssp585"}


@pytest.fixture(scope="module")
def validated(tiny_demo: dict[str, Any]) -> dict[str, Any]:
    out = tiny_demo["base"]
    args = ["validate", "--seeds", str(SEED), "--preset", "tiny", "--out", str(out)]
    args += ["--workers", "2", "--fixed-physics", "--allow-development-seeds"]
    started = time.perf_counter()
    assert main(args) == 0
    first = time.perf_counter() - started
    marker = out / f"seed-{SEED}" / "seed.json"
    stamp = marker.stat().st_mtime_ns
    started = time.perf_counter()
    again = run_validate(
        [SEED],
        preset="tiny",
        out=out,
        workers=2,
        vary_physics=False,
        allow_development_seeds=True,
    )
    second = time.perf_counter() - started
    print(f"validate: first call {first:.0f} s, second {second:.1f} s")
    return {
        "out": out,
        "again": again,
        "second": second,
        "marker_unchanged": marker.stat().st_mtime_ns == stamp,
        "payload": json.loads((out / "validate.json").read_text()),
    }


def test_validate_json_holds_the_scores_changes_and_hindcast_of_the_seed(validated) -> None:
    payload = validated["payload"]
    assert payload["settings"]["preset"] == "tiny"
    assert payload["settings"]["vary_physics"] is False
    record = payload["seeds"][str(SEED)]
    # the demo's world, model and run were found done: no stage rebuilt them
    assert record["stages"]["train"] < 10 and record["stages"]["synth"] < 10
    for depth in ("500", "1000"):
        scores = record["test_winters"][depth]
        assert 0 < scores["crps"] < 1.0  # °C: a trained model on a deep-water series
        assert 0 <= scores["coverage_90"] <= 1 and 0 <= scores["event_hit_week"] <= 1
        assert set(scores["crps_gain"]) >= {"climatology", "persistence", "index_regression"}
        assert scores["min_crps_gain"] == min(scores["crps_gain"].values())
        # the coverage read against what as many calibration winters give
        interval = scores["coverage_90_interval"]
        assert interval["calibration_low"] <= interval["calibration_coverage"]
        assert interval["calibration_coverage"] <= interval["calibration_high"]
    changes = record["event_days_change"]
    assert changes["base_period"] == "2005-2014" and changes["future_period"] == "2015-2016"
    assert set(changes["scenarios"]) == SCENARIOS
    for row in changes["scenarios"].values():
        assert row["n_models"] >= 3
        # at most a whole Nov-Apr season of change
        assert abs(row["truth_change"]) <= 182 and abs(row["run_change"]) <= 182
        assert row["run_model_min"] <= row["run_change"] <= row["run_model_max"]
        assert row["error"] == pytest.approx(row["run_change"] - row["truth_change"])
        # how the change moves with the winters drawn: the point inside its interval
        assert row["truth_change_low"] <= row["truth_change"] <= row["truth_change_high"]
        assert row["error_low"] <= row["error_high"]
        assert 0 <= row["within_30_percent_of_draws"] <= 1
    # the first members' own ocean after the record: the stored deep-temperature change
    deep = record["deep_temperature_change"]
    assert set(deep["scenarios"]) == SCENARIOS
    for scenario, row in deep["scenarios"].items():
        # three models' first members, and the two RCMs (ssp126 and ssp585) with their
        # driving model's ocean
        assert row["n"] == (3 if scenario == "ssp245" else 5), scenario
        assert abs(row["run"] - row["truth"]) < 0.5  # °C, two winters after a decade
    # ERA5 2004-2014 with the mooring from 2008: the hindcast of 2004-2007 scored on the truth
    hindcast = record["hindcast"]
    assert hindcast["before"] == 2008 and hindcast["first_day"] == "2004-01-01"
    era5 = hindcast["sources"]["ERA5"]["depths"]
    assert era5["500"]["n_days"] == 4 * 365 + 1  # 2004 is a leap year
    assert -10 < era5["500"]["nse"] <= 1
    # summary: mean = min = max with one seed
    summary = payload["summary"]["test_winters.500.crps"]
    assert summary["n"] == 1 and summary["mean"] == summary["min"] == summary["max"]
    md = (validated["out"] / "validate.md").read_text()
    assert f"seed {SEED}" in md and "ssp585: true change" in md
    assert "ssp585: 500 m winter T change, own ocean, run" in md
    assert "coverage 90 % 500 m" in md and "as many calibration winters give" in md
    assert "ssp585: run − truth (event days)" in md
    assert "ssp585: share of winter draws within 30 % of the truth" in md
    # the targets counted: the change's over the seed's scenarios
    targets = {row["target"]: row for row in payload["targets"]}
    within = targets["event-day change within 30 % of the truth"]
    errors = [r["relative_error"] for r in changes["scenarios"].values()]
    errors = [e for e in errors if e is not None]  # none where the truth does not change
    assert within["of"] == len(errors) >= 1
    assert within["met"] == sum(abs(e) <= 0.3 for e in errors)
    assert within["met"] == len(errors) - len(within["missed"])
    nse = targets["test NSE 500 m ≥ 0.85"]
    assert nse["of"] == 1 and nse["met"] == int(record["test_winters"]["500"]["nse"] >= 0.85)
    assert targets["test same-week hit 1000 m ≥ 0.9"]["of"] == 1
    assert "## Against the targets" in md and "event-day change within 30 %" in md


def test_a_second_call_skips_the_done_seed(validated) -> None:
    again = validated["again"]
    assert again.skipped == [SEED]
    assert validated["marker_unchanged"]
    assert validated["second"] < 30
    assert again.seeds[SEED] == validated["payload"]["seeds"][str(SEED)]


def test_development_seeds_are_refused(tmp_path: Path, capsys) -> None:
    assert 0 in DEVELOPMENT_SEEDS  # the demo's default world
    # the seeds validate has scored (11-13 ... 121-123) shaped the designs after them or were
    # looked at: development seeds too
    used = r"seed\(s\) \[0, 11, 23, 53, 62, 73, 83, 92, 102, 111, 122\] were used during"
    with pytest.raises(ValidateError, match=used):
        run_validate(
            [0, 11, 23, 53, 62, 73, 83, 92, 102, 111, 122, 131], preset="tiny", out=tmp_path
        )
    assert main(["validate", "--seeds", "3", "--preset", "tiny", "--out", str(tmp_path)]) == 2
    assert "used during development" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_split_scores_read_each_side_against_the_random_split() -> None:
    """The warm and cold splits' ensemble scores, their CRPS over the random split's."""
    random = {"500": {"crps": 0.04}, "1000": {"crps": 0.02}}
    rows = {"500": {"crps": 0.05, "nse": 0.6, "event_hit_week": 0.5, "coverage_90": 0.8}}
    rows["1000"] = {"crps": 0.03, "nse": 0.4, "event_hit_week": None, "coverage_90": 0.9}
    metrics = {"cold_split": {"ensemble": rows, "climatology": {}}}
    cold = split_scores(metrics, random, "cold")
    assert cold is not None
    assert cold["500"]["crps_ratio_to_random"] == pytest.approx(1.25)
    assert cold["1000"]["crps_ratio_to_random"] == pytest.approx(1.5)
    assert cold["500"]["nse"] == 0.6 and cold["1000"]["event_hit_week"] is None
    assert split_scores(metrics, random, "warm") is None  # a model without a warm split
