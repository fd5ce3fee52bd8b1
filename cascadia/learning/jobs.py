"""Job configs: what ``cascadia-ensemble train --job FILE`` trains, on what, and how it is scored.

A training job names, in one YAML file validated where it enters (pydantic,
``extra="forbid"``: a misspelt key is an error, never silently ignored):

* ``predictors`` — the run catalog and source (e.g. the twin's
  ``catalogs/reanalysis.yaml``, source ``era5``), the predictor cache that
  holds its canonical daily predictors;
* ``features`` — a :class:`cascadia.learning.features.FeatureSpec` (variable and region
  subsets, the physics-shaped buoyancy-loss columns);
* ``observations`` — a :class:`cascadia.mooring.observations.ObservationConfig`;
* ``targets`` — the background treatment (:class:`cascadia.mooring.targets.BackgroundConfig`)
  and the predictor spin-up kept before the first observation;
* ``events`` — a :class:`cascadia.mooring.events.EventConfig` (thresholds, background window);
* ``calibration`` — a :class:`cascadia.learning.calibration.CalibrationConfig` (the event rule);
* ``training`` — a :class:`cascadia.learning.training.TrainingConfig` (winters, members,
  architectures, seeds);
* ``evaluation`` — bootstrap settings;
* ``output`` — the model directory (``--out`` overrides it).

Relative paths are relative to the job file (as run catalogs' paths are
relative to the catalog), so a job and the data beside it move together.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cascadia.learning.calibration import CalibrationConfig
from cascadia.learning.features import FeatureSpec
from cascadia.learning.training import TrainingConfig
from cascadia.mooring.events import EventConfig
from cascadia.mooring.observations import ObservationConfig
from cascadia.mooring.targets import BackgroundConfig
from cascadia.sources.ocean_analysis import OceanAnalysisConfig

__all__ = [
    "EvaluationConfig",
    "JobError",
    "PredictorSpec",
    "TargetSpec",
    "TrainJob",
    "load_train_job",
    "read_job_yaml",
    "smoke_train_job",
]


class JobError(ValueError):
    """A job file is unreadable or invalid, or the job cannot run on its inputs."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictorSpec(_Strict):
    """Where the predictors come from.

    Attributes
    ----------
    catalog
        Run catalog (path or URL).
    source
        Source of the catalog to train on (the reference reanalysis).
    combo
        Labels selecting one combination (``member_id: r1``…) when the source
        has several; empty for a single-combination source such as ERA5.
    cache
        Predictor cache folder or fsspec URL; filled if the source is not cached.
    cache_storage_options
        fsspec options of the cache.
    """

    catalog: str
    source: str
    combo: dict[str, str] = Field(default_factory=dict)
    cache: str
    cache_storage_options: dict[str, Any] = Field(default_factory=dict)


class TargetSpec(_Strict):
    """Targets: anomalies against a background (see :mod:`cascadia.mooring.targets`).

    Attributes
    ----------
    background
        How the background is estimated and projected.
    spinup_days
        Predictor days kept before the first observed day (≥ the lookback, so
        that the first observed days can be scored with a full year of context).
    before_record
        An ocean analysis whose changes, anchored on the record, give the background
        before the record (:mod:`cascadia.learning.before_record`); the background's
        ``extrapolation`` then applies after the record and before the analysis only.
    """

    background: BackgroundConfig = Field(default_factory=BackgroundConfig)
    spinup_days: int = Field(730, ge=0)
    before_record: OceanAnalysisConfig | None = None


class EvaluationConfig(_Strict):
    """Scoring on the test winters.

    Attributes
    ----------
    bootstrap_samples
        Resamples of the bootstraps over test winters (ensemble vs best member in
        ``comparison.json``; the CRPS skill intervals against each baseline in
        ``metrics.json``'s ``verification`` section).
    seed
        Seed of the bootstrap.
    confidence
        Level of the bootstrap intervals.
    report
        Write the markdown + PNG report.
    warm_split
        Also train the same design on the colder two thirds of the job's winters
        (by Nov–Apr mean air temperature of the shelf) and score it on the warmest
        third: ``metrics.json``'s ``warm_split`` section (an extrapolation check;
        it trains a second ensemble, doubling the training time).
    cold_split
        The mirror: trained on the warmer two thirds, scored on the coldest third
        (``cold_split``): how the design extrapolates to the colder, more strongly
        cascading winters of the hindcasts before the record. Another ensemble.
    strong_split
        Trained without the strongest tenth of the winters by their cascade, scored on them
        (``strong_split``): how the design reaches cascades stronger than any it learned
        from, which a cold split cannot ask when the coldest third holds nearly every
        cascade (:mod:`cascadia.learning.extrapolation_split`). Another ensemble.
    """

    bootstrap_samples: int = Field(2000, ge=100)
    seed: int = 0
    confidence: float = Field(0.95, gt=0, lt=1)
    report: bool = True
    warm_split: bool = False
    cold_split: bool = False
    strong_split: bool = False


