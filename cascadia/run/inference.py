"""A trained model directory applied to one combination's canonical daily predictors.

:class:`TrainedModel` gathers what a prediction needs from a model directory
(docs/training.md, "The model directory"): the deep ensemble, the feature recipe
(``features.json``), the background the anomalies are added to (``background.csv``
and its treatment in ``targets.json``) and the event rule (``job.yaml``'s
``events``). :meth:`TrainedModel.predict` turns a combination's ``(time, region)``
predictors into the results store's per-combination variables
(:data:`cascadia.run.store.RESULT_VARS`).

Inference runs the sequence models over the whole series in one pass (or in long
segments with an exact warm-up, :func:`cascadia.learning.models.predict_series`), never a
per-day sliding window. A projection scenario starts where its historical run ends,
so the last ``context_days`` of that run can be prepended: the recurrent state and
the winter integrals of the physics features then start warm, and the first winter
of the scenario is not a cold start. Outputs cover the combination's own days only.

Workers load a model once per process (:func:`cached_model`), keyed by directory and
checksum, so a model is never shipped in a task graph.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cascadia.learning.before_record import BEFORE_RECORD_FILE
from cascadia.learning.calibration import (
    Calibration,
    member_probability_events,
    probability_events,
)
from cascadia.learning.device import resolve_device
from cascadia.learning.ensemble import DEFAULT_QUANTILES, DeepEnsemble, EnsemblePrediction
from cascadia.learning.evaluation import forecast_events
from cascadia.learning.features import (
    FEATURES_FILE,
    FeatureSpec,
    input_series,
    load_feature_spec,
    model_features,
)
from cascadia.mooring.events import EventConfig, winter_labels, winter_statistics
from cascadia.mooring.targets import BackgroundConfig, TargetError, extend_background
from cascadia.run.store import ANALYSIS_KIND, MODEL_OCEAN_KIND, OOD_Z, SEASON_MONTHS
from cascadia.sources.predictors.plausibility import check_predictors

__all__ = [
    "InferenceConfig",
    "InferenceError",
    "TrainedModel",
    "cached_model",
    "load_count",
    "model_checksum",
    "predicted_event_days",
]

#: Files of a model directory that change its predictions (with every checkpoint).
_PREDICTION_FILES = ("normalisation.json", FEATURES_FILE, "background.csv")
#: Files that change them when present (post-hoc calibration of the ensemble).
_OPTIONAL_PREDICTION_FILES = ("calibration.json",)


class InferenceError(ValueError):
    """A model directory or a combination's predictors cannot be used for a prediction."""


class InferenceConfig(BaseModel):
    """How a model is run over a combination (part of every combination's fingerprint).

    Attributes
    ----------
    segment_days
        Days per inference segment (``None``: the whole series in one pass). Bounds
        memory on very long series; exact for recurrent models (state carried).
    warmup_days
        Warm-up re-run before each segment of a stateless model (``None``: exact).
    context_days
        Days of a projection's historical run prepended to each of its scenarios
        (0: none). Two years cover the lookback of the recurrent state and the
        preceding summer that the stratification feature integrates.
    member_series
        Store each member's daily temperature (``temperature_member``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    segment_days: int | None = Field(None, ge=1)
    warmup_days: int | None = Field(None, ge=0)
    context_days: int = Field(730, ge=0)
    member_series: bool = True


def predicted_event_days(
    prediction: EnsemblePrediction,
    time: Any,
    depths: Sequence[float],
    events_cfg: EventConfig,
    calibration: Calibration | None,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Event days ``(time, depth)`` of the ensemble and ``(member, time, depth)`` of each member.

    The one place the results take their event rule from, the rule training scores
    the ensemble with: with a calibration, a day is flagged when the (calibrated)
    probability of an anomaly below the threshold reaches the validation-fitted
    level, then the duration/gap rule applies (members: their own Gaussian, the
    ensemble's level; where that level is a single member's, a run's winter counts
    are the members' mean, :meth:`TrainedModel.predict`). A model directory without a
    calibration (older models) falls back to the mixture-mean anomaly against the
    threshold.
    """
    if calibration is None:
        mean = forecast_events(np.asarray(prediction.mean), time, depths, events_cfg)
        members = [forecast_events(m, time, depths, events_cfg) for m in prediction.member_mean]
        return mean, np.stack(members)
    levels = calibration.event_probability_threshold
    mean = probability_events(prediction.event_probability, time, depths, levels, events_cfg)
    members = member_probability_events(
        prediction.member_mean, prediction.member_std, time, depths, calibration, events_cfg
    )
    return mean, members


