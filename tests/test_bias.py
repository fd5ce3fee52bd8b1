"""Bias adjustment (xsdba QDM) on synthetic daily predictors with known biases and changes.

The reference is 30 years (1985-2014) of two regions with a seasonal cycle, red-free
Gaussian weather noise for ``tas`` and gamma-distributed rain on ~30 % of days for
``pr``.  The model's historical run is another realisation with ``tas`` +2 K and
1.3x the noise, ``pr`` x0.7; its scenario (2015-2100) ramps linearly to +3 K and
x1.2 by 2100.  Training is done once per module: the first QDM in a process pays
numba's compilation of xsdba's kernels (~5-20 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from cascadia.sources.bias import BiasAdjustmentConfig, FittedAdjustment, diagnostics, fit
from cascadia.sources.config import CatalogError, load_run_catalog

MM_DAY = 1.0 / 86400.0  # kg m-2 s-1 per mm/day
REGIONS = ["shelf", "tramontane"]
SHIPPED = Path(__file__).resolve().parents[1] / "catalogs/cmip6.yaml"
QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]
# The defaults: rain multiplicative by season with its mean change preserved, tas additive.
CONFIG = BiasAdjustmentConfig()


def world(
    start: int,
    end: int,
    seed: int,
    tas_bias: float = 0.0,
    tas_scale: float = 1.0,
    pr_factor: float = 1.0,
    ramp: tuple[int, int, float, float] | None = None,
) -> xr.Dataset:
    """Daily canonical predictors; ``ramp`` = (year0, year1, +K, x rain) reached linearly."""
    rng = np.random.default_rng(seed)
    time = pd.date_range(f"{start}-01-01", f"{end}-12-31", freq="D", unit="ns")
    n = time.size
    phase = ((time.day_of_year.to_numpy() - 1) / 365.25)[:, None]
    weight = np.zeros((n, 1))
    d_tas, pr_ratio = 0.0, 1.0
    if ramp is not None:
        y0, y1, d_tas, pr_ratio = ramp
        weight = np.clip((time.year.to_numpy()[:, None] + phase - y0) / (y1 - y0), 0, 1)
    seasonal = 287.6 - 6.8 * np.cos(2 * np.pi * (phase - 0.055)) + np.array([0.0, -1.5])
    tas = seasonal + tas_bias + tas_scale * rng.normal(0, 1.8, (n, 2)) + d_tas * weight
    wet = rng.random((n, 2)) < 0.30 + 0.12 * np.cos(2 * np.pi * (phase - 0.8))
    rain = np.where(wet, rng.gamma(0.8, 9.0, (n, 2)), 0.0)  # mm/day
    pr = rain * pr_factor * (1 + (pr_ratio - 1) * weight) * MM_DAY
    return xr.Dataset(
        {
            "tas": (("time", "region"), tas, {"units": "K"}),
            "pr": (("time", "region"), pr, {"units": "kg m-2 s-1"}),
        },
        coords={"time": time, "region": REGIONS},
    )


def wet_quantiles(pr: xr.DataArray) -> np.ndarray:
    """Quantiles (mm/day) of days wetter than 1 mm/day, shape (region, quantile)."""
    values = pr.transpose("region", "time").to_numpy() / MM_DAY
    return np.array([np.quantile(row[row > 1.0], QUANTILES) for row in values])


@pytest.fixture(scope="module")
def data() -> dict[str, xr.Dataset]:
    reference = world(1985, 2014, seed=1)
    historical = world(1985, 2014, seed=2, tas_bias=2.0, tas_scale=1.3, pr_factor=0.7)
    future = world(
        2015, 2100, seed=3, tas_bias=2.0, tas_scale=1.3, pr_factor=0.7, ramp=(2015, 2100, 3.0, 1.2)
    )
    return {"reference": reference, "historical": historical, "future": future}


@pytest.fixture(scope="module")
def fitted(data: dict[str, xr.Dataset]) -> FittedAdjustment:
    return fit(data["reference"], data["historical"], CONFIG)


@pytest.fixture(scope="module")
def adjusted(fitted: FittedAdjustment, data: dict[str, xr.Dataset]) -> dict[str, xr.Dataset]:
    return {
        "historical": fitted.adjust(data["historical"]),
        "future": fitted.adjust(data["future"]),
    }


@pytest.fixture(scope="module")
def diag(data: dict[str, xr.Dataset], adjusted: dict[str, xr.Dataset]) -> xr.Dataset:
    return diagnostics(
        data["reference"],
        data["historical"],
        adjusted["historical"],
        data["future"],
        adjusted["future"],
        config=CONFIG,
    )


# ------------------------------------------------------------------ quantile match


def test_tas_quantiles_match_reference(data, adjusted) -> None:
    ref_q = data["reference"].tas.quantile(QUANTILES, "time")
    raw_err = data["historical"].tas.quantile(QUANTILES, "time") - ref_q
    adj_err = adjusted["historical"].tas.quantile(QUANTILES, "time") - ref_q
    # Measured: raw +1.50..+2.49 K, adjusted |error| <= 0.03 K.
    assert float(raw_err.sel(quantile=[0.25, 0.5, 0.75]).min()) > 1.5
    assert float(abs(raw_err).min()) > 1.0
    assert float(abs(adj_err).max()) < 0.15
    assert adjusted["historical"].tas.attrs["units"] == "K"
    assert adjusted["historical"].tas.dims == ("time", "region")


def test_pr_wet_day_quantiles_match_reference(data, adjusted) -> None:
    ref_q = wet_quantiles(data["reference"].pr)
    raw_rel = wet_quantiles(data["historical"].pr) / ref_q - 1
    adj_rel = wet_quantiles(adjusted["historical"].pr) / ref_q - 1
    # Measured: raw -7 %..-30 %, adjusted within 0.8 %.
    assert raw_rel[:, 2:].max() < -0.2
    assert np.abs(adj_rel).max() < 0.02
    # Dry days stay dry, no negative rain, wet-day frequency close to the reference.
    pr = adjusted["historical"].pr
    assert float(pr.min()) == 0.0
    wet_ref = float((data["reference"].pr > MM_DAY).mean())
    assert abs(float((pr > MM_DAY).mean()) - wet_ref) < 0.01


# ------------------------------------------------------------- change preservation


def test_future_change_preserved(diag) -> None:
    tas = diag.sel(variable="tas")
    pr = diag.sel(variable="pr")
    # The scenario warms by ~2.5 K over 2071-2100 and rains ~15 % more.
    assert float(tas.change_mean.sel(stage="raw").min()) > 2.0
    assert float(abs(tas.change_preservation_error).max()) < 0.2
    assert float(pr.relative_change_mean.sel(stage="raw").min()) > 0.1
    assert float(abs(pr.change_preservation_error).max()) < 0.05


def test_continuous_series_equals_separate_runs(fitted, data, adjusted) -> None:
    continuous = xr.concat([data["historical"], data["future"]], "time")
    out = fitted.adjust(continuous)
    assert out.sizes["time"] == continuous.sizes["time"]
    late = slice("2035", "2100")  # windows away from the series' start are identical
    xr.testing.assert_allclose(out.tas.sel(time=late), adjusted["future"].tas.sel(time=late))
    d = diagnostics(data["reference"], continuous, out, continuous, out, config=CONFIG)
    assert float(abs(d.change_preservation_error.sel(variable="tas")).max()) < 0.2
    assert float(abs(d.change_preservation_error.sel(variable="pr")).max()) < 0.05


def test_variables_with_the_same_settings_are_adjusted_together_identically(
    data, monkeypatch
) -> None:
    """tas, psl and uas (additive, monthly) share one xsdba call per window; the values
    are exactly those of adjusting each alone, rain (its own settings) stays alone."""
    from xsdba import QuantileDeltaMapping

    def more(ds: xr.Dataset, seed: int, psl_bias: float) -> xr.Dataset:
        rng = np.random.default_rng(seed)
        n, shape = ds.sizes["time"], (ds.sizes["time"], len(REGIONS))
        seasonal = np.cos(2 * np.pi * np.arange(n) / 365.25)[:, None]
        return ds.assign(
            psl=(
                ("time", "region"),
                101500 + psl_bias + 300 * seasonal + rng.normal(0, 800, shape),
                {"units": "Pa"},
            ),
            uas=(("time", "region"), 1.0 + rng.normal(0, 4.0, shape), {"units": "m s-1"}),
        )

    reference = more(data["reference"], 11, 0.0)
    historical = more(data["historical"], 12, 250.0)
    future = more(data["future"], 13, 250.0)
    fitted = fit(reference, historical, CONFIG)
    calls = []
    plain_adjust = QuantileDeltaMapping.adjust

    def counted(self, sim, *args, **kwargs):
        calls.append(sim.dims)
        return plain_adjust(self, sim, *args, **kwargs)

    monkeypatch.setattr(QuantileDeltaMapping, "adjust", counted)
    together = fitted.adjust(future)
    windows = len(range(2015, 2101, CONFIG.stride_years))
    assert len(calls) == 2 * windows  # {tas, psl, uas} and pr, one call each per window
    for var in ("tas", "psl", "uas", "pr"):
        alone = fitted.adjust(future, variables=[var])[var]
        xr.testing.assert_identical(together[var], alone)
        assert together[var].attrs["units"] == future[var].attrs["units"]
    assert list(together.data_vars) == ["tas", "pr", "psl", "uas"]
    assert float(abs(together.psl - future.psl).mean()) > 150  # it was adjusted


def test_without_windows_qdm_loses_the_change(fitted, data) -> None:
    """Ranking 1985-2100 at once maps a warming onto the model's own upper quantiles."""
    continuous = xr.concat([data["historical"], data["future"]], "time")[["tas"]]
    plain = FittedAdjustment(
        config=fitted.config.model_copy(update={"window_years": None}),
        parameters={"tas": fitted.parameters["tas"]},
        units={"tas": "K"},
        adapt_freq_thresh={},
        overlap=fitted.overlap,
    )
    out = plain.adjust(continuous)
    d = diagnostics(data["reference"], continuous, out, continuous, out, config=CONFIG)
    # Measured: -0.46 K (the 1.3x variance ratio shrinks the trend by ~1/1.3).
    assert float(d.change_preservation_error.sel(variable="tas").max()) < -0.3


