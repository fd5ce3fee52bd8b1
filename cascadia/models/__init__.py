"""Architectures with Gaussian + event heads, their registry and long-series inference.

Importing the package registers the built-in architectures (``lstm``,
``transformer``, ``tcn``); :func:`build_model` builds one by name.
"""

from cascadia.models import lstm, tcn, transformer  # noqa: F401  (register architectures)
from cascadia.models.base import (
    GaussianEventHead,
    ModelOutput,
    SequenceModel,
    available_models,
    build_model,
    model_class,
    register,
)
from cascadia.models.inference import exact_warmup, predict_series
from cascadia.models.lstm import LSTMModel
from cascadia.models.seasonal import N_SEASONAL_FEATURES, seasonal_features, year_phase
from cascadia.models.tcn import TCNModel
from cascadia.models.transformer import TransformerModel

__all__ = [
    "N_SEASONAL_FEATURES",
    "GaussianEventHead",
    "LSTMModel",
    "ModelOutput",
    "SequenceModel",
    "TCNModel",
    "TransformerModel",
    "available_models",
    "build_model",
    "exact_warmup",
    "model_class",
    "predict_series",
    "register",
    "seasonal_features",
    "year_phase",
]
