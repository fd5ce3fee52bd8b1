"""A stateful LSTM: unbounded memory of the winter's cooling and preconditioning."""

from __future__ import annotations

import torch
from torch import nn

from cascadia.learning.models.base import GaussianEventHead, ModelOutput, SequenceModel, register
from cascadia.learning.models.reservoir import ColdReservoir, DensityGate

__all__ = ["LSTMModel"]

#: ``(h, c)``, plus the reservoir level when the model has one.
LSTMState = tuple[torch.Tensor, ...]


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
    reservoir : bool
        Add a :class:`~cascadia.learning.models.reservoir.ColdReservoir` to the mean: the
        network emits cold-water inputs, the head integrates them with a
        learned recovery time.
    gate_column : int, optional
        Input column of the shelf slab's density: the event logit and the reservoir's
        cold-water input are scaled by a :class:`~cascadia.learning.models.reservoir.DensityGate`
        on it, monotone in the density (set from the job's ``density_gate: true``).
    gate_threshold : list of float, optional
        Anchor the gate: its threshold per depth (standardised density) and
        ``gate_steepness``, both fixed (set from the job's ``density_gate: events``).
    gate_steepness : float
        The gate's steepness per standardised unit (its starting value when learned).
    """

    stateful = True

    def __init__(
        self,
        n_features: int,
        n_depths: int = 2,
        hidden: int = 64,
        layers: int = 1,
        dropout: float = 0.1,
        reservoir: bool = False,
        gate_column: int | None = None,
        gate_threshold: list[float] | None = None,
        gate_steepness: float = 2.0,
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
        self.reservoir = ColdReservoir(hidden, n_depths) if reservoir else None
        if gate_column is not None and not 0 <= gate_column < n_features:
            raise ValueError(f"gate_column {gate_column} is not one of {n_features} inputs")
        self.gate_column = gate_column
        if gate_threshold is not None and gate_column is None:
            raise ValueError("gate_threshold needs a gate_column")
        self.gate = (
            None
            if gate_column is None
            else DensityGate(n_depths, steepness=gate_steepness, threshold=gate_threshold)
        )

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
        recurrent = None if state is None else (state[0], state[1])
        h, (h_n, c_n) = self.lstm(x, recurrent)
        h = self.dropout(h)
        out = self.head(h)
        log_gate = None
        if self.gate is not None:
            log_gate = self.gate(x[..., self.gate_column])
            out = out._replace(event_logit=out.event_logit + log_gate)
        if self.reservoir is None:
            return out, (h_n, c_n)
        level, last = self.reservoir(h, None if state is None else state[2], log_gate)
        return out._replace(mean=out.mean - level), (h_n, c_n, last)
