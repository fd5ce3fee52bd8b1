"""Variance partition, model families, robustness and emergence, checked by hand.

A small results store is written through ``cascadia.run.store`` with winter values the
test plants: historical + ssp245 + ssp585, winters 1991-2040; two GCMs (``GCM-A`` with
two members, ``GCM-B``) and an RCM driven by GCM-A (``GCM-A_RCM-X``, family GCM-A, no
ssp245 run: an unbalanced ensemble as CORDEX gives); three deep-ensemble members. Daily
temperatures are constant over each November-April season, so the store's winter means
are the planted values; every statistic read back from the store (``open_cube``) is
compared with loops over numpy arrays (``np.polyfit``, ``np.var``) written here.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from xclim.ensembles import hawkins_sutton

from cascadia.run.families import FAMILY_COORD
from cascadia.run.partition import PartitionOptions, variance_partition
from cascadia.run.robustness import likelihood_bound
from cascadia.run.spread import SpreadError, spread_statistics, write_spread
from cascadia.run.store import (
    FAMILY_VAR,
    ResultsSchema,
    initialise_store,
    open_cube,
    record_families,
    write_combo,
)

WINTERS = np.arange(1991, 2041)
TIME = pd.date_range("1990-11-01", "2040-04-30", freq="D")
HIST, SCENARIOS = "historical", ("ssp245", "ssp585")
FAMILY = {"GCM-A": "GCM-A", "GCM-A_RCM-X": "GCM-A", "GCM-B": "GCM-B"}
MEMBERS = {"GCM-A": ("r1", "r2"), "GCM-A_RCM-X": ("r1",), "GCM-B": ("r1",)}
RUNS = {"GCM-A": SCENARIOS, "GCM-A_RCM-X": ("ssp585",), "GCM-B": SCENARIOS}
K = 3  # deep-ensemble members
DEPTHS = (500.0, 1000.0)
PERIODS = ((1995, 2014), (2021, 2040))
BASELINE = PERIODS[0]
COMBOS = tuple((e, s, m) for s in FAMILY for e in (HIST, *RUNS[s]) for m in MEMBERS[s])
FIRST_SCENARIO_WINTER = 2016  # scenarios diverge after winter 2015 (Nov 2014 - Apr 2015)
#: winter 2030, 500 m, event days of every member (the hand-computed family mean)
HAND = {"GCM-A": 10.0, "GCM-A_RCM-X": 20.0, "GCM-B": 40.0}
HAND_WINTER = 2030
BACKGROUND = 13.0
# forced change per winter after 2015 (event days; the temperature warms)
SLOPE = {
    ("ssp245", "GCM-A"): 0.2,
    ("ssp245", "GCM-B"): 0.3,
    ("ssp585", "GCM-A"): -0.6,
    ("ssp585", "GCM-A_RCM-X"): -0.5,
    ("ssp585", "GCM-B"): 0.4,
}
OFFSET = {"GCM-A": 0.0, "GCM-A_RCM-X": 3.0, "GCM-B": -2.0}


def _planted(seed: int = 7) -> dict[tuple[str, str, str], dict[str, np.ndarray]]:
    """Joined (historical + scenario) winter values per combination: member event days
    and member temperature anomalies (winter, ensemble, depth); historical ones too."""
    rng = np.random.default_rng(seed)
    out: dict[tuple[str, str, str], dict[str, np.ndarray]] = {}
    years = WINTERS - 1991.0
    for source in FAMILY:
        for member in MEMBERS[source]:
            # internal variability: an AR(1) series per member, shared by its scenarios
            # until they diverge (the historical run), then one per scenario
            def red(n: int) -> np.ndarray:
                x = np.zeros(n)
                for i in range(1, n):
                    x[i] = 0.5 * x[i - 1] + rng.normal(0, 2.0)
                return x

            history = red(WINTERS.size)
            for experiment in (HIST, *RUNS[source]):
                noise = history.copy()
                after = WINTERS >= FIRST_SCENARIO_WINTER
                if experiment != HIST:
                    noise[after] = noise[~after][-1] * 0.5 + red(int(after.sum()))
                slope = SLOPE.get((experiment, source), 0.0)
                forced = 20.0 + OFFSET[source] + slope * np.clip(WINTERS - 2015, 0, None)
                days = forced + noise
                emulator = rng.normal(0, 1.5, (WINTERS.size, K, len(DEPTHS)))
                days = days[:, None, None] + emulator + np.array([0.0, -3.0])
                warming = (0.02 if experiment == "ssp585" else 0.01) * years
                temp = (
                    0.1 * OFFSET[source]
                    + warming[:, None, None]
                    + 0.05 * noise[:, None, None]
                    + rng.normal(0, 0.03, (WINTERS.size, K, len(DEPTHS)))
                )
                if experiment == HIST:
                    days[WINTERS > 2015] = np.nan
                    temp[WINTERS > 2015] = np.nan
                w = WINTERS == HAND_WINTER
                if experiment == "ssp585":
                    days[w, :, 0] = HAND[source]
                out[(experiment, source, member)] = {
                    "member_event_days": days.astype(np.float32),
                    "member_anomaly": temp.astype(np.float32),
                }
    # winters up to 2015 of a scenario are its historical run's (the join)
    for (experiment, source, member), values in out.items():
        if experiment == HIST:
            continue
        hist = out[(HIST, source, member)]
        before = WINTERS <= 2015
        for name in values:
            values[name][before] = hist[name][before]
    return out


def _winter_of(time: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(time.year + (time.month >= 11))


def _dataset(combo: tuple[str, str, str], planted: dict, schema: ResultsSchema) -> xr.Dataset:
    """The store variables of one combination: daily values constant over each season."""
    experiment = combo[0]
    span = ("1990-11-01", "2014-12-31") if experiment == HIST else ("2015-01-01", "2040-04-30")
    time = pd.date_range(*span, freq="D")
    index = np.searchsorted(WINTERS, np.clip(_winter_of(time), WINTERS[0], WINTERS[-1]))
    values = planted[combo]
    anomaly = values["member_anomaly"][index]  # (time, ensemble, depth)
    if experiment == HIST:  # winter 2015's Nov-Dec days: the same as every scenario's
        scenario = next(c for c in planted if c[1:] == combo[1:] and c[0] != HIST)
        late = _winter_of(time) == 2015
        anomaly[late] = planted[scenario]["member_anomaly"][WINTERS == 2015][0]
    background = np.full((len(time), len(DEPTHS)), BACKGROUND, np.float32)
    members = (anomaly + background[:, None, :]).astype(np.float32)
    days = values["member_event_days"]
    inside = (WINTERS <= 2015) if experiment == HIST else (WINTERS >= 2015)
    days = np.where(inside[:, None, None], days, np.nan).astype(np.float32)
    data: dict[str, Any] = {
        "temperature_member": (("ensemble", "time", "depth"), members.transpose(1, 0, 2)),
        "temperature_mean": (("time", "depth"), members.mean(axis=1)),
        "temperature_anomaly_mean": (("time", "depth"), anomaly.mean(axis=1)),
        "background_temperature": (("time", "depth"), background),
        "background_kind": (("time", "depth"), np.zeros_like(background)),
        "member_event_days": (("winter", "ensemble", "depth"), days),
        "event_days": (("winter", "depth"), days.mean(axis=1)),
    }
    sizes = {"time": len(time), "depth": len(DEPTHS), "winter": WINTERS.size, "ensemble": K}
    sizes["quantile"] = len(schema.quantiles)
    for name, (dims, _) in schema.variables.items():
        if name not in data:
            data[name] = (dims, np.full([sizes[d] for d in dims], 0.5, np.float32))
    coords = {"time": time.values, "depth": list(DEPTHS), "winter": WINTERS}
    return xr.Dataset(data, coords=coords)


PROVENANCE = {
    "fingerprint": "f",
    "model_checkpoint_hash": "h",
    "package_version": "0",
    "catalog_entry": "c",
    "selection": "s",
}


def _write_store(path: str, planted: dict, families: bool = True) -> None:
    schema = ResultsSchema(
        combos=COMBOS,
        time=TIME.values,
        depth=DEPTHS,
        quantiles=(0.5,),
        n_members=K,
        winters=tuple(int(w) for w in WINTERS),
        member_series=True,
    )
    initialise_store(path, schema, {"institution": "partition test"})
    for combo in COMBOS:
        write_combo(path, schema, combo, _dataset(combo, planted, schema), PROVENANCE)
    if families:
        record_families(path, {c: FAMILY[c[1]] for c in COMBOS})


OPTIONS = {"periods": PERIODS, "percentiles": (50.0,)}


@pytest.fixture(scope="module")
def planted() -> dict:
    return _planted()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, planted: dict) -> str:
    path = str(tmp_path_factory.mktemp("partition") / "results.zarr")
    _write_store(path, planted)
    write_spread(path, **OPTIONS)
    return path


@pytest.fixture(scope="module")
def results(store: str) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.open_zarr(store).close()
        xr.open_zarr(store, group="spread").close()
        return open_cube(store).load()


# ---------------------------------------------------------------- the numpy side


def _samples(planted: dict, name: str) -> dict[tuple[str, str], np.ndarray]:
    """(scenario, model) -> (member, winter, ensemble, depth) planted values (float64)."""
    out = {}
    for experiment in SCENARIOS:
        for source in FAMILY:
            if experiment not in RUNS[source]:
                continue
            stack = np.stack([planted[(experiment, source, m)][name] for m in MEMBERS[source]])
            if name == "member_anomaly":  # as stored: float32 temperature minus background
                level = np.float32(BACKGROUND)
                stack = (stack + level).astype(np.float64) - np.float64(level)
            out[(experiment, source)] = stack.astype(np.float64)
    return out


def _running(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean along axis 0 over finite values, >= window // 2 + 1 of them."""
    if window == 1:
        return values
    out = np.full(values.shape, np.nan)
    half = window // 2
    for i in range(values.shape[0]):
        piece = values[max(0, i - half) : i + half + 1]
        count = np.isfinite(piece).sum(axis=0)
        total = np.nansum(piece, axis=0)
        out[i] = np.where(count >= half + 1, total / np.maximum(count, 1), np.nan)
    return out


