"""Judge a frozen design on fresh twin worlds nobody tuned to: ``cascadia-ensemble validate``.

Why: the default job was chosen with the demo world's test winters in view, so those winters
no longer test it. For each seed never used during development, validate builds a fresh
twin world (drawing the twin's physical parameters per seed when ``vary_physics``), trains
the frozen job on it, runs it over every catalog of the world and compares with the truth
- the same stages as :func:`cascadia.demo.run_demo`, one folder per seed - then reports per
seed and as mean and range: the test-winter scores of ``metrics.json``, the warm-split
scores when it has them, the run-vs-truth change in winter event days per scenario and the
hindcast before the mooring record against the truth. A seed whose ``seed.json`` records
the same settings is not recomputed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cascadia.demo import DEMO_JOBS, DEMO_WORLDS, JOBS_DIR, TRUTH_PERIODS, DemoError, run_demo
from cascadia.twin.presets import Preset
from cascadia.twin.world import build_world

__all__ = [
    "DEVELOPMENT_SEEDS",
    "TARGETS",
    "VALIDATE_WORLDS",
    "ValidateError",
    "ValidateResult",
    "run_validate",
    "seed_record",
    "target_counts",
]

#: The repository's own worlds: the demo's default (0), the tests' worlds (0-5, 9),
#: benchmarks and tuning tests (7), a training test (100).
_OWN_SEEDS = (0, 1, 2, 3, 4, 5, 7, 9, 100)
#: Seeds validate has scored (docs/validation.md): their scores shaped the designs after them (the
#: density gate; the inputs held to their training range; the background before the
#: record) or were looked at.
_SCORED_SEEDS = (
    *(11, 12, 13, 21, 22, 23, 24, 25, 26, 31, 32, 33),
    *(41, 42, 43, 51, 52, 53, 61, 62, 63, 71, 72, 73),
    *(81, 82, 83, 91, 92, 93, 101, 102, 103, 111, 112, 113),
    *(121, 122, 123),
)
#: Seeds of the twin worlds the repository was developed on. A design judged on them is
#: judged on worlds it was tuned to.
DEVELOPMENT_SEEDS: frozenset[int] = frozenset(_OWN_SEEDS + _SCORED_SEEDS)
#: The world of each preset: the demo's. ``demo``'s mooring spans 1993-2025 and its ERA5
#: starts in 1940, so 1940-1992 is the hindcast before the record; ``tiny``'s mooring
#: starts in 2008, so ERA5's 2004-2007 are before the record.
VALIDATE_WORLDS: dict[str, Preset] = dict(DEMO_WORLDS)
SEED_FILE = "seed.json"
SUMMARY_JSON = "validate.json"
SUMMARY_MD = "validate.md"
DEPTHS = ("500", "1000")
#: Test-winter scores of the deep ensemble taken from ``metrics.json``.
SCORES = ("crps", "nse", "event_hit_week", "coverage_90")
#: Entries of ``metrics.json`` that are not a forecast with scores per depth.
_NOT_BASELINES = ("ensemble", "warm_split", "cold_split", "strong_split")


class ValidateError(ValueError):
    """Validate cannot run: development seed, unknown preset, missing job."""


@dataclass
class ValidateResult:
    """Per-seed records, the summary across seeds and the files written."""

    out: Path
    seeds: dict[int, dict[str, Any]] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    summary: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def _number(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return round(value, 4) if np.isfinite(value) else None


def _gain(model: float | None, baseline: float | None) -> float | None:
    """Fractional CRPS improvement over a baseline (0.3 = 30 % lower CRPS)."""
    if model is None or not baseline:
        return None
    return _number(1.0 - model / baseline)


def _is_forecast(entry: Any) -> bool:
    return isinstance(entry, dict) and any(
        isinstance(entry.get(d), dict) and "crps" in entry[d] for d in DEPTHS
    )


def scores_on_test_winters(metrics: dict[str, Any]) -> dict[str, Any]:
    """Per depth: the ensemble's test-winter scores and its CRPS gain over every baseline.

    Baselines are every forecast of ``metrics.json`` that is neither the ensemble nor one
    of its members (``member_*``) - whatever baselines the training job scored.
    """
    ensemble = metrics.get("ensemble", {})
    baselines = [
        name
        for name, entry in metrics.items()
        if name not in _NOT_BASELINES and not name.startswith("member_") and _is_forecast(entry)
    ]
    out: dict[str, Any] = {}
    for depth in DEPTHS:
        scores = ensemble.get(depth, {})
        row = {name: _number(scores.get(name)) for name in SCORES}
        row["crps_gain"] = {
            b: _gain(row["crps"], _number(metrics[b].get(depth, {}).get("crps"))) for b in baselines
        }
        gains = [g for g in row["crps_gain"].values() if g is not None]
        row["min_crps_gain"] = min(gains) if gains else None
        row["coverage_90_interval"] = _coverage_interval(metrics, depth)
        out[depth] = row
    return out


def _coverage_interval(metrics: dict[str, Any], depth: str) -> dict[str, float | None]:
    """The test coverage's interval over winters, and what calibration winters give.

    Five test winters are few and misses come in winter-long runs: the range of the
    coverage of as many calibration winters is what tells a miscalibrated interval from
    an unlucky draw (``verification.coverage_90`` of ``metrics.json``; models trained
    before it was written have none).
    """
    section = metrics.get("verification", {}).get("coverage_90", {}).get(depth, {})
    drawn = section.get("calibration_winters", {})
    return {
        "ci_low": _number(section.get("ci_low")),
        "ci_high": _number(section.get("ci_high")),
        "calibration_coverage": _number(drawn.get("coverage")),
        "calibration_low": _number(drawn.get("low")),
        "calibration_high": _number(drawn.get("high")),
    }


def split_scores(
    metrics: dict[str, Any], random: dict[str, Any], side: str
) -> dict[str, Any] | None:
    """A warm, cold or strong split's ensemble scores and their CRPS ratio to the random split's.

    Assumes ``metrics.json``'s ``<side>_split`` entry holds forecasts like the top level
    (``{"ensemble": {depth: {metric: value}}}``) or the ensemble's depths directly;
    ``None`` when the model has no such split.
    """
    split = metrics.get(f"{side}_split")
    if not isinstance(split, dict):
        return None
    ensemble = split.get("ensemble", split)
    out = {}
    for depth in DEPTHS:
        scores = ensemble.get(depth, {}) if isinstance(ensemble, dict) else {}
        row = {name: _number(scores.get(name)) for name in (*SCORES, "event_hit_day", "csi")}
        crps = random[depth]["crps"]
        row["crps_ratio_to_random"] = _number(row["crps"] / crps) if row["crps"] and crps else None
        out[depth] = row
    return out


def seed_record(seed_dir: Path, seconds: float) -> dict[str, Any]:
    """One seed's numbers from its model and report folders."""
    metrics = json.loads((seed_dir / "model/metrics.json").read_text(encoding="utf-8"))
    comparison = json.loads((seed_dir / "report/truth_comparison.json").read_text(encoding="utf-8"))
    test = scores_on_test_winters(metrics)
    scenarios = {}
    for name, row in comparison["scenarios"].items():
        run, truth = row["run"], row["truth"]
        change, true_change = run["change"], truth["change"]
        physical = row.get("truth_physical", {}).get("change")
        sampling = row.get("sampling") or {}  # reports before the winter bootstrap: none
        scenarios[name] = {
            "run_change": change,
            "run_model_min": run["model_min"],
            "run_model_max": run["model_max"],
            "truth_change": true_change,
            "truth_physical_change": physical,
            "truth_model_min": truth["model_min"],
            "truth_model_max": truth["model_max"],
            "n_models": run["n_models"],
            # in event days: a relative error means nothing where the truth barely changes
            "error": _number(change - true_change)
            if change is not None and true_change is not None
            else None,
            "relative_error": (
                _number((change - true_change) / abs(true_change))
                if change is not None and true_change
                else None
            ),
            "range_covers_truth": (
                None
                if None in (run["model_min"], run["model_max"], true_change)
                else bool(run["model_min"] <= true_change <= run["model_max"])
            ),
            # how much the change moves with the winters drawn (report/truth.py)
            "truth_change_low": sampling.get("truth_change_95", (None, None))[0],
            "truth_change_high": sampling.get("truth_change_95", (None, None))[1],
            "error_low": sampling.get("error_95", (None, None))[0],
            "error_high": sampling.get("error_95", (None, None))[1],
            "within_30_percent_of_draws": sampling.get("within_30_percent"),
        }
    return {
        "seconds": round(seconds, 1),
        "test_winters": test,
        "warm_split": split_scores(metrics, test, "warm"),
        "cold_split": split_scores(metrics, test, "cold"),
        "strong_split": split_scores(metrics, test, "strong"),
        "event_days_change": {
            "quantity": comparison["quantity"],
            "base_period": comparison["base_period"],
            "future_period": comparison["future_period"],
            "scenarios": scenarios,
        },
        "hindcast": comparison.get("hindcast"),
        "background_before_record": _before_record_check(seed_dir),
        "deep_temperature_change": _deep_temperature(comparison),
    }