def test_monthly_rain_groups_and_mean_change(data) -> None:
    """Small groups + "*" inflate the mean change of rain; PresRat restores it."""
    errors = {}
    for preserve in (False, True):
        config = BiasAdjustmentConfig(
            variables={"pr": {"group": "time.month", "preserve_mean_change": preserve}}
        )
        monthly = fit(data["reference"][["pr"]], data["historical"][["pr"]], config)
        assert monthly.adapt_freq_thresh["pr"].startswith("1.15740740")
        assert monthly.adapt_freq_thresh["pr"].endswith("kg m-2 s-1")
        hist = monthly.adjust(data["historical"])
        fut = monthly.adjust(data["future"].sel(time=slice("2071", "2100")))
        d = diagnostics(data["reference"], data["historical"], hist, data["future"], fut)
        errors[preserve] = d.change_preservation_error.sel(variable="pr").values
    # Measured: +6.1 and +1.7 percentage points without preservation, +1.6 and +1.0 with
    # it (each month keeps its change; the annual mean weights them by the reference).
    assert errors[False].max() > 0.04
    assert np.abs(errors[True]).max() < 0.02


# ------------------------------------------------------------------------ storage


def test_parameters_round_trip_through_zarr(fitted, data, adjusted, tmp_path) -> None:
    params = fitted.to_dataset()
    assert {"tas_af", "tas_hist_q", "pr_af", "pr_hist_q", "pr_P0_ref", "pr_pth"} <= set(params)
    assert {"pr_hist_mean", "pr_hist_mean_adjusted"} <= set(params)
    assert "tas_hist_mean" not in params  # additive tas: QDM keeps its mean change
    assert params.tas_af.dims == ("region", "month", "tas_quantiles")
    assert params.pr_af.dims == ("region", "season", "pr_quantiles")
    assert params.pr_hist_mean.dims == ("region", "season")
    assert (params.sizes["tas_quantiles"], params.sizes["pr_quantiles"]) == (50, 302)
    settings = json.loads(params.attrs["cascadia_bias_adjustment"])["settings"]["pr"]
    assert settings["kind"] == "*" and settings["group"] == "time.season"
    assert settings["adapt_freq_thresh"].endswith("kg m-2 s-1")
    store = tmp_path / "qdm.zarr"
    params.to_zarr(store, zarr_format=2, consolidated=True)
    reloaded = FittedAdjustment.from_dataset(xr.open_zarr(store))
    assert reloaded.config == fitted.config
    assert reloaded.units == fitted.units
    assert reloaded.overlap == ("1985-01-01", "2014-12-31")
    again = reloaded.adjust(data["historical"])
    xr.testing.assert_identical(again, adjusted["historical"])


