"""Spread statistics across members and models, checked against a plain-numpy re-derivation.

The results store is filled through ``cascadia.run.store`` with synthetic numbers the test
controls: three models (one noleap, without 29 February) x two members x historical and two
scenarios, a reanalysis, a failed combination whose data is written (and must be ignored),
a missing historical run (its scenario members lose their baseline) and a winter with a
40-day gap. Every statistic read back from the store's cube view (``open_cube``: the root a
plain ``xr.open_zarr`` opens, its ``spread`` group merged in) must equal the numbers
computed below with loops, ``np.mean``, ``np.std`` and ``np.percentile`` only.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest
import s3_server
import xarray as xr
from helpers import FullDiskFileSystem

from cascadia.report import background_summary, ood_by_period, write_run_report
from cascadia.run import spread
from cascadia.run.spread import SpreadError, SpreadOptions, spread_statistics, write_spread
from cascadia.run.store import (
    SPREAD_GROUP,
    WINTERS_GROUP,
    ResultsSchema,
    initialise_store,
    mark_failed,
    open_cube,
    open_schema,
    write_combo,
)

s3_options = s3_server.s3_options

TIME = pd.date_range("1992-11-01", "2100-12-31", freq="D").values
WINTERS = tuple(range(1993, 2101))
ENSEMBLE = 3
WINTER_DEPTH = ("winter", "depth")
HIST = "historical"
SCENARIOS = ("ssp245", "ssp585")
MODELS = ("MOD-A", "MOD-B", "MOD-C")  # MOD-B has a noleap calendar
MEMBERS = ("r1", "r2")
REANALYSIS = ("reanalysis", "ERA5", "r1")
FAILED = ("ssp585", "MOD-C", "r2")
MISSING = ("historical", "MOD-C", "r2")
GAP = ("ssp245", "MOD-A", "r1")
GAP_DAYS = (np.datetime64("2050-01-01"), np.datetime64("2050-02-09"))  # 40 of 181 days
SCENARIO_START = np.datetime64("2015-01-01")
RECORD_END = np.datetime64("2023-12-31")  # the mooring record; the background is held after
PERIODS = ((1993, 2022), (2041, 2060), (2080, 2100))
EVENT_BASES = ("event_days", "event_count", "peak_intensity")
PERCENTILES = (10.0, 50.0, 90.0)
# event-day trend per winter after 2015: models A and B lose days, C gains under ssp585
SLOPES = {
    ("ssp245", "MOD-A"): -0.10,
    ("ssp245", "MOD-B"): -0.05,
    ("ssp245", "MOD-C"): -0.02,
    ("ssp585", "MOD-A"): -0.20,
    ("ssp585", "MOD-B"): -0.15,
    ("ssp585", "MOD-C"): 0.05,
}
COMBOS = (
    *[(e, s, m) for e in (HIST, *SCENARIOS) for s in MODELS for m in MEMBERS],
    REANALYSIS,
)
WRITTEN = [c for c in COMBOS if c != MISSING]  # the failed one is written, then failed
DONE = [c for c in WRITTEN if c != FAILED]

Source = dict[str, Any]  # time, temperature (time, depth), events {name: (winter, depth)}


def _span(combo: tuple[str, str, str]) -> tuple[str, str]:
    if combo[0] == HIST:
        return "1992-11-01", "2014-12-31"
    if combo[0] in SCENARIOS:
        return "2015-01-01", "2100-12-31"
    return "1992-11-01", "2023-12-31"


def _source(combo: tuple[str, str, str], seed: int) -> Source:
    rng = np.random.default_rng(seed)
    time = pd.date_range(*_span(combo), freq="D")
    if combo[1] == "MOD-B":
        time = time[~((time.month == 2) & (time.day == 29))]
    years = time.year + time.day_of_year / 366.0 - 1993.0
    warming = {"ssp245": 0.01, "ssp585": 0.03}.get(combo[0], 0.008)
    offset = {"MOD-A": 0.0, "MOD-B": 0.4, "MOD-C": -0.3, "ERA5": 0.1}[combo[1]]
    season = 0.3 * np.cos(2 * np.pi * time.day_of_year / 365.25)
    temp = np.stack(
        [
            13.2 + offset + warming * years + season + rng.normal(0, 0.05, len(time)),
            12.9 + offset + 0.5 * warming * years + 0.2 * season + rng.normal(0, 0.03, len(time)),
        ],
        axis=1,
    ).astype(np.float32)
    if combo == GAP:
        temp[(time >= GAP_DAYS[0]) & (time <= GAP_DAYS[1])] = np.nan
    w = np.asarray(WINTERS)
    first = int(time[0].year + (time[0].month >= 11))
    last = int(time[-1].year + (time[-1].month >= 11))
    inside = (w >= first) & (w <= last)
    slope = SLOPES.get(combo[:2], 0.0)
    mean_days = np.clip(20.0 + slope * (w - 2015), 0.5, None)
    days = rng.poisson(mean_days[:, None], (len(w), 2)).astype(np.float32)
    count = np.minimum(days, rng.integers(1, 4, days.shape)).astype(np.float32)
    peak = np.where(days > 0, rng.uniform(0.2, 1.5, days.shape), np.nan).astype(np.float32)
    events = {"event_days": days, "event_count": count, "peak_intensity": peak}
    events = {k: np.where(inside[:, None], v, np.nan).astype(np.float32) for k, v in events.items()}
    if combo == FAILED:  # a leak of this combination into any statistic is obvious
        temp = temp + 100.0
        events = {k: v + 999.0 for k, v in events.items()}
    # the model's background: warming inside the mooring record, held after it
    inside = time <= RECORD_END
    held = np.minimum(years, float(years[inside][-1]) if inside.any() else 31.0)
    background = np.stack([13.0 + 0.03 * held, 12.8 + 0.015 * held], axis=1).astype(np.float32)
    return {
        "time": time.values,
        "temperature": temp,
        "anomaly": (temp - background).astype(np.float32),
        "background": background,
        "kind": np.repeat(np.where(inside, 0.0, 1.0)[:, None], 2, axis=1).astype(np.float32),
        "events": events,
        # out-of-distribution days grow with the scenario's warming after 2015
        "ood": np.where(
            (w >= first) & (w <= last), np.clip(warming * 10 * (w - 2015), 0, 1), np.nan
        ).astype(np.float32),
    }


def _dataset(src: Source, schema: ResultsSchema) -> xr.Dataset:
    """The store's result variables: ours from ``src``, the others filled with a constant
    (member event statistics = ours -1 / 0 / +1 across the deep ensemble)."""
    daily = {
        "temperature_mean": "temperature",
        "temperature_anomaly_mean": "anomaly",
        "background_temperature": "background",
        "background_kind": "kind",
    }
    ours = {**dict.fromkeys(daily, ("time", "depth")), **dict.fromkeys(src["events"], WINTER_DEPTH)}
    data = {**{k: src[v] for k, v in daily.items()}, **src["events"], "ood_fraction": src["ood"]}
    ours["ood_fraction"] = ("winter",)
    sizes = {"time": len(src["time"]), "depth": 2, "winter": len(WINTERS), "ensemble": ENSEMBLE}
    sizes["quantile"] = len(schema.quantiles)
    variables: dict[str, Any] = {k: (dims, data[k]) for k, dims in ours.items()}
    spread = np.arange(ENSEMBLE, dtype=np.float32) - 1.0
    for name, (dims, _) in schema.variables.items():
        if name in variables:
            continue
        if name.startswith("member_") and name[len("member_") :] in data:
            base = data[name[len("member_") :]]
            variables[name] = (dims, base[:, None, :] + spread[None, :, None])
            continue
        variables[name] = (dims, np.full([sizes[d] for d in dims], 0.5, np.float32))
    coords = {"time": src["time"], "depth": [500.0, 1000.0], "winter": list(WINTERS)}
    return xr.Dataset(variables, coords=coords)


PROVENANCE = {
    "fingerprint": "f",
    "model_checkpoint_hash": "h",
    "package_version": "0",
    "catalog_entry": "c",
    "selection": "s",
}


def _schema(combos: tuple[tuple[str, str, str], ...] = COMBOS) -> ResultsSchema:
    return ResultsSchema(
        combos=combos,
        time=TIME,
        quantiles=(0.5,),
        n_members=ENSEMBLE,
        winters=WINTERS,
        member_series=False,
    )


def _fill_store(path: str, sources: dict[tuple[str, str, str], Source]) -> None:
    schema = _schema()
    initialise_store(path, schema, {"institution": "spread test"})
    for combo, src in sources.items():
        write_combo(path, schema, combo, _dataset(src, schema), PROVENANCE)
    mark_failed(path, FAILED, "inference diverged")


def _open_strict(path: str, **kwargs: Any) -> xr.Dataset:
    """The cube view, after the root and the spread group open without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.open_zarr(path, **kwargs).close()
        xr.open_zarr(path, group="spread", **kwargs).close()
        ds = open_cube(path, kwargs.get("storage_options"))
        ds.load()
    return ds


