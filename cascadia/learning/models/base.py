"""The forward contract shared by every architecture, and the registry.

Every model maps standardised daily predictors plus seasonal encodings,
``x`` of shape ``(batch, time, features)``, to one output per time step: a
Gaussian mean and log-variance of the (standardised) deep-temperature anomaly
at each depth and a cascading-event logit at each depth. Models are causal: the
output at day *t* depends on days ≤ *t* only, so a hindcast or projection can be
run over a whole series at once.

Models register themselves by name (``@register("lstm")``) and are built from
a name and keyword hyperparameters (:func:`build_model`), so configs name an
architecture as data and no factory has to know the list.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

__all__ = [
    "LOG_VAR_BOUND",
    "GaussianEventHead",
    "ModelOutput",
    "SequenceModel",
    "available_models",
    "build_model",
    "model_class",
    "register",
]

#: Soft bound on the predicted log-variance (standardised units). ±10 spans
#: σ from 0.007 to 150 target standard deviations — far beyond anything useful —
#: and keeps ``exp(-log_var)`` finite early in training.
LOG_VAR_BOUND = 10.0


class ModelOutput(NamedTuple):
    """Per-time-step outputs, each of shape ``(batch, time, n_depths)``.

    Attributes
    ----------
    mean : torch.Tensor
        Mean of the Gaussian predictive distribution (standardised target units).
    log_var : torch.Tensor
        Natural log of its variance (standardised units squared).
    event_logit : torch.Tensor
        Logit of the probability that the day is a cascading event day.
    """

    mean: torch.Tensor
    log_var: torch.Tensor
    event_logit: torch.Tensor


class GaussianEventHead(nn.Module):
    """Linear read-out to (mean, log-variance, event logit) per depth.

    Parameters
    ----------
    hidden : int
        Size of the per-time-step representation.
    n_depths : int
        Number of target depths (2: 500 m and 1000 m).
    """

    def __init__(self, hidden: int, n_depths: int) -> None:
        super().__init__()
        self.n_depths = n_depths
        self.linear = nn.Linear(hidden, 3 * n_depths)

    def forward(self, h: torch.Tensor) -> ModelOutput:
        """Map ``(batch, time, hidden)`` to a :class:`ModelOutput`."""
        mean, raw_log_var, logit = self.linear(h).split(self.n_depths, dim=-1)
        # tanh bound instead of a clamp: gradients never vanish at the edges.
        log_var = LOG_VAR_BOUND * torch.tanh(raw_log_var / LOG_VAR_BOUND)
        return ModelOutput(mean, log_var, logit)


class SequenceModel(nn.Module):
    """Base class of the architectures: a causal sequence-to-sequence model.

    Subclasses implement :meth:`forward` with the signature
    ``forward(x, state=None) -> (ModelOutput, state)``. Stateless models accept
    and return ``None``; recurrent models accept the state returned by the
    previous call so that a long series can be processed in segments exactly.

    Attributes
    ----------
    name : str
        Registry name, set by :func:`register`.
    stateful : bool
        Whether the model carries a state between calls (then segmented
        inference needs no warm-up).
    hparams : dict
        Constructor arguments, recorded by :func:`build_model` so that a model
        directory can rebuild the model.
    """

    name: ClassVar[str] = ""
    stateful: ClassVar[bool] = False

    def __init__(self, n_features: int, n_depths: int = 2) -> None:
        super().__init__()
        if n_features < 1 or n_depths < 1:
            raise ValueError(f"n_features and n_depths must be ≥ 1, got {n_features}, {n_depths}")
        self.n_features = n_features
        self.n_depths = n_depths
        self.hparams: dict[str, Any] = {}

    @property
    def context_length(self) -> int | None:
        """Number of days (current one included) an output depends on.

        ``None`` for recurrent models, whose memory is unbounded. Segmented
        inference of a stateless model is exact with a warm-up of
        ``context_length - 1`` days.
        """
        return None

    def forward(
        self, x: torch.Tensor, state: Any = None
    ) -> tuple[ModelOutput, Any]:  # pragma: no cover - abstract
        """Run the model over ``x`` of shape ``(batch, time, n_features)``."""
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.n_features:
            raise ValueError(
                f"{type(self).__name__} expects input (batch, time, {self.n_features}), "
                f"got shape {tuple(x.shape)}"
            )


_REGISTRY: dict[str, type[SequenceModel]] = {}


def register(name: str) -> Callable[[type[SequenceModel]], type[SequenceModel]]:
    """Class decorator registering an architecture under ``name``.

    Parameters
    ----------
    name : str
        Key used in configs (``architecture: lstm``).

    Returns
    -------
    callable
        Decorator returning the class unchanged (with ``name`` set).

    Raises
    ------
    ValueError
        If another class is already registered under ``name``.
    """

    def decorator(cls: type[SequenceModel]) -> type[SequenceModel]:
        if not (isinstance(cls, type) and issubclass(cls, SequenceModel)):
            raise TypeError(f"@register({name!r}) needs a SequenceModel subclass, got {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"model name {name!r} already registered by {existing!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_models() -> list[str]:
    """Names of the registered architectures, sorted."""
    return sorted(_REGISTRY)


def model_class(name: str) -> type[SequenceModel]:
    """The class registered under ``name``.

    Raises
    ------
    KeyError
        If ``name`` is not registered (the message lists the registered names).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown model architecture {name!r}; registered: {available_models()}"
        ) from None


def build_model(name: str, **hparams: Any) -> SequenceModel:
    """Instantiate a registered architecture.

    Parameters
    ----------
    name : str
        Registry name (``"lstm"``, ``"transformer"``, ``"tcn"``, …).
    **hparams
        Constructor arguments, at least ``n_features``; unknown keys are an
        error (a misspelt hyperparameter must not be silently ignored).

    Returns
    -------
    SequenceModel
        The model, with ``hparams`` recorded for saving.

    Raises
    ------
    KeyError
        Unknown architecture.
    TypeError
        Unknown or missing hyperparameters.
    """
    cls = model_class(name)
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self"]
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise TypeError(f"{name!r} got unknown hyperparameters {unknown}; accepted: {accepted}")
    model = cls(**hparams)
    model.hparams = dict(hparams)
    return model
