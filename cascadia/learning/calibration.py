"""Post-hoc calibration of a deep ensemble on winters its members did not learn from.

Two numbers per depth, fitted once after training on the validation winters or,
for a cross-fitted ensemble, the out-of-fold forecasts (never the test winters;
:mod:`cascadia.learning.folds`), against held-out anomalies
(:func:`cascadia.mooring.targets.held_out_targets`), and stored in the model directory
(``calibration.json``), so every later prediction — evaluation, hindcasts,
projections — uses the same ones:

* ``std_scale`` — a factor on every member's σ that minimises the validation
  CRPS of the mixture (variance recalibration, Kuleshov et al. 2018). Deep
  ensembles trained on ~20 winters are overconfident on the rare cascading days
  and too wide on quiet ones; a single factor fixes the average, not the shape.
* ``event_probability_threshold`` — the predictive probability
  ``P(anomaly < −threshold)`` above which a day is flagged as cascading
  (before the duration/gap rule of :mod:`cascadia.mooring.events`). Why not the mean
  anomaly: the mixture mean of an uncertain cascade is shrunk towards zero and
  rarely crosses the threshold even when the ensemble gives it a 30 % chance.
  The level is chosen by one of two rules (:class:`CalibrationConfig`):
  ``frequency`` (default) — the level whose flagged days number the observed
  event days on the calibration winters (frequency bias 1); ``csi`` — the
  level with the best critical success index. Why frequency: what the results
  store and every projection report are event-day *counts* per winter, and a
  count needs an unbiased rule; the CSI optimum sits on a flat, noisy curve (on
  the demo world two draws of the same job chose 0.35 and 0.60 and flagged
  20–30 % fewer days than observed), the frequency match moves little.

A level is the level of the forecasts it was fitted on. A cross-fitted ensemble with one
member per fold has only single-member out-of-fold forecasts, so its level is a single
member's (``level_fitted_members`` 1): a run then counts each member's event days at that
level and averages them (:attr:`Calibration.counts_members`), the count the calibration
made unbiased. Thresholding the five-member mixture at the same level would count
differently wherever the members disagree — the union of their cascades at a low level,
their intersection at a high one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import xarray as xr
from pydantic import BaseModel, ConfigDict
from scipy.stats import norm

from cascadia.learning.metrics import crps_mixture, csi
from cascadia.mooring.events import EventConfig, events_from_flags

__all__ = [
    "CALIBRATION_FILE",
    "Calibration",
    "CalibrationConfig",
    "exceedance_probability",
    "fit_calibration",
    "fit_probability_thresholds",
    "member_probability_events",
    "probability_events",
]

CALIBRATION_FILE = "calibration.json"
STD_SCALES = np.round(np.arange(0.5, 3.001, 0.05), 2)
PROBABILITY_THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)
FloatArray = npt.NDArray[np.float64]
EventLevelRule = Literal["frequency", "csi"]


class CalibrationConfig(BaseModel):
    """How a training job calibrates (section ``calibration``).

    Attributes
    ----------
    event_level
        Rule that picks the event-probability level (module docstring).
    """

    model_config = ConfigDict(extra="forbid")

    event_level: EventLevelRule = "frequency"


@dataclass(frozen=True)
class Calibration:
    """Per-depth σ factors, event thresholds (°C) and probability thresholds."""

    depths: tuple[float, ...]
    std_scale: tuple[float, ...]
    anomaly_threshold: tuple[float, ...]
    event_probability_threshold: tuple[float, ...]
    fitted_on_winters: tuple[int, ...] = ()
    event_level_rule: EventLevelRule = "csi"
    #: Members in each forecast the levels were fitted on: 1 for the out-of-fold forecast
    #: of a cross-fitted ensemble with one member per fold, whose level is then a single
    #: member's (:attr:`counts_members`); ``None`` (older files): the whole mixture.
    level_fitted_members: int | None = None

    @property
    def counts_members(self) -> bool:
        """Whether event days are counted per member and averaged, not on the mixture.

        A level fitted on single members' probabilities is a single member's level:
        applied to the mixture's probability, which averages members that disagree
        out of sample, it flags more days at a low level and fewer at a high one.
        """
        return self.level_fitted_members == 1

    def to_dict(self) -> dict[str, Any]:
        def keyed(values: Sequence[float]) -> dict[str, float]:
            return {f"{d:g}": float(v) for d, v in zip(self.depths, values, strict=True)}

        return {
            "std_scale": keyed(self.std_scale),
            "anomaly_threshold": keyed(self.anomaly_threshold),
            "event_probability_threshold": keyed(self.event_probability_threshold),
            "fitted_on_winters": list(self.fitted_on_winters),
            "event_level_rule": self.event_level_rule,
            "level_fitted_members": self.level_fitted_members,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        depths = tuple(float(k) for k in data["std_scale"])

        def values(key: str) -> tuple[float, ...]:
            return tuple(float(data[key][f"{d:g}"]) for d in depths)

        return cls(
            depths,
            values("std_scale"),
            values("anomaly_threshold"),
            values("event_probability_threshold"),
            tuple(int(w) for w in data.get("fitted_on_winters", [])),
            data.get("event_level_rule", "csi"),  # older files: the CSI rule
            data.get("level_fitted_members"),  # older files: the mixture
        )

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CALIBRATION_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Calibration | None:
        """The model directory's calibration, or None when it has none."""
        path = Path(directory) / CALIBRATION_FILE
        if not path.is_file():
            return None
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


