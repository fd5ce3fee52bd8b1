"""Training a deep ensemble: config, winter splits, the member loop, parallel members.

The model learns daily 500 m / 1000 m temperature anomalies (and event days)
from long windows of daily predictors:

* **Splits by winter** — training, validation and test winters are listed
  explicitly (a winter *Y*: 1 November *Y − 1* to 31 October *Y*). Days are
  never shuffled across the split: neighbouring days of one winter are nearly
  the same sample. With ``folds`` the training and validation winters form one
  pool and the validation fold rotates among the candidates (:mod:`cascadia.learning.folds`).
* **Normalisation** statistics come from the winters the members learn from
  (training winters, or the pool with ``folds``), never the test winters.
* **Windows** — each batch holds random windows of ``lookback_days +
  window_days`` consecutive days; the loss is scored on the last
  ``window_days`` only, so every scored day has ≥ ``lookback_days`` (≥ 1 year)
  of context: the whole winter's cooling and the autumn's preconditioning.
  Context days may belong to any winter (predictors are inputs, never targets);
  only training-winter days are scored.
* **Loss** — Gaussian negative log-likelihood of the standardised anomaly
  (mean and variance are learned: aleatoric uncertainty), plus a weighted
  binary cross-entropy on event days.
* **Early stopping** on the validation NLL or CRPS (``early_stopping``),
  computed over the whole series in one pass (as at inference) and scored on
  validation-winter days; the best epoch's weights are kept.
* **Members** — M independently seeded members (optionally mixed
  architectures) trained in parallel processes, one thread each.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import multiprocessing as mp
import os
import time as _time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
import xarray as xr
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cascadia.learning.device import resolve_device
from cascadia.learning.ensemble import DeepEnsemble, Normalisation
from cascadia.learning.folds import assign_folds, fold_of, select_per_fold
from cascadia.learning.models import ModelOutput, build_model, model_class, predict_series
from cascadia.mooring.events import winter_labels

__all__ = [
    "ArchitectureSpec",
    "MemberResult",
    "PreparedSeries",
    "SeriesData",
    "TrainingConfig",
    "gaussian_nll",
    "prepare_series",
    "select_candidates",
    "train_ensemble",
    "train_member",
    "validation_crps",
]

_LOG_2PI = math.log(2.0 * math.pi)


class ArchitectureSpec(BaseModel):
    """One architecture and its hyperparameters (``n_features``/``n_depths`` excluded)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    hparams: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> ArchitectureSpec:
        try:
            model_class(self.name)
        except KeyError as err:
            raise ValueError(str(err.args[0])) from None
        reserved = {"n_features", "n_depths"} & set(self.hparams)
        if reserved:
            raise ValueError(f"{sorted(reserved)} are set from the data, not in hparams")
        return self


