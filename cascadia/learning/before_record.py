"""The deep background before the mooring record, from an ocean analysis anchored on the record.

Why: hindcasts reach back to 1900 and the mooring starts in 1993. Holding the record's
first background over the decades before gives every hindcast day the record's warmth
(the intermediate water warmed over the 20th century). An ocean objective analysis
(:mod:`cascadia.sources.ocean_analysis`) knows the water mass's slow changes there,
but a 1-degree analysis and a mooring in a canyon differ in level (analysis bias, the
background being a high running quantile, not a mean). So the analysis gives the
**changes** and the record the **level**: the analysis is interpolated to days,
averaged over the past ``smooth_days`` (as the record's background looks back one
year), and shifted by its mean difference from the record's background over the
record's first ``anchor_years`` (the delta method, as projections are anchored on a
base period; the decade nearest the hindcasts, so that a later step of the record
does not move the anchor).

What the anchoring is worth is checked on the record alone, never on a truth:
anchored on the later two thirds of those years, how far does the analysis stay from
the record's background over the first third, next to holding the later part's first
value (what ``hold`` does before the record)? Both numbers go into ``targets.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cascadia.sources.ocean_analysis import OceanAnalysisConfig, OceanAnalysisError

__all__ = [
    "BEFORE_RECORD_FILE",
    "DAYS_PER_YEAR",
    "BeforeRecord",
    "anchor_analysis",
    "anchor_offset",
    "record_beside",
    "smoothed_daily",
]

#: The model directory's file of the anchored background before the record.
BEFORE_RECORD_FILE = "background_before_record.csv"

DAYS_PER_YEAR = 365.25


@dataclass
class BeforeRecord:
    """The anchored analysis background and what it was checked against.

    Attributes
    ----------
    background : pandas.DataFrame
        Daily background (°C) before each depth's record, columns ``background_<d>``,
        index ``time``; NaN where the analysis has no value or the record has begun.
    summary : dict
        Per depth: the offset added to the analysis, the days it was anchored on, the step
        between the anchored analysis and the record's background on the record's
        first day, and the record back-test (RMSE of the anchored analysis and of a
        held value over the first third of the overlap).
    """

    background: pd.DataFrame
    summary: dict[str, Any]


def smoothed_daily(monthly: pd.Series, smooth_days: int) -> pd.Series:
    """Monthly values → every day of the months they cover (linear in time between the
    stamps, the first and last month's value held to their month's edges), then the
    trailing mean of ``smooth_days`` (at least half of them present)."""
    monthly = monthly.dropna()
    first = monthly.index[0].normalize().replace(day=1)
    last = monthly.index[-1].normalize() + pd.offsets.MonthEnd(0)
    days = pd.date_range(first, last, freq="D")
    daily = monthly.reindex(monthly.index.union(days)).interpolate("time").reindex(days)
    daily = daily.ffill().bfill()  # only the edges are missing after the interpolation
    return daily.rolling(smooth_days, min_periods=smooth_days // 2).mean()


def record_beside(
    record: pd.DataFrame, depth: float, product: pd.Series, smooth_days: int
) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    """A depth's record background over its observed span, the product smoothed like it
    (:func:`smoothed_daily`), and the two side by side (columns ``record``, ``product``)
    on the days both have."""
    name = f"{depth:g}"
    observed = record[f"observed_{name}"].dropna()
    background = record[f"background_{name}"].loc[observed.index[0] : observed.index[-1]]
    smooth = smoothed_daily(product, smooth_days)
    return background, smooth, pd.DataFrame({"record": background, "product": smooth}).dropna()


def anchor_offset(
    pair: pd.DataFrame,
    span: tuple[pd.Timestamp, pd.Timestamp],
    min_years: float,
    fault: str,
) -> tuple[pd.DataFrame, float]:
    """The days of :func:`record_beside`'s ``pair`` in ``[span[0], span[1])`` and the
    product's offset from the record over them (record minus product, mean).

    Raises :class:`OceanAnalysisError` with ``fault`` (its ``{years}`` replaced by them)
    when they are fewer than ``min_years`` years."""
    anchor = pair[(pair.index >= span[0]) & (pair.index < span[1])]
    years = len(anchor) / DAYS_PER_YEAR
    if years < min_years:
        raise OceanAnalysisError(fault.replace("{years}", f"{years:.1f}"))
    return anchor, float((anchor["record"] - anchor["product"]).mean())


def _rmse(a: pd.Series, b: pd.Series | float) -> float:
    return float(np.sqrt(np.mean(np.asarray(a - b) ** 2)))


def anchor_analysis(
    analysis: pd.DataFrame,
    record: pd.DataFrame,
    depths: Sequence[float],
    cfg: OceanAnalysisConfig,
) -> BeforeRecord:
    """Anchor the analysis' deep temperature on the record's background, depth by depth.

    Parameters
    ----------
    analysis : pandas.DataFrame
        :func:`cascadia.sources.ocean_analysis.deep_temperature`: °C, one column per
        depth, the product's time stamps.
    record : pandas.DataFrame
        Daily ``background_<d>`` and ``observed_<d>`` (``background.csv``), index ``time``.
    depths : sequence of float
        The model's depths.
    cfg : OceanAnalysisConfig
        Smoothing and the overlap the anchoring needs.

    Raises
    ------
    OceanAnalysisError
        The analysis covers less than ``cfg.min_overlap_years`` of the first
        ``cfg.anchor_years`` of a depth's record.
    """
    columns: dict[str, pd.Series] = {}
    summary: dict[str, Any] = {"path": cfg.path, "variable": cfg.variable, "depths": {}}
    for depth in depths:
        name = f"{depth:g}"
        background, smooth, pair = record_beside(record, depth, analysis[depth], cfg.smooth_days)
        first = background.index[0]
        span = (first, first + pd.Timedelta(days=cfg.anchor_years * DAYS_PER_YEAR))
        anchor, offset = anchor_offset(
            pair,
            span,
            cfg.min_overlap_years,
            f"ocean analysis {cfg.path}: it covers {{years}} of the first "
            f"{cfg.anchor_years:g} years of the {name} m record (from {first.date()}); "
            f"anchoring needs {cfg.min_overlap_years:g} (min_overlap_years)",
        )
        anchored = smooth + offset
        columns[f"background_{name}"] = anchored[anchored.index < first]
        test = anchor.iloc[: len(anchor) // 3]
        fit = anchor.iloc[len(anchor) // 3 :]
        fit_offset = float((fit["record"] - fit["product"]).mean())
        step = anchored.get(first, np.nan) - background.iloc[0]
        summary["depths"][name] = {
            "offset": round(offset, 4),
            "anchor_days": [str(anchor.index[0].date()), str(anchor.index[-1].date())],
            "first_day": str(smooth.dropna().index[0].date()),
            "record_first_day": str(first.date()),
            "step_at_record_start": round(float(step), 4) if np.isfinite(step) else None,
            "back_test": {
                "days": [str(test.index[0].date()), str(test.index[-1].date())],
                "rmse_analysis": round(_rmse(test["product"] + fit_offset, test["record"]), 4),
                "rmse_hold": round(_rmse(test["record"], fit["record"].iloc[0]), 4),
            },
        }
    frame = pd.DataFrame(columns)
    frame.index.name = "time"
    return BeforeRecord(background=frame, summary=summary)
