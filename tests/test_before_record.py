"""The deep background before the mooring record, from an ocean analysis anchored on it.

A user who hindcasts to 1900 relies on: the analysis' deep temperature read right from the
archive's own layouts (EN4's monthly files in kelvin; a CMIP-like curvilinear ocean grid
with ``lev`` in centimetres; levels positive up), a clear error naming the file for what
cannot be read, the anchoring's numbers (offset, record back-test), and the stored
background taking the anchored analysis before the record with its own flag
(``background_kind`` 3, not anomaly-only).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cascadia.learning.before_record import BEFORE_RECORD_FILE, anchor_analysis
from cascadia.run.inference import TrainedModel
from cascadia.run.store import ANALYSIS_KIND, ANOMALY_ONLY_KINDS, BACKGROUND_KINDS
from cascadia.sources.ocean_analysis import (
    OceanAnalysisConfig,
    OceanAnalysisError,
    deep_temperature,
)

MOORING = (42.43, 3.545)


def _curvilinear_thetao(path: Path, **changes: Any) -> xr.Dataset:
    """A CMIP6-like Omon ``thetao`` file: 2-D lat/lon (0-360) on (j, i), ``lev`` in cm,
    two months; the cell nearest the mooring land, one cell far away."""
    lev_cm = np.array([10_000.0, 40_000.0, 60_000.0, 80_000.0])  # 100, 400, 600, 800 m
    j, i = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
    lat = 42.0 + 0.5 * j + 0.05 * i  # a skewed ocean grid
    lon = (3.0 + 0.5 * i) % 360.0
    lon[2, 2] = 20.0  # far from the mooring
    values = np.empty((2, 4, 3, 3))
    for t in range(2):
        for k, z in enumerate(lev_cm / 100.0):
            values[t, k] = 14.0 - 0.002 * z + 0.1 * t + 0.01 * j + 0.02 * i
    values[:, :, 1, 1] = np.nan  # land
    ds = xr.Dataset(
        {"thetao": (("time", "lev", "j", "i"), values, {"units": "degC"})},
        coords={
            "time": pd.to_datetime(["2000-01-16", "2000-02-15"]),
            "lev": ("lev", lev_cm, {"units": "centimeters", "positive": "down", "axis": "Z"}),
            "latitude": (("j", "i"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "longitude": (("j", "i"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )
    for name, value in changes.items():
        ds = value(ds) if callable(value) else ds.assign_attrs({name: value})
    ds.to_netcdf(path)
    return ds


def test_a_curvilinear_cmip_ocean_grid_with_lev_in_cm_gives_the_cos_lat_mean_at_500_m(
    tmp_path: Path,
) -> None:
    ds = _curvilinear_thetao(tmp_path / "thetao_Omon.nc")
    cfg = OceanAnalysisConfig(path=str(tmp_path / "thetao_*.nc"), variable="thetao")
    table = deep_temperature(cfg, [500.0])
    # independently: cells within 150 km, sea only, linear between 400 and 600 m
    lat, lon = ds["latitude"].values, ds["longitude"].values
    p1, p2 = np.radians(MOORING[0]), np.radians(lat)
    h = (
        np.sin((p2 - p1) / 2) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon - MOORING[1]) / 2) ** 2
    )
    near = (2 * 6371.0 * np.arcsin(np.sqrt(h)) <= 150.0) & np.isfinite(ds["thetao"].values[0, 0])
    assert near.sum() == 7  # 9 cells, one land, one far
    at500 = 0.5 * (ds["thetao"].values[:, 1] + ds["thetao"].values[:, 2])
    weight = np.cos(np.radians(lat)) * near
    expected = (np.nan_to_num(at500) * weight).sum(axis=(1, 2)) / weight.sum()
    np.testing.assert_allclose(table[500.0].to_numpy(), expected, rtol=0, atol=1e-9)
    assert list(table.index) == list(pd.to_datetime(["2000-01-16", "2000-02-15"]))


def test_levels_positive_up_and_kelvin_read_the_same_as_metres_down_in_celsius(
    tmp_path: Path,
) -> None:
    plain = _curvilinear_thetao(tmp_path / "a.nc")
    flipped = plain.copy()
    flipped["thetao"] = (plain["thetao"] + 273.15).assign_attrs(units="K")
    flipped = flipped.assign_coords(
        lev=("lev", -plain["lev"].values / 100.0, {"units": "m", "positive": "up"})
    )
    (tmp_path / "b").mkdir()
    flipped.to_netcdf(tmp_path / "b" / "f.nc")
    a = deep_temperature(
        OceanAnalysisConfig(path=str(tmp_path / "a.nc"), variable="thetao"), [500.0]
    )
    b = deep_temperature(
        OceanAnalysisConfig(path=str(tmp_path / "b" / "f.nc"), variable="thetao"), [500.0]
    )
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-9)


@pytest.mark.parametrize(
    ("change", "config", "message"),
    [
        ({}, {"variable": "votemper"}, r"no variable 'votemper' \(has \['thetao'\]\)"),
        ({}, {"latitude": 10.0}, r"no grid cell within 150 km of \(10N"),
        ({}, {"path": "missing-*.nc"}, "no file matches"),
        ({}, {}, r"holds 'thetao' at 1000 m"),
        (
            {"thetao": lambda ds: ds.assign(thetao=ds["thetao"] + 273.15)},
            {},
            r"ranges 2\d\d\.\d\d to 2\d\d\.\d\d °C after conversion from 'degC'.*wrong units",
        ),
        (
            {"units": lambda ds: ds.assign(thetao=ds["thetao"].assign_attrs(units="furlong"))},
            {},
            r"'thetao' has units 'furlong', not convertible to degC",
        ),
    ],
)
def test_an_unusable_ocean_product_is_named_with_what_is_wrong(
    tmp_path: Path, change: dict[str, Any], config: dict[str, Any], message: str
) -> None:
    _curvilinear_thetao(tmp_path / "thetao.nc", **change)
    settings = {"path": str(tmp_path / "thetao.nc"), "variable": "thetao", **config}
    if config.get("path"):
        settings["path"] = str(tmp_path / config["path"])
    depths = [1000.0] if message.startswith("holds") else [500.0]
    with pytest.raises(OceanAnalysisError, match=message) as caught:
        deep_temperature(OceanAnalysisConfig(**settings), depths)
    if "no file matches" not in message and "1000 m" not in message:
        assert "thetao.nc" in str(caught.value)


def _record(first: str, last: str, level: float, trend_per_year: float) -> pd.DataFrame:
    days = pd.date_range(first, last, freq="D", name="time")
    years = (days - days[0]).days.to_numpy() / 365.25
    return pd.DataFrame(
        {"background_500": level + trend_per_year * years, "observed_500": level},
        index=days,
    )


def test_the_anchored_analysis_continues_the_record_with_the_analysis_own_changes() -> None:
    record = _record("1993-01-01", "2012-12-31", 13.10, 0.004)
    months = pd.date_range("1950-01-15", "2012-12-15", freq="MS") + pd.Timedelta(days=14)
    years = (months - pd.Timestamp("1993-01-01")).days.to_numpy() / 365.25
    # the analysis: 0.25 degC colder than the record's background, the same warming
    analysis = pd.DataFrame({500.0: 12.85 + 0.004 * years}, index=months)
    cfg = OceanAnalysisConfig(path="analysis", smooth_days=30, anchor_years=10)
    before = anchor_analysis(analysis, record, [500.0], cfg)
    row = before.summary["depths"]["500"]
    assert row["offset"] == pytest.approx(0.25, abs=0.005)
    # 1960: 33 years before the record at 0.004/yr, smoothed over 30 days
    value = before.background["background_500"].loc["1960-01-01"]
    assert value == pytest.approx(13.10 - 0.004 * 33.0, abs=0.005)
    assert before.background.index.max() < pd.Timestamp("1993-01-01")
    # the record back-test: a trend the held value cannot follow
    assert row["back_test"]["rmse_analysis"] < 0.5 * row["back_test"]["rmse_hold"]
    assert abs(row["step_at_record_start"]) < 0.01

    short = analysis.loc[:"1995-06-30"]
    with pytest.raises(
        OceanAnalysisError, match=r"covers 2\.\d of the first 10 years.*min_overlap"
    ):
        anchor_analysis(short, record, [500.0], cfg)


def test_the_twin_analysis_follows_the_true_deep_water_and_the_model_stores_it_as_kind_3(
    tiny_demo: dict[str, Any], tmp_path: Path
) -> None:
    out = tiny_demo["out"]
    targets = json.loads((out / "model" / "targets.json").read_text())
    summary = targets["background_before_record"]
    assert set(summary["depths"]) == {"500", "1000"}
    for row in summary["depths"].values():
        assert np.isfinite(row["offset"]) and abs(row["offset"]) < 0.3
        assert row["back_test"]["rmse_analysis"] >= 0 and row["back_test"]["rmse_hold"] >= 0

    # the EN4-like files of the world against the truth's deep water, month by month
    cfg = OceanAnalysisConfig(path=str(out / "world/ocean/en4/*.nc"))
    table = deep_temperature(cfg, [500.0, 1000.0])
    truth = xr.open_zarr(out / "world/truth/history.zarr")["background_temperature"]
    monthly = truth.resample(day="MS").mean().to_pandas()
    for depth in (500.0, 1000.0):
        ours = table[depth].to_numpy()
        true = monthly[depth].to_numpy()[: ours.size]
        assert np.corrcoef(ours, true)[0, 1] > 0.8  # monthly analysis error, ~0.04 degC
        annual = np.corrcoef(ours.reshape(-1, 12).mean(1), true.reshape(-1, 12).mean(1))
        assert annual[0, 1] > 0.9
        assert np.abs(ours - true).mean() < 0.1

    # a model with a background before its record: kinds 1 (held), 3 (analysis), 0 (record)
    model = tmp_path / "model"
    shutil.copytree(out / "model", model)
    record = pd.read_csv(model / "background.csv", parse_dates=["time"]).set_index("time")
    first = record["observed_500"].dropna().index[0]
    before_days = pd.date_range(first - pd.Timedelta(days=200), first - pd.Timedelta(days=1))
    table = pd.DataFrame(
        {
            "time": before_days.strftime("%Y-%m-%d"),
            "background_500": np.linspace(12.5, 12.7, before_days.size),
            "background_1000": np.linspace(12.4, 12.6, before_days.size),
        }
    )
    table.to_csv(model / BEFORE_RECORD_FILE, index=False)
    loaded = TrainedModel.load(model)
    days = pd.date_range(first - pd.Timedelta(days=300), first + pd.Timedelta(days=30))
    kind = loaded.background_kind_on(days.values)
    background = loaded.background_on(days.values)
    held = days < before_days[0]
    analysed = (days >= before_days[0]) & (days < first)
    assert (kind[held] == 1.0).all() and (kind[analysed] == ANALYSIS_KIND).all()
    assert (kind[days >= first] == 0.0).all()
    np.testing.assert_allclose(background[analysed, 0], table["background_500"], atol=1e-9)
    np.testing.assert_allclose(background[held, 1], 12.4, atol=1e-9)
    inside = record.loc[first : days[-1], "background_1000"].to_numpy()
    np.testing.assert_allclose(background[days >= first, 1], inside, atol=1e-9)
    assert ANALYSIS_KIND in BACKGROUND_KINDS and ANALYSIS_KIND not in ANOMALY_ONLY_KINDS
