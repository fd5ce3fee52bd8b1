"""The reader API of a results store: ``cascadia.open_results(url)``.

Other analyses think in combinations (experiment, source_id, member_id), depths, dates
and winters, not in the store's on-disk layout. :class:`Results` gives them that view,
built on the store's own readers (:func:`cascadia.run.store.open_cube`,
:func:`~cascadia.run.store.open_spread`, :func:`~cascadia.run.store.combo_status`), which
keep their meaning whatever the layout on disk. Everything stays lazy until a helper
returns a table; a bad label is refused in one line that names what the store has.

Examples
--------
>>> import cascadia
>>> res = cascadia.open_results("results.zarr")  # doctest: +SKIP
>>> res.combinations()  # doctest: +SKIP
>>> ds = res.series("ssp585", "TWIN-ESM-A", "r1i1p1f1", depth=1000, start="2080")  # doctest: +SKIP
>>> res.winter_events(experiment=["historical", "ssp585"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import xarray as xr

from cascadia.run.store import (
    COMBO_DIMS,
    FAMILY_VAR,
    RESULT_VARS,
    StoreError,
    combo_status,
    open_cube,
    open_spread,
)

__all__ = [
    "EVENT_VARS",
    "Results",
    "ResultsError",
    "as_list",
    "open_results",
]

#: Per-winter statistics of :meth:`Results.winter_events`: per depth, then per winter only.
EVENT_VARS: tuple[str, ...] = ("event_days", "event_count", "peak_intensity")
WINTER_VARS: tuple[str, ...] = ("winter_days", "ood_fraction")
#: The status of label-product cells that are no combination of the store.
NOT_IN_CATALOG = "not_in_catalog"
#: Labels listed in an error message before "... and N more".
SHOWN = 12
Selection = str | float | Iterable[str] | Iterable[float] | None


class ResultsError(ValueError):
    """A request the results store cannot answer (unknown label, bad date); one line."""


def as_list(value: Selection) -> list[Any] | None:
    """``None`` (everything), one value, or several values, as a list or ``None``."""
    if value is None:
        return None
    if isinstance(value, str | bytes | int | float | np.generic):
        return [value]
    values = list(value)
    return values or None


def _listing(values: Sequence[Any]) -> str:
    shown = ", ".join(str(v) for v in values[:SHOWN])
    more = len(values) - SHOWN
    return shown + (f" ... and {more} more" if more > 0 else "")


def _labels(values: np.ndarray) -> list[str]:
    return [str(v) for v in values.tolist()]


def _date(name: str, value: str | None) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(str(value))
    except (ValueError, OverflowError, TypeError):
        raise ResultsError(
            f"{name} {value!r} is not a date (YYYY, YYYY-MM or YYYY-MM-DD)"
        ) from None


def check_period(start: str | None, end: str | None) -> tuple[str | None, str | None]:
    """``start``, ``end`` as partial dates (empty: ``None``); refused, in one line, when
    they do not parse or the start is after the end."""
    start, end = (None if v is None or str(v).strip() == "" else str(v) for v in (start, end))
    first, last = _date("start", start), _date("end", end)
    if first is not None and last is not None and first > last:
        raise ResultsError(f"start {start} is after end {end}")
    return start, end


def _between(index: pd.DatetimeIndex, start: str | None, end: str | None) -> np.ndarray:
    """Positions of ``index`` (sorted) from ``start`` to ``end``, partial dates as pandas
    slices them (``end="2010"`` reaches 31 December 2010)."""
    start, end = check_period(start, end)
    try:
        return np.asarray(pd.Series(np.arange(len(index)), index=index).loc[start:end])
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise ResultsError(f"cannot select the days {start}..{end}: {exc}") from None


def winters_between(winters: Sequence[int], start: str | None, end: str | None) -> list[int]:
    """The winters whose 1 January falls in ``start``..``end``: years select winters by
    their label."""
    labels = sorted(int(w) for w in winters)
    january = pd.DatetimeIndex([f"{w}-01-01" for w in labels])
    return [labels[i] for i in _between(january, start, end)]


class Results:
    """A results store opened for reading: a lazy cube and helpers that return tables.

    Parameters
    ----------
    url
        The results store (folder, fsspec URL, or the service's ``http://host:port/zarr``).
    storage_options
        fsspec options of ``url`` (e.g. S3 credentials and endpoint).
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = str(url)
        self.storage_options = dict(storage_options) if storage_options else None
        try:
            self._cube = open_cube(self.url, self.storage_options)
        except StoreError as exc:
            raise ResultsError(str(exc)) from None
        except (OSError, KeyError, ValueError) as exc:
            raise ResultsError(self._unreadable(exc)) from None
        self._spread: xr.Dataset | None = None
        self._spread_read = False

    def _unreadable(self, exc: Exception) -> str:
        try:
            fs, path = fsspec.core.url_to_fs(self.url, **(self.storage_options or {}))
            there = fs.exists(path)
        except Exception:  # an unreachable URL says so below
            there = True
        if not there:
            return f"no results store at {self.url}"
        return f"{self.url} is not a readable cascadia results store ({type(exc).__name__}: {exc})"

    # ----------------------------------------------------------------- the lazy views

    @property
    def dataset(self) -> xr.Dataset:
        """The (experiment, source_id, member_id, ...) cube with the spread beside it."""
        return self._cube

    def close(self) -> None:
        self._cube.close()
        if self._spread is not None:
            self._spread.close()

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{d}: {self._cube.sizes[d]}" for d in COMBO_DIMS)
        return f"<cascadia Results {self.url} ({sizes})>"

    @property
    def spread(self) -> xr.Dataset | None:
        """The multi-model spread statistics; ``None`` before a spread pass."""
        if not self._spread_read:
            self._spread = open_spread(self.url, self.storage_options)
            self._spread_read = True
        return self._spread

    @property
    def variables(self) -> list[str]:
        """The per-combination result variables this store holds."""
        return [v for v in RESULT_VARS if v in self._cube]

    def labels(self, dim: str) -> list[str]:
        return _labels(self._cube[dim].values)

    @property
    def depths(self) -> list[float]:
        return [float(d) for d in self._cube["depth"].values.tolist()]

    @property
    def winters(self) -> list[int]:
        return [int(w) for w in self._cube["winter"].values.tolist()]

    # ----------------------------------------------------------------- selection

    def pick(self, dim: str, wanted: Selection) -> list[str] | None:
        """``wanted`` labels of ``dim`` (``None``: all), each checked against the store."""
        values = as_list(wanted)
        if values is None:
            return None
        have = self.labels(dim)
        unknown = [str(v) for v in values if str(v) not in have]
        if unknown:
            raise ResultsError(
                f"unknown {dim} {', '.join(unknown)}; the store has: {_listing(have)}"
            )
        return [str(v) for v in values]

    def pick_depths(self, wanted: Selection) -> list[float] | None:
        """``wanted`` depths (m; ``None``: all), each checked against the store."""
        values = as_list(wanted)
        if values is None:
            return None
        have = self.depths
        out = []
        for value in values:
            try:
                depth = float(value)
            except (TypeError, ValueError):
                raise ResultsError(f"depth {value!r} is not a number (metres)") from None
            if depth not in have:
                listed = ", ".join(f"{d:g}" for d in have)
                raise ResultsError(f"unknown depth {depth:g} m; the store has: {listed} m")
            out.append(depth)
        return out

    def check_variables(
        self, variables: Selection, allowed: Sequence[str] | None = None
    ) -> list[str]:
        """``variables`` validated against ``allowed`` (default: the store's result variables)."""
        have = list(allowed) if allowed is not None else self.variables
        values = as_list(variables)
        if values is None:
            return have
        unknown = [str(v) for v in values if str(v) not in have]
        if unknown:
            raise ResultsError(
                f"unknown variable {', '.join(unknown)}; the store has: {_listing(have)}"
            )
        return [str(v) for v in values]

    def select(
        self,
        experiment: Selection = None,
        source_id: Selection = None,
        member_id: Selection = None,
        depth: Selection = None,
        start: str | None = None,
        end: str | None = None,
        variables: Sequence[str] | None = None,
    ) -> xr.Dataset:
        """The sub-cube of the given labels, depths, days and winters (lazy, validated).

        Each filter takes one value or several; ``None`` keeps everything. ``start`` and
        ``end`` cut days (partial dates as pandas reads them) and winters (by their label,
        :func:`winters_between`). ``variables`` (with ``status``, always kept) narrows the
        cube first: selecting on a hundred lazy variables costs a hundred times one.
        """
        where: dict[str, Any] = {}
        for dim, wanted in zip(COMBO_DIMS, (experiment, source_id, member_id), strict=True):
            picked = self.pick(dim, wanted)
            if picked is not None:
                where[dim] = picked
        depths = self.pick_depths(depth)
        if depths is not None:
            where["depth"] = depths
        start, end = check_period(start, end)
        ds = self._cube
        if variables is not None:
            ds = ds[list(dict.fromkeys([*variables, "status"]))]
        ds = ds.sel({k: v for k, v in where.items() if k in ds.dims})
        if start is not None or end is not None:
            days = _between(pd.DatetimeIndex(self._cube["time"].values), start, end)
            winters = winters_between(self.winters, start, end)
            if "time" in ds.dims:
                ds = ds.isel(time=days)
            if "winter" in ds.dims:
                ds = ds.sel(winter=winters)
        return ds

    def present(self, ds: xr.Dataset) -> xr.DataArray:
        """Which cells of a (sub-)cube are combinations of the store (not label holes)."""
        return ds["status"] != NOT_IN_CATALOG

    # ----------------------------------------------------------------- the helpers

    def combinations(self) -> pd.DataFrame:
        """One row per combination: labels, status, reason, provenance and model family."""
        try:
            table = combo_status(self.url, self.storage_options)
        except StoreError as exc:
            raise ResultsError(str(exc)) from None
        if FAMILY_VAR in self._cube:
            families = self._cube[FAMILY_VAR].compute(scheduler="synchronous")
            frame = families.to_dataframe().reset_index()[[*COMBO_DIMS, FAMILY_VAR]]
            for dim in (*COMBO_DIMS, FAMILY_VAR):
                frame[dim] = frame[dim].astype(str)
            table = table.merge(frame, on=list(COMBO_DIMS), how="left")
            # an empty family was not recorded: the family is the source_id (store.py)
            family = table[FAMILY_VAR].fillna("").astype(str)
            table["family"] = family.where(family != "", table["source_id"])
            table = table.drop(columns=[FAMILY_VAR])
        else:
            table["family"] = table["source_id"]
        first = [*COMBO_DIMS, "status", "family"]
        rest = [c for c in table.columns if c not in first]
        return table[first + rest].sort_values(list(COMBO_DIMS)).reset_index(drop=True)

    def series(
        self,
        experiment: str,
        source_id: str,
        member_id: str,
        variables: Selection = None,
        depth: Selection = None,
        start: str | None = None,
        end: str | None = None,
    ) -> xr.Dataset:
        """One combination's results (lazy): its daily variables by default.

        ``variables`` may name any per-combination variable (:attr:`variables`); the
        status, reason and provenance of the combination are its attributes.
        """
        daily = [v for v in self.variables if "time" in RESULT_VARS[v][0]]
        names = self.check_variables(variables) if variables is not None else daily
        combo = {"experiment": experiment, "source_id": source_id, "member_id": member_id}
        for dim, value in combo.items():
            if as_list(value) is None or len(as_list(value) or []) != 1:
                raise ResultsError(f"series needs one {dim}, got {value!r}")
        ds = self.select(
            experiment, source_id, member_id, depth, start, end, [*names, "status_reason"]
        )
        ds = ds.squeeze(list(COMBO_DIMS))
        status = str(ds["status"].values)
        if status == NOT_IN_CATALOG:
            done = self.combinations()
            have = [" ".join(r) for r in done[list(COMBO_DIMS)].itertuples(index=False)]
            raise ResultsError(
                f"({experiment}, {source_id}, {member_id}) is not a combination of the store; "
                f"it has: {_listing(have)}"
            )
        info = ds[["status", "status_reason"]].compute(scheduler="synchronous")
        out = ds[names]
        out.attrs = dict(self._cube.attrs)
        out.attrs.update(
            {
                "combination_status": status,
                "combination_status_reason": str(info.status_reason.values),
            }
        )
        return out

    def cube(self, variables: Selection = None, **filters: Any) -> xr.Dataset:
        """The experiment x source_id x member_id view of ``variables`` (lazy), with the
        status of each cell ("not_in_catalog" for label holes); ``filters`` as :meth:`select`."""
        names = self.check_variables(variables)
        return self.select(**filters, variables=names)

    def winter_events(
        self,
        experiment: Selection = None,
        source_id: Selection = None,
        member_id: Selection = None,
        depth: Selection = None,
        start: str | None = None,
        end: str | None = None,
    ) -> pd.DataFrame:
        """Per-winter event statistics, one row per combination, winter and depth.

        Columns: ``event_days``, ``event_count``, ``peak_intensity`` (of the ensemble-mean
        anomaly), their deep-ensemble member spread ``<name>_member_min`` / ``_max`` where
        the store holds member statistics, the winter's ``winter_days`` and
        ``ood_fraction``, and its season bounds ``season_start`` / ``season_end``
        (the day after the last).
        """
        wanted = [
            *EVENT_VARS,
            *(f"member_{v}" for v in EVENT_VARS),
            *WINTER_VARS,
            "season_bounds",
        ]
        have = [v for v in wanted if v in self._cube.variables]
        ds = self.select(experiment, source_id, member_id, depth, start, end, have)
        per_depth = [v for v in EVENT_VARS if v in ds]
        members = [f"member_{v}" for v in per_depth if f"member_{v}" in ds]
        per_winter = [v for v in WINTER_VARS if v in ds]
        wanted = [*per_depth, *members, *per_winter, "status"]
        data = ds[wanted].reset_coords(drop=True).compute(scheduler="synchronous")
        bounds = ds["season_bounds"].values if "season_bounds" in ds.variables else None
        table = data[per_depth].to_dataframe()
        for name in members:
            base = name.removeprefix("member_")
            table[f"{base}_member_min"] = data[name].min("ensemble").to_dataframe(name=name)[name]
            table[f"{base}_member_max"] = data[name].max("ensemble").to_dataframe(name=name)[name]
        table = table.reset_index()
        keys = [*COMBO_DIMS, "winter"]
        if per_winter:
            winter = data[per_winter].to_dataframe().reset_index()
            table = table.merge(winter[[*keys, *per_winter]], on=keys, how="left")
        status = data["status"].to_dataframe().reset_index()
        table = table.merge(status[[*COMBO_DIMS, "status"]], on=list(COMBO_DIMS), how="left")
        table = table[table["status"] != NOT_IN_CATALOG].drop(columns=["status"])
        if bounds is not None:
            first = dict(zip(data["winter"].values.tolist(), bounds[:, 0], strict=True))
            after = dict(zip(data["winter"].values.tolist(), bounds[:, 1], strict=True))
            table["season_start"] = table["winter"].map(first)
            table["season_end"] = table["winter"].map(after)
        for dim in COMBO_DIMS:
            table[dim] = table[dim].astype(str)
        order = [*COMBO_DIMS, "winter", "depth"]
        return table.sort_values(order).reset_index(drop=True)


def open_results(url: str, storage_options: Mapping[str, Any] | None = None) -> Results:
    """Open a results store for reading (lazy): see :class:`Results`.

    Raises
    ------
    ResultsError
        Nothing, or no cascadia results store, at ``url`` (one line).
    """
    return Results(url, storage_options)
