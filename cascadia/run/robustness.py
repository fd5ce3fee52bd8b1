"""Robustness of a period's change across models: sign agreement and significance.

Why: that most models agree on the sign of a change says little if the change is within
each model's own year-to-year noise, or if the agreeing "models" are RCMs of one GCM.
This module applies the IPCC AR6 Atlas "advanced approach" (Cross-Chapter Box Atlas.1)
with xclim:

* ``xclim.ensembles.robustness_fractions`` with test ``ipcc-ar6-c``: a model's change
  (period mean minus baseline mean of its winter series, members averaged) is
  significant when it exceeds ``sqrt(2/20) * 1.645 * sigma``, sigma the standard
  deviation of its linearly detrended baseline winters; fractions of models changing
  significantly, positive, negative and agreeing on the sign (the largest of the
  positive, negative and zero fractions), each model weighted by its family weight;
* ``xclim.ensembles.robustness_categories`` with the AR6 thresholds: *robust signal*
  (>= 66 % significant and >= 80 % agree), *no change or no robust signal* (< 66 %
  significant), *conflicting signal* (>= 66 % significant, < 80 % agree).

IPCC likelihood wording (*likely* >= 66 %, *very likely* >= 90 % probability) is attached
to the sign of the multi-model change only where the signal is robust and the fraction
of families agreeing with that sign is at least the threshold with 90 % confidence
(one-sided Clopper-Pearson bound, the families being the independent draws): all of
three families agreeing is not enough for *likely* (bound 0.46), six are (0.68).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats
from xclim.core.missing import MissingPct
from xclim.ensembles import robustness_categories, robustness_fractions

from cascadia.run.families import family_count, family_weights

LIKELY = 0.66  # IPCC calibrated language: "likely" = 66-100 % probability
VERY_LIKELY = 0.90
LIKELIHOOD_CONFIDENCE = 0.90
TEST = "ipcc-ar6-c"
CATEGORIES: tuple[str, ...] = (
    "robust signal",
    "no change or no robust signal",
    "conflicting signal",
)
LIKELIHOODS: tuple[str, ...] = ("none", "likely", "very likely")
#: Winters a period needs for the significance test (a linear detrending of its baseline).
MIN_PERIOD_WINTERS = 3


def _as_time(series: xr.DataArray, first: int, last: int) -> xr.DataArray:
    """The winters ``first``..``last`` on an annual datetime ``time`` axis (xclim's)."""
    inside = series.sel(winter=slice(first, last))
    years = pd.to_datetime([f"{int(w)}-01-01" for w in inside["winter"].values])
    return inside.rename(winter="time").assign_coords(time=years)


def _lower_bound(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = stats.beta.ppf(1.0 - LIKELIHOOD_CONFIDENCE, k, n - k + 1.0)
    return np.where((k > 0) & (n > 0), bound, 0.0)


def likelihood_bound(agree: xr.DataArray, families: xr.DataArray) -> xr.DataArray:
    """One-sided lower Clopper-Pearson bound (:data:`LIKELIHOOD_CONFIDENCE`) of the
    agreeing fraction, with the number of families as the sample size."""
    n = families.astype(np.float64)
    return xr.apply_ufunc(_lower_bound, agree * n, n)


def _fractions(fractions: xr.Dataset, some: xr.DataArray, names: tuple[str, ...]) -> dict:
    """xclim's fractions, NaN (not 0) where no model has a change."""
    return {n: fractions[n].where(some).drop_attrs() for n in names}


def period_robustness(
    model: xr.DataArray,
    change: xr.DataArray,
    family: xr.DataArray,
    multimodel_change: xr.DataArray,
    periods: tuple[tuple[int, int], ...],
    min_coverage: float,
) -> dict[str, xr.DataArray]:
    """Robustness of each period's change against the first (baseline) period.

    Parameters
    ----------
    model
        Each model's winter series, members averaged (experiment, source_id, winter, ...):
        the significance test's input.
    change
        Each model's period change (experiment, source_id, period, ...): its sign, and
        which models count (those with a change).
    family
        The family of each ``source_id``.
    multimodel_change
        The family-weighted multi-model change (experiment, period, ...): the sign the
        likelihood wording is about.

    Returns
    -------
    dict
        ``significant_fraction``, ``agreement``, ``positive_fraction``,
        ``negative_fraction`` (fractions of the family weight), ``robustness``
        (category 1-3 of :data:`CATEGORIES`), ``likelihood`` (0-2 of
        :data:`LIKELIHOODS`) and ``family_count``; (experiment, period, ...), NaN for
        the baseline and where no model has a change. The significance (and so the
        category and likelihood) needs periods of :data:`MIN_PERIOD_WINTERS` winters.
    """
    base_first, base_last = periods[0]
    signs = ("agree", "positive", "negative")
    pieces: dict[str, list[xr.DataArray]] = {n: [] for n in (*signs, "changed", "category")}
    empty = xr.full_like(change.isel(period=0, source_id=0, drop=True), np.nan)
    for index, (first, last) in enumerate(periods):
        delta = change.isel(period=index, drop=True)
        ok = delta.notnull()
        some = ok.any("source_id")
        if index == 0 or not bool(some.any()):
            for n in pieces:
                pieces[n].append(empty)
            continue
        weights = family_weights(ok, family).rename(source_id="realization")
        sign = robustness_fractions(delta.rename(source_id="realization"), weights=weights)
        for n, value in _fractions(sign, some, signs).items():
            pieces[n].append(value)
        if min(last - first, base_last - base_first) + 1 < MIN_PERIOD_WINTERS:
            pieces["changed"].append(empty)
            pieces["category"].append(empty)
            continue
        fut = _as_time(model.where(ok), first, last).rename(source_id="realization")
        ref = _as_time(model.where(ok), base_first, base_last).rename(source_id="realization")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # models without a change: NaN
            # xclim 0.61's frequency parsing under pandas 3 (not ours to fix)
            warnings.filterwarnings("ignore", message="The 'name' property is deprecated")
            tested = robustness_fractions(
                fut,
                ref,
                test=TEST,
                weights=weights,
                invalid=MissingPct(tolerance=1.0 - min_coverage + 1e-9),
            )
        changed = _fractions(tested, some, ("changed",))["changed"]
        pieces["changed"].append(changed)
        category = robustness_categories(changed, agree=pieces["agree"][-1], valid=some)
        category = category.drop_attrs().astype(np.float64)
        pieces["category"].append(category.where(category != 99).where(changed.notnull()))
    labels = [f"{a}-{b}" for a, b in periods]
    period = xr.DataArray(labels, dims="period", coords={"period": labels})
    out = {
        n: xr.concat(v, dim=period, coords="minimal", compat="override", join="outer")
        for n, v in pieces.items()
    }
    valid = change.notnull()
    families = family_count(valid, family).where(valid.any("source_id"))
    agree = out["agree"]
    majority = xr.where(out["positive"] > out["negative"], 1.0, -1.0)
    same_sign = np.sign(multimodel_change) == majority
    bound = likelihood_bound(agree.fillna(0.0), families.fillna(0.0))
    robust = out["category"] == 1
    likelihood = xr.where(
        robust & same_sign & (bound >= VERY_LIKELY),
        2.0,
        xr.where(robust & same_sign & (bound >= LIKELY), 1.0, 0.0),
    ).where(out["category"].notnull())
    return {
        "significant_fraction": out["changed"],
        "agreement": agree,
        "positive_fraction": out["positive"],
        "negative_fraction": out["negative"],
        "robustness": out["category"],
        "likelihood": likelihood,
        "family_count": families,
    }
