"""A cold-water reservoir read-out: sharp cooling, exponential recovery, by construction.

Why: a cascading pulse cools the canyon within days, and the deep water then
relaxes back to its background over weeks (restratification). A free linear
read-out has to learn that asymmetric memory from a handful of observed
events, and with ~20 training winters it learns a smooth winter dip instead.
This head builds the memory in: the network emits a non-negative daily input
of cold water ``s_t`` per depth and the anomaly it adds is a leaky integral of
it, ``r_t = λ r_{t−1} + s_t`` (a well-mixed deep volume that loses its cold
anomaly at the rate ``1 − λ``), with ``λ`` learned per depth. The network then
only has to recognise *when* dense water arrives — a local function of the
shelf state and the wind — not how long its trace lasts.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ColdReservoir"]


class ColdReservoir(nn.Module):
    """Leaky integral of a non-negative input per depth (standardised units).

    Parameters
    ----------
    hidden : int
        Size of the per-time-step representation it reads.
    n_depths : int
        Target depths.
    timescale_days : float
        Initial e-folding time of the recovery, ``−1/log λ`` (learned afterwards).
    block : int
        Days integrated per matrix product: memory grows with ``block²``, the
        result does not depend on it (the level is carried between blocks).
    """

    def __init__(
        self, hidden: int, n_depths: int, timescale_days: float = 12.0, block: int = 512
    ) -> None:
        super().__init__()
        self.source = nn.Linear(hidden, n_depths)
        # Start nearly empty: softplus(-6) ≈ 0.0025 per day.
        nn.init.constant_(self.source.bias, -6.0)
        keep = math.exp(-1.0 / timescale_days)
        self.keep_logit = nn.Parameter(torch.full((n_depths,), math.log(keep / (1.0 - keep))))
        self.block = block

    @property
    def timescale_days(self) -> torch.Tensor:
        """Learned e-folding time of the recovery (days), per depth."""
        return -1.0 / torch.log(torch.sigmoid(self.keep_logit))

    def forward(
        self, h: torch.Tensor, level: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reservoir level ``(batch, time, depth)`` and its last value ``(batch, depth)``.

        ``level`` is the level before the first day (zeros if None), so a long
        series run in segments gives the same levels as one pass.
        """
        inflow = F.softplus(self.source(h))
        batch, n, depths = inflow.shape
        log_keep = F.logsigmoid(self.keep_logit)  # (D,)
        previous = inflow.new_zeros(batch, depths) if level is None else level
        levels = []
        for start in range(0, n, self.block):
            chunk = inflow[:, start : start + self.block]
            days = torch.arange(chunk.shape[1], device=h.device, dtype=h.dtype)
            lag = days[:, None] - days[None, :]
            # kernel[d, t, s] = λ_d^(t−s) for s ≤ t, else 0
            kernel = torch.exp(lag.clamp_min(0)[None] * log_keep[:, None, None]) * (lag >= 0)
            carried = torch.exp((days[:, None] + 1) * log_keep[None, :])  # λ^(t+1), (L, D)
            chunk_levels = torch.einsum("dts,bsd->btd", kernel, chunk)
            chunk_levels = chunk_levels + carried[None] * previous[:, None, :]
            previous = chunk_levels[:, -1]
            levels.append(chunk_levels)
        return torch.cat(levels, dim=1), previous
