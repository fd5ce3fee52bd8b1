"""Run a training job end to end: predictors → targets → deep ensemble → evaluation.

``run_train_job`` is the Python API behind ``cascadia-ensemble train --job``:

1. fill the predictor cache for the job's source (extraction happens once;
   later jobs reuse it) and read the canonical daily predictors of every
   region, flattened to ``<variable>@<region>`` features;
2. read the mooring (:func:`cascadia.mooring.observations.load_mooring`), build the
   background and anomaly targets and the observed event days
   (:mod:`cascadia.mooring.targets`);
3. train the deep ensemble (:func:`cascadia.learning.training.train_ensemble`), which
   writes the model directory (resolved training config, normalisation,
   seeds, safetensors checkpoints, curves);
4. add the job's own records (``job.yaml``, ``targets.json``,
   ``background.csv``, ``timing.json``), reload the ensemble from the
   directory — evaluation reads what was saved, never the objects in memory —
   calibrate on the validation winters (or, for a cross-fitted ensemble, on the
   out-of-fold forecast of every training and validation winter), fit the
   baselines (climatology, persistence, index regression, gradient boosting on the
   network's own features) on the winters the members learned from and write
   ``metrics.json``, ``comparison.json``, ``winter_events.json``, ``hindcast.csv``
   and ``report/``;
5. with ``evaluation.warm_split`` (``cold_split``, ``strong_split``), train and score the
   same design on the colder (warmer) two thirds of the winters (the winters without the
   strongest tenth of the cascades) (:mod:`cascadia.learning.extrapolation_split`) and add
   its ``warm_split`` (``cold_split``, ``strong_split``) section to ``metrics.json``.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr
import yaml

from cascadia import __version__
from cascadia.learning.baselines import (
    BaselinePrediction,
    BuoyancyRegressionBaseline,
    ClimatologyBaseline,
    PersistenceBaseline,
)
from cascadia.learning.before_record import BEFORE_RECORD_FILE, BeforeRecord, anchor_analysis
from cascadia.learning.boosting import GradientBoostingBaseline
from cascadia.learning.calibration import (
    Calibration,
    exceedance_probability,
    fit_calibration,
    fit_probability_thresholds,
    member_probability_events,
    probability_events,
)
from cascadia.learning.ensemble import DeepEnsemble, mixture_quantiles
from cascadia.learning.evaluation import (
    Forecast,
    bootstrap_crps_difference,
    evaluate_forecasts,
    per_winter_event_days,
    verification_section,
    write_json,
    write_report,
)
from cascadia.learning.extrapolation_split import SIDES, split_section
from cascadia.learning.features import input_series, model_features, save_feature_spec
from cascadia.learning.folds import out_of_fold
from cascadia.learning.jobs import JobError, TrainJob
from cascadia.learning.metrics import gaussian_interval
from cascadia.learning.training import SeriesData, TrainingProgress, train_ensemble
from cascadia.mooring.events import winter_labels
from cascadia.mooring.observations import load_mooring
from cascadia.mooring.targets import AlignedSeries, align_series, held_out_targets
from cascadia.sources.cache import PredictorCache, fill_cache, fingerprint
from cascadia.sources.catalog import SourceError, enumerate_combos, open_collection
from cascadia.sources.config import CatalogError, load_run_catalog
from cascadia.sources.ocean_analysis import OceanAnalysisError, deep_temperature
from cascadia.sources.predictors.plausibility import PredictorDataError, check_predictors

__all__ = ["JobSeries", "TrainJobResult", "load_predictors", "prepare_job_series", "run_train_job"]

#: Region whose predictors feed the buoyancy-index baseline (the dense-water source).
SHELF_REGION = "gulf_of_lion_shelf"


@dataclass
class TrainJobResult:
    """What a training job produced.

    Attributes
    ----------
    directory : Path
        Model directory.
    metrics : dict
        ``{model: {depth: {metric: value}}}`` on the test winters, the
        ``verification`` section (PIT, reliability, skill intervals, descriptions)
        and the ``warm_split``, ``cold_split`` and ``strong_split`` sections when the job
        asks for them.
    comparison : dict
        Paired bootstrap of the CRPS, ensemble vs best member.
    train_seconds : float
        Wall time of the ensemble training (s).
    """

    directory: Path
    metrics: dict[str, Any]
    comparison: dict[str, Any]
    train_seconds: float


def load_predictors(job: TrainJob) -> tuple[Any, dict[str, Any]]:
    """Fill the cache for the job's source and open its predictors (in memory).

    Returns
    -------
    tuple
        The ``(time, region)`` dataset and a provenance dict (catalog, source,
        combination, fingerprint).
    """
    try:
        catalog = load_run_catalog(job.predictors.catalog)
        source = catalog.source(job.predictors.source)
    except CatalogError as exc:
        raise JobError(str(exc)) from None
    cache = PredictorCache(job.predictors.cache, job.predictors.cache_storage_options)
    outcomes = fill_cache(catalog, cache, sources=[source.name])
    failed = [o for o in outcomes if o.status == "failed"]
    try:
        combos = enumerate_combos(catalog, source, open_collection(catalog, source))
    except SourceError as exc:
        raise JobError(str(exc)) from None
    wanted = job.predictors.combo
    chosen = [c for c in combos if all(c.labels.get(k) == v for k, v in wanted.items())]
    if len(chosen) != 1:
        labels = [c.label for c in combos]
        raise JobError(
            f"predictors.combo {wanted or '{}'} selects {len(chosen)} of the combinations "
            f"{labels} of source {source.name!r}; name exactly one"
        )
    combo = chosen[0]
    key = fingerprint(catalog, source, combo)
    data = cache.get(source, combo, key)
    if data is None:
        reasons = "; ".join(o.reason for o in failed) or "unknown reason"
        raise JobError(f"predictors of {combo.label} could not be extracted: {reasons}")
    info = {
        "catalog": catalog.path,
        "source": source.name,
        "combo": combo.labels,
        "fingerprint": key,
        "cache": cache.url,
    }
    return data.load(), info


def _probability_events(
    anomaly_mean: npt.NDArray[np.float64],
    std: npt.NDArray[np.float64],
    series: AlignedSeries,
    job: TrainJob,
    validation: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Event days by the ensemble's rule: P(below threshold) ≥ a validation-chosen level.

    Every model (members, baselines) gets the same rule with its own level fitted
    on the validation winters, so event scores compare forecasts, not rules.
    Returns the event days and the daily probability ``(time, depth)``.
    """
    thresholds = [job.events.threshold_for(d) for d in series.depths]
    prob = exceedance_probability(anomaly_mean, std, thresholds)
    levels = fit_probability_thresholds(
        prob,
        series.events,
        validation,
        series.time,
        series.depths,
        job.events,
        job.calibration.event_level,
    )
    return probability_events(prob, series.time, series.depths, levels, job.events), prob


