"""Hyperparameter search (optuna) and a statistical comparison of the best configurations.

``run_tune_job`` is the Python API behind ``cascadia-ensemble tune --job``:

1. the job's data are prepared exactly as for a training job
   (:func:`cascadia.learning.train_job.prepare_job_series`); the targets and event days
   of the **test winters are set to NaN** before anything reaches the search
   (their predictors remain as context, like any input);
2. each trial samples a configuration from the search space (architecture,
   size, lookback, learning rate, dropout), trains ``members_per_trial``
   member(s) on the training winters with the job's early stopping, reports
   the validation CRPS after every epoch so that the pruner can stop hopeless
   trials, and returns the **validation CRPS** (°C, mean of the depths) of its
   best-epoch weights;
3. the study lives in SQLite (``load_if_exists``): a killed search resumes and
   ``trials`` is the study's total, so rerunning runs only the missing ones;
4. the top-K configurations (by validation CRPS) are retrained as full deep
   ensembles and compared on the **test winters**: per-winter CRPS, a paired
   bootstrap over winters and a Diebold–Mariano test (Harvey correction) of
   each against the search's best, written as markdown, CSV and JSON.
"""

from __future__ import annotations

import csv
import math
import time as _time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import optuna
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cascadia.learning.device import resolve_device
from cascadia.learning.ensemble import DeepEnsemble
from cascadia.learning.evaluation import (
    Forecast,
    bootstrap_crps_difference,
    diebold_mariano,
    forecast_events,
    write_json,
)
from cascadia.learning.features import save_feature_spec
from cascadia.learning.jobs import JobError, TrainJob, read_job_yaml
from cascadia.learning.metrics import crps_mixture
from cascadia.learning.models import model_class
from cascadia.learning.train_job import JobSeries, prepare_job_series
from cascadia.learning.training import (
    SeriesData,
    TrainingConfig,
    prepare_series,
    train_ensemble,
    train_member,
)

__all__ = [
    "ARCHITECTURE_ARGUMENTS",
    "FloatRange",
    "IntRange",
    "PrunerConfig",
    "SearchConfig",
    "SearchSpace",
    "TuneJob",
    "TuneResult",
    "load_tune_job",
    "make_objective",
    "run_tune_job",
    "search_data",
]

#: Which constructor argument each searched name sets, per architecture. ``layers``
#: has no TCN counterpart (its depth follows from the receptive field), and the
#: TCN's receptive field is made to cover the trial's lookback.
ARCHITECTURE_ARGUMENTS: dict[str, dict[str, str]] = {
    "lstm": {"hidden": "hidden", "layers": "layers", "dropout": "dropout"},
    "transformer": {"hidden": "d_model", "layers": "layers", "dropout": "dropout"},
    "tcn": {"hidden": "channels", "lookback_days": "min_receptive_field", "dropout": "dropout"},
}
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntRange(_Strict):
    """Integers ``low``..``high`` (inclusive) by ``step``, optionally log-uniform."""

    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log range needs low >= 1 and step 1")
        return self


