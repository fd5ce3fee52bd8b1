"""Mooring loading: QC flags, spikes, coverage, formats and error messages."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest
import xarray as xr

from cascadia.mooring.observations import ObservationConfig, ObservationError, load_mooring

N_DAYS = 10
DEPTHS = np.array([500.0, 1000.0])
FLAG_MEANINGS = (
    "no_qc_performed good_data probably_good_data bad_data_that_are_potentially_correctable "
    "bad_data value_changed not_used nominal_value interpolated_value missing_value"
)
# injected defects (hour index into the record, depth column)
BAD_FLAG_HOURS = slice(24 * 2 + 5, 24 * 2 + 9)  # 4 h flagged 4 at 500 m, offset +0.25 °C
SPIKE_HOUR = 24 * 4 + 10  # unflagged +3 °C at 500 m
HALF_DAY = 6  # at 1000 m, hours 0-11 of day 6 missing (QC 9)
LONG_GAP = slice(24 * 7 + 12, 24 * 9 + 14)  # 50 h missing at 500 m


def make_series(all_bad_1000: bool = False) -> dict[str, np.ndarray]:
    """Hourly series with known defects; returns times, temp (float32), qc (int8)."""
    rng = np.random.default_rng(42)
    times = pd.date_range("2005-01-01", periods=24 * N_DAYS, freq="h", unit="ns")
    hours = np.arange(times.size)
    tide = 0.02 * np.sin(2 * np.pi * hours / 12.42)
    temp = np.stack(
        [13.05 + tide + rng.normal(0, 0.004, hours.size), 12.90 + 0.5 * tide], axis=1
    ).astype(np.float32)
    qc = np.ones(temp.shape, dtype=np.int8)
    qc[::7, 1] = 2  # probably good: kept
    temp[BAD_FLAG_HOURS, 0] += np.float32(0.25)
    qc[BAD_FLAG_HOURS, 0] = 4
    temp[SPIKE_HOUR, 0] += np.float32(3.0)
    temp[24 * HALF_DAY : 24 * HALF_DAY + 12, 1] = np.nan
    qc[24 * HALF_DAY : 24 * HALF_DAY + 12, 1] = 9
    temp[LONG_GAP, 0] = np.nan
    qc[LONG_GAP, 0] = 9
    if all_bad_1000:
        qc[:, 1] = 4
    return {"times": times, "temp": temp, "qc": qc}


def write_netcdf(path: Path, series: dict[str, np.ndarray], **names: str) -> Path:
    """OceanSITES-style file (names overridable for the flexible-format tests)."""
    tname, dname = names.get("time", "TIME"), names.get("depth", "DEPTH")
    var, qcvar = names.get("variable", "TEMP"), names.get("qc", "TEMP_QC")
    ds = xr.Dataset(
        {
            var: (
                (tname, dname),
                series["temp"],
                {"standard_name": "sea_water_temperature", "units": "degree_Celsius"},
            ),
            qcvar: (
                (tname, dname),
                series["qc"],
                {
                    "long_name": "quality flag",
                    "flag_values": np.arange(10, dtype=np.int8),
                    "flag_meanings": FLAG_MEANINGS,
                    "conventions": "OceanSITES reference table 2",
                },
            ),
            "LATITUDE": ((), 42.428, {"units": "degrees_north"}),
            "LONGITUDE": ((), 3.545, {"units": "degrees_east"}),
        },
        coords={
            tname: (tname, series["times"], {"axis": "T", "standard_name": "time"}),
            dname: (dname, DEPTHS, {"units": "m", "positive": "down", "axis": "Z"}),
        },
        attrs={"Conventions": "CF-1.10 OceanSITES-1.4", "site_code": "LACAZE"},
    )
    ds[tname].encoding.update(
        units="days since 1950-01-01T00:00:00Z", calendar="standard", dtype="float64"
    )
    ds[var].encoding.update(_FillValue=np.float32(99999.0), dtype="float32")
    ds[qcvar].encoding.update(_FillValue=np.int8(-128))
    ds.to_netcdf(path, engine="netcdf4")
    return path


def write_csv(path: Path, series: dict[str, np.ndarray]) -> Path:
    """Long-format CSV, gaps written as the literal fill value 99999.0."""
    times, temp, qc = series["times"], series["temp"], series["qc"]
    frame = pd.DataFrame(
        {
            "time": np.repeat(times.strftime("%Y-%m-%dT%H:%M:%SZ"), DEPTHS.size),
            "depth": np.tile(DEPTHS, times.size),
            "TEMP": np.where(np.isnan(temp), np.float32(99999.0), temp).ravel(),
            "TEMP_QC": qc.ravel(),
        }
    )
    frame.to_csv(path, index=False)
    return path


def expected_daily(series: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Daily means and valid hours by plain numpy, with the known spike removed."""
    temp = series["temp"].astype(np.float64)
    ok = np.isin(series["qc"], [1, 2]) & np.isfinite(temp)
    ok[SPIKE_HOUR, 0] = False
    x = np.where(ok, temp, np.nan).reshape(N_DAYS, 24, DEPTHS.size)
    count = ok.reshape(N_DAYS, 24, DEPTHS.size).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-missing day
        mean = np.nanmean(x, axis=1)
    return np.where(count >= 18, mean, np.nan), count.astype(float)