@pytest.fixture(scope="module")
def sources() -> dict[tuple[str, str, str], Source]:
    return {c: _source(c, seed=i) for i, c in enumerate(WRITTEN)}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, sources: dict) -> str:
    path = str(tmp_path_factory.mktemp("spread") / "results.zarr")
    _fill_store(path, sources)
    write_spread(path)
    return path


@pytest.fixture(scope="module")
def results(store: str) -> xr.Dataset:
    return _open_strict(store)


# ---------------------------------------------------------------- the independent numpy side


def _joined(combo: tuple[str, str, str], sources: dict) -> Source:
    """Scenario = historical before 2015-01-01 + scenario from then (CMIP6 convention)."""
    src = sources[combo]
    sibling = (HIST, combo[1], combo[2])
    if combo[0] not in SCENARIOS or sibling not in DONE:
        return src
    hist = sources[sibling]
    before = hist["time"] < SCENARIO_START
    w = np.asarray(WINTERS)[:, None]
    return {
        "time": np.concatenate([hist["time"][before], src["time"]]),
        "temperature": np.concatenate([hist["temperature"][before], src["temperature"]]),
        "anomaly": np.concatenate([hist["anomaly"][before], src["anomaly"]]),
        "events": {
            k: np.where(w < 2015, hist["events"][k], src["events"][k]) for k in src["events"]
        },
    }


