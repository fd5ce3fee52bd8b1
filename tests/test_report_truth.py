"""The truth's winter event days, recomputed independently of ``cascadia.mooring.events``.

The report counts the truth's cascading days against the event rule's running-quantile
background of the trailing window, and on the physical anomaly (true temperature minus the
twin's ``background_temperature``), over the November-April season each winter is named by.
Here the rule of docs/events.md is written again in plain numpy - the trailing q0.8 of 365
days then a 31-day mean, below-threshold days, runs merged across gaps of at most one day,
at least two below-threshold days per event - on a tiny world's projection truth, and the
report's numbers must be the same; winter 2014, when the twin's background steps up by
0.3 °C, must show no burst of spurious events with either background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers import trailing_background_numpy

from cascadia.mooring.events import EventConfig, anomalies, event_days
from cascadia.report import load_truth_index, season_event_days, truth_winter_event_days
from cascadia.report.truth import causal_background
from cascadia.twin.world import build_world

THRESHOLDS = {500.0: 0.15, 1000.0: 0.10}  # °C, docs/events.md "Default thresholds"
SEASON = (11, 12, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> list[xr.Dataset]:
    """Every projection path (historical joined with ssp585) of a tiny world's truth."""
    root = Path(tmp_path_factory.mktemp("truth")) / "world"
    build_world(str(root), "tiny", seed=4)
    index = load_truth_index(root / "truth/index.csv")
    rows = index[(index.experiment_id == "ssp585") & (index.family == "cmip6")]
    out = []
    for path, member in zip(rows.path, rows.member_id, strict=True):
        truth = xr.open_zarr(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))
        one = truth.sel(member_id=member)
        joined = one.sel(experiment_id="historical").combine_first(one.sel(experiment_id="ssp585"))
        out.append(joined[["temperature", "background_temperature"]].load())
    assert len(out) >= 2
    return out


def _event_days_numpy(anomaly: np.ndarray, threshold: float) -> np.ndarray:
    """docs/events.md: runs of below-threshold days, gaps of <= 1 day bridged, >= 2 below."""
    below = anomaly < -threshold  # NaN is never below
    events = np.zeros(below.size, dtype=bool)
    days = np.flatnonzero(below)
    if not days.size:
        return events
    start = previous = days[0]
    count = 1
    for day in [*days[1:], None]:
        if day is not None and day - previous <= 2:  # one day above the threshold between
            previous, count = day, count + 1
            continue
        if count >= 2:
            events[start : previous + 1] = True
        if day is not None:
            start = previous = day
            count = 1
    return events


def _per_winter_numpy(series: xr.Dataset, depth: float, causal: bool = False) -> pd.Series:
    one = series.sel(depth=depth)
    temperature = one["temperature"].values
    background = (
        trailing_background_numpy(temperature) if causal else one["background_temperature"].values
    )
    anomaly = temperature - background
    events = _event_days_numpy(anomaly, THRESHOLDS[depth])
    year = np.array([t.year for t in one["time"].values])
    month = np.array([t.month for t in one["time"].values])
    winter = year + (month >= 11)
    season = np.isin(month, SEASON)
    out = {}
    for w in np.unique(winter):
        full = (pd.Timestamp(w, 5, 1) - pd.Timestamp(w - 1, 11, 1)).days  # standard calendar
        have = (season & (winter == w) & np.isfinite(anomaly)).sum()
        n = (events & season & (winter == w)).sum()
        out[int(w)] = n * full / have if have >= 0.9 * full else np.nan
    return pd.Series(out, dtype=float)


@pytest.mark.parametrize("depth", [500.0, 1000.0])
def test_report_truth_event_days_equal_an_independent_count(paths, depth) -> None:
    events = EventConfig()
    for series in paths:
        one = series.sel(depth=depth)
        report = truth_winter_event_days(one["temperature"], one["background_temperature"], events)
        mine = _per_winter_numpy(series, depth)
        pd.testing.assert_series_equal(report, mine, check_names=False, atol=1e-9)
        # winters 2013-2016 are complete on the tiny paths (historical 2012-2014, ssp 2015-16)
        assert mine.loc[2013:2016].notna().all()


@pytest.mark.parametrize("depth", [500.0, 1000.0])
def test_report_truth_on_the_trailing_background_equals_an_independent_count(paths, depth) -> None:
    events = EventConfig()
    for series in paths:
        one = series.sel(depth=depth)
        background = causal_background(one["temperature"], events)
        np.testing.assert_allclose(
            background.values, trailing_background_numpy(one["temperature"].values), atol=1e-9
        )
        report = truth_winter_event_days(one["temperature"], background, events)
        mine = _per_winter_numpy(series, depth, causal=True)
        pd.testing.assert_series_equal(report, mine, check_names=False, atol=1e-9)
        assert mine.loc[2013:2016].notna().all()


def test_winter_2014_has_no_spurious_burst(paths) -> None:
    """The running quantile of the true series anticipates the 2014 background step and
    fills winter 2014 with 'events'; the physical anomaly does not."""
    events = EventConfig()
    for series in paths:
        one = series.sel(depth=500.0)
        physical = truth_winter_event_days(
            one["temperature"], one["background_temperature"], events
        )
        quantile = anomalies(one["temperature"], config=events)
        flags = event_days(quantile, config=events).values
        running = season_event_days(flags, np.isfinite(quantile.values), one["time"].values)
        trailing = truth_winter_event_days(
            one["temperature"], causal_background(one["temperature"], events), events
        )
        # a burst is what the centred running quantile gives: far more than any other winter
        for truth in (physical, trailing):
            others = truth.drop(2014).dropna()
            assert running[2014] > truth[2014] + 40, (running[2014], truth[2014])
            assert truth[2014] <= max(others.max(), 0) + 30, truth.to_dict()


def test_season_event_days_counts_only_november_to_april() -> None:
    """Event days in May-October never count; a noleap winter is scaled to the full season."""
    time = xr.date_range("2006-11-01", "2008-12-31", freq="D", calendar="noleap", use_cftime=True)
    month = np.array([t.month for t in time])
    flags = np.isin(month, [3, 5, 6])  # all of March (in season), May and June (not)
    out = season_event_days(flags, np.ones(time.size, bool), time)
    # winter 2007: 31 March days, a 181-day season in both calendars
    assert out[2007] == pytest.approx(31.0)
    # winter 2008: the noleap season has 181 days, the standard one 182 (29 February)
    assert out[2008] == pytest.approx(31.0 * 182 / 181)
    # winter 2009 holds only November-December 2008: under-covered
    assert np.isnan(out[2009])