@pytest.fixture
def series() -> dict[str, np.ndarray]:
    return make_series()


@pytest.fixture
def nc_path(tmp_path: Path, series: dict[str, np.ndarray]) -> Path:
    return write_netcdf(tmp_path / "lacaze-duthiers.nc", series)


@pytest.fixture
def csv_path(tmp_path: Path, series: dict[str, np.ndarray]) -> Path:
    return write_csv(tmp_path / "lacaze-duthiers.csv", series)


def test_daily_means_equal_numpy(nc_path: Path, series: dict[str, np.ndarray]) -> None:
    result = load_mooring(ObservationConfig(path=str(nc_path)))
    ds = result.data
    assert ds["temperature"].dims == ("time", "depth")
    assert ds["depth"].values.tolist() == [500.0, 1000.0]
    assert ds["temperature"].attrs["units"] == "degree_Celsius"
    assert ds.sizes["time"] == N_DAYS
    assert ds["time"].values[0] == np.datetime64("2005-01-01")
    mean, count = expected_daily(series)
    np.testing.assert_allclose(ds["temperature"].values, mean, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ds["n_valid_hours"].values, count)


def test_bad_flags_never_reach_daily_mean(nc_path: Path, series: dict[str, np.ndarray]) -> None:
    default = load_mooring({"path": str(nc_path)})
    day2 = default.temperature.sel(time="2005-01-03", depth=500.0).item()
    good = series["temp"][48:72, 0].astype(float)
    keep = series["qc"][48:72, 0] == 1
    assert day2 == pytest.approx(good[keep].mean(), abs=1e-12)
    assert default.report.depth(500).n_qc_rejected == 4
    assert default.report.depth(500).qc_flag_counts == {1: 24 * N_DAYS - 50 - 4, 4: 4}
    # the same values, trusted, would have shifted the mean by 4 × 0.25 / 24 ≈ 0.04 °C
    trusting = load_mooring({"path": str(nc_path), "good_flags": [1, 2, 4]})
    shifted = trusting.temperature.sel(time="2005-01-03", depth=500.0).item()
    assert shifted - day2 == pytest.approx(4 * 0.25 / 24, abs=2e-3)


def test_unflagged_spike_removed(nc_path: Path, series: dict[str, np.ndarray]) -> None:
    result = load_mooring({"path": str(nc_path)})
    assert result.report.depth(500).n_spikes_removed == 1
    assert result.report.depth(1000).n_spikes_removed == 0
    day4 = result.temperature.sel(time="2005-01-05", depth=500.0).item()
    assert abs(day4 - 13.05) < 0.01  # a kept +3 °C hour would add 0.125 °C
    assert result.data["n_valid_hours"].sel(time="2005-01-05", depth=500.0).item() == 23
    off = load_mooring({"path": str(nc_path), "spike_n_mad": None})
    assert off.temperature.sel(time="2005-01-05", depth=500.0).item() - day4 == pytest.approx(
        3.0 / 24, abs=2e-3
    )


def test_spike_rule_keeps_physical_cold_pulse(tmp_path: Path) -> None:
    """A 6-hour −0.5 °C cascading pulse is a physical signal, not a spike."""
    series = make_series()
    series["temp"][24 * 3 + 4 : 24 * 3 + 10, 1] -= np.float32(0.5)
    path = write_netcdf(tmp_path / "pulse.nc", series)
    result = load_mooring({"path": str(path)})
    assert result.report.depth(1000).n_spikes_removed == 0


def test_low_coverage_day_dropped_and_reported(nc_path: Path) -> None:
    result = load_mooring({"path": str(nc_path)})
    rep = result.report.depth(1000)
    assert rep.n_days_dropped_coverage == 1
    assert rep.dropped_days == (pd.Timestamp("2005-01-07"),)
    assert np.isnan(result.temperature.sel(time="2005-01-07", depth=1000.0).item())
    assert result.data["n_valid_hours"].sel(time="2005-01-07", depth=1000.0).item() == 12
    # 500 m: the 50 h gap leaves day 7 at 12 h and day 9 at 10 h → dropped; day 8 empty
    rep500 = result.report.depth(500)
    assert rep500.dropped_days == (pd.Timestamp("2005-01-08"), pd.Timestamp("2005-01-10"))
    assert rep500.n_days_valid == N_DAYS - 3
    assert result.report.n_days_dropped_coverage == 3
    (gap,) = result.report.long_gaps
    assert (gap.depth, gap.hours) == (500.0, 50.0)
    assert gap.start == pd.Timestamp("2005-01-08T12:00")
    assert gap.end == pd.Timestamp("2005-01-10T13:00")
    lenient = load_mooring({"path": str(nc_path), "min_daily_coverage": 0.5})
    assert np.isfinite(lenient.temperature.sel(time="2005-01-07", depth=1000.0).item())
    assert "50 h" in result.report.summary()


