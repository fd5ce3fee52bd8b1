"""CDS ERA5 files as users download them: legacy ``expver`` slices, accumulations, overlaps.

Each test writes a few small NetCDF files, builds their collection with ``catalog
build`` and extracts them through a run catalog, comparing the daily regional values
with numbers computed here from what was written. The fields are uniform in space so
that a regional mean is the field's value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from cascadia.sources.builder import build_collection
from cascadia.sources.catalog import SourceError, enumerate_combos, open_collection
from cascadia.sources.config import load_run_catalog
from cascadia.sources.extraction import extract_combo

LAT = np.arange(44.5, 41.49, -0.5)
LON = np.arange(2.0, 6.01, 0.5)
REGION = {"name": "gulf", "lat_min": 42.3, "lat_max": 43.6, "lon_min": 3.0, "lon_max": 5.0}


def _write(path: Path, times: pd.DatetimeIndex, fields: dict[str, Any], **extra: Any) -> None:
    """A CDS-like file: ``fields`` maps a name to (values per step, units) on a uniform grid.

    ``extra`` names one more dimension (``expver=[1, 5]``, ``pressure_level=[1000, 850]``):
    the values then have shape (steps, len(extra)).
    """
    grid = (LAT.size, LON.size)
    (dim, labels), *_ = extra.items() if extra else ((None, None),)
    data = {}
    for name, (values, units) in fields.items():
        values = np.asarray(values, dtype="float64")
        dims = ("time", dim, "latitude", "longitude") if dim else ("time", "latitude", "longitude")
        shaped = values.reshape((*values.shape, 1, 1)) * np.ones(grid)
        data[name] = (dims, shaped.astype("float32"), {} if units is None else {"units": units})
    coords = {
        "time": ("time", times),
        "latitude": ("latitude", LAT, {"units": "degrees_north"}),
        "longitude": ("longitude", LON, {"units": "degrees_east"}),
    }
    if dim:
        coords[dim] = (dim, np.asarray(labels, dtype="int32"))
    xr.Dataset(data, coords=coords).to_netcdf(path, engine="h5netcdf")


def _extract(
    tmp_path: Path, accumulated: dict[str, str] | None = None, time_ranges: bool = True
) -> xr.Dataset:
    """Build the collection of ``tmp_path/data`` and extract its one combination.

    ``time_ranges=False`` labels each file's ``time_range`` by its name instead of its
    first and last day, as a collection written by hand may.
    """
    build_collection(str(tmp_path / "data"), str(tmp_path / "coll" / "era5.json"))
    if not time_ranges:
        table = pd.read_csv(tmp_path / "coll" / "era5.csv")
        names = table["path"].str.rsplit("/", n=1).str[-1].str.removesuffix(".nc")
        table.assign(time_range=names).to_csv(tmp_path / "coll" / "era5.csv", index=False)
    variables = {"tas": "t2m", **({"pr": "tp"} if accumulated else {})}
    source = {
        "name": "era5",
        "collection": "coll/era5.json",
        "role": "reference",
        "query": {"source_id": "ERA5"},
        "variables": variables,
        "accumulated": accumulated or {},
    }
    doc = {"version": 1, "regions": [{**REGION, "surface": "all"}], "sources": [source]}
    (tmp_path / "era5.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    catalog = load_run_catalog(str(tmp_path / "era5.yaml"))
    era5 = catalog.source("era5")
    datastore = open_collection(catalog, era5)
    (combo,) = enumerate_combos(catalog, era5, datastore)
    return extract_combo(catalog, era5, combo, datastore).compute().data


def _data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


HOURS = pd.date_range("2001-01-01", periods=48, freq="h")


def test_legacy_expver_slices_become_one_series_final_first(tmp_path):
    """Day 1 is final ERA5 (expver 1), day 2 ERA5T (5); 3 steps in both: the final wins."""
    t2m = np.full((48, 2), np.nan)
    t2m[:24, 0] = 280 + np.arange(24) / 10  # final
    t2m[24:, 1] = 290.0  # preliminary
    t2m[24:27, 0] = 300.0  # final values for steps ERA5T also holds: these count
    _write(_data(tmp_path) / "era5_2001.nc", HOURS, {"t2m": (t2m, "K")}, expver=[1, 5])

    tas = _extract(tmp_path)["tas"]

    assert tas.dims == ("time", "region")
    np.testing.assert_allclose(
        tas.sel(region="gulf").values, [280 + 11.5 / 10, (3 * 300 + 21 * 290) / 24], rtol=1e-6
    )


def test_a_dimension_left_on_a_predictor_stops_the_extraction(tmp_path):
    levels = np.stack([np.full(48, 280.0), np.full(48, 270.0)], axis=1)
    _write(
        _data(tmp_path) / "era5_2001.nc", HOURS, {"t2m": (levels, "K")}, pressure_level=[1000, 850]
    )

    with pytest.raises(
        SourceError, match=r"era5_2001\.nc.*tas.*'t2m'.*'pressure_level' \(2 values\)"
    ):
        _extract(tmp_path)


def test_a_dimension_of_one_value_is_dropped(tmp_path):
    """A single level (or member) names one value: the series is that value's."""
    level = np.full((48, 1), 281.5)
    _write(_data(tmp_path) / "era5_2001.nc", HOURS, {"t2m": (level, "K")}, pressure_level=[850])
    tas = _extract(tmp_path)["tas"]
    assert tas.dims == ("time", "region")
    np.testing.assert_allclose(tas.sel(region="gulf").values, [281.5, 281.5], rtol=1e-6)