def _winter_values(src: Source) -> dict[str, np.ndarray]:
    """Per winter and depth: Nov-Apr mean (>= 90 % of days), event stats of covered winters."""
    daily = {"winter_temperature": "temperature", "winter_temperature_anomaly": "anomaly"}
    out = {k: np.full((len(WINTERS), 2), np.nan) for k in (*daily, *src["events"])}
    time = src["time"]
    for i, year in enumerate(WINTERS):
        season = pd.date_range(f"{year - 1}-11-01", f"{year}-04-30", freq="D").values
        pos = np.minimum(np.searchsorted(time, season), len(time) - 1)
        present = time[pos] == season
        for name, key in daily.items():
            values = np.where(present[:, None], src[key][pos], np.nan)
            for depth in range(2):
                ok = values[~np.isnan(values[:, depth]), depth].astype(np.float64)
                if len(ok) >= 0.9 * len(season):
                    out[name][i, depth] = np.mean(ok)
        covered = int(np.sum(~np.isnan(values).all(axis=1)))
        if covered < 0.9 * len(season):
            continue
        for name, per_winter in src["events"].items():
            value = per_winter[i].astype(np.float64)
            if name == "event_days":
                value = value * len(season) / covered
            out[name][i] = value
    return out


def _labels(results: xr.Dataset, dim: str) -> list[str]:
    return [str(x) for x in results[dim].values]


@pytest.fixture(scope="module")
def expected(sources: dict, results: xr.Dataset) -> dict[str, np.ndarray]:
    per_combo = {c: _winter_values(_joined(c, sources)) for c in DONE}
    exps, models = _labels(results, "experiment"), _labels(results, "source_id")
    out: dict[str, np.ndarray] = {}
    k = 2  # depths
    bases = ("winter_temperature", "winter_temperature_anomaly", *EVENT_BASES)
    for base in bases:
        model = np.full((len(exps), len(models), len(WINTERS), k), np.nan)
        mm = {s: np.full((len(exps), len(WINTERS), k), np.nan) for s in ("mean", "std", "n")}
        pct = np.full((len(exps), len(PERCENTILES), len(WINTERS), k), np.nan)
        for e, exp in enumerate(exps):
            for s, src in enumerate(models):
                for w in range(len(WINTERS)):
                    for d in range(k):
                        vals = [
                            per_combo[(exp, src, m)][base][w, d]
                            for m in MEMBERS
                            if (exp, src, m) in per_combo
                        ]
                        vals = [v for v in vals if not np.isnan(v)]
                        if vals:
                            model[e, s, w, d] = np.mean(vals)
            for w in range(len(WINTERS)):
                for d in range(k):
                    vals = model[e, :, w, d][~np.isnan(model[e, :, w, d])]
                    mm["n"][e, w, d] = len(vals)
                    if len(vals):
                        mm["mean"][e, w, d] = np.mean(vals)
                        mm["std"][e, w, d] = np.std(vals)
                        pct[e, :, w, d] = np.percentile(vals, PERCENTILES)
        out[f"{base}_model_mean"] = model
        out[f"{base}_multimodel_mean"] = mm["mean"]
        out[f"{base}_multimodel_std"] = mm["std"]
        out[f"{base}_multimodel_count"] = mm["n"]
        out[f"{base}_multimodel_percentile"] = pct
        if base in ("winter_temperature", "winter_temperature_anomaly", "event_days"):
            out.update(_expected_periods(base, per_combo, exps, models, k))
    # after the record (both future periods) the temperature change is the anomaly's
    future = [PERIODS.index(p) for p in PERIODS[1:]]
    for stat in ("model_change", "multimodel_change", "model_agreement", "model_count"):
        absolute = out[f"winter_temperature_period_{stat}"]
        absolute[..., future, :] = out[f"winter_temperature_anomaly_period_{stat}"][..., future, :]
    return out