class TrainingConfig(BaseModel):
    """Everything that defines a trained ensemble, validated where it enters.

    Attributes
    ----------
    architecture, hparams
        Architecture of every member (registry name and hyperparameters).
    architectures
        Optional mixed ensemble: member *i* uses ``architectures[i % len]``
        (overrides ``architecture``/``hparams``).
    members
        Ensemble size M (5: the deep-ensemble default of Lakshminarayanan
        et al. 2017; more adds little).
    candidates
        Members trained before selection (None: ``members``): the ``members``
        candidates with the lowest validation CRPS (°C, mean of the depths;
        :func:`validation_crps`) are kept — with ``folds``, each fold's best in
        turn (:func:`cascadia.learning.folds.select_per_fold`). With a handful of
        training events a seed decides whether a member learns the cascades at all; the validation
        winters tell which did, the test winters never enter.
    seed, seeds
        Candidate *i* is seeded with ``seeds[i]`` if given, else ``seed + i``.
    lookback_days
        Context before the scored part of a training window (days, ≥ 365:
        cascading depends on the whole winter and the preceding autumn).
    window_days
        Scored days per training window.
    batch_size, batches_per_epoch
        Random windows per batch and batches per epoch.
    epochs, patience
        Maximum epochs; epochs without validation improvement before stopping.
    min_epochs
        Epochs trained before a best epoch is kept or stopping is considered:
        with a handful of validation winters the score is noisy, and an early
        lucky epoch (a member still near climatology) would otherwise win.
    learning_rate, weight_decay, grad_clip
        AdamW settings and gradient-norm clipping (None: no clipping).
    event_loss_weight
        Weight of the event BCE relative to the Gaussian NLL (0: off).
    nll_beta
        β of the β-NLL (Seitzer et al. 2022): each day's NLL is weighted by
        σ^(2β) (no gradient through the weight). With β = 0 (plain NLL) the
        mean's gradient scales with 1/σ², so a member can "explain" the rare
        cascading days by a wide variance and never learn their mean; β = 0.5
        restores the mean's gradient. Validation always uses the plain NLL.
    early_stopping
        Validation score that selects the best epoch and stops training:
        Gaussian NLL, or CRPS (less dominated by the few cascading days whose
        NLL explodes when a member is confidently wrong).
    train_winters, validation_winters, test_winters
        Disjoint lists of winter years.
    folds
        Cross-fitting (None: off): the training and validation winters form one
        pool split into this many folds stratified by cascade strength; candidate
        *i* learns from the pool outside fold ``i mod folds`` and validates on
        that fold, and the ensemble keeps each fold's best candidates in turn
        (:mod:`cascadia.learning.folds`). Why: with a fixed split the validation winters'
        cascades are never learned from; a handful of strong cascades is all the
        record has. Must not exceed ``members`` (every fold keeps a member).
    winter_start_month
        First month of a winter year (11).
    validation_segment_days
        Segment length of the validation pass (None: one pass).
    workers
        Parallel training processes (None: min(M, CPU cores)); 1 trains in
        this process.
    clamp_inputs
        Hold every standardised predictor inside the range the learning winters had in
        that calendar month, in training and in every later prediction (saved with the
        normalisation); the density gate's input stays free
        (:meth:`cascadia.learning.ensemble.Normalisation.clamped`).
    """

    model_config = ConfigDict(extra="forbid")

    architecture: str = "lstm"
    hparams: dict[str, Any] = Field(default_factory=dict)
    architectures: list[ArchitectureSpec] | None = None
    members: int = Field(5, ge=1)
    candidates: int | None = Field(None, ge=1)
    seed: int = 0
    seeds: list[int] | None = None
    lookback_days: int = Field(365, ge=365)
    window_days: int = Field(365, ge=1)
    batch_size: int = Field(8, ge=1)
    batches_per_epoch: int = Field(16, ge=1)
    epochs: int = Field(50, ge=1)
    patience: int = Field(8, ge=1)
    min_epochs: int = Field(1, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    event_loss_weight: float = Field(0.5, ge=0)
    nll_beta: float = Field(0.0, ge=0, le=1)
    early_stopping: Literal["nll", "crps"] = "nll"
    train_winters: list[int] = Field(min_length=1)
    validation_winters: list[int] = Field(min_length=1)
    test_winters: list[int] = Field(default_factory=list)
    folds: int | None = Field(None, ge=2)
    winter_start_month: int = Field(11, ge=1, le=12)
    validation_segment_days: int | None = Field(None, ge=1)
    workers: int | None = Field(None, ge=1)
    clamp_inputs: bool = False

    @field_validator("architecture")
    @classmethod
    def _registered(cls, name: str) -> str:
        try:
            model_class(name)
        except KeyError as err:
            raise ValueError(str(err.args[0])) from None
        return name

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        ArchitectureSpec(name=self.architecture, hparams=self.hparams)
        splits = {
            "train": set(self.train_winters),
            "validation": set(self.validation_winters),
            "test": set(self.test_winters),
        }
        names = list(splits)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                both = splits[a] & splits[b]
                if both:
                    raise ValueError(f"winters {sorted(both)} are in both {a} and {b}")
        if self.min_epochs > self.epochs:
            raise ValueError(f"min_epochs ({self.min_epochs}) exceeds epochs ({self.epochs})")
        if self.candidates is not None and self.candidates < self.members:
            raise ValueError(
                f"candidates ({self.candidates}) must be at least members ({self.members})"
            )
        if self.seeds is not None and len(self.seeds) != self.n_candidates:
            raise ValueError(f"{len(self.seeds)} seeds given for {self.n_candidates} candidates")
        if self.architectures is not None and not self.architectures:
            raise ValueError("architectures, when given, must not be empty")
        if self.folds is not None:
            pool = len(self.train_winters) + len(self.validation_winters)
            if self.folds > self.members:
                raise ValueError(
                    f"folds ({self.folds}) must not exceed members ({self.members}): "
                    "every fold keeps at least one member"
                )
            if self.folds > pool:
                raise ValueError(
                    f"folds ({self.folds}) exceed the {pool} training and validation winters"
                )
        return self

    def learning_winters(self) -> list[int]:
        """Winters whose targets the members learn from (normalisation, baselines)."""
        if self.folds is None:
            return list(self.train_winters)
        return sorted(self.train_winters + self.validation_winters)

    @property
    def n_candidates(self) -> int:
        """Members trained before the validation selection."""
        return self.candidates or self.members

    def candidate_seeds(self) -> list[int]:
        """Seed of each trained candidate."""
        return (
            list(self.seeds)
            if self.seeds is not None
            else [self.seed + i for i in range(self.n_candidates)]
        )

    def member_architecture(self, index: int) -> ArchitectureSpec:
        """Architecture of candidate ``index``."""
        if self.architectures:
            return self.architectures[index % len(self.architectures)]
        return ArchitectureSpec(name=self.architecture, hparams=self.hparams)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainingConfig:
        """Read and validate a YAML file (``yaml.safe_load``)."""
        return cls.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})

    def resolved(self) -> dict[str, Any]:
        """JSON-ready dict with the defaults and the member seeds filled in."""
        data = self.model_dump(mode="json")
        data["seeds"] = self.candidate_seeds()
        return data


