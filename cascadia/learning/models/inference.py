"""Inference over long series: one pass, or long segments with an exact warm-up.

Why not a per-day sliding window: a 150-year series has ~55,000 days; a sliding
window of one year would recompute each day's 365-day context 55,000 times.
Sequence models produce every day's output in one pass; segments only bound
memory (attention, activations) and are made exact by carrying the recurrent
state (LSTM) or by re-running ``context_length − 1`` days of warm-up before each
segment (TCN, transformer) and discarding their outputs.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from cascadia.learning.models.base import ModelOutput, SequenceModel

__all__ = ["exact_warmup", "predict_series"]


def exact_warmup(model: SequenceModel) -> int:
    """Warm-up (days) that makes segmented inference of ``model`` exact.

    0 for stateful models (the state is carried), ``context_length − 1`` for
    stateless models with a bounded horizon.
    """
    if model.stateful:
        return 0
    context = model.context_length
    if context is None:
        raise ValueError(f"{type(model).__name__} is neither stateful nor of bounded context")
    return context - 1


@torch.no_grad()
def predict_series(
    model: SequenceModel,
    x: torch.Tensor | np.ndarray,
    *,
    segment: int | None = None,
    warmup: int | None = None,
    state: Any = None,
) -> ModelOutput:
    """Run a model over a whole daily series.

    Parameters
    ----------
    model : SequenceModel
        Any registered architecture; it is put in evaluation mode.
    x : torch.Tensor or numpy.ndarray
        Standardised inputs ``(batch, time, features)`` or ``(time, features)``.
    segment : int, optional
        Days per segment; ``None`` runs the whole series in one pass.
    warmup : int, optional
        Days re-run before each segment of a stateless model (outputs
        discarded). Defaults to :func:`exact_warmup`; a smaller value is
        allowed (cheaper, approximate) but warned about. Ignored for stateful
        models, whose state is carried from segment to segment.
    state : optional
        Initial state of a stateful model (zeros if None).

    Returns
    -------
    ModelOutput
        Tensors on the CPU of shape ``(batch, time, n_depths)``, or
        ``(time, n_depths)`` if ``x`` had no batch dimension.
    """
    model.eval()
    tensor = torch.as_tensor(x, dtype=torch.float32)
    squeeze = tensor.ndim == 2
    if squeeze:
        tensor = tensor[None]
    device = next(model.parameters()).device
    n = tensor.shape[1]
    if segment is None or segment >= n:
        out, _ = model(tensor.to(device), state)
    else:
        if segment < 1:
            raise ValueError(f"segment must be ≥ 1 day, got {segment}")
        parts: list[ModelOutput] = []
        if model.stateful:
            for start in range(0, n, segment):
                piece, state = model(tensor[:, start : start + segment].to(device), state)
                parts.append(piece)
        else:
            needed = exact_warmup(model)
            if warmup is None:
                warmup = needed
            elif warmup < needed:
                warnings.warn(
                    f"warm-up {warmup} d < {needed} d needed by {type(model).__name__}: "
                    "segmented inference will differ from one pass near segment starts",
                    stacklevel=2,
                )
            for start in range(0, n, segment):
                lo = max(0, start - warmup)
                piece, _ = model(tensor[:, lo : start + segment].to(device))
                parts.append(ModelOutput(*(p[:, start - lo :] for p in piece)))
        out = ModelOutput(*(torch.cat(p, dim=1) for p in zip(*parts, strict=True)))
    out = ModelOutput(*(p.cpu() for p in out))
    return ModelOutput(*(p[0] for p in out)) if squeeze else out