def _baseline_forecast(
    name: str,
    pred: BaselinePrediction,
    series: AlignedSeries,
    job: TrainJob,
    validation: npt.NDArray[np.bool_],
) -> Forecast:
    mean = series.background + pred.mean
    std = np.maximum(pred.std, 1e-6)
    lower, upper = gaussian_interval(mean, std, 0.9)
    events, probability = _probability_events(pred.mean[None], std[None], series, job, validation)
    return Forecast(
        name=name,
        member_mean=mean[None],
        member_std=std[None],
        lower=lower,
        upper=upper,
        events=events,
        event_probability=probability,
    )


def _baselines(
    series: AlignedSeries, job: TrainJob, validation: npt.NDArray[np.bool_]
) -> list[Forecast]:
    """Climatology, persistence (climatology where last year is missing), index regression
    and gradient boosting on the network's own features.

    Fitted on the winters the ensemble's members learned from
    (``training.learning_winters()``), so the comparison is on equal data; their
    event-probability levels are chosen on ``validation``.
    """
    cfg = job.training
    time, y = series.time, series.anomaly
    learned = cfg.learning_winters()
    clim = ClimatologyBaseline(winter_start_month=cfg.winter_start_month)
    clim_pred = clim.fit(time, y, learned).predict(time)
    pers = PersistenceBaseline(cfg.winter_start_month).fit(time, y, learned)
    pers_pred = pers.predict(time, y)
    # A persistence forecaster without last year's value falls back to climatology,
    # so that every model is scored on the same days.
    gap = ~np.isfinite(pers_pred.mean)
    pers_pred = BaselinePrediction(
        np.where(gap, clim_pred.mean, pers_pred.mean), np.where(gap, clim_pred.std, pers_pred.std)
    )
    names = list(series.feature_names)
    shelf = {
        name.split("@")[0]: series.predictors[:, names.index(name)]
        for name in names
        if name.endswith(f"@{SHELF_REGION}")
    }
    if not shelf:
        raise JobError(
            f"the index-regression baseline needs the {SHELF_REGION!r} region's predictors; "
            f"features are {names}"
        )
    reg = BuoyancyRegressionBaseline(winter_start_month=cfg.winter_start_month)
    reg_pred = reg.fit(time, y, learned, shelf).predict(time, shelf)
    gbm = GradientBoostingBaseline(winter_start_month=cfg.winter_start_month, seed=cfg.seed)
    gbm_pred = gbm.fit(time, y, learned, series.predictors).predict(time, series.predictors)
    return [
        _baseline_forecast("climatology", clim_pred, series, job, validation),
        _baseline_forecast("persistence", pers_pred, series, job, validation),
        _baseline_forecast("index_regression", reg_pred, series, job, validation),
        _baseline_forecast("gradient_boosting", gbm_pred, series, job, validation),
    ]