def _deep_temperature(comparison: dict[str, Any]) -> dict[str, Any] | None:
    """Per scenario, the stored winter deep-temperature change against the truth's, of the
    combinations whose background after the record is their own ocean, and (``sibling``)
    of those taking a sibling member's (report key ``deep_temperature``); ``None`` for
    reports without it."""
    deep = comparison.get("deep_temperature")
    if not deep:
        return None
    out: dict[str, dict[str, Any]] = {}
    for scenario, groups in deep["scenarios"].items():
        own, sibling = groups.get("model_ocean"), groups.get("sibling_ocean")
        row = out.setdefault(scenario, {})
        if own:
            row.update({"run": own["run_mean"], "truth": own["truth_mean"], "n": own["n"]})
        if sibling:
            row["sibling"] = {
                "run": sibling["run_mean"],
                "truth": sibling["truth_mean"],
                "n": sibling["n"],
            }
    return {"quantity": deep["quantity"], "scenarios": out}


def _before_record_check(seed_dir: Path) -> dict[str, Any] | None:
    """The record back-test of the background before the record, per depth (RMSE of the
    anchored ocean analysis and of a held value, °C; ``targets.json``), or ``None``."""
    targets = json.loads((seed_dir / "model/targets.json").read_text(encoding="utf-8"))
    summary = targets.get("background_before_record")
    if not summary:
        return None
    return {
        depth: {k: _number(v) for k, v in row["back_test"].items() if k != "days"}
        for depth, row in summary["depths"].items()
    }