def test_from_dataset_rejects_foreign_data() -> None:
    with pytest.raises(ValueError, match="not a cascadia bias-adjustment"):
        FittedAdjustment.from_dataset(xr.Dataset({"af": ("x", [1.0])}))


# --------------------------------------------------------------------- diagnostics


def test_diagnostics_numbers_show_bias_reduction(diag, data, adjusted) -> None:
    assert set(diag.stage.values) == {"raw", "adjusted"}
    assert list(diag.region.values) == REGIONS
    assert list(diag.bias_quantile.values) == [0.05, 0.5, 0.95]
    assert list(diag.change_quantile.values) == [0.1, 0.5, 0.9]
    assert diag.attrs["overlap_period"] == "1985-2014"
    assert diag.attrs["future_period"] == "2071-2100"
    assert diag.units.sel(variable="pr").item() == "kg m-2 s-1"
    shelf = {"region": "shelf"}
    expected = float(
        data["historical"].tas.sel(shelf).mean() - data["reference"].tas.sel(shelf).mean()
    )
    got = float(diag.bias_mean.sel(variable="tas", stage="raw", region="shelf"))
    assert got == pytest.approx(expected)
    tas = diag.sel(variable="tas")
    assert float(tas.bias_mean.sel(stage="raw").min()) > 1.5
    assert float(abs(tas.bias_mean.sel(stage="adjusted")).max()) < 0.05
    assert float(abs(tas.bias_quantiles.sel(stage="adjusted")).max()) < 0.15
    pr = diag.sel(variable="pr")
    assert float(pr.relative_bias_mean.sel(stage="raw").max()) < -0.25
    assert float(abs(pr.relative_bias_mean.sel(stage="adjusted")).max()) < 0.03
    change = float(tas.change_mean.sel(stage="adjusted", region="shelf"))
    fut = adjusted["future"].tas.sel(region="shelf", time=slice("2071", "2100")).mean()
    hist = adjusted["historical"].tas.sel(region="shelf").mean()
    assert change == pytest.approx(float(fut - hist))