@dataclass(frozen=True)
class SeriesData:
    """A daily series of predictors and targets in physical units.

    Attributes
    ----------
    time : numpy.ndarray
        ``(T,)`` consecutive daily stamps (datetime64 or cftime).
    predictors : numpy.ndarray
        ``(T, F)`` predictors in canonical units, columns named by
        ``feature_names``.
    targets : numpy.ndarray
        ``(T, D)`` temperature anomalies (°C), NaN where unobserved.
    feature_names : tuple of str
        Predictor names.
    events : numpy.ndarray, optional
        ``(T, D)`` event-day flags (1/0, NaN unknown), e.g. from
        :func:`cascadia.mooring.events.event_days` on the observed anomalies.
    depths : tuple of float
        Target depths (m).
    """

    time: Any
    predictors: npt.NDArray[np.floating[Any]]
    targets: npt.NDArray[np.floating[Any]]
    feature_names: tuple[str, ...]
    events: npt.NDArray[np.floating[Any]] | None = None
    depths: tuple[float, ...] = (500.0, 1000.0)

    def __post_init__(self) -> None:
        n = len(self.time)
        if self.predictors.ndim != 2 or self.predictors.shape[0] != n:
            raise ValueError(f"predictors must be (T={n}, F), got {self.predictors.shape}")
        if self.predictors.shape[1] != len(self.feature_names):
            raise ValueError("feature_names must name every predictor column")
        if self.targets.shape != (n, len(self.depths)):
            raise ValueError(
                f"targets must be (T={n}, {len(self.depths)}), got {self.targets.shape}"
            )
        if self.events is not None and self.events.shape != self.targets.shape:
            raise ValueError(f"events must have the targets' shape {self.targets.shape}")

    def winters(self, start_month: int = 11) -> npt.NDArray[np.int64]:
        """Winter year of each day."""
        da = xr.DataArray(np.asarray(self.time), dims="time")
        return np.asarray(winter_labels(da, start_month).values, dtype=np.int64)


@dataclass(frozen=True)
class PreparedSeries:
    """Model-ready arrays: standardised inputs/targets and split masks (float32)."""

    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.float32]
    events: npt.NDArray[np.float32]
    train: npt.NDArray[np.bool_]
    validation: npt.NDArray[np.bool_]
    #: Names of the predictor columns of ``x`` (the seasonal encodings follow them).
    feature_names: tuple[str, ...] = ()