def _numpy_partition(
    samples: dict[tuple[str, str], np.ndarray], degree: int | None, window: int
) -> dict[str, np.ndarray]:
    """Each part per (winter, depth), with loops and numpy only."""
    n_w, n_d = WINTERS.size, len(DEPTHS)
    base = (BASELINE[0] <= WINTERS) & (BASELINE[1] >= WINTERS)
    parts = {p: np.zeros((n_w, n_d)) for p in ("scenario", "model", "internal", "emulator")}
    forced_by_scenario = []
    for experiment in SCENARIOS:
        models = [s for s in FAMILY if (experiment, s) in samples]
        weight = {s: 1.0 / sum(FAMILY[t] == FAMILY[s] for t in models) for s in models}
        total_weight = sum(weight.values())
        fitted, change, departure, spread = {}, {}, {}, {}
        for s in models:
            y = samples[(experiment, s)]  # (member, winter, ensemble, depth)
            member = y.mean(axis=2)
            model = member.mean(axis=0)  # (winter, depth)
            smooth = np.empty_like(model)
            for d in range(n_d):
                if degree is None:
                    smooth[:, d] = model[:, d]
                else:
                    x = WINTERS - WINTERS.mean()  # centred: a well-conditioned Vandermonde
                    smooth[:, d] = np.polyval(np.polyfit(x, model[:, d], degree), x)
            fitted[s] = smooth
            change[s] = smooth - smooth[base].mean(axis=0)
            departure[s] = ((member - smooth) ** 2).mean(axis=0)
            spread[s] = y.var(axis=2).mean(axis=0)
        forced = sum(weight[s] * change[s] for s in models) / total_weight
        forced_by_scenario.append(forced)
        parts["model"] += sum(weight[s] * (change[s] - forced) ** 2 for s in models) / total_weight
        parts["internal"] += sum(weight[s] * departure[s] for s in models) / total_weight
        parts["emulator"] += sum(weight[s] * spread[s] for s in models) / total_weight
    n_e = len(SCENARIOS)
    parts["model"] /= n_e
    parts["internal"] = _running(parts["internal"] / n_e, window)
    parts["emulator"] = _running(parts["emulator"] / n_e, window)
    parts["scenario"] = np.var(np.stack(forced_by_scenario), axis=0)
    parts["total"] = sum(parts[p] for p in ("scenario", "model", "internal", "emulator"))
    parts["forced_response"] = np.stack(forced_by_scenario)
    return parts


