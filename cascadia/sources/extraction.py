"""From one combination of a run catalog to canonical daily regional predictors.

Order, for each group of a combination (one, or one per table for a source with
``tables``: atmosphere and ocean grids): open lazily → period → the group's land
fraction when a region averages over sea or land, and its cell areas on a
curvilinear ocean grid → crop to the regions (so only the chunks that
intersect them are read) → for sources read in time blocks, dask chunks of whole
on-disk chunks → accumulation convention → :func:`standardise` (canonical
names, derivations, units, area-weighted regional means, daily statistics, one
calendar, short gaps) → the groups' daily series merged → checks. Failures raise
:class:`~cascadia.sources.catalog.SourceError` naming the catalog entry and combination.

Time blocks are for stores chunked finely in time, ARCO-ERA5's one global hour
per chunk above all: opened with their own dask chunks, such a store is one task
per hour and variable (~400k per variable for 1979-2024), each reading a global
field. Opened without dask instead (``time_block_days`` in the catalog), it is
cropped first, and each task then reads one block of hours of the regional box,
one orthogonal selection that zarr serves from the intersecting chunks only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import xarray as xr
from dask.base import tokenize
from xclim.core.units import pint2cfunits

from cascadia.sources.catalog import (
    Combo,
    Group,
    SourceError,
    open_combo,
    open_fixed_field,
    select_period,
)
from cascadia.sources.config import (
    COS_LAT,
    CellArea,
    LandFraction,
    RunCatalog,
    SourceConfig,
    load_run_catalog,
)
from cascadia.sources.predictors.calendars import GapReport
from cascadia.sources.predictors.canonical import DERIVATIONS, standardise
from cascadia.sources.predictors.grids import find_lat_lon, horizontal_dims, is_curvilinear
from cascadia.sources.predictors.masks import as_cell_area, as_land_fraction
from cascadia.sources.predictors.regions import Region
from cascadia.sources.predictors.units import amount_to_rate, source_units, time_step_seconds

#: Seconds in a day: the step of daily data.
DAY_SECONDS = 86400.0


@dataclass
class Extracted:
    """Canonical daily predictors of one combination, with the gaps left in them."""

    combo: Combo
    data: xr.Dataset  # (time, region), canonical names and units
    gaps: GapReport

    def compute(self, scheduler: Any = None) -> Extracted:
        """The predictors and their gap report computed in one pass over the stores.

        Computed one after the other, the report's mask would read every chunk again.
        ``scheduler`` is any dask scheduler (default: dask's current one).
        """
        data, missing = dask.compute(self.data, self.gaps.missing, scheduler=scheduler)
        return Extracted(self.combo, data, GapReport(self.gaps.max_gap_days, missing))


def apply_accumulation(ds: xr.Dataset, conventions: dict[str, str]) -> xr.Dataset:
    """Accumulated amounts as rates over the period they accumulate over.

    ``period_ending``: ERA5 stamps an hourly total at the *end* of its hour (the
    00 UTC value is the last hour of the previous day); shifting such variables
    back one step makes the daily statistics group each hour with its own day.
    ``period_starting``: the step starting at the stamp, kept in place.
    ``daily_total``: a daily sum stamped within its own day (the CDS daily
    statistics stamp it at 00 UTC), kept in place: the hourly conventions would
    move every total by a whole day, so they are refused on daily data, and
    ``daily_total`` is refused on sub-daily data. Dividing by the step turns
    amounts (m, J m-2) into rates (m s-1, W m-2) that the unit conversion
    understands.

    Raises
    ------
    ValueError
        If a convention does not fit the time step, naming the variable.
    """
    names = [n for n in conventions if n in ds.data_vars]
    if not names:
        return ds
    step = time_step_seconds(ds["time"])
    out = {}
    for name in names:
        convention = conventions[name]
        daily = abs(step - DAY_SECONDS) < 1.0
        if convention == "daily_total" and not daily:
            raise ValueError(
                f"{name!r} is declared 'daily_total' but its time step is {step:g} s, "
                f"not one day; sub-daily accumulations are 'period_ending' (ERA5) or "
                f"'period_starting'"
            )
        if convention != "daily_total" and step >= DAY_SECONDS - 1.0:
            raise ValueError(
                f"{name!r} is declared {convention!r} but its time step is {step:g} s: "
                f"that convention would move every daily total by a whole step; a daily "
                f"total stamped at its own day (CDS daily statistics) is 'daily_total'"
            )
        da = ds[name].shift(time=-1) if convention == "period_ending" else ds[name]
        if str(da.attrs.get("units", "")).strip() == "":
            raise ValueError(
                f"{name!r} is declared {convention!r} but has no units attribute; an "
                "accumulated amount needs one (ERA5: 'm' for tp, 'J m**-2' for ssrd)"
            )
        # the spelling read as the conversion reads it ('m of water equivalent'), then / s
        amount = da.assign_attrs(units=pint2cfunits(source_units(da, name)))
        out[name] = amount_to_rate(amount, step)
    return ds.assign(out)


def crop_to_regions(ds: xr.Dataset, regions: Iterable[Region]) -> xr.Dataset:
    """The smallest block of grid cells (plus one cell of margin) covering every region.

    Works on regular grids in either longitude convention and on curvilinear
    grids with 2-D coordinates; reading stays lazy and touches only the chunks
    that intersect the block.
    """
    regions = list(regions)
    lat_name, lon_name = find_lat_lon(ds)
    lat = ds[lat_name].values
    lon = (ds[lon_name].values + 180.0) % 360.0 - 180.0
    south = min(r.lat_min for r in regions)
    north = max(r.lat_max for r in regions)
    west = min(r.lon_min for r in regions)
    east = max(r.lon_max for r in regions)
    if is_curvilinear(ds):
        ydim, xdim = horizontal_dims(ds)
        step = float(np.nanmax(np.abs(np.diff(lat, axis=0)))) if lat.shape[0] > 1 else 1.0
        inside = (lat >= south - step) & (lat <= north + step)
        inside &= (lon >= west - step) & (lon <= east + step)
        rows, cols = np.nonzero(inside)
        if rows.size == 0:
            return ds
        return ds.isel(
            {
                ydim: slice(max(rows.min() - 1, 0), rows.max() + 2),
                xdim: slice(max(cols.min() - 1, 0), cols.max() + 2),
            }
        )
    keep = {}
    for name, values, lo, hi in ((lat_name, lat, south, north), (lon_name, lon, west, east)):
        spacing = float(np.median(np.abs(np.diff(np.sort(values))))) if values.size > 1 else 1.0
        index = np.flatnonzero((values >= lo - spacing) & (values <= hi + spacing))
        if index.size:
            keep[ds[name].dims[0]] = _as_slice(index)
    return ds.isel(keep) if keep else ds


def _as_slice(index: np.ndarray) -> slice | np.ndarray:
    """A run of consecutive indices as a slice (a plain selection for zarr), else the indices."""
    if np.array_equal(index, np.arange(index[0], index[-1] + 1)):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def time_blocks(start: int, length: int, block: int) -> tuple[int, ...]:
    """Sizes of the dask chunks of steps ``start`` to ``start + length`` of a store.

    Chunk boundaries fall on multiples of ``block`` counted from the store's first
    step, so each chunk covers whole on-disk chunks when ``block`` is a multiple of
    the on-disk chunk; the first and last chunks are cut to the period.
    """
    edges = [start, *range((start // block + 1) * block, start + length, block), start + length]
    return tuple(b - a for a, b in itertools.pairwise(edges))


def read_in_blocks(ds: xr.Dataset, days: int, start: int, identity: str = "") -> xr.Dataset:
    """Dask chunks of ``days`` days of whole on-disk chunks, for data opened without dask.

    Why: a task per on-disk chunk is ~400k tasks per variable for a one-hour-chunk
    store (ARCO-ERA5); a task per block reads every chunk of the block in one
    selection. ``ds`` is already cropped (its lazy arrays compose the crop with
    each block's time slice) and ``start`` is the position of its first step in
    the store. Blocks also hold whole days (for sub-daily steps that divide a
    day), so that the daily statistics never straddle two blocks. Variables
    already backed by dask are left as they are.

    ``identity`` names the store (its assets): with the variable, the position in
    the store and the cropped coordinates it names the dask keys, instead of a hash
    of each lazily indexed array that pickles the store's array objects.
    """
    per_day = 86400.0 / time_step_seconds(ds["time"]) if ds.sizes["time"] > 1 else 1.0
    whole_day = round(per_day) if math.isclose(per_day, round(per_day), rel_tol=1e-6) else 1
    chunked = {}
    for name, da in ds.data_vars.items():
        if "time" not in da.dims or da.chunks is not None:
            continue
        stored = int(da.encoding.get("preferred_chunks", {}).get("time", 1))
        unit = math.lcm(stored, max(whole_day, 1))
        block = math.ceil(days * per_day / unit) * unit
        token = None
        if identity:
            grid = [da[d].values for d in da.dims if d != "time" and d in da.coords]
            token = tokenize(identity, str(name), start, da.shape, da.dtype.str, *grid)
        chunked[name] = da.chunk({"time": time_blocks(start, da.sizes["time"], block)}, token=token)
    return ds.assign(chunked)


def source_land_fraction(
    catalog: RunCatalog,
    source: SourceConfig,
    combo: Combo,
    datastore=None,
    group: Group | None = None,
) -> tuple[list[Region], xr.DataArray | None]:
    """The regions as the source can average them, and its land fraction if one is needed.

    Regions that are all ``all`` need none (nothing is read). A source (or table
    group) marked ``land_fraction: unmasked`` averages sea and land regions over every
    cell (recorded in the output's attributes). Otherwise the land fraction of the
    group (default: the combination's first) is read, cropped to the regions and
    converted to a land area fraction in ``1``.
    """
    regions = list(catalog.regions)
    if all(r.surface == "all" for r in regions):
        return regions, None
    group = group or (combo.groups[0] if combo.groups else None)
    table = group.table if group else ""
    spec = _group_spec(source, table, "land_fraction")
    if spec == "unmasked":
        return [r.model_copy(update={"surface": "all"}) for r in regions], None
    where = f"{catalog.path} [{source.name}] {combo.label}" + (f" table {table}" if table else "")
    if not isinstance(spec, LandFraction):
        masked = [r.name for r in regions if r.surface != "all"]
        raise SourceError(
            f"{where}: regions {masked} average over sea or land cells but the source names "
            "no land_fraction (or land_fraction: unmasked)"
        )
    asset = group.land_fraction if group else combo.land_fraction
    raw = open_fixed_field(catalog, source, combo, spec, asset, datastore, table)
    try:
        cropped = crop_to_regions(raw.to_dataset(), regions)[raw.name]
        land = as_land_fraction(cropped, spec.fraction_of, spec.units, spec.variable)
    except ValueError as exc:
        raise SourceError(f"{where}: land fraction {asset}: {exc}") from None
    return regions, land


def _group_spec(source: SourceConfig, table: str, field: str) -> Any:
    """A table group's ``land_fraction`` or ``cell_area``, else the source's own."""
    group = source.tables.group(table) if source.tables and table else None
    value = getattr(group, field) if group is not None else None
    return value if value is not None else getattr(source, field)


#: How a variable on an ocean model's grid names its cell areas (CF ``cell_measures``).
OCEAN_CELL_MEASURE = "areacello"


def group_cell_area(
    catalog: RunCatalog,
    source: SourceConfig,
    combo: Combo,
    group: Group | None,
    raw: xr.Dataset,
    datastore=None,
) -> xr.DataArray | None:
    """The cell areas weighting a group's regional means, or None for cos(latitude).

    Regular grids are weighted by cos(latitude), which is exact there. A curvilinear
    grid whose data name ``areacello`` in their CF ``cell_measures`` (an ocean
    model's grid) is weighted by those areas, read from the collection as the
    catalog's ``cell_area`` says; without one it is refused, naming the variable,
    unless the catalog says ``cell_area: cos_lat``. A curvilinear grid with a
    ``cell_area`` given always uses it.
    """
    table = group.table if group else ""
    where = f"{catalog.path} [{source.name}] {combo.label}" + (f" table {table}" if table else "")
    spec = _group_spec(source, table, "cell_area")
    if spec == COS_LAT:
        return None
    try:
        curvilinear = is_curvilinear(raw)
    except ValueError:
        return None  # no grid found: standardise says so, naming the coordinates
    if not curvilinear:
        return None
    if not isinstance(spec, CellArea):
        ocean = [
            str(name)
            for name, da in raw.data_vars.items()
            if OCEAN_CELL_MEASURE in str(da.attrs.get("cell_measures", ""))
        ]
        if not ocean:
            return None
        raise SourceError(
            f"{where}: variable(s) {ocean} lie on a curvilinear ocean grid whose cells are "
            f"weighted by {OCEAN_CELL_MEASURE} (cell_measures "
            f"{raw[ocean[0]].attrs['cell_measures']!r}), but the catalog names no cell_area "
            f"for it: add cell_area: {{variable: {OCEAN_CELL_MEASURE}, query: {{table_id: Ofx}}}} "
            "(under tables.grids for a table group), or cell_area: cos_lat to weight by "
            "cos(latitude) instead"
        )
    asset = group.cell_area if group else ""
    field = open_fixed_field(catalog, source, combo, spec, asset, datastore, table)
    try:
        cropped = crop_to_regions(field.to_dataset(), catalog.regions)[field.name]
        return as_cell_area(cropped, spec.units, spec.variable)
    except ValueError as exc:
        raise SourceError(f"{where}: cell area {asset}: {exc}") from None


def _check_time_decoded(ds: xr.Dataset, where: str) -> None:
    """A time axis xarray could not decode (e.g. an unknown calendar) stops here, named."""
    if "time" not in ds.coords:
        hint = " (a 'time' dimension without values: is the time array missing?)"
        raise SourceError(
            f"{where}: no 'time' coordinate{hint if 'time' in ds.dims else ''} "
            f"(dims: {dict(ds.sizes)})"
        )
    time = ds["time"]
    if np.issubdtype(time.dtype, np.datetime64) or time.dtype == object:
        return
    attrs = {**time.attrs, **time.encoding}
    raise SourceError(
        f"{where}: cannot decode its time axis (units {attrs.get('units')!r}, "
        f"calendar {attrs.get('calendar')!r}); expected CF time units and a CF calendar"
    )


def extract_combo(
    catalog: RunCatalog,
    source: SourceConfig,
    combo: Combo,
    datastore=None,
    first_steps: int | None = None,
) -> Extracted:
    """Canonical daily predictors of ``combo`` (lazy until computed).

    Each group of the combination (one, unless the source spans ``tables``: the
    atmosphere's ``day`` and the ocean's ``Oday`` on their own grids) is opened,
    cropped, masked and reduced to the regions on its own grid; the daily regional
    series of the groups are then merged, and so are their gap reports.
    ``first_steps`` keeps only that many time steps of the period (a layout check).
    """
    where = f"{catalog.path} [{source.name}] {combo.label}"
    groups: list[Group | None] = list(combo.groups) or [None]
    parts = [_extract_group(catalog, source, combo, g, datastore, first_steps) for g in groups]
    if len(parts) == 1:
        daily, gaps, note = parts[0]
    else:
        daily = xr.merge([p[0] for p in parts], join="outer", compat="override")
        daily.attrs = {}
        missing = xr.merge([p[1].missing for p in parts], join="outer", fill_value=True)
        gaps = GapReport(catalog.max_gap_days, missing)
        note = "; ".join(f"{g.table}: {p[2]}" for g, p in zip(combo.groups, parts, strict=True))
    if combo.driving is not None:
        daily, gaps = _with_driving_model(catalog, combo, daily, gaps, first_steps)
    produced = set(source.canonical_variables) - set(combo.absent)
    missing_names = [v for v in sorted(produced) if v not in daily.data_vars]
    if missing_names:
        raise SourceError(f"{where}: canonical variables {missing_names} could not be produced")
    daily.attrs.update(
        {
            "source": source.name,
            **{f"combo_{k}": v for k, v in combo.labels.items()},
            "land_fraction": note,
            **({"driving_model": combo.driving.label} if combo.driving else {}),
        }
    )
    return Extracted(combo=combo, data=daily, gaps=gaps)


def _with_driving_model(
    catalog: RunCatalog,
    combo: Combo,
    daily: xr.Dataset,
    gaps: GapReport,
    first_steps: int | None,
) -> tuple[xr.Dataset, GapReport]:
    """``daily`` with the variables its driving model gives (an uncoupled RCM's ``tos``).

    Only the driving combination's groups holding them are read (its ``Oday``, not its
    atmosphere), reduced to the same regions on the driving model's own grid and put on
    this combination's days; days it does not cover stay missing and count as gaps.
    """
    driving = combo.driving
    assert driving is not None
    driving_catalog = load_run_catalog(driving.catalog)
    source = driving_catalog.source(driving.source)
    wanted = set(driving.variables)
    inputs = {name for name, canonical in source.mapping().items() if canonical in wanted}
    groups = [g for g in driving.combo.groups if inputs & set(g.variables)] or [None]
    parts = [
        _extract_group(driving_catalog, source, driving.combo, g, None, first_steps) for g in groups
    ]
    days = daily.indexes["time"]
    names = list(driving.variables)
    taken = xr.merge([p[0][[n for n in names if n in p[0]]] for p in parts], compat="override")
    missing = xr.merge([p[1].missing[[n for n in names if n in p[1].missing]] for p in parts])
    taken = taken.reindex(time=days)
    missing = missing.reindex(time=days, fill_value=True)
    for name in names:
        taken[name].attrs["source"] = f"driving model {driving.source} {driving.combo.label}"
    merged = xr.merge([daily, taken], join="left", combine_attrs="override")
    gap_mask = xr.merge([gaps.missing, missing], join="left", combine_attrs="override")
    return merged, GapReport(catalog.max_gap_days, gap_mask)


def _group_variables(source: SourceConfig, group: Group | None) -> tuple[dict[str, str], list[str]]:
    """The source-to-canonical mapping and the derivations a group can compute alone."""
    mapping = source.mapping()
    if group is None:
        return mapping, list(source.derived)
    held = set(group.variables)
    derivations = []
    for name, spec in source.derived.items():
        inputs = [
            spec.inputs.get(role, source.variables.get(role, role))
            for role in DERIVATIONS[name].inputs
        ]
        if all(i in held for i in inputs):
            derivations.append(name)
    return {k: v for k, v in mapping.items() if k in held}, derivations


def _extract_group(
    catalog: RunCatalog,
    source: SourceConfig,
    combo: Combo,
    group: Group | None,
    datastore=None,
    first_steps: int | None = None,
) -> tuple[xr.Dataset, GapReport, str]:
    """Daily regional predictors of one group, its gap report and its land-fraction note."""
    where = f"{catalog.path} [{source.name}] {combo.label}"
    if group is not None and group.table:
        where += f" table {group.table}"
    raw = open_combo(catalog, source, combo, datastore, group)
    _check_time_decoded(raw, where)
    mapping, derivations = _group_variables(source, group)
    absent = [v for v in mapping if v not in raw.data_vars]
    if absent:
        raise SourceError(
            f"{where}: variables {absent} are listed in the collection but not in its stores "
            f"(they hold {sorted(map(str, raw.data_vars))})"
        )
    stored = raw.indexes["time"]
    period = source.period
    raw = select_period(raw, period.start if period else None, period.end if period else None)
    if raw.sizes.get("time", 0) == 0:
        raise SourceError(f"{where}: no time steps in the period {period}")
    if first_steps is not None:
        raw = raw.isel(time=slice(0, first_steps))
    regions, land = source_land_fraction(catalog, source, combo, datastore, group)
    area = group_cell_area(catalog, source, combo, group, raw, datastore)
    try:
        raw = crop_to_regions(raw, regions)
        if source.time_block_days is not None:
            start = int(stored.get_indexer(raw.indexes["time"][:1])[0])
            identity = " ".join(group.assets if group else combo.assets)
            raw = read_in_blocks(raw, source.time_block_days, start, identity)
        raw = apply_accumulation(raw, source.accumulated)
    except (ValueError, KeyError) as exc:
        raise SourceError(f"{where}: {exc} ({_assets_text(group, combo)})") from None
    try:
        daily, gaps = standardise(
            raw,
            regions,
            mapping,
            derivations=derivations,
            calendar=catalog.output_calendar,
            max_gap_days=catalog.max_gap_days,
            min_coverage=catalog.min_coverage,
            land_fraction=land,
            cell_area=area,
        )
    except (ValueError, KeyError) as exc:
        raise SourceError(f"{where}: {exc}") from None
    daily = _refuse_extra_dims(daily, mapping, where, _assets_text(group, combo))
    note = _land_fraction_note(source, land)
    if area is not None:
        note += f", cells weighted by {area.attrs['source_variable']}"
    return daily, gaps, note


def _assets_text(group: Group | None, combo: Combo, shown: int = 3) -> str:
    """The stores a group reads, for messages: the first few and how many."""
    assets = list(group.assets if group else combo.assets)
    more = f" and {len(assets) - shown} more" if len(assets) > shown else ""
    return f"stores {', '.join(assets[:shown])}{more}"


def _refuse_extra_dims(
    daily: xr.Dataset, mapping: dict[str, str], where: str, stores: str
) -> xr.Dataset:
    """``daily`` without length-one dimensions besides time and region (a ``height`` or
    ``number`` axis naming one value); a predictor that keeps a longer one stops here,
    before it is cached.

    A source dimension nothing reduces (ensemble members, pressure levels) would otherwise
    be written into the cache as a series per value and break every later reader; which
    value is meant is the user's call.
    """
    single = [d for d in daily.dims if d not in ("time", "region") and daily.sizes[d] == 1]
    daily = daily.squeeze(single, drop=True)
    source_of = {canonical: name for name, canonical in mapping.items()}
    extra = {
        str(name): [str(d) for d in da.dims if d not in ("time", "region")]
        for name, da in daily.data_vars.items()
    }
    extra = {name: dims for name, dims in extra.items() if dims}
    if not extra:
        return daily
    named = "; ".join(
        f"{name} (source variable {source_of.get(name, name)!r}) has "
        + ", ".join(f"{d!r} ({daily.sizes[d]} values)" for d in dims)
        for name, dims in extra.items()
    )
    raise SourceError(
        f"{where} ({stores}): predictors must have only the dimensions time and region, "
        f"but {named}; give the catalog files of one value of it (one level, one member: "
        "select it in the files before building the collection, e.g. with `ncks -d` or "
        "xarray) or a source variable without that dimension"
    )


def _land_fraction_note(source: SourceConfig, land: xr.DataArray | None) -> str:
    """Provenance: which land-fraction variable masked the sea and land regions, if any.

    The asset itself is recorded by the cache's marker (its path depends on where
    the data lives; the predictors must not).
    """
    if land is not None:
        return str(land.attrs["source_variable"])
    if source.land_fraction == "unmasked":
        return "unmasked: sea and land regions averaged over every cell"
    return "none needed: every region averages over all cells"


def check_regions(extracted: Extracted, catalog: RunCatalog, source: SourceConfig) -> None:
    """Raise if a region is NaN over the whole period for some variable (computed data)."""
    data = extracted.data
    empty = [
        f"{name}@{region}"
        for name, da in data.data_vars.items()
        for region in data.region.values
        if bool(da.sel(region=region).isnull().all())
    ]
    if empty:
        raise SourceError(
            f"{catalog.path} [{source.name}] {extracted.combo.label}: all-NaN region series "
            f"{empty} (no valid grid cell in the region, or no data)"
        )


#: Time steps :func:`check_combo` reads: two, so a step length (accumulations) is defined.
CHECK_STEPS = 2


def check_combo(
    catalog: RunCatalog, source: SourceConfig, combo: Combo, datastore=None
) -> Extracted:
    """Open ``combo`` as a run would and standardise its first time steps, in seconds.

    The layout failures that otherwise surface minutes into a run (stores intake-esm
    cannot merge, such as 2 m and 10 m ``height`` coordinates; a variable the
    collection lists but its store lacks; a time axis that does not decode; no data
    in the period; a grid, unit or derivation the predictors cannot use) are raised
    here as a :class:`SourceError` naming the entry. Only :data:`CHECK_STEPS` steps of
    each variable are read, over the regions' block of cells.
    """
    where = f"{catalog.path} [{source.name}] {combo.label}"
    extracted = extract_combo(catalog, source, combo, datastore, first_steps=CHECK_STEPS)
    try:
        extracted.data = extracted.data.compute()
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(
            f"{where}: reading its first {CHECK_STEPS} time steps failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    return extracted