def _flatten(record: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested record as ``a.b.c`` keys (booleans as 0/1)."""
    out: dict[str, float] = {}
    if isinstance(record, dict):
        for key, value in record.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(record, int | float) and np.isfinite(record):  # bool is an int
        out[prefix[:-1]] = float(record)
    return out


def summarise(records: dict[int, dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Mean, minimum and maximum across seeds of every numeric entry of the records."""
    flat = {seed: _flatten(record) for seed, record in records.items()}
    keys = sorted({k for f in flat.values() for k in f if not k.endswith("seconds")})
    out: dict[str, dict[str, float | int | None]] = {}
    for key in keys:
        values = [f[key] for f in flat.values() if key in f]
        out[key] = {
            "mean": _number(np.mean(values)),
            "min": _number(np.min(values)),
            "max": _number(np.max(values)),
            "n": len(values),
        }
    return out


@dataclass(frozen=True)
class Target:
    """One of the issues' targets (docs/validation.md), read off a seed's flattened record.

    ``key`` may hold ``{depth}``, ``{scenario}`` or ``{source}``: the target is then
    checked for each that a seed has. Met when ``low <= value <= high``; the error
    interval target is met when ``key``'s low and ``high_key``'s value bracket 0.
    """

    label: str
    key: str
    low: float | None = None
    high: float | None = None
    high_key: str | None = None


_CHANGE = "event_days_change.scenarios.{scenario}."
#: The targets of issue 13 (test winters, warm split, projected change, hindcast).
TARGETS: tuple[Target, ...] = (
    Target("test NSE 500 m ≥ 0.85", "test_winters.500.nse", 0.85),
    Target("test NSE 1000 m ≥ 0.7", "test_winters.1000.nse", 0.7),
    Target("test same-week hit {depth} m ≥ 0.9", "test_winters.{depth}.event_hit_week", 0.9),
    Target(
        "test coverage 90 % {depth} m in 0.85–0.95", "test_winters.{depth}.coverage_90", 0.85, 0.95
    ),
    Target(
        "smallest CRPS gain over a baseline 500 m ≥ 0.30", "test_winters.500.min_crps_gain", 0.30
    ),
    Target(
        "warm split CRPS / random {depth} m ≤ 1.25",
        "warm_split.{depth}.crps_ratio_to_random",
        None,
        1.25,
    ),
    Target("event-day change within 30 % of the truth", _CHANGE + "relative_error", -0.3, 0.3),
    Target("run's model range covers the truth", _CHANGE + "range_covers_truth", 1.0),
    Target(
        "run − truth: its 95 % over the winters drawn holds 0",
        _CHANGE + "error_low",
        high_key=_CHANGE + "error_high",
    ),
    Target(
        "hindcast before the record NSE 500 m ≥ 0.8",
        "hindcast.sources.{source}.depths.500.nse",
        0.8,
    ),
    Target(
        "hindcast before the record NSE 1000 m ≥ 0.5",
        "hindcast.sources.{source}.depths.1000.nse",
        0.5,
    ),
)


def _fills(key: str, flat: dict[str, float]) -> list[dict[str, str]]:
    """The ``{depth}``/``{scenario}``/``{source}`` values a record has for ``key``."""
    if "{scenario}" in key:
        prefix = "event_days_change.scenarios."
        return [
            {"scenario": s}
            for s in sorted({k[len(prefix) :].split(".")[0] for k in flat if k.startswith(prefix)})
        ]
    if "{source}" in key:
        prefix = "hindcast.sources."
        return [
            {"source": s}
            for s in sorted({k[len(prefix) :].split(".")[0] for k in flat if k.startswith(prefix)})
        ]
    if "{depth}" in key:
        return [{"depth": d} for d in DEPTHS]
    return [{}]


def target_counts(records: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per target (and depth), how many seeds — or seed-scenarios, seed-sources — meet it."""
    flat = {seed: _flatten(record) for seed, record in records.items()}
    rows: dict[str, dict[str, Any]] = {}
    for target in TARGETS:
        for seed, values in flat.items():
            for fill in _fills(target.key, values):
                value = values.get(target.key.format(**fill))
                if value is None:
                    continue
                if target.high_key is not None:
                    high = values.get(target.high_key.format(**fill))
                    if high is None:
                        continue
                    met = value <= 0 <= high
                else:
                    met = (target.low is None or value >= target.low) and (
                        target.high is None or value <= target.high
                    )
                label = target.label.format(depth=fill.get("depth", ""))
                row = rows.setdefault(label, {"target": label, "met": 0, "of": 0, "missed": []})
                row["of"] += 1
                row["met"] += int(met)
                if not met:
                    where = [f"{v} m" if k == "depth" else v for k, v in fill.items()]
                    row["missed"].append(", ".join([f"seed {seed}", *where]))
    return list(rows.values())


def _settings(preset: str, job: Path, vary_physics: bool) -> dict[str, Any]:
    """What a seed's numbers depend on besides the seed: recorded, compared on resume."""
    text = job.read_text(encoding="utf-8")
    return {
        "preset": preset,
        "world": VALIDATE_WORLDS[preset].name,
        "job": str(job),
        "job_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "vary_physics": vary_physics,
    }


def _check_seeds(seeds: Sequence[int], allow_development_seeds: bool) -> list[int]:
    if not seeds:
        raise ValidateError("give at least one seed (e.g. --seeds 131 132 133)")
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    used = sorted(set(seeds) & DEVELOPMENT_SEEDS)
    if used and not allow_development_seeds:
        raise ValidateError(
            f"seed(s) {used} were used during development (the demo's, the tests' and "
            f"benchmarks' worlds, and the seeds validate has scored: {sorted(DEVELOPMENT_SEEDS)}"
            "): a design is not judged on worlds it was tuned to; choose other seeds"
        )
    return seeds


def _table(result: ValidateResult) -> list[str]:
    """Markdown rows: the headline numbers per seed, then mean and range."""
    seeds = sorted(result.seeds)
    flat = {s: _flatten(result.seeds[s]) for s in seeds}
    scenarios = sorted(
        {
            k.split(".")[2]
            for f in flat.values()
            for k in f
            if k.startswith("event_days_change.scenarios.")
        }
    )
    rows: list[tuple[str, str]] = []
    for depth in DEPTHS:
        t = f"test_winters.{depth}."
        rows += [
            (f"CRPS {depth} m (°C)", t + "crps"),
            (f"min CRPS gain over baselines {depth} m", t + "min_crps_gain"),
            (f"NSE {depth} m", t + "nse"),
            (f"same-week hit {depth} m", t + "event_hit_week"),
            (f"coverage 90 % {depth} m", t + "coverage_90"),
            (
                f"… its 95 % interval over test winters, low {depth} m",
                t + "coverage_90_interval.ci_low",
            ),
            (f"… high {depth} m", t + "coverage_90_interval.ci_high"),
            (
                f"… calibration winters' coverage {depth} m",
                t + "coverage_90_interval.calibration_coverage",
            ),
            (
                f"… as many calibration winters give, low {depth} m",
                t + "coverage_90_interval.calibration_low",
            ),
            (f"… high {depth} m", t + "coverage_90_interval.calibration_high"),
        ]
    for side in ("warm", "cold", "strong"):
        for depth in DEPTHS:
            w = f"{side}_split.{depth}."
            rows += [
                (f"{side} split CRPS / random {depth} m", w + "crps_ratio_to_random"),
                (f"{side} split NSE {depth} m", w + "nse"),
                (f"{side} split same-week hit {depth} m", w + "event_hit_week"),
            ]
    for scenario in scenarios:
        e = f"event_days_change.scenarios.{scenario}."
        rows += [
            (f"{scenario}: run change (event days)", e + "run_change"),
            (f"{scenario}: run model min", e + "run_model_min"),
            (f"{scenario}: run model max", e + "run_model_max"),
            (f"{scenario}: true change", e + "truth_change"),
            (f"{scenario}: … 95 % over the winters drawn, low", e + "truth_change_low"),
            (f"{scenario}: … high", e + "truth_change_high"),
            (f"{scenario}: run − truth (event days)", e + "error"),
            (f"{scenario}: … 95 % over the winters drawn (paired), low", e + "error_low"),
            (f"{scenario}: … high", e + "error_high"),
            (f"{scenario}: relative error", e + "relative_error"),
            (
                f"{scenario}: share of winter draws within 30 % of the truth",
                e + "within_30_percent_of_draws",
            ),
            (f"{scenario}: run range covers truth", e + "range_covers_truth"),
            (f"{scenario}: true change, physical anomaly", e + "truth_physical_change"),
        ]
    for scenario in scenarios:
        d = f"deep_temperature_change.scenarios.{scenario}."
        rows += [
            (f"{scenario}: 500 m winter T change, own ocean, run (°C)", d + "run"),
            (f"{scenario}: 500 m winter T change, own ocean, truth (°C)", d + "truth"),
            (f"{scenario}: 500 m winter T change, sibling's ocean, run (°C)", d + "sibling.run"),
            (
                f"{scenario}: 500 m winter T change, sibling's ocean, truth (°C)",
                d + "sibling.truth",
            ),
        ]
    for depth in DEPTHS:
        b = f"background_before_record.{depth}."
        rows += [
            (f"background back-test RMSE {depth} m: analysis (°C)", b + "rmse_analysis"),
            (f"background back-test RMSE {depth} m: held (°C)", b + "rmse_hold"),
        ]
    hindcast_keys = sorted(
        {k for f in flat.values() for k in f if k.startswith("hindcast.sources.")},
        key=lambda k: [int(p) if p.isdigit() else p for p in k.split(".")],
    )
    for key in hindcast_keys:
        parts = key.split(".")
        if len(parts) != 6:  # hindcast.sources.<source>.depths.<depth>.<score>
            continue
        source, depth, name = parts[2], parts[4], parts[5]
        if name in ("nse", "event_days_correlation"):
            label = "NSE" if name == "nse" else "r(event days)"
            rows.append((f"hindcast pre-record {source} {depth} m {label}", key))
    lines = [
        "| quantity | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | range |",
        "|---|" + "---|" * (len(seeds) + 2),
    ]
    for label, key in rows:
        if not any(key in f for f in flat.values()):
            continue
        cells = [_cell(flat[s].get(key)) for s in seeds]
        stat = result.summary.get(key, {})
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {_cell(stat.get('mean'))} | {_cell(stat.get('min'))} … "
            f"{_cell(stat.get('max'))} |"
        )
    return lines


def _cell(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def run_validate(
    seeds: Iterable[int],
    *,
    preset: str = "demo",
    out: str | Path = "validate",
    job: str | Path | None = None,
    workers: int | None = None,
    vary_physics: bool = True,
    allow_development_seeds: bool = False,
    log: Callable[[str], None] = lambda _: None,
    device: str = "auto",
) -> ValidateResult:
    """Build, train, run and score a fresh twin world per seed; write the summary.

    Parameters
    ----------
    seeds
        Twin world seeds; those in :data:`DEVELOPMENT_SEEDS` are refused unless
        ``allow_development_seeds``.
    preset
        ``demo`` (the real validation) or ``tiny`` (a smoke test; its scores mean nothing).
    out
        Folder: ``seed-<N>/`` per seed (world, cache, model, results.zarr, report) and
        ``validate.json`` + ``validate.md``.
    job
        The frozen training job (default: the preset's job in the repository's ``jobs/``).
    workers
        Dask workers of each run.
    vary_physics
        Draw the twin's physical parameters per seed (passed to
        :func:`cascadia.twin.world.build_world` as ``vary_physics``).
    log
        Progress lines.
    device
        Where each seed's model trains and predicts (``auto``: a GPU when torch sees one).
    """
    if preset not in VALIDATE_WORLDS:
        raise ValidateError(
            f"unknown preset {preset!r}; expected one of: {', '.join(VALIDATE_WORLDS)}"
        )
    seeds = _check_seeds(list(seeds), allow_development_seeds)
    job_file = Path(job).resolve() if job is not None else JOBS_DIR / DEMO_JOBS[preset]
    if not job_file.is_file():
        raise ValidateError(f"training job {job_file} not found")
    if vary_physics and "vary_physics" not in inspect.signature(build_world).parameters:
        raise ValidateError(
            "this twin generator cannot draw its physical parameters per seed "
            "(build_world has no vary_physics); validate with fixed physics (--fixed-physics, "
            "vary_physics=False)"
        )
    settings = _settings(preset, job_file, vary_physics)
    root = Path(out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    result = ValidateResult(out=root)
    for seed in seeds:
        seed_dir = root / f"seed-{seed}"
        marker = seed_dir / SEED_FILE
        done = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None
        if done and done.get("settings") == settings and "record" in done:
            result.seeds[seed] = done["record"]
            result.skipped.append(seed)
            log(f"seed {seed}: already done")
            continue
        if done and done.get("settings") != settings and seed_dir.exists():
            shutil.rmtree(seed_dir)  # another job or world: nothing in it can be reused
        seed_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"seed": seed, "settings": settings}, indent=2) + "\n")
        log(f"seed {seed}: world, training, run, report under {seed_dir}")
        started = time.perf_counter()
        try:
            demo = run_demo(
                preset,
                seed_dir,
                workers=workers,
                seed=seed,
                job=job_file,
                world=VALIDATE_WORLDS[preset],
                world_options={"vary_physics": True} if vary_physics else None,
                truth_periods=TRUTH_PERIODS[preset],
                ceiling=False,
                log=lambda line, s=seed: log(f"seed {s}: {line}"),
                device=device,
            )
        except DemoError as exc:
            raise ValidateError(f"seed {seed}: {exc}") from None
        if not demo.ok:
            failed = demo.summary.count("failed") if demo.summary else "?"
            log(f"seed {seed}: {failed} combination(s) failed; scored on the others")
        record = seed_record(seed_dir, time.perf_counter() - started)
        record["stages"] = {s.name: round(s.seconds, 1) for s in demo.stages}
        marker.write_text(
            json.dumps({"seed": seed, "settings": settings, "record": record}, indent=2) + "\n"
        )
        result.seeds[seed] = record
    result.summary = summarise(result.seeds)
    payload = {
        "settings": settings,
        "seeds": {str(s): r for s, r in sorted(result.seeds.items())},
        "summary": result.summary,
        "targets": target_counts(result.seeds),
    }
    summary_json = root / SUMMARY_JSON
    summary_json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    summary_md = root / SUMMARY_MD
    summary_md.write_text("\n".join(_markdown(result, settings)) + "\n", encoding="utf-8")
    result.files = [summary_json, summary_md]
    return result


