"""The consolidated CF Zarr results store (see DESIGN.md, "Results store").

Layout: one Zarr v2 group with consolidated metadata (v3 + consolidation warns, see
notes/stack-pitfalls.md) so that a plain ``xr.open_zarr(url)`` opens it silently. Every
per-combination variable is chunked with exactly one (experiment, source_id, member_id)
combination per chunk, so workers write disjoint regions with ``to_zarr(region=...)`` and
never touch each other's chunks. The store is created lazily from a dask template
(``compute=False``): large variables have no chunk on disk until a combination is
written, and read back as NaN (explicit ``_FillValue`` NaN).

A combination is first marked "writing", then its data is written, then its
``status``/provenance ("done") last, so a run killed mid-write leaves the combination
"writing" (never "done" over half-new data) and a rerun redoes it. Region writes never
rewrite ``.zmetadata``: the metadata does not change after :func:`initialise_store`, so
the consolidated metadata stays valid without concurrent writers racing on one file;
only the client re-consolidates (:func:`update_attrs`), before or after the writers.

:func:`prepare_store` reuses an existing store whose axes can take a run (combos of a run
that fall in holes of the label product are switched from "not_in_catalog" to "missing")
and refuses, naming the difference, one that cannot: it never wipes a written combination.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import fsspec
import numpy as np
import pandas as pd
import xarray as xr
import zarr

COMBO_DIMS: tuple[str, str, str] = ("experiment", "source_id", "member_id")
STATUSES: tuple[str, ...] = ("missing", "writing", "done", "failed")
PROVENANCE_VARS: tuple[str, ...] = (
    "fingerprint",
    "model_checkpoint_hash",
    "package_version",
    "catalog_entry",
    "selection",  # JSON: datasets read and copies skipped (cascadia.sources.selection)
)
STRING_VARS: tuple[str, ...] = ("status", "status_reason", *PROVENANCE_VARS)
#: Each combination's model family from its run catalog (``combo_id`` ``family``; the
#: driving GCM of an RCM): written by :func:`record_families`, absent from older stores.
FAMILY_VAR = "catalog_family"
_FAMILY_ATTRS = {
    "long_name": "model family of the combination, from its run catalog (combo_id family: "
    "the driving model of a regional model, else the source_id)",
    "comment": "the spread statistics weight a family as one model (docs/spread.md); "
    "empty: not recorded, the family is the source_id",
}
TIME_UNITS = "days since 1850-01-01"
CALENDAR = "standard"
TITLE = "cascadia ensemble results"
#: The attribute that marks the spread statistics among the store's variables.
SPREAD_ROLE, SPREAD_VALUE = "cascadia_role", "spread_statistics"

_TEMPERATURE = {"standard_name": "sea_water_temperature", "units": "degree_Celsius"}
_COOLING = {"units": "degree_Celsius", "units_metadata": "temperature: difference"}
_EVENT_RULE = (
    "event rule of the model's job.yaml (events) on the predicted anomaly, see docs/events.md"
)
#: Months of the cascading season a winter's statistics count: winter Y = 1 November Y-1
#: to 30 April Y (docs/events.md); the winter-year's May-October days never count.
SEASON_MONTHS: tuple[int, ...] = (11, 12, 1, 2, 3, 4)
SEASON = "November-April"
_IN_SEASON = (
    " (comment: days of the winter's November-April season, season_bounds; "
    "the event rule runs on the whole series)"
)

#: ``background_kind`` values: inside the mooring record, and the two continuations of
#: :class:`cascadia.mooring.targets.BackgroundConfig` outside it (anomaly-only there).
BACKGROUND_KINDS: list[float] = [0.0, 1.0, 2.0]
_BACKGROUND = (
    "inside the mooring record: the training background (the model directory's "
    "background.csv); outside it: the record's end (start) value held, or continued by a "
    "linear trend (targets.json) - never a projection of the deep background (background_kind)"
)
_ANOMALY_ONLY = (
    "0: inside the mooring record; 1, 2: outside it, where temperature_mean, "
    "temperature_quantile and temperature_member are anomaly-only: the predicted anomaly plus "
    "a held (1) or trend-continued (2) background, not a projection of the background; their "
    "change after the record is the anomaly's (temperature_anomaly_mean), identical in every "
    "scenario's background part (docs/run.md)"
)
_ABSOLUTE = (
    "temperature_anomaly_mean + background_temperature; anomaly-only where background_kind > 0 "
    "(outside the mooring record the background is held, not projected; docs/run.md)"
)

#: Standard deviations from the training mean that bound an input's "training range" in
#: the out-of-distribution scores of models saved without their monthly ranges.
OOD_Z = 4.0
_OOD = (
    "training range = each input's minimum to maximum over the training days of the same "
    "calendar month (normalisation.json; models saved without it: training mean +- "
    f"{OOD_Z:g} training standard deviations); November-April days of the winter, as the "
    "event statistics; docs/run.md"
)

# name -> (non-combo dims, attrs)
RESULT_VARS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "temperature_mean": (
        ("time", "depth"),
        {
            **_TEMPERATURE,
            "long_name": "Deep-ensemble mean of daily sea water temperature",
            "comment": _ABSOLUTE,
            "ancillary_variables": "background_kind",
            "cell_methods": "time: mean ensemble: mean",
        },
    ),
    "temperature_anomaly_mean": (
        ("time", "depth"),
        {
            **_COOLING,
            "long_name": "Deep-ensemble mean of the daily sea water temperature anomaly "
            "against the background (temperature_mean - background_temperature)",
            "cell_methods": "time: mean ensemble: mean",
            "ancillary_variables": "temperature_std",
            "comment": "what the model predicts, valid on every day: its standard deviation "
            "is temperature_std (the background is added without uncertainty)",
        },
    ),
    "background_temperature": (
        ("time", "depth"),
        {
            **_TEMPERATURE,
            "long_name": "Deep background temperature the predicted anomaly is added to",
            "cell_methods": "time: mean",
            "ancillary_variables": "background_kind",
            "comment": _BACKGROUND,
        },
    ),
    "background_kind": (
        ("time", "depth"),
        {
            "long_name": "Where background_temperature comes from",
            "flag_values": BACKGROUND_KINDS,
            "flag_meanings": "mooring_record held_outside_record linear_trend_outside_record",
            "comment": _ANOMALY_ONLY,
        },
    ),
    "temperature_std": (
        ("time", "depth"),
        {
            **_TEMPERATURE,
            "long_name": "Deep-ensemble standard deviation of daily sea water temperature",
            "cell_methods": "time: mean ensemble: standard_deviation",
        },
    ),
    "temperature_quantile": (
        ("quantile", "time", "depth"),
        {
            **_TEMPERATURE,
            "long_name": "Deep-ensemble predictive quantiles of daily sea water temperature",
            "comment": _ABSOLUTE,
            "ancillary_variables": "background_kind",
            "cell_methods": "time: mean ensemble: quantile",
        },
    ),
    "temperature_member": (
        ("ensemble", "time", "depth"),
        {
            **_TEMPERATURE,
            "long_name": "Daily sea water temperature predicted by each deep-ensemble member",
            "comment": _ABSOLUTE,
            "ancillary_variables": "background_kind",
            "cell_methods": "time: mean",
        },
    ),
    "event_probability": (
        ("time", "depth"),
        {
            "long_name": "Probability of a dense shelf water cascading event day",
            "units": "1",
            "cell_methods": "time: point ensemble: mean",
            "comment": "mean over deep-ensemble members of their event-head probability",
        },
    ),
    "event_days": (
        ("winter", "depth"),
        {
            "long_name": "Cascading event days per winter (deep-ensemble mean anomaly)",
            "units": "days",
            "cell_methods": "time: sum" + _IN_SEASON,
            "comment": _EVENT_RULE,
        },
    ),
    "event_count": (
        ("winter", "depth"),
        {
            "long_name": "Cascading events starting in the winter (deep-ensemble mean anomaly)",
            "units": "1",
            "cell_methods": "time: sum" + _IN_SEASON,
            "comment": _EVENT_RULE,
        },
    ),
    "peak_intensity": (
        ("winter", "depth"),
        {
            **_COOLING,
            "long_name": "Largest cooling below the background on an event day "
            "(deep-ensemble mean anomaly; positive = colder)",
            "cell_methods": "time: maximum" + _IN_SEASON,
        },
    ),
    "member_event_days": (
        ("winter", "ensemble", "depth"),
        {
            "long_name": "Cascading event days per winter of each deep-ensemble member",
            "units": "days",
            "cell_methods": "time: sum" + _IN_SEASON,
            "comment": _EVENT_RULE,
        },
    ),
    "member_event_count": (
        ("winter", "ensemble", "depth"),
        {
            "long_name": "Cascading events starting in the winter, per deep-ensemble member",
            "units": "1",
            "cell_methods": "time: sum" + _IN_SEASON,
            "comment": _EVENT_RULE,
        },
    ),
    "member_peak_intensity": (
        ("winter", "ensemble", "depth"),
        {
            **_COOLING,
            "long_name": "Largest cooling below the background on an event day, per "
            "deep-ensemble member (positive = colder)",
            "cell_methods": "time: maximum" + _IN_SEASON,
        },
    ),
    "winter_days": (
        ("winter",),
        {
            "long_name": "Days of the winter's November-April season covered by the "
            "combination's run",
            "units": "days",
            "cell_methods": "time: sum" + _IN_SEASON,
            "comment": "the winter statistics cover these days: fewer than a full season "
            "(181 or 182 days) at the ends of a run; a scenario's first winter includes the "
            "days of the historical run it continues",
        },
    ),
    "ood_fraction": (
        ("winter",),
        {
            "long_name": "Fraction of the winter's days on which any model input lies outside "
            "its training range (out-of-distribution score)",
            "units": "1",
            "cell_methods": "time: mean" + _IN_SEASON,
            "comment": _OOD,
        },
    ),
    "ood_max_z": (
        ("winter",),
        {
            "long_name": "Largest standardized distance of any model input from its training "
            "mean in the winter (|x - mean| / std)",
            "units": "1",
            "cell_methods": "time: maximum" + _IN_SEASON,
            "comment": _OOD,
        },
    ),
}
#: Result variables a store may go without (``ResultsSchema.member_series``).
OPTIONAL_VARS: tuple[str, ...] = ("temperature_member",)


class StoreError(ValueError):
    """A combination or dataset that does not fit the results store."""


@dataclass(frozen=True)
class ResultsSchema:
    """Everything that fixes the shape of the results store."""

    combos: tuple[tuple[str, str, str], ...]
    time: np.ndarray  # datetime64[ns], one (standard) calendar, daily
    depth: tuple[float, ...] = (500.0, 1000.0)
    quantiles: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
    n_members: int = 5
    winters: tuple[int, ...] = field(default_factory=tuple)
    member_series: bool = True  # store temperature_member (ensemble, time, depth)

    def __post_init__(self) -> None:
        combos = tuple(tuple(str(x) for x in c) for c in self.combos)
        if not combos or any(len(c) != 3 for c in combos):
            raise StoreError("combos must be non-empty (experiment, source_id, member_id)")
        if len(set(combos)) != len(combos):
            raise StoreError("duplicate combos")
        object.__setattr__(self, "combos", combos)
        time = np.asarray(self.time)
        if not np.issubdtype(time.dtype, np.datetime64):
            raise StoreError(
                f"time must be numpy datetime64 (standard calendar), got {time.dtype}; "
                "convert cftime axes first (convert_calendar(..., align_on='year'))"
            )
        time = time.astype("datetime64[ns]")
        if time.size and np.any(np.diff(time) <= np.timedelta64(0, "ns")):
            raise StoreError("time must be strictly increasing")
        object.__setattr__(self, "time", time)
        object.__setattr__(self, "depth", tuple(float(d) for d in self.depth))
        object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))
        object.__setattr__(self, "winters", tuple(int(w) for w in self.winters))
        if self.n_members < 1:
            raise StoreError("n_members must be >= 1")

    def __eq__(self, other: object) -> bool:
        """Same combinations (in any order), same axes."""
        if not isinstance(other, ResultsSchema):
            return NotImplemented
        fields = ("depth", "quantiles", "n_members", "winters", "member_series")
        return (
            sorted(self.combos) == sorted(other.combos)
            and all(getattr(self, f) == getattr(other, f) for f in fields)
            and np.array_equal(self.time, other.time)
        )

    __hash__ = None  # type: ignore[assignment]  # holds an array

    @property
    def variables(self) -> dict[str, tuple[tuple[str, ...], dict[str, Any]]]:
        """The per-combination result variables of this store."""
        skip = () if self.member_series else OPTIONAL_VARS
        return {k: v for k, v in RESULT_VARS.items() if k not in skip}

    def _labels(self, i: int) -> list[str]:
        return sorted({c[i] for c in self.combos})

    @property
    def experiments(self) -> list[str]:
        return self._labels(0)

    @property
    def source_ids(self) -> list[str]:
        return self._labels(1)

    @property
    def member_ids(self) -> list[str]:
        return self._labels(2)

    def coords(self) -> dict[str, Any]:
        return {
            "experiment": np.array(self.experiments, dtype=object),
            "source_id": np.array(self.source_ids, dtype=object),
            "member_id": np.array(self.member_ids, dtype=object),
            "time": self.time,
            "depth": np.array(self.depth),
            "quantile": np.array(self.quantiles),
            "ensemble": np.arange(self.n_members),
            "winter": np.array(self.winters, dtype=np.int64),
        }

    def region(self, combo: Sequence[str]) -> dict[str, slice]:
        combo = tuple(str(x) for x in combo)
        if combo not in self.combos:
            raise StoreError(f"combo {combo} is not in the schema")
        labels = (self.experiments, self.source_ids, self.member_ids)
        out = {}
        for dim, value, lab in zip(COMBO_DIMS, combo, labels, strict=True):
            i = lab.index(value)
            out[dim] = slice(i, i + 1)
        return out


def season_bounds(winters: Sequence[int]) -> xr.DataArray:
    """``(winter, bounds)`` first day and the day after the last of each winter's season."""
    edges = [
        [np.datetime64(f"{w - 1}-11-01", "ns"), np.datetime64(f"{w}-05-01", "ns")] for w in winters
    ]
    return xr.DataArray(
        np.array(edges, dtype="datetime64[ns]").reshape(len(edges), 2),
        dims=("winter", "bounds"),
        attrs={
            "long_name": f"bounds of the winter's {SEASON} season (first day, day after the last)",
        },
    )