def _stored(results: xr.Dataset, name: str) -> np.ndarray:
    var = results[name]
    return var.transpose(*(d for d in ("experiment", "winter", "depth") if d in var.dims)).values


# ---------------------------------------------------------------- tests


def test_parts_sum_to_the_total_variance_of_the_ensemble(store: str, planted: dict) -> None:
    """Without smoothing the four parts are an exact split of the weighted variance of
    every deep-ensemble value's change (law of total variance), computed here directly."""
    with open_cube(store, spread=False) as ds:
        raw = spread_statistics(ds, **OPTIONS, partition_degree=None, partition_window=1).load()
    samples = _samples(planted, "member_event_days")
    base = (BASELINE[0] <= WINTERS) & (BASELINE[1] >= WINTERS)
    pooled = np.zeros((WINTERS.size, len(DEPTHS)))
    values, weights = [], []
    for experiment in SCENARIOS:
        models = [s for s in FAMILY if (experiment, s) in samples]
        families = sorted({FAMILY[s] for s in models})
        for s in models:
            y = samples[(experiment, s)]
            change = y - y.mean(axis=(0, 2))[base].mean(axis=0)  # minus the model's baseline
            n_family = sum(FAMILY[t] == FAMILY[s] for t in models)
            w = 1 / len(SCENARIOS) / len(families) / n_family / y.shape[0] / y.shape[2]
            for m in range(y.shape[0]):
                for k in range(y.shape[2]):
                    values.append(change[m, :, k])
                    weights.append(w)
    values, weights = np.stack(values), np.asarray(weights)[:, None, None]
    assert weights.sum() == pytest.approx(1.0)
    mean = (weights * values).sum(axis=0)
    pooled = (weights * (values - mean) ** 2).sum(axis=0)
    parts = [f"event_days_partition_{p}" for p in ("scenario", "model", "internal", "emulator")]
    got = sum(_stored(raw, p) for p in parts)
    np.testing.assert_allclose(got, pooled, rtol=1e-9)
    np.testing.assert_allclose(_stored(raw, "event_days_partition_total"), pooled, rtol=1e-9)
    assert pooled[WINTERS >= 2030].min() > 10  # real spread, not zeros
    # every part contributes after the scenarios diverge
    late = WINTERS == 2040
    for p in parts:
        assert float(_stored(raw, p)[late, 0][0]) > 0.01, p