class FloatRange(_Strict):
    """Reals in ``[low, high]``, optionally log-uniform (e.g. learning rates)."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


IntParam = int | list[int] | IntRange
FloatParam = float | list[float] | FloatRange


class SearchSpace(_Strict):
    """What a trial samples: a scalar is fixed, a list is a categorical choice, a
    mapping ``{low, high[, step][, log]}`` a range.

    Attributes
    ----------
    architecture
        Registered architectures to choose from.
    hidden, layers
        Model size (see :data:`ARCHITECTURE_ARGUMENTS` for each architecture's
        names); ``layers`` is not sampled for a TCN.
    lookback_days
        Context before the scored part of a training window (≥ 365).
    learning_rate, dropout
        AdamW learning rate and dropout.
    fixed_hparams
        Further constructor arguments per architecture (e.g. transformer ``heads``).
    """

    architecture: list[str] = Field(default_factory=lambda: ["lstm", "transformer", "tcn"])
    hidden: IntParam = Field(default_factory=lambda: [16, 32, 64])
    layers: IntParam = Field(default_factory=lambda: IntRange(low=1, high=2))
    lookback_days: IntParam = Field(default_factory=lambda: [365, 548, 730])
    learning_rate: FloatParam = Field(
        default_factory=lambda: FloatRange(low=1e-4, high=3e-3, log=True)
    )
    dropout: FloatParam = Field(default_factory=lambda: FloatRange(low=0.0, high=0.5))
    fixed_hparams: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"transformer": {"heads": 4}}
    )

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpace:
        if not self.architecture:
            raise ValueError("architecture must list at least one architecture")
        for name in self.architecture:
            try:
                model_class(name)
            except KeyError as err:
                raise ValueError(str(err.args[0])) from None
            if name not in ARCHITECTURE_ARGUMENTS:
                raise ValueError(
                    f"architecture {name!r} has no search mapping; "
                    f"searchable: {sorted(ARCHITECTURE_ARGUMENTS)}"
                )
        if min(_values(self.lookback_days)) < 365:
            raise ValueError("lookback_days must be >= 365 (a whole winter and its autumn)")
        heads = self.fixed_hparams.get("transformer", {}).get("heads")
        if "transformer" in self.architecture and heads:
            odd = [h for h in _values(self.hidden) if h % heads]
            if odd or (isinstance(self.hidden, IntRange) and self.hidden.step % heads):
                raise ValueError(
                    f"hidden values {odd or self.hidden} are not multiples of the "
                    f"transformer's heads ({heads})"
                )
        return self


def _values(param: Any) -> list[Any]:
    """Listed values of a parameter (a range's bounds)."""
    if isinstance(param, IntRange | FloatRange):
        return [param.low, param.high]
    return list(param) if isinstance(param, list) else [param]


class PrunerConfig(_Strict):
    """How trials are stopped early on their per-epoch validation score.

    ``median``: stop a trial whose best value so far is worse than the median of
    earlier trials at the same epoch (after ``n_startup_trials`` trials and
    ``n_warmup_steps`` epochs). ``threshold``: stop when it exceeds ``upper``.
    ``none``: never stop.
    """

    kind: Literal["median", "threshold", "none"] = "median"
    n_startup_trials: int = Field(3, ge=0)
    n_warmup_steps: int = Field(3, ge=0)
    upper: float | None = None

    @model_validator(mode="after")
    def _upper(self) -> PrunerConfig:
        if self.kind == "threshold" and self.upper is None:
            raise ValueError("a threshold pruner needs 'upper'")
        return self

    def build(self) -> optuna.pruners.BasePruner:
        """The optuna pruner."""
        if self.kind == "median":
            return optuna.pruners.MedianPruner(
                n_startup_trials=self.n_startup_trials, n_warmup_steps=self.n_warmup_steps
            )
        if self.kind == "threshold":
            return optuna.pruners.ThresholdPruner(
                upper=self.upper, n_warmup_steps=self.n_warmup_steps
            )
        return optuna.pruners.NopPruner()


class SearchConfig(_Strict):
    """The ``search`` section of a tune job.

    Attributes
    ----------
    study_name
        Name of the optuna study in the storage.
    storage
        SQLite file (relative to the job file); its folder is the study
        directory unless ``--study-dir`` is given.
    trials
        Total trials of the study (finished = complete or pruned); a rerun runs
        only the missing ones.
    timeout_seconds
        Wall-time limit of one invocation's search (None: none).
    sampler, seed
        ``tpe`` or ``random``; seeded with ``seed`` + the trials already in the
        study, so a resumed search does not replay the first draws.
    pruner
        See :class:`PrunerConfig`.
    members_per_trial
        Members trained per trial (1: cheapest; the ensemble is compared later).
    epochs
        Maximum epochs per trial (None: ``training.epochs``).
    space
        See :class:`SearchSpace`.
    top_k
        Configurations retrained as full ensembles and compared on the test winters.
    final_members
        Members of those ensembles (None: ``training.members``).
    plots
        Write optuna's optimisation history, intermediate values and importances.
    torch_threads
        Torch intra-op threads in this process while tuning (None: torch's
        default). 1 by default: a small sequence model's steps are too fine for
        thread synchronisation to pay, and on a loaded 2-core machine an LSTM
        pass over 12 years ran 20× faster on one thread than on two.
    """

    study_name: str = "cascadia"
    storage: str = "tune/study.db"
    trials: int = Field(20, ge=1)
    timeout_seconds: float | None = Field(None, gt=0)
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    members_per_trial: int = Field(1, ge=1)
    epochs: int | None = Field(None, ge=1)
    space: SearchSpace = Field(default_factory=SearchSpace)
    top_k: int = Field(3, ge=1)
    final_members: int | None = Field(None, ge=1)
    plots: bool = True
    torch_threads: int | None = Field(1, ge=1)


@dataclass(frozen=True)
class TuneJob:
    """A validated tune job: a training job (data, splits, base training settings)
    plus its ``search`` section."""

    train: TrainJob
    search: SearchConfig

    def storage_path(self, study_dir: str | Path | None = None) -> Path:
        """The SQLite file: in ``study_dir`` if given, else as the job names it."""
        name = Path(self.search.storage)
        if study_dir is not None:
            return Path(study_dir).resolve() / name.name
        return Path(self.train.resolve(self.search.storage))


def _where(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def load_tune_job(path: str | Path) -> TuneJob:
    """Read and validate a tune job YAML (``yaml.safe_load``).

    Raises
    ------
    JobError
        Naming the file and each offending field.
    """
    path = Path(path)
    data = read_job_yaml(path)
    if "search" not in data:
        raise JobError(f"{path}: a tune job needs a 'search' section (docs/tuning.md)")
    search_data_ = data.pop("search") or {}
    errors: list[str] = []
    train = search = None
    try:
        train = TrainJob.model_validate({**data, "path": str(path.resolve())})
    except ValidationError as exc:
        errors += [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors()]
    try:
        search = SearchConfig.model_validate(search_data_)
    except ValidationError as exc:
        errors += [f"search.{_where(e['loc'])}: {e['msg']}" for e in exc.errors()]
    if train is not None and search is not None:
        longest = max(_values(search.space.lookback_days))
        if longest > train.targets.spinup_days:
            errors.append(
                f"search.space.lookback_days: up to {longest} days, more than "
                f"targets.spinup_days ({train.targets.spinup_days})"
            )
    if errors or train is None or search is None:
        raise JobError(f"{path}: invalid tune job:\n  " + "\n  ".join(errors))
    return TuneJob(train=train, search=search)


# ---------------------------------------------------------------------- search


def search_data(
    series: Any, winters: npt.NDArray[np.int64], test_winters: Sequence[int]
) -> SeriesData:
    """The data a search may see: test-winter targets and event days set to NaN.

    Parameters
    ----------
    series : AlignedSeries
        The job's aligned series.
    winters : numpy.ndarray
        Winter of each day.
    test_winters : sequence of int
        Winters held out for the final comparison.
    """
    hidden = np.isin(winters, list(test_winters))[:, None]
    return SeriesData(
        time=series.time,
        predictors=series.predictors,
        targets=np.where(hidden, np.nan, series.anomaly),
        feature_names=series.feature_names,
        events=np.where(hidden, np.nan, series.events),
        depths=series.depths,
    )


def _suggest(trial: optuna.Trial, name: str, param: Any) -> Any:
    if isinstance(param, IntRange):
        return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
    if isinstance(param, FloatRange):
        return trial.suggest_float(name, param.low, param.high, log=param.log)
    if isinstance(param, list):
        return param[0] if len(param) == 1 else trial.suggest_categorical(name, param)
    return param


def suggest_candidate(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Sample one configuration: ``architecture``, ``hparams``, ``lookback_days``,
    ``learning_rate`` (only the arguments the architecture uses are sampled)."""
    arch = _suggest(trial, "architecture", space.architecture)
    names = ARCHITECTURE_ARGUMENTS[arch]
    lookback = int(_suggest(trial, "lookback_days", space.lookback_days))
    hparams = dict(space.fixed_hparams.get(arch, {}))
    hparams[names["hidden"]] = int(_suggest(trial, "hidden", space.hidden))
    if "layers" in names:
        hparams[names["layers"]] = int(_suggest(trial, "layers", space.layers))
    if "lookback_days" in names:
        hparams[names["lookback_days"]] = lookback
    hparams[names["dropout"]] = float(_suggest(trial, "dropout", space.dropout))
    return {
        "architecture": arch,
        "hparams": hparams,
        "lookback_days": lookback,
        "learning_rate": float(_suggest(trial, "learning_rate", space.learning_rate)),
    }


def candidate_config(
    base: TrainingConfig,
    candidate: Mapping[str, Any],
    members: int,
    epochs: int | None = None,
    *,
    trial: bool = False,
) -> TrainingConfig:
    """The base training settings with a candidate's hyperparameters.

    The base's candidate selection scales with the ensemble size (twice as many
    candidates as members in the base → twice as many here). A search ``trial``
    always trains on the fixed split (its score is the validation winters'); a
    retrained ensemble keeps the base's cross-fitting, with at most one fold per
    member.
    """
    data = base.model_dump()
    ratio = base.n_candidates / base.members
    folds = None if trial or base.folds is None or members < 2 else min(base.folds, members)
    data.update(
        architecture=candidate["architecture"],
        hparams=dict(candidate["hparams"]),
        architectures=None,
        lookback_days=candidate["lookback_days"],
        learning_rate=candidate["learning_rate"],
        members=members,
        candidates=None if base.candidates is None else math.ceil(ratio * members),
        seeds=None,
        epochs=epochs or base.epochs,
        folds=folds,
    )
    return TrainingConfig.model_validate(data)


def _validation_crps(
    ensemble: DeepEnsemble, data: SeriesData, validation: npt.NDArray[np.bool_]
) -> list[float]:
    """Mixture CRPS (°C) of the anomaly on validation days, per depth."""
    pred = ensemble.predict(data.predictors, data.time)
    obs = np.where(validation[:, None], data.targets, np.nan)
    crps = crps_mixture(
        obs,
        np.moveaxis(pred.member_mean, 0, -1),
        np.moveaxis(pred.member_std, 0, -1),
        reduce=False,
    )
    return [float(np.nanmean(crps[:, j])) for j in range(obs.shape[1])]


def make_objective(
    job: TuneJob, data: SeriesData, device: str = "cpu"
) -> Callable[[optuna.Trial], float]:
    """The optuna objective: validation CRPS (°C, mean of depths) of one trial.

    ``data`` is what the search may see (:func:`search_data`): test winters
    carry no target. Each epoch's validation CRPS (standardised) is reported at
    step ``member · epochs + epoch``; a pruned trial raises ``optuna.TrialPruned``.
    """
    base = job.train.training
    search = job.search

    on = resolve_device(device)

    def objective(trial: optuna.Trial) -> float:
        started = _time.perf_counter()
        candidate = suggest_candidate(trial, search.space)
        trial.set_user_attr("candidate", candidate)
        config = candidate_config(
            base, candidate, search.members_per_trial, search.epochs, trial=True
        )
        prepared, norm = prepare_series(data, config)
        results = []
        for index in range(config.members):

            def report(epoch: int, row: dict[str, float], index: int = index) -> None:
                # Validation CRPS of the epoch (standardised units, the objective's
                # metric); the NLL where the training loop does not compute it.
                score = row["val_crps"] if "val_crps" in row else row["val_nll"]
                trial.report(score, index * config.epochs + epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch} (member {index})")

            results.append(train_member(config, prepared, index, on_epoch=report, device=on))
        ensemble = DeepEnsemble(
            members=[r.model() for r in results],  # type: ignore[misc]
            normalisation=norm,
            config=config.resolved(),
            seeds=[r.seed for r in results],
        )
        per_depth = _validation_crps(ensemble, data, prepared.validation)
        trial.set_user_attr(
            "validation_crps", dict(zip(_keys(data.depths), per_depth, strict=True))
        )
        trial.set_user_attr("best_epochs", [r.best_epoch for r in results])
        trial.set_user_attr("seconds", _time.perf_counter() - started)
        value = float(np.mean(per_depth))
        if not math.isfinite(value):  # diverged: recorded as FAIL (caught by optimize)
            raise ValueError(f"trial {trial.number}: non-finite validation CRPS")
        return value

    return objective


def _keys(depths: Sequence[float]) -> list[str]:
    return [f"{d:g}" for d in depths]


def open_study(job: TuneJob, storage_path: Path) -> optuna.Study:
    """Create or reopen the SQLite study (a heartbeat marks trials of a killed run failed)."""
    storage_path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{storage_path}", heartbeat_interval=30, grace_period=120
        )
    return optuna.create_study(
        storage=storage,
        study_name=job.search.study_name,
        direction="minimize",
        load_if_exists=True,
        pruner=job.search.pruner.build(),
    )


def _sampler(search: SearchConfig, done: int) -> optuna.samplers.BaseSampler:
    seed = search.seed + done
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def run_search(
    job: TuneJob,
    data: SeriesData,
    storage_path: Path,
    trials: int | None = None,
    log: Callable[[str], None] = print,
    device: str = "cpu",
) -> optuna.Study:
    """Run the trials the study still lacks (``trials`` overrides ``search.trials``), each
    trial's members trained on ``device``."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return _search(job, data, storage_path, trials, log, device)
    finally:
        optuna.logging.set_verbosity(level)


def _search(
    job: TuneJob,
    data: SeriesData,
    storage_path: Path,
    trials: int | None,
    log: Callable[[str], None],
    device: str,
) -> optuna.Study:
    study = open_study(job, storage_path)
    total = trials or job.search.trials
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    missing = max(total - done, 0)
    log(f"study {job.search.study_name!r} in {storage_path}: {done} finished, {missing} to run")
    if missing:
        study.sampler = _sampler(job.search, len(study.trials))
        started, ran = _time.perf_counter(), [0]

        def show(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            cand = trial.user_attrs.get("candidate", {})
            what = f"{cand.get('architecture')} {cand.get('hparams')}"
            ran[0] += 1
            elapsed = _time.perf_counter() - started
            left = elapsed / ran[0] * (missing - ran[0])
            where = f"{ran[0]}/{missing}, {elapsed:.0f} s elapsed, about {left:.0f} s left"
            if trial.state == optuna.trial.TrialState.COMPLETE:
                best = study.best_value
                log(
                    f"trial {trial.number}: validation CRPS {trial.value:.4f} °C ({what}); "
                    f"best {best:.4f} °C; {where}"
                )
            else:
                log(f"trial {trial.number}: {trial.state.name.lower()} ({what}); {where}")

        study.optimize(
            make_objective(job, data, device),
            n_trials=missing,
            timeout=job.search.timeout_seconds,
            callbacks=[show],
            gc_after_trial=True,
            catch=(ValueError,),
        )
    return study


# ------------------------------------------------------------------ comparison


@dataclass(frozen=True)
class Candidate:
    """A configuration retrained as a full ensemble for the comparison."""

    rank: int
    trial: int
    validation_crps: float
    candidate: dict[str, Any]
    forecast: Forecast


def top_trials(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """The ``k`` complete trials with the lowest validation CRPS (distinct configurations)."""
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    chosen: list[optuna.trial.FrozenTrial] = []
    seen: set[str] = set()
    for trial in sorted(complete, key=lambda t: (t.value, t.number)):
        key = repr(sorted(trial.user_attrs["candidate"].items()))
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
        if len(chosen) == k:
            break
    return chosen


def _forecast(name: str, ensemble: DeepEnsemble, prepared: JobSeries, job: TrainJob) -> Forecast:
    series = prepared.series
    pred = ensemble.predict(series.predictors, series.time)
    q = list(pred.quantile_levels)
    bg = series.background
    return Forecast(
        name=name,
        member_mean=bg[None] + pred.member_mean,
        member_std=pred.member_std,
        lower=bg + pred.quantiles[q.index(0.05)],
        upper=bg + pred.quantiles[q.index(0.95)],
        events=forecast_events(pred.mean, series.time, series.depths, job.events),
    )


def retrain_candidates(
    job: TuneJob,
    trials: Sequence[optuna.trial.FrozenTrial],
    prepared: JobSeries,
    data: SeriesData,
    directory: Path,
    log: Callable[[str], None] = print,
    device: str = "cpu",
) -> list[Candidate]:
    """Train each top trial's configuration as a full ensemble (``candidates/trial_NNNN``)."""
    base = job.train.training
    members = job.search.final_members or base.members
    out = []
    for rank, trial in enumerate(trials, start=1):
        cand = trial.user_attrs["candidate"]
        config = candidate_config(base, cand, members)
        started = _time.perf_counter()
        target = directory / "candidates" / f"trial_{trial.number:04d}"
        ensemble = train_ensemble(config, data, target, overwrite=True, device=device)
        save_feature_spec(target, job.train.features)
        log(
            f"rank {rank}: trial {trial.number} retrained as {members} members "
            f"in {_time.perf_counter() - started:.1f} s"
        )
        forecast = _forecast(f"trial_{trial.number}", ensemble, prepared, job.train)
        out.append(Candidate(rank, trial.number, float(trial.value), cand, forecast))
    return out


def compare_candidates(
    candidates: Sequence[Candidate], prepared: JobSeries, job: TuneJob
) -> dict[str, Any]:
    """Test-winter CRPS of each candidate and its difference from rank 1.

    The reference is the search's best (rank 1, chosen on validation winters, never
    on test winters). Per depth: ``crps`` (all test days), the paired bootstrap of
    :func:`cascadia.learning.evaluation.bootstrap_crps_difference` (day-weighted
    difference, percentile CI), and :func:`cascadia.learning.evaluation.diebold_mariano`
    on the per-winter mean CRPS differences.
    """
    series, winters = prepared.series, prepared.winters
    cfg, ev = job.train.training, job.train.evaluation
    test = np.isin(winters, cfg.test_winters)
    observed = np.where(test[:, None], series.temperature, np.nan)
    reference = candidates[0]
    rows = []
    for cand in candidates:
        crps = cand.forecast.crps(observed)
        boot = bootstrap_crps_difference(
            cand.forecast,
            reference.forecast,
            observed,
            winters,
            cfg.test_winters,
            series.depths,
            samples=ev.bootstrap_samples,
            confidence=ev.confidence,
            seed=ev.seed,
        )
        per_depth = {}
        for j, depth in enumerate(_keys(series.depths)):
            per_winter = boot[depth]["per_winter"]
            a, b = cand.forecast.name, reference.forecast.name
            winter_crps = {
                w: {"crps": v[a], "reference_crps": v[b], "days": v["days"]}
                for w, v in per_winter.items()
            }
            diffs = [
                v[a] - v[b] for v in per_winter.values() if v[a] is not None and v[b] is not None
            ]
            dm = diebold_mariano(diffs, horizon=1, confidence=ev.confidence)
            per_depth[depth] = {
                "crps": float(np.nanmean(crps[:, j])),
                "difference": boot[depth]["difference"],
                "bootstrap_ci": [boot[depth]["ci_low"], boot[depth]["ci_high"]],
                "p_not_better": boot[depth]["p_a_not_better"],
                "dm": dm,
                "per_winter": winter_crps,
            }
        rows.append(
            {
                "rank": cand.rank,
                "trial": cand.trial,
                "validation_crps": cand.validation_crps,
                "candidate": cand.candidate,
                "test": per_depth,
            }
        )
    return {
        "reference": {"rank": 1, "trial": reference.trial},
        "test_winters": list(cfg.test_winters),
        "depths": _keys(series.depths),
        "bootstrap": {"samples": ev.bootstrap_samples, "seed": ev.seed},
        "confidence": ev.confidence,
        "difference": "candidate minus reference, degC; < 0: candidate better",
        "candidates": rows,
    }


# ---------------------------------------------------------------------- writing

CSV_COLUMNS = (
    "rank",
    "trial",
    "architecture",
    "hidden",
    "layers",
    "lookback_days",
    "learning_rate",
    "dropout",
    "validation_crps",
    "depth",
    "test_crps",
    "difference",
    "bootstrap_ci_low",
    "bootstrap_ci_high",
    "dm_statistic",
    "dm_p_value",
    "dm_mean",
    "dm_ci_low",
    "dm_ci_high",
    "n_winters",
)


def comparison_rows(comparison: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat row per candidate and depth (the CSV and markdown table)."""
    rows = []
    for row in comparison["candidates"]:
        cand = row["candidate"]
        names = ARCHITECTURE_ARGUMENTS[cand["architecture"]]
        hp = cand["hparams"]
        for depth, score in row["test"].items():
            dm = score["dm"]
            rows.append(
                {
                    "rank": row["rank"],
                    "trial": row["trial"],
                    "architecture": cand["architecture"],
                    "hidden": hp.get(names["hidden"]),
                    "layers": hp.get(names["layers"]) if "layers" in names else None,
                    "lookback_days": cand["lookback_days"],
                    "learning_rate": cand["learning_rate"],
                    "dropout": hp.get(names["dropout"]),
                    "validation_crps": row["validation_crps"],
                    "depth": depth,
                    "test_crps": score["crps"],
                    "difference": score["difference"],
                    "bootstrap_ci_low": score["bootstrap_ci"][0],
                    "bootstrap_ci_high": score["bootstrap_ci"][1],
                    "dm_statistic": dm["statistic"],
                    "dm_p_value": dm["p_value"],
                    "dm_mean": dm["mean"],
                    "dm_ci_low": dm["ci_low"],
                    "dm_ci_high": dm["ci_high"],
                    "n_winters": dm["n"],
                }
            )
    return rows


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def comparison_markdown(comparison: Mapping[str, Any], study: str) -> str:
    """The comparison as a markdown table (one row per candidate and depth)."""
    level = f"{comparison['confidence']:.0%}"
    lines = [
        f"# Top configurations of study `{study}` on the test winters",
        "",
        f"Test winters {comparison['test_winters']}; reference: rank 1 (trial "
        f"{comparison['reference']['trial']}, best validation CRPS). Δ = candidate − "
        f"reference (°C, < 0: candidate better): day-weighted over all test days with a "
        f"paired bootstrap {level} interval over winters "
        f"({comparison['bootstrap']['samples']} resamples); DM: Diebold–Mariano statistic "
        f"with the Harvey small-sample correction on the per-winter mean CRPS "
        f"differences (Student t, n − 1 df), its two-sided p and the {level} interval of "
        "the mean per-winter difference.",
        "",
        "| rank | trial | architecture | hidden | layers | lookback | lr | dropout "
        "| val CRPS | depth | test CRPS | Δ | bootstrap CI | DM | p | mean Δ per winter (CI) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in comparison_rows(comparison):
        first = r["rank"] == 1
        lines.append(
            f"| {r['rank']} | {r['trial']} | {r['architecture']} | {r['hidden']} "
            f"| {_num(r['layers'], 'd')} | {r['lookback_days']} | {r['learning_rate']:.2e} "
            f"| {r['dropout']:.2f} | {r['validation_crps']:.4f} | {r['depth']} "
            f"| {r['test_crps']:.4f} | "
            + (
                "reference | | | | |"
                if first
                else f"{_num(r['difference'], '+.4f')} "
                f"| [{_num(r['bootstrap_ci_low'], '+.4f')}, "
                f"{_num(r['bootstrap_ci_high'], '+.4f')}] "
                f"| {_num(r['dm_statistic'], '+.2f')} | {_num(r['dm_p_value'], '.3f')} "
                f"| {_num(r['dm_mean'], '+.4f')} [{_num(r['dm_ci_low'], '+.4f')}, "
                f"{_num(r['dm_ci_high'], '+.4f')}] |"
            )
        )
    return "\n".join(lines) + "\n"


def write_comparison(directory: Path, comparison: Mapping[str, Any], study: str) -> list[Path]:
    """``comparison.json``, ``comparison.csv`` and ``comparison.md`` in the study directory."""
    paths = [directory / f"comparison.{ext}" for ext in ("json", "csv", "md")]
    write_json(paths[0], comparison)
    with paths[1].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(comparison_rows(comparison))
    paths[2].write_text(comparison_markdown(comparison, study), encoding="utf-8")
    return paths


def write_plots(study: optuna.Study, directory: Path, log: Callable[[str], None]) -> list[Path]:
    """Optuna's optimisation history, intermediate values and importances as PNG."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = {
        "optimization_history": ovm.plot_optimization_history,
        "intermediate_values": ovm.plot_intermediate_values,
        "param_importances": ovm.plot_param_importances,
    }
    written = []
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = plot(study)
        except (ValueError, RuntimeError) as exc:
            log(f"no {name} plot: {exc}")
            continue
        fig = np.ravel(ax)[0].figure
        path = directory / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _write_best_job(job: TuneJob, candidate: Mapping[str, Any], directory: Path) -> Path:
    """A train job with the best configuration, ready for ``cascadia-ensemble train``."""
    base = job.train.training
    config = candidate_config(base, candidate, base.members)
    resolved = job.train.resolved().model_dump(mode="json")
    resolved.pop("path", None)
    training = config.model_dump(mode="json", exclude_defaults=True)
    # what the search chose is always written, even where it equals a default
    full = config.model_dump(mode="json")
    training.update({k: full[k] for k in ("architecture", "lookback_days", "hparams") if k in full})
    resolved["training"] = training
    resolved["output"] = str(directory / "best-model")
    path = directory / "best-train-job.yaml"
    path.write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------------- job


@dataclass
class TuneResult:
    """What a tune job produced.

    Attributes
    ----------
    directory : Path
        Study directory (SQLite file, comparison tables, plots, candidates).
    storage : Path
        SQLite file of the study.
    states : dict
        Number of trials per state (``COMPLETE``, ``PRUNED``, ``FAIL``…).
    best : dict
        Best trial: number, validation CRPS, configuration.
    comparison : dict
        The comparison (``comparison.json``).
    """

    directory: Path
    storage: Path
    states: dict[str, int]
    best: dict[str, Any]
    comparison: dict[str, Any]


def run_tune_job(
    job: TuneJob,
    study_dir: str | Path | None = None,
    trials: int | None = None,
    *,
    log: Callable[[str], None] = print,
    device: str = "auto",
) -> TuneResult:
    """Search, retrain the top-K configurations and compare them on the test winters.

    Parameters
    ----------
    job : TuneJob
        The validated job.
    study_dir : str or Path, optional
        Study directory (default: the storage file's folder).
    trials : int, optional
        Total trials of the study (overrides ``search.trials``).
    log : callable
        Receives one line per step.
    device : str
        Where every trial and retrained candidate trains (``auto``: a GPU when torch
        sees one; ``cpu``, ``cuda``, ``cuda:N``).

    Raises
    ------
    JobError, ObservationError, TargetError
        Bad input, or no trial completed.
    DeviceError
        ``device`` names a GPU torch does not see (before any work).
    """
    resolve_device(device)
    threads = torch.get_num_threads()
    if job.search.torch_threads is not None:
        torch.set_num_threads(job.search.torch_threads)
    try:
        return _run(job, job.storage_path(study_dir), trials, log, device)
    finally:
        torch.set_num_threads(threads)


def _run(
    job: TuneJob, storage: Path, trials: int | None, log: Callable[[str], None], device: str
) -> TuneResult:
    directory = storage.parent
    prepared = prepare_job_series(job.train, log)
    data = search_data(prepared.series, prepared.winters, job.train.training.test_winters)
    study = run_search(job, data, storage, trials, log, device)
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    chosen = top_trials(study, job.search.top_k)
    if not chosen:
        raise JobError(
            f"study {job.search.study_name!r} has no completed trial to compare ({states}); "
            "relax the pruner or run more trials"
        )
    candidates = retrain_candidates(job, chosen, prepared, data, directory, log, device)
    comparison = compare_candidates(candidates, prepared, job)
    write_comparison(directory, comparison, job.search.study_name)
    with open(directory / "trials.csv", "w", encoding="utf-8") as fh:
        study.trials_dataframe().to_csv(fh, index=False)
    best = {
        "trial": chosen[0].number,
        "validation_crps": chosen[0].value,
        "candidate": chosen[0].user_attrs["candidate"],
    }
    _write_best_job(job, best["candidate"], directory)
    write_json(
        directory / "study.json", {"study": job.search.study_name, "states": states, "best": best}
    )
    if job.search.plots:
        write_plots(study, directory, log)
    log(f"comparison of {len(candidates)} configurations → {directory / 'comparison.md'}")
    return TuneResult(directory, storage, states, best, comparison)