def model_checksum(model_dir: str | Path) -> str:
    """``sha256:…`` of everything in a model directory that shapes its predictions.

    The members' checkpoint SHA-256s (from ``ensemble.json``, in order), the
    normalisation, feature recipe, background and (if any) calibration files, and the
    background treatment and event rule (from ``targets.json`` and ``job.yaml``).
    """
    root = Path(model_dir)
    manifest = _read_json(root / "ensemble.json")
    digest = hashlib.sha256()
    members = sorted(manifest.get("members", []), key=lambda e: e.get("index", 0))
    for entry in members:
        digest.update(str(entry.get("sha256")).encode())
    for name in _PREDICTION_FILES:
        digest.update(_read_bytes(root / name))
    for name in _OPTIONAL_PREDICTION_FILES:
        digest.update(
            name.encode() + ((root / name).read_bytes() if (root / name).is_file() else b"")
        )
    background, events = _treatment(root)
    rules = {"background": background.model_dump(mode="json"), "events": events.model_dump()}
    digest.update(json.dumps(rules, sort_keys=True, default=str).encode())
    return f"sha256:{digest.hexdigest()}"


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise InferenceError(f"{path} is missing: {path.parent} is not a complete model directory")
    return path.read_bytes()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read_bytes(path))
    except json.JSONDecodeError as exc:
        raise InferenceError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InferenceError(f"{path}: expected a JSON object")
    return data


def _treatment(root: Path) -> tuple[BackgroundConfig, EventConfig]:
    """Background treatment (``targets.json``) and event rule (``job.yaml``)."""
    targets = _read_json(root / "targets.json")
    job_path = root / "job.yaml"
    try:
        job = yaml.safe_load(_read_bytes(job_path)) or {}
    except yaml.YAMLError as exc:
        raise InferenceError(f"{job_path} is not valid YAML: {exc}") from None
    try:
        background = BackgroundConfig.model_validate(targets.get("background", {}))
        events = EventConfig.model_validate(job.get("events", {}))
    except ValidationError as exc:
        raise InferenceError(f"{root}: invalid background or event settings: {exc}") from None
    return background, events


def _day_table(path: Path) -> pd.DataFrame:
    """A model directory's CSV of daily values, indexed by its ``time`` column."""
    try:
        return pd.read_csv(path, parse_dates=["time"]).set_index("time")
    except (OSError, ValueError, KeyError) as exc:
        raise InferenceError(f"{path} cannot be read as a background table: {exc}") from None


def _background_table(path: Path, depths: Sequence[float]) -> pd.DataFrame:
    """``background.csv`` indexed by day, with ``background_<d>`` and ``observed_<d>``."""
    table = _day_table(path)
    needed = [f"{kind}_{d:g}" for d in depths for kind in ("background", "observed")]
    absent = [c for c in needed if c not in table.columns]
    if absent:
        raise InferenceError(f"{path} lacks columns {absent} (has {list(table.columns)})")
    return table


def _before_record_table(path: Path) -> pd.DataFrame | None:
    """``background_before_record.csv`` indexed by day; ``None`` for a model without one."""
    return _day_table(path) if path.is_file() else None


def _after(after_record: pd.DataFrame | None, column: str, last: pd.Timestamp) -> pd.Series | None:
    """A combination's anchored ocean background of one depth, on days after its record."""
    if after_record is None or column not in after_record:
        return None
    series = after_record[column].dropna()
    return series[series.index > last]


