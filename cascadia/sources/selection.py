"""Which copy of a dataset a source reads: retracted, duplicated, superseded, other grids.

A published collection lists one dataset more than once (Pangeo CMIP6: a model in
both ``gn`` and ``gr``, two versions of one variable, the same store twice), and
opening them together fails or mixes copies. A source's
:class:`~cascadia.sources.config.SelectionRules` keep one copy; each row dropped is
recorded as a :class:`Skipped` with its reason, for ``catalog check`` and the
results store's provenance. The rules apply in this order:

1. **retracted**: rows whose dataset id or asset URL is listed in ``retracted``;
2. **exact duplicates**: rows equal in every column but the asset (the first asset
   in sorted order is read);
3. **older versions**: of rows equal in every column but the asset and the version,
   the newest version is read;
4. **grids**: grids missing from the preference list are skipped (rows with an
   empty grid cell are kept, and a query with no grid of the list at all, e.g.
   reanalysis rows labelled "none", has nothing to choose); of the others,
   each model member (``source_id`` and ``member_id`` as the results name them) is
   read on the first grid of the list on which every experiment has every variable
   the source needs, so that a scenario is adjusted on the grid of its historical
   run; failing that, each combination takes the first grid of the list on which it
   is complete (else the first it has: it then reports its missing variables).
   A source with ``tables`` chooses the grid table by table (the ocean's ``gn``
   beside the atmosphere's ``gr``), each table complete when it has the needed
   variables that the query finds in that table;
5. **tables** (a source with ``tables`` only): of a variable found in several tables
   of one combination, the first of its ``tables.prefer`` list is read (``Oday``
   before ``Omon``); tables outside that list are skipped; a variable without a
   preference found in several tables keeps the first in sorted order.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from dataclasses import asdict, dataclass

import pandas as pd

from cascadia.sources.config import SelectionRules, Tables


@dataclass(frozen=True)
class Skipped:
    """A row of the collection that a selection rule dropped, and why."""

    dataset: str  # dataset id (SelectionRules.dataset_id), else the asset URL
    asset: str
    combination: str  # "source_id/experiment_id/member_id" as the results name it
    variable: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Selected:
    """The rows a source reads and the ones it skipped."""

    kept: pd.DataFrame
    skipped: tuple[Skipped, ...]


def facet(value: object) -> str:
    """A collection cell as text: an empty cell (NaN) is "", a whole float has no ".0"."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def facet_column(column: pd.Series) -> pd.Series:
    """:func:`facet` of every cell of a column, vectorised (collections have 10^5 rows)."""
    empty = column.isna()
    if pd.api.types.is_float_dtype(column):
        whole = ~empty & (column % 1 == 0)
        text = column.astype(object).astype(str)
        text[whole] = column[whole].astype("int64").astype(str)
    else:
        text = column.astype(object).astype(str)
    return text.where(~empty, "")


def _version_key(value: object) -> tuple[int, str]:
    """Orders ``20190308``, ``v20190308`` and ``v1`` < ``v2``; an empty version is oldest."""
    text = facet(value).removeprefix("v")
    return (len(text), text)


def _version(value: object) -> str:
    text = facet(value)
    return text if text.startswith("v") or not text else f"v{text}"


class _Rows:
    """The frame being selected, with the bookkeeping of what was dropped."""

    def __init__(
        self, frame: pd.DataFrame, ids: pd.Series, labels: pd.Series, asset: str, variable: str
    ) -> None:
        self.frame, self.ids, self.labels = frame, ids, labels
        self.asset, self.variable = asset, variable
        self.keep = pd.Series(True, index=frame.index)
        self.skipped: list[Skipped] = []

    @property
    def live(self) -> pd.DataFrame:
        return self.frame[self.keep]

    def drop(self, index: Collection[Hashable], reason: str | pd.Series) -> None:
        """Skip the rows ``index`` still kept, with one reason or one per row."""
        index = pd.Index(index)
        index = index[self.keep[index].to_numpy()]
        if index.empty:
            return
        reasons = reason[index] if isinstance(reason, pd.Series) else pd.Series(reason, index)
        cells = self.frame.loc[index, [self.asset, self.variable]].astype(str)
        for i, asset, variable in cells.itertuples():
            self.skipped.append(
                Skipped(str(self.ids[i]), asset, self.labels[i], variable, str(reasons[i]))
            )
        self.keep[index] = False


def select(
    frame: pd.DataFrame,
    rules: SelectionRules,
    *,
    asset_column: str,
    variable_column: str,
    ids: pd.Series,
    labels: pd.Series,
    members: pd.Series,
    needed: Collection[str],
    tables: Tables | None = None,
) -> Selected:
    """Apply ``rules`` to the rows a source's query selected.

    Parameters
    ----------
    frame
        The collection's rows (one per asset and variable).
    ids, labels, members
        Per row (aligned on ``frame``'s index): its dataset id, the label of its
        combination (``source_id/experiment_id/member_id``) and of its model member.
    needed
        Source variables the run reads (a grid is complete when it has them all).
    tables
        The source's tables section: grids are then chosen per table, and each
        variable is read from one table.
    """
    rows = _Rows(frame, ids, labels, asset_column, variable_column)
    if rules.retracted:
        listed = {r.rstrip("/") for r in rules.retracted}
        hit = ids.isin(listed) | frame[asset_column].astype(str).str.rstrip("/").isin(listed)
        rows.drop(frame.index[hit], "retracted (listed in selection.retracted)")
    _drop_duplicates(rows)
    if rules.version_column in frame.columns:
        _drop_older_versions(rows, rules.version_column)
    by_table = tables is not None and tables.column in frame.columns
    if rules.grid_column in frame.columns:
        if by_table:
            assert tables is not None
            table_of = facet_column(frame[tables.column])
            for table in sorted(set(table_of)):
                here = frame.index[table_of == table]
                held = set(frame.loc[here, variable_column].astype(str)) & set(needed)
                _choose_grids(rows, rules, members, held, only=here)
        else:
            _choose_grids(rows, rules, members, set(needed))
    if by_table:
        assert tables is not None
        _choose_tables(rows, tables)
    return Selected(frame[rows.keep], tuple(rows.skipped))


