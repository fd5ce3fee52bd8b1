"""Validation-fitted calibration: σ factors and event-probability thresholds."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from cascadia.learning.calibration import (
    CALIBRATION_FILE,
    Calibration,
    exceedance_probability,
    fit_calibration,
    fit_probability_thresholds,
    probability_events,
)
from cascadia.mooring.events import EventConfig

DEPTHS = (500.0, 1000.0)


def test_exceedance_probability_is_the_mixture_cdf() -> None:
    mu = np.array([[[-0.1, 0.0]], [[-0.3, -0.2]]])  # (member, time, depth)
    sigma = np.array([[[0.1, 0.05]], [[0.2, 0.1]]])
    prob = exceedance_probability(mu, sigma, [0.15, 0.10])
    expected_500 = 0.5 * (norm.cdf((-0.15 + 0.1) / 0.1) + norm.cdf((-0.15 + 0.3) / 0.2))
    expected_1000 = 0.5 * (norm.cdf(-0.10 / 0.05) + norm.cdf((-0.10 + 0.2) / 0.1))
    np.testing.assert_allclose(prob[0], [expected_500, expected_1000])


def test_std_scale_recovers_an_overconfident_ensemble() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    time = pd.date_range("2000-01-01", periods=n, freq="D")
    mu = rng.normal(0, 0.3, (3, n, 2))
    sigma = np.full((3, n, 2), 0.1)
    # Truth: centred on the member mean with twice (500 m) / the same (1000 m) spread.
    y = mu.mean(axis=0) + rng.normal(0, 1, (n, 2)) * np.array([0.2, 0.1])
    mu = mu.mean(axis=0, keepdims=True).repeat(3, axis=0)
    cal = fit_calibration(
        mu, sigma, y, np.zeros((n, 2)), np.ones(n, bool), time, DEPTHS, EventConfig()
    )
    assert cal.std_scale[0] == pytest.approx(2.0, abs=0.1)
    assert cal.std_scale[1] == pytest.approx(1.0, abs=0.1)
    # No validation event: the probability threshold is the plain 0.5.
    assert cal.event_probability_threshold == (0.5, 0.5)
    # the levels are those of forecasts of mu's members: a run counts alike
    assert cal.level_fitted_members == mu.shape[0]
    assert cal.counts_members == (mu.shape[0] == 1)
    single = fit_calibration(
        mu[:1], sigma[:1], y, np.zeros((n, 2)), np.ones(n, bool), time, DEPTHS, EventConfig()
    )
    assert single.level_fitted_members == 1 and single.counts_members


def test_probability_threshold_maximises_validation_csi() -> None:
    time = pd.date_range("2001-01-01", periods=120, freq="D")
    observed = np.zeros((120, 2))
    observed[30:50, 0] = 1  # a 20-day event at 500 m
    prob = np.full((120, 2), 0.05)
    prob[25:55, 0] = 0.25  # a broad, lukewarm signal around it...
    prob[30:50, 0] = 0.4  # ...peaking on the event days
    prob[80:90, 0] = 0.3  # a false alarm that a 0.25 level would also flag
    levels = fit_probability_thresholds(
        prob, observed, np.ones(120, bool), time, DEPTHS, EventConfig(), rule="csi"
    )
    assert levels[0] == pytest.approx(0.4)  # exactly the event days: CSI 1
    assert levels[1] == 0.5  # no event at 1000 m
    events = probability_events(prob, time, DEPTHS, levels, EventConfig())
    np.testing.assert_array_equal(events[:, 0], observed[:, 0].astype(bool))
    assert not events[:, 1].any()


def test_frequency_rule_flags_as_many_days_as_observed() -> None:
    """Where the CSI prefers a level that misses a quarter of the events, the count does not."""
    time = pd.date_range("2001-01-01", periods=120, freq="D")
    observed = np.zeros((120, 2))
    observed[30:50, 0] = 1  # 20 event days
    prob = np.full((120, 2), 0.05)
    prob[30:44, 0] = 0.6  # 14 confident hits
    prob[44:48, 0] = 0.3  # 4 more at a lower probability...
    prob[80:86, 0] = 0.3  # ...as likely as a 6-day false alarm
    args = (prob, observed, np.ones(120, bool), time, DEPTHS, EventConfig())
    # CSI: 14/20 = 0.70 at 0.6 against 18/26 = 0.69 at 0.3; counts: 14 against 24 of 20.
    assert fit_probability_thresholds(*args, rule="csi")[0] == pytest.approx(0.6)
    levels = fit_probability_thresholds(*args, rule="frequency")
    assert levels[0] == pytest.approx(0.3)
    assert levels[1] == 0.5  # no event at 1000 m
    flagged = probability_events(prob, time, DEPTHS, levels, EventConfig())[:, 0]
    assert flagged.sum() == 24 and flagged[30:48].all()


def test_calibration_round_trips(tmp_path) -> None:
    cal = Calibration(DEPTHS, (1.2, 1.1), (0.15, 0.10), (0.2, 0.5), (2005, 2013), "frequency")
    cal.save(tmp_path)
    assert Calibration.load(tmp_path) == cal
    assert Calibration.load(tmp_path / "absent") is None
    # a file written before the field: its level is the mixture's, as it was used
    data = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    assert data.pop("level_fitted_members") is None
    older = Calibration.from_dict(data)
    assert older.level_fitted_members is None and not older.counts_members
    one = dataclasses.replace(cal, level_fitted_members=1)
    one.save(tmp_path)
    assert Calibration.load(tmp_path) == one and one.counts_members
