"""Model families: regional models driven by one global model count as one model.

Why: RCMs downscaling the same GCM inherit its large-scale climate, so counting them as
independent models overstates how many independent sources agree. Every statistic
across models weights a *family* (the driving GCM and the RCMs it drives) as one model:
a model's weight is one over the number of models of its family that have a value, so
each family with a value weighs one (docs/spread.md, "Model families").

The family of each combination is recorded in the results store by the run
(``catalog_family``, from the run catalog's ``combo_id`` ``family``); stores written
before that get each ``source_id`` as its own family, and say so.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from cascadia.run.store import FAMILY_VAR

#: Coordinate (along ``source_id``) naming each model's family in the spread statistics.
FAMILY_COORD = "model_family"
_FAMILY_DIM = "family"


class FamilyError(ValueError):
    """The store records contradictory families for one model."""


def model_families(results: xr.Dataset, done: np.ndarray) -> xr.DataArray:
    """The family of each ``source_id`` (a coordinate along it, with CF-style attributes).

    Taken from ``catalog_family`` of the model's done combinations; a model without one
    (or a store written before families were recorded) is its own family, and the
    attribute ``family_fallback`` lists those models.

    Raises
    ------
    FamilyError
        A model's done combinations name different families (two run catalogs disagree).
    """
    sources = [str(s) for s in results["source_id"].values]
    recorded = (
        np.asarray(results[FAMILY_VAR].values, dtype=object)
        if FAMILY_VAR in results
        else np.full(done.shape, "", dtype=object)
    )
    families, fallback = [], []
    for j, source in enumerate(sources):
        named = sorted({str(f) for f in recorded[:, j, :][done[:, j, :]] if str(f)})
        if len(named) > 1:
            raise FamilyError(
                f"source_id {source!r} has combinations of the model families {named} "
                f"({FAMILY_VAR}); give its run catalogs' combo_id the same 'family'"
            )
        families.append(named[0] if named else source)
        if not named:
            fallback.append(source)
    attrs = {
        "long_name": "model family: the driving model of a regional model, the model "
        "itself otherwise; statistics across models weight each family as one model",
        "comment": f"from the run catalogs' combo_id family, recorded per combination in "
        f"{FAMILY_VAR}; a model without a recorded family is its own family",
    }
    if fallback:
        attrs["family_fallback"] = (
            "no family recorded (store written before families were, or no done "
            f"combination): each of these source_id is its own family: {' '.join(fallback)}"
        )
    return xr.DataArray(
        np.array(families, dtype=object), dims="source_id", coords={"source_id": sources}
    ).assign_attrs(attrs)


def _one_hot(family: xr.DataArray) -> xr.DataArray:
    """(source_id, family) membership matrix."""
    names = np.asarray(family.values, dtype=object)
    unique = np.array(sorted(set(names.tolist())), dtype=object)
    return xr.DataArray(
        (names[:, None] == unique[None, :]).astype(np.float64),
        dims=("source_id", _FAMILY_DIM),
        coords={"source_id": family["source_id"].values},
    )


def family_weights(valid: xr.DataArray, family: xr.DataArray) -> xr.DataArray:
    """Weight of each model: 1 / (models of its family that are valid), 0 where invalid.

    ``valid`` is boolean with a ``source_id`` dim (and any others: the weights follow
    them, so a family keeps its full weight where one of its models has no value).
    """
    hot = _one_hot(family)
    ok = valid.astype(np.float64)
    per_family = xr.dot(ok, hot, dim="source_id")
    per_model = xr.dot(per_family, hot, dim=_FAMILY_DIM)
    return xr.where(valid, 1.0 / per_model.where(per_model > 0), 0.0).transpose(*valid.dims)


def family_count(valid: xr.DataArray, family: xr.DataArray) -> xr.DataArray:
    """Number of families with at least one valid model (``source_id`` reduced)."""
    per_family = xr.dot(valid.astype(np.float64), _one_hot(family), dim="source_id")
    return (per_family > 0).sum(_FAMILY_DIM).astype(np.int32)
