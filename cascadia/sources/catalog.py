"""intake-esm datastores of a run catalog: open, query, enumerate combinations, open one.

A *combination* (combo) is one (source, experiment, member) — reanalysis
members included — identified by the collection's ``groupby_attrs`` minus
``variable_id`` plus its ``join_new`` attributes: stores that hold one variable
each are unions over variables, stores that hold many (ARCO-ERA5, ERA-20C and CDS
files) are listed once per variable and grouped by variable in the collection;
here each asset is opened once for all its variables. Before the rows are
grouped, the source's selection rules (:mod:`cascadia.sources.selection`) drop
retracted, duplicated, superseded and other-grid copies; a combination is opened
from exactly the rows it kept, so empty facets (Pangeo's NaN ``dcpp_init_year``)
never go through a search. Each combination also gets the store of its source's
land fraction (a CMIP ``fx`` table, a CORDEX ``sftlf`` file, ERA5's own ``lsm``),
chosen once here so that it is fingerprinted and recorded. A source with ``tables``
(CMIP6 ``day`` + ``Oday``/``Omon``) is not split by its table and grid columns: each
combination holds one :class:`Group` per table, with that grid's own land fraction
and cell areas (``areacello``). A combination lacking an optional variable its
source's ``driving_model`` gives (``tos`` of an uncoupled RCM) holds the driving
model's combination that supplies it (:class:`DrivingInput`).
"""

from __future__ import annotations

import itertools
import json
import posixpath
import re
import string
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import fsspec
import intake_esm
import numpy as np
import pandas as pd
import xarray as xr

from cascadia.sources.config import (
    CatalogError,
    CellArea,
    DeepOcean,
    DrivingModel,
    LandFraction,
    RunCatalog,
    SourceConfig,
    load_run_catalog,
)
from cascadia.sources.reach import Unreachable, ensure_reachable
from cascadia.sources.selection import Skipped, facet_column, select

#: The result labels of a combination, in the order of its ``label``.
LABELS = ("source_id", "experiment_id", "member_id")
#: The optional ``combo_id`` key naming a combination's model family (not a result label).
FAMILY = "family"
#: The time-frequency column of built and ESGF collections, and its values for fields
#: without a time axis (``none``: ``catalog build``'s one-step invariant file).
FREQUENCY = "frequency"
FIXED_FREQUENCIES = ("fx", "none")


class SourceError(RuntimeError):
    """Reading a source or a combination failed; the message names the catalog entry."""


@dataclass(frozen=True)
class Group:
    """The part of a combination on one table and grid, opened and reduced on its own.

    A source without ``tables`` has one group holding everything. With ``tables``
    (CMIP6 ``day`` on the atmosphere grid beside ``Oday`` on the ocean grid) each
    table is a group with its own land fraction and cell areas.
    """

    table: str  # value of the table column ("" without tables)
    facets: dict[str, str]  # its table and grid columns ({} without tables)
    assets: tuple[str, ...]
    variables: tuple[str, ...]  # source variables it holds
    land_fraction: str = ""  # asset holding its land (sea) fraction ("" if none found)
    cell_area: str = ""  # asset holding its cell areas ("" if none named or found)


@dataclass(frozen=True)
class Combo:
    """One combination of a source: its facets, its result labels and its assets."""

    source: str  # run-catalog source name
    facets: dict[str, str]  # collection columns identifying the combination ("" when empty)
    labels: dict[str, str]  # source_id / experiment_id / member_id as the results name them
    assets: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()  # source variables the collection lists for it
    missing: tuple[str, ...] = field(default=())  # source variables the catalog needs but lacks
    land_fraction: str = ""  # asset holding the source's land fraction ("" if none found)
    datasets: tuple[str, ...] = ()  # ids of the datasets it reads (after selection)
    skipped: tuple[Skipped, ...] = ()  # its copies the selection rules dropped
    groups: tuple[Group, ...] = ()  # one per table (one in all without tables)
    absent: tuple[str, ...] = ()  # optional canonical variables it does not have
    driving: DrivingInput | None = None  # variables it takes from its driving model
    driving_note: str = ""  # why an absent variable could not come from the driving model
    family: str = ""  # model family (combo_id "family"; its source_id label without one)
    deep_ocean: str = ""  # asset of its ocean temperature (deep_ocean; "" if none)
    ocean_driving: DrivingInput | None = None  # the driving model whose deep_ocean it takes
    ocean_sibling: str = ""  # the member whose deep_ocean it takes ("" its own or none)

    @property
    def label(self) -> str:
        return "/".join(self.labels[k] for k in LABELS)

    @property
    def ocean_of(self) -> str:
        """Whose ocean the deep background after the record takes: ``own``, a sibling
        member's, the driving model's; ``""`` where none (held, anomaly-only)."""
        if not self.deep_ocean:
            return ""
        sibling = f"member {self.ocean_sibling}" if self.ocean_sibling else ""
        if self.ocean_driving is None:
            return sibling or "own"
        return self.ocean_driving.label + (f" ({sibling})" if sibling else "")

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.source}.{self.label}")


@dataclass(frozen=True)
class DrivingInput:
    """The driving model's combination that gives a combination the variables it lacks."""

    catalog: str  # path of the driving models' run catalog
    source: str  # its source name
    combo: Combo
    variables: tuple[str, ...]  # canonical variables taken from it

    @property
    def label(self) -> str:
        return f"{', '.join(self.variables)} from {self.source} {self.combo.label}"


def _where(catalog: RunCatalog, source: SourceConfig) -> str:
    return f"{catalog.path} [{source.name}]"


