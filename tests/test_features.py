"""Model inputs: the physics-shaped columns and the shelf slab respond as the physics says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cascadia.learning.airsea import CP, RHO0, climatological_sst, surface_fluxes
from cascadia.learning.features import (
    PHYSICS_COLUMNS,
    FeatureSpec,
    load_feature_spec,
    model_features,
    save_feature_spec,
)
from cascadia.learning.shelf import shelf_slab
from cascadia.mooring.targets import TargetError

REGIONS = ["gulf_of_lion_shelf", "mistral", "tramontane"]


def _weather(time: pd.DatetimeIndex, tas_c: float = 10.0, wind: float = 6.0, hurs: float = 75.0):
    n = len(time)
    return {
        "tas": np.full(n, 273.15 + tas_c),
        "hurs": np.full(n, hurs),
        "psl": np.full(n, 101_500.0),
        "pr": np.full(n, 1.0 / 86400),  # 1 mm/day
        "sfcWind": np.full(n, wind),
        "uas": np.full(n, -wind),
        "vas": np.zeros(n),
    }


def _dataset(time: pd.DatetimeIndex, weather: dict[str, np.ndarray]) -> xr.Dataset:
    return xr.Dataset(
        {
            name: (("time", "region"), np.repeat(values[:, None], len(REGIONS), axis=1))
            for name, values in weather.items()
        },
        coords={"time": time, "region": REGIONS},
    )


def test_a_cold_dry_windy_winter_makes_denser_shelf_water() -> None:
    time = pd.date_range("2000-07-01", "2001-04-30", freq="D")
    mild = shelf_slab(_weather(time), time)
    harsh = shelf_slab(_weather(time, tas_c=2.0, wind=14.0, hurs=55.0), time)
    winter = slice(time.get_loc("2001-01-01"), None)
    # Colder, saltier, denser by at least a few tenths of kg m-3 in mid-winter.
    assert harsh.temperature[winter].min() < mild.temperature[winter].min() - 2.0
    assert harsh.salinity[winter].max() > mild.salinity[winter].max() + 0.02
    assert harsh.sigma0[winter].max() > mild.sigma0[winter].max() + 0.5
    # Plausible shelf values (°C, psu, kg m-3): no runaway integration.
    assert 5.0 < harsh.temperature.min() < 16.0
    assert harsh.salinity.min() > 37.5 and harsh.salinity.max() < 39.5
    assert mild.sigma0.min() > 26.0 and harsh.sigma0.max() < 31.0


def test_rain_freshens_the_slab_and_a_missing_day_only_relaxes() -> None:
    time = pd.date_range("2000-11-01", "2001-03-31", freq="D")
    dry = _weather(time)
    wet = _weather(time)
    wet["pr"] = wet["pr"] * 20.0
    assert shelf_slab(wet, time).salinity[-1] < shelf_slab(dry, time).salinity[-1] - 0.05
    gap = _weather(time)
    gap["tas"][50] = np.nan
    slab = shelf_slab(gap, time)
    # No flux that day: one relaxation step towards the offshore (climatological) water.
    offshore = climatological_sst(time[50:51])[0]
    expected = slab.temperature[49] + (offshore - slab.temperature[49]) / 30.0
    assert slab.temperature[50] == pytest.approx(expected, abs=1e-5)
    assert np.isfinite(slab.sigma0).all()


def test_the_vectorised_slab_equals_the_explicit_daily_scheme() -> None:
    rng = np.random.default_rng(1)
    time = pd.date_range("2000-09-01", "2001-05-31", freq="D")
    weather = _weather(time)
    weather["tas"] = weather["tas"] + rng.normal(0, 4, len(time))
    weather["sfcWind"] = np.abs(weather["sfcWind"] + rng.normal(0, 4, len(time)))
    slab = shelf_slab(weather, time)
    sst = climatological_sst(time)
    temp, out = sst[0], []
    for i in range(len(time)):
        day = {k: v[i : i + 1] for k, v in weather.items()}
        flux = surface_fluxes(day, time[i : i + 1], sst=np.array([temp]))
        temp += flux.q_net[0] * 86400 / (RHO0 * CP * 80.0) + (sst[i] - temp) / 30.0
        out.append(temp)
    np.testing.assert_allclose(slab.temperature, out, atol=1e-5)


def test_feature_columns_follow_the_spec_and_physics_integrates_the_winter() -> None:
    time = pd.date_range("1999-05-01", "2001-04-30", freq="D")
    data = _dataset(time, _weather(time, tas_c=4.0, wind=10.0))
    spec = FeatureSpec(regions=["gulf_of_lion_shelf"])
    matrix = model_features(data, spec)
    names = [str(f) for f in matrix["feature"].values]
    raw = [f"{v}@gulf_of_lion_shelf" for v in sorted(data.data_vars)]
    assert names == raw + [f"{c}@gulf_of_lion_shelf" for c in PHYSICS_COLUMNS]
    loss = matrix.sel(feature="winter_loss@gulf_of_lion_shelf").to_series()
    # The winter integral restarts on 1 November and grows through a cold winter.
    assert loss["2000-11-01"] == pytest.approx(
        matrix.sel(feature="buoyancy_loss@gulf_of_lion_shelf").to_series()["2000-11-01"] * 86400
    )
    assert loss["2001-02-28"] > loss["2000-12-31"] > 0
    # The first winter has no preceding summer: its stratification is filled.
    assert np.isfinite(matrix.sel(feature="stratification@gulf_of_lion_shelf")).all()
    plain = model_features(data, FeatureSpec(physics=False))
    assert plain.sizes["feature"] == len(data.data_vars) * len(REGIONS)


def test_feature_spec_round_trip_and_clear_errors(tmp_path) -> None:
    time = pd.date_range("2000-01-01", "2000-03-31", freq="D")
    data = _dataset(time, _weather(time))
    with pytest.raises(TargetError, match="flux_region 'gulf' is not a predictor region"):
        model_features(data, FeatureSpec(flux_region="gulf"))
    with pytest.raises(TargetError, match=r"needs predictors \['sfcWind'\]"):
        model_features(data.drop_vars("sfcWind"), FeatureSpec(variables=["tas"]))
    with pytest.raises(TargetError, match="no feature recipe"):
        load_feature_spec(tmp_path)
    spec = FeatureSpec(regions=["mistral"], recent_days=20)
    save_feature_spec(tmp_path, spec)
    assert load_feature_spec(tmp_path) == spec


def test_the_slab_relaxes_to_the_given_sst() -> None:
    time = pd.date_range("2000-07-01", "2001-04-30", freq="D")
    weather = _weather(time, tas_c=6.0, wind=9.0)
    climatology = shelf_slab(weather, time)
    # tos equal to the climatology is the climatology path.
    same = shelf_slab({**weather, "tos": climatological_sst(time)}, time)
    np.testing.assert_allclose(same.temperature, climatology.temperature, atol=1e-5)
    np.testing.assert_allclose(same.sigma0, climatology.sigma0, atol=1e-5)
    # A sea 1.5 degC warmer than its climatology: a warmer, lighter slab, by most of it.
    warm = shelf_slab({**weather, "tos": climatological_sst(time) + 1.5}, time)
    winter = slice(time.get_loc("2001-01-01"), None)
    gain = warm.temperature[winter] - climatology.temperature[winter]
    assert gain.min() > 0.5 and gain.max() < 1.5
    assert (warm.sigma0[winter] < climatology.sigma0[winter] - 0.1).all()
    # A missing tos day falls back to the climatology of that day, no NaN.
    gappy = climatological_sst(time) + 1.5
    gappy[100:110] = np.nan
    assert np.isfinite(shelf_slab({**weather, "tos": gappy}, time).temperature).all()


def test_features_pass_tos_to_the_slab_only_when_the_model_reads_it() -> None:
    time = pd.date_range("1999-05-01", "2001-04-30", freq="D")
    weather = _weather(time, tas_c=4.0, wind=10.0)
    plain = _dataset(time, weather)
    warm = _dataset(time, {**weather, "tos": climatological_sst(time) + 2.0})
    variables = ["hurs", "pr", "psl", "sfcWind", "tas", "uas", "vas"]
    without = FeatureSpec(variables=variables, regions=["gulf_of_lion_shelf"])
    # A model trained without tos computes the same columns whether or not the source has it.
    xr.testing.assert_identical(model_features(plain, without), model_features(warm, without))
    reading = FeatureSpec(variables=[*variables, "tos"], regions=["gulf_of_lion_shelf"])
    matrix = model_features(warm, reading)
    assert "tos@gulf_of_lion_shelf" in matrix["feature"].values
    slab = "shelf_temperature@gulf_of_lion_shelf"
    difference = matrix.sel(feature=slab) - model_features(plain, without).sel(feature=slab)
    assert float(difference.sel(time="2001-02").min()) > 1.0
    # A model that reads tos refuses a source without it, naming the variable.
    with pytest.raises(TargetError, match="tos"):
        model_features(plain, reading)
