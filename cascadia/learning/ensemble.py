"""A trained deep ensemble: model directory, safetensors checkpoints, mixture predictions.

A model directory is everything needed to reproduce predictions, reloaded —
never recomputed — at evaluation::

    config.yaml                    resolved training config
    normalisation.json             predictor and target statistics (training winters only)
    seeds.json                     member seeds
    ensemble.json                  manifest: version, members (architecture,
                                   hyperparameters, seed, checkpoint, SHA-256)
    members/member_NN.safetensors  weights (safetensors only: no pickle, ever)
    curves/member_NN.csv           training curves
    curves/training_curves.png

Members are combined as an equal-weight mixture of Gaussians (Lakshminarayanan
et al. 2017): mean μ̄ = mean μ_m and variance σ² = mean(σ_m² + μ_m²) − μ̄², i.e.
the mean aleatoric variance plus the spread of the members' means (epistemic).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from scipy.special import ndtr, ndtri

from cascadia import __version__
from cascadia.learning.calibration import Calibration, exceedance_probability
from cascadia.learning.models import SequenceModel, build_model, predict_series, seasonal_features
from cascadia.learning.models.seasonal import N_SEASONAL_FEATURES

__all__ = [
    "DEFAULT_QUANTILES",
    "CheckpointError",
    "DeepEnsemble",
    "EnsemblePrediction",
    "Normalisation",
    "load_checkpoint",
    "mixture_moments",
    "mixture_quantiles",
    "save_checkpoint",
]

#: Quantile levels returned by :meth:`DeepEnsemble.predict` (5–95 %: the 90 % interval).
DEFAULT_QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
MANIFEST_VERSION = 1
FloatArray = npt.NDArray[np.float64]


class CheckpointError(ValueError):
    """A checkpoint is not a readable safetensors file (e.g. a pickle)."""


# ---------------------------------------------------------------- checkpoints


def _looks_like_pickle(head: bytes) -> bool:
    # Only asked of files that are not safetensors. torch.save writes a zip archive
    # holding a pickle; plain pickles start with the PROTO opcode (0x80) or, for
    # protocols 0/1, with an opcode such as "(", "}", "]" or "c".
    return head[:1] in {b"\x80", b"(", b"}", b"]", b"c"}


def _check_safetensors(path: Path) -> None:
    """Refuse anything that is not a safetensors file, before reading it."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(9)
    header = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    is_zip = head.startswith(b"PK\x03\x04")
    if not is_zip and len(head) == 9 and head[8:9] == b"{" and 0 < header <= size - 8:
        return
    if is_zip or _looks_like_pickle(head):
        raise CheckpointError(
            f"checkpoint {path} is a pickle (torch.save) file; cascadia loads only "
            "safetensors checkpoints, because unpickling runs arbitrary code. Nothing was "
            "loaded. Convert a trusted file with "
            "safetensors.torch.save_file(torch.load(path, weights_only=True), new_path)."
        )
    raise CheckpointError(f"checkpoint {path} is not a safetensors file (bad header)")


def save_checkpoint(
    model: SequenceModel, path: str | Path, metadata: Mapping[str, str] | None = None
) -> str:
    """Write a model's weights as safetensors and return the file's SHA-256.

    The architecture name and hyperparameters are stored in the file's metadata
    as well, so a lone checkpoint still says what it is: as one JSON string under one
    key, because safetensors writes its metadata map in a per-process random order
    (a Rust HashMap), and the same weights must give the same bytes and SHA-256 in
    every process (the model checksum decides what a rerun recomputes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"architecture": model.name, "hparams": model.hparams, **(metadata or {})}
    save_file(tensors, str(path), metadata={"cascadia": json.dumps(meta, sort_keys=True)})
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_checkpoint(path: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors checkpoint; refuse pickles and corrupted files.

    Parameters
    ----------
    path : str or Path
        ``.safetensors`` file.
    sha256 : str, optional
        Expected digest (from the manifest); a mismatch is an error.

    Raises
    ------
    CheckpointError
        If the file is a pickle / ``torch.save`` archive, not safetensors, or
        does not match ``sha256``. Nothing is deserialised in that case.
    """
    path = Path(path)
    _check_safetensors(path)
    if sha256 is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha256:
            raise CheckpointError(f"checkpoint {path} has SHA-256 {digest}, manifest says {sha256}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} could not be read as safetensors: {err}") from err


