"""Spread statistics across members and models, per experiment, in the results store.

Why a separate pass: the per-combination variables are written by many workers; the
statistics *across* combinations can only be computed once they are all there, so they are
computed once at the end of a run by a single writer and stored next to the combinations
as small variables (see docs/spread.md for the definitions and equations).

Reductions, in this order (each skipping NaN):

1. per combination and winter *Y* (1 November *Y-1* to 30 April *Y*, the cascading
   season): the mean of the daily ``temperature_mean``, and the per-winter event
   statistics (averaged over the deep ensemble where they have an ``ensemble`` dim); a
   winter counts only if the combination has a prediction on at least
   ``min_winter_coverage`` of the season's standard-calendar days (noleap / 360_day
   combinations lack a few days, so means are over available days and event days are
   scaled to the full season);
2. scenario combinations are joined to their source/member's ``historical`` run: historical
   before the scenario's first day (2015-01-01 in CMIP6), the scenario from then on;
3. members of a model are averaged, then models are weighted equally (multi-model mean,
   standard deviation and percentiles across models);
4. period means (at least ``min_period_coverage`` of the period's winters), their change
   against the first period, and the models' agreement on the sign of that change.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dask
import fsspec
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from cascadia.run.store import SEASON_MONTHS

COMBO_DIMS: tuple[str, str, str] = ("experiment", "source_id", "member_id")
PERIODS: tuple[tuple[int, int], ...] = ((1993, 2022), (2041, 2060), (2080, 2100))
PERCENTILES: tuple[float, ...] = (10.0, 50.0, 90.0)
HISTORICAL = "historical"
#: Daily store variables read per combination (those present), and their winter values.
DAILY_VARS: tuple[str, ...] = ("temperature_mean", "temperature_anomaly_mean", "background_kind")
WINTER_DAILY: dict[str, str] = {
    "winter_temperature": "temperature_mean",
    "winter_temperature_anomaly": "temperature_anomaly_mean",
    "winter_anomaly_only": "background_kind",
}
EVENT_VARS: tuple[str, ...] = ("event_days", "event_count", "peak_intensity")
# the bases that get period means, changes and agreement
PERIOD_BASES: tuple[str, ...] = ("winter_temperature", "winter_temperature_anomaly", "event_days")
#: Period statistics of ``winter_temperature`` taken from the anomaly where a period has
#: anomaly-only winters (background held outside the mooring record, docs/spread.md).
CHANGE_STATS: tuple[str, ...] = (
    "period_model_change",
    "period_multimodel_change",
    "period_model_agreement",
    "period_model_count",
)
ANOMALY_ONLY_WARNING = (
    "outside the mooring record the stored background is held (or trend-continued), not "
    "projected: temperature_mean there is the predicted anomaly plus that background, and "
    "its change is the same in every scenario's background part; changes of periods with "
    "such winters (anomaly_only_periods) are changes of the predicted anomaly only "
    "(temperature_anomaly_mean), not of the deep temperature"
)
LIKELY = 0.66  # IPCC calibrated language: "likely" = 66-100 % probability
VERY_LIKELY = 0.90
MARKER = {"cascadia_role": "spread_statistics"}
WEIGHTING = (
    "each model (source_id) weighted equally: the members (member_id) of a model are "
    "averaged first, then statistics are taken across models; NaN (missing, failed or "
    "under-covered) values are skipped at every step"
)
JOIN = (
    "scenario combinations are joined with the historical run of the same source_id and "
    "member_id: historical before the scenario's first predicted day (CMIP6: 2015-01-01), "
    "the scenario from that day (winters from that day's winter on)"
)
SEASON = "winter Y = 1 November of Y-1 to 30 April of Y"


class SpreadError(ValueError):
    """The results store lacks what the spread statistics need, or an option is invalid."""


@dataclass(frozen=True)
class SpreadOptions:
    """What the statistics are taken over; the defaults are the project's headline choices."""

    periods: tuple[tuple[int, int], ...] = PERIODS
    percentiles: tuple[float, ...] = PERCENTILES
    min_winter_coverage: float = 0.9
    min_period_coverage: float = 0.8
    historical: str = HISTORICAL

    def __post_init__(self) -> None:
        periods = tuple((int(a), int(b)) for a, b in self.periods)
        if not periods or any(a > b for a, b in periods):
            raise SpreadError(f"periods must be non-empty (first, last) winters, got {periods}")
        if len(set(periods)) != len(periods):
            raise SpreadError(f"duplicate periods in {periods}")
        object.__setattr__(self, "periods", periods)
        pct = tuple(float(p) for p in self.percentiles)
        if not pct or any(not 0.0 <= p <= 100.0 for p in pct) or len(set(pct)) != len(pct):
            raise SpreadError(f"percentiles must be distinct values in [0, 100], got {pct}")
        object.__setattr__(self, "percentiles", pct)
        for name in ("min_winter_coverage", "min_period_coverage"):
            value = float(getattr(self, name))
            if not 0.0 < value <= 1.0:
                raise SpreadError(f"{name} must be in (0, 1], got {value}")

    @property
    def period_labels(self) -> list[str]:
        return [f"{a}-{b}" for a, b in self.periods]


