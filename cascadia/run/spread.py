"""Spread statistics across members and models, per experiment, in the results store.

Why a separate pass: the per-combination variables are written by many workers; the
statistics *across* combinations can only be computed once they are all there, so they are
computed once at the end of a run by a single writer, on the store's cube view
(:func:`cascadia.run.store.open_cube`), and stored whole as the store's ``spread`` group
(see docs/spread.md for the definitions and equations).

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
3. members of a model are averaged, then models are weighted by family (a driving GCM
   and the RCMs it drives weigh as one model, :mod:`cascadia.run.families`) for the
   multi-model mean, standard deviation and percentiles across models;
4. period means (at least ``min_period_coverage`` of the period's winters), their change
   against the first period, and its robustness across models (sign agreement and
   significance, :mod:`cascadia.run.robustness`);
5. for the scenarios: the partition of the variance of winter event days and winter
   temperature into scenario, model, internal-variability and emulator parts
   (:mod:`cascadia.run.partition`), the time of emergence of the forced change, and the
   trend of every combination and multi-model mean (:mod:`cascadia.run.trends`).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import dask
import fsspec
import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse

from cascadia.run import partition, robustness, trends
from cascadia.run.families import (
    FAMILY_COORD,
    FamilyError,
    family_count,
    family_weights,
    model_families,
)
from cascadia.run.store import (
    ANOMALY_ONLY_KINDS,
    CONVENTIONS,
    SEASON_MONTHS,
    SPREAD_GROUP,
    SPREAD_ROLE,
    SPREAD_VALUE,
    WINTERS_GROUP,
    append_history,
    cf_cell_methods,
    open_cube,
    set_group_attrs,
)

log = logging.getLogger(__name__)
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
#: Deep-ensemble member values read per combination (those present, with the background
#: their anomaly needs): the emulator level of the variance partition.
MEMBER_VARS: tuple[str, ...] = ("temperature_member", "member_event_days")
MEMBER_EVENTS: tuple[str, ...] = ("member_event_days",)
#: Daily variables, joined with the historical run day by day.
DAILY_NAMES: tuple[str, ...] = (*DAILY_VARS, "temperature_member", "background_temperature")
# the bases that get period means, changes and agreement
PERIOD_BASES: tuple[str, ...] = ("winter_temperature", "winter_temperature_anomaly", "event_days")
#: Period statistics of ``winter_temperature`` taken from the anomaly where a period has
#: anomaly-only winters (background held outside the mooring record, docs/spread.md).
CHANGE_STATS: tuple[str, ...] = (
    "period_model_change",
    "period_multimodel_change",
    "period_model_agreement",
    "period_model_count",
    "period_family_count",
    "period_significant_fraction",
    "period_positive_fraction",
    "period_negative_fraction",
    "period_robustness",
    "period_likelihood",
)
ANOMALY_ONLY_WARNING = (
    "outside the mooring record the stored background of some combinations is held (or "
    "trend-continued), not projected: temperature_mean there is the predicted anomaly plus "
    "that background, and its change is the same in every scenario's background part. "
    "Changes of periods with such winters (anomaly_only_periods) are taken, per experiment, "
    "over the combinations whose background is known in every period (the mooring record, "
    "an ocean analysis before it, the projection's own ocean after it: background_kind 0, "
    "3, 4; period_model_count says how many models) where it has any, else they are "
    "changes of the predicted anomaly only (temperature_anomaly_mean), not of the deep "
    "temperature"
)
MARKER = {SPREAD_ROLE: SPREAD_VALUE}
WEIGHTING = (
    "the members (member_id) of a model are averaged first, then statistics are taken "
    "across models, each model family (model_family: a driving model and the regional "
    "models it drives) weighted equally and its models equally within it; NaN (missing, "
    "failed or under-covered) values are skipped at every step"
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
    #: Degree of the polynomial smoothing each model's series in the variance partition
    #: (None: no smoothing), and the running window of its internal and emulator parts.
    partition_degree: int | None = partition.DEGREE
    partition_window: int = partition.WINDOW
    #: Winters a trend (and a partition fit) needs.
    min_trend_winters: int = trends.MIN_WINTERS
    #: Time of emergence: standard deviations of internal variability.
    emergence_sigmas: float = trends.EMERGENCE_SIGMAS

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
        if self.min_trend_winters < 5:
            raise SpreadError(f"min_trend_winters must be >= 5, got {self.min_trend_winters}")
        if not self.emergence_sigmas > 0:
            raise SpreadError(f"emergence_sigmas must be > 0, got {self.emergence_sigmas}")
        try:
            _ = self.partition_options
        except ValueError as exc:
            raise SpreadError(str(exc)) from None

    @property
    def partition_options(self) -> partition.PartitionOptions:
        return partition.PartitionOptions(
            baseline=self.periods[0],
            degree=self.partition_degree,
            window=self.partition_window,
            min_fit_winters=self.min_trend_winters,
            min_baseline_coverage=self.min_period_coverage,
        )

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
    keep = np.flatnonzero(idx >= 0)
    # a (winter x day) 0/1 matrix: one sparse product per array, where np.add.at took
    # a tenth of a second per call
    season = sparse.csr_matrix(
        (np.ones(keep.size), (idx[keep], keep)), shape=(n_winters, daily.shape[0])
    )
    flat = daily.reshape(daily.shape[0], -1)
    finite = np.isfinite(flat)
    sums = season @ np.where(finite, flat, 0.0)
    counts = season @ finite.astype(np.float64)
    shape = (n_winters, *daily.shape[1:])
    return sums.reshape(shape), counts.reshape(shape)


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


def _values(one: xr.DataArray, first: str, members: bool = False) -> np.ndarray:
    """One combination's array as float64, ``first`` leading and ``ensemble`` averaged
    (kept second with ``members``)."""
    if members:
        return np.asarray(one.transpose(first, "ensemble", ...).values, dtype=np.float64)
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
        # member values with a deep-ensemble dim (older stores may lack some)
        self.members = [v for v in MEMBER_VARS if v in results]
        if "temperature_member" in self.members and "background_temperature" in results:
            self.names.append("background_temperature")
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
        names = [*self.names, *self.members]
        fetched = dask.compute(*(self.results[n].isel(where) for n in names))
        out = {
            name: _values(
                one,
                "time" if name in DAILY_NAMES else "winter",
                members=name in self.members and "ensemble" in one.dims,
            )
            for name, one in zip(names, fetched, strict=True)
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
        if name in DAILY_NAMES:
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
        # 1 where any season day of the winter has a held or trend-continued background
        kind = data["background_kind"]
        held = np.where(np.isfinite(kind), np.isin(kind, ANOMALY_ONLY_KINDS), np.nan)
        sums, counts = _season_sums(held, layout.season_index, n_w)
        out["winter_anomaly_only"] = np.where(counts > 0, (sums > 0).astype(np.float64), np.nan)
    # a day is covered when the combination has a prediction (at any depth) on it
    any_day = np.isfinite(daily).reshape(daily.shape[0], -1).any(axis=1)
    covered = _season_sums(any_day.astype(np.float64), layout.season_index, n_w)[0]
    enough = covered / layout.full_days >= options.min_winter_coverage
    for name in (*EVENT_VARS, *MEMBER_EVENTS):
        if name not in data:
            continue
        vals = data[name]
        if name in ("event_days", "member_event_days"):
            # event days per full standard-calendar season (noleap / 360_day lack days)
            vals = vals * _along(layout.full_days / np.maximum(covered, 1.0), vals.ndim)
        out[name] = np.where(_along(enough, vals.ndim), vals, np.nan)
    if "temperature_member" in data:
        # each deep-ensemble member's winter mean, of its anomaly where the store has one
        member = data["temperature_member"]
        name = "member_winter_temperature"
        if "temperature_anomaly_mean" in data and "background_temperature" in data:
            member = member - data["background_temperature"][:, None, :]
            name = "member_winter_temperature_anomaly"
        sums, counts = _season_sums(member, layout.season_index, n_w)
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        ok = counts / _along(layout.full_days, counts.ndim) >= options.min_winter_coverage
        out[name] = np.where(ok, mean, np.nan)
    return out


#: The cache variable holding what each combination's winter values were computed from.
WINTER_KEY = "winter_key"
#: Set on the ``combo_winters`` group once every array of it is written.
CACHE_COMPLETE = "complete"


def winter_keys(results: xr.Dataset, options: SpreadOptions) -> np.ndarray:
    """What each combination's winter values depend on, as a digest ("" where they are not
    cached: not done, or no fingerprint).

    The combination's fingerprint (inputs, model, inference settings: what the run wrote)
    and its historical sibling's (the join), the store's time and winter axes, the
    variables read and the options they depend on; equal keys mean equal winter values.
    """
    done = done_mask(results)
    keys = np.full(done.shape, "", dtype=object)
    if "fingerprint" not in results:
        return keys
    fingerprints = np.asarray(results["fingerprint"].values, dtype=str).reshape(done.shape)
    time = results["time"].values
    common = json.dumps(
        {
            "time": [str(time[0]), str(time[-1]), int(time.size)] if time.size else [],
            "winters": [int(w) for w in results["winter"].values],
            "variables": sorted(str(v) for v in results.data_vars),
            # what the winter values depend on (not the periods or percentiles)
            "coverage": options.min_winter_coverage,
            "historical": options.historical,
        },
        sort_keys=True,
        default=str,
    )
    experiments = [str(x) for x in results["experiment"].values]
    h = experiments.index(options.historical) if options.historical in experiments else None
    for index in zip(*np.nonzero(done), strict=True):
        own = fingerprints[index]
        if not own:
            continue
        history = ""
        if h is not None and index[0] != h and done[(h, *index[1:])]:
            history = fingerprints[(h, *index[1:])]
            if not history:
                continue
        keys[index] = sha256(f"{common}|{own}|{history}".encode()).hexdigest()
    return keys


def _reusable(
    previous: xr.Dataset | None, results: xr.Dataset, keys: np.ndarray
) -> dict[tuple[int, ...], tuple[int, ...]]:
    """Cells of ``results`` whose cached values in ``previous`` have the same key: their
    index in ``results`` -> their index in ``previous``."""
    if previous is None or WINTER_KEY not in previous:
        return {}
    labels = [
        {str(x): i for i, x in enumerate(previous[d].values)} for d in COMBO_DIMS if d in previous
    ]
    if len(labels) != len(COMBO_DIMS) or not np.array_equal(
        previous["winter"].values, results["winter"].values
    ):
        return {}
    stored = np.asarray(previous[WINTER_KEY].transpose(*COMBO_DIMS).values, dtype=str)
    found = {}
    for index in zip(*np.nonzero(keys != ""), strict=True):
        names = [str(results[d].values[i]) for d, i in zip(COMBO_DIMS, index, strict=True)]
        where = tuple(lab.get(n, -1) for lab, n in zip(labels, names, strict=True))
        if -1 not in where and stored[where] == keys[index]:
            found[tuple(int(i) for i in index)] = where
    return found


def combo_winters(
    results: xr.Dataset,
    options: SpreadOptions | None = None,
    previous: xr.Dataset | None = None,
) -> xr.Dataset:
    """Per-combination winter values of every "done" combination, NaN for the others.

    Variables (experiment, source_id, member_id, winter, ...): ``winter_temperature``
    (season mean of ``temperature_mean``), and each event statistic present in the store,
    averaged over the deep ensemble (``event_days`` scaled to the full season). Scenario
    combinations are joined with their historical sibling (see :data:`JOIN`). Where the
    store has deep-ensemble member values, also per member (``ensemble`` dim):
    ``member_event_days`` (scaled) and ``member_winter_temperature_anomaly`` (the member's
    temperature minus the background; ``member_winter_temperature`` in stores without an
    anomaly).

    ``previous``: an earlier result of this function with its :data:`WINTER_KEY` (the
    store's ``combo_winters`` group, loaded); combinations whose key (:func:`winter_keys`)
    is unchanged are copied from it instead of read from the store.
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
    for name in MEMBER_EVENTS:
        if name in results and "ensemble" in results[name].dims:
            extra[name] = ("ensemble", *_extra_dims(results[name], ("winter", "ensemble")))
    if "temperature_member" in results and "ensemble" in results["temperature_member"].dims:
        anomaly = "temperature_anomaly_mean" in results and "background_temperature" in results
        name = "member_winter_temperature" + ("_anomaly" if anomaly else "")
        extra[name] = (
            "ensemble",
            *_extra_dims(results["temperature_member"], ("time", "ensemble")),
        )
    shape = (*done.shape, layout.winters.size)
    out = {
        name: np.full((*shape, *(results.sizes[d] for d in dims)), np.nan)
        for name, dims in extra.items()
    }
    h = layout.historical
    read = _Reader(results, h)
    cached = _reusable(previous, results, winter_keys(results, options)) if previous else {}
    for index in read.order(done):
        if index in cached:
            for name in out:
                if name in previous:
                    out[name][index] = previous[name].values[cached[index]]
            if all(name in previous for name in out):
                continue
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
        cells += " realization: mean (comment: deep-ensemble members)"
    return what, cells


@contextmanager
def _quiet_empty_slices() -> Iterator[None]:
    """All-NaN slices (a model or winter without data) are expected: they give NaN."""
    with warnings.catch_warnings():
        for message in ("Mean of empty slice", "All-NaN slice", "Degrees of freedom <= 0"):
            warnings.filterwarnings("ignore", message=message, category=RuntimeWarning)
        with np.errstate(invalid="ignore", divide="ignore"):
            yield


def _no_families(combo: xr.DataArray) -> xr.DataArray:
    """Each source_id its own family (statistics of callers that give none)."""
    sources = combo["source_id"].values
    return xr.DataArray(
        np.asarray(sources, dtype=object), dims="source_id", coords={"source_id": sources}
    )


def across_models(
    combo: xr.DataArray, percentiles: Sequence[float], family: xr.DataArray | None = None
) -> dict[str, xr.DataArray]:
    """Members of each model averaged, then family-weighted mean / std / percentiles over
    models, and the numbers of models and families with a value."""
    family = _no_families(combo) if family is None else family
    with _quiet_empty_slices():
        model = combo.mean("member_id", skipna=True)
        valid = model.notnull()
        weighted = model.weighted(family_weights(valid, family))
        q = np.asarray(percentiles) / 100.0
        pct = weighted.quantile(q, dim="source_id", skipna=True)
        if "quantile" not in pct.dims:  # xarray's weighted quantile drops a 1-element q
            pct = pct.expand_dims("quantile")
        # ... and every other dim of length 1 (a store of reanalyses only: one experiment)
        lost = [d for d in model.dims if d != "source_id" and d not in pct.dims]
        if lost:
            pct = pct.expand_dims({d: model[d].values for d in lost})
        pct = pct.rename(quantile="percentile").assign_coords(percentile=list(percentiles))
        return {
            "model_mean": model,
            "multimodel_mean": weighted.mean("source_id", skipna=True),
            "multimodel_std": weighted.std("source_id", skipna=True),
            "multimodel_percentile": pct.transpose("experiment", "percentile", ...),
            "multimodel_count": model.count("source_id").astype(np.int32),
            "multimodel_family_count": family_count(valid, family),
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


def multimodel_change(
    combo: xr.DataArray, options: SpreadOptions, family: xr.DataArray | None = None
) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray]:
    """Per-model period means (members averaged), per-model change against the first
    period (NaN for the first), and its family-weighted multi-model mean; any extra dims of
    ``combo`` (e.g. bootstrap resamples) are carried along."""
    family = _no_families(combo) if family is None else family
    with _quiet_empty_slices():
        model = period_means(combo, options).mean("member_id", skipna=True)
        change = model - model.isel(period=0, drop=True)
        change = change.where(change["period"] != options.period_labels[0])
        weights = family_weights(change.notnull(), family)
        return model, change, change.weighted(weights).mean("source_id", skipna=True)


def winters_resampled(
    combo: xr.DataArray, options: SpreadOptions, draws: int, seed: int = 0
) -> xr.DataArray:
    """``combo`` with its winters drawn with replacement inside each period, ``draws``
    times along a new ``resample`` dim; every draw keeps the period's winter labels, so
    :func:`period_means` sees the same periods and coverage rule. The draw depends only on
    the winter axis and ``seed``: two cubes on the same winters (a run and its truth) are
    resampled alike, which pairs them."""
    winters = combo["winter"].values
    rng = np.random.default_rng(seed)
    picks, labels = [], []
    for first, last in options.periods:
        inside = np.flatnonzero((winters >= first) & (winters <= last))
        picks.append(inside[rng.integers(0, inside.size, size=(draws, inside.size))])
        labels.append(winters[inside])
    index = xr.DataArray(np.concatenate(picks, axis=1), dims=("resample", "winter"))
    out = combo.isel(winter=index)
    return out.assign_coords(winter=np.concatenate(labels), resample=np.arange(draws))


def period_changes(
    combo: xr.DataArray, options: SpreadOptions, family: xr.DataArray | None = None
) -> dict[str, xr.DataArray]:
    """Per-model and family-weighted multi-model period means, change vs the first period,
    and its robustness across models (:func:`cascadia.run.robustness.period_robustness`)."""
    family = _no_families(combo) if family is None else family
    with _quiet_empty_slices():
        model, change, mm_change = multimodel_change(combo, options, family)
        mean_weights = family_weights(model.notnull(), family)
        robust = robustness.period_robustness(
            combo.mean("member_id", skipna=True),
            change,
            family,
            mm_change,
            options.periods,
            options.min_period_coverage,
        )
        return {
            "period_model_mean": model.transpose("experiment", "source_id", "period", ...),
            "period_multimodel_mean": model.weighted(mean_weights).mean("source_id", skipna=True),
            "period_model_change": change.transpose("experiment", "source_id", "period", ...),
            "period_multimodel_change": mm_change,
            "period_model_agreement": robust["agreement"],
            "period_model_count": change.count("source_id").astype(np.int32),
            "period_family_count": robust["family_count"],
            "period_significant_fraction": robust["significant_fraction"],
            "period_positive_fraction": robust["positive_fraction"],
            "period_negative_fraction": robust["negative_fraction"],
            "period_robustness": robust["robustness"],
            "period_likelihood": robust["likelihood"],
        }


def anomaly_only_periods(combos: xr.Dataset, options: SpreadOptions) -> list[str]:
    """Labels of the periods whose temperature change is taken on the anomaly.

    A period is anomaly-only when a done combination has a winter in it with a season day
    whose background is held or trend-continued (``background_kind`` 1 or 2); when the
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


def with_known_background(combos: xr.Dataset, options: SpreadOptions) -> xr.DataArray:
    """``winter_temperature`` of the combinations none of whose winters in the periods has
    an anomaly-only background (held or trend-continued); NaN for the others."""
    flags = combos["winter_anomaly_only"]
    winter = flags["winter"]
    inside = xr.zeros_like(winter, dtype=bool)
    for first, last in options.periods:
        inside = inside | ((winter >= first) & (winter <= last))
    held = (flags.where(inside) > 0).any("winter")
    return combos["winter_temperature"].where(~held)


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
            "multi-model percentiles (across models, family-weighted; linear interpolation, "
            "as numpy's, when the weights are equal)",
            cells + members + " source_id: percentile",
            units,
        ),
        "multimodel_count": (
            "number of models with a value",
            cells + members + " source_id: sum (comment: count of models)",
            "1",
        ),
        "multimodel_family_count": (
            "number of model families with a value",
            cells + members + " source_id: sum (comment: count of model families)",
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
            f"fraction of the models (family-weighted) agreeing on the sign of the change vs "
            f"{baseline} (the largest of the positive, negative and zero fractions)",
            cells + period + members + " source_id: mean (comment: of sign agreement)",
            "1",
        ),
        "period_model_count": (
            f"number of models with a change vs {baseline}",
            cells + period + members + " source_id: sum (comment: count of models)",
            "1",
        ),
        "period_family_count": (
            f"number of model families with a change vs {baseline}",
            cells + period + members + " source_id: sum (comment: count of model families)",
            "1",
        ),
        "period_significant_fraction": (
            f"fraction of the models (family-weighted) whose change vs {baseline} is "
            "significant (IPCC AR6 advanced approach: beyond sqrt(2/20) x 1.645 x the "
            "standard deviation of its linearly detrended baseline winters)",
            cells + period + members + " source_id: mean (comment: of significant change)",
            "1",
        ),
        "period_positive_fraction": (
            f"fraction of the models (family-weighted) whose change vs {baseline} is positive",
            cells + period + members + " source_id: mean (comment: of positive change)",
            "1",
        ),
        "period_negative_fraction": (
            f"fraction of the models (family-weighted) whose change vs {baseline} is negative",
            cells + period + members + " source_id: mean (comment: of negative change)",
            "1",
        ),
        "period_robustness": (
            f"robustness category of the change vs {baseline} (IPCC AR6 Atlas advanced "
            "approach, xclim.ensembles.robustness_categories)",
            cells + period + members + " source_id: point (comment: category across models)",
            "1",
        ),
        "period_likelihood": (
            f"IPCC likelihood of the sign of the multi-model change vs {baseline}",
            cells + period + members + " source_id: point (comment: category across models)",
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
        attrs["comment"] += (
            "; a fraction of models, not a probability: the IPCC likelihood wording is in "
            "period_likelihood; NaN for the baseline period and without future data"
        )
    if stat == "period_robustness":
        attrs["flag_values"] = [1, 2, 3]
        attrs["flag_meanings"] = " ".join(c.replace(" ", "_") for c in robustness.CATEGORIES)
        attrs["comment"] += (
            "; robust signal: >= 66 % of the family weight changes significantly and >= 80 % "
            "agrees on the sign; no change or no robust signal: < 66 % significant; "
            "conflicting signal: >= 66 % significant, < 80 % agree (IPCC AR6 WGI Atlas, "
            "Cross-Chapter Box Atlas.1); NaN for the baseline, without data or for periods "
            f"under {robustness.MIN_PERIOD_WINTERS} winters"
        )
    if stat == "period_likelihood":
        attrs["flag_values"] = [0, 1, 2]
        attrs["flag_meanings"] = " ".join(c.replace(" ", "_") for c in robustness.LIKELIHOODS)
        attrs["likely_threshold"] = robustness.LIKELY
        attrs["very_likely_threshold"] = robustness.VERY_LIKELY
        attrs["confidence"] = robustness.LIKELIHOOD_CONFIDENCE
        attrs["comment"] += (
            "; likely (very likely) sign of the multi-model change only where the change is a "
            "robust signal (period_robustness 1), the agreeing models share the sign of the "
            f"multi-model change, and the fraction of families agreeing is >= {robustness.LIKELY} "
            f"(>= {robustness.VERY_LIKELY}) with {robustness.LIKELIHOOD_CONFIDENCE:.0%} confidence "
            "(one-sided Clopper-Pearson bound with the number of families as sample size: "
            "3 agreeing families of 3 are not enough for likely, 6 of 6 are); 0 elsewhere"
        )
    return attrs


# ---------------------------------------------------------------- scenarios: partition, trends


def joined_scenarios(results: xr.Dataset, options: SpreadOptions) -> list[str]:
    """Experiments whose done combinations continue a done historical run (the scenarios
    of the partition and the emergence; reanalyses and historical itself are not)."""
    experiments = [str(x) for x in results["experiment"].values]
    if options.historical not in experiments:
        return []
    done = done_mask(results)
    history = done[experiments.index(options.historical)]
    return [
        e
        for i, e in enumerate(experiments)
        if e != options.historical and bool((done[i] & history).any())
    ]


def partition_bases(combos: xr.Dataset) -> list[tuple[str, str | None]]:
    """(base, its deep-ensemble member values or None) of the partition and the trends:
    winter event days, and the winter temperature anomaly (the temperature in older
    stores without one: outside the mooring record only the anomaly is projected)."""
    temperature = (
        "winter_temperature_anomaly"
        if "winter_temperature_anomaly" in combos
        else "winter_temperature"
    )
    bases = [b for b in ("event_days", temperature) if b in combos]
    return [(b, f"member_{b}" if f"member_{b}" in combos else None) for b in bases]


def _units(source: xr.DataArray) -> tuple[str, bool]:
    units = str(source.attrs.get("units", "1"))
    return units, units == "degree_Celsius"


def _scenario_attrs(base: str, stat: str, source: xr.DataArray, options: SpreadOptions) -> dict:
    """CF attributes of the partition, emergence and trend variables."""
    what, cells = _base_description(base, source)
    units, temperature = _units(source)
    baseline = options.period_labels[0]
    smoothing = (
        f"each model's series (members and deep ensemble averaged) smoothed by a degree-"
        f"{options.partition_degree} least-squares polynomial"
        if options.partition_degree is not None
        else "no smoothing (raw model means)"
    )
    window = (
        f"; internal and emulator parts smoothed by a centred {options.partition_window}-winter "
        "running mean"
        if options.partition_window > 1
        else ""
    )
    method = (
        f"Hawkins & Sutton (2009) / Lafferty & Sriver (2023) partition of the variance of the "
        f"change vs {baseline} across the scenarios joined with historical: {smoothing}{window}; "
        f"{WEIGHTING}; docs/spread.md"
    )
    part = stat.removeprefix("partition_")
    parts = {
        "scenario": "scenario uncertainty: variance across scenarios of the multi-model "
        "forced response",
        "model": "model (structural) uncertainty: family-weighted variance across models of "
        "their forced responses, averaged over scenarios",
        "internal": "internal variability: mean square departure of the members from their "
        "model's smoothed series",
        "emulator": "emulator uncertainty: variance across the deep-ensemble members",
        "total": "total variance: scenario + model + internal + emulator",
    }
    variance_units = "K2" if temperature else f"{units}2"
    slope_units = f"{units} year-1"
    sigmas = options.emergence_sigmas
    trend = (
        "Mann-Kendall test with its variance inflated for lag-1 autocorrelation (Yue & Wang "
        "2004 effective sample size, bias-corrected lag-1 autocorrelation of the Sen-detrended "
        "series) and Sen's slope, over every winter with a value; docs/spread.md"
    )
    table: dict[str, tuple[str, str, str]] = {
        **{
            f"partition_{p}": (
                parts[p],
                cells + " member_id: ensemble: source_id: experiment: variance",
                variance_units,
            )
            for p in partition.PARTS
        },
        "forced_response": (
            f"multi-model forced response: family-weighted mean of the models' smoothed "
            f"change vs {baseline}",
            cells + " member_id: mean source_id: mean",
            units,
        ),
        "model_forced_response": (
            f"forced response of each model: its smoothed change vs {baseline}",
            cells + " member_id: mean",
            units,
        ),
        "internal_std": (
            f"internal variability (standard deviation) over {baseline}: the square root of "
            "the internal part averaged over the baseline winters",
            cells + " member_id: source_id: standard_deviation",
            units,
        ),
        "model_internal_std": (
            f"internal variability (standard deviation) of each model over {baseline}",
            cells + " member_id: standard_deviation",
            units,
        ),
        "emergence_winter": (
            f"time of emergence of the multi-model forced change: first winter from which it "
            f"stays beyond {sigmas:g} internal_std on the side of its last value",
            cells + " member_id: mean source_id: mean",
            "1",
        ),
        "model_emergence_winter": (
            f"time of emergence of each model's forced change: first winter from which it "
            f"stays beyond {sigmas:g} model_internal_std on the side of its last value",
            cells + " member_id: mean",
            "1",
        ),
        "trend_slope": ("Sen slope of each combination's winter series", cells, slope_units),
        "trend_slope_low": (
            "lower bound of the 95 % confidence interval of the Sen slope",
            cells,
            slope_units,
        ),
        "trend_slope_high": (
            "upper bound of the 95 % confidence interval of the Sen slope",
            cells,
            slope_units,
        ),
        "trend_pvalue": (
            "two-sided p-value of the autocorrelation-corrected Mann-Kendall test",
            cells,
            "1",
        ),
        "trend_winters": ("number of winters in the trend", cells, "1"),
    }
    multimodel = stat.startswith("multimodel_trend_")
    key = stat.removeprefix("multimodel_") if multimodel else stat
    label, cell_methods, var_units = table[key]
    if multimodel:
        label = label.replace("each combination's winter series", "the multi-model mean series")
        label += (
            " (multi-model mean over the winters where every model of the experiment has a value)"
        )
        cell_methods += " member_id: mean source_id: mean"
    attrs: dict[str, Any] = {
        "long_name": f"{what}: {label}",
        "units": var_units,
        "cell_methods": cell_methods,
        **MARKER,
    }
    if stat.startswith("partition_") or "forced" in stat or "internal" in stat:
        attrs["comment"] = method
    elif "emergence" in stat:
        attrs["comment"] = (
            f"a winter label (the year of its January, as the winter coordinate); NaN where "
            f"the forced change has not emerged by the last winter; {method}"
        )
    else:
        attrs["comment"] = f"{trend}; {JOIN}"
    if part == "emulator":
        attrs["comment"] += "; NaN where the store has no deep-ensemble member values"
    if temperature and var_units in (units, slope_units):
        attrs["units_metadata"] = "temperature: difference"
    return attrs


def scenario_statistics(
    results: xr.Dataset, combos: xr.Dataset, family: xr.DataArray, options: SpreadOptions
) -> dict[str, xr.DataArray]:
    """Variance partition, forced responses, time of emergence and trends (CF attrs)."""
    scenarios = joined_scenarios(results, options)
    experiments = results["experiment"].values
    out: dict[str, xr.DataArray] = {}
    for base, members in partition_bases(combos):
        source = results[BASES[base]]
        stats: dict[str, xr.DataArray] = {}
        if scenarios:
            values = combos[members] if members else combos[base].expand_dims(ensemble=1, axis=4)
            parts = partition.variance_partition(
                values.sel(experiment=scenarios),
                family,
                options.partition_options,
                emulator=members is not None,
            )
            stats.update({f"partition_{p}": parts[p] for p in partition.PARTS})
            noise = np.sqrt(parts["internal_variance"])
            model_noise = np.sqrt(parts["model_internal_variance"])
            sigmas = options.emergence_sigmas
            stats.update(
                {
                    "forced_response": parts["forced_response"],
                    "model_forced_response": parts["model_forced_response"],
                    "internal_std": noise,
                    "model_internal_std": model_noise,
                    "emergence_winter": trends.emergence_winter(
                        parts["forced_response"], noise, sigmas=sigmas
                    ),
                    "model_emergence_winter": trends.emergence_winter(
                        parts["model_forced_response"], model_noise, sigmas=sigmas
                    ),
                }
            )
            stats = {
                k: v.reindex(experiment=experiments) if "experiment" in v.dims else v
                for k, v in stats.items()
            }
        for field, value in trends.trend_statistics(
            combos[base], min_values=options.min_trend_winters
        ).items():
            stats[f"trend_{field}"] = value
        mean = across_models(combos[base], options.percentiles, family)
        complete = mean["multimodel_count"] == mean["multimodel_count"].max("winter")
        for field, value in trends.trend_statistics(
            mean["multimodel_mean"].where(complete), min_values=options.min_trend_winters
        ).items():
            stats[f"multimodel_trend_{field}"] = value
        for stat, value in stats.items():
            out[f"{base}_{stat}"] = value.assign_attrs(_scenario_attrs(base, stat, source, options))
    return out


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
    partition_degree: int | None = partition.DEGREE,
    partition_window: int = partition.WINDOW,
    min_trend_winters: int = trends.MIN_WINTERS,
    emergence_sigmas: float = trends.EMERGENCE_SIGMAS,
    combos: xr.Dataset | None = None,
) -> xr.Dataset:
    """Spread statistics across members and models per experiment (in memory, CF attrs).

    ``results`` is an opened results store; only combinations with status "done" count.
    Variables are named ``{base}_{statistic}`` with base in :data:`BASES` (event bases only
    where the store has them) and statistic as in docs/spread.md; period statistics for
    :data:`PERIOD_BASES`; the variance partition, emergence and trends for
    :func:`partition_bases`. Periods without data (reanalyses in the future) are NaN.
    ``combos``: :func:`combo_winters` of ``results`` with the same options, when already
    computed.
    """
    options = SpreadOptions(
        periods=tuple(periods),
        percentiles=tuple(percentiles),
        min_winter_coverage=min_winter_coverage,
        min_period_coverage=min_period_coverage,
        historical=historical,
        partition_degree=partition_degree,
        partition_window=partition_window,
        min_trend_winters=min_trend_winters,
        emergence_sigmas=emergence_sigmas,
    )
    if combos is None:
        combos = combo_winters(results, options)
    try:
        family = model_families(results, done_mask(results))
    except FamilyError as exc:
        raise SpreadError(str(exc)) from None
    held = anomaly_only_periods(combos, options)
    out: dict[str, xr.DataArray] = {}
    for base, source in BASES.items():
        if base not in combos:
            continue
        stats = across_models(combos[base], options.percentiles, family)
        if base in PERIOD_BASES:
            stats.update(period_changes(combos[base], options, family))
        if base == "winter_temperature" and held:
            anomaly = period_changes(combos["winter_temperature_anomaly"], options, family)
            known = period_changes(with_known_background(combos, options), options, family)
            labels = options.period_labels
            use = xr.DataArray(
                [p in held for p in labels], dims="period", coords={"period": labels}
            )
            # where an experiment has combinations whose background is known in every
            # period (a projection's own ocean after the record), their change; else the
            # anomaly's
            has = known["period_multimodel_change"].notnull()
            for name in CHANGE_STATS:
                chosen = xr.where(has, known[name], anomaly[name])
                stats[name] = xr.where(use, chosen, stats[name]).astype(stats[name].dtype)
        for stat, value in stats.items():
            attrs = _statistic_attrs(base, stat, results[source], options)
            if base == "winter_temperature" and held:
                attrs["warning"] = ANOMALY_ONLY_WARNING
                if stat in CHANGE_STATS:
                    attrs["anomaly_only_periods"] = " ".join(held)
                    attrs["long_name"] += (
                        " (periods in anomaly_only_periods: over the combinations with a known "
                        "background, else of the anomaly)"
                    )
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
    out.update(scenario_statistics(results, combos, family, options))
    ds = xr.Dataset({name: _canonical(value) for name, value in out.items()})
    # the store's CF coordinates: the winter's time bounds (CF 7.1) and the mooring's position
    cf = ("winter_time", "season_bounds", "lat", "lon")
    ds = ds.assign_coords(
        {
            k: results[k]
            for k in cf
            if k in results.coords and set(results[k].dims) - {"bounds"} <= set(ds.dims)
        }
    )
    for var in ds.data_vars.values():  # CF 1.11 section 7.3: only real dims or standard names
        var.attrs["cell_methods"] = cf_cell_methods(var.attrs["cell_methods"], var.dims)
    ds = ds.assign_coords(
        period_first_winter=("period", np.array([a for a, _ in options.periods])),
        period_last_winter=("period", np.array([b for _, b in options.periods])),
        **{FAMILY_COORD: family.assign_attrs(MARKER)},
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


def write_spread(
    url: str,
    storage_options: dict[str, Any] | None = None,
    *,
    history: str = "cascadia.run.spread.write_spread",
    **options: Any,
) -> None:
    """Compute :func:`spread_statistics` on the store's cube view and write them, whole, as
    its ``spread`` group.

    Single writer, at the end of a run: the group is replaced (mode "w"), so a rerun is
    idempotent and the per-combination arrays are never touched; the root is then
    re-consolidated with a ``history`` line, so ``xr.open_zarr(url, group="spread")`` and
    :func:`cascadia.run.store.open_cube` see the new statistics. ``options`` are the keyword
    options of :func:`spread_statistics`.

    The per-combination winter values are kept in the ``combo_winters`` group, keyed by
    :func:`winter_keys`: the next pass reads from the store only the combinations whose
    key changed (a scheduled pass that recomputed one combination reads one, not all).
    """
    spread_options = SpreadOptions(**options)
    with open_cube(url, storage_options, spread=False) as results:
        combos = combo_winters(results, spread_options, _cached_winters(url, storage_options))
        stats = spread_statistics(results, combos=combos, **options).load()
        cache = combos.assign(
            {WINTER_KEY: (COMBO_DIMS, winter_keys(results, spread_options).astype(str))}
        )
    stats.attrs.update(
        {
            "Conventions": CONVENTIONS,
            "title": "cascadia spread statistics across members and models",
        }
    )
    cache.attrs["comment"] = (
        "per-combination winter values the spread group is computed from, keyed by "
        f"{WINTER_KEY}; a cache: safe to delete, the next spread pass rebuilds it"
    )
    for group, data in ((SPREAD_GROUP, stats), (WINTERS_GROUP, cache)):
        data.to_zarr(
            url,
            group=group,
            mode="w",
            zarr_format=2,
            consolidated=False,
            storage_options=dict(storage_options) if storage_options else None,
        )
    # last: a cache cut off part-way (a full disk) is never marked, so never reused
    set_group_attrs(url, WINTERS_GROUP, {CACHE_COMPLETE: 1}, storage_options)
    names = len(stats.data_vars)
    append_history(
        url,
        history,
        f"spread statistics written ({names} variables, group spread)",
        storage_options,
    )


def _cached_winters(url: str, storage_options: dict[str, Any] | None) -> xr.Dataset | None:
    """The store's ``combo_winters`` group, loaded; None when absent, not marked complete
    by the pass that wrote it, or unreadable (it is then rebuilt from the store)."""
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    if not fs.exists(f"{path.rstrip('/')}/{WINTERS_GROUP}/.zgroup"):
        return None
    try:
        with xr.open_zarr(
            url, group=WINTERS_GROUP, consolidated=False, storage_options=storage_options
        ) as cached:
            if cached.attrs.get(CACHE_COMPLETE) != 1:
                log.info("%s: %s was left incomplete; rebuilt", url, WINTERS_GROUP)
                return None
            return cached.load()
    except Exception as exc:  # a cache: whatever its fault, it is rebuilt
        log.info("%s: %s unreadable (%s); rebuilt", url, WINTERS_GROUP, exc)
        return None
