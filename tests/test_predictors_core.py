"""Tests of the lazy xarray core of predictor extraction (cascadia.sources.predictors).

Every expected number is computed here with plain numpy from the fixture
arrays, independently of the package code.
"""

from __future__ import annotations

import dask
import dask.array
import numpy as np
import pandas as pd
import pydantic
import pytest
import xarray as xr

from cascadia.sources.predictors.calendars import fill_short_gaps, to_calendar
from cascadia.sources.predictors.canonical import CANONICAL_UNITS, standardise, to_canonical
from cascadia.sources.predictors.daily import floor_to_day, to_daily
from cascadia.sources.predictors.grids import normalize_grid
from cascadia.sources.predictors.regions import (
    Region,
    all_nan_regions,
    region_weights,
    regional_means,
)
from cascadia.sources.predictors.units import convert_variable, hurs_from_dewpoint, wind_speed

ERA5_MAPPING = {
    "2m_temperature": "tas",
    "2m_dewpoint_temperature": "tdps",
    "total_precipitation": "pr",
    "10m_u_component_of_wind": "uas",
    "10m_v_component_of_wind": "vas",
    "mean_sea_level_pressure": "psl",
}
# Cell-edge-aligned box on the 1° fixture grid: cells lat 42, 43 and lon -2..3 entirely.
SHELF = Region(name="shelf", lat_min=41.5, lat_max=43.5, lon_min=-2.5, lon_max=3.5)
EAST = Region(name="east", lat_min=39.5, lat_max=44.5, lon_min=4.5, lon_max=8.5)


def _raise_on_compute(*args: object, **kwargs: object) -> None:
    raise AssertionError("something was computed")


def _esat_sonntag90(t: np.ndarray) -> np.ndarray:
    """Saturation vapour pressure over water (Pa), Sonntag (1990)."""
    return 100.0 * np.exp(
        -6096.9385 / t + 16.635794 - 2.711193e-2 * t + 1.673952e-5 * t**2 + 2.433502 * np.log(t)
    )