def _expected_periods(
    base: str, per_combo: dict, exps: list[str], models: list[str], k: int
) -> dict[str, np.ndarray]:
    w = np.asarray(WINTERS)
    n_e, n_s, n_p = len(exps), len(models), len(PERIODS)
    model = np.full((n_e, n_s, n_p, k), np.nan)
    for e, exp in enumerate(exps):
        for s, src in enumerate(models):
            for p, (first, last) in enumerate(PERIODS):
                for d in range(k):
                    member_means = []
                    for m in MEMBERS:
                        if (exp, src, m) not in per_combo:
                            continue
                        series = per_combo[(exp, src, m)][base][(w >= first) & (w <= last), d]
                        ok = series[~np.isnan(series)]
                        if len(ok) >= 0.8 * (last - first + 1):
                            member_means.append(np.mean(ok))
                    if member_means:
                        model[e, s, p, d] = np.mean(member_means)
    change = model - model[:, :, :1]
    change[:, :, 0] = np.nan
    mm_change = np.full((n_e, n_p, k), np.nan)
    agreement = np.full((n_e, n_p, k), np.nan)
    n_models = np.zeros((n_e, n_p, k))
    mm_mean = np.full((n_e, n_p, k), np.nan)
    for e in range(n_e):
        for p in range(n_p):
            for d in range(k):
                means = model[e, :, p, d][~np.isnan(model[e, :, p, d])]
                if len(means):
                    mm_mean[e, p, d] = np.mean(means)
                changes = change[e, :, p, d][~np.isnan(change[e, :, p, d])]
                n_models[e, p, d] = len(changes)
                if len(changes):
                    mm_change[e, p, d] = np.mean(changes)
                    # xclim's agreement: the largest of the positive, negative, zero fractions
                    agreement[e, p, d] = max(
                        np.mean(changes > 0), np.mean(changes < 0), np.mean(changes == 0)
                    )
    return {
        f"{base}_period_model_mean": model,
        f"{base}_period_multimodel_mean": mm_mean,
        f"{base}_period_model_change": change,
        f"{base}_period_multimodel_change": mm_change,
        f"{base}_period_model_agreement": agreement,
        f"{base}_period_model_count": n_models,
    }


def _as_expected(var: xr.DataArray) -> np.ndarray:
    """A stored statistic in the test's axis order, with a trailing depth-or-1 axis."""
    order = [
        d
        for d in ("experiment", "source_id", "percentile", "period", "winter", "depth")
        if d in var.dims
    ]
    values = var.transpose(*order).values.astype(np.float64)
    return values if "depth" in var.dims else values[..., None]


# ---------------------------------------------------------------- tests


def test_every_statistic_equals_numpy(results: xr.Dataset, expected: dict) -> None:
    assert results["percentile"].values.tolist() == list(PERCENTILES)
    assert _labels(results, "period") == ["1993-2022", "2041-2060", "2080-2100"]
    for name, want in expected.items():
        got = _as_expected(results[name])
        assert got.shape == want.shape, name
        assert np.array_equal(np.isnan(got), np.isnan(want)), name
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)
    # the checks compare real numbers, not NaN against NaN
    # 2 scenarios x 2 future periods x 2 depths
    assert np.isfinite(expected["event_days_period_model_agreement"]).sum() == 8
    assert np.isfinite(expected["event_days_multimodel_percentile"]).mean() > 0.6


def test_headline_numbers(results: xr.Dataset) -> None:
    # ssp585 2080-2100: A and B lose event days, C gains -> mean change < 0, agreement 2/3
    sel = {"experiment": "ssp585", "period": "2080-2100", "depth": 500.0}
    change = results["event_days_period_model_change"].sel(sel)
    assert float(change.sel(source_id="MOD-A")) < -10 < 0 < float(change.sel(source_id="MOD-C"))
    assert float(results["event_days_period_multimodel_change"].sel(sel)) < 0
    assert float(results["event_days_period_model_agreement"].sel(sel)) == pytest.approx(2 / 3)
    agree = results["event_days_period_model_agreement"]
    assert float(agree.sel(experiment="ssp245", period="2080-2100", depth=500.0)) == 1.0
    # three models (three families) agreeing are no "likely": the 90 % lower bound of the
    # agreeing fraction with 3 draws is 0.46 < 0.66, whatever the robustness category
    likelihood = results["event_days_period_likelihood"]
    assert likelihood.attrs["likely_threshold"] == 0.66
    assert float(likelihood.sel(experiment="ssp245", period="2080-2100", depth=500.0)) == 0.0
    assert int(results["event_days_period_family_count"].sel(sel)) == 3
    assert np.isfinite(results["event_days_period_robustness"].sel(sel))
    # reanalysis: a baseline, no future; historical alone covers 22 of 30 baseline winters
    re = results["event_days_period_model_mean"].sel(experiment="reanalysis", source_id="ERA5")
    assert bool(np.isfinite(re.sel(period="1993-2022")).all())
    assert bool(re.sel(period=["2041-2060", "2080-2100"]).isnull().all())
    hist = results["event_days_period_model_mean"].sel(experiment=HIST)
    assert bool(hist.isnull().all())


