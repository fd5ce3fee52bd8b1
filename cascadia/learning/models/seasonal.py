"""Seasonal encodings: the phase of the year as model input features.

Why: cascading happens from January to early April and the predictors' meaning
changes with the season (a 10 m s⁻¹ northerly in February densifies the shelf,
in August it does not). The models are causal convolutions, recurrences or
attention with relative positions, none of which knows the date; the phase is
given explicitly as two smooth features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr

__all__ = ["N_SEASONAL_FEATURES", "seasonal_features", "year_phase"]

#: Number of columns returned by :func:`seasonal_features`.
N_SEASONAL_FEATURES = 2


def year_phase(time: Any) -> npt.NDArray[np.float64]:
    """Phase of the year in [0, 1) at the middle of each day.

    Parameters
    ----------
    time : array-like
        Daily time stamps: numpy ``datetime64``, a pandas ``DatetimeIndex``, an
        array of cftime dates (any calendar) or an xarray ``DataArray``/index.

    Returns
    -------
    numpy.ndarray
        ``(day_of_year − 0.5) / days_in_year`` (1), so that the same season sits
        at the same phase in ``standard``, ``noleap`` and ``360_day`` calendars.
    """
    da = time if isinstance(time, xr.DataArray) else xr.DataArray(np.asarray(time), dims="time")
    if da.ndim != 1:
        raise ValueError(f"time must be one-dimensional, got shape {da.shape}")
    doy = np.asarray(da.dt.dayofyear.values, dtype=np.float64)
    days = np.asarray(da.dt.days_in_year.values, dtype=np.float64)
    return (doy - 0.5) / days


def seasonal_features(time: Any) -> npt.NDArray[np.float32]:
    """Sine and cosine of the day of the year.

    Parameters
    ----------
    time : array-like
        Daily time stamps (see :func:`year_phase`), length ``T``.

    Returns
    -------
    numpy.ndarray
        Shape ``(T, 2)``, float32: ``sin(2πφ)`` and ``cos(2πφ)`` (1), φ the
        phase of the year. Continuous across 31 December → 1 January, unlike the
        raw day of the year.
    """
    angle = 2.0 * np.pi * year_phase(time)
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1).astype(np.float32)
