"""Cascading event detection on synthetic daily series with known episodes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydantic
import pytest
import xarray as xr

from cascadia.mooring.events import (
    EventConfig,
    EventError,
    anomalies,
    background_series,
    event_days,
    event_probability,
    events_table,
    winter_labels,
    winter_statistics,
)

# Known cold episodes: (depth, first day, days, drop in °C)
EPISODES = [
    (500.0, "2005-02-10", 10, 0.60),
    (500.0, "2006-01-20", 5, 0.40),
    (1000.0, "2005-02-15", 7, 0.30),
]
DIP = (500.0, "2005-03-15", 0.50)  # one cold day: not an event
NOISE = 0.01  # °C, ordinary day-to-day variability


def synthetic(calendar: str = "standard") -> tuple[xr.DataArray, xr.DataArray]:
    """Four winters (Nov 2003 – Oct 2007) of daily temperature and its true background."""
    if calendar == "standard":
        time = pd.date_range("2003-11-01", "2007-10-31", freq="D", unit="ns")
    else:
        time = xr.date_range("2003-11-01", "2007-10-30", freq="D", calendar=calendar)
    n = len(time)
    rng = np.random.default_rng(7)
    warming = 0.00005 * np.arange(n)  # 0.018 °C/yr
    truth = np.stack([13.10 + warming, 12.85 + warming], axis=1)
    temp = xr.DataArray(
        truth + rng.normal(0, NOISE, truth.shape),
        dims=("time", "depth"),
        coords={"time": time, "depth": [500.0, 1000.0]},
        attrs={"units": "degree_Celsius"},
    )
    for depth, first, days, drop in EPISODES:
        start = time.get_loc(_stamp(first, calendar))
        temp[start : start + days, [500.0, 1000.0].index(depth)] -= drop
    depth, day, drop = DIP
    temp.loc[{"depth": depth, "time": _stamp(day, calendar)}] -= drop
    background = xr.DataArray(truth, dims=("time", "depth"), coords=temp.coords)
    return temp, background


def _stamp(day: str, calendar: str) -> object:
    if calendar == "standard":
        return pd.Timestamp(day)
    import cftime

    return cftime.datetime(*map(int, day.split("-")), calendar=calendar)


def test_known_episodes_give_exactly_those_events() -> None:
    temp, _ = synthetic()
    anom = anomalies(temp)  # background estimated from the data themselves
    table = events_table(anom)
    assert len(table) == len(EPISODES)
    for (depth, first, days, drop), row in zip(
        sorted(EPISODES), table.itertuples(index=False), strict=True
    ):
        assert row.depth == depth
        assert row.start == pd.Timestamp(first)
        assert row.end == pd.Timestamp(first) + pd.Timedelta(days=days - 1)
        assert row.duration_days == row.days_below == days
        assert row.mean_intensity == pytest.approx(drop, abs=0.03)
        assert drop - 0.01 < row.peak_intensity < drop + 0.06
        assert row.winter == pd.Timestamp(first).year + (pd.Timestamp(first).month >= 11)


def test_winter_statistics_numbers() -> None:
    temp, _ = synthetic()
    stats = winter_statistics(anomalies(temp))
    assert stats["event_days"].dims == ("winter", "depth")
    assert stats["winter"].values.tolist() == [2004, 2005, 2006, 2007]
    assert stats["event_days"].sel(depth=500).values.tolist() == [0, 10, 5, 0]
    assert stats["event_count"].sel(depth=500).values.tolist() == [0, 1, 1, 0]
    assert stats["event_days"].sel(depth=1000).values.tolist() == [0, 7, 0, 0]
    assert stats["event_count"].sel(depth=1000).values.tolist() == [0, 1, 0, 0]
    mean500 = stats["mean_intensity"].sel(depth=500).values
    assert np.isnan(mean500[[0, 3]]).all()
    np.testing.assert_allclose(mean500[[1, 2]], [0.60, 0.40], atol=0.03)
    assert stats["mean_intensity"].sel(depth=1000, winter=2005).item() == pytest.approx(
        0.30, abs=0.03
    )
    peak = stats["peak_intensity"].sel(depth=500, winter=2005).item()
    assert 0.59 < peak < 0.66
    assert stats["valid_days"].sel(depth=500, winter=2005).item() == 365
    assert stats["valid_days"].sel(depth=500, winter=2004).item() == 366  # leap 2004


def test_one_day_dip_is_not_an_event() -> None:
    temp, background = synthetic()
    anom = anomalies(temp, background)
    assert anom.sel(time="2005-03-15", depth=500).item() < -0.45
    events = event_days(anom)
    assert not events.sel(time="2005-03-15", depth=500).item()
    assert events.dtype == bool and events.dims == anom.dims


def test_merge_gaps_and_minimum_duration() -> None:
    time = pd.date_range("2010-01-01", periods=20, freq="D")
    pattern = "..EE.EE..E.E...E.E.."  # 2+2 merged, 1+1 merged (2 days below), a lone day
    values = np.array([-0.3 if c == "E" else 0.0 for c in pattern])
    values[15] = np.nan  # a NaN day, not below threshold
    anom = xr.DataArray(values, dims="time", coords={"time": time})
    mask = event_days(anom, threshold=0.1)
    assert "".join("E" if m else "." for m in mask.values) == "..EEEEE..EEE........"
    table = events_table(anom, threshold=0.1)
    assert table["duration_days"].tolist() == [5, 3]
    assert table["days_below"].tolist() == [4, 2]
    strict = EventConfig(max_gap_days=0, min_duration_days=2)
    assert event_days(anom, 0.1, config=strict).sum().item() == 4
    stats = winter_statistics(anom, 0.1)
    assert stats["event_count"].item() == 2 and stats["event_days"].item() == 8
    assert stats["mean_intensity"].item() == pytest.approx(0.3 * 6 / 8)


def test_background_not_dragged_down_by_long_event() -> None:
    temp, background = synthetic()
    start = temp.indexes["time"].get_loc(pd.Timestamp("2006-02-01"))
    temp[start : start + 21, 0] -= 0.5  # a 3-week −0.5 °C event at 500 m
    est = background_series(temp)
    window = slice(start, start + 21)
    # within 0.02 °C of the truth during the event (a 365-day running mean is off by 0.034)
    assert float(np.abs(est[window, 0] - background[window, 0]).max()) < 0.02
    anom = temp - est
    peak = -float(anom[window, 0].min())
    assert abs(peak - 0.5) < 0.05  # within 10 % of the true drop
    table = events_table(anom)
    long = table[(table.depth == 500) & (table.start == pd.Timestamp("2006-02-01"))]
    assert long["duration_days"].tolist() == [21]


@pytest.mark.parametrize("calendar", ["noleap", "360_day"])
def test_any_calendar(calendar: str) -> None:
    temp, _ = synthetic(calendar)
    stats = winter_statistics(anomalies(temp))
    assert stats["event_days"].sel(depth=500).values.tolist() == [0, 10, 5, 0]
    assert stats["event_count"].sel(depth=1000).values.tolist() == [0, 1, 0, 0]
    table = events_table(anomalies(temp))
    assert table["start"].iloc[0] == _stamp("2005-02-10", calendar)


def test_dask_and_extra_dims_match_numpy() -> None:
    pytest.importorskip("dask")
    temp, _ = synthetic()
    shifts = xr.DataArray([0.0, 0.05, -0.02], dims="member", coords={"member": [0, 1, 2]})
    members = (temp + shifts).transpose("member", "time", "depth")
    lazy = members.chunk({"member": 1, "time": 365})
    anom_np, anom_dask = anomalies(members), anomalies(lazy)
    assert anom_dask.chunks is not None
    ev_dask = event_days(anom_dask)
    assert ev_dask.chunks is not None
    xr.testing.assert_equal(event_days(anom_np), ev_dask.compute())
    stats_np, stats_dask = winter_statistics(anom_np), winter_statistics(anom_dask)
    assert stats_dask["event_days"].dims == ("member", "winter", "depth")
    xr.testing.assert_allclose(stats_np, stats_dask.compute())
    assert (stats_np["event_days"].sel(depth=500, winter=2005) == 10).all()
    table = events_table(anom_dask)
    assert list(table.columns[:2]) == ["member", "depth"] and len(table) == 3 * len(EPISODES)


def test_event_probability() -> None:
    anom = xr.DataArray(
        [[-0.2, 0.0], [-0.05, 0.0], [-0.3, 0.0], [np.nan, np.nan]],
        dims=("member", "time"),
        coords={"time": pd.date_range("2005-02-01", periods=2)},
    )
    prob = event_probability(anom, threshold=0.1)
    np.testing.assert_allclose(prob.values, [2 / 3, 0.0])
    assert prob.attrs["units"] == "1"
    temp, _ = synthetic()
    anom = anomalies(temp).expand_dims(member=3).copy()
    anom[1] = anom[1] + 0.5  # member 1 warmer: never below the threshold
    day = event_probability(anom, mode="event").sel(time="2005-02-16")
    np.testing.assert_allclose(day.values, [2 / 3, 2 / 3])
    with pytest.raises(EventError, match="member dimension"):
        event_probability(anom, dim="sample")


def test_winter_labels_and_config_errors() -> None:
    time = xr.DataArray(pd.to_datetime(["2004-10-31", "2004-11-01", "2005-04-30"]), dims="time")
    assert winter_labels(time).values.tolist() == [2004, 2005, 2005]
    with pytest.raises(EventError, match="no event threshold for depth 750"):
        EventConfig().threshold_for(750)
    with pytest.raises(pydantic.ValidationError):
        EventConfig(thresholds={500: -0.1})
    with pytest.raises(pydantic.ValidationError):
        EventConfig(background_quantile=0.3)
    anom = xr.DataArray(np.zeros(3), dims="time", coords={"time": time.values})
    with pytest.raises(EventError, match="no 'depth' coordinate"):
        event_days(anom)
    seasonal = EventConfig(season_months=[1, 2, 3, 4])
    temp, _ = synthetic()
    anom = anomalies(temp)
    anom.loc[{"time": slice("2006-06-01", "2006-06-05"), "depth": 500}] = -0.5
    assert winter_statistics(anom)["event_count"].sel(depth=500, winter=2006).item() == 2
    only_season = winter_statistics(anom, config=seasonal)
    assert only_season["event_count"].sel(depth=500, winter=2006).item() == 1