def open_collection(catalog: RunCatalog, source: SourceConfig) -> intake_esm.esm_datastore:
    """Open the source's intake-esm collection (local path or URL with storage options).

    Refused with a :class:`SourceError` naming the catalog entry: a collection (or
    the remote CSV it names) whose host does not answer within seconds
    (:mod:`cascadia.sources.reach`), a file that is not JSON, an invalid ESM
    collection, and the shipped templates whose assets are placeholders.
    """
    url = catalog.resolve(source.collection)
    options = source.collection_storage_options
    where = _where(catalog, source)
    remote = "://" in url and not url.startswith("file://")
    try:
        ensure_reachable(url, options)
        fs, path = fsspec.core.url_to_fs(url, **options)
        # HTTP(S) exists() answers False on a refused connection: try the read instead
        if not url.startswith(("http://", "https://")) and not fs.exists(path):
            raise FileNotFoundError(url)
        table = _catalog_file(fs.cat_file(path))
        if table is not None:
            try:
                ensure_reachable(table, options)
            except Unreachable as exc:
                raise Unreachable(f"{url}: its table {exc}") from None
        datastore = intake_esm.esm_datastore(url, storage_options=options)
    except Unreachable as exc:
        raise SourceError(f"{where}: collection {exc}") from None
    except json.JSONDecodeError as exc:
        raise SourceError(
            f"{where}: collection {url} is not valid JSON (line {exc.lineno}, column "
            f"{exc.colno}: {exc.msg}); fix the file or point 'collection' at a corrected copy"
        ) from None
    except FileNotFoundError as exc:
        if remote and _looks_offline(exc):
            raise SourceError(
                f"{where}: collection {url} cannot be reached (no network access?)"
            ) from None
        raise SourceError(f"{where}: collection {url} not found") from None
    except Exception as exc:
        if remote and _looks_offline(exc):
            raise SourceError(
                f"{where}: collection {url} cannot be reached (no network access?): {exc}"
            ) from None
        raise SourceError(
            f"{where}: collection {url} is not a valid ESM collection: {exc}"
        ) from None
    _refuse_placeholders(catalog, source, url, datastore)
    return datastore


def _catalog_file(document: bytes) -> str | None:
    """The remote CSV/Parquet a collection JSON names by absolute URL (None if local)."""
    spec = json.loads(document)
    table = spec.get("catalog_file") if isinstance(spec, dict) else None
    if isinstance(table, str) and "://" in table and not table.startswith("file://"):
        return table
    return None


#: What the shipped collection templates hold in place of a user's files.
PLACEHOLDER = "/path/to/"


def _refuse_placeholders(
    catalog: RunCatalog, source: SourceConfig, url: str, datastore: intake_esm.esm_datastore
) -> None:
    """A template collection (``*.example.json``, assets under ``/path/to/``) is no input."""
    assets = datastore.df[datastore.esmcat.assets.column_name].astype(str)
    placeholders = assets[assets.str.contains(PLACEHOLDER, regex=False)]
    if placeholders.empty and ".example." not in posixpath.basename(url):
        return
    shown = f" (e.g. {placeholders.iloc[0]})" if not placeholders.empty else ""
    raise SourceError(
        f"{_where(catalog, source)}: collection {url} is a template whose assets are "
        f"placeholders{shown}: copy its JSON and CSV, replace the paths with the absolute "
        f"file:// URIs of your files, and point 'collection' of source {source.name!r} "
        f"in {catalog.path} at your copy"
    )