def prepare_series(
    data: SeriesData, config: TrainingConfig, normalisation: Normalisation | None = None
) -> tuple[PreparedSeries, Normalisation]:
    """Standardise with the learning winters' statistics and build the split masks.

    The masks are the configured split; a cross-fitted ensemble
    (``config.folds``) derives each candidate's masks with :func:`candidate_splits`.

    Parameters
    ----------
    data : SeriesData
        Physical series.
    config : TrainingConfig
        Gives the winters.
    normalisation : Normalisation, optional
        Reuse these statistics instead of computing them.

    Returns
    -------
    tuple
        The prepared arrays and the statistics used.
    """
    winters = data.winters(config.winter_start_month)
    train = np.isin(winters, config.train_winters)
    validation = np.isin(winters, config.validation_winters)
    for name, mask in (("training", train), ("validation", validation)):
        if not (mask[:, None] & np.isfinite(data.targets)).any():
            raise ValueError(f"no finite target on any {name} winter day")
    learning = np.isin(winters, config.learning_winters())
    norm = normalisation or Normalisation.fit(
        data.predictors,
        data.targets,
        learning,
        data.feature_names,
        data.depths,
        time=data.time,
        clamp=config.clamp_inputs,
        unclamped=gate_features(config, data.feature_names),
    )
    events = (
        np.full(data.targets.shape, np.nan, dtype=np.float32)
        if data.events is None
        else np.asarray(data.events, dtype=np.float32)
    )
    prepared = PreparedSeries(
        x=norm.inputs(data.predictors, data.time),
        y=norm.standardise_targets(data.targets),
        events=events,
        train=train,
        validation=validation,
        feature_names=tuple(data.feature_names),
    )
    return prepared, norm


def gaussian_nll(
    out: ModelOutput, target: torch.Tensor, mask: torch.Tensor, beta: float = 0.0
) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood over ``mask`` (nats per value).

    ½[log 2π + log σ² + (y − μ)²/σ²]; the constant is kept so that curves read
    as true NLLs. ``beta`` > 0 gives the β-NLL (weights σ^(2β), detached).
    """
    y = torch.where(mask, target, torch.zeros_like(target))
    nll = 0.5 * (_LOG_2PI + out.log_var + (y - out.mean) ** 2 * torch.exp(-out.log_var))
    if beta > 0:
        nll = nll * torch.exp(beta * out.log_var).detach()
    return (nll * mask).sum() / mask.sum().clamp_min(1)


def _event_bce(out: ModelOutput, events: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask & torch.isfinite(events)
    e = torch.where(m, events, torch.zeros_like(events))
    bce = F.binary_cross_entropy_with_logits(out.event_logit, e, reduction="none")
    return (bce * m).sum() / m.sum().clamp_min(1)


@dataclass
class MemberResult:
    """A trained member: weights as numpy arrays (cheap to send between processes).

    Attributes
    ----------
    index, seed : int
        Member index and its seed.
    architecture : str
        Registry name.
    hparams : dict
        Full constructor arguments (``n_features``, ``n_depths`` included).
    state : dict of numpy.ndarray
        Weights of the best epoch.
    curve : list of dict
        One row per epoch: ``epoch``, ``train_loss``, ``train_nll``,
        ``val_nll``, ``val_bce``, ``seconds``.
    best_epoch : int
        Epoch whose weights were kept.
    best_val_score : float
        Its validation score (``early_stopping`` metric, standardised units).
    """

    index: int
    seed: int
    architecture: str
    hparams: dict[str, Any]
    state: dict[str, np.ndarray]
    curve: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_score: float = float("nan")

    def model(self) -> torch.nn.Module:
        """Rebuild the trained model."""
        model = build_model(self.architecture, **self.hparams)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in self.state.items()})
        return model


def _window_starts(series: PreparedSeries, length: int, lookback: int) -> npt.NDArray[np.int64]:
    """Starts of windows whose scored part holds at least one training target."""
    scorable = series.train & np.isfinite(series.y).any(axis=1)
    csum = np.concatenate([[0], np.cumsum(scorable)])
    starts = np.arange(len(series.x) - length + 1)
    ok = csum[starts + length] - csum[starts + lookback] > 0
    return starts[ok]


def gaussian_crps(out: ModelOutput, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean closed-form CRPS of the Gaussians over ``mask`` (target units)."""
    sigma = torch.exp(0.5 * out.log_var)
    y = torch.where(mask, target, out.mean)
    z = (y - out.mean) / sigma
    normal = torch.distributions.Normal(0.0, 1.0)
    pdf = torch.exp(normal.log_prob(z))
    crps = sigma * (z * (2 * normal.cdf(z) - 1) + 2 * pdf - 1 / math.sqrt(math.pi))
    return (crps * mask).sum() / mask.sum().clamp_min(1)


