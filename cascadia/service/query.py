"""One query over a results store: filters + a statistic -> a table or a Dataset.

``cascadia-ensemble query`` and the HTTP service's ``/series``, ``/events``, ``/spread``
and ``/combinations`` are this one function (:func:`run_query`) with an output format
(:mod:`cascadia.service.formats`). Daily statistics come back as a tidy table (one row
per combination, day, depth and quantile/member) and, for NetCDF, as the filtered cube;
the size of an answer is known before anything is read, so a caller can refuse it
(:class:`TooLarge`) without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cascadia.run.store import COMBO_DIMS
from cascadia.service.results import (
    NOT_IN_CATALOG,
    Results,
    ResultsError,
    as_list,
    check_period,
    winters_between,
)

__all__ = ["DAILY_STATS", "STATS", "Query", "QueryResult", "TooLarge", "run_query"]

#: Daily statistics -> the per-combination variables they return.
DAILY_STATS: dict[str, tuple[str, ...]] = {
    "mean": ("temperature_mean",),
    "std": ("temperature_std",),
    "band": ("temperature_mean", "temperature_std", "temperature_quantile"),
    "quantiles": ("temperature_quantile",),
    "anomaly": ("temperature_anomaly_mean",),
    "background": ("background_temperature", "background_kind"),
    "probability": ("event_probability",),
    "members": ("temperature_member",),
}
#: Every statistic: the daily ones, then the per-winter events, the multi-model spread,
#: the table of combinations, and ``variables`` (the variables named by ``variables``).
STATS: tuple[str, ...] = (*DAILY_STATS, "events", "spread", "combinations", "variables")


class TooLarge(ResultsError):
    """An answer over the caller's limit of rows or days (nothing was read)."""


@dataclass(frozen=True)
class Query:
    """Filters (``None``: everything; lists: several values) and the statistic."""

    experiment: list[str] | None = None
    source_id: list[str] | None = None
    member_id: list[str] | None = None
    depth: list[float] | None = None
    start: str | None = None
    end: str | None = None
    stat: str = "mean"
    variables: list[str] | None = None

    def filters(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "source_id": self.source_id,
            "member_id": self.member_id,
            "depth": self.depth,
            "start": self.start,
            "end": self.end,
        }


@dataclass
class QueryResult:
    """A table (CSV/JSON) and the Dataset it was cut from (NetCDF)."""

    table: pd.DataFrame
    dataset: xr.Dataset
    rows: int
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    """Largest answer a caller accepts: rows of the table, days of a daily statistic."""

    max_rows: int | None = None
    max_days: int | None = None


def _check_size(rows: int, days: int, limits: Limits) -> None:
    if limits.max_days is not None and days > limits.max_days:
        raise TooLarge(
            f"the request spans {days} days, more than the limit of {limits.max_days}: "
            "narrow it with start/end"
        )
    if limits.max_rows is not None and rows > limits.max_rows:
        raise TooLarge(
            f"the request gives {rows} rows, more than the limit of {limits.max_rows}: "
            "narrow it with experiment/source_id/member_id/depth/start/end"
        )


def _combos(ds: xr.Dataset) -> int:
    """How many cells of a (sub-)cube are combinations of the store."""
    status = ds["status"].compute(scheduler="synchronous").values
    return int((status != NOT_IN_CATALOG).sum())


def _tidy(ds: xr.Dataset, names: list[str]) -> pd.DataFrame:
    """Rows of the cells that are combinations (label holes dropped), labels as strings."""
    frame = ds[names].reset_coords(drop=True).to_dataframe().reset_index()
    status = ds["status"].reset_coords(drop=True).to_dataframe().reset_index()
    for dim in COMBO_DIMS:
        frame[dim] = frame[dim].astype(str)
        status[dim] = status[dim].astype(str)
    keep = status.loc[status["status"].astype(str) != NOT_IN_CATALOG, list(COMBO_DIMS)]
    frame = frame.merge(keep, on=list(COMBO_DIMS), how="inner")
    extra = [c for c in frame.columns if c not in names and c not in COMBO_DIMS]
    return frame[[*COMBO_DIMS, *extra, *names]]


def _wide(ds: xr.Dataset, name: str, dim: str) -> xr.Dataset:
    """``name`` split along ``dim`` into one variable per level (``name_0.05`` ...)."""
    out = ds.drop_vars(name)
    for level in ds[dim].values.tolist():
        out[f"{name}_{level:g}"] = ds[name].sel({dim: level}, drop=True)
    return out.drop_dims(dim) if dim in out.dims else out


