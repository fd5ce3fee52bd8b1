"""Event days per winter of a daily series, counted as the results store counts them.

Why: the mooring's and the twin truth's event days are set beside the store's
``event_days``; all three must count the same November-April season, with the same
coverage rule and the same scaling to a full season, or their differences would be
bookkeeping, not skill.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr

from cascadia.mooring.events import EventConfig, event_days
from cascadia.run.spread import SEASON_MONTHS, season_days

__all__ = ["observed_winter_event_days", "season_event_days"]


def season_event_days(
    events: npt.ArrayLike, covered: npt.ArrayLike, time: object, min_winter_coverage: float = 0.9
) -> pd.Series:
    """Event days per winter, counted over the November-April season the winter is named by.

    Parameters
    ----------
    events, covered
        Daily flags along ``time``: the day is an event day; the day has a value.
    time
        The days (datetime64 or cftime, any calendar).
    min_winter_coverage
        A winter counts only when this fraction of its standard-calendar season days is
        covered; its count is scaled to the full season (noleap / 360_day calendars lack
        a few days, as in :func:`cascadia.run.spread.combo_winters`).

    Returns
    -------
    pandas.Series
        Event days (days per season, float) indexed by winter (year of its January), NaN
        for under-covered winters.
    """
    time = xr.DataArray(np.asarray(time), dims="time")
    month = time.dt.month.values
    label = (time.dt.year + (time.dt.month >= 11)).values
    season = np.isin(month, SEASON_MONTHS)
    flags = np.asarray(events, dtype=bool) & season
    have = np.asarray(covered, dtype=bool) & season
    counts = pd.Series(flags.astype(float)).groupby(label).sum()
    days = pd.Series(have.astype(float)).groupby(label).sum()
    out = {}
    for winter in counts.index:
        full = season_days(int(winter))
        ok = days[winter] / full >= min_winter_coverage
        out[int(winter)] = float(counts[winter]) * full / days[winter] if ok else np.nan
    return pd.Series(out, dtype=float)


def observed_winter_event_days(
    observed: pd.DataFrame, events: EventConfig, depth: float, min_winter_coverage: float = 0.9
) -> pd.Series:
    """The mooring's event days per winter (November-April) at ``depth``.

    The model's event rule on the observed anomaly against the background the model was
    trained with (``observed_<depth> - background_<depth>`` of ``background.csv``): the
    event days the model learnt to reproduce. Empty without that depth's columns.
    """
    name, background = f"observed_{depth:g}", f"background_{depth:g}"
    if name not in observed or background not in observed:
        return pd.Series(dtype=float)
    anomaly = xr.DataArray(
        (observed[name] - observed[background]).to_numpy(dtype=np.float64),
        dims="time",
        coords={"time": observed.index.values, "depth": depth},
    )
    flags = event_days(anomaly, config=events).values
    return season_event_days(
        flags, np.isfinite(anomaly.values), observed.index.values, min_winter_coverage
    )
