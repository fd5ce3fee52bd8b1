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
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ColdReservoir", "DensityGate"]


class DensityGate(nn.Module):
    """Log of a gate in (0, 1) that rises monotonically with the shelf water's density.

    Why: dense shelf water cascades only when it is denser than the water on the
    slope it flows into (Shapiro et al. 2003, Oceanologica Acta 26; Durrieu de Madron
    et al. 2005, Cont. Shelf Res. 25; Herrmann et al. 2008, JGR 113): the flux is a
    threshold function of the density. A network fitted on ~20 winters has no reason
    to respect that outside them — in a warmer climate, whose shelf is lighter than any
    winter it saw, it can predict cascading that no dense water could drive. The gate
    ``σ(a_d (ρ − c_d))`` on the (standardised) slab density, with a learned threshold
    ``c_d`` and a positive learned steepness ``a_d`` per depth, scales the cold-water
    input and the event probability: lighter shelf water can only lower them.

    With ``threshold`` given the gate is anchored, not learned: its threshold and
    steepness are fixed (no gradient). Why: a learned threshold is not identified by
    the training winters — the network can say "no cascade" itself, so the gate stays
    where it starts, far below the densities at which the record cascades — while the
    record does say which slab densities cascaded (``density_gate: events``,
    :func:`cascadia.learning.training.resolve_gate`).
    """

    def __init__(
        self,
        n_depths: int,
        steepness: float = 2.0,
        threshold: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        start = torch.zeros(n_depths) if threshold is None else torch.tensor(threshold)
        if start.shape != (n_depths,):
            raise ValueError(f"gate threshold {list(threshold or [])} needs one value per depth")
        self.threshold = nn.Parameter(start.float(), requires_grad=threshold is None)
        # softplus⁻¹(steepness): the steepness stays positive whatever the optimiser does
        self.raw_steepness = nn.Parameter(
            torch.full((n_depths,), math.log(math.expm1(steepness))),
            requires_grad=threshold is None,
        )

    def forward(self, density: torch.Tensor) -> torch.Tensor:
        """``log σ(a (ρ − c))``, ``(batch, time, depth)``, for ``density`` ``(batch, time)``."""
        steepness = F.softplus(self.raw_steepness)
        return F.logsigmoid(steepness * (density[..., None] - self.threshold))


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
    chunk : int
        Days per chunk of the chunked form (see :meth:`forward`); the result does
        not depend on it beyond float rounding.
    """

    def __init__(
        self, hidden: int, n_depths: int, timescale_days: float = 12.0, chunk: int = 64
    ) -> None:
        super().__init__()
        self.source = nn.Linear(hidden, n_depths)
        # Start nearly empty: softplus(-6) ≈ 0.0025 per day.
        nn.init.constant_(self.source.bias, -6.0)
        keep = math.exp(-1.0 / timescale_days)
        self.keep_logit = nn.Parameter(torch.full((n_depths,), math.log(keep / (1.0 - keep))))
        self.chunk = chunk

    @property
    def timescale_days(self) -> torch.Tensor:
        """Learned e-folding time of the recovery (days), per depth."""
        return -1.0 / torch.log(torch.sigmoid(self.keep_logit))

    def forward(
        self,
        h: torch.Tensor,
        level: torch.Tensor | None = None,
        log_gate: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reservoir level ``(batch, time, depth)`` and its last value ``(batch, depth)``.

        ``level`` is the level before the first day (zeros if None), so a long
        series run in segments gives the same levels as one pass; ``log_gate``
        (``(batch, time, depth)``, ≤ 0) scales the daily input (a :class:`DensityGate`).

        Chunked form, no loop over time: the series is cut into chunks of ``L`` days;
        inside each chunk the level from an empty start is one product with the
        ``L × L`` kernel ``λ^(t−s)``; the level a chunk inherits is the same leaky
        integral one level up, over the chunks' end values with the kernel
        ``λ^(L(c−1−j))``. Work ``O(n L + (n/L)²)`` and every power of ``λ`` ≤ 1, so
        nothing overflows whatever the learned time scale.
        """
        inflow = F.softplus(self.source(h))
        if log_gate is not None:
            inflow = inflow * torch.exp(log_gate)
        batch, n, depths = inflow.shape
        previous = inflow.new_zeros(batch, depths) if level is None else level
        if n == 0:
            return inflow, previous
        log_keep = F.logsigmoid(self.keep_logit)  # (D,)
        size = min(self.chunk, n)
        chunks = -(-n // size)
        x = F.pad(inflow, (0, 0, 0, chunks * size - n)).view(batch, chunks, size, depths)
        within = torch.einsum("dts,bcsd->bctd", _decay_kernel(size, log_keep), x)
        # level carried into chunk c: λ^(cL)·level + Σ_{j<c} λ^(L(c−1−j)) · end value of j
        ends = torch.cat([previous[:, None], within[:, :-1, -1]], dim=1)  # (B, C, D)
        between = _decay_kernel(chunks, log_keep * size)  # (D, C, C): λ^(L(c−j))
        carried = torch.einsum("dcj,bjd->bcd", between, ends)
        days = torch.arange(1, size + 1, device=h.device, dtype=h.dtype)
        rise = torch.exp(days[:, None] * log_keep[None, :])  # λ^(t+1), (L, D)
        levels = within + rise[None, None] * carried[:, :, None, :]
        levels = levels.reshape(batch, chunks * size, depths)[:, :n]
        return levels, levels[:, -1]


def _decay_kernel(size: int, log_keep: torch.Tensor) -> torch.Tensor:
    """``kernel[d, t, s] = exp((t − s) · log_keep[d])`` for ``s ≤ t``, else 0."""
    steps = torch.arange(size, device=log_keep.device, dtype=log_keep.dtype)
    lag = steps[:, None] - steps[None, :]
    return torch.exp(lag.clamp_min(0)[None] * log_keep[:, None, None]) * (lag >= 0)
