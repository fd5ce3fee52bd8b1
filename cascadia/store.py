"""The consolidated CF Zarr results store (see DESIGN.md, "Results store").

Layout: one Zarr v2 group with consolidated metadata (v3 + consolidation warns, see
notes/stack-pitfalls.md) so that a plain ``xr.open_zarr(url)`` opens it silently. Every
per-combination variable is chunked with exactly one (experiment, source_id, member_id)
combination per chunk, so workers write disjoint regions with ``to_zarr(region=...)`` and
never touch each other's chunks. The store is created lazily from a dask template
(``compute=False``): large variables have no chunk on disk until a combination is
written, and read back as NaN (explicit ``_FillValue`` NaN).

A combination's data is written first and its ``status``/provenance last, so a run killed
mid-write leaves the combination "missing" (or its previous status) and a rerun redoes it.
Region writes never rewrite ``.zmetadata``: the metadata does not change after
:func:`initialise_store`, so the consolidated metadata stays valid without concurrent
writers racing on one file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

COMBO_DIMS: tuple[str, str, str] = ("experiment", "source_id", "member_id")
STATUSES: tuple[str, ...] = ("missing", "done", "failed")
PROVENANCE_VARS: tuple[str, ...] = (
    "fingerprint",
    "model_checkpoint_hash",
    "package_version",
    "catalog_entry",
)
STRING_VARS: tuple[str, ...] = ("status", "status_reason", *PROVENANCE_VARS)
TIME_UNITS = "days since 1850-01-01"
CALENDAR = "standard"

# name -> (non-combo dims, attrs)
RESULT_VARS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "temperature_mean": (
        ("time", "depth"),
        {
            "standard_name": "sea_water_temperature",
            "long_name": "Deep-ensemble mean of daily sea water temperature",
            "units": "degree_Celsius",
            "cell_methods": "time: mean ensemble: mean",
        },
    ),
    "temperature_std": (
        ("time", "depth"),
        {
            "standard_name": "sea_water_temperature",
            "long_name": "Deep-ensemble standard deviation of daily sea water temperature",
            "units": "degree_Celsius",
            "cell_methods": "time: mean ensemble: standard_deviation",
        },
    ),
    "temperature_quantile": (
        ("quantile", "time", "depth"),
        {
            "standard_name": "sea_water_temperature",
            "long_name": "Deep-ensemble predictive quantiles of daily sea water temperature",
            "units": "degree_Celsius",
            "cell_methods": "time: mean ensemble: quantile",
        },
    ),
    "event_probability": (
        ("time",),
        {
            "long_name": "Probability of a dense shelf water cascading event day",
            "units": "1",
            "cell_methods": "time: point ensemble: mean",
        },
    ),
    "event_days": (
        ("winter", "ensemble"),
        {
            "long_name": "Cascading event days per winter",
            "units": "days",
            "cell_methods": "time: sum within winter",
        },
    ),
    "event_count": (
        ("winter", "ensemble"),
        {
            "long_name": "Number of cascading events per winter",
            "units": "1",
            "cell_methods": "time: sum within winter",
        },
    ),
    "peak_intensity": (
        ("winter", "ensemble"),
        {
            "long_name": "Peak cascading intensity (largest negative temperature anomaly)",
            "units": "degree_Celsius",
            "cell_methods": "time: minimum within winter",
        },
    ),
}


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


def _shape(schema: ResultsSchema, dims: Sequence[str]) -> tuple[int, ...]:
    sizes = {k: len(v) for k, v in schema.coords().items()}
    return tuple(sizes[d] for d in dims)


def template(schema: ResultsSchema, attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """The lazy, empty store: dask-backed result variables, numpy string status arrays."""
    coords = schema.coords()
    combo_shape = _shape(schema, COMBO_DIMS)
    data_vars: dict[str, xr.Variable] = {}
    for name, (extra, vattrs) in RESULT_VARS.items():
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
    ds["winter"].attrs.update({"long_name": "winter, labelled by the year of its January"})
    ds.attrs.update({"Conventions": "CF-1.10", "title": "cascadia ensemble results"})
    ds.attrs.update(dict(attrs or {}))
    return ds


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    enc: dict[str, dict[str, Any]] = {
        "time": {"units": TIME_UNITS, "calendar": CALENDAR, "dtype": "int64"},
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
    missing = [v for v in RESULT_VARS if v not in dataset]
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
    for name, (extra_dims, _) in RESULT_VARS.items():
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
    _region_write(url, data, region, storage_options)
    meta = {k: provenance[k] for k in PROVENANCE_VARS}
    meta.update(status="done", status_reason="")
    _region_write(url, _strings(meta), region, storage_options)


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