def exceedance_probability(
    member_mean: npt.ArrayLike, member_std: npt.ArrayLike, thresholds: Sequence[float]
) -> FloatArray:
    """``P(anomaly < −threshold)`` of an equal-weight Gaussian mixture.

    ``member_mean``/``member_std`` are ``(member, …, depth)``; the result drops the
    member axis.
    """
    mu = np.asarray(member_mean, dtype=np.float64)
    sigma = np.asarray(member_std, dtype=np.float64)
    thr = np.asarray(thresholds, dtype=np.float64)
    return norm.cdf((-thr - mu) / sigma).mean(axis=0)


def probability_events(
    probability: npt.ArrayLike,
    time: Any,
    depths: Sequence[float],
    probability_thresholds: Sequence[float],
    config: EventConfig,
) -> npt.NDArray[np.bool_]:
    """Event days ``(time, depth)``: probability ≥ its threshold, then the duration rule."""
    prob = np.asarray(probability, dtype=np.float64)
    flags = xr.DataArray(
        prob >= np.asarray(probability_thresholds, dtype=np.float64),
        dims=("time", "depth"),
        coords={"time": np.asarray(time), "depth": list(depths)},
    )
    return np.asarray(events_from_flags(flags, config=config).values, dtype=bool)


def member_probability_events(
    member_mean: npt.ArrayLike,
    member_std: npt.ArrayLike,
    time: Any,
    depths: Sequence[float],
    calibration: Calibration,
    config: EventConfig,
) -> npt.NDArray[np.bool_]:
    """Each member's event days ``(member, time, depth)`` at the calibration's level.

    A member's own (calibrated) Gaussian gives its ``P(anomaly < −threshold)``; the
    ensemble's level and the duration rule flag its days. Where the level is a single
    member's (:attr:`Calibration.counts_members`) these are the days whose mean count a
    run stores and training scores.
    """
    return np.stack(
        [
            probability_events(
                exceedance_probability(mu[None], sd[None], calibration.anomaly_threshold),
                time,
                depths,
                calibration.event_probability_threshold,
                config,
            )
            for mu, sd in zip(np.asarray(member_mean), np.asarray(member_std), strict=True)
        ]
    )


def _best_scale(mu: FloatArray, sigma: FloatArray, y: FloatArray) -> float:
    scores = [crps_mixture(y, mu, sigma * s, member_axis=0) for s in STD_SCALES]
    return float(STD_SCALES[int(np.nanargmin(scores))])


