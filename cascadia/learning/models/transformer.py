"""A causal transformer with local (windowed) attention and relative position biases."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cascadia.learning.models.base import GaussianEventHead, ModelOutput, SequenceModel, register

__all__ = ["TransformerModel", "alibi_slopes", "local_causal_attention"]


def alibi_slopes(heads: int) -> torch.Tensor:
    """Per-head slopes (day⁻¹) of the linear distance penalty (ALiBi, Press et al. 2022).

    Geometric slopes 2^(−8h/H), h = 1…H: with 4 heads the attention decays over
    about 4, 16, 64 and 256 days, from synoptic events to the preconditioning of
    the previous autumn.
    """
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)])


def local_causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, slopes: torch.Tensor
) -> torch.Tensor:
    """Attention of each day to itself and the ``window − 1`` previous days.

    Why blocked: a dense ``T × T`` mask over a 55,000-day series would need
    3 × 10⁹ entries. The sequence is cut into blocks of ``window`` days; each
    block attends to itself and the previous block, so memory is
    ``O(T · 2·window)``. The position bias depends on the distance only (no
    absolute positions), hence the result does not depend on where a segment
    starts — which makes segmented inference exact.

    Parameters
    ----------
    q, k, v : torch.Tensor
        ``(batch, heads, time, head_dim)``.
    window : int
        Attention window (days, current day included).
    slopes : torch.Tensor
        ``(heads,)`` distance penalties (day⁻¹).

    Returns
    -------
    torch.Tensor
        ``(batch, heads, time, head_dim)``.
    """
    b, h, t, d = q.shape
    w = window
    nb = -(-t // w)
    pad = nb * w - t
    if pad:
        q, k, v = (F.pad(z, (0, 0, 0, pad)) for z in (q, k, v))
    qb = q.reshape(b, h, nb, w, d)
    kb = k.reshape(b, h, nb, w, d)
    vb = v.reshape(b, h, nb, w, d)
    # keys of block n: block n−1 then block n (block −1 is padding, masked below)
    kk = torch.cat([F.pad(kb, (0, 0, 0, 0, 1, 0))[:, :, :-1], kb], dim=3)
    vv = torch.cat([F.pad(vb, (0, 0, 0, 0, 1, 0))[:, :, :-1], vb], dim=3)
    i = torch.arange(w, device=q.device)[:, None]
    j = torch.arange(2 * w, device=q.device)[None, :]
    dist = i + w - j  # days between query i (of this block) and key j (of the pair)
    allowed = (dist >= 0) & (dist < w)
    bias = -slopes.to(q)[:, None, None] * dist.to(q)  # (heads, w, 2w)
    bias = bias.masked_fill(~allowed, float("-inf"))
    first = bias.masked_fill(j < w, float("-inf"))  # block 0 has no previous block
    bias = torch.cat([first[:, None], bias[:, None].expand(h, nb - 1, w, 2 * w)], dim=1)
    out = F.scaled_dot_product_attention(qb, kk, vv, attn_mask=bias)
    return out.reshape(b, h, nb * w, d)[:, :, :t]


class _Layer(nn.Module):
    def __init__(self, d_model: int, heads: int, window: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, 4 * d_model),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(4 * d_model, d_model),
        )
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("slopes", alibi_slopes(heads), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        att = local_causal_attention(q, k, v, self.window, self.slopes)
        x = x + self.dropout(self.proj(att.transpose(1, 2).reshape(b, t, c)))
        return x + self.dropout(self.ff(self.norm2(x)))


@register("transformer")
class TransformerModel(SequenceModel):
    """Pre-norm causal transformer with a bounded attention window.

    Each layer lets a day attend to the ``window`` most recent days (itself
    included), with ALiBi distance biases instead of absolute positional
    encodings (the date enters through the seasonal features). ``layers``
    layers see ``layers·(window − 1) + 1`` days.

    Parameters
    ----------
    n_features : int
        Input features per day.
    n_depths : int
        Target depths.
    d_model : int
        Width of the representation.
    heads : int
        Attention heads (must divide ``d_model``).
    layers : int
        Transformer layers.
    window : int
        Attention window in days (365: one year of context per layer).
    dropout : float
        Dropout (training only).
    """

    def __init__(
        self,
        n_features: int,
        n_depths: int = 2,
        d_model: int = 32,
        heads: int = 4,
        layers: int = 2,
        window: int = 365,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(n_features, n_depths)
        if d_model % heads:
            raise ValueError(f"heads ({heads}) must divide d_model ({d_model})")
        if window < 1:
            raise ValueError(f"window must be ≥ 1 day, got {window}")
        self.window = window
        self.layers = layers
        self.inp = nn.Linear(n_features, d_model)
        self.body = nn.ModuleList(_Layer(d_model, heads, window, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = GaussianEventHead(d_model, n_depths)

    @property
    def context_length(self) -> int:
        """Days an output depends on: ``layers·(window − 1) + 1``."""
        return self.layers * (self.window - 1) + 1

    def forward(self, x: torch.Tensor, state: None = None) -> tuple[ModelOutput, None]:
        """Run over ``x`` ``(batch, time, n_features)``; ``state`` is unused (None)."""
        self._check_input(x)
        h = self.inp(x)
        for layer in self.body:
            h = layer(h)
        return self.head(self.norm(h)), None