def _validate(
    model: torch.nn.Module, series: PreparedSeries, segment: int | None
) -> dict[str, float]:
    out = predict_series(model, series.x, segment=segment)  # type: ignore[arg-type]
    device = out.mean.device
    y = torch.from_numpy(series.y).to(device)
    mask = torch.from_numpy(series.validation).to(device)[:, None] & torch.isfinite(y)
    return {
        "val_nll": gaussian_nll(out, y, mask).item(),
        "val_crps": gaussian_crps(out, y, mask).item(),
        "val_bce": _event_bce(out, torch.from_numpy(series.events).to(device), mask).item(),
    }


#: The slab density column the ``density_gate`` hyperparameter gates on (features.py).
GATE_FEATURE = "shelf_sigma0"


def gate_features(config: TrainingConfig, feature_names: Sequence[str]) -> tuple[str, ...]:
    """The predictor a density gate of the ensemble reads (none without a gate)."""
    specs = config.architectures or [
        ArchitectureSpec(name=config.architecture, hparams=config.hparams)
    ]
    if not any(spec.hparams.get("density_gate", False) for spec in specs):
        return ()
    return tuple(name for name in feature_names if name.split("@")[0] == GATE_FEATURE)


#: An anchored gate (``density_gate: events``): how far below the least dense training
#: event day its threshold lies, and its steepness, both per standardised unit of the slab
#: density. A priori, not fitted: open above 0.9 on every density the record cascaded at,
#: 0.08 half a standard deviation under the least dense of them, 0.01 under 0.7.
GATE_MARGIN = 0.25
GATE_STEEPNESS = 10.0


def resolve_gate(
    hparams: dict[str, Any],
    feature_names: Sequence[str],
    series: PreparedSeries | None = None,
) -> dict[str, Any]:
    """Turn the job's ``density_gate`` into the model's gate hyperparameters.

    The job names the physics (a gate on the shelf slab's density); which input
    column carries it depends on the feature recipe, so it is resolved here, and the
    resolved index is what the model directory records. ``density_gate: true`` learns
    the gate; ``events`` anchors it on the training days' observed events (``series``'s
    standardised inputs, event flags and training mask, so a cross-fitted candidate
    never reads its validation fold): per depth, the threshold is ``gate_margin``
    (default :data:`GATE_MARGIN`) below the least dense slab on which an event was
    observed, with a fixed ``gate_steepness`` (default :data:`GATE_STEEPNESS`).
    """
    out = dict(hparams)
    kind = out.pop("density_gate", False)
    margin = out.pop("gate_margin", GATE_MARGIN)
    if kind not in (True, False, "events"):
        raise ValueError(f"density_gate must be true, false or 'events', got {kind!r}")
    if not kind:
        return out
    columns = [i for i, name in enumerate(feature_names) if name.split("@")[0] == GATE_FEATURE]
    if len(columns) != 1:
        raise ValueError(
            f"density_gate needs exactly one {GATE_FEATURE} input column (features.physics: "
            f"true); the inputs are {list(feature_names)}"
        )
    out["gate_column"] = columns[0]
    if kind == "events":
        if series is None:
            raise ValueError("density_gate: events needs the training series to anchor on")
        floor = event_density_floor(series, columns[0], float(margin))
        if floor is not None:  # else no training event at all: the gate stays learned
            out["gate_threshold"] = floor
            out.setdefault("gate_steepness", GATE_STEEPNESS)
    return out


def event_density_floor(series: PreparedSeries, column: int, margin: float) -> list[float] | None:
    """Per target: ``margin`` below the least dense input ``column`` on a training event day.

    A target without a training event day takes the highest floor of the others (deeper
    water, denser plume: a cascade the record never showed there needs at least the
    densest slab that reached another depth); ``None`` when no target has any (nothing
    to anchor on: the caller keeps the learned gate, and the model directory records no
    ``gate_threshold``).
    """
    density = series.x[:, column]
    floor: list[float | None] = []
    for d in range(series.events.shape[1]):
        days = series.train & (series.events[:, d] > 0.5) & np.isfinite(density)
        floor.append(round(float(density[days].min()) - margin, 6) if days.any() else None)
    known = [f for f in floor if f is not None]
    if not known:
        return None
    return [max(known) if f is None else f for f in floor]