def test_each_part_equals_numpy(results: xr.Dataset, planted: dict) -> None:
    """The stored (degree-4, 11-winter) partition of event days and of the temperature
    anomaly equals the loops above, part by part."""
    for base, name in (
        ("event_days", "member_event_days"),
        ("winter_temperature_anomaly", "member_anomaly"),
    ):
        want = _numpy_partition(_samples(planted, name), 4, 11)
        for part in ("scenario", "model", "internal", "emulator", "total"):
            got = _stored(results, f"{base}_partition_{part}")
            np.testing.assert_allclose(got, want[part], rtol=1e-7, atol=1e-12, err_msg=part)
            assert np.isfinite(got).all(), (base, part)
        forced = results[f"{base}_forced_response"].sel(experiment=list(SCENARIOS))
        got = forced.transpose("experiment", "winter", "depth").values
        np.testing.assert_allclose(got, want["forced_response"], rtol=1e-7, atol=1e-10)
        assert results[f"{base}_forced_response"].sel(experiment=HIST).isnull().all()
    # the parts make sense: no scenario spread while the scenarios share their history,
    # model spread grows with the diverging slopes
    scenario = results["event_days_partition_scenario"].sel(depth=500.0)
    assert float(scenario.sel(winter=2000)) < 0.05 * float(scenario.sel(winter=2040))
    units = results["event_days_partition_total"].attrs["units"]
    assert units == "days2"
    assert results["winter_temperature_anomaly_partition_model"].attrs["units"] == "K2"