# ----------------------------------------------------------------- grouping options


def test_windowed_day_of_year_group() -> None:
    # Short (11 years, one region): day-of-year groups are xsdba's slowest (~366 groups).
    reference = world(2004, 2014, seed=4).isel(region=[0])[["tas"]]
    historical = world(2004, 2014, seed=5, tas_bias=2.0, tas_scale=1.3).isel(region=[0])[["tas"]]
    cfg = BiasAdjustmentConfig(
        overlap_start=2004, variables={"tas": {"group": "time.dayofyear:31"}}
    )
    out = fit(reference, historical, cfg).adjust(historical)
    err = out.tas.quantile(QUANTILES, "time") - reference.tas.quantile(QUANTILES, "time")
    assert float(abs(err).max()) < 0.15


@pytest.mark.parametrize("group", ["time", "time.month", "time.season", "time.dayofyear"])
def test_group_options_accepted(group: str) -> None:
    config = BiasAdjustmentConfig(variables={"pr": {"group": group}})
    assert config.for_variable("pr").group == group
    assert config.for_variable("pr").kind == "*"  # the other built-in settings stay


# --------------------------------------------------------------------------- errors


def test_unit_mismatch_names_variable(data) -> None:
    hist = data["historical"].copy()
    hist["tas"] = (hist.tas - 273.15).assign_attrs(units="degC")
    with pytest.raises(ValueError, match=r"'tas'.*units differ.*'K'.*'degC'"):
        fit(data["reference"], hist, CONFIG)
    bare = data["historical"].copy()
    bare["pr"] = bare.pr.drop_attrs()
    with pytest.raises(ValueError, match=r"'pr' in the historical simulation has no 'units'"):
        fit(data["reference"], bare, CONFIG)


def test_adjust_unit_mismatch_names_variable(fitted, data) -> None:
    sim = data["future"].copy()
    sim["pr"] = (sim.pr * 86400).assign_attrs(units="mm d-1")
    with pytest.raises(ValueError, match=r"'pr'.*'mm d-1'.*trained"):
        fitted.adjust(sim)
    with pytest.raises(ValueError, match=r"'tas' is fitted but missing"):
        fitted.adjust(data["future"][["pr"]])


def test_short_overlap_names_input_and_variable(data) -> None:
    short_ref = data["reference"].sel(time=slice("2007", "2014"))
    with pytest.raises(ValueError, match=r"'tas': the reference holds only 8\.0 years"):
        fit(short_ref, data["historical"], CONFIG)
    short_hist = data["historical"].copy()
    short_hist["pr"] = short_hist.pr.where(short_hist.time.dt.year >= 2006)
    with pytest.raises(ValueError, match=r"'pr': the historical simulation holds only 9\.0 years"):
        fit(data["reference"], short_hist, CONFIG)