def _daily(results: Results, query: Query, names: list[str], limits: Limits) -> QueryResult:
    sub = results.select(**query.filters(), variables=names)
    # the band: the quantiles as columns beside the mean, one row per day and depth
    spread_out = "temperature_quantile" if query.stat == "band" else None
    shapes = {
        tuple(d for d in sub[n].dims if d not in COMBO_DIMS and (n, d) != (spread_out, "quantile"))
        for n in names
    }
    if len(shapes) > 1:
        raise ResultsError(
            f"variables {', '.join(names)} have different dimensions; query them separately"
        )
    (dims,) = shapes
    rows = _combos(sub) * int(np.prod([sub.sizes[d] for d in dims], dtype=np.int64))
    _check_size(rows, sub.sizes["time"] if "time" in dims else 0, limits)
    loaded = sub.compute(scheduler="synchronous")
    flat = _wide(loaded, spread_out, "quantile") if spread_out else loaded
    columns = [str(v) for v in flat.data_vars if v != "status"]
    table = _tidy(flat, columns)
    return QueryResult(table, loaded, len(table))


def _events(results: Results, query: Query, limits: Limits) -> QueryResult:
    ds = results.select(**query.filters())
    rows = _combos(ds) * ds.sizes["winter"] * ds.sizes["depth"]
    _check_size(rows, 0, limits)
    table = results.winter_events(**query.filters())
    keep = [
        v for v in ds.data_vars if ("winter" in ds[v].dims and set(COMBO_DIMS) <= set(ds[v].dims))
    ]
    dataset = ds[[*keep, "status"]].compute(scheduler="synchronous")
    return QueryResult(table, dataset, len(table))


def _spread(results: Results, query: Query, limits: Limits) -> QueryResult:
    spread = results.spread
    if spread is None:
        raise ResultsError(f"{results.url} has no spread statistics yet (no spread pass ran)")
    names = results.check_variables(query.variables, [str(v) for v in spread.data_vars])
    ds = spread[names]
    where: dict[str, Any] = {}
    for dim in COMBO_DIMS:
        picked = results.pick(dim, getattr(query, dim))
        if picked is not None and dim in ds.dims:
            where[dim] = picked
    depths = results.pick_depths(query.depth)
    if depths is not None and "depth" in ds.dims:
        where["depth"] = depths
    start, end = check_period(query.start, query.end)
    if (start or end) and "winter" in ds.dims:
        winters = [int(w) for w in ds["winter"].values.tolist()]
        where["winter"] = winters_between(winters, start, end)
    ds = ds.sel(where)
    rows = sum(int(ds[n].size) for n in names)
    _check_size(rows, 0, limits)
    loaded = ds.compute(scheduler="synchronous")
    parts, integer = [], set()
    for name in names:
        var = loaded[name]
        part = var.reset_coords(drop=True).to_dataframe(name="value").reset_index()
        part = part[[*var.dims, "value"]]
        part.insert(0, "variable", name)
        integer |= {d for d in var.dims if part[d].dtype.kind in "iu"}
        parts.append(part)
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["variable"])
    for dim in table.columns:
        if dim in integer:  # a dimension some variables lack: integer with gaps
            table[dim] = table[dim].astype("Int64")
    return QueryResult(table, loaded, len(table))


def _combinations(results: Results, query: Query) -> QueryResult:
    table = results.combinations()
    for dim in COMBO_DIMS:
        picked = results.pick(dim, getattr(query, dim))
        if picked is not None:
            table = table[table[dim].isin(picked)]
    table = table.reset_index(drop=True)
    dataset = xr.Dataset.from_dataframe(table.set_index(list(COMBO_DIMS)))
    return QueryResult(table, dataset, len(table))


def run_query(results: Results, query: Query, limits: Limits | None = None) -> QueryResult:
    """Answer ``query`` from ``results``.

    Raises
    ------
    ResultsError
        Unknown statistic, label, depth or variable, or a bad date (one line).
    TooLarge
        The answer would exceed ``limits`` (nothing was read).
    """
    limits = limits or Limits()
    if query.stat not in STATS:
        raise ResultsError(f"unknown stat {query.stat!r}; expected one of: {', '.join(STATS)}")
    if query.stat == "events":
        return _events(results, query, limits)
    if query.stat == "spread":
        return _spread(results, query, limits)
    if query.stat == "combinations":
        return _combinations(results, query)
    if query.stat == "variables":
        if as_list(query.variables) is None:
            raise ResultsError(
                f"stat 'variables' needs variables; the store has: {', '.join(results.variables)}"
            )
        names = results.check_variables(query.variables)
    else:
        names = [v for v in DAILY_STATS[query.stat] if v in results.variables]
        if not names:
            raise ResultsError(
                f"the store holds no {', '.join(DAILY_STATS[query.stat])} (stat {query.stat})"
            )
    return _daily(results, query, names, limits)