def test_failed_missing_gap_and_noleap(results: xr.Dataset, sources: dict) -> None:
    # the failed combination's +100 degC / +999 days never reach a statistic
    assert float(results["winter_temperature_multimodel_mean"].max()) < 20
    assert float(results["event_days_model_mean"].max()) < 200
    counts = results["model_member_count"]
    assert int(counts.sel(experiment="ssp585", source_id="MOD-C")) == 1
    assert int(counts.sel(experiment=HIST, source_id="MOD-C")) == 1
    assert int(counts.sel(experiment="ssp245", source_id="MOD-A")) == 2
    # 40-day gap: winter 2050 of (ssp245, MOD-A, r1) does not count -> r2 alone
    r2 = _winter_values(_joined(("ssp245", "MOD-A", "r2"), sources))
    got = results["event_days_model_mean"].sel(experiment="ssp245", source_id="MOD-A", depth=500.0)
    assert float(got.sel(winter=2050)) == pytest.approx(r2["event_days"][2050 - 1993, 0])
    # noleap: winter 2016 lacks 29 Feb 2016 -> event days scaled by 182/181
    raw = [sources[("ssp245", "MOD-B", m)]["events"]["event_days"][2016 - 1993, 0] for m in MEMBERS]
    want = np.mean(raw) * 182 / 181
    got = results["event_days_model_mean"].sel(experiment="ssp245", source_id="MOD-B", depth=500.0)
    assert float(got.sel(winter=2016)) == pytest.approx(want, rel=1e-12)
    # scenario winters before 2015 come from historical; historical's partial 2015 is dropped
    t = results["winter_temperature_model_mean"].sel(source_id="MOD-A", depth=500.0)
    assert float(t.sel(experiment="ssp585", winter=2000)) == float(
        t.sel(experiment=HIST, winter=2000)
    )
    assert np.isnan(float(t.sel(experiment=HIST, winter=2015)))
    assert np.isfinite(float(t.sel(experiment="ssp585", winter=2015)))


def test_deep_ensemble_dim_is_averaged_first(results: xr.Dataset) -> None:
    # a store whose event_days holds the deep-ensemble members (winter, ensemble, depth)
    variant = results.assign(event_days=results["member_event_days"])
    got = spread_statistics(variant)
    for name in ("event_days_multimodel_mean", "event_days_period_model_change"):
        xr.testing.assert_allclose(got[name], results[name], rtol=1e-12)
        assert np.isfinite(got[name]).any()


def test_cf_attributes(results: xr.Dataset) -> None:
    names = [n for n in results.data_vars if results[n].attrs.get("cascadia_role")]
    # 5 bases x 6 across-model statistics, 3 period bases x 12, the member count, and the
    # partition / emergence (11) and trends (10) of event days and the temperature anomaly
    assert len(names) == 5 * 6 + 3 * 12 + 1 + 2 * 21
    for name in names:
        attrs = results[name].attrs
        assert attrs["units"] and attrs["long_name"] and attrs["cell_methods"], name
    t = results["winter_temperature_multimodel_mean"].attrs
    assert t["units"] == "degree_Celsius"
    assert t["standard_name"] == "sea_water_temperature"
    # CF 7.3: the collapsed members and models are named as realizations, with a comment
    assert (
        "realization: mean (comment: over members of each model (member_id))" in (t["cell_methods"])
    )
    assert "realization: mean (comment: over models (source_id))" in t["cell_methods"]
    for name in names:
        for term in re.sub(r"\([^)]*\)", "", results[name].attrs["cell_methods"]).split():
            if term.endswith(":"):
                assert term[:-1] in (*results[name].dims, "time", "realization"), (name, term)
    assert "family" in t["comment"] and "weighted equally" in t["comment"]
    assert results["event_days_multimodel_std"].attrs["units"] == "days"
    change = results["winter_temperature_period_model_change"].attrs
    assert change["units_metadata"] == "temperature: difference"
    assert "historical" in change["comment"]
    assert results["percentile"].attrs["units"] == "%"
    assert results.attrs["institution"] == "spread test"
    assert "30 April" in results.attrs["spread_method"]


