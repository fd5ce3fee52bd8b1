"""Predictors that cannot be real are refused, naming variable, region, count and dates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from cascadia.sources.predictors.plausibility import (
    MAX_LISTED,
    PLAUSIBLE,
    PredictorDataError,
    check_predictors,
)

DAYS = pd.date_range("2000-01-01", periods=400, freq="D")
REGIONS = ["shelf", "corridor"]


def _dataset(**series: np.ndarray) -> xr.Dataset:
    """Variables given on the first region; the second region holds their median."""
    data = {}
    for name, values in series.items():
        other = np.full_like(values, np.nanmedian(values) if np.isfinite(values).any() else 0.0)
        data[name] = (("time", "region"), np.stack([values, other], axis=1))
    return xr.Dataset(data, coords={"time": DAYS, "region": REGIONS})


def _typical(name: str, seed: int) -> np.ndarray:
    spec = PLAUSIBLE[name]
    lo, hi = spec.typical
    rng = np.random.default_rng(seed)
    centre = lo + (hi - lo) * rng.uniform(0.3, 0.7)
    spread = (hi - lo) * 0.1
    return np.clip(centre + spread * rng.standard_normal(len(DAYS)), lo, hi)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(PLAUSIBLE)), seed=st.integers(0, 10_000))
def test_series_within_their_typical_range_pass(name: str, seed: int) -> None:
    check_predictors(_dataset(**{name: _typical(name, seed)}), "inputs")


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(PLAUSIBLE)),
    start=st.integers(0, len(DAYS) - 1),
    length=st.integers(1, 120),
)
def test_a_gap_is_named_with_its_exact_length_and_dates(name: str, start: int, length: int) -> None:
    values = _typical(name, 0)
    stop = min(start + length, len(DAYS))
    values[start:stop] = np.nan
    with pytest.raises(PredictorDataError) as info:
        check_predictors(_dataset(**{name: values}), "inputs of X")
    message = str(info.value)
    n = stop - start
    assert message.startswith(f"inputs of X: {name}@shelf: {n} missing days in 1 gap(s)")
    assert f"the longest {n} days {DAYS[start].date()}..{DAYS[stop - 1].date()}" in message
    assert "corridor" not in message  # the intact region is not blamed


@pytest.mark.parametrize(
    ("name", "transform", "hint"),
    [
        ("tas", lambda k: k - 273.15, "values look like °C labelled K"),
        ("tas", lambda k: k + 273.15, "°C converted twice"),
        ("tos", lambda c: c + 273.15, "values look like K labelled °C"),
        ("psl", lambda pa: pa / 100.0, "values look like hPa labelled Pa"),
        ("hurs", lambda p: p / 100.0, "values look like a fraction labelled %"),
        ("pr", lambda f: f * 86400.0, "values look like mm/day or m/day labelled kg m-2 s-1"),
    ],
)
def test_a_units_attribute_that_lies_is_named(name, transform, hint) -> None:
    values = transform(_typical(name, 1))
    with pytest.raises(PredictorDataError, match=hint):
        check_predictors(_dataset(**{name: values}), "inputs")


def test_infinite_values_and_many_problems_are_counted() -> None:
    tas = _typical("tas", 2)
    tas[[5, 50, 300]] = np.inf
    psl = _typical("psl", 3)
    psl[100] = -np.inf
    with pytest.raises(PredictorDataError) as info:
        check_predictors(_dataset(tas=tas, psl=psl), "inputs")
    message = str(info.value)
    assert f"tas@shelf: 3 infinite values, the first on {DAYS[5].date()}" in message
    assert f"psl@shelf: 1 infinite values, the first on {DAYS[100].date()}" in message
    # one problem per (variable, region): beyond MAX_LISTED, the rest is counted
    many = {f"v{i}": np.full(len(DAYS), np.nan) for i in range(MAX_LISTED + 3)}
    with pytest.raises(PredictorDataError, match=r"; and \d+ more$"):
        check_predictors(_dataset(**many), "inputs")


def test_only_the_pairs_asked_for_are_checked() -> None:
    tas = _typical("tas", 4)
    tas[10:200] = np.nan
    data = _dataset(tas=tas, psl=_typical("psl", 5))
    check_predictors(data, "inputs", [("psl", "shelf"), ("tas", "corridor"), ("absent", "x")])
    with pytest.raises(PredictorDataError, match="tas@shelf"):
        check_predictors(data, "inputs", [("tas", "shelf")])
