"""Architectures with Gaussian + event heads, their registry and long-series inference.

Importing the package registers the built-in architectures (``lstm``,
``transformer``, ``tcn``); :func:`build_model` builds one by name.
"""

from cascadia.learning.models import lstm, tcn, transformer  # noqa: F401  (register architectures)
from cascadia.learning.models.base import (
    GaussianEventHead,
    ModelOutput,
    SequenceModel,
    available_models,
    build_model,
    model_class,
    register,
)
from cascadia.learning.models.inference import exact_warmup, predict_series
from cascadia.learning.models.lstm import LSTMModel
from cascadia.learning.models.seasonal import N_SEASONAL_FEATURES, seasonal_features, year_phase
from cascadia.learning.models.tcn import TCNModel
from cascadia.learning.models.transformer import TransformerModel

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