# ---------------------------------------------------------------- per-combination winters


def season_days(winter: int) -> int:
    """Days of winter ``winter``'s season (1 Nov to 30 Apr) in the standard calendar."""
    return (pd.Timestamp(winter, 5, 1) - pd.Timestamp(winter - 1, 11, 1)).days


def _winter_label(time: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(time.year + (time.month >= 11), dtype=np.int64)


def _season_index(time: pd.DatetimeIndex, winters: np.ndarray) -> np.ndarray:
    """Index into ``winters`` of each day's season; -1 outside the season or the axis."""
    idx = pd.Index(winters).get_indexer(_winter_label(time))
    idx[~np.isin(time.month, SEASON_MONTHS)] = -1
    return idx


def _season_sums(daily: np.ndarray, idx: np.ndarray, n_winters: int) -> tuple[np.ndarray, ...]:
    """Per-winter sums and counts of the finite values of ``daily`` (time, ...)."""
    keep = idx >= 0
    values = daily[keep]
    finite = np.isfinite(values)
    sums = np.zeros((n_winters, *daily.shape[1:]))
    counts = np.zeros((n_winters, *daily.shape[1:]))
    np.add.at(sums, idx[keep], np.where(finite, values, 0.0))
    np.add.at(counts, idx[keep], finite)
    return sums, counts


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over ``axis`` skipping NaN; NaN (not a warning) where nothing is left."""
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _along(vector: np.ndarray, ndim: int) -> np.ndarray:
    """A per-winter vector shaped to broadcast against (winter, ...) arrays."""
    return vector.reshape((-1,) + (1,) * (ndim - 1))


@dataclass(frozen=True)
class _Layout:
    """Where things are in the opened store: axes, labels, the historical experiment."""

    winters: np.ndarray
    season_index: np.ndarray
    full_days: np.ndarray  # standard-calendar days of each winter's season
    winter_of_day: np.ndarray  # winter label of each day of the time axis
    historical: int | None  # index of the historical experiment, if present

    @classmethod
    def of(cls, results: xr.Dataset, options: SpreadOptions) -> _Layout:
        time = pd.DatetimeIndex(results["time"].values)
        winters = np.asarray(results["winter"].values, dtype=np.int64)
        experiments = [str(x) for x in results["experiment"].values]
        return cls(
            winters=winters,
            season_index=_season_index(time, winters),
            full_days=np.array([season_days(int(w)) for w in winters], dtype=np.float64),
            winter_of_day=_winter_label(time),
            historical=(
                experiments.index(options.historical) if options.historical in experiments else None
            ),
        )


def _values(one: xr.DataArray, first: str) -> np.ndarray:
    """One combination's array as float64, ``first`` leading and ``ensemble`` averaged."""
    tail = ["ensemble"] if "ensemble" in one.dims else []
    arr = np.asarray(one.transpose(first, ..., *tail).values, dtype=np.float64)
    return _nanmean(arr, -1) if tail else arr


def _extra_dims(var: xr.DataArray, skip: Sequence[str]) -> tuple[str, ...]:
    return tuple(d for d in var.dims if d not in (*COMBO_DIMS, *skip))


class _Reader:
    """Reads a combination's variables in one parallel fetch (each one chunk of the store).

    Historical runs are kept while their scenarios are processed, so each chunk is read
    once when combinations come in :meth:`order`.
    """

    def __init__(self, results: xr.Dataset, historical: int | None) -> None:
        self.results = results
        daily = [v for v in DAILY_VARS if v in results]
        self.names = [*daily, *(v for v in EVENT_VARS if v in results)]
        self.historical = historical
        self._kept: dict[tuple[int, ...], dict[str, np.ndarray]] = {}

    def order(self, done: np.ndarray) -> list[tuple[int, ...]]:
        """Done combinations by (source, member), the historical run first."""
        found = [tuple(int(i) for i in raw) for raw in zip(*np.nonzero(done), strict=True)]
        return sorted(found, key=lambda i: (i[1], i[2], i[0] != self.historical, i[0]))

    def __call__(self, index: tuple[int, ...]) -> dict[str, np.ndarray]:
        if index in self._kept:
            return self._kept[index]
        where = dict(zip(COMBO_DIMS, index, strict=True))
        fetched = dask.compute(*(self.results[n].isel(where) for n in self.names))
        out = {
            name: _values(one, "time" if name in DAILY_VARS else "winter")
            for name, one in zip(self.names, fetched, strict=True)
        }
        if index[0] == self.historical:
            self._kept = {index: out}
        return out


def _join(
    own: dict[str, np.ndarray], history: dict[str, np.ndarray] | None, layout: _Layout
) -> dict[str, np.ndarray]:
    """A scenario after its historical run: the days before its first predicted day, and
    the winters before that day's winter, come from the historical run."""
    daily = own["temperature_mean"]
    covered = np.flatnonzero(np.isfinite(daily).reshape(daily.shape[0], -1).any(axis=1))
    if history is None or not covered.size:
        return own
    cut = int(covered[0])
    before = layout.winters < layout.winter_of_day[cut]
    out = {}
    for name, vals in own.items():
        if name in DAILY_VARS:
            out[name] = np.concatenate([history[name][:cut], vals[cut:]])
        else:
            out[name] = np.where(_along(before, vals.ndim), history[name], vals)
    return out


def _one_combo(
    data: dict[str, np.ndarray], layout: _Layout, options: SpreadOptions
) -> dict[str, np.ndarray]:
    """Winter values (winter, ...) of one (joined) combination's arrays."""
    n_w = layout.winters.size
    daily = data["temperature_mean"]
    sums, counts = _season_sums(daily, layout.season_index, n_w)
    full = _along(layout.full_days, counts.ndim)
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    enough_days = counts / full >= options.min_winter_coverage
    out = {"winter_temperature": np.where(enough_days, mean, np.nan)}
    if "temperature_anomaly_mean" in data:
        sums, counts = _season_sums(data["temperature_anomaly_mean"], layout.season_index, n_w)
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        ok = counts / full >= options.min_winter_coverage
        out["winter_temperature_anomaly"] = np.where(ok, mean, np.nan)
    if "background_kind" in data:
        # 1 where any season day of the winter has a background not from the record
        held = np.where(np.isfinite(data["background_kind"]), data["background_kind"] > 0, np.nan)
        sums, counts = _season_sums(held, layout.season_index, n_w)
        out["winter_anomaly_only"] = np.where(counts > 0, (sums > 0).astype(np.float64), np.nan)
    # a day is covered when the combination has a prediction (at any depth) on it
    any_day = np.isfinite(daily).reshape(daily.shape[0], -1).any(axis=1)
    covered = _season_sums(any_day.astype(np.float64), layout.season_index, n_w)[0]
    enough = covered / layout.full_days >= options.min_winter_coverage
    for name in EVENT_VARS:
        if name not in data:
            continue
        vals = data[name]
        if name == "event_days":
            # event days per full standard-calendar season (noleap / 360_day lack days)
            vals = vals * _along(layout.full_days / np.maximum(covered, 1.0), vals.ndim)
        out[name] = np.where(_along(enough, vals.ndim), vals, np.nan)
    return out


def combo_winters(results: xr.Dataset, options: SpreadOptions | None = None) -> xr.Dataset:
    """Per-combination winter values of every "done" combination, NaN for the others.

    Variables (experiment, source_id, member_id, winter, ...): ``winter_temperature``
    (season mean of ``temperature_mean``), and each event statistic present in the store,
    averaged over the deep ensemble (``event_days`` scaled to the full season). Scenario
    combinations are joined with their historical sibling (see :data:`JOIN`).
    """
    options = options or SpreadOptions()
    _check_store(results)
    layout = _Layout.of(results, options)
    done = done_mask(results)
    extra = {
        name: _extra_dims(results[source], ("time",))
        for name, source in WINTER_DAILY.items()
        if source in results
    }
    extra.update(
        {v: _extra_dims(results[v], ("winter", "ensemble")) for v in EVENT_VARS if v in results}
    )
    shape = (*done.shape, layout.winters.size)
    out = {
        name: np.full((*shape, *(results.sizes[d] for d in dims)), np.nan)
        for name, dims in extra.items()
    }
    h = layout.historical
    read = _Reader(results, h)
    for index in read.order(done):
        joined = h is not None and index[0] != h and bool(done[(h, *index[1:])])
        history = read((h, *index[1:])) if joined else None
        data = _join(read(index), history, layout)
        for name, values in _one_combo(data, layout, options).items():
            out[name][index] = values
    data_vars = {}
    for name, dims in extra.items():
        all_dims = (*COMBO_DIMS, "winter", *dims)
        coords = {d: results[d].values for d in all_dims if d in results.coords}
        data_vars[name] = xr.DataArray(out[name], dims=all_dims, coords=coords)
    return xr.Dataset(data_vars)


def done_mask(results: xr.Dataset) -> np.ndarray:
    """True for the combinations whose status is "done" (only they count)."""
    status = results["status"].values  # object or StringDType strings
    return np.asarray(status == "done", dtype=bool).reshape(status.shape)


def _check_store(results: xr.Dataset) -> None:
    required = {
        "status": COMBO_DIMS,
        "temperature_mean": (*COMBO_DIMS, "time"),
    }
    for name, dims in required.items():
        if name not in results:
            raise SpreadError(f"results store lacks the variable {name!r}")
        lacking = [d for d in dims if d not in results[name].dims]
        if lacking:
            raise SpreadError(
                f"results variable {name!r} has dims {tuple(results[name].dims)}, "
                f"expected at least {dims}"
            )
    for coord in ("time", "winter"):
        if coord not in results.coords:
            raise SpreadError(f"results store lacks the coordinate {coord!r}")
    if results.sizes["winter"] == 0:
        raise SpreadError("results store has an empty 'winter' axis: no winter to take spread over")
    if not np.issubdtype(results["time"].dtype, np.datetime64):
        raise SpreadError(
            f"results time axis has dtype {results['time'].dtype}, expected the standard "
            "calendar (datetime64)"
        )
    for name in EVENT_VARS:
        if name in results and "winter" not in results[name].dims:
            raise SpreadError(f"results variable {name!r} has no 'winter' dim")


# ---------------------------------------------------------------- across members and models

# base -> store variable it is made from
BASES: dict[str, str] = {
    "winter_temperature": "temperature_mean",
    "winter_temperature_anomaly": "temperature_anomaly_mean",
    "event_days": "event_days",
    "event_count": "event_count",
    "peak_intensity": "peak_intensity",
}
WINTER_TEMPERATURE = (
    "winter (November-April) mean of the deep-ensemble mean daily sea water temperature",
    "time: mean (comment: November-April days with a prediction)",
)


WINTER_ANOMALY = (
    "winter (November-April) mean of the deep-ensemble mean daily sea water temperature "
    "anomaly against the background",
    WINTER_TEMPERATURE[1],
)


def _base_description(base: str, source: xr.DataArray) -> tuple[str, str]:
    """What a base is and its cell_methods at the combination level (before the spread)."""
    if base == "winter_temperature":
        return WINTER_TEMPERATURE
    if base == "winter_temperature_anomaly":
        return WINTER_ANOMALY
    what = str(source.attrs.get("long_name", base.replace("_", " ")))
    cells = str(source.attrs.get("cell_methods", "time: sum"))
    if base == "event_days":
        what += ", scaled for days missing from the November-April season"
    if "ensemble" in source.dims:
        cells += " ensemble: mean"
    return what, cells


@contextmanager
def _quiet_empty_slices() -> Iterator[None]:
    """All-NaN slices (a model or winter without data) are expected: they give NaN."""
    with warnings.catch_warnings():
        for message in ("Mean of empty slice", "All-NaN slice", "Degrees of freedom <= 0"):
            warnings.filterwarnings("ignore", message=message, category=RuntimeWarning)
        with np.errstate(invalid="ignore", divide="ignore"):
            yield


def across_models(combo: xr.DataArray, percentiles: Sequence[float]) -> dict[str, xr.DataArray]:
    """Members of each model averaged, then mean / std / percentiles / count over models."""
    with _quiet_empty_slices():
        model = combo.mean("member_id", skipna=True)
        pct = model.quantile(np.asarray(percentiles) / 100.0, dim="source_id", skipna=True)
        pct = pct.rename(quantile="percentile").assign_coords(percentile=list(percentiles))
        return {
            "model_mean": model,
            "multimodel_mean": model.mean("source_id", skipna=True),
            "multimodel_std": model.std("source_id", skipna=True, ddof=0),
            "multimodel_percentile": pct.transpose("experiment", "percentile", ...),
            "multimodel_count": model.count("source_id").astype(np.int32),
        }


def period_means(combo: xr.DataArray, options: SpreadOptions) -> xr.DataArray:
    """Mean over each period's winters, NaN unless enough of the period's winters count."""
    winter = combo["winter"]
    pieces = []
    with _quiet_empty_slices():
        for first, last in options.periods:
            inside = combo.where((winter >= first) & (winter <= last))
            need = options.min_period_coverage * (last - first + 1) - 1e-9
            mean = inside.mean("winter", skipna=True)
            pieces.append(mean.where(inside.count("winter") >= need))
    out = xr.concat(pieces, dim="period", coords="minimal", compat="override", join="exact")
    return out.assign_coords(period=np.array(options.period_labels, dtype=object))


def period_changes(combo: xr.DataArray, options: SpreadOptions) -> dict[str, xr.DataArray]:
    """Per-model and multi-model period means, change vs the first period, sign agreement."""
    with _quiet_empty_slices():
        model = period_means(combo, options).mean("member_id", skipna=True)
        change = model - model.isel(period=0, drop=True)
        change = change.where(change["period"] != options.period_labels[0])
        mm_change = change.mean("source_id", skipna=True)
        n_models = change.count("source_id")
        same_sign = (np.sign(change) == np.sign(mm_change)).where(change.notnull())
        agreement = (same_sign.sum("source_id", skipna=True) / n_models).where(n_models > 0)
        return {
            "period_model_mean": model.transpose("experiment", "source_id", "period", ...),
            "period_multimodel_mean": model.mean("source_id", skipna=True),
            "period_model_change": change.transpose("experiment", "source_id", "period", ...),
            "period_multimodel_change": mm_change,
            "period_model_agreement": agreement,
            "period_model_count": n_models.astype(np.int32),
        }


def anomaly_only_periods(combos: xr.Dataset, options: SpreadOptions) -> list[str]:
    """Labels of the periods whose temperature change is taken on the anomaly.

    A period is anomaly-only when a done combination has a winter in it with a season day
    whose background is not from the mooring record (``background_kind`` > 0); when the
    baseline is, every period is (each change is against it). Empty for stores without
    ``background_kind`` (older stores).
    """
    if "winter_anomaly_only" not in combos or "winter_temperature_anomaly" not in combos:
        return []
    flags = combos["winter_anomaly_only"]
    winter = flags["winter"]
    held = [
        label
        for (first, last), label in zip(options.periods, options.period_labels, strict=True)
        if bool((flags.where((winter >= first) & (winter <= last)) > 0).any())
    ]
    if options.period_labels[0] in held:
        return list(options.period_labels)
    return held


def _statistic_attrs(
    base: str, stat: str, source: xr.DataArray, options: SpreadOptions
) -> dict[str, Any]:
    what, cells = _base_description(base, source)
    units = str(source.attrs.get("units", "1"))
    difference = source.attrs.get("units_metadata") == "temperature: difference"
    baseline = options.period_labels[0]
    members = " member_id: mean"
    period = " time: mean (comment: over the period's winters)"
    table: dict[str, tuple[str, str, str]] = {
        "model_mean": ("mean over the members of each model", cells + members, units),
        "multimodel_mean": ("multi-model mean", cells + members + " source_id: mean", units),
        "multimodel_std": (
            "multi-model standard deviation (across models, ddof=0)",
            cells + members + " source_id: standard_deviation",
            units,
        ),
        "multimodel_percentile": (
            "multi-model percentiles (across models, linear interpolation)",
            cells + members + " source_id: percentile",
            units,
        ),
        "multimodel_count": (
            "number of models with a value",
            cells + members + " source_id: sum (comment: count of models)",
            "1",
        ),
        "period_model_mean": (
            "period mean of each model (members averaged)",
            cells + period + members,
            units,
        ),
        "period_multimodel_mean": (
            "period multi-model mean",
            cells + period + members + " source_id: mean",
            units,
        ),
        "period_model_change": (
            f"change of each model's period mean vs {baseline}",
            cells + period + members,
            units,
        ),
        "period_multimodel_change": (
            f"multi-model mean change vs {baseline} (mean of the models' changes)",
            cells + period + members + " source_id: mean",
            units,
        ),
        "period_model_agreement": (
            f"fraction of models whose change vs {baseline} has the sign of the multi-model "
            "mean change",
            cells + period + members + " source_id: mean (comment: of sign agreement)",
            "1",
        ),
        "period_model_count": (
            f"number of models with a change vs {baseline}",
            cells + period + members + " source_id: sum (comment: count of models)",
            "1",
        ),
    }
    label, cell_methods, var_units = table[stat]
    attrs: dict[str, Any] = {
        "long_name": f"{what}: {label}",
        "units": var_units,
        "cell_methods": cell_methods,
        "comment": f"{WEIGHTING}; {SEASON}",
        **MARKER,
    }
    if base == "winter_temperature" and stat in ("model_mean", "multimodel_mean"):
        attrs["standard_name"] = "sea_water_temperature"
    if var_units == "degree_Celsius" and ("std" in stat or "change" in stat or difference):
        attrs["units_metadata"] = "temperature: difference"
    if stat.startswith("period_"):
        attrs["comment"] += (
            f"; {JOIN}; a period mean needs {options.min_period_coverage:.0%} of its winters"
        )
    if stat == "period_model_agreement":
        attrs["likely_threshold"] = LIKELY
        attrs["very_likely_threshold"] = VERY_LIKELY
        attrs["comment"] += (
            f"; IPCC-style reading: agreement >= {LIKELY} likely, >= {VERY_LIKELY} very "
            "likely sign of change; NaN for the baseline period and without future data"
        )
    return attrs


def _canonical(var: xr.DataArray) -> xr.DataArray:
    """Dims in a fixed, readable order: labels first, then the axes, then the rest."""
    lead = ("experiment", "source_id", "percentile", "period", "winter")
    return var.transpose(*(d for d in lead if d in var.dims), ...)


def spread_statistics(
    results: xr.Dataset,
    *,
    periods: Sequence[tuple[int, int]] = PERIODS,
    percentiles: Sequence[float] = PERCENTILES,
    min_winter_coverage: float = 0.9,
    min_period_coverage: float = 0.8,
    historical: str = HISTORICAL,
) -> xr.Dataset:
    """Spread statistics across members and models per experiment (in memory, CF attrs).

    ``results`` is an opened results store; only combinations with status "done" count.
    Variables are named ``{base}_{statistic}`` with base in :data:`BASES` (event bases only
    where the store has them) and statistic as in docs/spread.md; period statistics for
    :data:`PERIOD_BASES`. Periods without data (reanalyses in the future) are NaN.
    """
    options = SpreadOptions(
        periods=tuple(periods),
        percentiles=tuple(percentiles),
        min_winter_coverage=min_winter_coverage,
        min_period_coverage=min_period_coverage,
        historical=historical,
    )
    combos = combo_winters(results, options)
    held = anomaly_only_periods(combos, options)
    out: dict[str, xr.DataArray] = {}
    for base, source in BASES.items():
        if base not in combos:
            continue
        stats = across_models(combos[base], options.percentiles)
        if base in PERIOD_BASES:
            stats.update(period_changes(combos[base], options))
        if base == "winter_temperature" and held:
            anomaly = period_changes(combos["winter_temperature_anomaly"], options)
            labels = options.period_labels
            use = xr.DataArray(
                [p in held for p in labels], dims="period", coords={"period": labels}
            )
            for name in CHANGE_STATS:
                stats[name] = xr.where(use, anomaly[name], stats[name]).astype(stats[name].dtype)
        for stat, value in stats.items():
            attrs = _statistic_attrs(base, stat, results[source], options)
            if base == "winter_temperature" and held:
                attrs["warning"] = ANOMALY_ONLY_WARNING
                if stat in CHANGE_STATS:
                    attrs["anomaly_only_periods"] = " ".join(held)
                    attrs["long_name"] += " (periods in anomaly_only_periods: of the anomaly)"
            out[f"{base}_{stat}"] = value.assign_attrs(attrs)
    done = xr.DataArray(done_mask(results), dims=COMBO_DIMS)
    out["model_member_count"] = (
        done.sum("member_id")
        .astype(np.int32)
        .assign_coords({d: results[d].values for d in COMBO_DIMS[:2]})
        .assign_attrs(
            long_name="number of members with status done per model and experiment",
            units="1",
            cell_methods="member_id: sum (comment: count of done members)",
            **MARKER,
        )
    )
    ds = xr.Dataset({name: _canonical(value) for name, value in out.items()})
    ds = ds.assign_coords(
        period_first_winter=("period", np.array([a for a, _ in options.periods])),
        period_last_winter=("period", np.array([b for _, b in options.periods])),
    )
    ds["percentile"].attrs.update({"long_name": "percentile across models", "units": "%"})
    ds["period"].attrs.update({"long_name": "period of winters (first-last, inclusive)"})
    ds["period_first_winter"].attrs.update({"long_name": "first winter of the period"})
    ds["period_last_winter"].attrs.update({"long_name": "last winter of the period"})
    for name in ("percentile", "period", "period_first_winter", "period_last_winter"):
        ds[name].attrs.update(MARKER)
    ds.attrs["spread_method"] = (
        f"{SEASON}; a winter counts where a combination has predictions on at least "
        f"{options.min_winter_coverage:.0%} of its standard-calendar days; {JOIN}; {WEIGHTING}"
    )
    return ds


# ---------------------------------------------------------------- into the store


def _open(url: str, storage_options: Mapping[str, Any] | None) -> xr.Dataset:
    return xr.open_zarr(
        url,
        consolidated=True,
        storage_options=dict(storage_options) if storage_options else None,
    )


def _group(url: str, storage_options: Mapping[str, Any] | None) -> zarr.Group:
    return zarr.open_group(
        url,
        mode="r+",
        zarr_format=2,
        storage_options=dict(storage_options) if storage_options else None,
    )


def _remove_previous(
    url: str, storage_options: Mapping[str, Any] | None, marked: set[str], written: set[str]
) -> bool:
    """Delete earlier spread arrays: those marked in the consolidated metadata, and any
    array about to be written that a killed earlier write left unconsolidated."""
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    present = {str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}
    doomed = sorted((marked | written) & present)
    for name in doomed:
        fs.rm(f"{root.rstrip('/')}/{name}", recursive=True)
    return bool(doomed)


def write_spread(url: str, storage_options: dict[str, Any] | None = None, **options: Any) -> None:
    """Compute :func:`spread_statistics` and store them as new variables of the same store.

    Single writer, at the end of a run. A rerun first removes the previous spread
    variables, so it replaces them (idempotent); metadata is re-consolidated after each
    step so a plain ``xr.open_zarr(url)`` always opens a consistent store. ``options`` are
    the keyword options of :func:`spread_statistics`.
    """
    role, value = next(iter(MARKER.items()))
    # coordinates of no variable (the store's season_bounds) are listed in this attribute,
    # which the root-attribute rewrite below would drop
    loose = str(_group(url, storage_options).attrs.get("coordinates", "")).split()
    with _open(url, storage_options) as results:
        root_attrs = dict(results.attrs)
        stats = spread_statistics(results, **options).load()
        marked = {str(k) for k, v in results.variables.items() if v.attrs.get(role) == value}
        others = {str(k) for k in results.variables} - marked
    # the store's own axes (experiment, winter, depth...) are not rewritten
    stats = stats.drop_vars([k for k in stats.variables if k in others])
    if _remove_previous(url, storage_options, marked, {str(k) for k in stats.variables}):
        zarr.consolidate_metadata(_group(url, storage_options).store, zarr_format=2)
    root_attrs.pop("spread_method", None)
    # mode "a" replaces the root attributes with the dataset's: carry the store's over
    stats.attrs = {**root_attrs, **stats.attrs}
    stats.to_zarr(
        url,
        mode="a",
        zarr_format=2,
        consolidated=False,
        storage_options=dict(storage_options) if storage_options else None,
    )
    group = _group(url, storage_options)
    listed = str(group.attrs.get("coordinates", "")).split()
    if loose and not set(loose) <= set(listed):
        group.attrs["coordinates"] = " ".join(dict.fromkeys([*listed, *loose]))
    zarr.consolidate_metadata(group.store, zarr_format=2)
