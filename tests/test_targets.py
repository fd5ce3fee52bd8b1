"""Targets: the held-out anomalies that calibration is fitted against."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from helpers import trailing_background_numpy

from cascadia.mooring.events import EventConfig, winter_labels
from cascadia.mooring.targets import BackgroundConfig, compute_background, held_out_targets

DEPTHS = (500.0, 1000.0)


def _record() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ten years of deep temperature: a +0.3 °C step in 2005, noise and one cold winter."""
    rng = np.random.default_rng(1)
    time = pd.date_range("1999-11-01", "2009-10-31", freq="D")
    level = 13.0 + 0.3 * (time >= "2005-03-01")
    temp = np.stack([level, level - 0.2], axis=1) + rng.normal(0, 0.02, (len(time), 2))
    cold = (time >= "2003-02-01") & (time < "2003-02-20")
    temp[cold, 0] -= 0.6
    labels = winter_labels(xr.DataArray(time.values, dims="time"), 11).values
    return time.values, temp, labels


def test_each_group_is_measured_against_a_background_without_it() -> None:
    time, temp, labels = _record()
    config, events = BackgroundConfig(), EventConfig()
    groups = [[2003, 2005], [2007]]
    anomaly, flags = held_out_targets(time, temp, DEPTHS, groups, config, events, [2009])
    da = xr.DataArray(temp, dims=("time", "depth"), coords={"time": time, "depth": list(DEPTHS)})
    for group in groups:
        days = np.isin(labels, group)
        background = compute_background(da, config, events, [2009, *group]).values
        np.testing.assert_allclose(anomaly[days], temp[days] - background[days])
    assert np.isnan(anomaly[~np.isin(labels, [2003, 2005, 2007])]).all()
    # The 2005 step is not anticipated from the winter's own data: the held-out
    # anomaly differs from the training target's there, by more than the noise.
    trained = temp - compute_background(da, config, events, [2009]).values
    step = np.isin(labels, [2005])
    assert np.sqrt(np.mean((anomaly[step, 0] - trained[step, 0]) ** 2)) > 0.03
    # The cold pulse of 2003 is an event in the held-out targets too; at 1000 m the
    # only flagged days are the step winter's, whose background leans towards the
    # post-step level once the winter itself is masked.
    cold = (time >= np.datetime64("2003-02-05")) & (time < np.datetime64("2003-02-15"))
    assert (flags[cold, 0] == 1).all()
    assert set(labels[flags[:, 1] == 1]) == {2005}


def test_without_exclusion_the_targets_are_the_usual_ones() -> None:
    time, temp, labels = _record()
    config = BackgroundConfig(exclude_test_winters=False)
    anomaly, _ = held_out_targets(time, temp, DEPTHS, [[2004]], config, EventConfig(), [2009])
    da = xr.DataArray(temp, dims=("time", "depth"), coords={"time": time, "depth": list(DEPTHS)})
    usual = temp - compute_background(da, config, EventConfig()).values
    days = labels == 2004
    np.testing.assert_allclose(anomaly[days], usual[days])


def test_a_trailing_background_sees_no_future_and_invents_no_cold_days_before_a_step() -> None:
    """A +0.3 °C step (the 2014 kind): the centred window lifts the background months ahead
    of it, and the quiet days before it become cascading; the trailing window cannot."""
    time = pd.date_range("2008-11-01", "2016-10-31", freq="D")
    rng = np.random.default_rng(3)
    step = np.where(time >= pd.Timestamp("2013-11-01"), 0.3, 0.0)
    values = 13.0 + step[:, None] + rng.normal(0, 0.01, (len(time), 2))
    temp = xr.DataArray(
        values, dims=("time", "depth"), coords={"time": time, "depth": [500.0, 1000.0]}
    )
    config = BackgroundConfig()
    before = (time >= pd.Timestamp("2013-05-01")) & (time < pd.Timestamp("2013-11-01"))
    cold = {}
    for window in ("centred", "trailing"):
        events = EventConfig(background_window=window)
        background = compute_background(temp, config, events)
        anomaly = (temp - background).values[before, 0]
        cold[window] = int((anomaly < -events.thresholds[500.0]).sum())
        if window == "trailing":
            # the same numbers as the truth's background, written again in numpy
            np.testing.assert_allclose(
                background.values[364:, 0], trailing_background_numpy(values[:, 0])[364:], atol=1e-9
            )
            assert "trailing 365 d window" in background.attrs["comment"]
    assert cold["centred"] > 60 and cold["trailing"] == 0, cold