def train_member(
    config: TrainingConfig,
    series: PreparedSeries,
    index: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    device: torch.device | None = None,
) -> MemberResult:
    """Train one member from its seed, with early stopping on validation NLL.

    Parameters
    ----------
    config : TrainingConfig
        Training settings.
    series : PreparedSeries
        Standardised data and split masks (from :func:`prepare_series`).
    index : int
        Member index (selects the seed and, in mixed ensembles, the architecture).
    on_epoch : callable, optional
        Called after each epoch with its number and curve row (e.g. to report
        to an optuna trial); an exception it raises (``optuna.TrialPruned``)
        stops training and propagates.
    device : torch.device, optional
        Where to train (default: the CPU); the returned weights are CPU arrays either way.

    Returns
    -------
    MemberResult
        Best-epoch weights, curve and seed.
    """
    device = device or torch.device("cpu")
    seed = config.candidate_seeds()[index]
    spec = config.member_architecture(index)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_depths = series.y.shape[1]
    hparams = resolve_gate(spec.hparams, series.feature_names, series)
    model = build_model(spec.name, n_features=series.x.shape[1], n_depths=n_depths, **hparams)
    model = model.to(device)  # initialised on the CPU: the same weights on every device
    length = config.lookback_days + config.window_days
    if len(series.x) < length:
        raise ValueError(
            f"series of {len(series.x)} days is shorter than one training window "
            f"({config.lookback_days} lookback + {config.window_days} scored days)"
        )
    starts = _window_starts(series, length, config.lookback_days)
    if starts.size == 0:
        raise ValueError("no training window contains a training-winter target")
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    x_all = torch.from_numpy(series.x).to(device)
    y_all = torch.from_numpy(series.y).to(device)
    e_all = torch.from_numpy(series.events).to(device)
    train_all = torch.from_numpy(series.train).to(device)
    offsets = torch.arange(length, device=device)
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    curve: list[dict[str, float]] = []
    stale = 0
    for epoch in range(1, config.epochs + 1):
        t0 = _time.perf_counter()
        model.train()
        losses, nlls = [], []
        for _ in range(config.batches_per_epoch):
            picked = torch.from_numpy(rng.choice(starts, size=config.batch_size)).to(device)
            idx = picked[:, None] + offsets
            out, _ = model(x_all[idx])
            scored = ModelOutput(*(o[:, config.lookback_days :] for o in out))
            sl = idx[:, config.lookback_days :]
            y = y_all[sl]
            mask = train_all[sl][..., None] & torch.isfinite(y)
            nll = gaussian_nll(scored, y, mask)
            loss = gaussian_nll(scored, y, mask, config.nll_beta) if config.nll_beta else nll
            if config.event_loss_weight > 0:
                loss = loss + config.event_loss_weight * _event_bce(scored, e_all[sl], mask)
            optimiser.zero_grad()
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimiser.step()
            losses.append(loss.item())
            nlls.append(nll.item())
        scores = _validate(model, series, config.validation_segment_days)
        curve.append(
            {
                "epoch": float(epoch),
                "train_loss": float(np.mean(losses)),
                "train_nll": float(np.mean(nlls)),
                **scores,
                "seconds": _time.perf_counter() - t0,
            }
        )
        val_score = scores[f"val_{config.early_stopping}"]
        if on_epoch is not None:
            on_epoch(epoch, curve[-1])
        if epoch < config.min_epochs:
            continue
        if val_score < best[0] - 1e-5:
            best = (val_score, epoch, copy.deepcopy(model.state_dict()))
            stale = 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best[2])
    return MemberResult(
        index=index,
        seed=seed,
        architecture=spec.name,
        hparams=dict(model.hparams),
        state={k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()},
        curve=curve,
        best_epoch=best[1],
        best_val_score=best[0],
    )


def _worker_init() -> None:
    # One thread per process: M members on M cores beat M×cores oversubscribed threads.
    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # already set in this process
        torch.set_num_interop_threads(1)


@dataclass(frozen=True)
class TrainingProgress:
    """One step of a candidate's training, for a progress display.

    ``done`` is False after each epoch (``epoch``, its validation ``score``) and True
    once the candidate has finished (``epoch`` = its best epoch, ``score`` its score).
    """

    candidate: int
    epoch: int
    score: float
    done: bool


def _epoch_reporter(
    index: int, metric: str, report: Callable[[TrainingProgress], None]
) -> Callable[[int, dict[str, float]], None]:
    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        report(TrainingProgress(index, epoch, float(row[f"val_{metric}"]), False))

    return on_epoch


