"""The consolidated CF Zarr results store (see DESIGN.md, "Results store"), a store that grows.

Layout (Zarr v2 with consolidated metadata, so a plain ``xr.open_zarr(url)`` opens it
silently; v3 + consolidation warns, see notes/stack-pitfalls.md):

* the root group holds the combinations stacked along one growing dimension ``combo``;
  ``experiment``, ``source_id``, ``member_id`` and ``catalog_family`` are coordinates
  along it. Every per-combination variable is ``(combo, ...)`` and chunked one
  combination per chunk, so workers write disjoint regions (``region={"combo": i}``) and
  never touch each other's chunks. ``status`` is int8 with CF flags
  (:data:`STATUSES`); its reason and the provenance strings are ``(combo,)`` too.
* the time (and winter) axis is chunked by the store's initial length, so a longer period
  is added at the END by resizing the arrays: no existing chunk is rewritten, new days
  read NaN (explicit ``_FillValue``) until a combination writes them.
* new combinations are added at the end of ``combo`` the same way (resize, then only the
  new combinations' labels and status are written).
* the child group ``spread`` holds the multi-model statistics, rewritten whole by each
  spread pass (:func:`cascadia.run.spread.write_spread`).

The store is created lazily from a dask template (``compute=False``): large variables
have no chunk on disk until a combination is written. A combination is first marked
"writing", then its data is written, then its status/provenance ("done") last, so a run
killed mid-write leaves it "writing" (never "done" over half-new data) and a rerun redoes
it. Region writes never rewrite ``.zmetadata``: only the client re-consolidates (growth,
attributes, the spread), before or after the writers.

Readers compute on :func:`open_cube`, the experiment x source_id x member_id view of the
old (dense) layout built lazily on the fly; :func:`open_spread` reads the statistics.
A store of the old dense layout is refused with the command that converts it
(``cascadia-ensemble migrate``, :mod:`cascadia.run.migrate`).

CF: the attributes follow CF 1.11 (``units_metadata``, section 3.1.2); see
:func:`cf_cell_methods` for section 7.3, :data:`STATUSES` for section 3.5 (flags) and
:func:`template` for the winter's time bounds (section 7.1) and the mooring's
``featureType`` (section 9, appendix H.2).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import dask.array as da
import fsspec
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from cascadia import __version__
from cascadia.mooring.observations import MOORING_LATITUDE, MOORING_LONGITUDE

#: The dimension the combinations are stacked along.
COMBO = "combo"
#: The labels of a combination: coordinates along ``combo`` in the store, the dims of the
#: cube view (:func:`open_cube`).
COMBO_DIMS: tuple[str, str, str] = ("experiment", "source_id", "member_id")
#: Status of a combination: the store keeps the index (int8 flag_values 0..3).
STATUSES: tuple[str, ...] = ("missing", "writing", "done", "failed")
#: Status of a cell of the cube view that is no combination of the store.
NOT_IN_CATALOG = "not_in_catalog"
PROVENANCE_VARS: tuple[str, ...] = (
    "fingerprint",
    "model_checkpoint_hash",
    "package_version",
    "catalog_entry",
    "selection",  # JSON: datasets read and copies skipped (cascadia.sources.selection)
)
#: The status table of a combination (:func:`combo_status`).
STRING_VARS: tuple[str, ...] = ("status", "status_reason", *PROVENANCE_VARS)
#: Each combination's model family from its run catalog (``combo_id`` ``family``; the
#: driving GCM of an RCM): a coordinate along ``combo``, "" until recorded.
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
CONVENTIONS = "CF-1.11"  # units_metadata (temperature differences) is CF 1.11
#: The child group of the spread statistics.
SPREAD_GROUP = "spread"
#: The child group of the per-combination winter values the spread is computed from: a
#: cache keyed by each combination's fingerprint, so a pass re-reads only the
#: combinations it recomputed (safe to delete: the next spread pass rebuilds it).
WINTERS_GROUP = "combo_winters"
#: The attribute that marks the spread statistics among the cube view's variables.
SPREAD_ROLE, SPREAD_VALUE = "cascadia_role", "spread_statistics"
MIGRATE_HINT = "cascadia-ensemble migrate --results {url}"

_TEMPERATURE = {"standard_name": "sea_water_temperature", "units": "degree_Celsius"}
_COOLING = {"units": "degree_Celsius", "units_metadata": "temperature: difference"}
_EVENT_RULE = (
    "event rule of the model's job.yaml (events) on the predicted anomaly, see docs/events.md"
)
_ENSEMBLE_COUNT = (
    "; the mean of the members' counts where the model's event level was fitted on single "
    "members' forecasts (calibration.json level_fitted_members 1), else the count of the "
    "mixture's event_probability"
)
#: Months of the cascading season a winter's statistics count: winter Y = 1 November Y-1
#: to 30 April Y (docs/events.md); the winter-year's May-October days never count.
SEASON_MONTHS: tuple[int, ...] = (11, 12, 1, 2, 3, 4)
SEASON = "November-April"
_IN_SEASON = (
    " (comment: days of the winter's November-April season, season_bounds; "
    "the event rule runs on the whole series)"
)

#: ``background_kind`` values: inside the mooring record, the two continuations of
#: :class:`cascadia.mooring.targets.BackgroundConfig` outside it (anomaly-only there), the
#: ocean analysis anchored on the record before it (:mod:`cascadia.learning.before_record`)
#: and the combination's own ocean anchored on it after it (:mod:`cascadia.run.deep_ocean`),
#: or, where its run has none, a sibling member's.
BACKGROUND_KINDS: list[float] = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
#: The kinds whose stored temperature is the predicted anomaly on a background that is
#: not estimated (held or trend-continued).
ANOMALY_ONLY_KINDS: tuple[float, ...] = (1.0, 2.0)
#: The kind of the ocean analysis anchored on the record, before it.
ANALYSIS_KIND = 3.0
#: The kind of a projection's own ocean anchored on the record, after it.
MODEL_OCEAN_KIND = 4.0
#: The kind of another member's ocean (same model and experiment) anchored on it, after it.
SIBLING_OCEAN_KIND = 5.0
_BACKGROUND = (
    "inside the mooring record: the training background (the model directory's "
    "background.csv); before it, where the model has one, an ocean analysis's changes anchored "
    "on the record (background_before_record.csv); after it, where the run catalog names the "
    "combination's own ocean (deep_ocean: CMIP6 thetao; a sibling member's where its run has "
    "none), its changes anchored on the record's last decade; elsewhere outside it the "
    "record's end (start) value held, or continued by a linear trend (targets.json) "
    "(background_kind)"
)
_ANOMALY_ONLY = (
    "0: inside the mooring record; 1, 2: outside it, where temperature_mean, "
    "temperature_quantile and temperature_member are anomaly-only: the predicted anomaly plus "
    "a held (1) or trend-continued (2) background, not a projection of the background; their "
    "change after the record is the anomaly's (temperature_anomaly_mean), identical in every "
    "scenario's background part; 3: before the record, the ocean analysis anchored on it; "
    "4: after the record, the combination's own ocean anchored on it; 5: after it, a sibling "
    "member's ocean (same model and experiment) anchored on it (docs/run.md)"
)
_ABSOLUTE = (
    "temperature_anomaly_mean + background_temperature; anomaly-only where background_kind is "
    "1 or 2 (there the background is held or trend-continued, not projected; docs/run.md)"
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
            "cell_methods": "time: mean realization: mean",
        },
    ),
    "temperature_anomaly_mean": (
        ("time", "depth"),
        {
            **_COOLING,
            "long_name": "Deep-ensemble mean of the daily sea water temperature anomaly "
            "against the background (temperature_mean - background_temperature)",
            "cell_methods": "time: mean realization: mean",
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
            "flag_meanings": (
                "mooring_record held_outside_record linear_trend_outside_record "
                "ocean_analysis_before_record model_ocean_after_record "
                "sibling_member_ocean_after_record"
            ),
            "comment": _ANOMALY_ONLY,
        },
    ),
    "temperature_std": (
        ("time", "depth"),
        {
            **_TEMPERATURE,
            "long_name": "Deep-ensemble standard deviation of daily sea water temperature",
            "cell_methods": "time: mean realization: standard_deviation",
        },
    ),
    "temperature_quantile": (
        ("quantile", "time", "depth"),
        {
            **_TEMPERATURE,
            "long_name": "Deep-ensemble predictive quantiles of daily sea water temperature",
            "comment": _ABSOLUTE + "; quantile of the deep ensemble's predictive distribution "
            "at the quantile coordinate's level (CF 1.11 cell_methods have no quantile method, "
            "so the reduction over realization is named here)",
            "ancillary_variables": "background_kind",
            "cell_methods": "time: mean",
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
            "cell_methods": "time: point realization: mean",
            "comment": "mean over deep-ensemble members of their event-head probability",
        },
    ),
    "event_days": (
        ("winter", "depth"),
        {
            "long_name": "Cascading event days per winter of the deep ensemble",
            "units": "days",
            "cell_methods": "time: sum" + _IN_SEASON,
            "comment": _EVENT_RULE + _ENSEMBLE_COUNT,
        },
    ),
    "event_count": (
        ("winter", "depth"),
        {
            "long_name": "Cascading events starting in the winter, of the deep ensemble",
            "units": "1",
            "cell_methods": "time: sum" + _IN_SEASON,
            "comment": _EVENT_RULE + _ENSEMBLE_COUNT,
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
#: CF 1.11 appendix E: the methods a cell_methods entry may name.
CF_METHODS = frozenset(
    [
        "point",
        "sum",
        "maximum",
        "maximum_absolute_value",
        "median",
        "mid_range",
        "minimum",
        "minimum_absolute_value",
        "mean",
        "mean_absolute_value",
        "mean_of_upper_decile",
        "mode",
        "range",
        "root_mean_square",
        "standard_deviation",
        "sum_of_squares",
        "variance",
    ]
)
#: Standard names a cell_methods entry may name for an axis the variable lacks (CF 7.3).
CF_AXES = frozenset({"time", "area", "realization", "depth", "latitude", "longitude"})
#: What a collapsed label axis is, for the comment of its ``realization`` entry.
_COLLAPSED = {
    "ensemble": "deep-ensemble members",
    "member_id": "members of each model (member_id)",
    "source_id": "models (source_id)",
    "experiment": "scenarios (experiment)",
}


class StoreError(ValueError):
    """A combination or dataset that does not fit the results store."""


def cf_cell_methods(methods: str, dims: Sequence[str]) -> str:
    """``methods`` with every entry naming only a dimension or a valid standard name.

    CF 1.11 section 7.3: a name is a dimension of the variable, a scalar coordinate or a
    standard name. Collapsed label axes (deep-ensemble members, members, models,
    scenarios) are samples of an ensemble, so they become ``realization`` with a comment
    saying which; a method outside appendix E (``percentile``) is kept as a comment of a
    ``point`` entry.
    """
    out = []
    for names, method, paren in re.findall(r"((?:[A-Za-z_]\w*:\s+)+)(\w+)(\s*\([^)]*\))?", methods):
        names_list = [n.rstrip(":") for n in names.split()]
        comment = ""
        if paren:
            comment = paren.strip()[1:-1].strip().removeprefix("comment:").strip()
        collapsed = [n for n in names_list if n not in dims and n not in CF_AXES]
        kept = [n for n in names_list if n not in collapsed]
        notes = [comment] if comment else []
        if collapsed:
            kept = list(dict.fromkeys([*kept, "realization"]))
            notes.append("over " + ", ".join(_COLLAPSED.get(n, n) for n in collapsed))
        if method not in CF_METHODS:
            notes.insert(0, method)
            method = "point"
        entry = " ".join(f"{n}:" for n in kept) + f" {method}"
        if notes:
            entry += f" (comment: {'; '.join(notes)})"
        out.append(entry)
    return " ".join(out)


@dataclass(frozen=True)
class ResultsSchema:
    """Everything that fixes the shape of the results store.

    ``combos`` are in the store's order: a combination's region is its index along
    ``combo``. ``time_chunk``/``winter_chunk`` are the chunk lengths of the growing axes
    (0: the axis's own length, as when the store is created).
    """

    combos: tuple[tuple[str, str, str], ...]
    time: np.ndarray  # datetime64[ns], one (standard) calendar, daily
    depth: tuple[float, ...] = (500.0, 1000.0)
    quantiles: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
    n_members: int = 5
    winters: tuple[int, ...] = field(default_factory=tuple)
    member_series: bool = True  # store temperature_member (ensemble, time, depth)
    time_chunk: int = 0
    winter_chunk: int = 0

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
        """The axes, and the labels of each combination along ``combo``."""
        labels = np.array(self.combos, dtype=object).reshape(len(self.combos), 3)
        return {
            **{d: (COMBO, labels[:, i]) for i, d in enumerate(COMBO_DIMS)},
            "time": self.time,
            "depth": np.array(self.depth),
            "quantile": np.array(self.quantiles),
            "ensemble": np.arange(self.n_members),
            "winter": np.array(self.winters, dtype=np.int64),
        }

    def chunk(self, dim: str) -> int:
        """Chunk length along a non-combo dimension of the result variables."""
        if dim == "time":
            return max(1, self.time_chunk or len(self.time))
        if dim == "winter":
            return max(1, self.winter_chunk or len(self.winters))
        return max(
            1, {"depth": len(self.depth), "quantile": len(self.quantiles)}.get(dim, self.n_members)
        )

    def index(self, combo: Sequence[str]) -> int:
        """The combination's index along ``combo``."""
        key = tuple(str(x) for x in combo)
        try:
            return self.combos.index(key)  # type: ignore[arg-type]
        except ValueError:
            raise StoreError(f"combo {key} is not in the schema") from None

    def region(self, combo: Sequence[str]) -> dict[str, slice]:
        i = self.index(combo)
        return {COMBO: slice(i, i + 1)}


def season_bounds(winters: Sequence[int]) -> np.ndarray:
    """``(winter, 2)`` first day and the day after the last of each winter's season."""
    edges = [
        [np.datetime64(f"{w - 1}-11-01", "ns"), np.datetime64(f"{w}-05-01", "ns")] for w in winters
    ]
    return np.array(edges, dtype="datetime64[ns]").reshape(len(edges), 2)


def winter_time(winters: Sequence[int]) -> np.ndarray:
    """The middle day of each winter's season: the CF time coordinate of the winter axis."""
    edges = season_bounds(winters)
    middle = edges[:, 0] + (edges[:, 1] - edges[:, 0]) // 2
    return middle.astype("datetime64[D]").astype("datetime64[ns]")


def _shape(schema: ResultsSchema, dims: Sequence[str]) -> tuple[int, ...]:
    sizes = {
        COMBO: len(schema.combos),
        "time": len(schema.time),
        "depth": len(schema.depth),
        "quantile": len(schema.quantiles),
        "ensemble": schema.n_members,
        "winter": len(schema.winters),
    }
    return tuple(sizes[d] for d in dims)


def history_line(command: str, what: str) -> str:
    """One line of the store's ``history``: UTC time, the command, what was written."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{now}: {command}: {what}"


def template(schema: ResultsSchema, attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """The lazy, empty store: dask-backed result variables, numpy status arrays."""
    n = len(schema.combos)
    data_vars: dict[str, xr.Variable] = {}
    for name, (extra, vattrs) in schema.variables.items():
        dims = (COMBO, *extra)
        chunks = (1, *(schema.chunk(d) for d in extra))
        arr = da.full(_shape(schema, dims), np.nan, dtype=np.float32, chunks=chunks)
        data_vars[name] = xr.Variable(dims, arr, attrs=dict(vattrs))
    data_vars["status"] = xr.Variable(
        COMBO,
        np.zeros(n, dtype=np.int8),
        attrs={
            "long_name": "status of the combination",
            # CF 1.11 section 3.5: numeric flags, one meaning per value
            "flag_values": np.arange(len(STATUSES), dtype=np.int8),
            "flag_meanings": " ".join(STATUSES),
            "comment": "missing or writing: (re)done by the next run; failed: status_reason",
        },
    )
    empty = np.full(n, "", dtype=object)
    data_vars["status_reason"] = xr.Variable(
        COMBO, empty.copy(), attrs={"long_name": "reason of failure"}
    )
    for name in PROVENANCE_VARS:
        data_vars[name] = xr.Variable(
            COMBO, empty.copy(), attrs={"long_name": name.replace("_", " ")}
        )
    ds = xr.Dataset(data_vars, coords=schema.coords())
    ds = ds.assign_coords({FAMILY_VAR: (COMBO, empty.copy(), dict(_FAMILY_ATTRS))})
    for dim, text in zip(
        COMBO_DIMS,
        ("experiment (CMIP experiment_id, or reanalysis)", "model", "member"),
        strict=True,
    ):
        ds[dim].attrs["long_name"] = f"{text} of the combination"
    ds["time"].attrs.update({"standard_name": "time", "axis": "T", "long_name": "day"})
    ds["depth"].attrs.update(
        {"standard_name": "depth", "units": "m", "positive": "down", "axis": "Z"}
    )
    ds["quantile"].attrs.update({"long_name": "quantile level", "units": "1"})
    ds["ensemble"].attrs.update(
        {"standard_name": "realization", "long_name": "deep-ensemble member index", "units": "1"}
    )
    ds["winter"].attrs.update(
        {
            "long_name": "winter, labelled by the year of its January",
            "comment": f"its statistics count the days of its {SEASON} season (winter_time, "
            "season_bounds)",
        }
    )
    ds = ds.assign_coords(
        # CF 1.11 section 7.1: the integer winter axis gets a time coordinate with bounds
        winter_time=(
            "winter",
            winter_time(schema.winters),
            {
                "standard_name": "time",
                "long_name": f"middle of the winter's {SEASON} season",
                "bounds": "season_bounds",
            },
        ),
        season_bounds=(
            ("winter", "bounds"),
            season_bounds(schema.winters),
            {
                "long_name": f"bounds of the winter's {SEASON} season "
                "(first day, day after the last)"
            },
        ),
        # CF 1.11 appendix H.2.3: one time series at one station, its position scalar
        lat=((), MOORING_LATITUDE, _POSITION["lat"]),
        lon=((), MOORING_LONGITUDE, _POSITION["lon"]),
    )
    ds.attrs.update(
        {
            "Conventions": CONVENTIONS,
            "title": TITLE,
            "featureType": "timeSeries",
            "institution": "unspecified: the producer of this store",
            "source": f"cascadia {__version__} deep ensemble of the Lacaze-Duthiers mooring's "
            "deep temperature, driven by reanalyses and climate projections",
            "history": "",
        }
    )
    ds.attrs.update(dict(attrs or {}))
    return ds


_POSITION = {
    "lat": {
        "standard_name": "latitude",
        "units": "degrees_north",
        "long_name": "latitude of the Lacaze-Duthiers canyon mooring",
    },
    "lon": {
        "standard_name": "longitude",
        "units": "degrees_east",
        "long_name": "longitude of the Lacaze-Duthiers canyon mooring",
    },
}
_TIME_ENCODING = {"units": TIME_UNITS, "calendar": CALENDAR, "dtype": "int64"}


def _encoding(ds: xr.Dataset, schema: ResultsSchema) -> dict[str, dict[str, Any]]:
    winter = schema.chunk("winter")
    enc: dict[str, dict[str, Any]] = {
        "time": {**_TIME_ENCODING, "chunks": (schema.chunk("time"),)},
        "winter": {"chunks": (winter,)},
        "winter_time": {**_TIME_ENCODING, "chunks": (winter,)},
        "season_bounds": {**_TIME_ENCODING, "chunks": (winter, 2)},
        "status": {"chunks": (1,), "_FillValue": None},
    }
    for name in (*COMBO_DIMS, FAMILY_VAR, *STRING_VARS[1:]):
        enc[name] = {"chunks": (1,)}
    for name, var in ds.data_vars.items():
        if name in RESULT_VARS:
            chunks = tuple(var.data.chunksize)
            enc[str(name)] = {"_FillValue": np.float32(np.nan), "chunks": chunks}
    return enc


def initialise_store(
    url: str,
    schema: ResultsSchema,
    attrs: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    history: str | None = None,
) -> None:
    """Create the (empty) store; only coordinates and the small status arrays are written."""
    ds = template(schema, attrs)
    if history:
        ds.attrs["history"] = history
    ds.to_zarr(
        url,
        mode="w",
        compute=False,
        zarr_format=2,
        consolidated=True,
        encoding=_encoding(ds, schema),
        storage_options=_options(storage_options),
    )


def _options(storage_options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(storage_options) if storage_options else None


def _zarr_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"storage_options": dict(storage_options)} if storage_options else {}


def _group(url: str, storage_options: Mapping[str, Any] | None) -> zarr.Group:
    """The root group, read and written past the consolidated metadata (its truth)."""
    return zarr.open_group(
        url, mode="r+", zarr_format=2, use_consolidated=False, **_zarr_options(storage_options)
    )


def consolidate(url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Rewrite the root's consolidated metadata (client side, while no worker writes)."""
    zarr.consolidate_metadata(_group(url, storage_options).store, zarr_format=2)


def is_cube_layout(ds: xr.Dataset) -> bool:
    """True for a store of the old dense layout (experiment x source_id x member_id dims)."""
    return COMBO not in ds.dims and "status" in ds and set(COMBO_DIMS) <= set(ds["status"].dims)


def _open(url: str, storage_options: Mapping[str, Any] | None = None) -> xr.Dataset:
    """The root group of a store of this layout; one clear error naming the migration
    for a store of the old dense layout."""
    ds = xr.open_zarr(url, consolidated=True, storage_options=_options(storage_options))
    if is_cube_layout(ds):
        ds.close()
        raise StoreError(
            f"{url} is a results store of the old experiment x source_id x member_id layout; "
            f"convert it with `{MIGRATE_HINT.format(url=url)} [--out NEW]`"
        )
    return ds


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
        storage_options=_options(storage_options),
    )


