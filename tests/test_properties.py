"""Property-based tests (hypothesis) of unit conversion, calendar conversion and regional
averaging: the three steps every source's values pass through (issue 17)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from cascadia.sources.predictors.calendars import to_calendar
from cascadia.sources.predictors.regions import Region, regional_means
from cascadia.sources.predictors.units import convert_variable

SETTINGS = settings(max_examples=30, deadline=None)
finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


def _series(values: list[float], units: str, name: str = "x") -> xr.DataArray:
    time = pd.date_range("2001-01-01", periods=len(values), freq="D")
    return xr.DataArray(
        np.asarray(values, dtype=np.float64),
        dims="time",
        coords={"time": time},
        attrs={"units": units},
        name=name,
    )


@SETTINGS
@given(values=st.lists(finite, min_size=1, max_size=20))
def test_unit_conversions_are_the_textbook_factors_and_round_trip(values) -> None:
    x = np.asarray(values)
    kelvin = convert_variable(_series(values, "degC"), "K").values
    np.testing.assert_allclose(kelvin, x + 273.15, rtol=1e-12, atol=1e-9)
    back = convert_variable(_series(list(kelvin), "K"), "degC").values
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        convert_variable(_series(values, "hPa"), "Pa").values, 100 * x, rtol=1e-12
    )
    np.testing.assert_allclose(
        convert_variable(_series(values, "km h-1"), "m s-1").values, x / 3.6, rtol=1e-12
    )


@SETTINGS
@given(values=st.lists(st.floats(0, 500, allow_nan=False), min_size=1, max_size=20))
def test_precipitation_depth_per_day_becomes_a_mass_flux(values) -> None:
    flux = convert_variable(_series(values, "mm/day", "pr"), "kg m-2 s-1", "pr").values
    np.testing.assert_allclose(flux, np.asarray(values) / 86400.0, rtol=1e-12, atol=1e-15)


@SETTINGS
@given(start=st.integers(1950, 2096), years=st.integers(1, 4), seed=st.integers(0, 1000))
def test_noleap_to_standard_keeps_every_day_and_fills_each_feb29(start, years, seed) -> None:
    time = xr.date_range(
        f"{start}-01-01", periods=365 * years, freq="D", calendar="noleap", use_cftime=True
    )
    values = np.random.default_rng(seed).normal(size=time.size)
    out = to_calendar(xr.Dataset({"psl": ("time", values)}, coords={"time": time}))["psl"]
    days = pd.DatetimeIndex(out["time"].values)
    expected_days = pd.date_range(f"{start}-01-01", f"{start + years - 1}-12-31", freq="D")
    assert days.equals(expected_days)
    leap = (days.month == 2) & (days.day == 29)
    np.testing.assert_array_equal(out.values[~leap], values)  # every source day, in order
    for i in np.flatnonzero(leap):
        np.testing.assert_allclose(out.values[i], 0.5 * (out.values[i - 1] + out.values[i + 1]))


def _overlap(centres: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fraction of each 1-degree cell (centred on ``centres``) inside [low, high]."""
    left, right = centres - 0.5, centres + 0.5
    return np.clip(np.minimum(right, high) - np.maximum(left, low), 0.0, 1.0)


@SETTINGS
@given(
    lat_min=st.floats(40.0, 43.0),
    lat_size=st.floats(0.3, 3.0),
    lon_min=st.floats(-3.0, 5.0),
    lon_size=st.floats(0.3, 4.0),
    seed=st.integers(0, 1000),
    holes=st.integers(0, 5),
)
def test_a_regional_mean_is_the_cos_latitude_overlap_weighted_mean(
    lat_min, lat_size, lon_min, lon_size, seed, holes
) -> None:
    lat = np.arange(39.0, 46.0)
    lon = np.arange(-4.0, 10.0)
    rng = np.random.default_rng(seed)
    field = rng.normal(280.0, 5.0, size=(3, lat.size, lon.size))
    field[:, rng.integers(0, lat.size, holes), rng.integers(0, lon.size, holes)] = np.nan
    ds = xr.Dataset(
        {"tas": (("time", "lat", "lon"), field, {"units": "K"})},
        coords={"time": pd.date_range("2001-01-01", periods=3), "lat": lat, "lon": lon},
    )
    region = Region(
        name="box",
        lat_min=lat_min,
        lat_max=lat_min + lat_size,
        lon_min=lon_min,
        lon_max=lon_min + lon_size,
    )
    got = regional_means(ds, [region])["tas"].sel(region="box").values
    weights = (
        np.cos(np.deg2rad(lat))[:, None]
        * _overlap(lat, lat_min, lat_min + lat_size)[:, None]
        * _overlap(lon, lon_min, lon_min + lon_size)[None, :]
    )
    valid = np.isfinite(field) & (weights[None] > 0)
    expected = (np.where(valid, field * weights, 0.0).sum((1, 2))) / np.where(
        valid, weights[None], 0.0
    ).sum((1, 2))
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # a constant field's mean is the constant, whatever the box and the holes
    constant = ds.assign(tas=ds["tas"] * 0 + 7.5)
    np.testing.assert_allclose(
        regional_means(constant, [region])["tas"].sel(region="box").values, 7.5, rtol=1e-12
    )