def test_csv_and_netcdf_identical(nc_path: Path, csv_path: Path) -> None:
    from_nc = load_mooring({"path": str(nc_path)})
    from_csv = load_mooring({"path": str(csv_path)})
    assert from_csv.report.format == "csv"
    assert from_nc.report.format == "netcdf"
    # CSV text holds float32 values to ~7 significant digits
    xr.testing.assert_allclose(
        from_nc.data[["temperature", "n_valid_hours"]].reset_coords(drop=True),
        from_csv.data[["temperature", "n_valid_hours"]].reset_coords(drop=True),
        atol=1e-6,
        rtol=0,
    )
    for a, b in zip(from_nc.report.depths, from_csv.report.depths, strict=True):
        assert a == b
    assert from_nc.report.long_gaps == from_csv.report.long_gaps


def test_flexible_names_measured_depth_and_char_flags(tmp_path: Path) -> None:
    """`temperature(time, sensor)`, depth as a measured (time, sensor) variable, Argo chars."""
    series = make_series()
    nt = series["times"].size
    ds = xr.Dataset(
        {
            "temperature": (("time", "sensor"), series["temp"], {"units": "degC"}),
            "temperature_qc": (("time", "sensor"), series["qc"].astype("S1")),
            "depth": (
                ("time", "sensor"),
                np.array([497.0, 1004.0]) + np.linspace(-1, 1, nt)[:, None],
                {"standard_name": "depth", "units": "m"},
            ),
        },
        coords={"time": series["times"]},
    )
    path = tmp_path / "argo-like.nc"
    ds.to_netcdf(path)
    cfg = ObservationConfig(path=str(path), variable="temperature", qc_variable="temperature_qc")
    result = load_mooring(cfg)
    assert result.data["depth"].values.tolist() == [500.0, 1000.0]
    np.testing.assert_allclose(result.data["source_depth"].values, [497.0, 1004.0])
    mean, _ = expected_daily(series)
    np.testing.assert_allclose(result.temperature.values, mean, atol=1e-12)


def test_unknown_variable_lists_file_contents(nc_path: Path, csv_path: Path) -> None:
    with pytest.raises(ObservationError) as err:
        load_mooring({"path": str(nc_path), "variable": "temperature"})
    msg = str(err.value)
    assert str(nc_path) in msg
    assert "'temperature'" in msg and "TEMP" in msg and "TEMP_QC" in msg
    with pytest.raises(ObservationError, match="columns are: time, depth, TEMP, TEMP_QC"):
        load_mooring({"path": str(csv_path), "variable": "temperature"})
    with pytest.raises(ObservationError, match="QC variable 'PSAL_QC' not found"):
        load_mooring({"path": str(nc_path), "qc_variable": "PSAL_QC"})


@pytest.mark.parametrize("fmt", ["nc", "csv"])
def test_missing_depth_lists_depths_present(fmt: str, nc_path: Path, csv_path: Path) -> None:
    path = nc_path if fmt == "nc" else csv_path
    with pytest.raises(ObservationError) as err:
        load_mooring({"path": str(path), "depths": [500, 750]})
    msg = str(err.value)
    assert str(path) in msg and "750 m" in msg and "[500.0, 1000.0]" in msg


def test_all_flagged_bad_at_a_depth(tmp_path: Path) -> None:
    path = write_netcdf(tmp_path / "bad.nc", make_series(all_bad_1000=True))
    with pytest.raises(ObservationError) as err:
        load_mooring({"path": str(path)})
    msg = str(err.value)
    assert str(path) in msg and "1000 m" in msg and "4:" in msg and "good_flags=[1, 2]" in msg
    only500 = load_mooring({"path": str(path), "depths": [500]})
    assert only500.data["depth"].values.tolist() == [500.0]


def test_unreadable_and_absent_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"this is not a netcdf file\n" * 10)
    with pytest.raises(ObservationError, match=r"junk\.nc: unreadable as NetCDF"):
        load_mooring({"path": str(junk)})
    with pytest.raises(ObservationError, match="file not found"):
        load_mooring({"path": str(tmp_path / "absent.nc")})
    with pytest.raises(pydantic.ValidationError):
        ObservationConfig(path="x.nc", varaible="TEMP")  # type: ignore[call-arg]


def test_fsspec_url(nc_path: Path, csv_path: Path) -> None:
    """Remote (fsspec) paths go through the same readers; memory:// stands in for s3://."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/cascadia-test/mooring.nc", nc_path.read_bytes())
    fs.pipe("/cascadia-test/mooring", csv_path.read_bytes())  # no suffix: sniffed
    try:
        local = load_mooring({"path": str(nc_path)})
        remote_nc = load_mooring({"path": "memory://cascadia-test/mooring.nc"})
        remote_csv = load_mooring({"path": "memory://cascadia-test/mooring"})
    finally:
        fs.rm("/cascadia-test", recursive=True)
    xr.testing.assert_identical(local.data.drop_attrs(), remote_nc.data.drop_attrs())
    assert remote_csv.report.format == "csv"
    xr.testing.assert_allclose(
        local.temperature.reset_coords(drop=True),
        remote_csv.temperature.reset_coords(drop=True),
        atol=1e-6,
        rtol=0,
    )