def test_scenario_and_model_parts_equal_xclim_hawkins_sutton() -> None:
    """On a balanced ensemble with one member per model, the scenario and model parts are
    xclim.ensembles.hawkins_sutton's, given the same smoothed series and weights."""
    rng = np.random.default_rng(3)
    years = np.arange(1950, 2101)
    models, scenarios = ["m1", "m2", "m3", "m4"], ["s1", "s2", "s3"]
    trend = rng.uniform(0.005, 0.03, (len(scenarios), len(models)))[:, :, None]
    data = trend * (years - 1950) + rng.normal(0, 0.3, (len(scenarios), len(models), years.size))
    da = xr.DataArray(
        data,
        dims=("experiment", "source_id", "winter"),
        coords={"experiment": scenarios, "source_id": models, "winter": years},
    )
    family = xr.DataArray(["f1", "f1", "f2", "f3"], dims="source_id", coords={"source_id": models})
    options = PartitionOptions(baseline=(1971, 2000), window=1)
    samples = da.expand_dims(member_id=["r1"], ensemble=1).transpose(
        "experiment", "source_id", "member_id", "winter", "ensemble"
    )
    ours = variance_partition(samples, family, options, emulator=False)
    time = pd.to_datetime([f"{y}-01-01" for y in years])

    def hs(x: xr.DataArray) -> xr.DataArray:
        return x.rename(experiment="scenario", source_id="model", winter="time").assign_coords(
            time=time
        )

    fitted = ours["model_forced_response"] + 0.0  # a copy: xclim removes its baseline in place
    weights = xr.DataArray([0.5, 0.5, 1.0, 1.0], dims="model", coords={"model": models})
    _, theirs = hawkins_sutton(hs(da), sm=hs(fitted), weights=weights, baseline=("1971", "2000"))
    for part in ("scenario", "model"):
        np.testing.assert_allclose(
            ours[part].values, theirs.sel(uncertainty=part).values, rtol=1e-10, err_msg=part
        )


def test_family_weighting_changes_the_multimodel_mean_as_by_hand(
    results: xr.Dataset, store: str, tmp_path: Path, planted: dict
) -> None:
    """Winter 2030 at 500 m under ssp585: GCM-A 10, its RCM 20, GCM-B 40 event days.
    Families: ((10 + 20) / 2 + 40) / 2 = 27.5; three independent models would give 70 / 3."""
    sel = {"experiment": "ssp585", "winter": HAND_WINTER, "depth": 500.0}
    assert float(results["event_days_multimodel_mean"].sel(sel)) == pytest.approx(27.5, rel=1e-6)
    assert int(results["event_days_multimodel_count"].sel(sel)) == 3
    assert int(results["event_days_multimodel_family_count"].sel(sel)) == 2
    # weighted std: sqrt((0.25 (10 - 27.5)^2 + 0.25 (20 - 27.5)^2 + 0.5 (40 - 27.5)^2))
    std = np.sqrt(0.25 * 17.5**2 + 0.25 * 7.5**2 + 0.5 * 12.5**2)
    assert float(results["event_days_multimodel_std"].sel(sel)) == pytest.approx(std, rel=1e-6)
    families = results[FAMILY_COORD]
    assert dict(zip(families["source_id"].values, families.values, strict=True)) == FAMILY
    assert "family_fallback" not in families.attrs
    # the same store without recorded families (an older store): equal weights, and said so
    plain = str(tmp_path / "plain.zarr")
    _write_store(plain, planted, families=False)
    with open_cube(plain, spread=False) as ds:
        assert FAMILY_VAR in ds  # created empty: nothing recorded
        other = spread_statistics(ds.drop_vars(FAMILY_VAR), **OPTIONS)
    assert float(other["event_days_multimodel_mean"].sel(sel)) == pytest.approx(70 / 3, rel=1e-6)
    assert "GCM-A_RCM-X" in other[FAMILY_COORD].attrs["family_fallback"]
    # sign agreement by family: GCM-A and its RCM lose days, GCM-B gains: equal weights
    # 2/3 negative, families 1/2
    period = {"experiment": "ssp585", "period": "2021-2040", "depth": 500.0}
    change = results["event_days_period_model_change"].sel(period)
    assert np.sign(change.values).tolist() == [-1.0, -1.0, 1.0]
    assert float(results["event_days_period_negative_fraction"].sel(period)) == 0.5
    assert float(results["event_days_period_model_agreement"].sel(period)) == 0.5
    assert float(other["event_days_period_model_agreement"].sel(period)) == pytest.approx(2 / 3)
    mm = (change.values[0] + change.values[1]) / 4 + change.values[2] / 2
    got = float(results["event_days_period_multimodel_change"].sel(period))
    assert got == pytest.approx(mm, rel=1e-9)


