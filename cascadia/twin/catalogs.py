"""intake-esm collections describing every store, and the run catalogs that use them.

Each family gets an ESM collection (JSON + CSV, asset paths as absolute URIs as
intake-esm 2025.12 requires). Stores that hold several variables in one asset
(ERA5's Zarr, ERA-20C's and the CDS daily files) are listed once per variable and
group by ``variable_id``, as real collections of such files do (cascadia opens
each asset once all the same); one-variable stores (CMIP6, CORDEX, 20CR)
are unions over ``variable_id``. The CMIP6 collection is Pangeo's layout as
published: its columns, ``member_id`` and ``dcpp_init_year`` joined into new
dimensions, empty ``dcpp_init_year`` cells, ``zstore`` URLs ending in "/".
Run catalogs (docs/catalogs.md) name the collection, the query, the role, the
mapping to canonical predictors and where each source's land fraction is (the
shelf region averages over sea cells).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import yaml

from cascadia.twin.presets import Preset
from cascadia.twin.stores import StoreContext
from cascadia.twin.writers import as_uri, write_text

#: groupby attributes and aggregations of each family's collection.
COLLECTIONS: dict[str, dict[str, Any]] = {
    "era5": {
        "description": "ERA5-like hourly single levels, one ARCO-layout Zarr store",
        "groupby": ["source_id", "experiment_id", "member_id", "variable_id"],
        "aggregations": [],
        "asset": "path",
    },
    "era5-cds": {
        "description": "ERA5-like daily statistics as the new CDS delivers them, one NetCDF "
        "per year with every variable (dimension valid_time)",
        "groupby": ["source_id", "experiment_id", "member_id", "variable_id"],
        "aggregations": [
            {
                "type": "join_existing",
                "attribute_name": "time_range",
                "options": {"dim": "valid_time"},
            },
        ],
        "asset": "path",
    },
    "20cr": {
        "description": "20CRv3-like daily NetCDF, one file per member, variable and decade",
        "groupby": ["source_id", "experiment_id", "member_id"],
        "aggregations": [
            {"type": "union", "attribute_name": "variable_id"},
            {"type": "join_existing", "attribute_name": "time_range", "options": {"dim": "time"}},
        ],
        "asset": "path",
    },
    "era20c": {
        "description": "ERA-20C-like 6-hourly NetCDF, one file per decade with every variable",
        "groupby": ["source_id", "experiment_id", "member_id", "variable_id"],
        "aggregations": [
            {"type": "join_existing", "attribute_name": "time_range", "options": {"dim": "time"}},
        ],
        "asset": "path",
    },
    "cmip6": {
        # exactly the aggregation_control and assets of Pangeo's pangeo-cmip6.json
        "description": "CMIP6-like daily Zarr stores in the Pangeo layout (one per variable)",
        "groupby": [
            "activity_id",
            "institution_id",
            "source_id",
            "experiment_id",
            "table_id",
            "grid_label",
        ],
        "aggregations": [
            {"type": "union", "attribute_name": "variable_id"},
            {
                "type": "join_new",
                "attribute_name": "member_id",
                "options": {"coords": "minimal", "compat": "override"},
            },
            {
                "type": "join_new",
                "attribute_name": "dcpp_init_year",
                "options": {"coords": "minimal", "compat": "override"},
            },
        ],
        "asset": "zstore",
        "format": "zarr",  # one format for all: no format column, as Pangeo's
    },
    "cordex": {
        "description": "CORDEX-like daily NetCDF on a rotated-pole grid (one per variable)",
        "groupby": [
            "domain_id",
            "institution_id",
            "driving_source_id",
            "experiment_id",
            "member_id",
            "source_id",
        ],
        "aggregations": [{"type": "union", "attribute_name": "variable_id"}],
        "asset": "path",
    },
}


def write_collections(ctx: StoreContext) -> list[str]:
    """Write ``collections/<family>.json`` + ``.csv``; returns the JSON URLs."""
    urls = []
    for family, spec in COLLECTIONS.items():
        rows = ctx.rows.get(family)
        if not rows:
            continue
        # sorted: stores are written concurrently, the collection must not depend on the order
        frame = pd.DataFrame(rows).sort_values(spec["asset"], kind="stable")
        fmt = spec.get("format")
        assets = (
            {"column_name": spec["asset"], "format": fmt}
            if fmt
            else {"column_name": spec["asset"], "format_column_name": "format"}
        )
        write_text(
            frame.to_csv(index=False), ctx.url("collections", f"{family}.csv"), ctx.storage_options
        )
        collection = {
            "esmcat_version": "0.1.0",
            "id": f"cascadia-twin-{family}",
            "description": f"cascadia twin world: {spec['description']}",
            # absolute: intake-esm resolves a relative catalog_file in a bucket as a local path
            "catalog_file": as_uri(ctx.url("collections", f"{family}.csv")),
            "attributes": [
                {"column_name": c, "vocabulary": ""}
                for c in frame.columns
                if c not in (spec["asset"], "format")
            ],
            "assets": assets,
            "aggregation_control": {
                "variable_column_name": "variable_id",
                "groupby_attrs": spec["groupby"],
                "aggregations": spec["aggregations"],
            },
        }
        url = ctx.url("collections", f"{family}.json")
        write_text(json.dumps(collection, indent=2) + "\n", url, ctx.storage_options)
        urls.append(url)
    return urls


#: The shelf, where air-sea fluxes make dense water, averages over sea cells; the
#: wind corridors over every cell (the channelled flow crosses the coast).
REGIONS = [
    {
        "name": "gulf_of_lion_shelf",
        "lat_min": 42.3,
        "lat_max": 43.6,
        "lon_min": 3.0,
        "lon_max": 5.0,
        "surface": "sea",
    },
    {
        "name": "tramontane",
        "lat_min": 41.8,
        "lat_max": 43.0,
        "lon_min": 2.5,
        "lon_max": 4.2,
        "surface": "all",
    },
    {
        "name": "mistral",
        "lat_min": 42.8,
        "lat_max": 44.2,
        "lon_min": 4.2,
        "lon_max": 5.6,
        "surface": "all",
    },
]

ERA5_VARIABLES = {
    "tas": "2m_temperature",
    "uas": "10m_u_component_of_wind",
    "vas": "10m_v_component_of_wind",
    "psl": "mean_sea_level_pressure",
    "pr": "total_precipitation",
    "rsds": "surface_solar_radiation_downwards",
    "tos": "sea_surface_temperature",
}
#: New-CDS daily statistics (short names); ``si10`` is the daily mean of hourly speeds.
ERA5_CDS_VARIABLES = {
    "tas": "t2m",
    "uas": "u10",
    "vas": "v10",
    "sfcWind": "si10",
    "psl": "msl",
    "pr": "tp",
    "rsds": "ssrd",
    "tos": "sst",
}
DERIVED_FROM_DEWPOINT = {
    "hurs": {"from": {"tas": "2m_temperature", "tdps": "2m_dewpoint_temperature"}},
}
CMIP_VARIABLES = {v: v for v in ("tas", "hurs", "pr", "uas", "vas", "sfcWind", "psl", "tos")}
#: CMIP tos sits on the ocean model's curvilinear grid (Oday, or Omon only for some
#: models), its cell areas and sea fraction in Ofx: one group per table, each on its grid.
CMIP_TABLES = {
    "column": "table_id",
    "prefer": {"tos": ["Oday", "Omon"]},
    "grids": [
        {
            "tables": ["Oday", "Omon"],
            "land_fraction": {
                "variable": "sftof",
                "fraction_of": "sea",
                "query": {"table_id": "Ofx"},
                "match": ["source_id", "grid_label"],
            },
            "cell_area": {
                "variable": "areacello",
                "query": {"table_id": "Ofx"},
                "match": ["source_id", "grid_label"],
            },
        }
    ],
}
#: tas/hurs carry height 2 m, uas/vas/sfcWind 10 m: drop the scalar so that the
#: variables merge (docs/catalogs.md, "Pangeo CMIP6").
CMIP_OPEN_KWARGS = {"drop_variables": ["height"]}
#: Dataset ids in the ESGF instance_id form; the default grid preference (gn first).
CMIP_SELECTION = {
    "dataset_id": "CMIP6.{activity_id}.{institution_id}.{source_id}.{experiment_id}."
    "{member_id}.{table_id}.{variable_id}.{grid_label}.v{version}",
}
#: The bias_adjustment options of the projection catalogs, per variable: additive
#: for temperature, humidity, pressure and wind components; rain multiplicative by
#: season with dry-day handling and its mean change preserved; wind speed
#: multiplicative with its mean change preserved.
BIAS_VARIABLES: dict[str, dict[str, Any]] = {
    "tas": {"kind": "+", "group": "time.month"},
    "hurs": {"kind": "+", "group": "time.month"},
    "psl": {"kind": "+", "group": "time.month"},
    "uas": {"kind": "+", "group": "time.month"},
    "vas": {"kind": "+", "group": "time.month"},
    "tos": {"kind": "+", "group": "time.month"},
    "pr": {
        "kind": "*",
        "group": "time.season",
        "nquantiles": 300,
        "tail_nodes": 0.0005,
        "adapt_freq_thresh": "1 mm/day",
        "jitter_under_thresh": "0.01 mm/day",
        "preserve_mean_change": True,
    },
    "sfcWind": {"kind": "*", "group": "time.month", "preserve_mean_change": True},
}

HEADER = """\
# cascadia run catalog: which stores to run and how to read them.
# Schema: docs/catalogs.md. Paths are relative to this file or URLs.
"""


def _source(
    name: str,
    family: str,
    role: str,
    query: dict[str, Any],
    period: tuple[int, int],
    variables: dict[str, str],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "name": name,
        "collection": f"../collections/{family}.json",
        "storage_options": {},
        "role": role,
        "query": query,
        "period": {"start": period[0], "end": period[1]},
        "variables": variables,
        **extra,
    }


def _deep_ocean(preset: Preset) -> dict[str, Any]:
    """The CMIP models' own ``thetao`` (Omon, first members only), anchored on the record;
    a world whose historical runs share fewer than five years with the record (``tiny``)
    anchors on what they share."""
    shared = min(preset.historical.end, preset.observations.end) - max(
        preset.historical.start, preset.observations.start
    )
    section: dict[str, Any] = {"variable": "thetao", "query": {"table_id": "Omon"}}
    if shared < 5:
        section["min_overlap_years"] = max(shared, 1)
    return section


def run_catalogs(preset: Preset) -> dict[str, dict[str, Any]]:
    """The run catalogs of the twin world, as plain data."""
    era5 = _source(
        "era5",
        "era5",
        "reference",
        {"source_id": "ERA5"},
        (preset.era5.years.start, preset.era5.years.end),
        ERA5_VARIABLES,
        derived=DERIVED_FROM_DEWPOINT,
        accumulated={
            "total_precipitation": "period_ending",
            "surface_solar_radiation_downwards": "period_ending",
        },
        land_fraction={"variable": "land_sea_mask"},
        time_block_days=31,  # as catalogs/era5.yaml: the full preset's chunks are one hour
    )
    era5_cds = {
        "version": 1,
        "regions": REGIONS,
        "sources": [
            _source(
                "era5",
                "era5-cds",
                "reference",
                {"source_id": "ERA5"},
                (preset.era5.years.start, preset.era5.years.end),
                ERA5_CDS_VARIABLES,
                xarray_open_kwargs={"drop_variables": ["number", "expver"]},
                rename={"valid_time": "time"},
                derived={"hurs": {"from": {"tas": "t2m", "tdps": "d2m"}}},
                # daily sums stamped at 00 UTC of their own day: no shift
                accumulated={"tp": "daily_total", "ssrd": "daily_total"},
                land_fraction={"variable": "lsm"},
            )
        ],
    }
    reference = {"catalog": "reanalysis.yaml", "source": "era5"}
    overlap = {  # the years both the reference and the historical runs hold
        "start": max(preset.era5.years.start, preset.historical.start),
        "end": min(preset.era5.years.end, preset.historical.end),
    }
    reanalysis = {
        "version": 1,
        "regions": REGIONS,
        "sources": [
            era5,
            _source(
                "20cr",
                "20cr",
                "hindcast",
                {"source_id": "20CRv3"},
                (preset.twentycr.years.start, preset.twentycr.years.end),
                {
                    "tas": "air",
                    "hurs": "rhum",
                    "uas": "uwnd",
                    "vas": "vwnd",
                    "psl": "prmsl",
                    "pr": "prate",
                    "tos": "sst",
                },
                land_fraction={"variable": "land"},
            ),
            _source(
                "era20c",
                "era20c",
                "hindcast",
                {"source_id": "ERA-20C"},
                (preset.era20c.years.start, preset.era20c.years.end),
                {"tas": "t2m", "uas": "u10", "vas": "v10", "psl": "msl", "pr": "tp", "tos": "sst"},
                derived={"hurs": {"from": {"tas": "t2m", "tdps": "d2m"}}},
                accumulated={"tp": "period_ending"},
                land_fraction={"variable": "lsm"},
            ),
        ],
    }
    bias = {
        "reference": reference,
        "overlap": overlap,
        "method": "quantile_delta_mapping",
        "variables": BIAS_VARIABLES,
    }
    cmip6 = {
        "version": 1,
        "regions": REGIONS,
        "bias_adjustment": bias,
        "sources": [
            _source(
                "cmip6",
                "cmip6",
                "projection",
                {
                    "table_id": ["day", "Oday", "Omon"],
                    "experiment_id": ["historical", "ssp126", "ssp245", "ssp585"],
                    "variable_id": list(CMIP_VARIABLES),
                },
                (preset.historical.start, preset.future.end),
                CMIP_VARIABLES,
                xarray_open_kwargs=CMIP_OPEN_KWARGS,
                selection=CMIP_SELECTION,
                optional=["tos"],
                tables=CMIP_TABLES,
                deep_ocean=_deep_ocean(preset),
                # fx stores sit under one experiment and member: match on model and grid
                land_fraction={
                    "variable": "sftlf",
                    "query": {"table_id": "fx"},
                    "match": ["source_id", "grid_label"],
                },
            )
        ],
    }
    cordex = {
        "version": 1,
        "regions": REGIONS,
        "bias_adjustment": bias,
        "sources": [
            _source(
                "cordex",
                "cordex",
                "projection",
                {"frequency": "day", "experiment_id": list(preset.cordex_experiments)},
                (preset.historical.start, preset.future.end),
                CMIP_VARIABLES,
                optional=["tos"],  # only the coupled RCM has a sea surface of its own
                # an uncoupled RCM's sea surface is its driving model's (the twin's RCMs
                # share their driving model's ocean): take that model's tos
                driving_model={
                    "catalog": "cmip6.yaml",
                    "source": "cmip6",
                    "match": {
                        "source_id": "driving_source_id",
                        "experiment_id": "experiment_id",
                        "member_id": "member_id",
                    },
                    "variables": ["tos"],
                    # and the deep ocean under that surface: the driving model's thetao
                    "deep_ocean": True,
                },
                combo_id={
                    "source_id": "{driving_source_id}_{source_id}",
                    "experiment_id": "{experiment_id}",
                    "member_id": "{member_id}",
                    # RCMs driven by one GCM are one model family with it (docs/spread.md)
                    "family": "{driving_source_id}",
                },
                # the RCM's own surface: one fx file per simulation, member r0i0p0
                land_fraction={
                    "variable": "sftlf",
                    "query": {"frequency": "fx"},
                    "match": ["domain_id", "institution_id", "source_id"],
                },
            )
        ],
    }
    return {"reanalysis": reanalysis, "era5-cds": era5_cds, "cmip6": cmip6, "cordex": cordex}


def write_run_catalogs(ctx: StoreContext, preset: Preset) -> list[str]:
    """Write ``catalogs/{reanalysis,era5-cds,cmip6,cordex}.yaml``; returns their URLs."""
    urls = []
    for name, catalog in run_catalogs(preset).items():
        url = ctx.url("catalogs", f"{name}.yaml")
        write_text(HEADER + yaml.safe_dump(catalog, sort_keys=False), url, ctx.storage_options)
        urls.append(url)
    return urls