def fit_probability_thresholds(
    probability: npt.ArrayLike,
    observed_events: npt.ArrayLike,
    validation: npt.ArrayLike,
    time: Any,
    depths: Sequence[float],
    config: EventConfig,
    rule: EventLevelRule = "frequency",
) -> tuple[float, ...]:
    """Per depth, the probability threshold chosen by ``rule`` on the validation days.

    ``frequency``: the threshold whose flagged validation days (after the
    duration rule, on days with an observation) come closest to the observed
    event days; ``csi``: the best critical success index. Ties go to the highest
    threshold (the fewest false alarms); a depth without any validation event
    keeps 0.5.
    """
    prob = np.asarray(probability, dtype=np.float64)
    obs_events = np.asarray(observed_events, dtype=np.float64)
    val = np.asarray(validation, dtype=bool)
    chosen = []
    for j in range(len(depths)):
        observed = np.where(val, obs_events[:, j], np.nan)
        if not np.nansum(observed) > 0:
            chosen.append(0.5)
            continue
        n_observed = np.nansum(observed)
        scores = []
        for p in PROBABILITY_THRESHOLDS:
            per_depth = np.full(len(depths), 2.0)  # > 1: other depths flag nothing
            per_depth[j] = p
            predicted = probability_events(prob, time, depths, per_depth, config)[:, j]
            if rule == "csi":
                scores.append(csi(observed, np.where(val, predicted, np.nan)))
            else:
                n_flagged = np.sum(predicted[np.isfinite(observed)])
                scores.append(-abs(n_flagged - n_observed))
        ranked = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
        best = len(ranked) - 1 - int(np.argmax(ranked[::-1]))
        chosen.append(float(PROBABILITY_THRESHOLDS[best]))
    return tuple(chosen)


def fit_calibration(
    member_mean: npt.ArrayLike,
    member_std: npt.ArrayLike,
    anomaly: npt.ArrayLike,
    observed_events: npt.ArrayLike,
    validation: npt.ArrayLike,
    time: Any,
    depths: Sequence[float],
    config: EventConfig,
    winters: Sequence[int] = (),
    rule: EventLevelRule = "frequency",
) -> Calibration:
    """Fit σ factors and event-probability thresholds on validation days.

    Parameters
    ----------
    member_mean, member_std : array-like
        ``(member, time, depth)`` uncalibrated member Gaussians (°C anomaly).
    anomaly : array-like
        ``(time, depth)`` observed anomaly (NaN where missing).
    observed_events : array-like
        ``(time, depth)`` observed event days (1/0, NaN unknown).
    validation : array-like
        ``(time,)`` validation days.
    time, depths, config
        Axis, depths (m) and the event definition.
    winters : sequence of int
        Validation winters (recorded).
    rule : {"frequency", "csi"}
        Rule of the event-probability level (:func:`fit_probability_thresholds`).
    """
    mu = np.asarray(member_mean, dtype=np.float64)
    sigma = np.asarray(member_std, dtype=np.float64)
    y = np.asarray(anomaly, dtype=np.float64)
    obs_events = np.asarray(observed_events, dtype=np.float64)
    val = np.asarray(validation, dtype=bool)
    thresholds = [config.threshold_for(d) for d in depths]
    scales = []
    for j in range(len(depths)):
        use = val & np.isfinite(y[:, j])
        scales.append(_best_scale(mu[:, use, j], sigma[:, use, j], y[use, j]) if use.any() else 1.0)
    prob = exceedance_probability(mu, sigma * np.asarray(scales), thresholds)
    p_thresholds = fit_probability_thresholds(prob, obs_events, val, time, depths, config, rule)
    return Calibration(
        tuple(float(d) for d in depths),
        tuple(scales),
        tuple(float(t) for t in thresholds),
        tuple(p_thresholds),
        tuple(int(w) for w in winters),
        rule,
        int(mu.shape[0]),
    )