def _write_hindcast(path: Path, series: AlignedSeries, pred: Any) -> None:
    """The calibrated ensemble over the job's whole series: the numbers behind the report.

    Temperature (°C) = background + anomaly: mixture mean, 5 % and 95 % quantiles and the
    event probability per depth, one row per day of ``background.csv``.
    """
    q = list(pred.quantile_levels)
    frame = pd.DataFrame({"time": pd.DatetimeIndex(series.time).strftime("%Y-%m-%d")})
    for j, depth in enumerate(series.depths):
        bg = series.background[:, j]
        frame[f"mean_{depth:g}"] = bg + pred.mean[:, j]
        frame[f"q05_{depth:g}"] = bg + pred.quantiles[q.index(0.05)][:, j]
        frame[f"q95_{depth:g}"] = bg + pred.quantiles[q.index(0.95)][:, j]
        frame[f"event_probability_{depth:g}"] = pred.event_probability[:, j]
    frame.to_csv(path, index=False, float_format="%.5f")


def _background_frame(series: AlignedSeries) -> pd.DataFrame:
    """``background.csv``'s table: daily background and observations per depth, by day."""
    frame = pd.DataFrame(index=pd.DatetimeIndex(series.time, name="time"))
    for j, depth in enumerate(series.depths):
        frame[f"background_{depth:g}"] = series.background[:, j]
        frame[f"observed_{depth:g}"] = series.temperature[:, j]
    return frame


def _before_record(
    job: TrainJob, series: AlignedSeries, log: Callable[[str], None]
) -> BeforeRecord | None:
    """The ocean analysis' background before the record, read before training (a bad
    file fails in seconds, not after the candidates); ``None`` when the job has none."""
    cfg = job.targets.before_record
    if cfg is None:
        return None
    try:
        analysis = deep_temperature(cfg, series.depths)
        before = anchor_analysis(analysis, _background_frame(series), series.depths, cfg)
    except OceanAnalysisError as exc:
        raise JobError(str(exc)) from None
    for depth, row in before.summary["depths"].items():
        test = row["back_test"]
        log(
            f"background before the record at {depth} m: {cfg.path} from {row['first_day']}, "
            f"offset {row['offset']:+.3f} °C; record back-test RMSE {test['rmse_analysis']:.3f} "
            f"°C (held: {test['rmse_hold']:.3f})"
        )
    return before