def test_accumulated_depths_in_the_ecmwf_spelling_become_fluxes(tmp_path):
    tp = np.full(48, 0.001)  # 1 mm each hour: 24 kg m-2 a day
    fields = {"t2m": (np.full(48, 280.0), "K"), "tp": (tp, "m of water equivalent")}
    _write(_data(tmp_path) / "era5_2001.nc", HOURS, fields)

    pr = _extract(tmp_path, {"tp": "period_ending"})["pr"].sel(region="gulf")

    np.testing.assert_allclose(pr.values[0] * 86400, 24.0, rtol=1e-5)


def test_an_accumulated_variable_without_units_is_named(tmp_path):
    fields = {"t2m": (np.full(48, 280.0), "K"), "tp": (np.full(48, 0.001), None)}
    _write(_data(tmp_path) / "era5_2001.nc", HOURS, fields)

    with pytest.raises(SourceError, match=r"'tp'.*no units attribute.*era5_2001\.nc"):
        _extract(tmp_path, {"tp": "period_ending"})


def test_identical_overlapping_hourly_files_are_joined_once(tmp_path):
    days = pd.date_range("2001-01-01", periods=4 * 24, freq="h")
    t2m = 280 + np.arange(days.size) // 24  # 280, 281, 282, 283 by day
    data = _data(tmp_path)
    _write(data / "era5_2001-01.nc", days, {"t2m": (t2m, "K")})
    _write(data / "era5_2001-01-02_03.nc", days[24:72], {"t2m": (t2m[24:72], "K")})

    tas = _extract(tmp_path)["tas"].sel(region="gulf")

    np.testing.assert_allclose(tas.values, [280, 281, 282, 283], rtol=1e-6)


@pytest.mark.parametrize("time_ranges", [True, False], ids=["ranges listed", "no ranges"])
def test_overlapping_files_that_differ_are_named(tmp_path, time_ranges):
    days = pd.date_range("2001-01-01", periods=4 * 24, freq="h")
    data = _data(tmp_path)
    _write(data / "era5_2001-01.nc", days, {"t2m": (np.full(days.size, 280.0), "K")})
    _write(data / "era5_2001-01-02_03.nc", days[24:72], {"t2m": (np.full(48, 281.0), "K")})

    with pytest.raises(SourceError) as error:
        _extract(tmp_path, time_ranges=time_ranges)
    message = str(error.value)
    assert "era5_2001-01.nc" in message and "era5_2001-01-02_03.nc" in message
    assert "2001-01-02 00:00:00 to 2001-01-03 23:00:00 (48 steps)" in message
    assert "'t2m' differs" in message


def test_a_daily_file_repeating_part_of_another_keeps_every_day(tmp_path):
    """The shorter file sorts last: xarray alone kept only it, the whole year's rest lost."""
    days = pd.date_range("2001-01-01", periods=10, freq="D")
    t2m = 280 + np.arange(10.0)
    data = _data(tmp_path)
    _write(data / "era5_2001.nc", days, {"t2m": (t2m, "K")})
    _write(data / "era5_2001_part.nc", days[:5], {"t2m": (t2m[:5], "K")})

    tas = _extract(tmp_path)["tas"].sel(region="gulf")

    np.testing.assert_allclose(tas.values, t2m, rtol=1e-6)