def _markdown(result: ValidateResult, settings: dict[str, Any]) -> list[str]:
    first = next(iter(result.seeds.values()), {})
    periods = first.get("event_days_change", {})
    return [
        "# Validation on fresh twin worlds",
        "",
        f"Preset `{settings['preset']}` (world `{settings['world']}`), job `{settings['job']}` "
        f"(sha256 {settings['job_sha256'][:12]}), physics drawn per seed: "
        f"{settings['vary_physics']}; seeds {', '.join(str(s) for s in sorted(result.seeds))}.",
        "",
        "Test-winter scores from each model's `metrics.json` (CRPS gain = 1 - CRPS / "
        "baseline CRPS, the smallest over every baseline); event-day changes "
        f"{periods.get('future_period', '?')} vs {periods.get('base_period', '?')}: "
        f"{periods.get('quantity', '')}, multi-model mean and model range of the run, the "
        "truth's multi-model mean; hindcast before the mooring record against the truth.",
        "",
        *_table(result),
        "",
        "Every number per seed is in `validate.json` (`seeds`), with its mean, minimum and "
        "maximum across seeds (`summary`).",
        "",
        "## Against the targets",
        "",
        "How many seeds (seed-scenarios for the change, seed-reanalyses for the hindcast) "
        "meet each of issue 13's targets (`validate.json` → `targets`). The change's 30 % "
        "band is often narrower than the truth's own interval over the winters drawn "
        "(docs/run.md): read it with the interval row.",
        "",
        "| target | met | missed |",
        "|---|---|---|",
        *(
            f"| {row['target']} | {row['met']} of {row['of']} | {', '.join(row['missed']) or '–'} |"
            for row in target_counts(result.seeds)
        ),
    ]