def test_rerun_replaces_and_keeps_the_rest(store: str, tmp_path: Path, results: xr.Dataset) -> None:
    copy = str(tmp_path / "copy.zarr")
    shutil.copytree(store, copy)
    write_spread(copy)
    again = _open_strict(copy)
    # the same statistics; the store's history says the pass ran once more
    assert again.attrs["history"].splitlines()[:-1] == results.attrs["history"].splitlines()
    assert "spread statistics written" in again.attrs["history"].splitlines()[-1]
    xr.testing.assert_identical(again.assign_attrs(history=""), results.assign_attrs(history=""))
    write_spread(copy, percentiles=(25, 75))
    other = _open_strict(copy)
    assert other["percentile"].values.tolist() == [25.0, 75.0]
    assert set(other.data_vars) == set(results.data_vars)
    # the store's own coordinates stay coordinates, and the store still takes a run
    assert "season_bounds" in other.coords and "season_bounds" in results.coords
    assert open_schema(copy) is not None
    models = results["event_days_model_mean"].transpose("experiment", "source_id", ...)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN winters
        want = np.nanpercentile(models.values, [25, 75], axis=1).swapaxes(0, 1)
    got = other["event_days_multimodel_percentile"].transpose("experiment", "percentile", ...)
    np.testing.assert_allclose(got.values, want, rtol=1e-12)
    for name in ("temperature_mean", "event_days", "status", "fingerprint"):
        xr.testing.assert_identical(other[name], results[name])
    assert other.attrs["institution"] == "spread test"