def _train_member_worker(
    config_json: dict[str, Any], series: PreparedSeries, index: int, queue: Any = None
) -> MemberResult:
    config = TrainingConfig.model_validate(config_json)
    on_epoch = None if queue is None else _epoch_reporter(index, config.early_stopping, queue.put)
    return train_member(config, series, index, on_epoch=on_epoch)


def _finished(result: MemberResult) -> TrainingProgress:
    return TrainingProgress(result.index, result.best_epoch, result.best_val_score, True)


def _train_here(
    config: TrainingConfig,
    splits: list[PreparedSeries],
    progress: Callable[[TrainingProgress], None] | None,
    device: torch.device,
) -> list[MemberResult]:
    """Every candidate in turn, in this process."""
    results = []
    for i, split in enumerate(splits):
        on_epoch = None if progress is None else _epoch_reporter(i, config.early_stopping, progress)
        results.append(train_member(config, split, i, on_epoch=on_epoch, device=device))
        if progress is not None:
            progress(_finished(results[-1]))
    return results


def _train_in_processes(
    config: TrainingConfig,
    splits: list[PreparedSeries],
    n_workers: int,
    progress: Callable[[TrainingProgress], None] | None,
) -> list[MemberResult]:
    """Every candidate in its own task of a spawned process pool; epochs reported through
    a manager queue while the candidates train."""
    payload = config.model_dump(mode="json")
    context = mp.get_context("spawn")
    with contextlib.ExitStack() as stack:
        queue = None
        if progress is not None:
            queue = stack.enter_context(context.Manager()).Queue()
        pool = stack.enter_context(
            ProcessPoolExecutor(max_workers=n_workers, mp_context=context, initializer=_worker_init)
        )
        futures = [
            pool.submit(_train_member_worker, payload, splits[i], i, queue)
            for i in range(len(splits))
        ]
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            if progress is not None:
                while not queue.empty():
                    progress(queue.get())
                for future in finished:
                    progress(_finished(future.result()))
        return [f.result() for f in futures]


def validation_crps(
    model: torch.nn.Module, series: PreparedSeries, norm: Normalisation, segment: int | None
) -> float:
    """Validation CRPS of a member's Gaussians in °C, mean over depths.

    The candidates' selection score: physical units, as the tuning objective
    ranks configurations, so the depth with the larger anomalies (500 m) counts
    for more than one whose anomalies are mostly noise.
    """
    out = predict_series(model, series.x, segment=segment)  # type: ignore[arg-type]
    y = torch.from_numpy(series.y)
    validation = torch.from_numpy(series.validation)
    per_depth = []
    for d in range(y.shape[1]):
        one = ModelOutput(*(part[:, d : d + 1] for part in out))
        mask = (validation & torch.isfinite(y[:, d]))[:, None]
        per_depth.append(gaussian_crps(one, y[:, d : d + 1], mask).item() * norm.target_std[d])
    return float(np.mean(per_depth))


def select_candidates(
    results: list[MemberResult], scores: list[float], members: int
) -> list[MemberResult]:
    """The ``members`` results with the lowest scores, in candidate order.

    A candidate with a non-finite score (diverged) is ranked last.
    """
    rank = {
        r.index: s if math.isfinite(s) else math.inf for r, s in zip(results, scores, strict=True)
    }
    ranked = sorted(results, key=lambda r: (rank[r.index], r.index))[:members]
    return sorted(ranked, key=lambda r: r.index)


def candidate_splits(
    config: TrainingConfig, data: SeriesData, series: PreparedSeries
) -> tuple[list[PreparedSeries], list[list[int]] | None]:
    """Each candidate's series with its training/validation masks, and the folds.

    Fixed split: every candidate gets ``series`` and the folds are None.
    Cross-fitted (``config.folds``): candidate *i* learns from the pool outside
    fold ``i mod folds`` and validates on that fold.
    """
    n = config.n_candidates
    if config.folds is None:
        return [series] * n, None
    winters = data.winters(config.winter_start_month)
    pool = config.learning_winters()
    folds = assign_folds(pool, winters, data.targets, config.folds)
    in_pool = np.isin(winters, pool)
    per_fold = []
    for fold in folds:
        held = np.isin(winters, fold)
        if not (held[:, None] & np.isfinite(data.targets)).any():
            raise ValueError(f"no finite target in the validation fold of winters {fold}")
        per_fold.append(replace(series, train=in_pool & ~held, validation=held))
    return [per_fold[fold_of(i, config.folds)] for i in range(n)], folds