def _shape(schema: ResultsSchema, dims: Sequence[str]) -> tuple[int, ...]:
    sizes = {k: len(v) for k, v in schema.coords().items()}
    return tuple(sizes[d] for d in dims)


def template(schema: ResultsSchema, attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """The lazy, empty store: dask-backed result variables, numpy string status arrays."""
    coords = schema.coords()
    combo_shape = _shape(schema, COMBO_DIMS)
    data_vars: dict[str, xr.Variable] = {}
    for name, (extra, vattrs) in schema.variables.items():
        dims = (*COMBO_DIMS, *extra)
        shape = _shape(schema, dims)
        chunks = (1, 1, 1, *shape[3:])
        arr = da.full(shape, np.nan, dtype=np.float32, chunks=chunks)
        data_vars[name] = xr.Variable(dims, arr, attrs=dict(vattrs))
    status = np.full(combo_shape, "missing", dtype=object)
    empty = np.full(combo_shape, "", dtype=object)
    data_vars["status"] = xr.Variable(
        COMBO_DIMS,
        status,
        attrs={"long_name": "Combination status", "flag_values": " ".join(STATUSES)},
    )
    data_vars["status_reason"] = xr.Variable(
        COMBO_DIMS, empty.copy(), attrs={"long_name": "Reason of failure"}
    )
    for name in PROVENANCE_VARS:
        data_vars[name] = xr.Variable(
            COMBO_DIMS, empty.copy(), attrs={"long_name": name.replace("_", " ")}
        )
    data_vars[FAMILY_VAR] = xr.Variable(COMBO_DIMS, empty.copy(), attrs=dict(_FAMILY_ATTRS))
    # combos absent from the schema (holes in the label product) are marked as such
    present = np.zeros(combo_shape, dtype=bool)
    for c in schema.combos:
        present[tuple(r.start for r in schema.region(c).values())] = True
    data_vars["status"].values[~present] = "not_in_catalog"

    ds = xr.Dataset(data_vars, coords=coords)
    ds["time"].attrs.update({"standard_name": "time", "axis": "T"})
    ds["depth"].attrs.update(
        {"standard_name": "depth", "units": "m", "positive": "down", "axis": "Z"}
    )
    ds["quantile"].attrs.update({"long_name": "quantile level", "units": "1"})
    ds["ensemble"].attrs.update({"long_name": "deep-ensemble member index"})
    ds["winter"].attrs.update(
        {
            "long_name": "winter, labelled by the year of its January",
            "comment": f"its statistics count the days of its {SEASON} season (season_bounds)",
        }
    )
    ds = ds.assign_coords(season_bounds=season_bounds(schema.winters))
    ds.attrs.update({"Conventions": "CF-1.10", "title": TITLE})
    ds.attrs.update(dict(attrs or {}))
    return ds


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    enc: dict[str, dict[str, Any]] = {
        "time": {"units": TIME_UNITS, "calendar": CALENDAR, "dtype": "int64"},
        "season_bounds": {"units": TIME_UNITS, "calendar": CALENDAR, "dtype": "int64"},
    }
    for name, var in ds.data_vars.items():
        chunks = (1, 1, 1, *var.shape[3:])
        if name in RESULT_VARS:
            enc[str(name)] = {"_FillValue": np.float32(np.nan), "chunks": chunks}
        else:
            enc[str(name)] = {"chunks": chunks}
    return enc


def initialise_store(
    url: str,
    schema: ResultsSchema,
    attrs: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Create the (empty) store; only coordinates and the small status arrays are written."""
    ds = template(schema, attrs)
    ds.to_zarr(
        url,
        mode="w",
        compute=False,
        zarr_format=2,
        consolidated=True,
        encoding=_encoding(ds),
        storage_options=dict(storage_options) if storage_options else None,
    )


def _open(url: str, storage_options: Mapping[str, Any] | None = None) -> xr.Dataset:
    return xr.open_zarr(
        url,
        consolidated=True,
        storage_options=dict(storage_options) if storage_options else None,
    )


def _region_write(
    url: str,
    ds: xr.Dataset,
    region: Mapping[str, slice],
    storage_options: Mapping[str, Any] | None,
) -> None:
    # consolidated=False: metadata is unchanged, so .zmetadata stays valid and parallel
    # writers never rewrite it.
    ds.to_zarr(
        url,
        region=dict(region),
        mode="r+",
        zarr_format=2,
        consolidated=False,
        storage_options=dict(storage_options) if storage_options else None,
    )


def _strings(values: Mapping[str, str]) -> xr.Dataset:
    return xr.Dataset(
        {
            k: xr.Variable(COMBO_DIMS, np.full((1, 1, 1), str(v), dtype=object))
            for k, v in values.items()
        }
    )


def _conform(schema: ResultsSchema, dataset: xr.Dataset) -> xr.Dataset:
    """One combo's results, reindexed on the store's axes (NaN where not covered)."""
    missing = [v for v in schema.variables if v not in dataset]
    if missing:
        raise StoreError(f"dataset lacks result variables {missing}")
    dataset = dataset.drop_vars([d for d in COMBO_DIMS if d in dataset.coords])
    if "time" in dataset.dims:
        t = dataset.indexes["time"]
        if not isinstance(t, pd.DatetimeIndex):
            raise StoreError(
                f"time index is {type(t).__name__}: convert to the standard calendar first "
                "(convert_calendar(..., align_on='year'))"
            )
        extra = t.difference(pd.DatetimeIndex(schema.time))
        if len(extra):
            raise StoreError(f"{len(extra)} time steps outside the store axis, e.g. {extra[0]}")
    if "winter" in dataset.dims:
        extra_w = set(dataset["winter"].values.tolist()) - set(schema.winters)
        if extra_w:
            raise StoreError(f"winters outside the store axis: {sorted(extra_w)}")
    coords = schema.coords()
    out = {}
    for name, (extra_dims, _) in schema.variables.items():
        var = dataset[name]
        dims = [d for d in var.dims if d not in COMBO_DIMS]
        if set(dims) != set(extra_dims):
            raise StoreError(f"{name} has dims {tuple(var.dims)}, expected {extra_dims}")
        var = var.squeeze([d for d in COMBO_DIMS if d in var.dims], drop=True)
        if "ensemble" in extra_dims and var.sizes["ensemble"] != schema.n_members:
            raise StoreError(f"{name} has {var.sizes['ensemble']} members != {schema.n_members}")
        var = var.drop_vars([c for c in var.coords if c not in extra_dims])
        var = var.reindex({d: coords[d] for d in extra_dims if d != "ensemble"})
        var = (
            var.transpose(*extra_dims).astype(np.float32).expand_dims(dict.fromkeys(COMBO_DIMS, 1))
        )
        out[name] = var.drop_vars(list(var.coords))
    return xr.Dataset(out)


def write_combo(
    url: str,
    schema: ResultsSchema,
    combo: Sequence[str],
    dataset: xr.Dataset,
    provenance: Mapping[str, str],
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write one combination's results, then mark it "done" with its provenance.

    ``dataset`` holds the variables of ``RESULT_VARS`` with their non-combo dims; its time
    axis must be a subset of the store's (it is reindexed, NaN elsewhere).
    """
    region = schema.region(combo)
    lacking = [k for k in PROVENANCE_VARS if k not in provenance]
    if lacking:
        raise StoreError(f"provenance lacks {lacking}")
    data = _conform(schema, dataset)
    writing = {"status": "writing", "status_reason": "", "fingerprint": ""}
    _region_write(url, _strings(writing), region, storage_options)
    _region_write(url, data, region, storage_options)
    meta = {k: provenance[k] for k in PROVENANCE_VARS}
    meta.update(status="done", status_reason="")
    _region_write(url, _strings(meta), region, storage_options)


def record_families(
    url: str,
    families: Mapping[tuple[str, str, str], str],
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Record the model family of combinations (client side, while no worker writes).

    A store written before families were recorded gets the variable first (its other
    variables and global attributes untouched). Nothing is written when every family
    is already recorded.
    """
    with _open(url, storage_options) as ds:
        labels = [[str(x) for x in ds[d].values] for d in COMBO_DIMS]
        present = FAMILY_VAR in ds
        shape = ds["status"].shape
        current = ds[FAMILY_VAR].values.astype(object) if present else None
    values = current.copy() if current is not None else np.full(shape, "", dtype=object)
    for combo, family in families.items():
        try:
            index = tuple(lab.index(str(v)) for lab, v in zip(labels, combo, strict=True))
        except ValueError:
            raise StoreError(f"combo {tuple(combo)} is not in the store {url}") from None
        values[index] = str(family)
    if current is not None and bool((values == current).all()):
        return
    if current is not None:
        whole = {d: slice(0, n) for d, n in zip(COMBO_DIMS, shape, strict=True)}
        _region_write(url, xr.Dataset({FAMILY_VAR: (COMBO_DIMS, values)}), whole, storage_options)
        return
    group = zarr.open_group(url, mode="r+", zarr_format=2, **_zarr_options(storage_options))
    root = dict(group.attrs)  # mode "a" below replaces the global attributes: kept here
    xr.Dataset({FAMILY_VAR: xr.Variable(COMBO_DIMS, values, attrs=dict(_FAMILY_ATTRS))}).to_zarr(
        url,
        mode="a",
        zarr_format=2,
        consolidated=False,
        encoding={FAMILY_VAR: {"chunks": (1, 1, 1)}},
        storage_options=dict(storage_options) if storage_options else None,
    )
    group = zarr.open_group(url, mode="r+", zarr_format=2, **_zarr_options(storage_options))
    group.attrs.update(root)
    zarr.consolidate_metadata(group.store, zarr_format=2)


def mark_failed(
    url: str,
    combo: Sequence[str],
    reason: str,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Mark one combination "failed"; its fingerprint is cleared so a rerun retries it."""
    region = _region_from_store(url, combo, storage_options)
    meta = {"status": "failed", "status_reason": str(reason), "fingerprint": ""}
    _region_write(url, _strings(meta), region, storage_options)


def _region_from_store(
    url: str, combo: Sequence[str], storage_options: Mapping[str, Any] | None
) -> dict[str, slice]:
    with _open(url, storage_options) as ds:
        out = {}
        for dim, value in zip(COMBO_DIMS, combo, strict=True):
            labels = [str(x) for x in ds[dim].values]
            if str(value) not in labels:
                raise StoreError(f"{dim}={value!r} is not in the store")
            i = labels.index(str(value))
            out[dim] = slice(i, i + 1)
        if str(ds["status"].isel(out).values.ravel()[0]) == "not_in_catalog":
            raise StoreError(f"combo {tuple(combo)} is not in the schema")
    return out


def combo_status(url: str, storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per combination of the schema: status, reason and provenance."""
    with _open(url, storage_options) as ds:
        small = ds[list(STRING_VARS)].load()
    df = small.to_dataframe().reset_index()
    df = df[df["status"] != "not_in_catalog"]
    cols = [*COMBO_DIMS, *STRING_VARS]
    return df[cols].astype(str).reset_index(drop=True)


def _zarr_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"storage_options": dict(storage_options)} if storage_options else {}


def open_schema(url: str, storage_options: Mapping[str, Any] | None = None) -> ResultsSchema | None:
    """The schema of the results store at ``url``; None if nothing is there.

    Raises
    ------
    StoreError
        Something is at ``url`` that is not a (complete) cascadia results store.
    """
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    if not fs.exists(path) or not fs.ls(path):
        return None
    try:
        ds = _open(url, storage_options)
    except (OSError, KeyError, ValueError) as exc:
        raise StoreError(
            f"{url} exists but is not a consolidated Zarr results store ({exc}); "
            "remove it or choose another output"
        ) from None
    with ds:
        if ds.attrs.get("title") != TITLE or "status" not in ds:
            raise StoreError(f"{url} exists but is not a cascadia results store")
        lacking = [v for v in STRING_VARS if v not in ds]
        if lacking:
            raise StoreError(
                f"{url} was written by an older cascadia (it lacks {lacking}); "
                "choose another output"
            )
        if "season_bounds" not in ds.variables:
            raise StoreError(
                f"{url} was written by an older cascadia (its winter statistics sum whole "
                f"winter-years, not the {SEASON} season); choose another output"
            )
        status = ds["status"].values
        labels = [[str(x) for x in ds[d].values] for d in COMBO_DIMS]
        combos = [
            (labels[0][i], labels[1][j], labels[2][k])
            for i, j, k in zip(*np.nonzero(status != "not_in_catalog"), strict=True)
        ]
        return ResultsSchema(
            combos=tuple(combos),
            time=ds["time"].values,
            depth=tuple(ds["depth"].values.tolist()),
            quantiles=tuple(ds["quantile"].values.tolist()),
            n_members=ds.sizes["ensemble"],
            winters=tuple(ds["winter"].values.tolist()),
            member_series=all(v in ds for v in OPTIONAL_VARS),
        )


def _day(value: np.datetime64) -> str:
    return str(np.datetime64(value, "D"))


def incompatibilities(existing: ResultsSchema, wanted: ResultsSchema) -> list[str]:
    """Why a store with schema ``existing`` cannot take the combinations of ``wanted``."""
    problems = []
    for name in ("depth", "quantiles", "n_members", "member_series"):
        if getattr(existing, name) != getattr(wanted, name):
            problems.append(
                f"{name} is {getattr(existing, name)} in the store, "
                f"{getattr(wanted, name)} for this run"
            )
    for i, dim in enumerate(COMBO_DIMS):
        new = sorted(set(wanted._labels(i)) - set(existing._labels(i)))
        if new:
            problems.append(f"new {dim} labels {new} (labels cannot be inserted)")
    if len(wanted.time) and (
        not len(existing.time)
        or wanted.time[0] < existing.time[0]
        or wanted.time[-1] > existing.time[-1]
    ):
        have = (
            f"{_day(existing.time[0])}..{_day(existing.time[-1])}" if len(existing.time) else "none"
        )
        problems.append(
            f"time {_day(wanted.time[0])}..{_day(wanted.time[-1])} is not within the store's {have}"
        )
    new_winters = sorted(set(wanted.winters) - set(existing.winters))
    if new_winters:
        problems.append(f"new winters {new_winters}")
    return problems


def prepare_store(
    url: str,
    schema: ResultsSchema,
    attrs: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> ResultsSchema:
    """Create the store, or reuse an existing one that can take ``schema``'s combos.

    Returns the schema to write with: the existing store's (its axes fix the regions),
    with this run's combos added where they fall in holes of its label product.
    Written combinations are never touched here.

    Raises
    ------
    StoreError
        The existing store cannot take the run (new labels, a longer time axis, other
        depths / quantiles / members): each difference is named.
    """
    existing = open_schema(url, storage_options)
    if existing is None:
        initialise_store(url, schema, attrs, storage_options)
        return schema
    problems = incompatibilities(existing, schema)
    if problems:
        raise StoreError(
            f"the results store {url} cannot take this run: "
            + "; ".join(problems)
            + ". Write to a new --out (a store's axes are fixed when it is created)."
        )
    holes = [c for c in schema.combos if c not in existing.combos]
    merged = ResultsSchema(
        combos=existing.combos + tuple(holes),
        time=existing.time,
        depth=existing.depth,
        quantiles=existing.quantiles,
        n_members=existing.n_members,
        winters=existing.winters,
        member_series=existing.member_series,
    )
    for combo in holes:
        _region_write(url, _strings({"status": "missing"}), merged.region(combo), storage_options)
    if attrs:
        update_attrs(url, attrs, storage_options)
    return merged


def update_attrs(
    url: str, attrs: Mapping[str, Any], storage_options: Mapping[str, Any] | None = None
) -> None:
    """Set global attributes and re-consolidate (client side, while no worker writes).

    Nothing is rewritten when the attributes already have these values.
    """
    group = zarr.open_group(url, mode="r+", zarr_format=2, **_zarr_options(storage_options))
    if all(group.attrs.get(k) == v for k, v in attrs.items()):
        return
    group.attrs.update(dict(attrs))
    zarr.consolidate_metadata(group.store, zarr_format=2)


def open_cube(url: str, storage_options: Mapping[str, Any] | None = None) -> xr.Dataset:
    """The store as an (experiment, source_id, member_id) cube with the spread statistics
    beside it: the one view the spread pass, the report and the reader API compute on."""
    return _open(url, storage_options)


def open_spread(url: str, storage_options: Mapping[str, Any] | None = None) -> xr.Dataset | None:
    """The multi-model spread statistics of the store; None before a spread pass."""
    ds = _open(url, storage_options)
    names = [k for k, v in ds.data_vars.items() if v.attrs.get(SPREAD_ROLE) == SPREAD_VALUE]
    return ds[names] if names else None