def test_a_pass_reads_only_the_combinations_whose_fingerprint_changed(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``combo_winters`` cache: after one scenario combination was rewritten (new
    data, new fingerprint), the spread pass reads that combination and the historical run
    it is joined to, nothing else, and gives what a pass without the cache gives."""
    copy = str(tmp_path / "copy.zarr")
    shutil.copytree(store, copy)
    combo = ("ssp245", "MOD-B", "r1")
    schema = open_schema(copy)
    new = _dataset(_source(combo, seed=99), schema)
    write_combo(copy, schema, combo, new, {**PROVENANCE, "fingerprint": "g"})
    read: list[tuple[str, ...]] = []
    real_read = spread._Reader.__call__

    def counted(reader: spread._Reader, index: tuple[int, ...]) -> dict:
        names = [reader.results[d].values[i] for d, i in zip(spread.COMBO_DIMS, index, strict=True)]
        read.append(tuple(str(n) for n in names))
        return real_read(reader, index)

    monkeypatch.setattr(spread._Reader, "__call__", counted)
    write_spread(copy)
    assert sorted(set(read)) == [("historical", "MOD-B", "r1"), combo]
    monkeypatch.undo()
    cached = xr.open_zarr(copy, group="spread").load()
    with open_cube(copy, spread=False) as results:
        fresh = spread_statistics(results).load()
    assert not np.allclose(  # the rewritten combination did change the statistics
        cached["event_days_multimodel_mean"].sel(experiment="ssp245"),
        xr.open_zarr(store, group="spread")["event_days_multimodel_mean"].sel(experiment="ssp245"),
        equal_nan=True,
    )
    for name in fresh.data_vars:
        xr.testing.assert_allclose(cached[name], fresh[name], rtol=1e-12)
    # other options: the percentiles do not change a combination's winters (all cached)
    read.clear()
    monkeypatch.setattr(spread._Reader, "__call__", counted)
    write_spread(copy, percentiles=(25, 75))
    assert read == []


def test_a_store_of_reanalyses_only_gets_its_spread(tmp_path: Path) -> None:
    """One experiment: xarray's weighted quantile dropped the length-1 experiment dim and
    the pass failed (`cascadia-ensemble run --catalog reanalysis.yaml` exited 1)."""
    combos = tuple(("reanalysis", name, "r1") for name in ("ERA5", "ERA-20C", "20CRv3"))
    schema = _schema(combos)
    path = str(tmp_path / "reanalyses.zarr")
    initialise_store(path, schema, {"institution": "spread test"})
    for seed, combo in enumerate(combos):
        write_combo(path, schema, combo, _dataset(_source(REANALYSIS, seed), schema), PROVENANCE)
    write_spread(path)
    stats = xr.open_zarr(path, group="spread")
    pct = stats["event_days_multimodel_percentile"]
    assert pct.dims == ("experiment", "percentile", "winter", "depth")
    with open_cube(path, spread=False) as results:
        winters = spread.combo_winters(results)["event_days"]
    # three reanalyses weighted equally: their median is the middle one
    want = winters.sel(experiment="reanalysis", member_id="r1").median("source_id", skipna=False)
    got = pct.sel(experiment="reanalysis", percentile=50.0).load()
    finite = np.isfinite(want.values)
    assert finite.sum() > 50
    np.testing.assert_allclose(got.values[finite], want.values[finite], rtol=1e-6)


def test_bad_input_is_named(results: xr.Dataset) -> None:
    with pytest.raises(SpreadError, match="'status'"):
        spread_statistics(results.drop_vars("status"))
    with pytest.raises(SpreadError, match="empty 'winter' axis"):
        spread_statistics(results.isel(winter=slice(0, 0)))
    with pytest.raises(SpreadError, match="periods"):
        SpreadOptions(periods=((2022, 1993),))
    with pytest.raises(SpreadError, match="percentiles"):
        SpreadOptions(percentiles=(50, 150))
    with pytest.raises(SpreadError, match="min_winter_coverage"):
        SpreadOptions(min_winter_coverage=0)


@pytest.mark.s3
def test_write_spread_on_s3_equals_local(
    sources: dict, tmp_path: Path, s3_options: dict[str, Any]
) -> None:
    # a small store (two models, historical + ssp585) keeps the loopback traffic short
    mini = [(e, s, "r1") for e in (HIST, "ssp585") for s in ("MOD-A", "MOD-B")]
    schema = _schema(tuple(mini))
    local = str(tmp_path / "mini.zarr")
    initialise_store(local, schema)
    for combo in mini:
        write_combo(local, schema, combo, _dataset(sources[combo], schema), PROVENANCE)
    remote = f"{s3_server.BUCKET}/spread/mini.zarr"
    fsspec.filesystem("s3", **s3_options).put(local, remote, recursive=True)
    write_spread(local)
    write_spread(f"s3://{remote}", storage_options=s3_options)
    want = _open_strict(local)
    got = _open_strict(f"s3://{remote}", storage_options=s3_options)
    assert "spread statistics written" in got.attrs["history"]  # its own pass, its own time
    xr.testing.assert_identical(got.assign_attrs(history=""), want.assign_attrs(history=""))
    assert np.isfinite(got["event_days_period_model_agreement"].sel(experiment="ssp585")).any()


def test_temperature_change_after_the_record_is_the_anomalys(results: xr.Dataset) -> None:
    """The held background adds the same step to every scenario's absolute temperature after
    the mooring record: the stored change there is the anomaly's, and says so."""
    sel = {"period": "2080-2100", "depth": 500.0}
    change = results["winter_temperature_period_model_change"].sel(sel)
    anomaly = results["winter_temperature_anomaly_period_model_change"].sel(sel)
    xr.testing.assert_equal(change, anomaly)
    means = results["winter_temperature_period_model_mean"].sel(depth=500.0)
    absolute = means.sel(period="2080-2100") - means.sel(period="1993-2022")
    step = (absolute - change).sel(experiment=list(SCENARIOS))
    # the background's step (held value - its 1993-2022 mean, ~0.03 degC/yr x 16.5 yr):
    # one number for every scenario and model, which a reader must not take as a projection
    assert float(step.min()) == pytest.approx(float(step.max()), abs=1e-5)
    assert 0.45 < float(step.mean()) < 0.55
    # the baseline is inside the record: its statistics are absolute
    base = results["winter_temperature_period_multimodel_mean"].sel(period="1993-2022")
    assert 13.0 < float(base.sel(experiment="reanalysis", depth=500.0)) < 14.0
    attrs = results["winter_temperature_period_multimodel_change"].attrs
    assert attrs["anomaly_only_periods"] == "2041-2060 2080-2100"
    assert "not projected" in attrs["warning"]
    assert "anomaly" in attrs["long_name"]
    assert "not projected" in results["winter_temperature_multimodel_mean"].attrs["warning"]
    assert "warning" not in results["event_days_period_multimodel_change"].attrs


def test_temperature_change_is_taken_over_the_combinations_with_a_projected_background(
    sources: dict, tmp_path: Path
) -> None:
    """Where some combinations carry their own ocean's background after the record
    (``background_kind`` 4) and the others a held one, the stored deep-temperature change
    is taken over the former (their absolute warming), not reduced to the anomaly's."""
    own = {(e, s, "r1") for e in (HIST, *SCENARIOS) for s in ("MOD-A", "MOD-B")}
    changed = dict(sources)
    for combo in own:
        src = dict(sources[combo])
        years = pd.DatetimeIndex(src["time"])
        years = years.year + years.day_of_year / 366.0 - 1993.0
        after = src["time"] > RECORD_END
        projected = np.stack([13.0 + 0.03 * years, 12.8 + 0.015 * years], axis=1)
        src["background"] = projected.astype(np.float32)
        src["anomaly"] = (src["temperature"] - src["background"]).astype(np.float32)
        src["kind"] = np.repeat(np.where(after, 4.0, 0.0)[:, None], 2, axis=1).astype(np.float32)
        changed[combo] = src
    path = str(tmp_path / "results.zarr")
    _fill_store(path, changed)
    write_spread(path)
    results = _open_strict(path)
    sel = {"experiment": "ssp585", "period": "2080-2100", "depth": 500.0}
    change = results["winter_temperature_period_model_change"].sel(sel)
    # MOD-A and MOD-B from their first members' absolute temperature, MOD-C has none
    for model in ("MOD-A", "MOD-B"):
        joined = _joined(("ssp585", model, "r1"), changed)
        winters = _winter_values(joined)["winter_temperature"][:, 0]
        w = np.asarray(WINTERS)
        want = np.nanmean(winters[(w >= 2080) & (w <= 2100)]) - np.nanmean(
            winters[(w >= 1993) & (w <= 2022)]
        )
        assert float(change.sel(source_id=model)) == pytest.approx(want, abs=1e-4)
    assert np.isnan(float(change.sel(source_id="MOD-C")))
    count = results["winter_temperature_period_model_count"].sel(sel)
    assert int(count) == 2
    # 0.03 degC a year over 87.5 years between the periods' middles: the warming, absolute
    assert 2.3 < float(results["winter_temperature_period_multimodel_change"].sel(sel)) < 2.9
    attrs = results["winter_temperature_period_multimodel_change"].attrs
    assert "known background" in attrs["long_name"]


def test_report_says_where_temperature_is_anomaly_only_and_shows_ood(
    store: str, results: xr.Dataset, tmp_path: Path
) -> None:
    summary = background_summary(results)
    assert summary is not None
    assert summary["anomaly_only_periods"] == ["2041-2060", "2080-2100"]
    row = summary["depths"]["500"]
    assert row["record"] == ["1992-11-01", "2023-12-31"]
    # one held value after the record: the background of 2023-12-31 (13.0 + 0.03 x 31.0 yr)
    assert row["held_after_record"] == [pytest.approx(13.93, abs=1e-3)]
    # 4 done scenario combos x 2 + ... : 2024-2100 of every scenario day is held
    assert 0.5 < row["anomaly_only_share"] < 0.8
    # per experiment as stored (0.1 / 0.3 per winter after 2015 under ssp245 / ssp585)
    ood = ood_by_period(results, ((1993, 2022), (2080, 2100)))
    assert ood["ssp245"]["1993-2022"] == pytest.approx(np.mean(0.1 * np.arange(8)))
    assert ood["ssp585"]["2080-2100"] == pytest.approx(1.0)
    assert ood["historical"]["1993-2022"] == pytest.approx(0.0)
    assert ood["reanalysis"]["2080-2100"] is None
    report = write_run_report(store, tmp_path / "report")
    text = (tmp_path / "report/report.html").read_text()
    assert "anomaly-only" in text and "13.930" in text and "2041-2060, 2080-2100" in text
    assert '<td>ssp245</td><td class="num">0.35</td><td class="num">1.00</td>' in text
    assert (tmp_path / "report/ood.png") in report.files


@pytest.mark.parametrize("cut_at", ["event_days/.zattrs", "event_days/0.0.0.0.0"])
def test_a_cache_a_failed_pass_half_wrote_is_never_reused(
    store: str, tmp_path: Path, cut_at: str
) -> None:
    """The disk fills while a store's first pass writes its ``combo_winters`` cache (the
    statistics written, the cache cut off at ``cut_at``): that pass fails, and the next one -
    space freed - computes what a pass without any cache gives, instead of failing on an
    array left without its ``.zattrs`` (xarray raised a TypeError: CI saw the rerun of a
    full-disk run exit 1) or reading a missing chunk as NaN winters."""
    path = tmp_path / "disk" / "results.zarr"
    fsspec.register_implementation("fulldisk", FullDiskFileSystem, clobber=True)
    FullDiskFileSystem.root, FullDiskFileSystem.capacity = str(path.parent), 10**10

    def first_pass_store() -> None:
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(store, path)
        for group in (SPREAD_GROUP, WINTERS_GROUP):
            shutil.rmtree(path / group)

    # a pass with room for everything, to learn what the disk holds at each write
    first_pass_store()
    FullDiskFileSystem.claims = []
    write_spread(f"fulldisk://{path}")
    claims, FullDiskFileSystem.claims = FullDiskFileSystem.claims, None
    k = [p for p, _ in claims].index(str(path / WINTERS_GROUP / cut_at))  # its first write
    assert max(need for _, need in claims[:k]) < claims[k][1]  # earlier writes still fit

    first_pass_store()
    FullDiskFileSystem.capacity = claims[k][1] - 1
    with pytest.raises(OSError, match=f"No space left on device: .*{cut_at}"):
        write_spread(f"fulldisk://{path}")
    FullDiskFileSystem.capacity = 10**10
    write_spread(f"fulldisk://{path}")
    with open_cube(str(path), spread=False) as results:
        fresh = spread_statistics(results).load()
    stored = xr.open_zarr(str(path), group=SPREAD_GROUP).load()
    for name in fresh.data_vars:
        xr.testing.assert_allclose(stored[name], fresh[name], rtol=1e-12)