@pytest.fixture
def era5() -> xr.Dataset:
    """Three days of hourly ERA5-like fields: descending lat, 0–360 lon with a wrap."""
    rng = np.random.default_rng(42)
    lat = np.array([44.0, 43.0, 42.0, 41.0, 40.0])
    lon = np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 8, 358, 359])
    time = pd.date_range("2001-01-01", periods=72, freq="h")
    shape = (time.size, lat.size, lon.size)
    hours = np.arange(time.size)[:, None, None]
    tas = 280.0 + 5 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 1, shape)
    tdps = tas - rng.uniform(0.5, 6.0, shape)
    tp = np.where(rng.uniform(size=shape) < 0.4, rng.gamma(0.5, 4e-4, shape), 0.0)
    # Wind turning through the day: daily-mean wind is much weaker than mean speed.
    u = 8 * np.cos(2 * np.pi * hours / 24) + rng.normal(0, 1, shape)
    v = 8 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 1, shape)
    msl = 101300.0 + rng.normal(0, 300, shape)
    dims = ("time", "latitude", "longitude")
    return xr.Dataset(
        {
            "2m_temperature": (dims, tas, {"units": "K"}),
            "2m_dewpoint_temperature": (dims, tdps, {"units": "K"}),
            "total_precipitation": (dims, tp, {"units": "m"}),
            "10m_u_component_of_wind": (dims, u, {"units": "m s**-1"}),
            "10m_v_component_of_wind": (dims, v, {"units": "m s**-1"}),
            "mean_sea_level_pressure": (dims, msl, {"units": "Pa"}),
        },
        coords={
            "time": time,
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
    )


def _box_mean(ds: xr.Dataset, values: np.ndarray, region: Region) -> np.ndarray:
    """cos(lat)-weighted mean over cells whose centre is inside ``region`` (numpy)."""
    lat = ds["latitude"].values[:, None]
    lon = ds["longitude"].values[None, :]
    lon = np.where(lon >= 180, lon - 360, lon)
    inside = (
        (lat >= region.lat_min)
        & (lat <= region.lat_max)
        & (lon >= region.lon_min)
        & (lon <= region.lon_max)
    )
    w = np.cos(np.deg2rad(lat)) * inside
    return (values * w).sum(axis=(-2, -1)) / w.sum()


def test_era5_hourly_to_daily_regional(era5: xr.Dataset) -> None:
    out, report = standardise(
        era5, [SHELF, EAST], ERA5_MAPPING, derivations=["hurs", "sfcWind"], max_gap_days=3
    )
    assert set(out.data_vars) == {"tas", "hurs", "pr", "uas", "vas", "sfcWind", "psl"}
    assert out["tas"].dims == ("time", "region")
    assert list(out["region"].values) == ["shelf", "east"]
    np.testing.assert_array_equal(out["time"].values, pd.date_range("2001-01-01", periods=3))
    for name, da in out.data_vars.items():
        assert da.attrs["units"] == CANONICAL_UNITS[name]
    assert len(report) == 0

    def daily(x: np.ndarray, how: str = "mean") -> np.ndarray:
        return getattr(_box_mean(era5, x, SHELF).reshape(3, 24), how)(axis=1)

    shelf = out.sel(region="shelf")
    tas = era5["2m_temperature"].values
    np.testing.assert_allclose(shelf["tas"].values, daily(tas), rtol=1e-5)
    pr = daily(era5["total_precipitation"].values, "sum") * 1000.0 / 86400.0
    np.testing.assert_allclose(shelf["pr"].values, pr, rtol=1e-5)
    u = era5["10m_u_component_of_wind"].values
    v = era5["10m_v_component_of_wind"].values
    speed = daily(np.hypot(u, v))
    np.testing.assert_allclose(shelf["sfcWind"].values, speed, rtol=1e-5)
    speed_of_mean = np.hypot(daily(u), daily(v))
    assert np.all(speed > 2 * speed_of_mean)  # the fixture makes the distinction matter
    tdps = era5["2m_dewpoint_temperature"].values
    hurs = daily(100 * _esat_sonntag90(tdps) / _esat_sonntag90(tas))
    np.testing.assert_allclose(shelf["hurs"].values, hurs, rtol=1e-5)


def test_standardise_is_lazy(era5: xr.Dataset) -> None:
    eager, _ = standardise(era5, [SHELF], ERA5_MAPPING, derivations=["hurs", "sfcWind"])
    chunked = era5.chunk(time=24, latitude=2, longitude=5)
    with dask.config.set(scheduler=_raise_on_compute):
        # sfcWind not requested: still derived on the sub-daily grid.
        lazy, report = standardise(chunked, [SHELF], ERA5_MAPPING, derivations=["hurs"])
    for da in lazy.data_vars.values():
        assert isinstance(da.data, dask.array.Array)
    xr.testing.assert_allclose(lazy.compute(), eager)
    assert len(report) == 0


def test_normalize_grid_wraps_and_flips(era5: xr.Dataset) -> None:
    out = normalize_grid(era5)
    np.testing.assert_array_equal(out["lon"].values, [-2.0, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8])
    np.testing.assert_array_equal(out["lat"].values, [40.0, 41, 42, 43, 44])
    original = era5["2m_temperature"].sel(latitude=43.0, longitude=358.0).values
    moved = out["2m_temperature"].sel(lat=43.0, lon=-2.0).values
    np.testing.assert_array_equal(moved, original)
    xr.testing.assert_identical(normalize_grid(out), out)


def test_region_weights_straddling_greenwich(era5: xr.Dataset) -> None:
    region = Region(name="g", lat_min=41.75, lat_max=43.5, lon_min=-1.25, lon_max=0.75)
    w = region_weights(era5, region)
    assert w.dims == ("lat", "lon")
    lat = np.array([40.0, 41, 42, 43, 44])
    frac_lat = np.array([0.0, 0.0, 0.75, 1.0, 0.0])  # 42: [41.75, 42.5] of [41.5, 42.5]
    lon = np.array([-2.0, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8])
    frac_lon = np.zeros(lon.size)
    frac_lon[[1, 2, 3]] = [0.75, 1.0, 0.25]  # cells -1, 0, 1 (the 359° and 0° columns)
    expected = np.cos(np.deg2rad(lat))[:, None] * frac_lat[:, None] * frac_lon[None, :]
    np.testing.assert_allclose(w.values, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(w["lon"].values, lon)


def test_region_off_grid_raises(era5: xr.Dataset) -> None:
    far = Region(name="baltic", lat_min=54, lat_max=60, lon_min=10, lon_max=20)
    with pytest.raises(ValueError, match=r"baltic.*lat \[40\.000, 44\.000\]"):
        regional_means(era5, [far])


def test_region_validation() -> None:
    with pytest.raises(pydantic.ValidationError, match="lat_min"):
        Region(name="x", lat_min=44, lat_max=42, lon_min=0, lon_max=1)
    with pytest.raises(pydantic.ValidationError):
        Region(name="x", lat_min=40, lat_max=95, lon_min=0, lon_max=1)
    with pytest.raises(pydantic.ValidationError):
        Region(name="x", lat_min=40, lat_max=42, lon_min=0, lon_max=1, colour="red")


def test_regional_means_nan_aware_and_all_nan_report(era5: xr.Dataset) -> None:
    tas = era5["2m_temperature"].copy()
    tas[0, 1, 0] = np.nan  # lat 43, lon 0 at the first hour: weights renormalised
    tas[:, :, 4:9] = np.nan  # lon 4..8: the whole "east" region, every hour
    ds = era5.assign({"2m_temperature": tas})
    out = regional_means(ds, [SHELF, EAST])
    values = tas.values[0]
    lat = ds["latitude"].values[:, None]
    lon = np.where(ds["longitude"].values >= 180, ds["longitude"].values - 360, ds["longitude"])
    inside = (np.abs(lat - 42.5) <= 1) & (lon[None, :] >= -2.5) & (lon[None, :] <= 3.5)
    w = np.where(inside & ~np.isnan(values), np.cos(np.deg2rad(lat)), 0.0)
    expected = np.nansum(values * w) / w.sum()
    np.testing.assert_allclose(
        out["2m_temperature"].sel(region="shelf")[0].values, expected, rtol=1e-12
    )
    assert out["2m_temperature"].sel(region="east").isnull().all()
    assert all_nan_regions(out) == ["east"]
    assert all_nan_regions(out, how="all") == []


def test_curvilinear_regional_mean() -> None:
    rng = np.random.default_rng(1)
    rlat, rlon = np.arange(8.0), np.arange(10.0)
    ii, jj = np.meshgrid(rlat, rlon, indexing="ij")
    lat2d = 40.0 + 0.6 * ii + 0.15 * jj
    lon2d = (-3.0 + 0.8 * jj - 0.2 * ii) % 360.0  # 0–360 on purpose
    time = pd.date_range("2001-01-01", periods=5, freq="D")
    data = rng.normal(285, 3, (time.size, rlat.size, rlon.size))
    data[2, 3, 4] = np.nan
    ds = xr.Dataset(
        {"tas": (("time", "rlat", "rlon"), data, {"units": "K"})},
        coords={
            "time": time,
            "rlat": rlat,
            "rlon": rlon,
            "lat": (("rlat", "rlon"), lat2d, {"standard_name": "latitude"}),
            "lon": (("rlat", "rlon"), lon2d, {"standard_name": "longitude"}),
        },
    )
    norm = normalize_grid(ds)
    assert norm["lon"].dims == ("rlat", "rlon")
    assert float(norm["lon"].min()) >= -180 and float(norm["lon"].max()) < 180
    # Box edges chosen off the grid's centres (no floating-point ties at the edges).
    region = Region(name="gol", lat_min=41.02, lat_max=43.48, lon_min=-1.05, lon_max=2.95)
    out = regional_means(ds.chunk(time=2), [region])
    assert isinstance(out["tas"].data, dask.array.Array)
    lon_w = np.where(lon2d >= 180, lon2d - 360, lon2d)
    # The grid is an affine map of the indices, so each cell is the image of
    # [i ± 1/2] x [j ± 1/2]: sample it on the same 7 x 7 sub-grid exactly.
    offsets = (np.arange(7) + 0.5) / 7 - 0.5
    di, dj = np.meshgrid(offsets, offsets, indexing="ij")
    plat = lat2d[..., None, None] + 0.6 * di + 0.15 * dj
    plon = lon_w[..., None, None] + 0.8 * dj - 0.2 * di
    inside = (plat >= 41.02) & (plat <= 43.48) & (plon >= -1.05) & (plon <= 2.95)
    fraction = inside.mean(axis=(-2, -1))
    assert (fraction == 1).sum() > 5 and ((fraction > 0) & (fraction < 1)).any()
    w = np.cos(np.deg2rad(lat2d)) * fraction
    valid = ~np.isnan(data)
    expected = np.nansum(data * w, axis=(1, 2)) / (w * valid).sum(axis=(1, 2))
    np.testing.assert_allclose(out["tas"].sel(region="gol").values, expected, rtol=1e-12)


def _peak_days_of_year(da: xr.DataArray) -> np.ndarray:
    return np.array(
        [int(da.sel(time=str(y)).idxmax("time").dt.dayofyear) for y in np.unique(da.time.dt.year)]
    )


def test_360_day_to_standard_no_season_shift() -> None:
    time = xr.date_range("2001-01-01", periods=720, freq="D", calendar="360_day", use_cftime=True)
    doy = np.tile(np.arange(1, 361), 2)
    values = 10 + 8 * np.cos(2 * np.pi * (doy - 180) / 360)
    ds = xr.Dataset({"tas": ("time", values, {"units": "K"})}, coords={"time": time})
    out = to_calendar(ds.chunk(time=100))
    assert isinstance(out["tas"].data, dask.array.Array)
    out = out.compute()
    assert out.sizes["time"] == 730  # 2001 and 2002, no leap year
    assert np.issubdtype(out["time"].dtype, np.datetime64)
    assert np.all(np.diff(out["time"].values) == np.timedelta64(1, "D"))
    assert not out["tas"].isnull().any()
    assert np.all(np.abs(_peak_days_of_year(out["tas"]) - 180) <= 2)
    # Days that exist in the source keep their values (in order).
    existing = ds.convert_calendar("standard", align_on="year")["time"]
    np.testing.assert_array_equal(out["tas"].sel(time=existing).values, values)


def test_noleap_to_standard_fills_feb29() -> None:
    time = xr.date_range("2003-01-01", periods=730, freq="D", calendar="noleap", use_cftime=True)
    values = np.random.default_rng(3).normal(size=time.size)
    ds = xr.Dataset({"psl": ("time", values, {"units": "Pa"})}, coords={"time": time})
    out = to_calendar(ds)["psl"]
    assert out.sizes["time"] == 731
    assert not out.isnull().any()
    feb28, mar1 = values[365 + 58], values[365 + 59]
    np.testing.assert_allclose(float(out.sel(time="2004-02-29")), 0.5 * (feb28 + mar1))
    others = out.drop_sel(time=np.datetime64("2004-02-29"))
    np.testing.assert_array_equal(others.values, values)


@pytest.mark.parametrize("calendar", ["noleap", "360_day", "all_leap", "standard", "julian"])
@pytest.mark.parametrize("start", ["1836-01-01 12:00", "2015-01-01 00:00", "1999-12-30 23:59"])
def test_daily_stamps_floored_to_midnight_on_every_calendar(calendar: str, start: str) -> None:
    """Noon, midnight and last-minute stamps go to 00:00 of their own day, as
    CFTimeIndex.floor puts them, over leap days and 40 years."""
    time = xr.date_range(start, periods=40 * 365, freq="D", calendar=calendar, use_cftime=True)
    ds = xr.Dataset({"tas": ("time", np.arange(time.size, dtype=float))}, coords={"time": time})
    floored = floor_to_day(ds).indexes["time"]
    assert floored.equals(time.floor("D"))
    assert all(d.hour == 0 and d.minute == 0 for d in floored[:3])
    assert floored[0].day == time[0].day


def test_daily_cmip_like_source_through_standardise() -> None:
    """Daily noleap CMIP-like data stamped at 12:00, degC and hPa, 0–360 grid."""
    time = xr.date_range(
        "2004-02-20 12:00", periods=20, freq="D", calendar="noleap", use_cftime=True
    )
    lat, lon = np.array([42.0, 43.0]), np.array([0.0, 1.0, 359.0])
    shape = (time.size, lat.size, lon.size)
    tas = np.broadcast_to(np.arange(time.size, dtype=float)[:, None, None], shape)
    ds = xr.Dataset(
        {
            "tas": (("time", "lat", "lon"), tas, {"units": "degC"}),
            "psl": (("time", "lat", "lon"), np.full(shape, 1013.0), {"units": "hPa"}),
        },
        coords={"time": time, "lat": lat, "lon": lon},
    )
    region = Region(name="r", lat_min=41.5, lat_max=43.5, lon_min=-1.5, lon_max=1.5)
    out, report = standardise(ds.chunk(time=7), [region], mapping={})
    out = out.compute()
    assert out.sizes["time"] == 21  # Feb 29 inserted
    assert pd.Timestamp(out["time"].values[0]) == pd.Timestamp("2004-02-20")
    np.testing.assert_allclose(out["psl"].values, 101300.0)
    tas_day = out["tas"].sel(region="r")
    np.testing.assert_allclose(float(tas_day.sel(time="2004-02-29")), 8.5 + 273.15)
    np.testing.assert_allclose(float(tas_day.sel(time="2004-03-01")), 9 + 273.15)
    assert len(report) == 0


def test_subdaily_360_day_and_coverage() -> None:
    time = xr.date_range(
        "2001-01-01", periods=4 * 6, freq="6h", calendar="360_day", use_cftime=True
    )
    values = np.arange(time.size, dtype=float)
    values[4:6] = np.nan  # day 2 keeps 2 of 4 steps: below 75 %
    values[8] = np.nan  # day 3 keeps 3 of 4 steps: kept
    ds = xr.Dataset({"tas": ("time", values, {"units": "K"})}, coords={"time": time})
    out = to_daily(ds, min_coverage=0.75)["tas"]
    assert out.sizes["time"] == 6
    assert out["time"].dt.calendar == "360_day"
    assert np.isnan(out.values[1])
    np.testing.assert_allclose(out.values[2], np.mean([9.0, 10, 11]))
    np.testing.assert_allclose(out.values[0], 1.5)
    assert to_daily(ds, min_coverage=0.5)["tas"].notnull().all()


def test_units_conversions() -> None:
    def var(value: float, units: str, name: str = "x") -> xr.DataArray:
        """A 4-day daily series named ``name``."""
        time = pd.date_range("2001-01-01", periods=4, freq="D")
        attrs = {"units": units}
        da = xr.DataArray(np.full(4, value), dims="time", coords={"time": time}, attrs=attrs)
        return da.rename(name)

    np.testing.assert_allclose(convert_variable(var(15.0, "degC"), "K").values, 288.15)
    np.testing.assert_allclose(convert_variable(var(1013.25, "hPa"), "Pa").values, 101325.0)
    hurs = convert_variable(var(0.8, "1"), "%")
    np.testing.assert_allclose(hurs.values, 80.0)
    assert hurs.attrs["units"] == "%"
    np.testing.assert_allclose(
        convert_variable(var(8.64, "mm/day"), "kg m-2 s-1").values, 8.64 / 86400
    )
    np.testing.assert_allclose(
        convert_variable(var(0.002, "m"), "kg m-2 s-1").values, 2.0 / 86400
    )  # daily amounts: one step is one day
    with pytest.raises(ValueError, match=r"'tas'.*'furlong'"):
        convert_variable(var(1.0, "furlong", "tas"), "K")
    with pytest.raises(ValueError, match=r"'pr'.*'bananas'"):
        convert_variable(var(1.0, "bananas", "pr"), "kg m-2 s-1")
    with pytest.raises(ValueError, match=r"'psl'.*no units"):
        convert_variable(var(1.0, "Pa", "psl").drop_attrs(), "Pa")
    ds = xr.Dataset({"t2m": var(1.0, "parsec")})
    with pytest.raises(ValueError, match="'tas'"):
        to_canonical(ds, {"t2m": "tas"})


@pytest.mark.parametrize(
    ("units", "kelvin"),
    [
        ("degree_C", 288.15),  # UDUNITS, CMEMS sea temperature
        ("degrees_C", 288.15),
        ("degrees Celsius", 288.15),
        ("degrees_K", 15.0),
        ("degree_K", 15.0),
        ("Kelvin", 15.0),
        ("degrees Kelvin", 15.0),
    ],
)
def test_udunits_temperature_spellings(units: str, kelvin: float) -> None:
    da = xr.DataArray(np.array([15.0]), dims="x", attrs={"units": units}, name="tos")
    np.testing.assert_allclose(convert_variable(da, "K").values, kelvin)


def test_humidity_and_wind_helpers() -> None:
    tas = xr.DataArray(np.array([290.0, 275.0]), dims="x", attrs={"units": "K"})
    tdps = xr.DataArray(np.array([17.0 - 0.15, 1.85]), dims="x", attrs={"units": "degC"})
    hurs = hurs_from_dewpoint(tas, tdps)
    expected = 100 * _esat_sonntag90(tdps.values + 273.15) / _esat_sonntag90(tas.values)
    np.testing.assert_allclose(hurs.values, expected, rtol=1e-6)
    assert hurs.attrs["units"] == "%"
    u = xr.DataArray(np.array([3.0, -6.0]), dims="x", attrs={"units": "m s-1"})
    v = xr.DataArray(np.array([4.0, 8.0]), dims="x", attrs={"units": "m s-1"})
    np.testing.assert_allclose(wind_speed(u, v).values, [5.0, 10.0])


def test_fill_short_gaps_and_report() -> None:
    time = pd.date_range("2001-01-01", periods=40, freq="D")
    base = np.stack([np.linspace(0, 39, 40) ** 1.5, np.linspace(5, 10, 40)], axis=1)
    data = base.copy()
    data[5:7, 0] = np.nan  # 2-day gap, filled
    data[20:30, 0] = np.nan  # 10-day gap, reported
    data[12, 1] = np.nan  # 1-day gap crossing a chunk boundary below
    ds = xr.Dataset(
        {"tas": (("time", "region"), data, {"units": "K"})},
        coords={"time": time, "region": ["a", "b"]},
    ).chunk(time=7)
    filled, report = fill_short_gaps(ds, max_gap_days=3)
    assert isinstance(filled["tas"].data, dask.array.Array)
    out = filled["tas"].values
    idx = np.arange(40)
    expected_a = np.interp(idx[5:7], [4, 7], base[[4, 7], 0])
    np.testing.assert_allclose(out[5:7, 0], expected_a)
    np.testing.assert_allclose(out[12, 1], 0.5 * (base[11, 1] + base[13, 1]))
    assert np.isnan(out[20:30, 0]).all()
    assert np.isfinite(np.delete(out[:, 0], np.s_[20:30])).all()
    gaps = list(report)
    assert len(gaps) == 1
    gap = gaps[0]
    assert (gap.variable, gap.region, gap.length_days) == ("tas", "a", 10)
    assert pd.Timestamp(gap.start) == pd.Timestamp("2001-01-21")
    assert pd.Timestamp(gap.end) == pd.Timestamp("2001-01-30")


def test_fill_short_gaps_inserts_missing_days() -> None:
    time = pd.date_range("2001-01-01", periods=10, freq="D").delete([3, 4])
    ds = xr.Dataset({"psl": ("time", np.arange(8.0), {"units": "Pa"})}, coords={"time": time})
    filled, report = fill_short_gaps(ds, max_gap_days=1)
    assert filled.sizes["time"] == 10
    assert [g.length_days for g in report] == [2]


def test_unknown_derivation_and_missing_inputs(era5: xr.Dataset) -> None:
    with pytest.raises(ValueError, match="Unknown derivation"):
        to_canonical(era5, ERA5_MAPPING, ["nope"])
    mapping = {"2m_temperature": "tas"}
    with pytest.raises(ValueError, match="tdps"):
        to_canonical(era5, mapping, ["hurs"])


STATS = ("mean", "max", "min", "sum", "median")


def test_daily_statistics_of_whole_day_chunks_match_resampling() -> None:
    """Chunks of whole days take the reshape path, one task per chunk; any other chunking
    resamples: the same days, values, coverage masks and attributes either way."""
    rng = np.random.default_rng(7)
    time = pd.date_range("2001-01-01", periods=24 * 9 + 7, freq="h")  # the last day cut short
    values = rng.normal(280.0, 3.0, (time.size, 2))
    values[30:42, 0] = np.nan  # the second day keeps 12 of 24 hours in a: below 75 %
    values[50:54, 1] = np.nan  # the third keeps 20 of 24 in b: kept
    attrs = {"units": "K", "cell_methods": "area: mean"}
    ds = xr.Dataset(
        {name: (("time", "region"), values + i, attrs) for i, name in enumerate(STATS)},
        coords={"time": time, "region": ["a", "b"]},
    )
    table = dict(zip(STATS, STATS, strict=True))
    whole = ds.chunk(time=48)
    with dask.config.set(scheduler=_raise_on_compute):
        fast = to_daily(whole, statistics=table)
    graph = dict(fast["mean"].data.__dask_graph__())
    assert not any("resample" in str(k) or "groupby" in str(k) for k in graph)
    assert fast["mean"].chunks[0] == (2, 2, 2, 2, 2)
    slow = to_daily(ds.chunk(time=50), statistics=table)  # 50 h: days straddle chunks
    plain = to_daily(ds, statistics=table)  # numpy: the reshape path as well
    days = np.pad(values, ((0, 17), (0, 0)), constant_values=np.nan).reshape(10, 24, 2)
    for i, stat in enumerate(STATS):
        want = getattr(np, f"nan{stat}")(days + i, axis=1)
        want[1, 0] = want[9, :] = np.nan  # under 18 valid hours
        for out in (fast, slow, plain):
            np.testing.assert_allclose(out[stat].values, want, rtol=1e-12)
            assert out[stat].attrs == {**attrs, "cell_methods": f"area: mean time: {stat}"}
        xr.testing.assert_allclose(fast[stat], slow[stat], rtol=1e-12)
        xr.testing.assert_identical(fast[stat]["time"], slow[stat]["time"])
    np.testing.assert_array_equal(fast["time"].values, pd.date_range("2001-01-01", periods=10))


def test_regional_means_equal_xarray_weighted_means(era5: xr.Dataset) -> None:
    """One task per chunk, the arithmetic of ``Dataset.weighted(...).mean`` (NaN-aware)."""
    tas = era5["2m_temperature"].copy()
    tas[3, 1, 0] = np.nan
    tas[5:9, :, 4:9] = np.nan  # the east region missing for four hours
    ds = normalize_grid(era5.assign({"2m_temperature": tas}))
    weights = xr.concat(
        [region_weights(ds, r).drop_vars(["lat", "lon"]) for r in (SHELF, EAST)], dim="region"
    ).assign_coords(region=["shelf", "east"])
    want = ds.drop_vars(["lat", "lon"]).weighted(weights).mean(["lat", "lon"])
    for data in (ds, ds.chunk(time=12, lat=2)):
        got = regional_means(data, [SHELF, EAST])
        if data.chunks:
            assert got["2m_temperature"].chunks == ((2,), (12,) * 6)
        for name in ds.data_vars:
            np.testing.assert_allclose(
                got[name].transpose("time", "region").values,
                want[name].transpose("time", "region").values,
                rtol=1e-13,
            )
    assert np.isnan(got["2m_temperature"].sel(region="east").values[5:9]).all()
