"""Run catalogs: which stores to run and how to read them (YAML, validated where it enters).

A run catalog names, per source, an intake-esm collection (path or URL, with
fsspec ``storage_options``), the query that selects its stores, the role of
the source (``reference`` reanalysis, ``hindcast`` reanalysis, ``projection``),
the period, the mapping from the source's variable names to the canonical
predictors, derivations from the registry of :mod:`cascadia.sources.predictors.canonical`,
accumulation conventions, where the source's land fraction is (for regions
that average over sea or land only), and — for projections — the
bias-adjustment reference and overlap. The schema is documented in
docs/catalogs.md.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any, Literal

import fsspec
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cascadia.sources.bias import AdjustmentOptions, VariableAdjustment
from cascadia.sources.predictors.canonical import CANONICAL_UNITS, DERIVATIONS
from cascadia.sources.predictors.regions import Region


class CatalogError(ValueError):
    """A run catalog is unreadable or invalid; the message names the file and the field."""


#: What a source name may be: a folder name that cannot climb out of the cache.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Period(_Strict):
    """Inclusive range of years."""

    start: int
    end: int

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


#: Accumulation conventions (see :attr:`SourceConfig.accumulated`).
Accumulation = Literal["period_ending", "period_starting", "daily_total"]


class Derived(_Strict):
    """A canonical variable computed by a registered derivation from source variables."""

    #: Derivation input name (e.g. ``tas``, ``tdps``) -> source variable name.
    inputs: dict[str, str] = Field(alias="from")


#: CMIP6 grid labels of gridded fields: native, then the regridded ones (WCRP CMIP6_CVs).
DEFAULT_GRIDS = ("gn", "gr", *(f"gr{i}" for i in range(1, 10)))


class SelectionRules(_Strict):
    """Which copy of a dataset a source reads when its collection lists several.

    Published collections list one dataset more than once: native and regridded
    grids (``gn``/``gr``), successive versions, retracted versions, the same store
    twice. The rules (docs/catalogs.md, "Selection rules") keep one and record why
    each other copy was skipped; a rule whose column the collection lacks does nothing.
    """

    #: Grid labels accepted, in order of preference; one grid per model member is kept.
    grids: list[str] = Field(default_factory=lambda: list(DEFAULT_GRIDS), min_length=1)
    grid_column: str = "grid_label"
    #: Of several versions of a dataset the newest is read (``v20190308`` or ``20190308``).
    version_column: str = "version"
    #: How a dataset is named in reasons, provenance and ``retracted``: a template over
    #: the collection's columns (empty cells format as ""); none: the asset URL.
    dataset_id: str | None = None
    #: Datasets not to read: ids as ``dataset_id`` names them, or asset URLs.
    retracted: list[str] = []

    @model_validator(mode="after")
    def _unique_grids(self) -> SelectionRules:
        if len(set(self.grids)) != len(self.grids):
            raise ValueError(f"grids must not repeat a label, got {self.grids}")
        return self


class LandFraction(_Strict):
    """Where a source keeps its land (or sea) fraction, for sea and land regions.

    The land fraction is a variable of the source's own collection, found per
    combination: the rows holding ``variable`` that satisfy ``query`` (which
    replaces the source's query for this look-up, e.g. ``{table_id: fx}``) and
    share the combination's values of the ``match`` columns (default: every
    combination column that ``query`` does not set). Among several, the one
    sharing most of the other combination columns wins (same member, same
    experiment), then the last asset in sort order (the latest version in DRS
    paths).
    """

    #: The variable name in the collection and the files: sftlf, lsm, land_sea_mask, sftof.
    variable: str = Field(min_length=1)
    query: dict[str, str | list[str]] = {}
    match: list[str] | None = None
    #: What the variable is a fraction of: sftlf and lsm are land, sftof is sea.
    fraction_of: Literal["land", "sea"] = "land"
    #: Units to assume when the variable has no units attribute ("%" or "1").
    units: str | None = None


class CellArea(_Strict):
    """Where a source keeps the area of its grid cells (CMIP6 ``areacello`` in ``Ofx``).

    Found per combination (and per table group) like :class:`LandFraction`: the rows
    holding ``variable`` that satisfy ``query`` and share the ``match`` columns.
    Curvilinear ocean grids weight each cell by its area instead of cos(latitude).
    """

    variable: str = Field(min_length=1)
    query: dict[str, str | list[str]] = {}
    match: list[str] | None = None
    #: Units to assume when the variable has no units attribute (e.g. "m2").
    units: str | None = None


class DeepOcean(_Strict):
    """Where a projection keeps its own ocean's temperature (CMIP6 ``thetao`` in ``Omon``).

    Found per combination: the rows holding ``variable`` that satisfy ``query`` (which
    replaces the source's query for this look-up) and share every combination column
    the query does not set (each experiment and member reads its own run). Beyond the
    mooring record, the run takes the deep background's changes from it, anchored on
    the record (:mod:`cascadia.run.deep_ocean`); a combination without it keeps the
    held, anomaly-only background. The settings mean what they mean for an ocean
    analysis before the record (:class:`cascadia.sources.ocean_analysis.OceanAnalysisConfig`).
    """

    variable: str = Field("thetao", min_length=1)
    query: dict[str, str | list[str]] = {}
    radius_km: float = Field(150.0, gt=0.0)
    smooth_days: int = Field(365, gt=0)
    #: The model's ocean is anchored on the record's last ``anchor_years`` (the decade
    #: nearest the projection) ...
    anchor_years: float = Field(10.0, gt=0.0)
    #: ... of which its historical and scenario runs must cover this many.
    min_overlap_years: float = Field(5.0, gt=0.0)
    #: A member without the variable takes another member's of the same model and
    #: experiment (the first by member label): the forced change is the model's, the
    #: variability another run's; stored apart (``background_kind`` 5).
    sibling_members: bool = True


#: ``cell_area: cos_lat``: weight a curvilinear grid by cos(latitude) although its data
#: name a cell-area variable (``cell_measures``): an explicit, approximate choice.
COS_LAT = "cos_lat"


class TableGroup(_Strict):
    """Tables of a source whose variables sit on another grid (the ocean model's).

    Each table is opened, cropped and reduced to the regions on its own grid with
    this entry's land (sea) fraction and cell areas; the source's own
    ``land_fraction`` and ``cell_area`` serve the tables not listed in any group.
    """

    tables: list[str] = Field(min_length=1)
    land_fraction: LandFraction | Literal["unmasked"] | None = None
    cell_area: CellArea | Literal["cos_lat"] | None = None


class Tables(_Strict):
    """A source whose combination spans several tables (and grids) of its collection.

    Why: CMIP6 keeps daily atmosphere in ``day`` on the atmosphere grid, sea surface
    temperature in ``Oday`` (or monthly ``Omon``) on the ocean grid, their fixed
    fields in ``fx`` and ``Ofx``. With this section the table column (and the grid
    column of the selection rules) no longer split a combination: each table is one
    group of the combination, chosen, opened and reduced on its own grid, and the
    daily regional series of the groups are merged (docs/catalogs.md, "Tables").
    """

    #: The collection column naming a table (CMIP6 ``table_id``).
    column: str = "table_id"
    #: Source variable -> tables to read it from, most preferred first (``tos: [Oday,
    #: Omon]``); a variable not listed is read from the one table the query gives it.
    prefer: dict[str, list[str]] = {}
    #: Tables on their own grid, with that grid's land fraction and cell areas.
    grids: list[TableGroup] = []

    @model_validator(mode="after")
    def _one_group_per_table(self) -> Tables:
        listed = [t for g in self.grids for t in g.tables]
        twice = sorted({t for t in listed if listed.count(t) > 1})
        if twice:
            raise ValueError(f"tables {twice} are listed in more than one of 'grids'")
        for variable, tables in self.prefer.items():
            if not tables or len(set(tables)) != len(tables):
                raise ValueError(f"prefer.{variable} must list distinct tables, got {tables}")
        return self

    def group(self, table: str) -> TableGroup | None:
        """The grid group of ``table`` (None: the source's own grid settings)."""
        return next((g for g in self.grids if table in g.tables), None)


class DrivingModel(_Strict):
    """Where an uncoupled regional model's sea surface comes from: its driving model.

    Why: an uncoupled RCM (most of EURO-CORDEX) has no ocean; its sea surface is the
    driving GCM's ``tos``, interpolated. A combination lacking one of ``variables``
    takes it from the combination of the driving models' run-catalog source whose
    result labels ``match`` its facets (docs/catalogs.md, "Driving model").
    """

    #: Run catalog of the driving models (relative to this one) and its source.
    catalog: str
    source: str
    #: Driving combination's label (source_id, experiment_id, member_id) -> this
    #: collection's column holding it (``source_id: driving_source_id``).
    match: dict[str, str] = Field(min_length=1)
    #: Optional canonical variables taken from the driving model when a combination lacks them.
    variables: list[str] = ["tos"]
    #: Also take the driving combination's deep ocean (its source's ``deep_ocean``) for a
    #: combination whose collection has none: an uncoupled RCM has no ocean, the one under
    #: the sea surface it is given is its driving model's.
    deep_ocean: bool = False

    @model_validator(mode="after")
    def _labels(self) -> DrivingModel:
        unknown = sorted(set(self.match) - {"source_id", "experiment_id", "member_id"})
        if unknown:
            raise ValueError(
                f"match keys {unknown} are not result labels (source_id, experiment_id, "
                "member_id) of the driving combination"
            )
        return self


class SourceConfig(_Strict):
    """One source of a run catalog: a collection, a query and how to read it."""

    name: str
    collection: str
    #: fsspec options for the collection's JSON/CSV (often plain HTTPS: none).
    collection_storage_options: dict[str, Any] = {}
    #: fsspec options for the data assets (e.g. ``{token: anon}``, ``{anon: true}``).
    storage_options: dict[str, Any] = {}
    xarray_open_kwargs: dict[str, Any] = {}
    #: Passed to intake-esm's ``to_dataset_dict`` (``xarray.combine_by_coords`` of the
    #: assets of one dataset), e.g. ``{compat: override, coords: minimal}``.
    xarray_combine_by_coords_kwargs: dict[str, Any] = {}
    #: Days of data each read task takes, for stores chunked finely in time (ARCO-ERA5: one
    #: global hour per chunk). The stores are opened without dask, cropped to the regions,
    #: then read in blocks of whole on-disk chunks: a few hundred tasks instead of one per
    #: chunk, and only the chunks that intersect the regions (see docs/catalogs.md).
    time_block_days: int | None = Field(None, gt=0)
    #: Renames applied after opening (e.g. new-CDS ERA5 ``{valid_time: time}``).
    rename: dict[str, str] = {}
    role: Literal["reference", "hindcast", "projection"]
    query: dict[str, str | list[str]] = {}
    period: Period | None = None
    #: Canonical name -> source variable name.
    variables: dict[str, str]
    derived: dict[str, Derived] = {}
    #: Source variable -> what an accumulated value covers and where it is stamped:
    #: ``period_ending`` / ``period_starting``, the sub-daily step ending / starting at
    #: the stamp (hourly ERA5: ending); ``daily_total``, the total of the day the stamp
    #: falls in (CDS daily statistics, stamped 00 UTC). docs/catalogs.md, "Accumulations".
    accumulated: dict[str, Accumulation] = {}
    #: The source's land fraction, or "unmasked" to average sea and land regions over
    #: every cell (a source without one); required when a region is not "all".
    land_fraction: LandFraction | Literal["unmasked"] | None = None
    #: The area of the source's grid cells, for curvilinear grids whose data name one in
    #: ``cell_measures`` (``area: areacello``); ``cos_lat`` weights them by cos(latitude)
    #: instead. Regular grids are weighted by cos(latitude), which is exact there.
    cell_area: CellArea | Literal["cos_lat"] | None = None
    #: Several tables (and grids) in one combination: docs/catalogs.md, "Tables".
    tables: Tables | None = None
    #: A projection's own ocean temperature, for the deep background beyond the record.
    deep_ocean: DeepOcean | None = None
    #: Canonical variables a combination may lack (``tos`` of an uncoupled model): it
    #: then simply has none, and a model trained with it refuses that combination.
    optional: list[str] = []
    #: Optional variables a combination lacking them takes from its driving model.
    driving_model: DrivingModel | None = None
    #: How the results name a combination, as templates over the collection's columns;
    #: an optional ``family`` template names the model family it belongs to (the driving
    #: GCM of an RCM), which the spread statistics weight as one model; without it a
    #: combination's family is its ``source_id`` label.
    combo_id: dict[str, str] = {
        "source_id": "{source_id}",
        "experiment_id": "{experiment_id}",
        "member_id": "{member_id}",
    }
    selection: SelectionRules = SelectionRules()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        # the name is a folder of the predictor cache: it must stay inside it
        if not SAFE_NAME.fullmatch(name):
            raise ValueError(
                f"source name {name!r} must start with a letter or digit and hold only "
                "letters, digits, '.', '_' or '-' (it names the source's folder in the "
                "predictor cache)"
            )
        return name

    @model_validator(mode="after")
    def _known_names(self) -> SourceConfig:
        unknown = sorted(set(self.variables) - set(CANONICAL_UNITS))
        if unknown:
            raise ValueError(
                f"variables {unknown} are not canonical predictors {sorted(CANONICAL_UNITS)}"
            )
        bad = sorted(set(self.derived) - set(DERIVATIONS))
        if bad:
            raise ValueError(f"derived {bad} have no registered derivation {sorted(DERIVATIONS)}")
        for name, spec in self.derived.items():
            needed = set(DERIVATIONS[name].inputs)
            given = set(spec.inputs) | set(self.variables)
            if not needed <= given:
                raise ValueError(
                    f"derived {name!r} needs inputs {sorted(needed)}; give the missing "
                    f"{sorted(needed - given)} under 'from' or 'variables'"
                )
        not_mapped = sorted(set(self.optional) - set(self.variables))
        if not_mapped:
            raise ValueError(
                f"optional {not_mapped} must be canonical variables mapped under 'variables'"
            )
        if self.driving_model is not None:
            not_optional = sorted(set(self.driving_model.variables) - set(self.optional))
            if not_optional:
                raise ValueError(
                    f"driving_model.variables {not_optional} must be listed under 'optional' "
                    "(a combination takes them from its driving model only when it lacks them)"
                )
        if self.tables is not None:
            unknown = sorted(set(self.tables.prefer) - set(self.source_variables))
            if unknown:
                raise ValueError(
                    f"tables.prefer names {unknown}, which are not source variables of "
                    f"'variables' or 'derived' ({self.source_variables})"
                )
        for field in ("source_id", "experiment_id", "member_id"):
            if field not in self.combo_id:
                raise ValueError(f"combo_id must define {field!r}")
        if self.time_block_days is not None and "chunks" in self.xarray_open_kwargs:
            raise ValueError(
                "time_block_days opens the stores without dask and chunks them after cropping; "
                "remove xarray_open_kwargs.chunks"
            )
        return self

    @property
    def canonical_variables(self) -> list[str]:
        return sorted(set(self.variables) | set(self.derived))

    @property
    def source_variables(self) -> list[str]:
        """Source variable names to read (mapped and derivation inputs)."""
        names = set(self.variables.values())
        for spec in self.derived.values():
            names |= set(spec.inputs.values())
        return sorted(names)

    @property
    def optional_sources(self) -> list[str]:
        """Source variable names of the optional canonical variables.

        An optional variable that is not mapped (a copy of the source with fewer
        ``variables``, made without validation) is simply not read.
        """
        return sorted({self.variables[name] for name in self.optional if name in self.variables})

    def mapping(self) -> dict[str, str]:
        """Source name -> canonical (or derivation input) name, for ``standardise``."""
        out = {source: canonical for canonical, source in self.variables.items()}
        for spec in self.derived.values():
            for role, source in spec.inputs.items():
                out.setdefault(source, role)
        return out


class BiasReference(_Strict):
    catalog: str
    source: str


class BiasAdjustmentSection(AdjustmentOptions):
    """How a catalog's projections are bias-adjusted: reference, overlap, options.

    Every option of :class:`cascadia.sources.bias.AdjustmentOptions` is accepted
    (per-variable ``kind``, ``group``, ``nquantiles``, ``interp``,
    ``extrapolation``, ``adapt_freq_thresh``, ``jitter_under_thresh``,
    ``preserve_mean_change`` under ``variables``; ``window_years``,
    ``stride_years``, ``min_overlap_years``, ``seed``), with the same defaults.
    """

    reference: BiasReference
    overlap: Period

    @model_validator(mode="before")
    @classmethod
    def _no_kinds(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kinds" in data:
            raise ValueError(
                "'kinds' was replaced by 'variables': write e.g. "
                "variables: {pr: {kind: '*'}, tas: {kind: '+'}} (docs/bias-adjustment.md)"
            )
        return data

    @field_validator("variables")
    @classmethod
    def _canonical(cls, value: dict[str, VariableAdjustment]) -> dict[str, VariableAdjustment]:
        unknown = sorted(set(value) - set(CANONICAL_UNITS))
        if unknown:
            raise ValueError(
                f"variables {unknown} are not canonical predictors {sorted(CANONICAL_UNITS)}"
            )
        return value


class RunCatalog(_Strict):
    """A validated run catalog; ``path`` is where it was read from (for relative paths)."""

    version: Literal[1]
    regions: list[Region]
    sources: list[SourceConfig]
    bias_adjustment: BiasAdjustmentSection | None = None
    output_calendar: Literal["standard"] = "standard"
    max_gap_days: int = Field(3, ge=0)
    min_coverage: float = Field(0.75, gt=0, le=1)
    path: str = ""

    @model_validator(mode="after")
    def _unique(self) -> RunCatalog:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        if not self.regions:
            raise ValueError("at least one region is needed")
        masked = [r for r in self.regions if r.surface != "all"]
        for source in self.sources:
            if masked and source.land_fraction is None:
                region = masked[0]
                raise ValueError(
                    f"source {source.name!r} has no land_fraction, but region "
                    f"{region.name!r} averages over {region.surface} cells: name the source's "
                    "land-fraction variable (land_fraction: {variable: sftlf, query: {...}}) "
                    "or average over every cell with land_fraction: unmasked"
                )
        return self

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise CatalogError(f"{self.path}: no source named {name!r}")

    def resolve(self, location: str) -> str:
        """A path or URL relative to this catalog's location."""
        if "://" in location or posixpath.isabs(location) or not self.path:
            return location
        if "://" in self.path:
            return posixpath.normpath(
                posixpath.join(posixpath.dirname(self.path), location)
            ).replace(":/", "://", 1)
        return str((Path(self.path).parent / location).resolve())


def _where(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """A readable field path, naming sources by their name rather than their index."""
    parts: list[str] = []
    node: Any = data
    for key in loc:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            item = node[key]
            label = item.get("name") if isinstance(item, dict) else None
            parts.append(f"[{label}]" if label else f"[{key}]")
            node = item
        else:
            parts.append(f".{key}" if parts else str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return "".join(parts)


def load_run_catalog(path: str, storage_options: dict[str, Any] | None = None) -> RunCatalog:
    """Read and validate a run catalog from a local path or URL.

    Raises
    ------
    CatalogError
        Naming the file and, for invalid content, each offending field.
    """
    try:
        with fsspec.open(path, "r", **(storage_options or {})) as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such run catalog") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    except Exception as exc:  # OSError, or a remote store's own (botocore's credentials)
        raise CatalogError(f"{path}: cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level")
    try:
        return RunCatalog(**data, path=path if "://" in path else str(Path(path).resolve()))
    except ValidationError as exc:
        lines = [f"{_where(e['loc'], data) or 'catalog'}: {e['msg']}" for e in exc.errors()]
        raise CatalogError(f"{path}: invalid run catalog:\n  " + "\n  ".join(lines)) from None