def test_robustness_and_honest_likelihood(results: xr.Dataset) -> None:
    # the temperature warms in every model far beyond its noise: robust, significant in all
    sel = {"experiment": "ssp585", "period": "2021-2040", "depth": 500.0}
    assert float(results["winter_temperature_anomaly_period_significant_fraction"].sel(sel)) == 1.0
    assert float(results["winter_temperature_anomaly_period_model_agreement"].sel(sel)) == 1.0
    assert float(results["winter_temperature_anomaly_period_robustness"].sel(sel)) == 1.0
    # ... but with two families no likelihood statement holds
    assert float(results["winter_temperature_anomaly_period_likelihood"].sel(sel)) == 0.0
    assert int(results["winter_temperature_anomaly_period_family_count"].sel(sel)) == 2
    # event days under ssp585: families disagree -> conflicting or no robust signal
    assert float(results["event_days_period_robustness"].sel(sel)) in (2.0, 3.0)
    assert (
        results["winter_temperature_anomaly_period_robustness"]
        .sel(period="1995-2014")
        .isnull()
        .all()
    )
    # the bound the wording rests on (one-sided 90 % Clopper-Pearson)
    n = xr.DataArray([3.0, 6.0, 22.0, 30.0])
    bound = likelihood_bound(xr.ones_like(n), n).values
    np.testing.assert_allclose(bound, 0.1 ** (1 / n.values), rtol=1e-9)
    assert bound[0] < 0.66 < bound[1] and bound[2] >= 0.90 > bound[1]


def test_time_of_emergence(results: xr.Dataset, planted: dict) -> None:
    """The first winter from which the smoothed change stays beyond 2 internal std."""
    forced = results["winter_temperature_anomaly_forced_response"].sel(
        experiment="ssp585", depth=500.0
    )
    noise = float(results["winter_temperature_anomaly_internal_std"].sel(depth=500.0))
    beyond = np.abs(forced.values) > 2 * noise
    assert beyond[-1]
    first = WINTERS[np.flatnonzero(~beyond)[-1] + 1]
    got = float(
        results["winter_temperature_anomaly_emergence_winter"].sel(experiment="ssp585", depth=500.0)
    )
    assert got == first
    assert BASELINE[1] < got < 2040
    # per model: each against its own internal variability
    model = results["winter_temperature_anomaly_model_emergence_winter"]
    assert np.isfinite(model.sel(experiment="ssp585", depth=500.0)).all()
    assert model.sel(experiment="ssp245", source_id="GCM-A_RCM-X").isnull().all()
    # historical and scenario-less experiments have none
    assert results["event_days_emergence_winter"].sel(experiment=HIST).isnull().all()


def test_families_are_recorded_once(tmp_path: Path, planted: dict) -> None:
    """A store whose families are not recorded yet gets them (nothing else changes), a
    rerun with the same families writes nothing, and contradicting families are named."""
    path = str(tmp_path / "old.zarr")
    _write_store(path, planted, families=False)
    with open_cube(path) as ds:
        before = ds.drop_vars(FAMILY_VAR).load()
    record_families(path, {c: FAMILY[c[1]] for c in COMBOS})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.open_zarr(path).close()
        after = open_cube(path).load()
    xr.testing.assert_identical(after.drop_vars(FAMILY_VAR), before)
    rcm = after[FAMILY_VAR].sel(experiment="ssp585", source_id="GCM-A_RCM-X", member_id="r1")
    assert str(rcm.values) == "GCM-A"
    assert after.attrs["institution"] == "partition test"
    chunks = {p: p.stat().st_mtime_ns for p in Path(path, FAMILY_VAR).iterdir()}
    record_families(path, {c: FAMILY[c[1]] for c in COMBOS})
    assert {p: p.stat().st_mtime_ns for p in Path(path, FAMILY_VAR).iterdir()} == chunks
    # a second catalog naming another family for the same model: the spread pass says so
    record_families(path, {("historical", "GCM-A_RCM-X", "r1"): "GCM-B"})
    with open_cube(path) as ds, pytest.raises(SpreadError, match="GCM-A_RCM-X"):
        spread_statistics(ds, **OPTIONS)