# -------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class Normalisation:
    """Statistics that map physical predictors and targets to model units.

    Computed on the winters the members learn from (the training winters, or
    training and validation winters of a cross-fitted ensemble; never the test
    winters) and saved with the weights: predicting with
    other statistics would silently shift every input.

    Attributes
    ----------
    feature_names : tuple of str
        Predictor columns, in order (e.g. ``"tas@shelf"``).
    feature_mean, feature_std : tuple of float
        Per-predictor mean and std (physical units of each predictor).
    target_mean, target_std : tuple of float
        Per-depth anomaly mean and std (°C).
    depths : tuple of float
        Target depths (m).
    feature_monthly_min, feature_monthly_max : tuple of tuple of float, optional
        Per calendar month (12 rows) and predictor, the smallest and largest value of
        the training days: the range the model has seen in that season, which the
        out-of-distribution scores compare new inputs with (None for older models).
    clamp : bool
        Hold every standardised predictor inside that month's training range
        (:meth:`inputs`): the network is never asked what it has not seen.
    unclamped : tuple of str
        Predictors left free by the clamp: those whose effect has a physically fixed
        sign in the model (the density gate's slab density), which carry the response
        beyond the training range.
    """

    feature_names: tuple[str, ...]
    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    target_mean: tuple[float, ...]
    target_std: tuple[float, ...]
    depths: tuple[float, ...] = (500.0, 1000.0)
    feature_monthly_min: tuple[tuple[float, ...], ...] | None = None
    feature_monthly_max: tuple[tuple[float, ...], ...] | None = None
    clamp: bool = False
    unclamped: tuple[str, ...] = ()

    @property
    def n_inputs(self) -> int:
        """Model input width: predictors + seasonal encodings."""
        return len(self.feature_names) + N_SEASONAL_FEATURES

    @classmethod
    def fit(
        cls,
        predictors: npt.ArrayLike,
        targets: npt.ArrayLike,
        mask: npt.ArrayLike,
        feature_names: Sequence[str],
        depths: Sequence[float] = (500.0, 1000.0),
        min_std: float = 1e-6,
        time: Any = None,
        clamp: bool = False,
        unclamped: Sequence[str] = (),
    ) -> Normalisation:
        """Statistics over the rows where ``mask`` is true (NaN ignored).

        Parameters
        ----------
        predictors : array-like
            ``(T, F)`` physical predictors.
        targets : array-like
            ``(T, D)`` anomalies (°C).
        mask : array-like
            ``(T,)`` training days.
        feature_names : sequence of str
            Names of the ``F`` columns.
        depths : sequence of float
            Target depths (m).
        min_std : float
            Floor of every std (a constant predictor must not divide by zero).
        time : array-like, optional
            ``(T,)`` days: with them, each month's training range is kept too.
        clamp, unclamped
            Clamp the inputs to each month's training range (needs ``time``), except
            the ``unclamped`` columns (class docstring).
        """
        rows = np.asarray(mask, dtype=bool)
        x = np.asarray(predictors, dtype=np.float64)[rows]
        y = np.asarray(targets, dtype=np.float64)[rows]
        if not np.isfinite(y).any(axis=0).all():
            raise ValueError("a target depth has no finite value on the training days")
        low = high = None
        if clamp and time is None:
            raise ValueError("clamping the inputs to their monthly range needs the days")
        unknown = sorted(set(unclamped) - set(feature_names))
        if unknown:
            raise ValueError(f"unclamped predictors {unknown} are not among {list(feature_names)}")
        if time is not None:
            months = pd.DatetimeIndex(np.asarray(time)[rows]).month
            low, high = _monthly_range(x, months)
        return cls(
            feature_monthly_min=low,
            feature_monthly_max=high,
            feature_names=tuple(feature_names),
            feature_mean=tuple(np.nanmean(x, axis=0).tolist()),
            feature_std=tuple(np.maximum(np.nanstd(x, axis=0), min_std).tolist()),
            target_mean=tuple(np.nanmean(y, axis=0).tolist()),
            target_std=tuple(np.maximum(np.nanstd(y, axis=0), min_std).tolist()),
            depths=tuple(float(d) for d in depths),
            clamp=clamp,
            unclamped=tuple(unclamped),
        )

    def inputs(self, predictors: npt.ArrayLike, time: Any) -> npt.NDArray[np.float32]:
        """Standardised predictors + seasonal encodings, ``(…, T, F + 2)`` float32.

        Inputs are checked before they get here (gaps, non-finite values and
        impossible magnitudes fail their combination or training job:
        :mod:`cascadia.sources.predictors.plausibility`); a NaN a feature recipe
        leaves where it has no history yet becomes 0, the training mean, so it
        never propagates through a recurrence into every later day. With ``clamp``,
        each standardised predictor is then held inside the range the training days had
        in that calendar month (:meth:`clamped`).
        """
        x = np.asarray(predictors, dtype=np.float64)
        if x.shape[-1] != len(self.feature_names):
            raise ValueError(
                f"predictors have {x.shape[-1]} columns, the model expects "
                f"{len(self.feature_names)}: {list(self.feature_names)}"
            )
        z = (x - np.asarray(self.feature_mean)) / np.asarray(self.feature_std)
        z = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
        if self.clamp:
            z = self.clamped(z, time)
        season = seasonal_features(time)
        if season.shape[0] != x.shape[-2]:
            raise ValueError(f"time has {season.shape[0]} days, predictors {x.shape[-2]}")
        season = np.broadcast_to(season, (*x.shape[:-1], season.shape[-1]))
        return np.concatenate([z, season], axis=-1).astype(np.float32)

    def clamped(self, z: npt.NDArray[np.float64], time: Any) -> npt.NDArray[np.float64]:
        """Standardised predictors ``(…, T, F)`` held inside each month's training range.

        Why: a network fitted on ~30 winters answers inputs beyond them with whatever its
        weights extrapolate to — on a development world, a shelf 3.4 standard deviations
        more stratified than any training winter was answered with *more* cascading
        (docs/validation.md, "Inputs held to the training range"). Held at the edge, the network
        answers such a day as the most extreme one it learned from, and only the
        physically signed parts (``unclamped``: the density gate) carry the response further.
        A month without training days leaves its values free.
        """
        if self.feature_monthly_min is None or self.feature_monthly_max is None:
            raise ValueError("clamping needs the monthly training range (a model without it)")
        mean, std = np.asarray(self.feature_mean), np.asarray(self.feature_std)
        low = (np.asarray(self.feature_monthly_min) - mean) / std
        high = (np.asarray(self.feature_monthly_max) - mean) / std
        free = [self.feature_names.index(name) for name in self.unclamped]
        low[:, free], high[:, free] = -np.inf, np.inf
        months = pd.DatetimeIndex(np.asarray(time)).month.to_numpy() - 1
        low = np.nan_to_num(low, nan=-np.inf)[months]
        high = np.nan_to_num(high, nan=np.inf)[months]
        return np.clip(z, low, high)

    def standardise_targets(self, targets: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Anomalies (°C) → model units (NaN kept)."""
        y = np.asarray(targets, dtype=np.float64)
        return ((y - np.asarray(self.target_mean)) / np.asarray(self.target_std)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "feature_names": list(self.feature_names),
            "feature_mean": list(self.feature_mean),
            "feature_std": list(self.feature_std),
            "target_mean": list(self.target_mean),
            "target_std": list(self.target_std),
            "depths": list(self.depths),
            "seasonal_features": ["sin_day_of_year", "cos_day_of_year"],
            "units": {"target": "degree_Celsius (anomaly)", "features": "canonical CF units"},
            "clamp": self.clamp,
            "unclamped": list(self.unclamped),
            **(
                {
                    "feature_monthly_min": [list(row) for row in self.feature_monthly_min],
                    "feature_monthly_max": [list(row) for row in self.feature_monthly_max],
                }
                if self.feature_monthly_min is not None and self.feature_monthly_max is not None
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalisation:
        """Inverse of :meth:`to_dict`."""
        return cls(
            feature_names=tuple(data["feature_names"]),
            feature_mean=tuple(float(v) for v in data["feature_mean"]),
            feature_std=tuple(float(v) for v in data["feature_std"]),
            target_mean=tuple(float(v) for v in data["target_mean"]),
            target_std=tuple(float(v) for v in data["target_std"]),
            depths=tuple(float(v) for v in data["depths"]),
            feature_monthly_min=_rows(data.get("feature_monthly_min")),
            feature_monthly_max=_rows(data.get("feature_monthly_max")),
            clamp=bool(data.get("clamp", False)),  # older models: free inputs
            unclamped=tuple(data.get("unclamped", ())),
        )


def _monthly_range(
    x: npt.NDArray[np.float64], months: Any
) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
    """Per calendar month, each column's smallest and largest finite value (NaN if none)."""
    low, high = [], []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        for month in range(1, 13):
            part = x[np.asarray(months) == month]
            if part.shape[0] == 0:
                part = np.full((1, x.shape[1]), np.nan)
            low.append(tuple(np.nanmin(part, axis=0).tolist()))
            high.append(tuple(np.nanmax(part, axis=0).tolist()))
    return tuple(low), tuple(high)


def _rows(value: Any) -> tuple[tuple[float, ...], ...] | None:
    """Nested lists from JSON as a tuple of float tuples (``None`` stays ``None``)."""
    if value is None:
        return None
    return tuple(tuple(float(v) for v in row) for row in value)


# -------------------------------------------------------------------- mixture


def mixture_moments(mu: npt.ArrayLike, sigma: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Mean and total std of an equal-weight Gaussian mixture (members on axis 0).

    σ² = mean(σ_m² + μ_m²) − μ̄², computed as mean(σ_m²) + mean((μ_m − μ̄)²),
    the same quantity without the cancellation of two large terms.
    """
    m = np.asarray(mu, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    mean = m.mean(axis=0)
    var = (s**2).mean(axis=0) + ((m - mean) ** 2).mean(axis=0)
    return mean, np.sqrt(var)


def mixture_quantiles(
    mu: npt.ArrayLike, sigma: npt.ArrayLike, levels: Sequence[float], tolerance: float = 1e-7
) -> FloatArray:
    """Quantiles of an equal-weight Gaussian mixture (members on axis 0), by bisection.

    The mixture's p-quantile lies between the smallest and the largest member
    p-quantile (its CDF is the members' mean CDF), so bisection starts from that
    exact, narrow bracket and stops once it is narrower than ``tolerance``
    (about 20 steps instead of 60 from a ±8σ bracket).

    Returns
    -------
    numpy.ndarray
        ``(len(levels), *mu.shape[1:])``, same units as ``mu``.
    """
    m = np.asarray(mu, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    out = np.empty((len(levels), *m.shape[1:]))
    for k, p in enumerate(levels):
        if not 0.0 < p < 1.0:
            raise ValueError(f"quantile level must be in (0, 1), got {p}")
        member_q = m + s * ndtri(p)
        lo, hi = member_q.min(axis=0), member_q.max(axis=0)
        width = float(np.nanmax(hi - lo, initial=0.0))
        steps = max(int(np.ceil(np.log2(width / tolerance))), 0) if width > 0 else 0
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            below = ndtr((mid - m) / s).mean(axis=0) < p
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        out[k] = 0.5 * (lo + hi)
    return out


@dataclass(frozen=True)
class EnsemblePrediction:
    """Predictions of a deep ensemble; arrays end with ``(time, depth)``.

    Attributes
    ----------
    mean, std : numpy.ndarray
        Mixture mean and total std of the anomaly (°C).
    aleatoric_std, epistemic_std : numpy.ndarray
        √mean(σ_m²) and the std of the member means (°C); std² is their sum of
        squares.
    quantile_levels : tuple of float
        Levels of ``quantiles``.
    quantiles : numpy.ndarray
        ``(quantile, …)`` mixture quantiles (°C).
    member_mean, member_std : numpy.ndarray
        ``(member, …)`` per-member Gaussians (°C).
    event_probability : numpy.ndarray
        Probability of a below-threshold day (1): with a calibration, the
        calibrated mixture's ``P(anomaly < −threshold)``; without one, the mean
        of the members' event heads.
    member_event_probability : numpy.ndarray
        ``(member, …)`` per-member event-head probability (1).
    depths : tuple of float
        Depths of the last axis (m).
    """

    mean: FloatArray
    std: FloatArray
    aleatoric_std: FloatArray
    epistemic_std: FloatArray
    quantile_levels: tuple[float, ...]
    quantiles: FloatArray
    member_mean: FloatArray
    member_std: FloatArray
    event_probability: FloatArray
    member_event_probability: FloatArray
    depths: tuple[float, ...] = (500.0, 1000.0)


# ------------------------------------------------------------------- ensemble


@dataclass
class DeepEnsemble:
    """M trained members, their normalisation statistics and provenance.

    Attributes
    ----------
    members : list of SequenceModel
        Trained models (any mix of registered architectures).
    normalisation : Normalisation
        Statistics of the training winters.
    config : dict
        Resolved training configuration (JSON-ready).
    seeds : list of int
        Seed of each member.
    curves : list of list of dict
        Per-member training curves (epoch rows), possibly empty.
    info : list of dict
        Per-member facts (best epoch, best validation score, …).
    calibration : Calibration, optional
        Validation-fitted σ factors and event thresholds (``calibration.json``),
        applied by :meth:`predict`.
    """

    members: list[SequenceModel]
    normalisation: Normalisation
    config: dict[str, Any]
    seeds: list[int]
    curves: list[list[dict[str, float]]] = field(default_factory=list)
    info: list[dict[str, Any]] = field(default_factory=list)
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a deep ensemble needs at least one member")
        if len(self.seeds) != len(self.members):
            raise ValueError(f"{len(self.seeds)} seeds for {len(self.members)} members")
        for m in self.members:
            m.eval()

    def to(self, device: torch.device) -> DeepEnsemble:
        """Move the members to ``device`` (in place); predictions come back as numpy."""
        for m in self.members:
            m.to(device)
        return self

    # ---- prediction

    def predict(
        self,
        predictors: npt.ArrayLike | Mapping[str, npt.ArrayLike],
        time: Any,
        *,
        segment: int | None = None,
        warmup: int | None = None,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> EnsemblePrediction:
        """Predict daily anomalies over whole series.

        Parameters
        ----------
        predictors : array-like or mapping
            Physical predictors ``(T, F)`` or ``(batch, T, F)`` (e.g. one row
            per combo) in the order of ``normalisation.feature_names``, or a
            mapping name → ``(T,)``/``(batch, T)`` array.
        time : array-like
            ``(T,)`` daily stamps (seasonal encodings).
        segment, warmup : int, optional
            Passed to :func:`cascadia.learning.models.predict_series` (``None``: one pass).
        quantiles : sequence of float
            Levels of the mixture quantiles.

        Returns
        -------
        EnsemblePrediction
        """
        if isinstance(predictors, Mapping):
            names = self.normalisation.feature_names
            absent = [n for n in names if n not in predictors]
            if absent:
                raise KeyError(f"missing predictors {absent}; the model needs {list(names)}")
            x_raw = np.stack([np.asarray(predictors[n], dtype=np.float64) for n in names], -1)
        else:
            x_raw = np.asarray(predictors, dtype=np.float64)
        x = self.normalisation.inputs(x_raw, time)
        scale = np.asarray(self.normalisation.target_std)
        offset = np.asarray(self.normalisation.target_mean)
        mus, sigmas, probs = [], [], []
        for model in self.members:
            out = predict_series(model, x, segment=segment, warmup=warmup)
            mus.append(out.mean.double().cpu().numpy() * scale + offset)
            sigmas.append(np.exp(0.5 * out.log_var.double().cpu().numpy()) * scale)
            probs.append(torch.sigmoid(out.event_logit.double()).cpu().numpy())
        mu, sigma, prob = np.stack(mus), np.stack(sigmas), np.stack(probs)
        event_probability = prob.mean(axis=0)
        if self.calibration is not None:
            sigma = sigma * np.asarray(self.calibration.std_scale)
            event_probability = exceedance_probability(
                mu, sigma, self.calibration.anomaly_threshold
            )
        mean, std = mixture_moments(mu, sigma)
        return EnsemblePrediction(
            mean=mean,
            std=std,
            aleatoric_std=np.sqrt((sigma**2).mean(axis=0)),
            epistemic_std=mu.std(axis=0),
            quantile_levels=tuple(float(q) for q in quantiles),
            quantiles=mixture_quantiles(mu, sigma, quantiles),
            member_mean=mu,
            member_std=sigma,
            event_probability=event_probability,
            member_event_probability=prob,
            depths=self.normalisation.depths,
        )

    # ---- model directory

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write the model directory (atomically: a sibling temp dir, then rename).

        Parameters
        ----------
        directory : str or Path
            Target folder.
        overwrite : bool
            Replace an existing folder.

        Returns
        -------
        Path
            The directory written.
        """
        target = Path(directory)
        if target.exists() and not overwrite:
            raise FileExistsError(f"model directory {target} exists (pass overwrite=True)")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            self._write(tmp)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def _write(self, root: Path) -> None:
        (root / "config.yaml").write_text(
            yaml.safe_dump(self.config, sort_keys=False), encoding="utf-8"
        )
        (root / "normalisation.json").write_text(
            json.dumps(self.normalisation.to_dict(), indent=2), encoding="utf-8"
        )
        (root / "seeds.json").write_text(
            json.dumps({"seeds": list(self.seeds)}, indent=2), encoding="utf-8"
        )
        entries = []
        for i, model in enumerate(self.members):
            rel = f"members/member_{i:02d}.safetensors"
            digest = save_checkpoint(model, root / rel, {"seed": str(self.seeds[i])})
            entry: dict[str, Any] = {
                "index": i,
                "architecture": model.name,
                "hparams": model.hparams,
                "seed": self.seeds[i],
                "checkpoint": rel,
                "sha256": digest,
            }
            if i < len(self.info):
                entry.update({k: v for k, v in self.info[i].items() if k not in entry})
            entries.append(entry)
        manifest = {
            "format_version": MANIFEST_VERSION,
            "cascadia_version": __version__,
            "torch_version": torch.__version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "members": entries,
        }
        (root / "ensemble.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if self.calibration is not None:
            self.calibration.save(root)
        if self.curves:
            write_curves(root / "curves", self.curves)

    @classmethod
    def load(cls, directory: str | Path) -> DeepEnsemble:
        """Read a model directory written by :meth:`save`.

        Every checkpoint is checked (safetensors format and SHA-256) before any
        is read: a pickle anywhere raises :class:`CheckpointError` and nothing
        is loaded.
        """
        root = Path(directory)
        manifest_path = root / "ensemble.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{root} is not a model directory (no ensemble.json)")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format_version") != MANIFEST_VERSION:
            raise ValueError(
                f"{manifest_path}: format_version {manifest.get('format_version')!r}, "
                f"expected {MANIFEST_VERSION}"
            )
        entries = sorted(manifest["members"], key=lambda e: e["index"])
        paths = [_member_checkpoint(root, manifest_path, entry) for entry in entries]
        for path in paths:
            _check_safetensors(path)
        members = []
        for entry, path in zip(entries, paths, strict=True):
            state = load_checkpoint(path, entry["sha256"])
            model = build_model(entry["architecture"], **entry["hparams"])
            model.load_state_dict(state, strict=True)
            members.append(model)
        norm = Normalisation.from_dict(
            json.loads((root / "normalisation.json").read_text(encoding="utf-8"))
        )
        config = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8")) or {}
        seeds = json.loads((root / "seeds.json").read_text(encoding="utf-8"))["seeds"]
        curves = read_curves(root / "curves", len(members))
        skip = {"index", "architecture", "hparams", "seed", "checkpoint", "sha256"}
        info = [{k: v for k, v in e.items() if k not in skip} for e in entries]
        calibration = Calibration.load(root)
        return cls(members, norm, config, [int(s) for s in seeds], curves, info, calibration)


def _member_checkpoint(root: Path, manifest_path: Path, entry: Mapping[str, Any]) -> Path:
    """A member's checkpoint path, refused unless it lies inside the model directory and
    the manifest gives its SHA-256 (a checkpoint is never read unchecked)."""
    name = str(entry.get("checkpoint", ""))
    path = (root / name).resolve()
    if not name or not path.is_relative_to(root.resolve()):
        raise CheckpointError(
            f"{manifest_path}: member {entry.get('index')} checkpoint {name!r} is outside the "
            f"model directory {root}; checkpoints are read only from inside it"
        )
    if not isinstance(entry.get("sha256"), str) or len(entry["sha256"]) != 64:
        raise CheckpointError(
            f"{manifest_path}: member {entry.get('index')} has no sha256 of its checkpoint "
            f"{name}; an unchecked checkpoint is never loaded (save the model again with "
            "cascadia-ensemble train)"
        )
    return path


# --------------------------------------------------------------------- curves


def write_curves(directory: Path, curves: Sequence[Sequence[Mapping[str, float]]]) -> None:
    """Write one CSV per member and a PNG of all training/validation curves."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(curves):
        if not rows:
            continue
        with (directory / f"member_{i:02d}.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, rows in enumerate(curves):
        if not rows:
            continue
        epochs = [r["epoch"] for r in rows]
        (line,) = ax.plot(epochs, [r["train_nll"] for r in rows], lw=1, label=f"member {i} train")
        ax.plot(epochs, [r["val_nll"] for r in rows], lw=1.5, ls="--", color=line.get_color())
    ax.set_xlabel("epoch")
    ax.set_ylabel("Gaussian NLL (standardised units; dashed: validation)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(directory / "training_curves.png", dpi=100)


def read_curves(directory: Path, n_members: int) -> list[list[dict[str, float]]]:
    """Read the per-member CSV curves (empty lists where absent)."""
    curves: list[list[dict[str, float]]] = []
    for i in range(n_members):
        path = directory / f"member_{i:02d}.csv"
        if not path.is_file():
            curves.append([])
            continue
        with path.open(newline="", encoding="utf-8") as fh:
            curves.append([{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)])
    return curves