def _drop_duplicates(rows: _Rows) -> None:
    live = rows.live.sort_values(rows.asset, kind="stable")
    key = [c for c in live.columns if c != rows.asset]
    live = live[live.duplicated(key, keep=False)]  # only groups of two or more
    for _, group in live.groupby(key, dropna=False, sort=False):
        assets = group[rows.asset].astype(str)
        first = assets.iloc[0]
        for n, i in enumerate(group.index[1:], start=1):
            twice = assets.iloc[n] in set(assets.iloc[:n])
            rows.drop([i], "listed twice" if twice else f"duplicate of {first} (same facets)")


def _drop_older_versions(rows: _Rows, column: str) -> None:
    live = rows.live
    key = [c for c in live.columns if c not in (rows.asset, column)]
    live = live[live.duplicated(key, keep=False)]  # only datasets listed more than once
    for _, group in live.groupby(key, dropna=False, sort=False):
        versions = group[column].map(_version_key)
        newest = group.loc[versions.idxmax(), column]
        older = group.index[versions != _version_key(newest)]
        for i in older:
            old = _version(group.at[i, column]) or "without version"
            rows.drop([i], f"older version {old} ({_version(newest)} is read)")


def _choose_tables(rows: _Rows, tables: Tables) -> None:
    """One table per variable and combination: the first of its preference list."""
    live = rows.live
    table_of = facet_column(live[tables.column])
    variable_of = live[rows.variable].astype(str)
    for (_, variable), index in live.groupby(
        [rows.labels[live.index], variable_of], sort=False
    ).groups.items():
        present = sorted(set(table_of[index]))
        prefer = tables.prefer.get(str(variable))
        if prefer is None:
            keep = present[0]
            why = f"also in table {keep}, read from there (list its tables under tables.prefer)"
        else:
            ranked = [t for t in prefer if t in present]
            keep = ranked[0] if ranked else ""
            why = f"table {keep} is read, first of tables.prefer.{variable} {prefer}"
        for table in present:
            if table == keep:
                continue
            reason = (
                f"table {table} is not in tables.prefer.{variable} {prefer}"
                if prefer is not None and table not in prefer
                else f"table {table}: {why}"
            )
            rows.drop(index[(table_of[index] == table).to_numpy()], reason)


def _choose_grids(
    rows: _Rows,
    rules: SelectionRules,
    members: pd.Series,
    needed: set[str],
    only: pd.Index | None = None,
) -> None:
    live = rows.live if only is None else rows.live.loc[rows.live.index.intersection(only)]
    grids = facet_column(live[rules.grid_column])
    if not grids.isin(rules.grids).any():
        return  # no grid label of the list (a reanalysis row's "" or "none"): nothing to choose
    unlisted = ~grids.isin(rules.grids) & (grids != "")
    reasons = "grid " + grids[unlisted]
    rows.drop(live.index[unlisted], reasons + f" is not in selection.grids {rules.grids}")
    live = rows.live.loc[rows.live.index.intersection(live.index)]
    live = live[grids[live.index] != ""]  # rows without a grid label are kept
    table = pd.DataFrame(
        {
            "member": members[live.index],
            "label": rows.labels[live.index],
            "grid": grids[live.index],
            "variable": live[rows.variable].astype(str),
        }
    )
    keys = ["member", "label", "grid"]
    wanted = table[table["variable"].isin(needed)]
    complete = wanted.groupby(keys)["variable"].nunique() >= len(needed)
    present = table.groupby(keys).size().index
    complete = complete.reindex(present, fill_value=False)
    rank = {g: n for n, g in enumerate(rules.grids)}
    # member -> label -> grid -> complete (plain dicts: thousands of small groups)
    tree: dict[str, dict[str, dict[str, bool]]] = {}
    for (member, label, grid), ok in complete.items():
        tree.setdefault(member, {}).setdefault(label, {})[grid] = bool(ok)
    choice: dict[tuple[str, str], tuple[str, str]] = {}  # (member, label) -> (grid, why)
    for member, by_label in tree.items():
        grids_here = sorted({g for by_grid in by_label.values() for g in by_grid}, key=rank.get)
        common = [g for g in grids_here if all(b.get(g, False) for b in by_label.values())]
        for label, by_grid in by_label.items():
            have = sorted(by_grid, key=rank.__getitem__)
            done = [g for g in have if by_grid[g]]
            if common:
                why = "complete in every experiment of the member"
            elif done:
                why = "complete for this experiment; none is complete in every experiment"
            else:
                why = "that it has; none is complete"
            choice[(member, label)] = ((common or done or have)[0], why)
    chosen = pd.Series([choice[(m, lb)] for m, lb in zip(table.member, table.label, strict=True)])
    chosen.index = table.index
    grid_of = chosen.map(lambda c: c[0])
    other = table.index[table["grid"] != grid_of]
    reasons = (
        "grid "
        + table.loc[other, "grid"]
        + ": read on "
        + grid_of[other]
        + ", first of selection.grids "
        + chosen[other].map(lambda c: c[1])
    )
    rows.drop(other, reasons)