class TrainJob(_Strict):
    """A validated training job; ``path`` is the job file (for relative paths)."""

    predictors: PredictorSpec
    features: FeatureSpec = Field(default_factory=FeatureSpec)
    observations: ObservationConfig
    targets: TargetSpec = Field(default_factory=TargetSpec)
    events: EventConfig = Field(default_factory=EventConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    training: TrainingConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    output: str | None = None
    path: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> TrainJob:
        if not self.training.test_winters:
            raise ValueError("training.test_winters must list the winters to evaluate on")
        if self.targets.spinup_days < self.training.lookback_days:
            raise ValueError(
                f"targets.spinup_days ({self.targets.spinup_days}) must be at least "
                f"training.lookback_days ({self.training.lookback_days})"
            )
        if self.events.winter_start_month != self.training.winter_start_month:
            raise ValueError("events and training must use the same winter_start_month")
        return self

    def resolve(self, location: str) -> str:
        """A path or URL relative to the job file's folder."""
        if "://" in location or posixpath.isabs(location) or not self.path:
            return location
        return str((Path(self.path).parent / location).resolve())

    def resolved(self) -> TrainJob:
        """The same job with every path made absolute (recorded in the model directory)."""
        data = self.model_dump()
        data["predictors"]["catalog"] = self.resolve(self.predictors.catalog)
        data["predictors"]["cache"] = self.resolve(self.predictors.cache)
        data["observations"]["path"] = self.resolve(self.observations.path)
        analysis = self.targets.before_record
        if analysis is not None:
            data["targets"]["before_record"]["path"] = self.resolve(analysis.path)
        if self.output is not None:
            data["output"] = self.resolve(self.output)
        return TrainJob.model_validate(data)


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def read_job_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a job file (``yaml.safe_load``), or a JobError naming it."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobError(f"{path}: no such job file") from None
    except yaml.YAMLError as exc:
        raise JobError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise JobError(f"{path}: expected a mapping at the top level")
    return data


def load_train_job(path: str | Path) -> TrainJob:
    """Read and validate a training job YAML (``yaml.safe_load``).

    Raises
    ------
    JobError
        Naming the file and, for invalid content, each offending field.
    """
    path = Path(path)
    data = read_job_yaml(path)
    try:
        return TrainJob.model_validate({**data, "path": str(path.resolve())})
    except ValidationError as exc:
        lines = [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise JobError(f"{path}: invalid training job:\n  " + "\n  ".join(lines)) from None


def smoke_train_job(world: str | Path, cache: str, **training: Any) -> dict[str, Any]:
    """A tiny 2-member LSTM job on a twin world's ERA5: seconds to train, scores meaningless.

    For tests and benchmarks that need *a* model directory, not a good one; keys of
    ``training`` override the training section (e.g. other winters for a shorter world).
    """
    root = Path(world)
    return {
        "predictors": {
            "catalog": str(root / "catalogs" / "reanalysis.yaml"),
            "source": "era5",
            "cache": cache,
        },
        "features": {
            "variables": ["hurs", "pr", "psl", "sfcWind", "tas", "uas", "vas"],
            "physics": False,
        },
        "observations": {"path": str(root / "observations" / "lacaze-duthiers.nc")},
        "targets": {"spinup_days": 365},
        "training": {
            "architecture": "lstm",
            "hparams": {"hidden": 8},
            "members": 2,
            "seed": 1,
            "lookback_days": 365,
            "window_days": 60,
            "batch_size": 2,
            "batches_per_epoch": 1,
            "epochs": 1,
            "patience": 1,
            "workers": 1,
            "train_winters": [2006, 2007, 2009, 2010],
            "validation_winters": [2008, 2011],
            "test_winters": [2012, 2013],
            **training,
        },
        "evaluation": {"bootstrap_samples": 100, "report": False},
    }
