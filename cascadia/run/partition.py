"""Partition of the projection variance into scenario, model, internal and emulator parts.

Why: a projected change of cascading is only as certain as the sum of its sources of
spread, and each calls for a different remedy (more scenarios, more models, more
members, a better emulator). Following Hawkins & Sutton (2009) and Lafferty & Sriver
(2023), per winter *t* and depth, for the change against the baseline period, with
scenarios *e*, models *s* (family weights ``w_s`` normalised to sum 1 within a
scenario, :mod:`cascadia.run.families`), members *m* and deep-ensemble members *k*
(values ``y_esmk(t)``)::

    xbar_esm(t) = mean_k y_esmk(t)                         member (deep-ensemble mean)
    X_es(t)     = mean_m xbar_esm(t)                        model (members averaged)
    F_es(t)     = P4[X_es](t) - mean_{t in baseline} P4[X_es]   smoothed change
    G_e(t)      = sum_s w_s F_es(t)                         multi-model forced response
    S(t) = var_e G_e(t)                                     scenario
    M(t) = mean_e sum_s w_s (F_es(t) - G_e(t))^2            model (structural)
    I(t) = R11[ mean_e sum_s w_s mean_m (xbar_esm(t) - P4[X_es](t))^2 ]   internal
    E(t) = R11[ mean_e sum_s w_s mean_m var_k y_esmk(t) ]   emulator (deep ensemble)
    T(t) = S + M + I + E

P4 is the least-squares polynomial (degree 4) over the model's winters, R11 a centred
11-winter running mean; variances are population variances. Without smoothing
(``degree=None``, ``window=1``) the four parts are an exact law-of-total-variance split
of the weighted variance of all ``y`` minus their model's baseline mean (each scenario
weighing the same, each family within it the same, then each member, then each
deep-ensemble member). The scenario and model terms are those of
``xclim.ensembles.hawkins_sutton`` (weighted variance over models averaged over
scenarios; variance over scenarios of the weighted model mean); it is not called
directly because it refuses ensembles in which a model lacks a scenario (CORDEX rarely
runs all), estimates internal variability from decadal residuals after a fixed year
2000 instead of from members, and has no emulator level (docs/spread.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import xarray as xr

from cascadia.run.families import family_weights

PARTS: tuple[str, ...] = ("scenario", "model", "internal", "emulator", "total")
DEGREE = 4
WINDOW = 11


@dataclass(frozen=True)
class PartitionOptions:
    """How the forced response is smoothed and the variance terms are averaged."""

    baseline: tuple[int, int]
    degree: int | None = DEGREE  # None: no smoothing (the raw model means)
    window: int = WINDOW  # centred running mean of the internal and emulator terms
    min_fit_winters: int = 10
    min_baseline_coverage: float = 0.8

    def __post_init__(self) -> None:
        if self.degree is not None and self.degree < 0:
            raise ValueError(f"partition degree must be >= 0 or None, got {self.degree}")
        if self.window < 1:
            raise ValueError(f"partition window must be >= 1 winters, got {self.window}")
        if self.degree is not None and self.min_fit_winters < self.degree + 1:
            raise ValueError(
                f"a degree-{self.degree} fit needs at least {self.degree + 1} winters, "
                f"min_fit_winters is {self.min_fit_winters}"
            )


@contextmanager
def _quiet() -> Iterator[None]:
    """Winters without data (before a run starts) give NaN, not warnings."""
    with warnings.catch_warnings():
        for message in ("Mean of empty slice", "Degrees of freedom <= 0", "invalid value"):
            warnings.filterwarnings("ignore", message=message, category=RuntimeWarning)
        with np.errstate(invalid="ignore", divide="ignore"):
            yield


def _fit(series: np.ndarray, winters: np.ndarray, degree: int, need: int) -> np.ndarray:
    """Least-squares polynomial of ``degree`` through the finite values, evaluated on the
    winters between the first and last of them (NaN outside: no extrapolation)."""
    ok = np.isfinite(series)
    out = np.full(series.shape, np.nan)
    if ok.sum() < need:
        return out
    x = winters[ok].astype(np.float64)
    poly = np.polynomial.Polynomial.fit(x, series[ok], degree)  # scaled domain: stable
    inside = (winters >= x.min()) & (winters <= x.max())
    out[inside] = poly(winters[inside].astype(np.float64))
    return out


def smooth(model: xr.DataArray, options: PartitionOptions) -> xr.DataArray:
    """Each model's smoothed series (polynomial over ``winter``); the series itself when
    ``options.degree`` is None."""
    if options.degree is None:
        return model
    winters = np.asarray(model["winter"].values)
    return xr.apply_ufunc(
        _fit,
        model,
        input_core_dims=[["winter"]],
        output_core_dims=[["winter"]],
        vectorize=True,
        kwargs={"winters": winters, "degree": options.degree, "need": options.min_fit_winters},
    ).transpose(*model.dims)


def _baseline_mean(series: xr.DataArray, options: PartitionOptions) -> xr.DataArray:
    first, last = options.baseline
    winter = series["winter"]
    inside = series.where((winter >= first) & (winter <= last))
    need = options.min_baseline_coverage * (last - first + 1) - 1e-9
    return inside.mean("winter").where(inside.count("winter") >= need)


def _across(values: xr.DataArray, weights: xr.DataArray) -> xr.DataArray:
    """Family-weighted mean over models, then the mean over scenarios."""
    return values.weighted(weights).mean("source_id").mean("experiment")


def _running(values: xr.DataArray, window: int) -> xr.DataArray:
    if window == 1:
        return values
    return values.rolling(winter=window, center=True, min_periods=window // 2 + 1).mean()


def variance_partition(
    samples: xr.DataArray, family: xr.DataArray, options: PartitionOptions, *, emulator: bool
) -> dict[str, xr.DataArray]:
    """The parts of :data:`PARTS` (winter, ...) and the forced responses behind them.

    Parameters
    ----------
    samples
        Values with dims (experiment, source_id, member_id, winter, ensemble, ...): the
        scenarios only (each joined with its historical run), one value per
        deep-ensemble member (``ensemble`` of size 1 without member values).
    family
        The family of each ``source_id``.
    emulator
        Whether ``ensemble`` holds the deep-ensemble members; if not, the emulator part
        is NaN (not available) and the total is the sum of the other three.

    Returns
    -------
    dict
        ``scenario``, ``model``, ``internal``, ``emulator``, ``total`` (winter, ...);
        ``forced_response`` G (experiment, winter, ...); ``model_forced_response`` F
        (experiment, source_id, winter, ...); ``model_internal_variance`` (source_id,
        ...: the mean over scenarios and baseline winters of its members' squared
        departures from its smoothed series) and ``internal_variance`` (...: the internal
        part averaged over the baseline winters), the noise of the time of emergence.
    """
    with _quiet():
        member = samples.mean("ensemble")
        model = member.mean("member_id")
        fitted = smooth(model, options)
        change = fitted - _baseline_mean(fitted, options)
        weights = family_weights(change.notnull(), family)
        forced = change.weighted(weights).mean("source_id")
        scenario = forced.var("experiment")
        model_part = _across((change - forced) ** 2, weights)
        departure = ((member - fitted) ** 2).mean("member_id")
        internal_raw = _across(departure.where(change.notnull()), weights)
        internal = _running(internal_raw, options.window)
        if emulator:
            spread = samples.var("ensemble").mean("member_id").where(change.notnull())
            emulator_part = _running(_across(spread, weights), options.window)
            total = scenario + model_part + internal + emulator_part
        else:
            emulator_part = xr.full_like(internal, np.nan)
            total = scenario + model_part + internal
        first, last = options.baseline
        base = (departure["winter"] >= first) & (departure["winter"] <= last)
        model_internal = departure.where(base & change.notnull()).mean(("experiment", "winter"))
        internal_base = internal.where(base).mean("winter")
    return {
        "scenario": scenario,
        "model": model_part,
        "internal": internal,
        "emulator": emulator_part,
        "total": total,
        "forced_response": forced,
        "model_forced_response": change,
        "model_internal_variance": model_internal,
        "internal_variance": internal_base,
    }
