"""``cascadia.open_results`` and ``cascadia-ensemble query`` on a real tiny run.

The store is the session's ``tiny_run`` (tests/conftest.py): a smoke model over a
CMIP-like model's historical and ssp585 runs, two members each. Every value the reader
API or the query command gives is held against the store read independently
(``open_cube``, the layout-independent cube view, and plain ``xr.open_zarr`` numbers),
exactly: the text formats must read back to the stored float32.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import cascadia
from cascadia.cli import QUERY_FORMATS, QUERY_STATS, main
from cascadia.run.store import COMBO_DIMS, combo_status, open_cube
from cascadia.service.formats import FORMATS
from cascadia.service.query import STATS, Query, run_query
from cascadia.service.results import ResultsError

pytestmark = pytest.mark.slow

SOURCE = "TWIN-ESM-A"
MEMBERS = ("r1i1p1f1", "r2i1p1f1")
COMBOS = [(e, SOURCE, m) for e in ("historical", "ssp585") for m in MEMBERS]


@pytest.fixture(scope="module")
def cube(tiny_run) -> xr.Dataset:
    with open_cube(tiny_run["store"]) as ds:
        return ds.load()


def _stored(cube: xr.Dataset, combo: tuple[str, str, str], name: str, **where) -> xr.DataArray:
    return cube[name].sel(dict(zip(COMBO_DIMS, combo, strict=True))).sel(**where)


def _same(got: np.ndarray, want: np.ndarray) -> None:
    """Equal as float32 (NaN where NaN): the text formats must round-trip exactly."""
    got32 = np.asarray(got, dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(got32, np.asarray(want, dtype=np.float32))


# ------------------------------------------------------------------ open_results


def test_open_results_is_lazy_and_import_cascadia_stays_light(tiny_run) -> None:
    heavy = "('xarray', 'zarr', 'fastapi')"
    code = f"import sys, cascadia; print(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    results = cascadia.open_results(tiny_run["store"])
    assert results.dataset["temperature_mean"].chunks is not None  # dask-backed: lazy
    assert results.labels("experiment") == ["historical", "ssp585"]
    assert results.labels("member_id") == list(MEMBERS)
    assert results.depths == [500.0, 1000.0]


def test_combinations_are_the_store_table_with_families(tiny_run) -> None:
    results = cascadia.open_results(tiny_run["store"])
    table = results.combinations()
    assert [tuple(r) for r in table[list(COMBO_DIMS)].itertuples(index=False)] == COMBOS
    assert set(table["status"]) == {"done"} and set(table["family"]) == {SOURCE}
    plain = combo_status(tiny_run["store"]).set_index(list(COMBO_DIMS))
    mine = table.set_index(list(COMBO_DIMS))
    for column in plain.columns:
        assert mine.loc[plain.index, column].tolist() == plain[column].tolist(), column


def test_series_cube_spread_and_events_equal_the_store(tiny_run, cube) -> None:
    results = cascadia.open_results(tiny_run["store"])
    combo = ("ssp585", SOURCE, "r2i1p1f1")
    series = results.series(*combo, depth=1000, start="2015-02", end="2015-03-10").load()
    days = pd.date_range("2015-02-01", "2015-03-10")
    np.testing.assert_array_equal(series["time"].values, days.values)
    assert series.attrs["combination_status"] == "done"
    for name in ("temperature_mean", "temperature_quantile", "temperature_member"):
        want = _stored(cube, combo, name, depth=[1000.0], time=days)
        np.testing.assert_array_equal(series[name].values, want.values)
    # the cube of two variables, label holes none here: the store's numbers
    view = results.cube(["event_days", "winter_days"], experiment="historical").load()
    assert view.sizes["experiment"] == 1 and set(view.data_vars) == {
        "event_days",
        "winter_days",
        "status",
    }
    np.testing.assert_array_equal(
        view["event_days"].values, cube["event_days"].sel(experiment=["historical"]).values
    )
    # the spread statistics are the store's
    spread = results.spread
    assert spread is not None and "event_days_multimodel_mean" in spread
    np.testing.assert_array_equal(
        spread["event_days_multimodel_mean"].values, cube["event_days_multimodel_mean"].values
    )
    # per-winter events: one row per combination, winter and depth, member min/max
    events = results.winter_events(experiment=["historical", "ssp585"], start="2014", end="2016")
    assert len(events) == 4 * 3 * 2
    assert sorted(set(events["winter"])) == [2014, 2015, 2016]
    for row in events.itertuples(index=False):
        key = (row.experiment, row.source_id, row.member_id)
        at = {"winter": row.winter, "depth": row.depth}
        _same([row.event_days], [_stored(cube, key, "event_days", **at).item()])
        _same([row.peak_intensity], [_stored(cube, key, "peak_intensity", **at).item()])
        members = _stored(cube, key, "member_event_days", **at).values
        _same(
            [row.event_days_member_min, row.event_days_member_max], [members.min(), members.max()]
        )
        _same([row.winter_days], [_stored(cube, key, "winter_days", winter=row.winter).item()])
        _same([row.ood_fraction], [_stored(cube, key, "ood_fraction", winter=row.winter).item()])
        assert row.season_start == pd.Timestamp(f"{row.winter - 1}-11-01")
        assert row.season_end == pd.Timestamp(f"{row.winter}-05-01")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda r: r.series("rcp85", SOURCE, "r1i1p1f1"),
            "unknown experiment rcp85; the store has: historical, ssp585",
        ),
        (
            lambda r: r.series("ssp585", "NOPE", "r1i1p1f1"),
            f"unknown source_id NOPE; the store has: {SOURCE}",
        ),
        (
            lambda r: r.series("ssp585", SOURCE, "r9"),
            "unknown member_id r9; the store has: r1i1p1f1, r2i1p1f1",
        ),
        (
            lambda r: r.series("ssp585", SOURCE, "r1i1p1f1", depth=750),
            "unknown depth 750 m; the store has: 500, 1000 m",
        ),
        (
            lambda r: r.series("ssp585", SOURCE, "r1i1p1f1", variables=["salinity"]),
            "unknown variable salinity; the store has: temperature_mean,",
        ),
        (
            lambda r: r.winter_events(start="2016", end="2014"),
            "start 2016 is after end 2014",
        ),
        (lambda r: r.winter_events(end="soon"), "end 'soon' is not a date"),
    ],
)
def test_errors_are_one_line_naming_what_exists(tiny_run, call, message) -> None:
    results = cascadia.open_results(tiny_run["store"])
    with pytest.raises(ResultsError) as caught:
        call(results)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_a_missing_store_is_named(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=f"^no results store at {tmp_path / 'none.zarr'}$"):
        cascadia.open_results(str(tmp_path / "none.zarr"))


# ------------------------------------------------------------------ the query command


def _query(capsysbinary, *args: str) -> bytes:
    code = main(["query", *args])
    out = capsysbinary.readouterr().out
    assert code == 0
    return out


def test_query_csv_and_json_equal_the_store(tiny_run, cube, capsysbinary) -> None:
    args = [
        "--results",
        tiny_run["store"],
        "--experiment",
        "historical",
        "ssp585",
        "--member-id",
        "r1i1p1f1",
        "--member-id",
        "r2i1p1f1",
        "--depth",
        "500",
        "--start",
        "2014-12-20",
        "--end",
        "2015-01-10",
        "--stat",
        "band",
    ]
    table = pd.read_csv(io.BytesIO(_query(capsysbinary, *args)))
    records = pd.DataFrame(json.loads(_query(capsysbinary, *args, "--format", "json")))
    days = pd.date_range("2014-12-20", "2015-01-10")
    assert len(table) == len(records) == 4 * len(days)
    for frame in (table, records):
        for combo in COMBOS:
            rows = frame[
                (frame.experiment == combo[0]) & (frame.member_id == combo[2])
            ].sort_values("time")
            assert rows["time"].tolist() == [str(d.date()) for d in days]
            assert set(rows["depth"]) == {500.0}
            where = {"depth": 500.0, "time": days}
            _same(rows["temperature_mean"], _stored(cube, combo, "temperature_mean", **where))
            _same(rows["temperature_std"], _stored(cube, combo, "temperature_std", **where))
            for q in (0.05, 0.5, 0.95):
                want = _stored(cube, combo, "temperature_quantile", quantile=q, **where)
                _same(rows[f"temperature_quantile_{q:g}"], want)
    # historical ends in 2014 and ssp585 starts in 2015: the other days are missing (NaN)
    hist = table[(table.experiment == "historical") & (table.time >= "2015-01-01")]
    assert len(hist) and hist["temperature_mean"].isna().all()


def test_query_netcdf_and_events_equal_the_store(tiny_run, cube, tmp_path, capsys) -> None:
    out = tmp_path / "members.nc"
    base = ["--results", tiny_run["store"], "--source-id", SOURCE]
    code = main(["query", *base, "--stat", "members", "--format", "netcdf", "--out", str(out)])
    assert code == 0 and "rows of members written to" in capsys.readouterr().err
    with xr.open_dataset(out) as ds:
        want = cube["temperature_member"].sel(source_id=[SOURCE])
        np.testing.assert_array_equal(ds["temperature_member"].values, want.values)
        assert ds["experiment"].values.tolist() == ["historical", "ssp585"]
    events = tmp_path / "events.csv"
    code = main(["query", *base, "--stat", "events", "--depth", "1000", "--out", str(events)])
    assert code == 0
    table = pd.read_csv(events)
    assert len(table) == 4 * cube.sizes["winter"]
    for row in table.itertuples(index=False):
        key = (row.experiment, row.source_id, row.member_id)
        got = [row.event_days, row.event_count, row.winter_days]
        at = {"winter": row.winter, "depth": 1000.0}
        want = [
            _stored(cube, key, "event_days", **at).item(),
            _stored(cube, key, "event_count", **at).item(),
            _stored(cube, key, "winter_days", winter=row.winter).item(),
        ]
        _same(got, want)
    spread = tmp_path / "spread.json"
    name = "event_days_multimodel_mean"
    code = main(
        [
            "query",
            *base,
            "--stat",
            "spread",
            "--variable",
            name,
            "--format",
            "json",
            "--out",
            str(spread),
        ]
    )
    assert code == 0
    rows = json.loads(spread.read_text())
    assert {r["variable"] for r in rows} == {name}
    for row in rows:
        stored = cube[name].sel(
            experiment=row["experiment"], winter=row["winter"], depth=row["depth"]
        )
        _same([np.nan if row["value"] is None else row["value"]], [stored.item()])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--experiment", "ssp999"],
            "unknown experiment ssp999; the store has: historical, ssp585",
        ),
        (
            ["--member-id", "r1i1p1f1", "r7"],
            "unknown member_id r7; the store has: r1i1p1f1, r2i1p1f1",
        ),
        (["--depth", "200"], "unknown depth 200 m; the store has: 500, 1000 m"),
        (["--start", "yesterday"], "start 'yesterday' is not a date"),
        (["--start", "2015", "--end", "2013"], "start 2015 is after end 2013"),
        (["--stat", "variables", "--variable", "salinity"], "unknown variable salinity"),
        (["--stat", "spread", "--variable", "nope"], "unknown variable nope"),
    ],
)
def test_bad_filters_exit_2_with_one_line(tiny_run, capsys, args, message) -> None:
    code = main(["query", "--results", tiny_run["store"], *args])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err
    assert lines[0].startswith("cascadia-ensemble: error: ")


def test_query_vocabulary_is_the_service_s() -> None:
    assert QUERY_STATS == STATS and QUERY_FORMATS == FORMATS


def test_run_query_refuses_too_large_answers_before_reading(tiny_run) -> None:
    from cascadia.service.query import Limits, TooLarge

    results = cascadia.open_results(tiny_run["store"])
    rows = 4 * results.dataset.sizes["time"] * 2
    with pytest.raises(TooLarge, match=f"gives {rows} rows, more than the limit of 100"):
        run_query(results, Query(stat="mean"), Limits(max_rows=100))
    with pytest.raises(TooLarge, match="spans 31 days, more than the limit of 30"):
        run_query(results, Query(start="2014-01", end="2014-01", stat="std"), Limits(max_days=30))
    fits = run_query(
        results, Query(start="2014-01", end="2014-01", stat="std"), Limits(100_000, 31)
    )
    assert fits.rows == 4 * 31 * 2