def train_ensemble(
    config: TrainingConfig,
    data: SeriesData,
    out_dir: str | Path | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[TrainingProgress], None] | None = None,
    device: str = "cpu",
) -> DeepEnsemble:
    """Train the candidates (in parallel processes), keep the M best on validation.

    With ``config.folds`` each candidate validates on its own fold and each fold
    keeps its best candidates in turn (:mod:`cascadia.learning.folds`).

    Parameters
    ----------
    config : TrainingConfig
        Training settings.
    data : SeriesData
        Physical predictors and targets over all winters.
    out_dir : str or Path, optional
        Model directory to write (see :mod:`cascadia.learning.ensemble`).
    workers : int, optional
        Overrides ``config.workers``; processes are started with ``spawn`` (no
        inherited threads or locks), each limited to one torch thread.
    overwrite : bool
        Replace an existing ``out_dir``.
    progress : callable, optional
        Called with a :class:`TrainingProgress` after every epoch of every candidate and
        when a candidate finishes (in this process, also for worker processes).
    device : str
        ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (:func:`cascadia.learning.device.
        resolve_device`). On a GPU the candidates train one after another in this
        process (they share the GPU; no worker processes); the model directory is the
        same either way (CPU weights).

    Returns
    -------
    DeepEnsemble
        The trained ensemble (kept members in candidate order; each member's
        ``info`` names its candidate index, validation winters and score).

    Notes
    -----
    Worker processes are spawned, so a script calling this with ``workers > 1``
    must guard its entry point with ``if __name__ == "__main__":``.
    """
    on = resolve_device(device)  # before any work: a missing GPU is a one-line error
    series, norm = prepare_series(data, config)
    splits, folds = candidate_splits(config, data, series)
    n = config.n_candidates
    n_workers = min(workers or config.workers or min(n, os.cpu_count() or 1), n)
    if on.type != "cpu":
        results = _train_here(config, splits, progress, on)
    elif n_workers == 1:
        # One torch thread, as in each worker process: small recurrent batches run
        # slower on several threads, and results do not depend on the core count.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            results = _train_here(config, splits, progress, on)
        finally:
            torch.set_num_threads(threads)
    else:
        results = _train_in_processes(config, splits, n_workers, progress)
    scores = [
        validation_crps(r.model(), splits[r.index], norm, config.validation_segment_days)
        for r in results
    ]
    if folds is None:
        kept = select_candidates(results, scores, config.members)
    else:
        chosen = select_per_fold([fold_of(i, len(folds)) for i in range(n)], scores, config.members)
        kept = [results[i] for i in chosen]

    def validated_on(index: int) -> list[int]:
        if folds is None:
            return list(config.validation_winters)
        return folds[fold_of(index, len(folds))]

    ensemble = DeepEnsemble(
        members=[r.model() for r in kept],  # type: ignore[misc]
        normalisation=norm,
        config=config.resolved(),
        seeds=[r.seed for r in kept],
        curves=[r.curve for r in kept],
        info=[
            {
                "candidate": r.index,
                "best_epoch": r.best_epoch,
                "best_val_score": r.best_val_score,
                "early_stopping": config.early_stopping,
                "validation_crps": scores[r.index],
                "validation_winters": validated_on(r.index),
            }
            for r in kept
        ],
    )
    if out_dir is not None:
        target = ensemble.save(out_dir, overwrite=overwrite)
        record = [
            {
                "candidate": r.index,
                "seed": r.seed,
                "best_epoch": r.best_epoch,
                "best_val_score": r.best_val_score if math.isfinite(r.best_val_score) else None,
                "validation_crps": scores[r.index] if math.isfinite(scores[r.index]) else None,
                "validation_winters": validated_on(r.index),
                "kept": r.index in {k.index for k in kept},
            }
            for r in results
        ]
        selection = "validation_crps" if folds is None else "validation_crps_per_fold"
        (Path(target) / "candidates.json").write_text(
            json.dumps({"selection": selection, "folds": folds, "candidates": record}, indent=2),
            encoding="utf-8",
        )
    return ensemble
