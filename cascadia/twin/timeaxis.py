"""Daily time axes in any CF calendar, with the phase of the year the physics needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr


@dataclass(frozen=True)
class DayAxis:
    """Days from 1 January ``start`` to 31 December ``end`` in ``calendar``.

    ``phase`` is the fraction of the year elapsed at noon of each day (0-1), so a
    360-day year and a 365-day year put the same season at the same phase: a
    calendar changes the day count, never the season.
    """

    time: pd.DatetimeIndex | xr.CFTimeIndex
    year: np.ndarray
    phase: np.ndarray
    calendar: str

    @property
    def size(self) -> int:
        return len(self.time)

    def winter_of_day(self) -> np.ndarray:
        """Winter label of each day: Nov-Dec belong to the next year's winter."""
        return self.year + (self.phase > 10 / 12).astype(int)


def day_axis(start: int, end: int, calendar: str = "standard") -> DayAxis:
    """Build a :class:`DayAxis` from year ``start`` to year ``end`` inclusive."""
    last_day = 30 if calendar == "360_day" else 31
    use_cftime = calendar != "standard"
    time = xr.date_range(
        f"{start:04d}-01-01",
        f"{end:04d}-12-{last_day}",
        freq="D",
        calendar=calendar,
        use_cftime=use_cftime,
    )
    year = np.asarray(time.year)
    doy = xr.DataArray(time, dims="time").dt.dayofyear.values
    days_in_year = np.asarray(
        [_days_in_year(int(y), calendar) for y in range(start, end + 1)], dtype=float
    )[year - start]
    phase = (doy - 0.5) / days_in_year
    return DayAxis(time=time, year=year, phase=phase, calendar=calendar)


def _days_in_year(year: int, calendar: str) -> int:
    if calendar == "360_day":
        return 360
    if calendar in ("noleap", "365_day"):
        return 365
    leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
    return 366 if leap else 365


def concat_axes(first: DayAxis, second: DayAxis) -> DayAxis:
    """Join a historical axis and its scenario continuation (same calendar)."""
    if first.calendar != second.calendar:
        raise ValueError("cannot join day axes of different calendars")
    return DayAxis(
        time=first.time.append(second.time),
        year=np.concatenate([first.year, second.year]),
        phase=np.concatenate([first.phase, second.phase]),
        calendar=first.calendar,
    )
