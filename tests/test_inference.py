"""A trained model directory applied to a combination's predictors (cascadia.run.inference).

A tiny twin world (two years of ERA5-like reanalysis and mooring, one CMIP-like model)
and a tiny deep ensemble trained on it in a module fixture: what a prediction must
equal is computed here independently, from the model directory's own files.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers import small_preset
from scipy.stats import norm

from cascadia.learning.calibration import Calibration
from cascadia.learning.ensemble import DeepEnsemble
from cascadia.learning.features import load_feature_spec, model_features
from cascadia.learning.jobs import TrainJob, smoke_train_job
from cascadia.learning.train_job import run_train_job
from cascadia.mooring.events import EventConfig, events_from_flags
from cascadia.mooring.targets import BackgroundConfig
from cascadia.run.inference import (
    InferenceConfig,
    InferenceError,
    TrainedModel,
    cached_model,
    load_count,
    model_checksum,
)
from cascadia.sources.cache import PredictorCache, fill_cache, fingerprint
from cascadia.sources.catalog import enumerate_combos, open_collection
from cascadia.sources.config import load_run_catalog
from cascadia.sources.predictors.plausibility import RAW_CHECK, PredictorDataError
from cascadia.twin.world import build_world

PRESET = small_preset("tiny-inference")
VARIABLES = ["hurs", "pr", "psl", "sfcWind", "tas", "uas", "vas"]  # common to every source


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """World, predictor cache, trained model, and the predictors of three combinations."""
    root = tmp_path_factory.mktemp("inference")
    started = time.perf_counter()
    build_world(str(root / "world"), PRESET, seed=0)
    job = smoke_train_job(
        root / "world",
        str(root / "cache"),
        seed=5,
        batches_per_epoch=2,
        train_winters=[2014],
        validation_winters=[2015],
        test_winters=[2013],
    )
    run_train_job(TrainJob.model_validate(job), root / "model", log=lambda _: None)
    cache = PredictorCache(str(root / "cache"))
    era5 = load_run_catalog(str(root / "world/catalogs/reanalysis.yaml"))
    source = era5.source("era5")
    (combo,) = enumerate_combos(era5, source, open_collection(era5, source))
    daily = cache.get(source, combo, fingerprint(era5, source, combo)).load()
    cmip = load_run_catalog(str(root / "world/catalogs/cmip6.yaml"))
    src = cmip.sources[0]
    src = src.model_copy(update={"query": {**src.query, "experiment_id": ["historical", "ssp585"]}})
    cmip = cmip.model_copy(update={"sources": [src]})
    assert all(o.status == "extracted" for o in fill_cache(cmip, cache))
    series = {
        c.labels["experiment_id"]: cache.get(src, c, fingerprint(cmip, src, c)).load()
        for c in enumerate_combos(cmip, src, open_collection(cmip, src))
    }
    print(f"world, model and predictors in {time.perf_counter() - started:.1f} s")
    return {
        "root": root,
        "model_dir": root / "model",
        "era5": daily,
        "historical": series["historical"],
        "ssp585": series["ssp585"],
    }


@pytest.fixture(scope="module")
def model(twin: dict[str, object]) -> TrainedModel:
    return TrainedModel.load(twin["model_dir"])


def _winter(time: np.ndarray) -> np.ndarray:
    days = pd.DatetimeIndex(time)
    return days.year.to_numpy() + (days.month.to_numpy() >= 11)


def test_prediction_is_the_ensemble_plus_the_training_background(twin, model) -> None:
    daily = twin["era5"]
    out = model.predict(daily)
    # independently: the ensemble and the feature recipe of the directory, and its CSV
    ensemble = DeepEnsemble.load(twin["model_dir"])
    features = model_features(daily, load_feature_spec(twin["model_dir"]))
    pred = ensemble.predict(features.values, daily["time"].values)
    table = pd.read_csv(twin["model_dir"] / "background.csv", parse_dates=["time"])
    table = table.set_index("time").reindex(daily.indexes["time"])
    background = table[["background_500", "background_1000"]].to_numpy()
    inside = table[["observed_500", "observed_1000"]].notna().to_numpy().all(axis=1)
    assert inside.sum() > 600  # most of the two years are inside the observed record

    np.testing.assert_array_equal(out["time"].values, daily["time"].values)
    assert out["depth"].values.tolist() == [500.0, 1000.0]
    mean = out.temperature_mean.transpose("time", "depth").values
    np.testing.assert_allclose(mean[inside], (background + pred.mean)[inside], atol=1e-9)
    np.testing.assert_allclose(out.temperature_std.values, pred.std, atol=1e-12)
    q = out.temperature_quantile.transpose("quantile", "time", "depth").values
    np.testing.assert_allclose(q[:, inside], (background[None] + pred.quantiles)[:, inside])
    members = out.temperature_member.transpose("ensemble", "time", "depth").values
    np.testing.assert_allclose(members[:, inside], (background[None] + pred.member_mean)[:, inside])
    np.testing.assert_allclose(out.event_probability.values, pred.event_probability)
    # the anomaly is stored as predicted, with the background added and where it comes from
    np.testing.assert_allclose(out.temperature_anomaly_mean.values, pred.mean, atol=1e-12)
    stored_background = out.background_temperature.transpose("time", "depth").values
    np.testing.assert_allclose(stored_background[inside], background[inside], atol=1e-12)
    np.testing.assert_allclose(mean, stored_background + pred.mean, atol=1e-12)
    # the reanalysis lies within the mooring record (gaps interpolated): no day is held
    assert bool((out.background_kind == 0).all())
    assert out["quantile"].values.tolist() == [0.05, 0.25, 0.5, 0.75, 0.95]
    # realistic deep temperatures (°C), ordered quantiles
    assert 12.0 < float(out.temperature_mean.mean()) < 15.0
    assert bool((np.diff(q, axis=0) >= 0).all())
    assert out.attrs["model_checkpoint_hash"] == model_checksum(twin["model_dir"])
    lean = model.predict(daily, config=InferenceConfig(member_series=False))
    assert "temperature_member" not in lean


def test_winter_statistics_follow_the_event_rule(twin, model) -> None:
    # A low threshold and probability level so that the barely trained model flags
    # events: the test can fail.
    rule = EventConfig(thresholds={500.0: 0.02, 1000.0: 0.02})
    calibration = Calibration((500.0, 1000.0), (1.0, 1.0), (0.02, 0.02), (0.3, 0.3))
    ensemble = dataclasses.replace(model.ensemble, calibration=calibration)
    sensitive = dataclasses.replace(model, ensemble=ensemble, events=rule)
    daily = twin["era5"]
    out = sensitive.predict(daily)
    t = daily["time"].values
    background = sensitive.background_on(t)
    anomaly = out.temperature_mean.transpose("time", "depth").values - background
    pred = ensemble.predict(sensitive._features(daily).values, t)
    winters = _winter(t)
    assert out["winter"].values.tolist() == sorted(set(winters.tolist())) == [2013, 2014, 2015]
    # the statistics count the November-April season: Jan-Apr 2013, Nov 2013-Apr 2014,
    # Nov-Dec 2014
    np.testing.assert_array_equal(out.winter_days.values, [120, 181, 61])
    season = np.isin(pd.DatetimeIndex(t).month, [11, 12, 1, 2, 3, 4])

    def expected(probability: np.ndarray, anom: np.ndarray, level=0.3) -> dict[str, np.ndarray]:
        below = xr.DataArray(
            probability >= level, dims=("time", "depth"), coords={"time": t, "depth": [500, 1000]}
        )
        # the rule runs on the whole series, then only the season's days count
        flags = events_from_flags(below, config=rule).values & season[:, None]
        starts = flags & ~np.vstack([np.zeros((1, 2), bool), flags[:-1]])
        rows = {"event_days": [], "event_count": [], "peak_intensity": []}
        for w in (2013, 2014, 2015):
            sel = winters == w
            rows["event_days"].append(flags[sel].sum(axis=0))
            rows["event_count"].append(starts[sel].sum(axis=0))
            cooling = np.where(flags[sel], -anom[sel], -np.inf).max(axis=0)
            rows["peak_intensity"].append(np.where(np.isinf(cooling), np.nan, cooling))
        return {k: np.array(v, dtype=float) for k, v in rows.items()}

    # The ensemble's probability is the mixture's P(anomaly < -0.02 degC).
    mixture = norm.cdf((-0.02 - pred.member_mean) / pred.member_std).mean(axis=0)
    np.testing.assert_allclose(out.event_probability.transpose("time", "depth"), mixture)
    mean_stats = expected(mixture, anomaly)
    assert mean_stats["event_days"].sum() > 0
    # the whole winter-year would count more: the season is not a no-op on this series
    below = xr.DataArray(mixture >= 0.3, dims=("time", "depth"), coords={"time": t})
    whole_year = events_from_flags(below, config=rule).values
    assert whole_year.sum() > mean_stats["event_days"].sum()
    for name, values in mean_stats.items():
        np.testing.assert_allclose(out[name].transpose("winter", "depth").values, values, atol=1e-9)
    singles = [norm.cdf((-0.02 - pred.member_mean[m]) / pred.member_std[m]) for m in range(2)]
    for m in range(2):
        for name, values in expected(singles[m], pred.member_mean[m]).items():
            got = out[f"member_{name}"].isel(ensemble=m).transpose("winter", "depth").values
            np.testing.assert_allclose(got, values, atol=1e-9)
    # A level fitted on single members' forecasts is a member's level: the winter counts
    # are the members' mean; the peak stays the mixture-mean anomaly's on its own days.
    # (A level inside the members' spread, where they disagree: the rule matters.)
    level = float(np.quantile(mixture[season], 0.6))
    single_level = Calibration(
        (500.0, 1000.0), (1.0, 1.0), (0.02, 0.02), (level, level), (), "frequency", 1
    )
    counted = dataclasses.replace(
        sensitive, ensemble=dataclasses.replace(ensemble, calibration=single_level)
    ).predict(daily)
    per_member = [expected(singles[m], pred.member_mean[m], level) for m in range(2)]
    on_mixture = expected(mixture, anomaly, level)
    for name in ("event_days", "event_count"):
        mean_count = (per_member[0][name] + per_member[1][name]) / 2
        got = counted[name].transpose("winter", "depth").values
        np.testing.assert_allclose(got, mean_count, atol=1e-9)
    days = (per_member[0]["event_days"] + per_member[1]["event_days"]) / 2
    assert not np.allclose(days, on_mixture["event_days"]), days  # the rule matters here
    np.testing.assert_allclose(
        counted["peak_intensity"].transpose("winter", "depth").values,
        on_mixture["peak_intensity"],
        atol=1e-9,
    )


def test_background_continues_outside_the_record(twin, model) -> None:
    table = pd.read_csv(twin["model_dir"] / "background.csv", parse_dates=["time"])
    table = table.set_index("time")
    days = pd.date_range("2011-06-01", "2016-12-31").values
    held = model.background_on(days)
    for j, depth in enumerate(("500", "1000")):
        observed = table[f"observed_{depth}"].notna()
        first, last = table.index[observed][[0, -1]]
        values = table[f"background_{depth}"]
        before = days < np.datetime64(first)
        after = days > np.datetime64(last)
        assert before.any() and after.any()
        np.testing.assert_allclose(held[before, j], values[first])
        np.testing.assert_allclose(held[after, j], values[last])
        inside = ~before & ~after
        np.testing.assert_allclose(held[inside, j], values.reindex(days[inside]).to_numpy())

    trend = dataclasses.replace(
        model, background_config=BackgroundConfig(extrapolation="linear_trend", trend_years=1.0)
    )
    ahead = trend.background_on(days)
    observed = table["observed_500"].notna()
    first, last = table.index[observed][[0, -1]]
    known = table["background_500"][first:last]  # the record: first to last observed day
    t_known = (known.index - last).days.to_numpy(dtype=float)
    near = t_known >= -365.25
    slope = np.polyfit(t_known[near], known.to_numpy()[near], 1)[0]
    after = days > np.datetime64(last)
    t_after = (pd.DatetimeIndex(days[after]) - last).days.to_numpy(dtype=float)
    np.testing.assert_allclose(ahead[after, 0], known[last] + slope * t_after, rtol=1e-10)
    assert abs(slope) > 1e-6  # a trend, not a hold
    # the kind flags say which: inside the record 0, outside 1 (held) or 2 (trend)
    inside = (days >= np.datetime64(first)) & (days <= np.datetime64(last))
    np.testing.assert_array_equal(model.background_kind_on(days)[:, 0], np.where(inside, 0, 1))
    np.testing.assert_array_equal(trend.background_kind_on(days)[:, 0], np.where(inside, 0, 2))


def test_scenario_context_is_one_continuous_run(twin, model) -> None:
    hist, ssp = twin["historical"], twin["ssp585"]
    assert pd.Timestamp(ssp.time.values[0]) == pd.Timestamp(hist.time.values[-1]) + pd.Timedelta(
        days=1
    )
    config = InferenceConfig(context_days=400)
    warm = model.predict(ssp, context=hist, config=config)
    cold = model.predict(ssp)
    assert warm.attrs["context_days"] == 400 and cold.attrs["context_days"] == 0
    joined = xr.concat([hist.isel(time=slice(-400, None)), ssp], dim="time")
    whole = model.predict(joined).sel(time=ssp.time)
    for name in ("temperature_mean", "temperature_std", "temperature_member"):
        np.testing.assert_allclose(warm[name].values, whole[name].values, rtol=0, atol=1e-9)
    assert float(np.abs(warm.temperature_mean - cold.temperature_mean).max()) > 1e-4
    np.testing.assert_array_equal(warm.time.values, ssp.time.values)
    # the scenario lies after the mooring record: its background is the record's last value,
    # held and flagged so (anomaly-only), and the anomaly is stored beside the temperature
    table = pd.read_csv(twin["model_dir"] / "background.csv", parse_dates=["time"])
    table = table.set_index("time")
    for depth in (500, 1000):
        last = table[f"observed_{depth}"].dropna().index[-1]
        assert last < pd.Timestamp(ssp.time.values[0])
        one = warm.sel(depth=depth)
        assert bool((one.background_kind == 1).all())
        np.testing.assert_allclose(
            one.background_temperature, table.loc[last, f"background_{depth}"]
        )
        np.testing.assert_allclose(
            one.temperature_mean - one.background_temperature, one.temperature_anomaly_mean
        )
    # the first scenario season (Nov 2014 - Apr 2015) counts the context's Nov-Dec 2014
    assert warm.winter_days.sel(winter=2015).item() == 181
    assert cold.winter_days.sel(winter=2015).item() == 120
    # a context that does not end the day before is not used
    gap = model.predict(ssp, context=hist.isel(time=slice(None, -5)), config=config)
    assert gap.attrs["context_days"] == 0


def test_predictors_the_model_cannot_use_are_named(twin, model) -> None:
    daily = twin["era5"]
    with pytest.raises(InferenceError, match=r"model features: .*'tas'"):
        model.predict(daily.drop_vars("tas"))
    noleap = daily.convert_calendar("noleap")
    with pytest.raises(InferenceError, match="standard calendar"):
        model.predict(noleap)
    holes = daily.drop_sel(time=daily.time.values[100:103])
    with pytest.raises(InferenceError, match="consecutive days"):
        model.predict(holes)


def test_model_directory_checksum_and_once_per_process_cache(twin, tmp_path: Path) -> None:
    before = load_count()
    checksum = model_checksum(twin["model_dir"])
    first = cached_model(twin["model_dir"], checksum)
    again = cached_model(twin["model_dir"], checksum)
    assert again is first and load_count() == before + 1
    with pytest.raises(InferenceError, match="changed during the run"):
        cached_model(twin["model_dir"], "sha256:" + "0" * 64)

    copy = tmp_path / "model"
    shutil.copytree(twin["model_dir"], copy)
    assert model_checksum(copy) == checksum
    table = pd.read_csv(copy / "background.csv")
    table.loc[200, "background_500"] += 0.01
    table.to_csv(copy / "background.csv", index=False, float_format="%.5f")
    assert model_checksum(copy) != checksum
    (copy / "features.json").unlink()
    with pytest.raises(InferenceError, match=r"features\.json is missing"):
        TrainedModel.load(copy)


def test_out_of_distribution_scores_per_winter(twin, model) -> None:
    """Per winter: the fraction of Nov-Apr days with any input outside its training range
    for that calendar month (normalisation.json), and the largest distance from the
    training mean in training stds; a warmer atmosphere than the model ever saw is
    scored out of distribution."""
    daily = twin["era5"]
    out = model.predict(daily)
    norm = json.loads((twin["model_dir"] / "normalisation.json").read_text())
    features = model_features(daily, load_feature_spec(twin["model_dir"]))
    assert [str(f) for f in features["feature"].values] == norm["feature_names"]
    x = features.values
    z = np.abs((x - np.array(norm["feature_mean"])) / np.array(norm["feature_std"]))
    t = daily["time"].values
    month = pd.DatetimeIndex(t).month.values
    low = np.array(norm["feature_monthly_min"])[month - 1]
    high = np.array(norm["feature_monthly_max"])[month - 1]
    assert low.shape == x.shape and (low <= high).all()
    beyond = ((x < low) | (x > high)).any(axis=1)
    winters = _winter(t)
    season = np.isin(month, [11, 12, 1, 2, 3, 4])
    for w in (2013, 2014, 2015):
        days = (winters == w) & season
        assert out.ood_fraction.sel(winter=w).item() == pytest.approx(np.mean(beyond[days]))
        assert out.ood_max_z.sel(winter=w).item() == pytest.approx(np.nanmax(z[days]))
    # the one winter the model learnt from (2014) lies inside its own ranges; the others,
    # against a single winter's ranges, often do not
    assert out.ood_fraction.sel(winter=2014).item() == 0.0
    assert out.ood_fraction.sel(winter=2013).item() > 0.0
    assert out.ood_fraction.sel(winter=2015).item() > 0.0
    # air warmer than any training day of the same month, by 2 K, in every region: every
    # winter day is outside, though 2 K is well inside the range over all seasons
    names = norm["feature_names"]
    columns = [i for i, n in enumerate(names) if n.startswith("tas@")]
    span = (
        np.array(norm["feature_monthly_max"])[:, columns]
        - np.array(norm["feature_monthly_min"])[:, columns]
    )
    hot = model.predict(daily.assign(tas=daily["tas"] + float(span.max()) + 2.0))
    np.testing.assert_array_equal(hot.ood_fraction.values, 1.0)
    assert bool((hot.ood_max_z >= out.ood_max_z).all())


def test_models_saved_without_monthly_ranges_score_by_standard_deviations(twin, model) -> None:
    """An older model directory (no monthly ranges): training mean +- 4 training stds."""
    older = dataclasses.replace(
        model.ensemble.normalisation, feature_monthly_min=None, feature_monthly_max=None
    )
    matrix = model_features(twin["era5"], load_feature_spec(twin["model_dir"]))
    scores = dataclasses.replace(
        model, ensemble=dataclasses.replace(model.ensemble, normalisation=older)
    )
    norm = json.loads((twin["model_dir"] / "normalisation.json").read_text())
    z = np.abs((matrix.values - np.array(norm["feature_mean"])) / np.array(norm["feature_std"]))
    t = matrix["time"].values
    days = (_winter(t) == 2014) & np.isin(pd.DatetimeIndex(t).month, [11, 12, 1, 2, 3, 4])
    ood = scores.out_of_distribution(matrix)
    expected = np.mean(np.nanmax(z[days], axis=1) > 4.0)
    assert ood.ood_fraction.sel(winter=2014).item() == pytest.approx(expected)


def _set(daily: xr.Dataset, name: str, days: slice, value: float) -> xr.Dataset:
    out = daily.copy(deep=True)
    out[name].values[days] = value
    return out


CORRUPTIONS = {
    # a deleted chunk: a 92-day hole is left after the 3-day short-gap fill
    "deleted chunk": (
        lambda d: _set(d, "tas", slice(400, 492), np.nan),
        r"tas@\w+: 92 missing days in 1 gap\(s\), the longest 92 days (\S+)\.\.(\S+) ",
    ),
    "inf storm": (
        lambda d: _set(d, "psl", slice(10, 700, 7), np.inf),
        r"psl@\w+: 99 infinite values, the first on ",
    ),
    # units: degC written on values already in Kelvin (converted twice)
    "Kelvin as degC": (
        lambda d: d.assign(tas=d["tas"] + 273.15),
        r"tas@\w+: \d+ values outside the physically possible 180\.\.340 K .*: °C converted twice",
    ),
    "hPa as Pa": (
        lambda d: d.assign(psl=d["psl"] / 100.0),
        r"psl@\w+: \d+ values outside .*: values look like hPa labelled Pa",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_inputs_that_cannot_be_real_are_refused_naming_variable_and_dates(
    twin, model, case
) -> None:
    """Nothing reaches the model as a silent zero (issue 17 item 1): the gap a deleted
    chunk leaves, non-finite values and a lying units attribute fail the prediction with
    the variable, region, count and dates, before any feature is computed."""
    daily = twin["era5"]
    corrupt, expected = CORRUPTIONS[case]
    with pytest.raises(PredictorDataError, match=expected) as info:
        model.predict(corrupt(daily))
    assert str(info.value).startswith("model inputs: ")
    if case == "deleted chunk":
        days = pd.DatetimeIndex(daily["time"].values)
        assert f"{days[400].date()}..{days[491].date()}" in str(info.value)
    # the unbroken series still predicts: the check refuses only what is broken
    assert np.isfinite(model.predict(daily)["temperature_mean"].values).all()


def test_a_units_error_found_before_bias_adjustment_fails_only_where_read(twin, model) -> None:
    """Bias adjustment maps a mislabelled raw projection onto plausible values; what its
    raw series showed travels with the adjusted variable (``raw_check``) and fails the
    prediction when the model reads that variable, also behind an unflagged context."""
    daily = twin["era5"]
    read = model.features.variables[0]
    unread = sorted(set(map(str, daily.data_vars)) - set(model.features.variables or []))[0]
    note = (
        "TWIN-ESM-B/historical/r1i1p1f1 psl@gulf_of_lion_shelf: median 1012 Pa is not a "
        "plausible daily mean: values look like hPa labelled Pa (found before bias adjustment)"
    )
    flagged = daily.copy()
    flagged[read] = daily[read].copy().assign_attrs({RAW_CHECK: note})
    days = daily.sizes["time"]
    context, scenario = (
        flagged.isel(time=slice(0, days // 2)),
        flagged.isel(time=slice(days // 2, None)),
    )
    clean_context = daily.isel(time=slice(0, days // 2))
    for data, before in ((flagged, None), (scenario, clean_context)):
        with pytest.raises(PredictorDataError) as info:
            model.predict(data, context=before)
        assert str(info.value) == f"model inputs: {read}: {note}"
    with pytest.raises(PredictorDataError, match="hPa labelled Pa"):  # a flagged context
        model.predict(daily.isel(time=slice(days // 2, None)), context=context)
    elsewhere = daily.copy()
    elsewhere[unread] = daily[unread].copy().assign_attrs({RAW_CHECK: note})
    expected = model.predict(daily)["temperature_mean"].values
    np.testing.assert_array_equal(model.predict(elsewhere)["temperature_mean"].values, expected)


def test_a_broken_variable_the_model_does_not_read_does_not_fail_it(twin, model) -> None:
    daily = twin["era5"]
    unread = sorted(set(map(str, daily.data_vars)) - set(model.features.variables or []))
    assert unread, "the fixture's model reads every variable"
    assert not model.features.physics  # physics columns read every flux-region variable
    broken = daily.assign({unread[0]: daily[unread[0]] * np.nan})
    expected = model.predict(daily)["temperature_mean"].values
    np.testing.assert_array_equal(model.predict(broken)["temperature_mean"].values, expected)
