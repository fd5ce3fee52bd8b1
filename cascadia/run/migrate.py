"""``cascadia-ensemble migrate``: a results store of the old dense layout into the stacked one.

Why: stores written before the store could grow hold every result variable on the dense
experiment x source_id x member_id product, with string status and "not_in_catalog"
holes. The stacked layout (:mod:`cascadia.run.store`) keeps only the combinations, so
migration drops the holes, copies every other combination's data, status, reason,
provenance and family unchanged (one region write each, in label order), then recomputes
the spread statistics into the ``spread`` group with the periods and percentiles of the
old store's spread (the other options at their defaults, as ``run`` computes them).

Without ``--out`` the store is converted in place: the new store is written beside it,
the old one is kept as ``<store>.cube-layout`` and the new one takes its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import xarray as xr

from cascadia.run.spread import write_spread
from cascadia.run.store import (
    COMBO,
    COMBO_DIMS,
    FAMILY_VAR,
    NOT_IN_CATALOG,
    OPTIONAL_VARS,
    STRING_VARS,
    TITLE,
    ResultsSchema,
    StoreError,
    _region_write,
    _table,
    history_line,
    initialise_store,
    is_cube_layout,
)

__all__ = ["Migration", "migrate_store"]

#: Root attributes of an old store that the new layout sets itself (or moved to the group).
_DROPPED_ATTRS = ("Conventions", "title", "coordinates", "spread_method")
BACKUP_SUFFIX = ".cube-layout"


@dataclass(frozen=True)
class Migration:
    """What a migration did."""

    source: str
    out: str
    combos: int
    holes: int
    statuses: dict[str, int]
    spread: bool
    backup: str | None = None


def _old_store(url: str, storage_options: Mapping[str, Any] | None) -> xr.Dataset:
    try:
        ds = xr.open_zarr(
            url, consolidated=True, storage_options=dict(storage_options or {}) or None
        )
    except (OSError, KeyError, ValueError) as exc:
        raise StoreError(f"{url}: cannot open the results store to migrate: {exc}") from None
    if ds.attrs.get("title") != TITLE or "status" not in ds:
        raise StoreError(f"{url} is not a cascadia results store")
    if not is_cube_layout(ds):
        raise StoreError(f"{url} already has the stacked (combo) layout: nothing to migrate")
    lacking = [v for v in STRING_VARS if v not in ds]
    if lacking or "season_bounds" not in ds.variables:
        why = f"it lacks {lacking}" if lacking else "its winters sum whole winter-years"
        raise StoreError(f"{url} was written by a cascadia too old to migrate ({why}); rerun it")
    return ds


def _spread_options(old: xr.Dataset) -> dict[str, Any]:
    """The periods and percentiles the old store's spread was computed with."""
    options: dict[str, Any] = {}
    if "period_first_winter" in old.variables and "period_last_winter" in old.variables:
        firsts = old["period_first_winter"].values.tolist()
        lasts = old["period_last_winter"].values.tolist()
        options["periods"] = [(int(a), int(b)) for a, b in zip(firsts, lasts, strict=True)]
    if "percentile" in old.coords:
        options["percentiles"] = [float(p) for p in old["percentile"].values]
    return options


def _write(
    old: xr.Dataset, out: str, storage_options: Mapping[str, Any] | None, line: str
) -> tuple:
    status = np.asarray(old["status"].values).astype(object).astype(str)
    labels = [[str(x) for x in old[d].values] for d in COMBO_DIMS]
    cells = [
        tuple(int(i) for i in ix) for ix in zip(*np.nonzero(status != NOT_IN_CATALOG), strict=True)
    ]
    if not cells:
        raise StoreError("the store holds no combination (every cell is not_in_catalog)")
    combos = tuple(tuple(labels[k][ix[k]] for k in range(3)) for ix in cells)
    schema = ResultsSchema(
        combos=combos,
        time=old["time"].values,
        depth=tuple(old["depth"].values.tolist()),
        quantiles=tuple(old["quantile"].values.tolist()),
        n_members=old.sizes["ensemble"],
        winters=tuple(old["winter"].values.tolist()),
        member_series=all(v in old for v in OPTIONAL_VARS),
    )
    attrs = {k: v for k, v in old.attrs.items() if k not in _DROPPED_ATTRS}
    initialise_store(out, schema, attrs, storage_options, history=line)
    names = list(schema.variables)
    counts: dict[str, int] = {}
    for i, cell in enumerate(cells):
        where = dict(zip(COMBO_DIMS, cell, strict=True))
        state = str(status[cell])
        counts[state] = counts.get(state, 0) + 1
        region = {COMBO: slice(i, i + 1)}
        if state != "missing":  # a missing combination has no data: nothing to copy
            one = old[names].isel(where).load().drop_vars(list(old.coords), errors="ignore")
            data = one.expand_dims({COMBO: 1}).astype(np.float32)
            _region_write(out, data.drop_vars(list(data.coords)), region, storage_options)
        strings = {n: str(np.asarray(old[n].isel(where).values)) for n in STRING_VARS}
        table = _table(strings)
        family = str(np.asarray(old[FAMILY_VAR].isel(where).values)) if FAMILY_VAR in old else ""
        table[FAMILY_VAR] = xr.Variable(COMBO, np.array([family], dtype=object))
        _region_write(out, table, region, storage_options)
    return len(cells), int(status.size - len(cells)), counts


def migrate_store(
    url: str,
    out: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Migration:
    """Convert the old-layout store at ``url`` into the stacked layout at ``out``.

    ``out`` None: in place (the old store is kept as ``<url>.cube-layout``).

    Raises
    ------
    StoreError
        ``url`` is no old-layout cascadia store, or ``out`` exists.
    """
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    target = out or f"{url.rstrip('/')}.migrating"
    out_fs, out_path = fsspec.core.url_to_fs(target, **dict(storage_options or {}))
    if out is not None and out_fs.exists(out_path):
        raise StoreError(f"--out {out} exists: choose a new store")
    old = _old_store(url, storage_options)
    if out is None and out_fs.exists(out_path):
        out_fs.rm(out_path, recursive=True)  # a migration killed earlier
    backup = f"{path.rstrip('/')}{BACKUP_SUFFIX}" if out is None else None
    if backup is not None and fs.exists(backup):
        raise StoreError(f"{backup} exists (an earlier migration's copy): move it away first")
    command = f"cascadia-ensemble migrate --results {url}" + (f" --out {out}" if out else "")
    with old:
        options = _spread_options(old)
        done = bool((np.asarray(old["status"].values).astype(object).astype(str) == "done").any())
        line = history_line(
            command, f"migrated from the experiment x source_id x member_id layout of {url}"
        )
        n, holes, counts = _write(old, target, storage_options, line)
    spread = False
    if done:
        write_spread(
            target, dict(storage_options) if storage_options else None, history=command, **options
        )
        spread = True
    if backup is not None:
        fs.mv(path, backup, recursive=True)
        out_fs.mv(out_path, path, recursive=True)
    return Migration(url, out or url, n, holes, counts, spread, backup)
