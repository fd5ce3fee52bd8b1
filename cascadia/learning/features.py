"""Model inputs: canonical daily predictors → the feature matrix a deep ensemble reads.

One function, :func:`model_features`, used by training *and* by every later run, so
a model sees exactly the columns it was trained on. The recipe is data
(:class:`FeatureSpec`), saved in the model directory (``features.json``) and read
back by :func:`load_feature_spec`.

Columns:

* ``<variable>@<region>`` — the canonical daily predictors of each region;
* physics-shaped columns (``physics: true``), computed from the predictors of
  ``flux_region`` with the bulk formulas of :mod:`cascadia.learning.baselines`:
  ``buoyancy_loss@<region>`` (daily B, m2 s-3, positive = densifying),
  ``winter_loss@…`` (∫B dt since the winter's start), ``recent_loss@…`` (∫B dt
  over the last ``recent_days``) and ``stratification@…`` (−∫B dt over the
  preceding May–October), and the state of a slab model of the shelf driven by
  the same fluxes (:mod:`cascadia.learning.shelf`: ``shelf_temperature``,
  ``shelf_salinity``, ``shelf_sigma0``; the slab relaxes to the shelf's ``tos``
  when the model reads ``tos``, else to a climatological SST). Why: cascading is an
  integral-and-threshold response of the shelf to the winter's buoyancy loss
  (notes/dswc-science.md); a network given 24 raw series and ~20 training
  winters does not discover that integral on its own, and the same indices drive
  the regression baseline, so the network is compared with that baseline on
  equal information.

``tos`` (sea-surface temperature, °C) is an ordinary predictor: a spec that
selects it (or selects all variables of a source that has it) reads
``tos@<region>`` and hands the flux region's ``tos`` to the slab; a spec without
it ignores any ``tos`` in the data, so a model trained without SST computes the
same columns whether or not a source carries it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from cascadia.learning.airsea import surface_fluxes
from cascadia.learning.baselines import buoyancy_indices
from cascadia.learning.shelf import shelf_slab
from cascadia.mooring.targets import TargetError, flatten_predictors

__all__ = [
    "FEATURES_FILE",
    "FeatureSpec",
    "load_feature_spec",
    "model_features",
    "reads_tos",
]

FEATURES_FILE = "features.json"
PHYSICS_COLUMNS: tuple[str, ...] = (
    "buoyancy_loss",
    "winter_loss",
    "recent_loss",
    "stratification",
    "shelf_temperature",
    "shelf_salinity",
    "shelf_sigma0",
)


class FeatureSpec(BaseModel):
    """Which columns a model reads.

    Attributes
    ----------
    variables, regions
        Subsets of canonical variables and regions (all, sorted, if None).
    physics
        Add the buoyancy-loss columns (see the module docstring).
    flux_region
        Region whose predictors drive the air–sea fluxes (the shelf where dense
        water forms).
    recent_days
        Window of ``recent_loss`` (days).
    winter_start_month
        Month the winter's integral starts.
    """

    model_config = ConfigDict(extra="forbid")

    variables: list[str] | None = None
    regions: list[str] | None = None
    physics: bool = True
    flux_region: str = "gulf_of_lion_shelf"
    recent_days: int = Field(30, ge=1)
    winter_start_month: int = Field(11, ge=1, le=12)


def reads_tos(data: xr.Dataset, spec: FeatureSpec) -> bool:
    """Whether a model with ``spec`` reads sea-surface temperature (input and slab)."""
    if spec.variables is None:
        return "tos" in data.data_vars
    return "tos" in spec.variables


def input_series(data: xr.Dataset, spec: FeatureSpec) -> list[tuple[str, str]]:
    """The (variable, region) series of ``data`` a feature matrix with ``spec`` reads."""
    regions = [str(r) for r in data["region"].values]
    variables = [str(v) for v in data.data_vars]
    wanted = [v for v in (spec.variables or variables) if v in variables]
    pairs = [(v, r) for v in wanted for r in (spec.regions or regions) if r in regions]
    if spec.physics and spec.flux_region in regions:
        skip = set() if reads_tos(data, spec) else {"tos"}
        pairs += [(v, spec.flux_region) for v in variables if v not in skip]
    return list(dict.fromkeys(pairs))


def _physics_columns(data: xr.Dataset, spec: FeatureSpec) -> dict[str, np.ndarray]:
    regions = [str(r) for r in data["region"].values]
    if spec.flux_region not in regions:
        raise TargetError(
            f"features.flux_region {spec.flux_region!r} is not a predictor region; "
            f"the predictors have {regions}"
        )
    shelf = data.sel(region=spec.flux_region)
    predictors = {str(name): np.asarray(shelf[name].values) for name in shelf.data_vars}
    if not reads_tos(data, spec):
        predictors.pop("tos", None)
    try:
        flux = surface_fluxes(predictors, data["time"])
    except KeyError as exc:
        raise TargetError(f"physics features: {exc.args[0]}") from None
    indices = buoyancy_indices(
        flux.buoyancy_loss, data["time"], spec.recent_days, spec.winter_start_month
    )
    # The first winter of a series has no preceding summer: its stratification is
    # unknown. Fill with the series median so a series start is not a signal.
    strat = indices["stratification"]
    if np.isfinite(strat).any():
        strat = np.where(np.isfinite(strat), strat, np.nanmedian(strat))
    slab = shelf_slab(predictors, data["time"])
    return {
        "shelf_temperature": slab.temperature,
        "shelf_salinity": slab.salinity,
        "shelf_sigma0": slab.sigma0,
        "buoyancy_loss": flux.buoyancy_loss,
        "winter_loss": indices["winter_loss"],
        "recent_loss": indices["recent_loss"],
        "stratification": strat,
    }


def model_features(data: xr.Dataset, spec: FeatureSpec) -> xr.DataArray:
    """Feature matrix ``(time, feature)`` (float64) of canonical daily predictors.

    Parameters
    ----------
    data : xarray.Dataset
        Canonical daily predictors with dims ``(time, region)`` (the predictor
        cache's layout), consecutive days.
    spec : FeatureSpec
        The recipe.

    Raises
    ------
    TargetError
        A variable or region the spec names is absent, or the physics columns
        lack a predictor they need.
    """
    matrix, _ = flatten_predictors(data, spec.variables, spec.regions)
    if not spec.physics:
        return matrix
    extra = _physics_columns(data, spec)
    columns = [np.asarray(extra[name], dtype=np.float64) for name in PHYSICS_COLUMNS]
    names = [f"{name}@{spec.flux_region}" for name in PHYSICS_COLUMNS]
    physics = xr.DataArray(
        np.stack(columns, axis=1),
        dims=("time", "feature"),
        coords={"time": matrix["time"].values, "feature": names},
    )
    return xr.concat([matrix, physics], dim="feature")


def feature_names(matrix: xr.DataArray) -> Sequence[str]:
    """Column names of a feature matrix, in order."""
    return tuple(str(f) for f in matrix["feature"].values)


def save_feature_spec(directory: str | Path, spec: FeatureSpec) -> Path:
    """Write ``features.json`` into a model directory."""
    path = Path(directory) / FEATURES_FILE
    path.write_text(json.dumps(spec.model_dump(), indent=2) + "\n")
    return path


def load_feature_spec(directory: str | Path) -> FeatureSpec:
    """Read a model directory's ``features.json``."""
    path = Path(directory) / FEATURES_FILE
    if not path.exists():
        raise TargetError(f"{path} is missing: the model directory has no feature recipe")
    return FeatureSpec.model_validate_json(path.read_text())