def _table(values: Mapping[str, str | Sequence[str]], n: int = 1) -> xr.Dataset:
    """Status and string variables of ``n`` consecutive combinations (status as its flag)."""
    out = {}
    for name, value in values.items():
        strings = [str(value)] * n if isinstance(value, str) else [str(v) for v in value]
        if name == "status":
            out[name] = xr.Variable(COMBO, np.array([STATUSES.index(s) for s in strings], np.int8))
        else:
            out[name] = xr.Variable(COMBO, np.array(strings, dtype=object))
    return xr.Dataset(out)


def _conform(schema: ResultsSchema, dataset: xr.Dataset) -> xr.Dataset:
    """One combo's results, reindexed on the store's axes (NaN where not covered)."""
    missing = [v for v in schema.variables if v not in dataset]
    if missing:
        raise StoreError(f"dataset lacks result variables {missing}")
    dataset = dataset.drop_vars([d for d in (*COMBO_DIMS, COMBO) if d in dataset.coords])
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
        label_dims = [d for d in var.dims if d in (*COMBO_DIMS, COMBO)]
        dims = [d for d in var.dims if d not in label_dims]
        if set(dims) != set(extra_dims):
            raise StoreError(f"{name} has dims {tuple(var.dims)}, expected {extra_dims}")
        var = var.squeeze(label_dims, drop=True)
        if "ensemble" in extra_dims and var.sizes["ensemble"] != schema.n_members:
            raise StoreError(f"{name} has {var.sizes['ensemble']} members != {schema.n_members}")
        var = var.drop_vars([c for c in var.coords if c not in extra_dims])
        var = var.reindex({d: coords[d] for d in extra_dims if d != "ensemble"})
        var = var.transpose(*extra_dims).astype(np.float32).expand_dims({COMBO: 1})
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
    _region_write(url, _table(writing), region, storage_options)
    _region_write(url, data, region, storage_options)
    meta = {k: provenance[k] for k in PROVENANCE_VARS}
    meta.update(status="done", status_reason="")
    _region_write(url, _table(meta), region, storage_options)


