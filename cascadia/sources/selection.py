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
4. **grids**: grids missing from the preference list are skipped; of the others,
   each model member (``source_id`` and ``member_id`` as the results name them) is
   read on the first grid of the list on which every experiment has every variable
   the source needs, so that a scenario is adjusted on the grid of its historical
   run; failing that, each combination takes the first grid of the list on which it
   is complete (else the first it has: it then reports its missing variables).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from dataclasses import asdict, dataclass

import pandas as pd

from cascadia.sources.config import SelectionRules


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
    if value is None or (not isinstance(value, str) and pd.isna(value)):  # type: ignore[arg-type]
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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

    def drop(self, index: Collection[Hashable], reason: str) -> None:
        for i in index:
            if self.keep[i]:
                row = self.frame.loc[i]
                self.skipped.append(
                    Skipped(
                        str(self.ids[i]),
                        str(row[self.asset]),
                        self.labels[i],
                        str(row[self.variable]),
                        reason,
                    )
                )
                self.keep[i] = False


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
    """
    rows = _Rows(frame, ids, labels, asset_column, variable_column)
    if rules.retracted:
        listed = {r.rstrip("/") for r in rules.retracted}
        hit = ids.isin(listed) | frame[asset_column].astype(str).str.rstrip("/").isin(listed)
        rows.drop(frame.index[hit], "retracted (listed in selection.retracted)")
    _drop_duplicates(rows)
    if rules.version_column in frame.columns:
        _drop_older_versions(rows, rules.version_column)
    if rules.grid_column in frame.columns:
        _choose_grids(rows, rules, members, set(needed))
    return Selected(frame[rows.keep], tuple(rows.skipped))


def _drop_duplicates(rows: _Rows) -> None:
    live = rows.live.sort_values(rows.asset, kind="stable")
    key = [c for c in live.columns if c != rows.asset]
    for _, group in live.groupby(key, dropna=False, sort=False):
        assets = group[rows.asset].astype(str)
        first = assets.iloc[0]
        for n, i in enumerate(group.index[1:], start=1):
            twice = assets.iloc[n] in set(assets.iloc[:n])
            rows.drop([i], "listed twice" if twice else f"duplicate of {first} (same facets)")


def _drop_older_versions(rows: _Rows, column: str) -> None:
    live = rows.live
    key = [c for c in live.columns if c not in (rows.asset, column)]
    for _, group in live.groupby(key, dropna=False, sort=False):
        versions = group[column].map(_version_key)
        newest = group.loc[versions.idxmax(), column]
        older = group.index[versions != _version_key(newest)]
        for i in older:
            old = _version(group.at[i, column]) or "without version"
            rows.drop([i], f"older version {old} ({_version(newest)} is read)")


def _choose_grids(rows: _Rows, rules: SelectionRules, members: pd.Series, needed: set[str]) -> None:
    column = rules.grid_column
    live = rows.live
    unlisted = live.index[~live[column].map(facet).isin(rules.grids)]
    for i in unlisted:
        grid = facet(live.at[i, column])
        rows.drop([i], f"grid {grid or '(none)'} is not in selection.grids {rules.grids}")
    live = rows.live
    rank = {g: n for n, g in enumerate(rules.grids)}
    grids = live[column].map(facet)
    for _, member in live.groupby(members[live.index], sort=False):
        # combination -> grid -> variables it has there
        have: dict[str, dict[str, set[str]]] = {}
        for i in member.index:
            have.setdefault(rows.labels[i], {}).setdefault(grids[i], set()).add(
                str(member.at[i, rows.variable])
            )
        order = sorted({g for by_grid in have.values() for g in by_grid}, key=rank.__getitem__)
        common = next(
            (g for g in order if all(needed <= by_grid.get(g, set()) for by_grid in have.values())),
            None,
        )
        for label, by_grid in have.items():
            present = sorted(by_grid, key=rank.__getitem__)
            if common is not None:
                choice, why = common, "complete in every experiment of the member"
            else:
                complete = [g for g in present if needed <= by_grid[g]]
                choice = (complete or present)[0]
                why = (
                    "complete for this experiment; none is complete in every experiment"
                    if complete
                    else "that it has; none is complete"
                )
            mask = (rows.labels[member.index] == label) & (grids[member.index] != choice)
            for i in member.index[mask]:
                rows.drop([i], f"grid {grids[i]}: read on {choice}, first of selection.grids {why}")