def test_unknown_kind_names_variable(data) -> None:
    with pytest.raises(ValueError, match=r"variables\.tas\.kind\n.*'\+' or '\*'"):
        BiasAdjustmentConfig(variables={"tas": {"kind": "x"}})
    with pytest.raises(ValueError, match=r"variables\.pr\.kind"):
        fit(data["reference"], data["historical"], {"variables": {"pr": {"kind": "-"}}})


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match=r"variables\.pr\.nquantile\n.*Extra"):
        BiasAdjustmentConfig(variables={"pr": {"nquantile": 50}})
    with pytest.raises(ValueError, match=r"variables\.tas\.group\n.*unknown group"):
        BiasAdjustmentConfig(variables={"tas": {"group": "time.week"}})
    with pytest.raises(ValueError, match="odd"):
        BiasAdjustmentConfig(variables={"tas": {"group": "time.dayofyear:30"}})
    with pytest.raises(ValueError, match="overlap_end"):
        BiasAdjustmentConfig(overlap_start=2014, overlap_end=1985)
    with pytest.raises(ValueError, match=r"variables\.pr\.adapt_freq_thresh\n.*'a lot'"):
        BiasAdjustmentConfig(variables={"pr": {"adapt_freq_thresh": "a lot"}})
    with pytest.raises(ValueError, match=r"variables\.pr\.extrapolation"):
        BiasAdjustmentConfig(variables={"pr": {"extrapolation": "linear"}})
    assert BiasAdjustmentConfig().kind_for("sfcWind") == "*"
    assert BiasAdjustmentConfig().kind_for("uas") == "+"
    no_adapt = BiasAdjustmentConfig(variables={"pr": {"adapt_freq_thresh": None}})
    assert no_adapt.for_variable("pr").adapt_freq_thresh is None
    assert no_adapt.for_variable("pr").jitter_under_thresh == "0.01 mm/day"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"group": "time.week"}, "bias_adjustment.variables.pr.group: Value error, unknown group"),
        ({"kind": "x"}, "bias_adjustment.variables.pr.kind: Input should be '+' or '*'"),
        ({"nquantiles": 2}, "bias_adjustment.variables.pr.nquantiles: Input should be greater"),
        ({"adapt_freq_thresh": "wet"}, "bias_adjustment.variables.pr.adapt_freq_thresh: Value"),
        ({"extrapolation": "linear"}, "bias_adjustment.variables.pr.extrapolation: Input should"),
        ({"windows": 30}, "bias_adjustment.variables.pr.windows: Extra inputs are not permitted"),
    ],
)
def test_run_catalog_errors_name_the_field(tmp_path, edit, message) -> None:
    data = yaml.safe_load(SHIPPED.read_text())
    data["bias_adjustment"]["variables"]["pr"].update(edit)
    path = tmp_path / "cmip6.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError) as err:
        load_run_catalog(str(path))
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


def test_run_catalog_names_unknown_variables_and_old_kinds(tmp_path) -> None:
    data = yaml.safe_load(SHIPPED.read_text())
    data["bias_adjustment"]["variables"]["precip"] = {"kind": "*"}
    path = tmp_path / "cmip6.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match=r"variables \['precip'\] are not canonical"):
        load_run_catalog(str(path))
    del data["bias_adjustment"]["variables"]
    data["bias_adjustment"]["kinds"] = {"pr": "*"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match=r"'kinds' was replaced by 'variables'"):
        load_run_catalog(str(path))


def test_config_round_trips_through_json() -> None:
    config = BiasAdjustmentConfig(variables={"pr": {"group": "time.month"}, "hurs": {}})
    again = BiasAdjustmentConfig.model_validate(config.model_dump(mode="json"))
    assert again == config
    assert again.for_variable("pr").kind == "*"
    assert again.for_variable("hurs") == again.for_variable("huss")  # both the plain default


def test_non_standard_time_axis_rejected(data) -> None:
    ref = data["reference"].isel(time=slice(0, 10))
    noleap = ref.assign_coords(time=[cftime.DatetimeNoLeap(2000, 1, d) for d in range(1, 11)])
    with pytest.raises(ValueError, match="datetime64"):
        fit(ref, noleap, CONFIG)
