"""A stateful LSTM: unbounded memory of the winter's cooling and preconditioning."""

from __future__ import annotations

import torch
from torch import nn

from cascadia.models.base import GaussianEventHead, ModelOutput, SequenceModel, register

__all__ = ["LSTMModel"]

LSTMState = tuple[torch.Tensor, torch.Tensor]


@register("lstm")
class LSTMModel(SequenceModel):
    """Multi-layer LSTM with a Gaussian + event head at every time step.

    The recurrent state is accepted and returned, so a 150-year series can be
    run in segments that carry the state: exactly the same result as one pass
    (the LSTM has no receptive-field limit, hence no warm-up makes it exact).

    Parameters
    ----------
    n_features : int
        Input features per day (standardised predictors + seasonal encodings).
    n_depths : int
        Target depths.
    hidden : int
        LSTM hidden size.
    layers : int
        Stacked LSTM layers.
    dropout : float
        Dropout between layers and before the head (training only).
    """

    stateful = True

    def __init__(
        self,
        n_features: int,
        n_depths: int = 2,
        hidden: int = 64,
        layers: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(n_features, n_depths)
        self.lstm = nn.LSTM(
            n_features,
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = GaussianEventHead(hidden, n_depths)

    def forward(
        self, x: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[ModelOutput, LSTMState]:
        """Run over ``x`` ``(batch, time, n_features)`` from ``state`` (zeros if None).

        Returns
        -------
        tuple
            The :class:`ModelOutput` and the final ``(h, c)`` state.
        """
        self._check_input(x)
        h, new_state = self.lstm(x, state)
        return self.head(self.dropout(h)), new_state