def _looks_offline(exc: BaseException) -> bool:
    """Whether an error, or one it was raised from, is a failure to reach a host."""
    seen: BaseException | None = exc
    while seen is not None:
        text = f"{type(seen).__name__} {seen}".lower()
        if any(w in text for w in ("connect", "resolve", "timeout", "network", "dns", "host")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def combo_columns(datastore: intake_esm.esm_datastore) -> list[str]:
    """Columns that identify a combination.

    The groupby attributes except the variable, plus the attributes the
    collection joins into a new dimension (Pangeo CMIP6 joins ``member_id`` and
    ``dcpp_init_year``): cascadia runs one combination per member.
    """
    control = datastore.esmcat.aggregation_control
    joined = [a.attribute_name for a in control.aggregations if a.type.value == "join_new"]
    columns = [c for c in control.groupby_attrs if c != control.variable_column_name]
    return columns + [c for c in joined if c not in columns]


@dataclass(frozen=True)
class Listing:
    """The combinations of a source and every dataset its selection rules skipped."""

    combos: list[Combo]
    skipped: tuple[Skipped, ...]


def enumerate_combos(
    catalog: RunCatalog, source: SourceConfig, datastore: intake_esm.esm_datastore | None = None
) -> list[Combo]:
    """Every combination the source's query selects, in a stable order."""
    return list_combos(catalog, source, datastore).combos


def _labels(
    catalog: RunCatalog, source: SourceConfig, facets: dict[str, str], columns: Sequence[str]
) -> dict[str, str]:
    """The result labels of a combination: ``combo_id`` templates over its facets.

    ``family`` is the model family (the template's, else the ``source_id`` label).
    """
    try:
        labels = {k: t.format(**facets) for k, t in source.combo_id.items()}
    except KeyError as exc:
        raise SourceError(
            f"{_where(catalog, source)}: combo_id refers to column {exc} which the "
            f"collection lacks (columns: {list(columns)})"
        ) from None
    labels.setdefault(FAMILY, labels["source_id"])
    return labels


def _dataset_ids(
    catalog: RunCatalog, source: SourceConfig, text: pd.DataFrame, asset_column: str
) -> pd.Series:
    """Each row's dataset id: ``selection.dataset_id`` over its cells, else its asset URL."""
    template = source.selection.dataset_id
    if template is None:
        return text[asset_column]
    ids = pd.Series("", index=text.index, dtype=object)
    for literal, column, _, _ in string.Formatter().parse(template):
        ids = ids + literal
        if column is None:
            continue
        if column not in text.columns:
            raise SourceError(
                f"{_where(catalog, source)}: selection.dataset_id refers to column "
                f"{column!r} which the collection lacks (columns: {list(text.columns)})"
            )
        ids = ids + text[column]
    return ids


def list_combos(
    catalog: RunCatalog, source: SourceConfig, datastore: intake_esm.esm_datastore | None = None
) -> Listing:
    """The source's combinations after its selection rules, and what the rules skipped."""
    datastore = datastore or open_collection(catalog, source)
    selected = datastore.search(**source.query) if source.query else datastore
    frame = selected.df
    if frame.empty:
        raise SourceError(f"{_where(catalog, source)}: the query {source.query} selects nothing")
    all_columns = combo_columns(datastore)
    columns = _key_columns(source, all_columns)
    variable_column = datastore.esmcat.aggregation_control.variable_column_name
    asset_column = datastore.esmcat.assets.column_name
    fixed = _FixedFields(catalog, source, datastore, all_columns)
    deep_rows = (
        None
        if source.deep_ocean is None
        else fixed_rows(catalog, source, datastore, columns, source.deep_ocean)
    )
    # every cell as text ("" when empty): the facets, labels and ids are built from it
    text = frame.apply(facet_column)
    keys = list(zip(*(text[c].tolist() for c in columns), strict=True))
    named = {
        key: _labels(catalog, source, dict(zip(columns, key, strict=True)), list(frame.columns))
        for key in set(keys)
    }
    labels = pd.Series(["/".join(named[k][n] for n in LABELS) for k in keys], index=frame.index)
    members = pd.Series(
        [f"{named[k]['source_id']}/{named[k]['member_id']}" for k in keys], index=frame.index
    )
    ids = _dataset_ids(catalog, source, text, asset_column)
    chosen = select(
        frame,
        source.selection,
        asset_column=asset_column,
        variable_column=variable_column,
        ids=ids,
        labels=labels,
        members=members,
        needed=source.source_variables,
        tables=source.tables,
    )
    if chosen.kept.empty:
        reasons = sorted({s.reason for s in chosen.skipped})
        raise SourceError(
            f"{_where(catalog, source)}: the selection rules skip every dataset the query "
            f"selects ({'; '.join(reasons)})"
        )
    rows: dict[tuple[str, ...], list[tuple[str, str, str, tuple[str, ...]]]] = {}
    kept = frame.index.isin(chosen.kept.index)
    split = [c for c in all_columns if c not in columns]  # table and grid columns
    places = zip(*(text[c].tolist() for c in split), strict=True) if split else None
    cells = zip(
        keys,
        kept,
        text[variable_column].tolist(),
        text[asset_column].tolist(),
        ids.tolist(),
        places if places is not None else itertools.repeat(()),
        strict=False,
    )
    for key, ok, variable, asset, dataset, place in cells:
        if ok:
            rows.setdefault(key, []).append((variable, asset, dataset, tuple(place)))
    skipped: dict[str, list[Skipped]] = {}
    for s in chosen.skipped:
        skipped.setdefault(s.combination, []).append(s)
    combos = []
    table_index = split.index(source.tables.column) if source.tables and split else None
    needed = set(source.source_variables)
    for key in sorted(rows):
        facets = dict(zip(columns, key, strict=True))
        variables, assets, datasets, _ = (set(x) for x in zip(*rows[key], strict=True))
        label = "/".join(named[key][n] for n in LABELS)
        by_place: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        for variable, asset, _, place in rows[key]:
            by_place.setdefault(place, []).append((variable, asset))
        if split:  # a table holding nothing the source reads (Omon thetao) is no group
            by_place = {
                p: held
                for p, held in by_place.items()
                if any(v in needed for v, _ in held) or len(by_place) == 1
            }
        groups = []
        # the source's own grid first (what open_combo opens by default), then the tables
        # of tables.grids (the ocean's), each in name order
        for place in sorted(by_place, key=lambda p: (_in_table_grids(source, p, table_index), p)):
            table = place[table_index] if table_index is not None else ""
            here = {**facets, **dict(zip(split, place, strict=True))}
            land, area = fixed.find(table, here)
            groups.append(
                Group(
                    table=table,
                    facets=dict(zip(split, place, strict=True)),
                    assets=tuple(sorted({a for _, a in by_place[place]})),
                    variables=tuple(sorted({v for v, _ in by_place[place]})),
                    land_fraction=land,
                    cell_area=area,
                )
            )
        optional = set(source.optional_sources)
        lacking = [v for v in source.source_variables if v not in variables]
        combos.append(
            Combo(
                source=source.name,
                facets=facets,
                labels={k: v for k, v in named[key].items() if k != FAMILY},
                assets=tuple(sorted(assets)),
                variables=tuple(sorted(variables)),
                missing=tuple(v for v in lacking if v not in optional),
                datasets=tuple(sorted(datasets)),
                skipped=tuple(skipped.get(label, ())),
                land_fraction=_main_land_fraction(source, groups),
                groups=tuple(groups),
                absent=tuple(n for n in source.optional if source.variables.get(n) in lacking),
                family=named[key][FAMILY],
                deep_ocean=""
                if deep_rows is None or source.deep_ocean is None
                else find_land_fraction(
                    deep_rows, source.deep_ocean, facets, columns, asset_column
                ),
            )
        )
    if source.deep_ocean is not None and source.deep_ocean.sibling_members:
        combos = with_sibling_oceans(combos)
    return Listing(attach_driving(catalog, source, combos), chosen.skipped)


def with_sibling_oceans(combos: list[Combo]) -> list[Combo]:
    """Each combination without its own ocean, with another member's of the same model and
    experiment (the first by member label that has one).

    Why: modelling centres publish ``thetao`` for some members only; the deep water's
    forced warming is the model's, so a member without it is better served by a sibling's
    ocean than by a background held at the record's end (anomaly-only).
    """
    first: dict[tuple[str, str], Combo] = {}
    for combo in sorted(combos, key=lambda c: c.labels["member_id"]):
        if combo.deep_ocean:
            first.setdefault((combo.labels["source_id"], combo.labels["experiment_id"]), combo)
    out = []
    for combo in combos:
        sibling = first.get((combo.labels["source_id"], combo.labels["experiment_id"]))
        if not combo.deep_ocean and sibling is not None:
            member = sibling.labels["member_id"]
            combo = replace(combo, deep_ocean=sibling.deep_ocean, ocean_sibling=member)
        out.append(combo)
    return out


def attach_driving(catalog: RunCatalog, source: SourceConfig, combos: list[Combo]) -> list[Combo]:
    """Each combination lacking a ``driving_model`` variable, with the combination giving it.

    The driving combination is the one of the driving source whose result labels equal
    this combination's ``match`` columns. A combination that finds none keeps lacking
    the variable, and says why in ``driving_note`` (a model needing it refuses it then).
    """
    spec = source.driving_model
    if spec is None:
        return combos
    wanting = [c for c in combos if set(spec.variables) & set(c.absent) or _wants_ocean(spec, c)]
    if not wanting:
        return combos
    where = f"{_where(catalog, source)} driving_model"
    ids = {id(c) for c in wanting}
    try:
        driving_catalog = load_run_catalog(catalog.resolve(spec.catalog))
        driving_source = driving_catalog.source(spec.source)
        different = [r.name for r in catalog.regions if r not in driving_catalog.regions]
        if different:
            raise SourceError(
                f"{driving_catalog.path} defines regions {different} differently or not at "
                "all; the driving model's series must average the same cells"
            )
        driving = list_combos(driving_catalog, driving_source).combos
    except (CatalogError, SourceError) as exc:
        note = f"{where}: {exc}"
        return [replace(c, driving_note=note) if id(c) in ids else c for c in combos]
    by_labels = {tuple(d.labels[k] for k in spec.match): d for d in driving}
    out = []
    for combo in combos:
        if id(combo) not in ids:
            out.append(combo)
            continue
        values = {**combo.labels, **combo.facets}
        unknown = [c for c in spec.match.values() if c not in values]
        key = tuple(values.get(c, "") for c in spec.match.values())
        found = by_labels.get(key)
        gives = predictors_of(driving_source, found) if found is not None else []
        taken = tuple(v for v in spec.variables if v in combo.absent and v in gives)
        if unknown:
            note = f"{where}: match names columns {unknown} the collection does not have"
        elif found is None:
            wanted = ", ".join(f"{k}={v}" for k, v in zip(spec.match, key, strict=True))
            note = f"{where}: no combination {wanted} in {driving_catalog.path} [{spec.source}]"
        elif not taken:
            note = f"{where}: the driving combination {found.label} lacks {spec.variables} too"
        else:
            note = ""
        if set(spec.variables) & set(combo.absent) and not taken:
            combo = replace(combo, driving_note=note)
        elif taken:
            combo = replace(
                combo,
                absent=tuple(v for v in combo.absent if v not in taken),
                driving=DrivingInput(driving_catalog.path, driving_source.name, found, taken),
            )
        if found is not None and found.deep_ocean and _wants_ocean(spec, combo):
            ocean = (driving_source.deep_ocean.variable,) if driving_source.deep_ocean else ()
            combo = replace(
                combo,
                deep_ocean=found.deep_ocean,
                ocean_driving=DrivingInput(driving_catalog.path, driving_source.name, found, ocean),
                ocean_sibling=found.ocean_sibling,
            )
        out.append(combo)
    return out


def _wants_ocean(spec: DrivingModel, combo: Combo) -> bool:
    """Whether a combination takes its deep ocean from its driving model."""
    return spec.deep_ocean and not combo.deep_ocean


def predictors_of(source: SourceConfig, combo: Combo) -> list[str]:
    """The canonical predictors a combination gives: its mapped and derived ones.

    An optional variable it lacks (``combo.absent``) is not among them; ``sfcWind``
    is (derived from ``uas``/``vas`` whenever a source has both).
    """
    names = set(source.canonical_variables) - set(combo.absent)
    if {"uas", "vas"} <= names:
        names.add("sfcWind")
    return sorted(names)


def _key_columns(source: SourceConfig, columns: Sequence[str]) -> list[str]:
    """The columns that identify a combination: without its tables and grids if it spans them."""
    if source.tables is None:
        return list(columns)
    split = {source.tables.column, source.selection.grid_column}
    return [c for c in columns if c not in split]


def _in_table_grids(source: SourceConfig, place: tuple[str, ...], table_index: int | None) -> bool:
    """Whether a group's table sits on a grid of ``tables.grids`` (not the source's own)."""
    if source.tables is None or table_index is None:
        return False
    return source.tables.group(place[table_index]) is not None


def _main_land_fraction(source: SourceConfig, groups: Sequence[Group]) -> str:
    """The land fraction on the source's own grid (the first group not in ``tables.grids``)."""
    for group in groups:
        if source.tables is None or source.tables.group(group.table) is None:
            return group.land_fraction
    return groups[0].land_fraction if groups else ""


class _FixedFields:
    """The land fraction and cell-area rows of a source, and the assets of each group."""

    def __init__(
        self,
        catalog: RunCatalog,
        source: SourceConfig,
        datastore: intake_esm.esm_datastore,
        columns: Sequence[str],
    ) -> None:
        self.source, self.columns = source, list(columns)
        self.asset_column = datastore.esmcat.assets.column_name
        self.rows: dict[int, pd.DataFrame] = {}
        for spec in self._specs():
            if id(spec) not in self.rows:
                self.rows[id(spec)] = fixed_rows(catalog, source, datastore, columns, spec)

    def _specs(self) -> list[LandFraction | CellArea]:
        specs: list[Any] = [self.source.land_fraction, self.source.cell_area]
        if self.source.tables is not None:
            for group in self.source.tables.grids:
                specs += [group.land_fraction, group.cell_area]
        return [s for s in specs if isinstance(s, LandFraction | CellArea)]

    def specs(self, table: str) -> tuple[Any, Any]:
        """The land-fraction and cell-area settings of a table (its group's, else the source's)."""
        group = self.source.tables.group(table) if self.source.tables else None
        land = group.land_fraction if group and group.land_fraction is not None else None
        area = group.cell_area if group and group.cell_area is not None else None
        return (
            land if land is not None else self.source.land_fraction,
            area if area is not None else self.source.cell_area,
        )

    def find(self, table: str, facets: dict[str, str]) -> tuple[str, str]:
        """The land-fraction and cell-area assets of a group ("" when none)."""
        found = []
        for spec in self.specs(table):
            if isinstance(spec, LandFraction | CellArea):
                found.append(
                    find_land_fraction(
                        self.rows[id(spec)], spec, facets, self.columns, self.asset_column
                    )
                )
            else:
                found.append("")
        return found[0], found[1]


def fixed_rows(
    catalog: RunCatalog,
    source: SourceConfig,
    datastore: intake_esm.esm_datastore,
    columns: Sequence[str],
    spec: LandFraction | CellArea | DeepOcean,
) -> pd.DataFrame:
    """Rows of the collection that may hold a field found per combination (land fraction,
    cell areas, a projection's own ocean).

    Raises :class:`SourceError` if the query names a column the collection lacks,
    or ``match`` one that does not identify combinations (``columns``).
    """
    what = {LandFraction: "land_fraction", CellArea: "cell_area", DeepOcean: "deep_ocean"}[
        type(spec)
    ]
    variable_column = datastore.esmcat.aggregation_control.variable_column_name
    unknown = sorted(set(spec.query) - set(datastore.df.columns))
    if unknown:
        raise SourceError(
            f"{_where(catalog, source)}: {what}.query refers to columns {unknown} "
            f"which the collection lacks (columns: {list(datastore.df.columns)})"
        )
    unknown = sorted(set(getattr(spec, "match", None) or ()) - set(columns))
    if unknown:
        raise SourceError(
            f"{_where(catalog, source)}: {what}.match refers to columns {unknown} "
            f"which do not identify a combination (those are {list(columns)})"
        )
    return datastore.search(**{variable_column: spec.variable, **spec.query}).df


def find_land_fraction(
    rows: pd.DataFrame,
    spec: LandFraction | CellArea | DeepOcean,
    facets: dict[str, str],
    columns: Sequence[str],
    asset_column: str,
) -> str:
    """The asset holding a combination's land fraction, or "" when the collection has none.

    Among ``rows`` (:func:`fixed_rows`), those sharing the combination's
    ``spec.match`` columns (default: the combination columns the land-fraction
    query does not set); the one sharing most other combination columns wins
    (same member, same experiment), then the last asset in sort order. A deep ocean
    has no ``match``: every combination column counts (a run's own ocean, never another
    member's). Under a land fraction's or cell area's default ``match``, a fixed field's
    ``frequency`` (``fx``, ``none``) matches any: a land-sea mask downloaded once, one
    time step, serves the ``frequency: day`` combinations (a row of their own frequency
    still wins).
    """
    match = getattr(spec, "match", None)
    relaxed: list[str] = []
    if match is None:
        match = [c for c in columns if c not in spec.query]
        if not isinstance(spec, DeepOcean):  # an ocean run is never a fixed field
            relaxed = [c for c in match if c == FREQUENCY]
    for column in match:
        values = facet_column(rows[column])
        same = values == facets[column]
        if column in relaxed:
            same |= values.isin(FIXED_FREQUENCIES)
        rows = rows[same]
    if rows.empty:
        return ""
    others = [c for c in columns if (c not in match or c in relaxed) and c in rows.columns]
    shared = sum((facet_column(rows[c]) == facets[c]).astype(int) for c in others)
    ranked = rows.assign(_shared=shared).sort_values(["_shared", asset_column], kind="stable")
    return str(ranked[asset_column].iloc[-1])


def open_kwargs(source: SourceConfig, datastore: intake_esm.esm_datastore) -> dict[str, Any]:
    """xarray options per asset format: h5netcdf for NetCDF (netCDF4 is not thread-safe).

    ``datastore`` is the selection about to be opened: a collection may mix NetCDF
    files and Zarr stores (``catalog build`` of a mixed folder), and the engine can
    be set only when every asset opened with it is NetCDF.

    Dask chunks follow the stores' own (``chunks: {}``), except for sources read in time
    blocks (``time_block_days``): those open without dask and uncached, so that nothing
    is read before :func:`cascadia.sources.extraction.extract_combo` has cropped them.
    """
    blocks = source.time_block_days is not None
    kwargs: dict[str, Any] = {"chunks": None, "cache": False} if blocks else {"chunks": {}}
    formats = set()
    fmt_column = datastore.esmcat.assets.format_column_name
    if fmt_column:
        formats = set(datastore.df[fmt_column])
    elif datastore.esmcat.assets.format is not None:
        formats = {datastore.esmcat.assets.format.value}
    if formats and formats <= {"netcdf"}:
        kwargs["engine"] = "h5netcdf"
    kwargs.update(source.xarray_open_kwargs)
    return kwargs


def open_combo(
    catalog: RunCatalog,
    source: SourceConfig,
    combo: Combo,
    datastore: intake_esm.esm_datastore | None = None,
    group: Group | None = None,
) -> xr.Dataset:
    """The raw (lazy) dataset of one group of a combination (default: its first).

    A combination of a source without ``tables`` is one group: everything it reads.
    Stores whose time axes overlap are joined by :func:`_open_each_asset` (xarray alone
    fails, or keeps one of two stores that start at the same step), and ERA5's legacy
    ``expver`` slices become one field (:func:`combine_expver`).
    """
    where = f"{_where(catalog, source)} {combo.label}"
    group = group or (combo.groups[0] if combo.groups else None)
    assets = group.assets if group else combo.assets
    wanted = [v for v in source.source_variables if group is None or v in group.variables]
    if group is not None and group.table:
        where += f" table {group.table}"
    if combo.missing:
        raise SourceError(
            f"{where}: variables {list(combo.missing)} are missing from the collection "
            f"(it lists {list(combo.variables)})"
        )
    datastore = datastore or open_collection(catalog, source)
    control = datastore.esmcat.aggregation_control
    joins = sorted({a.type.value for a in control.aggregations if a.type.value != "union"})
    if source.time_block_days is not None and (joins or len(assets) > 1):
        # without dask, xarray concatenates (and so reads) whole arrays to join them
        joined = f" and its collection joins them ({', '.join(joins)})" if joins else ""
        raise SourceError(
            f"{where}: time_block_days needs every combination to be one store (ARCO-ERA5), "
            f"but this one has {len(assets)} asset(s){joined}; remove time_block_days"
        )
    variable_column = control.variable_column_name
    facets = {**combo.facets, **(group.facets if group else {})}
    subset = _subset(datastore, facets, wanted, assets)
    listed = sorted(set(subset.df[variable_column]))
    subset = each_asset_once(subset)
    try:
        for asset in assets:
            ensure_reachable(asset, source.storage_options)
    except Unreachable as exc:
        raise SourceError(f"{where}: asset store {exc}") from None
    if _overlapping_ranges(subset):
        # combine_by_coords would keep one of two stores starting at the same step, unsaid
        merged = _open_each_asset(subset, source, combo, listed, wanted, where)
    else:
        try:
            merged = _open_subset(subset, source, combo, listed, wanted, where)
        except SourceError as exc:
            if NOT_MONOTONIC not in str(exc):
                raise
            merged = _open_each_asset(subset, source, combo, listed, wanted, where)
    return combine_expver(merged, where)


#: xarray's words when the time axes of a combination's stores overlap.
NOT_MONOTONIC = "does not have monotonic global indexes"


def _open_subset(
    subset: intake_esm.esm_datastore,
    source: SourceConfig,
    combo: Combo,
    listed: Sequence[str],
    wanted: Sequence[str],
    where: str,
) -> xr.Dataset:
    """The stores of ``subset`` opened and joined by intake-esm, renamed as the source says."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # intake-esm's merge compat default
            datasets = subset.to_dataset_dict(
                xarray_open_kwargs=open_kwargs(source, subset),
                xarray_combine_by_coords_kwargs=dict(source.xarray_combine_by_coords_kwargs),
                storage_options=source.storage_options,
                preprocess=partial(_only, variables=listed),
                progressbar=False,
            )
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise SourceError(f"{where}: cannot open its stores: {cause}") from None
    if not datasets:
        assets = sorted(set(subset.df[subset.esmcat.assets.column_name]))
        raise SourceError(
            f"{where}: intake-esm made no dataset of its {len(subset.df)} rows "
            f"(assets {assets}); an empty cell in a groupby_attrs column?"
        )
    merged = xr.merge(
        [_requested(ds, wanted) for ds in datasets.values()],
        compat="override",
        join="outer",
    )
    # joined facets (one member per combination) become length-1 dimensions: drop them
    merged = merged.squeeze([d for d in combo.facets if d in merged.dims], drop=True)
    # intake-esm's bookkeeping attributes vary from run to run and leak asset paths
    merged.attrs = {k: v for k, v in merged.attrs.items() if not k.startswith("intake_esm")}
    return merged.rename(source.rename) if source.rename else merged


def _range_bounds(text: str) -> tuple[str, str] | None:
    """``YYYYMMDD-YYYYMMDD`` (or any two digit stamps of one length) as comparable bounds."""
    start, _, end = str(text).partition("-")
    if start.isdigit() and end.isdigit() and len(start) == len(end):
        return start, end
    return None


def _overlapping_ranges(subset: intake_esm.esm_datastore) -> bool:
    """Whether two stores holding the same variable list overlapping ``time_range`` values.

    ``catalog build`` records each file's first and last day; a collection without the
    column (or with other spellings) is left to the check of the joined time axis.
    """
    frame = subset.df
    if "time_range" not in frame.columns:
        return False
    asset = subset.esmcat.assets.column_name
    variable = subset.esmcat.aggregation_control.variable_column_name
    for _, rows in frame.explode(variable).groupby(variable):
        bounds = sorted(
            b for b in (_range_bounds(r) for r in rows.drop_duplicates(asset)["time_range"]) if b
        )
        if any(b[0] <= a[1] for a, b in itertools.pairwise(bounds)):
            return True
    return False


def _open_each_asset(
    subset: intake_esm.esm_datastore,
    source: SourceConfig,
    combo: Combo,
    listed: Sequence[str],
    wanted: Sequence[str],
    where: str,
) -> xr.Dataset:
    """The stores of a combination whose time axes overlap, opened one by one and joined.

    Time steps that two stores both hold are kept once when their values are the same
    (the same download saved twice); different values stop here, naming both stores,
    the steps they share and the first variable that differs, since picking either
    would be a guess.
    """
    asset_column = subset.esmcat.assets.column_name
    frame = subset.df
    parts: dict[str, xr.Dataset] = {}
    for asset in dict.fromkeys(frame[asset_column]):
        one = type(subset)(
            {"esmcat": subset.esmcat.model_dump(), "df": frame[frame[asset_column] == asset]}
        )
        one.esmcat.catalog_file = None
        parts[str(asset)] = _open_subset(one, source, combo, listed, wanted, f"{where} {asset}")
    timed = {a: ds for a, ds in parts.items() if "time" in ds.dims and ds.sizes["time"] > 0}
    by_variables: dict[tuple[str, ...], list[str]] = {}
    for asset, ds in timed.items():
        by_variables.setdefault(tuple(sorted(map(str, ds.data_vars))), []).append(asset)
    joined = [ds for a, ds in parts.items() if a not in timed]
    for assets in by_variables.values():
        ordered = sorted(assets, key=lambda a: (timed[a].indexes["time"][0], a))
        for first, second in itertools.pairwise(ordered):
            _check_same_steps(timed[first], timed[second], first, second, where)
        whole = xr.concat(
            [timed[a] for a in ordered],
            dim="time",
            data_vars="minimal",
            coords="minimal",
            compat="override",
            join="outer",
        )
        joined.append(whole.isel(time=~whole.indexes["time"].duplicated()))
    return xr.merge(joined, compat="override", join="outer")


def _check_same_steps(a: xr.Dataset, b: xr.Dataset, name_a: str, name_b: str, where: str) -> None:
    """Raise unless the time steps two stores share hold the same values (NaN equal to NaN)."""
    shared = a.indexes["time"].intersection(b.indexes["time"])
    if shared.empty:
        return
    span = f"{shared[0]} to {shared[-1]} ({len(shared)} steps)"
    for name in sorted(set(map(str, a.data_vars)) & set(map(str, b.data_vars))):
        x = a[name].sel(time=shared)
        y = b[name].sel(time=shared)
        differ = (x != y) & ~(x.isnull() & y.isnull())
        steps = differ.any([d for d in differ.dims if d != "time"])
        if bool(steps.any()):
            step = shared[int(np.argmax(steps.values))]
            raise SourceError(
                f"{where}: stores {name_a} and {name_b} both hold the time steps {span}, and "
                f"their {name!r} differs (first at {step}); remove one of the two files (or "
                "its rows) from the collection: cascadia will not choose between them"
            )


def combine_expver(ds: xr.Dataset, where: str) -> xr.Dataset:
    """One ERA5 field from the ``expver`` slices of a pre-2024 CDS download, else ``ds``.

    CDS files spanning the latest months held ``t2m(time, expver, ...)``: each step has
    its value in expver 1 (final ERA5) or 5 (preliminary ERA5T) and NaN in the other.
    ECMWF's recipe, ``ds.sel(expver=1).combine_first(ds.sel(expver=5))``: the lowest
    expver (the final product) wins where several hold a value.
    """
    if "expver" not in ds.dims:
        return ds
    if "expver" not in ds.coords:
        raise SourceError(
            f"{where}: its stores have an 'expver' dimension (ERA5 final and ERA5T) without "
            "its coordinate, so which slice is final is unknown; remove expver from "
            "xarray_open_kwargs drop_variables"
        )
    try:
        codes = [int(str(v)) for v in ds["expver"].values]
    except ValueError:
        raise SourceError(
            f"{where}: expver values {ds['expver'].values.tolist()} are not ERA5 experiment "
            "numbers (1 final, 5 ERA5T)"
        ) from None
    slices = [ds.isel(expver=i, drop=True) for i in np.argsort(codes, kind="stable")]
    combined = slices[0]
    for other in slices[1:]:
        combined = combined.combine_first(other)
    return combined


def open_fixed_field(
    catalog: RunCatalog,
    source: SourceConfig,
    combo: Combo,
    spec: LandFraction | CellArea,
    asset: str,
    datastore: intake_esm.esm_datastore | None = None,
    table: str = "",
) -> xr.DataArray:
    """The raw (lazy) fixed field (land fraction, cell areas) of a group, with its grid."""
    where = f"{_where(catalog, source)} {combo.label}" + (f" table {table}" if table else "")
    if not asset:
        match = spec.match if spec.match is not None else "every combination column"
        if isinstance(spec, LandFraction):
            raise SourceError(
                f"{where}: no land fraction {spec.variable!r} in the collection for this "
                f"combination (land_fraction query {spec.query}, matching {match}); a region "
                "averages over sea or land cells: add the land-fraction store to the "
                "collection or set land_fraction: unmasked"
            )
        raise SourceError(
            f"{where}: no cell area {spec.variable!r} in the collection for this "
            f"combination (cell_area query {spec.query}, matching {match}); its data are on "
            "a curvilinear grid weighted by cell area: add the cell-area store (areacello, "
            "table Ofx) to the collection or set cell_area: cos_lat"
        )
    datastore = datastore or open_collection(catalog, source)
    control = datastore.esmcat.aggregation_control
    subset = datastore.search(
        **{datastore.esmcat.assets.column_name: asset},
        **{control.variable_column_name: spec.variable},
    )
    if subset.df.empty:
        raise SourceError(f"{where}: the collection no longer lists {asset}")
    # one file listed for several members (20CR's land.nc): open it once
    first = subset.df.iloc[0]
    subset = subset.search(
        **{c: first[c] for c in control.groupby_attrs if c in first and pd.notna(first[c])}
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # intake-esm's merge compat default
            datasets = subset.to_dataset_dict(
                xarray_open_kwargs=open_kwargs(source, subset),
                storage_options=source.storage_options,
                progressbar=False,
            )
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise SourceError(f"{where}: cannot open {spec.variable} {asset}: {cause}") from None
    ds = next(iter(datasets.values()))
    # joined facets (Pangeo's member_id, dcpp_init_year) are length-1 dimensions here too
    joined = [a.attribute_name for a in control.aggregations if a.type.value == "join_new"]
    ds = ds.squeeze([d for d in joined if d in ds.dims], drop=True)
    renames = {k: v for k, v in source.rename.items() if k in ds.variables or k in ds.dims}
    ds = ds.rename(renames) if renames else ds  # e.g. new-CDS valid_time -> time
    ds = combine_expver(ds, f"{where} {asset}")
    if spec.variable not in ds.variables:
        raise SourceError(
            f"{where}: {asset} holds no variable {spec.variable!r} "
            f"(it has {sorted(map(str, ds.data_vars))})"
        )
    return ds[spec.variable]


def _subset(
    datastore: intake_esm.esm_datastore,
    facets: dict[str, str],
    variables: Sequence[str],
    assets: Sequence[str],
) -> intake_esm.esm_datastore:
    """The datastore restricted to the rows the combination kept (no search on facets).

    A search would not find an empty facet (Pangeo's NaN ``dcpp_init_year``) and would
    bring back the copies the selection skipped (older versions share the facets).
    """
    frame = datastore.df
    control = datastore.esmcat.aggregation_control
    rows = frame[
        frame[datastore.esmcat.assets.column_name].isin(assets)
        & frame[control.variable_column_name].isin(variables)
    ]
    for column, value in facets.items():  # an asset may hold several combinations
        rows = rows[facet_column(rows[column]) == value]
    subset = type(datastore)(
        {"esmcat": datastore.esmcat.model_dump(), "df": rows.reset_index(drop=True)}
    )
    subset.esmcat.catalog_file = None  # as intake-esm's own search: the rows are in memory
    return subset


def each_asset_once(subset: intake_esm.esm_datastore) -> intake_esm.esm_datastore:
    """The same selection with every asset listed once, with the variables it holds.

    Collections list a file that holds many variables (CDS downloads, ERA-20C,
    ARCO-ERA5's store) once per variable, and intake-esm opens every row: a year
    of six variables was opened six times. Collapsed to one row per asset whose
    variable column is the list of its variables, it becomes an intake-esm
    multi-variable asset, which intake-esm opens once; the assets of a
    combination are then one key (their files joined by coordinates, as
    ``join_existing`` does). :func:`_only` keeps the requested variables of each
    (intake-esm's own search of a list column fails under pandas 3).
    """
    frame = subset.df
    esmcat = subset.esmcat
    asset = esmcat.assets.column_name
    if frame.empty or not frame[asset].duplicated().any():
        return subset
    control = esmcat.aggregation_control
    variable = control.variable_column_name
    columns = [c for c in frame.columns if c not in (asset, variable)]
    collapsed = (
        frame.groupby(asset, sort=False)
        .agg({**dict.fromkeys(columns, "first"), variable: lambda v: sorted(set(v))})
        .reset_index()[list(frame.columns)]
    )
    spec = esmcat.model_dump()
    spec["catalog_file"] = None
    spec["aggregation_control"]["groupby_attrs"] = [
        c for c in control.groupby_attrs if c != variable
    ]
    spec["aggregation_control"]["aggregations"] = [
        a
        for a in spec["aggregation_control"]["aggregations"]
        if not (a["type"] == "union" and a["attribute_name"] == variable)
    ]
    return intake_esm.esm_datastore({"esmcat": spec, "df": collapsed}, threaded=subset.threaded)


def _only(ds: xr.Dataset, variables: Sequence[str]) -> xr.Dataset:
    """The data variables of an opened asset that the selection lists (``preprocess``)."""
    return ds[[v for v in ds.data_vars if v in variables]]


def _requested(ds: xr.Dataset, variables: Sequence[str]) -> xr.Dataset:
    """The requested data variables of one intake-esm dataset, nothing else of the catalog's.

    Files holding several variables (ERA-20C's MARS conversions) are listed once per
    variable; intake-esm opens each and turns the file's other variables into
    coordinates. Left in, they clash with the same names as data variables of the
    other datasets ("unable to determine if these variables should be coordinates").
    """
    wanted = [v for v in variables if v in ds.data_vars]
    promoted = [c for c in ds.coords if c in variables and c not in wanted]
    return ds[wanted].drop_vars(promoted)


def select_period(ds: xr.Dataset, start: int | None, end: int | None) -> xr.Dataset:
    """Years ``start`` to ``end`` inclusive, in any calendar."""
    if start is None and end is None:
        return ds
    return ds.sel(
        time=slice(None if start is None else f"{start}", None if end is None else f"{end}")
    )
