"""Per-seed physics of the twin's ocean: parameters drawn from plausible ranges.

A design judged on one twin world is judged on one ocean. ``draw_ocean_params``
draws the ocean's uncertain parameters (renewal and relaxation times, entrainment,
the ambient water's density, the storm pulses, the noise, the offshore water's
coupling to the air) uniformly from ranges the literature supports
(docs/twin-world.md, "Physics drawn per seed", gives each range and its source).
``build_world(..., vary_physics=True)`` uses it and records the values in
``world.json`` under ``ocean_params``; :func:`params_from_manifest` reads them back
so that anything regenerating the world (the skill ceiling, a validation) runs the
same ocean.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from cascadia.twin.ocean import OceanParams

#: world.json keys: the ocean parameters the world was built with, and whether drawn.
PARAMS_KEY = "ocean_params"
VARY_KEY = "vary_physics"

#: Uniform ranges (low, high) of the drawn scalar parameters.
RANGES: dict[str, tuple[float, float]] = {
    "exchange_days": (25.0, 60.0),
    "export_renewal": (0.05, 0.12),
    "ambient_density_offset": (-0.02, 0.02),
    "density_scale": (0.03, 0.08),
    "cascade_rate": (0.3, 0.7),
    "pulse_floor": (0.15, 0.45),
    "pulse_wind": (10.0, 14.0),
    "stratification_temp": (0.3, 0.7),
    "offshore_response_days": (20.0, 60.0),
    "offshore_air_gain": (0.2, 0.5),
    "offshore_forced_gain": (0.7, 0.95),
}
#: Ranges of the (500 m, 1000 m) pairs. Every other parameter keeps its default.
PAIR_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "entrainment": ((0.3, 0.5), (0.5, 0.7)),
    "entrainment_loss": ((0.005, 0.02), (0.01, 0.03)),
    "relax_days": ((7.0, 14.0), (12.0, 24.0)),
    "deep_noise": ((0.015, 0.035), (0.01, 0.02)),
}


def draw_ocean_params(rng: np.random.Generator) -> OceanParams:
    """Ocean parameters drawn uniformly from :data:`RANGES` and :data:`PAIR_RANGES`."""
    drawn: dict[str, Any] = {k: float(rng.uniform(*r)) for k, r in RANGES.items()}
    for name, (first, second) in PAIR_RANGES.items():
        drawn[name] = (float(rng.uniform(*first)), float(rng.uniform(*second)))
    return OceanParams(**drawn)


def seed_params(seed: int) -> OceanParams:
    """The parameters ``build_world(seed=seed, vary_physics=True)`` draws."""
    return draw_ocean_params(np.random.default_rng(np.random.SeedSequence([seed, 77])))


def params_to_json(params: OceanParams) -> dict[str, Any]:
    """Every field of ``params`` as JSON values (pairs as lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()
    }


def params_from_json(values: dict[str, Any]) -> OceanParams:
    """Inverse of :func:`params_to_json`; a ``ValueError`` names an unknown or bad field."""
    fields = {f.name: f for f in dataclasses.fields(OceanParams)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{PARAMS_KEY}: unknown ocean parameters {unknown}")
    try:
        return OceanParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except TypeError as exc:
        raise ValueError(f"{PARAMS_KEY}: {exc}") from None


def params_from_manifest(manifest: dict[str, Any]) -> OceanParams:
    """The ocean parameters of a world from its ``world.json`` (defaults if it has none,
    as worlds written before the parameters were recorded)."""
    values = manifest.get(PARAMS_KEY)
    return OceanParams() if values is None else params_from_json(values)
