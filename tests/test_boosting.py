"""The gradient-boosting baseline learns a winter's memory from lagged aggregates of its inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cascadia.learning.baselines import ClimatologyBaseline
from cascadia.learning.boosting import GradientBoostingBaseline, lagged_features
from cascadia.learning.metrics import crps_gaussian


def _world() -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """A cooling forcing whose winter integral (not its daily value) sets the anomaly."""
    time = pd.date_range("1997-11-01", "2012-10-31", freq="D")
    rng = np.random.default_rng(4)
    winter = np.asarray(time.year + (time.month >= 11))
    severity = rng.uniform(0.0, 2.0, size=winter.max() - winter.min() + 1)[winter - winter.min()]
    cold_season = np.isin(time.month, [11, 12, 1, 2, 3]).astype(float)
    forcing = cold_season * severity + rng.normal(0.0, 1.0, len(time))
    integral = np.zeros(len(time))
    for w in np.unique(winter):
        sel = winter == w
        integral[sel] = np.cumsum(forcing[sel])
    anomaly = -0.004 * np.maximum(integral - 60.0, 0.0) + rng.normal(0.0, 0.02, len(time))
    noise = rng.normal(size=(len(time), 2))
    return time, np.column_stack([forcing, noise]), np.column_stack([anomaly, 0.5 * anomaly])


def test_lagged_features_hold_trailing_means_and_the_winter_sum() -> None:
    time = pd.date_range("2000-10-30", periods=6, freq="D")
    x = np.arange(6, dtype=float)[:, None]
    lagged = lagged_features(x, time.values, np.array([0.0]), np.array([1.0]), windows=(2,))
    np.testing.assert_allclose(lagged[:, 0], x[:, 0])
    np.testing.assert_allclose(lagged[:, 1], [0.0, 0.5, 1.5, 2.5, 3.5, 4.5])
    # The winter's sum restarts on 1 November (the third day).
    np.testing.assert_allclose(lagged[:, 2], [0.0, 1.0, 2.0, 5.0, 9.0, 14.0])
    assert lagged.shape == (6, 5)


def test_gradient_boosting_beats_climatology_on_unseen_winters() -> None:
    time, features, anomaly = _world()
    winter = np.asarray(time.year + (time.month >= 11))
    train = list(range(1998, 2010))
    test = np.isin(winter, [2010, 2011, 2012])
    gbm = GradientBoostingBaseline().fit(time.values, anomaly, train, features)
    pred = gbm.predict(time.values, features)
    clim = ClimatologyBaseline().fit(time.values, anomaly, train).predict(time.values)
    for d in range(2):
        ours = crps_gaussian(anomaly[test, d], pred.mean[test, d], pred.std[test, d])
        reference = crps_gaussian(anomaly[test, d], clim.mean[test, d], clim.std[test, d])
        assert ours < 0.7 * reference, (d, ours, reference)
    assert (pred.std > 0).all() and np.isfinite(pred.mean).all()
    assert gbm.scale_ is not None and (gbm.scale_ > 0.3).all()
    with pytest.raises(RuntimeError, match="not fitted"):
        GradientBoostingBaseline().predict(time.values, features)
