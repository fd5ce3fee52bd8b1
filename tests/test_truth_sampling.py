"""How the projected change moves with the winters drawn: the paired winter bootstrap of the
truth comparison (cascadia.report.truth.winter_sampling, cascadia.run.spread)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from cascadia.report.truth import winter_sampling
from cascadia.run.spread import SpreadOptions, multimodel_change, period_changes, winters_resampled

OPTIONS = SpreadOptions(periods=((1993, 2022), (2080, 2100)))
WINTERS = np.arange(1985, 2101)


def _cube(seed: int) -> xr.DataArray:
    """Event days per winter of 3 models x 2 members, one member of C absent."""
    rng = np.random.default_rng(seed)
    days = rng.poisson(8.0, (1, 3, 2, WINTERS.size)).astype(float)
    days[0, 2, 1] = np.nan
    return xr.DataArray(
        days,
        dims=("experiment", "source_id", "member_id", "winter"),
        coords={
            "experiment": ["ssp585"],
            "source_id": ["A", "B", "C"],
            "member_id": ["r1", "r2"],
            "winter": WINTERS,
        },
    )


def test_the_multimodel_change_is_the_one_the_store_reports() -> None:
    cube = _cube(1)
    xr.testing.assert_identical(
        multimodel_change(cube, OPTIONS)[2],
        period_changes(cube, OPTIONS)["period_multimodel_change"],
    )


def test_winters_are_drawn_inside_their_own_period() -> None:
    years = xr.broadcast(_cube(1), _cube(1)["winter"].astype(float))[1]
    drawn = winters_resampled(years, OPTIONS, draws=50, seed=3)
    assert drawn.sizes["resample"] == 50
    base = drawn.sel(winter=slice(1993, 2022))
    future = drawn.sel(winter=slice(2080, 2100))
    assert base.sizes["winter"] == 30 and future.sizes["winter"] == 21
    assert bool(((base >= 1993) & (base <= 2022)).all())  # each value comes from its period
    assert bool(((future >= 2080) & (future <= 2100)).all())
    assert base.isel(resample=0, experiment=0, source_id=0, member_id=0).to_series().nunique() < 30


def test_a_run_off_by_two_days_in_the_future_is_off_by_two_in_every_draw() -> None:
    truth = _cube(2)
    run = truth + xr.where(truth["winter"] >= 2080, 2.0, 0.0)
    out = winter_sampling(run, truth, OPTIONS, draws=400)["ssp585"]
    assert out["draws"] == 400
    assert out["error_95"] == pytest.approx([2.0, 2.0], abs=1e-9)  # paired: the weather cancels
    low, high = out["truth_change_95"]
    point = float(multimodel_change(truth, OPTIONS)[2].sel(period="2080-2100").item())
    assert low < point < high and high - low > 1.0  # 51 Poisson winters move the change
    assert out["run_change_95"] == pytest.approx([low + 2.0, high + 2.0], abs=1e-9)
    # a truth change near zero: +2 days is rarely within 30 % of it
    assert 0.0 <= out["within_30_percent"] < 0.5