def _labels(url: str, storage_options: Mapping[str, Any] | None) -> pd.DataFrame:
    """The combinations of the store in their order: labels and family, one row each."""
    with _open(url, storage_options) as ds:
        cols = [*COMBO_DIMS, FAMILY_VAR]
        return pd.DataFrame({c: _as_str(ds[c].values) for c in cols})


def _index(labels: pd.DataFrame, combo: Sequence[str], url: str) -> int:
    key = tuple(str(x) for x in combo)
    hit = np.flatnonzero(
        np.logical_and.reduce(
            [labels[d].to_numpy() == v for d, v in zip(COMBO_DIMS, key, strict=True)]
        )
    )
    if not hit.size:
        raise StoreError(f"combo {key} is not in the store {url}")
    return int(hit[0])


def record_families(
    url: str,
    families: Mapping[tuple[str, str, str], str],
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Record the model family of combinations (client side, while no worker writes).

    Only the combinations whose family changes are written (one chunk each).
    """
    labels = _labels(url, storage_options)
    for combo, family in families.items():
        i = _index(labels, combo, url)
        if labels.loc[i, FAMILY_VAR] != str(family):
            ds = xr.Dataset({FAMILY_VAR: xr.Variable(COMBO, np.array([str(family)], dtype=object))})
            _region_write(url, ds, {COMBO: slice(i, i + 1)}, storage_options)


def mark_failed(
    url: str,
    combo: Sequence[str],
    reason: str,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Mark one combination "failed" and remove its data, so it reads as NaN.

    Its data chunks are deleted first (which also frees space when the disk filled
    up), then the status is written; the fingerprint is cleared so a rerun retries it.
    """
    i = _index(_labels(url, storage_options), combo, url)
    clear_combo(url, i, storage_options)
    meta = {"status": "failed", "status_reason": str(reason), "fingerprint": ""}
    _region_write(url, _table(meta), {COMBO: slice(i, i + 1)}, storage_options)


def clear_combo(url: str, index: int, storage_options: Mapping[str, Any] | None = None) -> int:
    """Delete every result chunk of the combination at ``index`` (they read as the NaN
    fill value afterwards); the number of chunk objects deleted."""
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    doomed = []
    for name in RESULT_VARS:
        folder = f"{root.rstrip('/')}/{name}"
        try:
            keys = fs.ls(folder, detail=False)
        except FileNotFoundError:
            continue
        prefix = f"{index}."
        doomed += [k for k in keys if k.rsplit("/", 1)[-1].startswith(prefix)]
    if doomed:
        fs.rm(doomed)
    return len(doomed)


def _as_str(values: Any) -> np.ndarray:
    """Strings as an object array of ``str`` (zarr gives object or StringDType arrays)."""
    array = np.asarray(values)
    return np.array([str(x) for x in array.ravel()], dtype=object).reshape(array.shape)


def _status_strings(codes: np.ndarray) -> np.ndarray:
    return np.array(STATUSES, dtype=object)[np.asarray(codes, dtype=np.int64)]


def combo_status(url: str, storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per combination of the store: status, reason and provenance."""
    with _open(url, storage_options) as ds:
        small = ds[[*COMBO_DIMS, *STRING_VARS]].load()
    df = pd.DataFrame({d: _as_str(small[d].values) for d in COMBO_DIMS})
    df["status"] = _status_strings(small["status"].values)
    for name in STRING_VARS[1:]:
        df[name] = _as_str(small[name].values)
    return df.astype(str).sort_values(list(COMBO_DIMS)).reset_index(drop=True)


def open_schema(url: str, storage_options: Mapping[str, Any] | None = None) -> ResultsSchema | None:
    """The schema of the results store at ``url``; None if nothing is there.

    Raises
    ------
    StoreError
        Something is at ``url`` that is not a (complete) cascadia results store, or a
        store of the old dense layout (the message names the migration).
    """
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    if not fs.exists(path) or not fs.ls(path):
        return None
    try:
        ds = _open(url, storage_options)
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, StoreError):
            raise
        raise StoreError(
            f"{url} exists but is not a consolidated Zarr results store ({exc}); "
            "remove it or choose another output"
        ) from None
    with ds:
        if ds.attrs.get("title") != TITLE or "status" not in ds:
            raise StoreError(f"{url} exists but is not a cascadia results store")
        labels = [_as_str(ds[d].values) for d in COMBO_DIMS]
        return ResultsSchema(
            combos=tuple(zip(*labels, strict=True)),
            time=ds["time"].values,
            depth=tuple(ds["depth"].values.tolist()),
            quantiles=tuple(ds["quantile"].values.tolist()),
            n_members=ds.sizes["ensemble"],
            winters=tuple(ds["winter"].values.tolist()),
            member_series=all(v in ds for v in OPTIONAL_VARS),
            time_chunk=int(ds["temperature_mean"].encoding["chunks"][1]),
            winter_chunk=int(ds["event_days"].encoding["chunks"][1]),
        )


def _day(value: np.datetime64) -> str:
    return str(np.datetime64(value, "D"))


def _grown_axes(
    existing: ResultsSchema, wanted: ResultsSchema
) -> tuple[np.ndarray, tuple[int, ...], list[str]]:
    """The time and winter axes a store needs for ``wanted`` (grown at their end only),
    and why it cannot have them."""
    problems = []
    time, winters = existing.time, existing.winters
    if len(wanted.time):
        if not len(existing.time):
            problems.append("the store has no time axis")
        elif wanted.time[0] < existing.time[0]:
            problems.append(
                f"the run starts on {_day(wanted.time[0])}, before the store's first day "
                f"{_day(existing.time[0])} (a store grows at its end only)"
            )
        elif wanted.time[-1] > existing.time[-1]:
            start = pd.Timestamp(existing.time[-1]) + pd.Timedelta(days=1)
            more = pd.date_range(start, pd.Timestamp(wanted.time[-1]), freq="D").values
            time = np.concatenate([existing.time, more.astype("datetime64[ns]")])
        off = np.setdiff1d(wanted.time, time)
        if len(off) and not problems:
            problems.append(f"{len(off)} run days off the store's daily axis, e.g. {off[0]}")
    new = sorted(set(wanted.winters) - set(existing.winters))
    if new:
        if existing.winters and new[0] < max(existing.winters):
            problems.append(f"winters {new} fall before the end of the store's winter axis")
        else:
            winters = (*existing.winters, *new)
    return time, winters, problems


def incompatibilities(existing: ResultsSchema, wanted: ResultsSchema) -> list[str]:
    """Why a store with schema ``existing`` cannot take the combinations of ``wanted``."""
    problems = []
    for name in ("depth", "quantiles", "n_members", "member_series"):
        if getattr(existing, name) != getattr(wanted, name):
            problems.append(
                f"{name} is {getattr(existing, name)} in the store, "
                f"{getattr(wanted, name)} for this run"
            )
    return problems + _grown_axes(existing, wanted)[2]


def prepare_store(
    url: str,
    schema: ResultsSchema,
    attrs: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    history: str | None = None,
) -> ResultsSchema:
    """Create the store, or grow an existing one so that it takes ``schema``'s combos.

    Returns the schema to write with: the existing store's combinations (their indices
    fix the regions) followed by this run's new ones, on the time and winter axes grown
    at their end where the run goes further. No chunk of an existing combination is
    written; ``history`` (a command) gets a line saying what changed, if anything did.

    Raises
    ------
    StoreError
        The store cannot take the run (it starts before the store, other depths /
        quantiles / members): each difference is named.
    """
    existing = open_schema(url, storage_options)
    if existing is None:
        line = f"created with {len(schema.combos)} combinations"
        initialise_store(
            url, schema, attrs, storage_options, history_line(history, line) if history else None
        )
        return schema
    problems = incompatibilities(existing, schema)
    if problems:
        raise StoreError(
            f"the results store {url} cannot take this run: "
            + "; ".join(problems)
            + ". Write to a new --out."
        )
    time, winters, _ = _grown_axes(existing, schema)
    new = tuple(c for c in schema.combos if c not in existing.combos)
    merged = replace(existing, combos=existing.combos + new, time=time, winters=winters)
    current = root_attrs(url, storage_options)
    updates = {k: v for k, v in (attrs or {}).items() if current.get(k) != v}
    grown = _grow(url, existing, merged, storage_options)
    # a pass that changes nothing leaves the store byte for byte (no history line either)
    if history and (grown or updates):
        what = "; ".join(grown) if grown else f"attributes {sorted(updates)} updated"
        updates["history"] = _append_history(url, history_line(history, what), storage_options)
    if grown or updates:
        update_attrs(url, updates, storage_options, force=bool(grown))
    return merged


def _append_history(url: str, line: str, storage_options: Mapping[str, Any] | None) -> str:
    old = str(_group(url, storage_options).attrs.get("history", ""))
    return f"{old}\n{line}" if old else line


def _resize(group: zarr.Group, dim: str, size: int) -> None:
    """Every array of the group with ``dim``, resized along it (chunks untouched)."""
    for name in group.array_keys():
        array = group[name]
        dims = list(array.attrs.get("_ARRAY_DIMENSIONS", []))
        if dim in dims:
            shape = list(array.shape)
            shape[dims.index(dim)] = size
            array.resize(tuple(shape))


def _encode_days(values: np.ndarray) -> np.ndarray:
    """datetime64 -> int64 days since 1850-01-01 (the store's time encoding)."""
    base = np.datetime64("1850-01-01", "ns")
    return ((values.astype("datetime64[ns]") - base) // np.timedelta64(1, "D")).astype(np.int64)


def _grow(
    url: str,
    existing: ResultsSchema,
    merged: ResultsSchema,
    storage_options: Mapping[str, Any] | None,
) -> list[str]:
    """Resize the store to ``merged`` at the end of its axes; what was added, in words."""
    done = []
    group = _group(url, storage_options)
    n_time, n_winter = len(existing.time), len(existing.winters)
    if len(merged.time) > n_time:
        _resize(group, "time", len(merged.time))
        group["time"][n_time:] = _encode_days(merged.time[n_time:])
        done.append(f"time extended to {_day(merged.time[-1])}")
    if len(merged.winters) > n_winter:
        new = merged.winters[n_winter:]
        _resize(group, "winter", len(merged.winters))
        group["winter"][n_winter:] = np.array(new, dtype=np.int64)
        group["winter_time"][n_winter:] = _encode_days(winter_time(new))
        group["season_bounds"][n_winter:, :] = _encode_days(season_bounds(new))
        done.append(f"winters {new[0]}..{new[-1]} added")
    n_combo = len(existing.combos)
    if len(merged.combos) > n_combo:
        new_combos = merged.combos[n_combo:]
        _resize(group, COMBO, len(merged.combos))
        columns = list(zip(*new_combos, strict=True))
        table = _table(
            {"status": "missing", "status_reason": "", **dict.fromkeys(PROVENANCE_VARS, "")},
            len(new_combos),
        )
        for d, values in zip(COMBO_DIMS, columns, strict=True):
            table[d] = xr.Variable(COMBO, np.array(values, dtype=object))
        table[FAMILY_VAR] = xr.Variable(COMBO, np.full(len(new_combos), "", dtype=object))
        _region_write(url, table, {COMBO: slice(n_combo, len(merged.combos))}, storage_options)
        done.append(f"{len(new_combos)} combinations appended")
    return done


def update_attrs(
    url: str,
    attrs: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None = None,
    force: bool = False,
) -> None:
    """Set global attributes and re-consolidate (client side, while no worker writes).

    Nothing is rewritten when the attributes already have these values (unless ``force``:
    the arrays changed and the consolidated metadata must follow).
    """
    group = _group(url, storage_options)
    if not force and all(group.attrs.get(k) == v for k, v in attrs.items()):
        return
    group.attrs.update(dict(attrs))
    zarr.consolidate_metadata(group.store, zarr_format=2)


def set_group_attrs(
    url: str, group: str, attrs: Mapping[str, Any], storage_options: Mapping[str, Any] | None
) -> None:
    """Set attributes of one group (its ``.zattrs`` only; re-consolidating is the caller's)."""
    zarr.open_group(
        url,
        path=group,
        mode="r+",
        zarr_format=2,
        use_consolidated=False,
        **_zarr_options(storage_options),
    ).attrs.update(dict(attrs))


def root_attrs(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The store's global attributes (without opening its arrays)."""
    return dict(
        zarr.open_group(url, mode="r", zarr_format=2, **_zarr_options(storage_options)).attrs
    )


def append_history(
    url: str, command: str, what: str, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Add one line to the store's ``history`` and re-consolidate."""
    line = history_line(command, what)
    update_attrs(url, {"history": _append_history(url, line, storage_options)}, storage_options)


# ---------------------------------------------------------------- the readers' views


def _take(data: Any, where: np.ndarray, shape: tuple[int, ...], fill: Any) -> Any:
    """Rows ``where`` of ``data`` (combo first), ``len(data)`` = a row of ``fill``, reshaped
    to ``shape + data.shape[1:]``; lazy for dask arrays (one chunk per combination)."""
    if isinstance(data, da.Array):
        pad = da.full((1, *data.shape[1:]), fill, dtype=data.dtype, chunks=((1,), *data.chunks[1:]))
        taken = da.concatenate([data, pad], axis=0)[where]
        return taken.reshape(*shape, *data.shape[1:])
    values = np.asarray(data)
    pad = np.full((1, *values.shape[1:]), fill, dtype=values.dtype)
    return np.concatenate([values, pad])[where].reshape(*shape, *values.shape[1:])


def cube_view(stacked: xr.Dataset, spread: xr.Dataset | None = None) -> xr.Dataset:
    """The stacked store as the dense (experiment, source_id, member_id, ...) cube.

    Labels are sorted; cells of the label product that are no combination read NaN with
    status "not_in_catalog" (strings "") - the old layout, which every reduction of the
    spread and the report was written against. Result variables stay lazy.
    """
    n = stacked.sizes[COMBO]
    labels = {d: _as_str(stacked[d].values) for d in COMBO_DIMS}
    axes = {d: np.array(sorted(set(labels[d].tolist())), dtype=object) for d in COMBO_DIMS}
    shape = tuple(len(axes[d]) for d in COMBO_DIMS)
    where = np.full(shape, n, dtype=np.int64)
    position = tuple(pd.Index(axes[d]).get_indexer(labels[d]) for d in COMBO_DIMS)
    where[position] = np.arange(n)
    flat = where.ravel()
    out: dict[str, xr.Variable] = {}
    for name, var in stacked.variables.items():
        if COMBO not in var.dims or name in COMBO_DIMS:
            continue
        var = var.transpose(COMBO, ...)
        dims = (*COMBO_DIMS, *var.dims[1:])
        if name == "status":
            strings = np.append(_status_strings(var.values), NOT_IN_CATALOG).astype(object)
            data = strings[flat].reshape(shape)
        elif var.dtype.kind in "fc":
            data = _take(var.data, flat, shape, np.nan)
        else:
            data = _take(_as_str(var.values), flat, shape, "")
        attrs = dict(var.attrs)
        if name == "status":
            attrs = {
                "long_name": var.attrs.get("long_name", ""),
                "flag_values": " ".join((*STATUSES, NOT_IN_CATALOG)),
            }
        out[str(name)] = xr.Variable(dims, data, attrs=attrs)
    coords = {k: v.variable for k, v in stacked.coords.items() if COMBO not in v.dims}
    coords.update({d: xr.Variable(d, axes[d], attrs=stacked[d].attrs) for d in COMBO_DIMS})
    cube = xr.Dataset(out, coords=coords, attrs=dict(stacked.attrs))
    if spread is not None:
        cube = xr.merge([cube, spread], join="left", compat="override", combine_attrs="override")
        cube.attrs.update({k: v for k, v in spread.attrs.items() if k == "spread_method"})
    return cube


def open_cube(
    url: str, storage_options: Mapping[str, Any] | None = None, *, spread: bool = True
) -> xr.Dataset:
    """The store as an (experiment, source_id, member_id) cube with the spread statistics
    beside it (``spread``): the one view the spread pass, the report and the reader API
    compute on, lazily.

    Raises
    ------
    StoreError
        A store of the old dense layout (the message names ``cascadia-ensemble migrate``).
    """
    stacked = _open(url, storage_options)
    statistics = open_spread(url, storage_options) if spread else None
    cube = cube_view(stacked, statistics)

    def close() -> None:
        stacked.close()
        if statistics is not None:
            statistics.close()

    cube.set_close(close)
    return cube


def open_spread(url: str, storage_options: Mapping[str, Any] | None = None) -> xr.Dataset | None:
    """The multi-model spread statistics (the ``spread`` group); None before a spread pass."""
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    if not fs.exists(f"{path.rstrip('/')}/{SPREAD_GROUP}/.zgroup"):
        return None
    return xr.open_zarr(url, group=SPREAD_GROUP, storage_options=_options(storage_options))
