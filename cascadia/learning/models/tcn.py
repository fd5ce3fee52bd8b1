"""A temporal convolutional network: dilated causal convolutions over ≥ 1 year."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cascadia.learning.models.base import GaussianEventHead, ModelOutput, SequenceModel, register

__all__ = ["TCNModel", "tcn_receptive_field"]


def tcn_receptive_field(kernel_size: int, levels: int) -> int:
    """Receptive field (days) of ``levels`` residual blocks with dilations 1, 2, 4, ….

    Each block has two causal convolutions of the same dilation, so the field
    is ``1 + 2 (k − 1)(2^levels − 1)``.
    """
    return 1 + 2 * (kernel_size - 1) * (2**levels - 1)


class _CausalConv(nn.Conv1d):
    """Conv1d padded on the left only: output t sees inputs ≤ t."""

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__(channels, channels, kernel_size, dilation=dilation)
        self.left = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, 0)))


class _Block(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = _CausalConv(channels, kernel_size, dilation)
        self.conv2 = _CausalConv(channels, kernel_size, dilation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.gelu(self.conv1(x)))
        h = self.dropout(F.gelu(self.conv2(h)))
        return x + h


@register("tcn")
class TCNModel(SequenceModel):
    """Residual stack of dilated causal convolutions.

    Why a TCN: cascading integrates a whole winter of buoyancy loss on top of
    autumn preconditioning; the receptive field is made ≥ ``min_receptive_field``
    days (default 365) so that every prediction sees a full year, and the model
    is stateless with a known horizon, so segmented inference with a warm-up of
    ``receptive_field − 1`` days is exact.

    Parameters
    ----------
    n_features : int
        Input features per day.
    n_depths : int
        Target depths.
    channels : int
        Hidden channels.
    kernel_size : int
        Convolution kernel size (days, before dilation).
    levels : int, optional
        Residual blocks (dilations 1, 2, …, 2^(levels−1)); by default the fewest
        reaching ``min_receptive_field``.
    min_receptive_field : int
        Smallest acceptable receptive field (days).
    dropout : float
        Dropout inside the blocks (training only).

    Raises
    ------
    ValueError
        If ``levels`` gives a receptive field below ``min_receptive_field``.
    """

    def __init__(
        self,
        n_features: int,
        n_depths: int = 2,
        channels: int = 32,
        kernel_size: int = 3,
        levels: int | None = None,
        min_receptive_field: int = 365,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(n_features, n_depths)
        if kernel_size < 2:
            raise ValueError(f"kernel_size must be ≥ 2, got {kernel_size}")
        if levels is None:
            levels = 1
            while tcn_receptive_field(kernel_size, levels) < min_receptive_field:
                levels += 1
        field = tcn_receptive_field(kernel_size, levels)
        if field < min_receptive_field:
            raise ValueError(
                f"TCN receptive field {field} d < min_receptive_field {min_receptive_field} d; "
                "increase levels or kernel_size"
            )
        self.receptive_field = field
        self.inp = nn.Conv1d(n_features, channels, 1)
        self.blocks = nn.Sequential(
            *(_Block(channels, kernel_size, 2**i, dropout) for i in range(levels))
        )
        self.head = GaussianEventHead(channels, n_depths)

    @property
    def context_length(self) -> int:
        """Receptive field in days."""
        return self.receptive_field

    def forward(self, x: torch.Tensor, state: None = None) -> tuple[ModelOutput, None]:
        """Run over ``x`` ``(batch, time, n_features)``; ``state`` is unused (None)."""
        self._check_input(x)
        h = self.blocks(self.inp(x.transpose(1, 2)))
        return self.head(h.transpose(1, 2)), None
