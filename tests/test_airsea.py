"""The model side's bulk air–sea fluxes give the magnitudes the Mediterranean literature reports."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cascadia.learning.airsea import (
    climatological_sst,
    kondo_coefficients,
    net_longwave,
    surface_fluxes,
)


def _day(date: str, **values: float) -> tuple[pd.DatetimeIndex, dict[str, np.ndarray]]:
    return pd.date_range(date, periods=1), {k: np.array([v]) for k, v in values.items()}


def test_a_mistral_day_cools_the_gulf_of_lion_by_several_hundred_watts() -> None:
    # 14 m/s of dry 5 degC air over a 13 degC sea in February, few clouds: observed
    # 500-800 W m-2 of net loss (Mertens & Schott 1998; Estournel et al. 2016).
    time, mistral = _day("2012-02-05", tas=278.15, hurs=55.0, psl=101_800.0, pr=0.0,
                         sfcWind=14.0, clt=20.0)  # fmt: skip
    flux = surface_fluxes(mistral, time, sst=np.array([13.0]))
    assert -900.0 < flux.q_net[0] < -400.0
    assert flux.latent[0] < flux.sensible[0] < -100.0  # evaporation dominates
    assert flux.buoyancy_loss[0] > 0.0
    # A calm, humid, mild day loses an order of magnitude less.
    time, calm = _day("2012-02-05", tas=285.15, hurs=85.0, psl=101_800.0, pr=0.0,
                      sfcWind=3.0, clt=60.0)  # fmt: skip
    assert -200.0 < surface_fluxes(calm, time, sst=np.array([13.0])).q_net[0] < 0.0


def test_bignami_longwave_is_in_the_mediterranean_range() -> None:
    # Bignami et al. (1995): net long-wave loss of the basin, -50 to -100 W m-2 in
    # typical humid, partly cloudy conditions; clouds and humidity reduce it.
    typical = net_longwave(
        np.array([288.15]), np.array([286.15]), np.array([12.0]), np.array([0.5])
    )[0]
    assert -100.0 < typical < -50.0
    clear_dry = net_longwave(
        np.array([288.15]), np.array([283.15]), np.array([6.0]), np.array([0.0])
    )[0]
    overcast = net_longwave(
        np.array([288.15]), np.array([286.15]), np.array([12.0]), np.array([1.0])
    )[0]
    assert clear_dry < typical < overcast < 0.0


def test_kondo_coefficients_grow_with_instability_and_vanish_when_very_stable() -> None:
    wind = np.array([8.0, 8.0, 8.0])
    c_h, c_e = kondo_coefficients(wind, np.array([13.0, 13.0, 13.0]), np.array([13.0, 5.0, 30.0]))
    # Neutral Kondo values at 8 m s-1: ~1.2e-3 (heat) and ~1.26e-3 (vapour).
    assert 1.1e-3 < c_h[0] < 1.3e-3 and 1.15e-3 < c_e[0] < 1.35e-3
    assert c_h[1] > c_h[0] > c_h[2] >= 0.0  # cold air over warm sea: unstable


def test_shortwave_follows_season_and_clouds() -> None:
    base = {"tas": 288.15, "hurs": 70.0, "psl": 101_500.0, "pr": 0.0, "sfcWind": 5.0}
    summer_t, summer = _day("2010-07-01", **base, clt=10.0)
    winter_t, winter = _day("2010-12-21", **base, clt=10.0)
    cloudy_t, cloudy = _day("2010-07-01", **base, clt=90.0)
    sw_summer = surface_fluxes(summer, summer_t).shortwave[0]
    # Clear-sky midsummer at 42.5 N: ~300 W m-2 daily mean at the surface; winter ~80.
    assert 250.0 < sw_summer < 360.0
    assert 50.0 < surface_fluxes(winter, winter_t).shortwave[0] < 120.0
    assert surface_fluxes(cloudy, cloudy_t).shortwave[0] < 0.6 * sw_summer


def test_the_sst_climatology_has_the_shelf_seasonal_cycle() -> None:
    sst = climatological_sst(pd.date_range("2001-01-01", "2001-12-31", freq="D"))
    assert 12.5 < sst.min() < 13.5 and 22.0 < sst.max() < 23.5
    assert 30 < int(np.argmin(sst)) < 75 and 200 < int(np.argmax(sst)) < 240