@dataclass
class TrainedModel:
    """Everything a prediction needs from one model directory.

    Attributes
    ----------
    directory : Path
        The model directory.
    ensemble : DeepEnsemble
        Members and normalisation.
    features : FeatureSpec
        The recipe the members were trained on.
    background : pandas.DataFrame
        ``background.csv``: daily background and observations (°C) per depth.
    background_config : BackgroundConfig
        How the background continues outside the observed record.
    events : EventConfig
        The event rule of the training job.
    checksum : str
        :func:`model_checksum` of the directory.
    before_record : pandas.DataFrame, optional
        ``background_before_record.csv``: the anchored ocean-analysis background before
        the record (:mod:`cascadia.learning.before_record`), if the model has one.
    """

    directory: Path
    ensemble: DeepEnsemble
    features: FeatureSpec
    background: pd.DataFrame
    background_config: BackgroundConfig
    events: EventConfig
    checksum: str
    before_record: pd.DataFrame | None = None

    @classmethod
    def load(cls, model_dir: str | Path) -> TrainedModel:
        """Read a model directory written by ``cascadia-ensemble train``.

        Raises
        ------
        InferenceError
            A file is missing or unreadable (named), or a checkpoint fails its check.
        """
        root = Path(model_dir)
        if not (root / "ensemble.json").is_file():
            raise InferenceError(f"{root} is not a model directory (no ensemble.json)")
        checksum = model_checksum(root)
        try:
            ensemble = DeepEnsemble.load(root)
            features = load_feature_spec(root)
        except (TargetError, ValueError, OSError, KeyError) as exc:
            raise InferenceError(f"{root}: {exc}") from None
        background_config, events = _treatment(root)
        table = _background_table(root / "background.csv", ensemble.normalisation.depths)
        before = _before_record_table(root / BEFORE_RECORD_FILE)
        return cls(root, ensemble, features, table, background_config, events, checksum, before)

    @property
    def depths(self) -> tuple[float, ...]:
        return self.ensemble.normalisation.depths

    @property
    def n_members(self) -> int:
        return len(self.ensemble.members)

    @property
    def quantiles(self) -> tuple[float, ...]:
        """Levels of ``temperature_quantile``."""
        return DEFAULT_QUANTILES

    def background_on(
        self, time: Any, after_record: pd.DataFrame | None = None
    ) -> npt.NDArray[np.float64]:
        """Background (°C) ``(time, depth)`` on consecutive days ``time``.

        Inside each depth's observed record, the training background
        (``background.csv``); before it, the ocean analysis anchored on the record
        where the model has one (``background_before_record.csv``); after it, the
        combination's own ocean anchored on the record where the run has one
        (``after_record``, :func:`cascadia.run.deep_ocean.after_record_background`);
        beyond those, the known values continued by ``targets.json``'s extrapolation
        rule (``hold`` or ``linear_trend``), as :mod:`cascadia.mooring.targets` does.
        """
        days = pd.DatetimeIndex(np.asarray(time)).normalize()
        table = self.background
        first_day = table.index[0]
        if self.before_record is not None and len(self.before_record):
            first_day = min(first_day, self.before_record.index[0])
        axis = pd.date_range(min(days[0], first_day), max(days[-1], table.index[-1]))
        out = np.empty((len(days), len(self.depths)))
        for j, (first, last) in enumerate(self.records()):
            name = f"background_{self.depths[j]:g}"
            known = table[name].loc[first:last].reindex(axis)
            for outside in (self._before(name, first), _after(after_record, name, last)):
                if outside is not None:
                    known = known.fillna(outside.reindex(axis))
            values = known.to_numpy(dtype=np.float64)
            filled = extend_background(values, axis, self.background_config)
            out[:, j] = pd.Series(filled, index=axis).reindex(days).to_numpy()
        return out

    def background_kind_on(
        self,
        time: Any,
        after_record: pd.DataFrame | None = None,
        after_record_kind: float = MODEL_OCEAN_KIND,
    ) -> npt.NDArray[np.float64]:
        """Where :meth:`background_on` comes from, ``(time, depth)``: 0 inside the observed
        record, 3 the anchored ocean analysis before it, ``after_record_kind`` after it
        (4 the combination's own ocean, 5 a sibling member's), elsewhere 1 (``hold``) or
        2 (``linear_trend``): the :data:`cascadia.run.store.BACKGROUND_KINDS` flags, 1 and
        2 marking anomaly-only values."""
        days = pd.DatetimeIndex(np.asarray(time)).normalize()
        outside = 1.0 if self.background_config.extrapolation == "hold" else 2.0
        out = np.empty((len(days), len(self.depths)))
        for j, (first, last) in enumerate(self.records()):
            name = f"background_{self.depths[j]:g}"
            inside = (days >= first) & (days <= last)
            kind = np.where(inside, 0.0, outside)
            flags = (
                (self._before(name, first), ANALYSIS_KIND),
                (_after(after_record, name, last), after_record_kind),
            )
            for known, flag in flags:
                if known is not None:
                    kind[np.isfinite(known.reindex(days).to_numpy(dtype=np.float64))] = flag
            out[:, j] = kind
        return out

    def _before(self, column: str, first: pd.Timestamp) -> pd.Series | None:
        """The anchored analysis background of one depth, on days before its record."""
        if self.before_record is None or column not in self.before_record:
            return None
        series = self.before_record[column].dropna()
        return series[series.index < first]

    def records(self) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """First and last observed day of each depth in ``background.csv``."""
        out = []
        for depth in self.depths:
            observed = self.background[f"observed_{depth:g}"].dropna()
            if observed.empty:
                raise InferenceError(
                    f"{self.directory}/background.csv has no observed day at {depth:g} m"
                )
            out.append((observed.index[0], observed.index[-1]))
        return out

    def predict(
        self,
        daily: xr.Dataset,
        context: xr.Dataset | None = None,
        config: InferenceConfig | None = None,
        after_record: pd.DataFrame | None = None,
        after_record_kind: float = MODEL_OCEAN_KIND,
    ) -> xr.Dataset:
        """The results-store variables of one combination.

        Parameters
        ----------
        daily : xarray.Dataset
            Canonical daily predictors, dims ``(time, region)``, consecutive days on
            the standard calendar (the predictor cache's layout).
        context : xarray.Dataset, optional
            Predictors of the run this one continues (a scenario's historical run):
            its last ``config.context_days`` before ``daily`` are run first (warm
            state and winter integrals) and left out of the outputs. Ignored unless
            it ends the day before ``daily`` starts.
        config : InferenceConfig, optional
            Segments, context length, member series.
        after_record : pandas.DataFrame, optional
            The deep background after the record from the combination's own ocean
            (:func:`cascadia.run.deep_ocean.after_record_background`); without it the
            record's end is held there (anomaly-only).
        after_record_kind : float
            Its ``background_kind``: 4 the combination's own ocean, 5 a sibling member's.

        Returns
        -------
        xarray.Dataset
            Over ``daily``'s days: ``temperature_mean``/``_std``/``_quantile``/
            ``_member`` (°C, background added), ``event_probability``; per winter
            holding any of those days: ``event_days``, ``event_count`` (the members'
            mean where the calibration's level is a single member's,
            :attr:`~cascadia.learning.calibration.Calibration.counts_members`, else
            the mixture's), ``peak_intensity`` of the mixture-mean anomaly and
            ``member_*`` of each member, over the November-April season of the whole
            run (a scenario's first winter includes its context's days), with
            ``winter_days`` the days they cover.
            Attributes record the checksum and the context days used.

        Raises
        ------
        InferenceError
            Predictors that are not consecutive standard-calendar days, or that lack
            a column the model was trained on (named).
        PredictorDataError
            Inputs the model reads (context days included) with gaps, non-finite values
            or impossible magnitudes (:mod:`cascadia.sources.predictors.plausibility`).
        """
        config = config or InferenceConfig()
        _check_daily(daily, "predictors")
        series, n_context = _with_context(daily, context, config.context_days)
        pairs = input_series(series, self.features)
        check_predictors(series, "model inputs", pairs, flagged=(daily, context))
        matrix = self._features(series)
        time = matrix["time"].values
        pred = self.ensemble.predict(
            matrix.values,
            time,
            segment=config.segment_days,
            warmup=config.warmup_days,
            quantiles=self.quantiles,
        )
        depths = list(self.depths)
        mean_events, member_events = predicted_event_days(
            pred, time, depths, self.events, self.ensemble.calibration
        )
        own = slice(n_context, None)
        stats, member_stats = self._winter_statistics(
            time, pred.mean, mean_events, pred.member_mean, member_events, time[own]
        )
        ood = self.out_of_distribution(matrix).sel(winter=stats["winter"])
        time = time[own]
        background = self.background_on(time, after_record)
        kind = self.background_kind_on(time, after_record, after_record_kind)
        members = np.arange(self.n_members)
        coords = {
            "time": time,
            "depth": depths,
            "quantile": list(pred.quantile_levels),
            "ensemble": members,
        }
        td, etd = ("time", "depth"), ("ensemble", "time", "depth")
        out = xr.Dataset(
            {
                "temperature_mean": (td, background + pred.mean[own]),
                "temperature_anomaly_mean": (td, pred.mean[own]),
                "background_temperature": (td, background),
                "background_kind": (td, kind),
                "temperature_std": (td, pred.std[own]),
                "temperature_quantile": (
                    ("quantile", *td),
                    background[None] + pred.quantiles[:, own],
                ),
                "event_probability": (td, pred.event_probability[own]),
            },
            coords=coords,
        )
        if config.member_series:
            out["temperature_member"] = (etd, background[None] + pred.member_mean[:, own])
        calibration = self.ensemble.calibration
        by_member = calibration is not None and calibration.counts_members
        for name in ("event_days", "event_count", "peak_intensity"):
            ensemble_stat = stats[name]
            if by_member and name != "peak_intensity":
                ensemble_stat = member_stats[name].mean("ensemble")
            out[name] = ensemble_stat.astype(np.float64)
            out[f"member_{name}"] = (
                member_stats[name].transpose("winter", "ensemble", "depth").astype(np.float64)
            )
        out["winter_days"] = stats["valid_days"].max("depth").astype(np.float64)
        for name in ("ood_fraction", "ood_max_z"):
            out[name] = ood[name].drop_vars([c for c in ood.coords if c != "winter"])
        out = out.assign_coords(ensemble=members)
        out.attrs.update({"model_checkpoint_hash": self.checksum, "context_days": int(n_context)})
        return out

    def _winter_statistics(
        self,
        time: npt.NDArray[Any],
        mean: npt.NDArray[np.float64],
        mean_events: npt.NDArray[np.bool_],
        member_mean: npt.NDArray[np.float64],
        member_events: npt.NDArray[np.bool_],
        own_time: npt.NDArray[Any],
    ) -> tuple[xr.Dataset, xr.Dataset]:
        """Per-winter statistics over the whole run (context included), for the winters
        holding at least one of the combination's own days.

        Only the days of a winter's November-April season count (:data:`SEASON_MONTHS`,
        the season event days are labelled with, docs/events.md); the event rule itself
        runs on the whole series, so an event crossing the season's edge keeps its
        in-season days and counts as starting on its first in-season day.
        """
        depths = list(self.depths)
        dims = ("time", "depth")
        coords = {"time": time, "depth": depths}
        # the event rule ran on the whole series; the statistics count the season's days
        season = np.isin(pd.DatetimeIndex(time).month, SEASON_MONTHS)[:, None]
        anomaly = xr.DataArray(np.where(season, mean, np.nan), dims=dims, coords=coords)
        stats = winter_statistics(
            anomaly, config=self.events, events=anomaly.copy(data=mean_events & season)
        )
        members = xr.DataArray(
            np.where(season[None], member_mean, np.nan), dims=("ensemble", *dims), coords=coords
        )
        member_stats = winter_statistics(
            members, config=self.events, events=members.copy(data=member_events & season[None])
        )
        start = self.events.winter_start_month
        own = np.unique(winter_labels(xr.DataArray(own_time, dims="time"), start).values)
        stats, member_stats = stats.sel(winter=own), member_stats.sel(winter=own)
        # a winter whose season holds none of the run's days has no statistics (not zero)
        seen = stats["valid_days"].max("depth") > 0
        for table in (stats, member_stats):
            for name in ("event_days", "event_count"):
                table[name] = table[name].where(seen)
        return stats, member_stats

    def out_of_distribution(self, matrix: xr.DataArray) -> xr.Dataset:
        """Per winter: how far the model's inputs lie from what it learnt on.

        The training range of an input is its smallest to largest value on the training
        days of the same calendar month (``normalisation.json``; a mild January is not
        judged by July's air). Models saved before the monthly ranges take each input's
        training mean ± :data:`OOD_Z` standard deviations instead. Over the winter's
        November-April days (as the event statistics): ``ood_fraction``, the fraction of
        days on which any input lies outside its range, and ``ood_max_z``, the largest
        ``|x - mean| / std`` of any input.
        """
        norm = self.ensemble.normalisation
        mean = np.asarray(norm.feature_mean)
        std = np.asarray(norm.feature_std)
        x = np.asarray(matrix.values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            z = np.abs((x - mean) / std)
        time = matrix["time"].values
        month = pd.DatetimeIndex(time).month
        season = np.isin(month, SEASON_MONTHS)
        valid = np.isfinite(z).any(axis=1) & season
        largest = np.where(valid, np.nanmax(np.where(np.isfinite(z), z, -np.inf), axis=1), np.nan)
        if norm.feature_monthly_min is not None and norm.feature_monthly_max is not None:
            low = np.asarray(norm.feature_monthly_min)[month - 1]
            high = np.asarray(norm.feature_monthly_max)[month - 1]
            with np.errstate(invalid="ignore"):
                beyond = ((x < low) | (x > high)).any(axis=1)
        else:
            beyond = largest > OOD_Z
        outside = np.where(valid, beyond, np.nan)
        daily = xr.Dataset(
            {"ood_fraction": ("time", outside), "ood_max_z": ("time", largest)},
            coords={"time": time},
        )
        winter = winter_labels(daily["time"], self.events.winter_start_month)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
            return xr.Dataset(
                {
                    "ood_fraction": daily["ood_fraction"].groupby(winter).mean(),
                    "ood_max_z": daily["ood_max_z"].groupby(winter).max(),
                }
            )

    def _features(self, series: xr.Dataset) -> xr.DataArray:
        """The model's feature matrix, its columns checked against the training ones."""
        try:
            matrix = model_features(series, self.features)
        except TargetError as exc:
            raise InferenceError(f"model features: {exc}") from None
        names = [str(f) for f in matrix["feature"].values]
        expected = list(self.ensemble.normalisation.feature_names)
        if names != expected:
            missing = [n for n in expected if n not in names]
            extra = [n for n in names if n not in expected]
            raise InferenceError(
                f"the predictors give feature columns that differ from the model's "
                f"(missing {missing}, unexpected {extra}); the model was trained on {expected}"
            )
        return matrix


def _check_daily(data: xr.Dataset, what: str) -> None:
    if "time" not in data.dims or "region" not in data.dims:
        raise InferenceError(f"{what} need dims (time, region), got {dict(data.sizes)}")
    time = data.indexes["time"]
    if not isinstance(time, pd.DatetimeIndex):
        raise InferenceError(
            f"{what} have a {type(time).__name__} time axis: convert to the standard "
            "calendar first (the predictor cache holds standard-calendar days)"
        )
    steps = np.unique(np.diff(time.values).astype("timedelta64[s]"))
    if len(time) > 1 and (len(steps) != 1 or steps[0] != np.timedelta64(1, "D")):
        raise InferenceError(
            f"{what} must be consecutive days ({time[0].date()}–{time[-1].date()} has steps "
            f"{sorted({str(s) for s in steps})})"
        )


def _with_context(
    daily: xr.Dataset, context: xr.Dataset | None, days: int
) -> tuple[xr.Dataset, int]:
    """``daily`` with up to ``days`` of ``context`` before it, and how many were added."""
    if context is None or days == 0:
        return daily, 0
    _check_daily(context, "context predictors")
    start = daily.indexes["time"][0]
    before = context.sel(time=slice(None, start - pd.Timedelta(days=1))).isel(
        time=slice(-days, None)
    )
    if before.sizes["time"] == 0 or before.indexes["time"][-1] != start - pd.Timedelta(days=1):
        return daily, 0
    names = [v for v in daily.data_vars if v in before.data_vars]
    joined = xr.concat([before[names], daily[names]], dim="time", join="exact")
    return joined, before.sizes["time"]


_CACHE: dict[tuple[str, str, str], TrainedModel] = {}
_CACHE_LOCK = threading.Lock()
_LOADS = [0]


def cached_model(model_dir: str | Path, checksum: str, device: str = "cpu") -> TrainedModel:
    """The model of ``model_dir``, loaded once per process and reused by every task, its
    members on ``device`` (:func:`cascadia.learning.device.resolve_device`, resolved here:
    on each worker, so ``auto`` takes a GPU only where the worker has one).

    Raises
    ------
    InferenceError
        The directory no longer has the checksum the run was planned with.
    """
    on = resolve_device(device)
    key = (str(Path(model_dir).resolve()), checksum, str(on))
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = TrainedModel.load(model_dir)
            model.ensemble.to(on)
            if model.checksum != checksum:
                raise InferenceError(
                    f"model directory {model_dir} changed during the run (checksum "
                    f"{model.checksum}, planned with {checksum})"
                )
            _CACHE.clear()  # one model per process: a new run's model replaces the old
            _CACHE[key] = model
            _LOADS[0] += 1
    return model


def load_count() -> int:
    """How many times :func:`cached_model` loaded a model in this process."""
    return _LOADS[0]