def _write_records(
    directory: Path,
    job: TrainJob,
    series: AlignedSeries,
    provenance: dict[str, Any],
    obs: Any,
    before: BeforeRecord | None,
) -> None:
    (directory / "job.yaml").write_text(
        yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
    frame = _background_frame(series).reset_index()
    frame["time"] = frame["time"].dt.strftime("%Y-%m-%d")
    frame.to_csv(directory / "background.csv", index=False, float_format="%.5f")
    if before is not None:
        table = before.background.reset_index()
        table["time"] = table["time"].dt.strftime("%Y-%m-%d")
        table.to_csv(directory / BEFORE_RECORD_FILE, index=False, float_format="%.5f")
    save_feature_spec(directory, job.features)
    bg = job.targets.background
    records = {
        "target": "daily temperature minus background (degree_Celsius anomaly)",
        "background": bg.model_dump(mode="json"),
        "background_end_values": {
            f"{d:g}": float(series.background[-1, j]) for j, d in enumerate(series.depths)
        },
        "background_before_record": before.summary if before is not None else None,
        "excluded_winters": list(job.training.test_winters) if bg.exclude_test_winters else [],
        "series": series.info,
        "predictors": provenance,
        "feature_names": list(series.feature_names),
        "observation_report": obs.report.to_dict(),
        "cascadia_version": __version__,
    }
    write_json(directory / "targets.json", records)


@dataclass
class JobSeries:
    """A job's data, ready to train on: what :func:`prepare_job_series` returns.

    Attributes
    ----------
    observations
        The mooring (:func:`cascadia.mooring.observations.load_mooring`), with its QC report.
    provenance : dict
        Predictor provenance (catalog, source, combination, cache fingerprint).
    series : AlignedSeries
        Features, background, anomaly targets and observed event days on one daily axis.
    winters : numpy.ndarray
        ``(time,)`` winter year of each day.
    """

    observations: Any
    provenance: dict[str, Any]
    series: AlignedSeries
    winters: npt.NDArray[np.int64]


def training_data(series: AlignedSeries) -> SeriesData:
    """The aligned predictors, anomaly targets and event days as training input."""
    return SeriesData(
        time=series.time,
        predictors=series.predictors,
        targets=series.anomaly,
        feature_names=series.feature_names,
        events=series.events,
        depths=series.depths,
    )


def prepare_job_series(job: TrainJob, log: Callable[[str], None] = print) -> JobSeries:
    """Load a job's observations and predictors and align features with targets.

    Shared by the train and tune jobs, so that a search sees exactly the data a
    training job would. Every split winter must hold an observed day.

    Raises
    ------
    JobError, ObservationError, TargetError
        As :func:`run_train_job`.
    """
    job = job.resolved()
    # Observations first: a bad mooring config fails in seconds, before any extraction.
    obs = load_mooring(job.observations)
    data, provenance = load_predictors(job)
    features = model_features(data, job.features)
    log(f"predictors: {len(features['feature'])} features, {features.sizes['time']} days")
    series = align_series(
        features,
        obs.temperature,
        job.targets.background,
        job.events,
        exclude_winters=job.training.test_winters,
        spinup_days=job.targets.spinup_days,
    )
    used = data.sel(time=slice(series.time[0], series.time[-1]))
    try:
        check_predictors(
            used, f"predictors of {job.predictors.source}", input_series(used, job.features)
        )
    except PredictorDataError as exc:
        raise JobError(str(exc)) from None
    cfg = job.training
    winters = np.asarray(
        winter_labels(xr.DataArray(series.time, dims="time"), cfg.winter_start_month).values,
        dtype=np.int64,
    )
    for split, listed in (
        ("train", cfg.train_winters),
        ("validation", cfg.validation_winters),
        ("test", cfg.test_winters),
    ):
        empty = [w for w in listed if not np.isfinite(series.anomaly[winters == w]).any()]
        if empty:
            raise JobError(
                f"{split} winters {empty} have no observed day within the series "
                f"{series.info['series_period']} (observed {series.info['observed_period']})"
            )
    log(f"targets: {series.info['series_period']}, observed {series.info['n_observed_days']}")
    return JobSeries(obs, provenance, series, winters)


def _best_member(
    members: list[Forecast], scores: dict[str, Any], depths: tuple[float, ...]
) -> Forecast:
    """The member with the lowest CRPS averaged over the depths of ``scores``."""
    return min(
        members,
        key=lambda f: np.mean([scores[f.name][f"{d:g}"]["crps"] or np.inf for d in depths]),
    )


def _best_member_on_own_fold(
    members: list[Forecast],
    reference: Forecast,
    folds: list[npt.NDArray[np.bool_]],
    series: AlignedSeries,
) -> Forecast:
    """The member of a cross-fitted ensemble with the best skill on its own fold.

    Members validated on different winters, so their CRPS is compared as skill
    against ``reference`` (climatology) on the same winters.
    """

    def skill(member: Forecast, fold: npt.NDArray[np.bool_]) -> float:
        scores = evaluate_forecasts(
            [member, reference],
            series.temperature,
            series.background,
            series.events,
            fold,
            series.depths,
        )
        per_depth = []
        for d in series.depths:
            own, ref = (
                scores[member.name][f"{d:g}"]["crps"],
                scores[reference.name][f"{d:g}"]["crps"],
            )
            if own is not None and ref:
                per_depth.append(1.0 - own / ref)
        return float(np.mean(per_depth)) if per_depth else -np.inf

    return max(zip(members, folds, strict=True), key=lambda pair: skill(*pair))[0]


def _compare(
    a: Forecast,
    b: Forecast,
    observed: npt.NDArray[np.float64],
    winters: npt.NDArray[np.int64],
    depths: tuple[float, ...],
    job: TrainJob,
) -> dict[str, Any]:
    """Paired bootstrap of CRPS(a) − CRPS(b) over the test winters (the job's settings)."""
    return bootstrap_crps_difference(
        a,
        b,
        observed,
        winters,
        job.training.test_winters,
        depths,
        samples=job.evaluation.bootstrap_samples,
        confidence=job.evaluation.confidence,
        seed=job.evaluation.seed,
    )


def _calibrate(
    ensemble: DeepEnsemble, series: AlignedSeries, winters: npt.NDArray[np.int64], job: TrainJob
) -> tuple[Calibration, npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Fit the calibration on winters the members did not learn from.

    The validation winters, or for a cross-fitted ensemble the out-of-fold
    forecast of the whole pool; against held-out anomalies (each calibration
    winter measured against a background estimated without it, as the test
    winters are). Returns the calibration, its days (where the baselines'
    event levels are fitted too) and, per day and depth, whether the held-out
    anomaly lies inside the calibrated forecast's central 90 % interval (1/0,
    NaN off those days): what a test coverage is read against.
    """
    cfg = job.training
    raw = ensemble.predict(series.predictors, series.time)
    if cfg.folds is None:
        days = np.isin(winters, cfg.validation_winters)
        mean, std = raw.member_mean, raw.member_std
        fitted_on, held_out = list(cfg.validation_winters), [list(cfg.validation_winters)]
    else:
        member_folds = [info["validation_winters"] for info in ensemble.info]
        mean, std, days = out_of_fold(raw.member_mean, raw.member_std, member_folds, winters)
        fitted_on = cfg.learning_winters()
        held_out = [list(fold) for fold in sorted({tuple(f) for f in member_folds})]
    anomaly, events = held_out_targets(
        series.time,
        series.temperature,
        series.depths,
        held_out,
        job.targets.background,
        job.events,
        cfg.test_winters,
    )
    calibration = fit_calibration(
        mean,
        std,
        anomaly,
        events,
        days,
        series.time,
        series.depths,
        job.events,
        fitted_on,
        job.calibration.event_level,
    )
    lower, upper = mixture_quantiles(mean, std * np.asarray(calibration.std_scale), [0.05, 0.95])
    scored = days[:, None] & np.isfinite(anomaly)
    inside = np.where(scored, (anomaly >= lower) & (anomaly <= upper), np.nan)
    return calibration, days, inside


def run_train_job(
    job: TrainJob,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    progress: Callable[[TrainingProgress], None] | None = None,
    device: str = "auto",
) -> TrainJobResult:
    """Train and evaluate the deep ensemble a job describes.

    Parameters
    ----------
    job : TrainJob
        The validated job (paths relative to its file).
    out : str or Path, optional
        Model directory (overrides ``job.output``).
    overwrite : bool
        Replace an existing model directory.
    log : callable
        Receives one line per step.
    progress : callable, optional
        Receives every candidate's epochs and completion while the ensemble trains
        (:func:`~cascadia.learning.training.train_ensemble`).
    device : str
        Where the candidates train (``auto``: a GPU when torch sees one; ``cpu``,
        ``cuda``, ``cuda:N``); the model directory does not depend on it.

    Returns
    -------
    TrainJobResult

    Raises
    ------
    JobError, ObservationError, TargetError
        Bad inputs: unknown source, failed extraction, unreadable or fully
        flagged observations, no overlap between predictors and observations,
        a split winter without data.
    """
    job = job.resolved()
    target = out if out is not None else job.output
    if target is None:
        raise JobError("no model directory: set 'output' in the job or pass --out")
    directory = Path(target)
    if directory.exists() and not overwrite:
        raise JobError(f"model directory {directory} exists (pass --overwrite to replace it)")

    t0 = _time.perf_counter()
    prepared = prepare_job_series(job, log)
    obs, provenance, series, winters = (
        prepared.observations,
        prepared.provenance,
        prepared.series,
        prepared.winters,
    )
    before = _before_record(job, series, log)
    cfg = job.training
    prep_seconds = _time.perf_counter() - t0

    t1 = _time.perf_counter()
    trained = train_ensemble(
        cfg,
        training_data(series),
        directory,
        overwrite=overwrite,
        progress=progress,
        device=device,
    )
    train_seconds = _time.perf_counter() - t1
    if cfg.n_candidates > cfg.members:
        kept = [info["candidate"] for info in trained.info]
        log(
            f"trained {cfg.n_candidates} candidates in {train_seconds:.1f} s; kept {kept} "
            f"(lowest validation CRPS{' per fold' if cfg.folds else ''}; "
            "all scores in candidates.json)"
        )
    else:
        log(f"trained {cfg.members} members in {train_seconds:.1f} s")
    _write_records(directory, job, series, provenance, obs, before)

    t2 = _time.perf_counter()
    ensemble = DeepEnsemble.load(directory)
    # Each member's validation winters: the configured ones, or its own fold.
    member_validation = [
        np.isin(winters, info.get("validation_winters", cfg.validation_winters))
        for info in ensemble.info
    ]
    ensemble.calibration, validation, calibration_inside = _calibrate(
        ensemble, series, winters, job
    )
    ensemble.calibration.save(directory)
    where = "validation winters" if cfg.folds is None else "out-of-fold forecasts"
    log(f"calibrated on {where}: {ensemble.calibration.to_dict()}")
    pred = ensemble.predict(series.predictors, series.time)
    q = list(pred.quantile_levels)
    bg = series.background
    _write_hindcast(directory / "hindcast.csv", series, pred)
    member_mean = bg[None] + pred.member_mean
    p_event = ensemble.calibration.event_probability_threshold
    forecasts = [
        Forecast(
            name="ensemble",
            member_mean=member_mean,
            member_std=pred.member_std,
            lower=bg + pred.quantiles[q.index(0.05)],
            upper=bg + pred.quantiles[q.index(0.95)],
            events=probability_events(
                pred.event_probability, series.time, series.depths, p_event, job.events
            ),
            event_probability=pred.event_probability,
            # scored as the run counts them: per member where the level is a member's
            member_events=member_probability_events(
                pred.member_mean,
                pred.member_std,
                series.time,
                series.depths,
                ensemble.calibration,
                job.events,
            )
            if ensemble.calibration.counts_members
            else None,
        )
    ]
    for m in range(member_mean.shape[0]):
        lower, upper = gaussian_interval(member_mean[m], pred.member_std[m], 0.9)
        events, probability = _probability_events(
            pred.member_mean[m][None], pred.member_std[m][None], series, job, member_validation[m]
        )
        forecasts.append(
            Forecast(
                name=f"member_{m}",
                member_mean=member_mean[m][None],
                member_std=pred.member_std[m][None],
                lower=lower,
                upper=upper,
                events=events,
                event_probability=probability,
            )
        )
    t_baselines = _time.perf_counter()
    baselines = _baselines(series, job, validation)
    baseline_seconds = _time.perf_counter() - t_baselines
    forecasts += baselines
    test = np.isin(winters, cfg.test_winters)
    metrics = evaluate_forecasts(
        forecasts, series.temperature, bg, series.events, test, series.depths
    )
    members = [f for f in forecasts if f.name.startswith("member_")]
    observed_test = np.where(test[:, None], series.temperature, np.nan)
    # Best member in hindsight: lowest mean test CRPS over both depths (favours the member).
    best = _best_member(members, metrics, series.depths)
    comparison = _compare(forecasts[0], best, observed_test, winters, series.depths, job)
    # The member a user could have picked without the test winters: best on validation.
    if cfg.folds is None:
        scores_on_validation = evaluate_forecasts(
            members, series.temperature, bg, series.events, validation, series.depths
        )
        chosen = _best_member(members, scores_on_validation, series.depths)
    else:
        chosen = _best_member_on_own_fold(members, baselines[0], member_validation, series)
    comparison["selected_on_validation"] = _compare(
        forecasts[0], chosen, observed_test, winters, series.depths, job
    )
    winter_events = per_winter_event_days(
        forecasts, series.events, winters, cfg.test_winters, series.depths
    )
    verification = verification_section(
        forecasts,
        series.temperature,
        bg,
        series.events,
        test,
        winters,
        cfg.test_winters,
        series.depths,
        [job.events.threshold_for(d) for d in series.depths],
        confidence=job.evaluation.confidence,
        n_resamples=job.evaluation.bootstrap_samples,
        seed=job.evaluation.seed,
        calibration_inside=calibration_inside,
    )
    write_json(directory / "comparison.json", comparison)
    write_json(directory / "winter_events.json", winter_events)
    eval_seconds = _time.perf_counter() - t2
    scores: dict[str, Any] = {**metrics, "verification": verification}
    split_seconds: dict[str, float] = {}
    for side in SIDES:
        if not getattr(job.evaluation, f"{side}_split"):
            continue
        t3 = _time.perf_counter()
        rest = {
            "warm": "the colder two thirds of the winters",
            "cold": "the warmer two thirds of the winters",
            "strong": "the winters without the strongest tenth of the cascades",
        }[side]
        log(f"{side} split: the same design on {rest}")

        def run_split(split: TrainJob, side: str = side) -> dict[str, Any]:
            return run_train_job(
                split,
                directory / f"{side}_split",
                overwrite=True,
                log=lambda line: log(f"  {side} split: {line}"),
            ).metrics

        section = split_section(
            side, job, series, winters, metrics, run_split, job.features.flux_region
        )
        scores[f"{side}_split"] = section
        split_seconds[side] = _time.perf_counter() - t3
        log(
            f"{side} split (test {section['test_winters']}) in {split_seconds[side]:.0f} s: "
            f"CRPS {side}/random {section[f'crps_ratio_{side}_to_random']}"
        )
    write_json(directory / "metrics.json", scores)
    timing = {
        "prepare_seconds": prep_seconds,
        "train_seconds": train_seconds,
        "evaluate_seconds": eval_seconds,
        "baselines_seconds": baseline_seconds,
        **{f"{side}_split_seconds": split_seconds.get(side) for side in SIDES},
        "members": cfg.members,
        "best_epochs": [i.get("best_epoch") for i in ensemble.info],
    }
    write_json(directory / "timing.json", timing)
    if job.evaluation.report:
        header = [
            f"Model directory `{directory}`; predictors {provenance['source']} "
            f"{provenance['combo']}; {cfg.members} members; training {train_seconds:.0f} s.",
            f"Temperature = background + predicted anomaly; background: "
            f"{job.targets.background.model_dump()}.",
        ]
        write_report(
            directory / "report",
            metrics,
            comparison,
            winter_events,
            forecasts[0],
            baselines,
            series.time,
            series.temperature,
            bg,
            test,
            cfg.test_winters,
            series.depths,
            header,
            verification=verification,
            splits={side: scores[f"{side}_split"] for side in SIDES if f"{side}_split" in scores},
        )
    log(f"evaluated on winters {cfg.test_winters} in {eval_seconds:.1f} s → {directory}")
    return TrainJobResult(directory, scores, comparison, train_seconds)
