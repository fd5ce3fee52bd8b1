"""Build the whole twin world under one fsspec URL.

``world.json`` is written last: a folder without it is not a world (a build
that failed or was killed), and ``build_world`` refuses to reuse a non-empty
folder unless told to overwrite it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from cascadia import __version__
from cascadia.twin.catalogs import write_collections, write_run_catalogs
from cascadia.twin.grids import RegularGrid, ocean_grid, regular_grid, rotated_grid
from cascadia.twin.mooring import observe, write_mooring
from cascadia.twin.ocean import OceanParams, sea_surface_temperature
from cascadia.twin.ocean_analysis import FILE_PATTERN, write_ocean_analysis
from cascadia.twin.physics import PARAMS_KEY, VARY_KEY, params_to_json, seed_params
from cascadia.twin.presets import SCENARIOS, CmipSourceSpec, Preset, get_preset
from cascadia.twin.projection_stores import FieldTask, field_task, start_field_tasks
from cascadia.twin.realizations import (
    Realization,
    century_error_scale,
    make_history,
    make_projections,
    reanalysis_view,
    run_all,
)
from cascadia.twin.sea import COARSE_LAND_THRESHOLD, sea_surface_field
from cascadia.twin.stores import (
    StoreContext,
    write_cmip_fx,
    write_cmip_ofx,
    write_cordex_fx,
    write_era5,
    write_era5_cds_daily,
    write_era20c,
    write_twentycr,
)
from cascadia.twin.truth import write_history_truth, write_source_truth, write_truth_index
from cascadia.twin.writers import join, write_text

MANIFEST = "world.json"
CORDEX_DOMAIN = "MED-TWIN"
#: The member whose superseded datasets are written, and that drives the CORDEX pairs.
FIRST_MEMBER = "r1i1p1f1"


class WorldExistsError(FileExistsError):
    """The output folder is not empty and overwriting was not asked for."""


def prepare_output(out: str, overwrite: bool, storage_options: dict[str, Any]) -> None:
    """Check ``out`` can be written: empty, or cleared when ``overwrite``."""
    fs, path = fsspec.core.url_to_fs(out, **storage_options)
    if fs.exists(path):
        if not fs.isdir(path):
            raise NotADirectoryError(f"{out} exists and is not a folder")
        if fs.ls(path):
            if not overwrite:
                raise WorldExistsError(
                    f"{out} is not empty; choose an empty folder or pass --overwrite"
                )
            fs.rm(path, recursive=True)
    fs.makedirs(path, exist_ok=True)
    probe = join(path, ".cascadia-write-probe")
    fs.pipe(probe, b"")
    fs.rm(probe)


def build_world(
    out: str,
    preset: str | Preset = "tiny",
    seed: int = 0,
    *,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    params: OceanParams | None = None,
    vary_physics: bool = False,
    step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Generate every store of the twin world under ``out``; return the manifest.

    The ocean runs with ``params`` (default: the documented defaults) or, with
    ``vary_physics``, with parameters drawn from their plausible ranges by the seed
    (:func:`cascadia.twin.physics.seed_params`); either way ``world.json`` records
    them under ``ocean_params`` (and ``vary_physics``). ``step`` is called with a
    short description before each stage (progress).
    """
    if vary_physics and params is not None:
        raise ValueError("give ocean params or vary_physics, not both")
    params = seed_params(seed) if vary_physics else (params or OceanParams())
    preset = get_preset(preset) if isinstance(preset, str) else preset
    storage_options = storage_options or {}
    report = step or (lambda _: None)
    prepare_output(out, overwrite, storage_options)
    ctx = StoreContext(root=out, storage_options=storage_options)
    streams = np.random.SeedSequence([seed, 99]).spawn(8)

    report("atmosphere and hidden ocean of the history and every projection path")
    history = make_history(preset, seed, params)
    projections = make_projections(preset, seed, params)
    report(f"ocean process model for {1 + len(projections)} realizations")
    run_all([history, *projections], params)

    report("projection stores (background processes) and reanalysis stores")
    finish_projections = _start_projections(ctx, preset, projections, streams[4])
    _write_reanalyses(ctx, preset, history, streams, np.random.SeedSequence([seed, 98]))

    report("truth, mooring observations, ocean analysis, collections and run catalogs")
    _, hourly = write_history_truth(ctx, history, np.random.default_rng(streams[5]))
    obs_days = (history.axis.year >= preset.observations.start) & (
        history.axis.year <= preset.observations.end
    )
    first = int(np.flatnonzero(obs_days)[0])
    hours = slice(24 * first, 24 * (first + int(obs_days.sum())))
    temp, qc = observe(hourly[:, hours], np.random.default_rng(streams[6]))
    time = pd.date_range(f"{preset.observations.start}-01-01", periods=temp.shape[0], freq="h")
    write_mooring(ctx, time, temp, qc)
    write_ocean_analysis(ctx, history, np.random.SeedSequence([seed, 97]))
    report("waiting for the projection stores; projection truths")
    truth_rows = finish_projections()
    history_url = ctx.url("truth", "history.zarr")
    for family, source, members in (
        ("era5", "ERA5", ["r1"]),
        ("20cr", "20CRv3", [f"mem{m + 1:03d}" for m in range(preset.twentycr.members)]),
        ("era20c", "ERA-20C", ["r1"]),
    ):
        truth_rows += [
            {
                "family": family,
                "source_id": source,
                "experiment_id": "reanalysis",
                "member_id": m,
                "path": history_url,
            }
            for m in members
        ]
    write_truth_index(ctx, truth_rows)
    collections = write_collections(ctx)
    catalogs = write_run_catalogs(ctx, preset)

    report("figure of a few winters")
    from cascadia.twin.figure import plot_winters

    plot_winters(ctx, history, preset)

    manifest = {
        "cascadia_version": __version__,
        "preset": preset.name,
        "seed": seed,
        "collections": [u.removeprefix(out.rstrip("/") + "/") for u in collections],
        "catalogs": [u.removeprefix(out.rstrip("/") + "/") for u in catalogs],
        "observations": "observations/lacaze-duthiers.nc",
        "truth": "truth/index.csv",
        "ocean_analysis": "ocean/en4/" + FILE_PATTERN.format(stamp="*"),
        "stores": {family: len(rows) for family, rows in ctx.rows.items()},
        "preset_spec": preset.model_dump(mode="json"),
        VARY_KEY: vary_physics,
        PARAMS_KEY: params_to_json(params),
    }
    write_text(json.dumps(manifest, indent=2) + "\n", ctx.url(MANIFEST), storage_options)
    return manifest


def _write_reanalyses(
    ctx: StoreContext,
    preset: Preset,
    history: Realization,
    streams: list,
    sst_seed: np.random.SeedSequence,
) -> None:
    axis, weather = history.axis, history.weather
    assert history.ocean is not None
    sst = sea_surface_temperature(history.ocean.offshore_temp, axis.phase)
    sst_rngs = [np.random.default_rng(s) for s in sst_seed.spawn(3)]
    era5_view = reanalysis_view(weather, axis, np.random.default_rng(streams[0]), error_scale=0.3)
    era5_grid = regular_grid(preset.era5.resolution, lat_descending=True, lon_0_360=True)
    era5_years = (preset.era5.years.start, preset.era5.years.end)
    # ERA5's SST (OSTIA-like analyses): small errors; K, NaN over land
    era5_sst = 273.15 + sea_surface_field(
        sst, era5_grid, sst_rngs[0], bias=0.05, error_std=0.1, land_threshold=COARSE_LAND_THRESHOLD
    )
    write_era5(
        ctx,
        axis,
        era5_view,
        era5_grid,
        era5_years,
        streams[0],
        time_chunk=preset.era5_time_chunk,
        sst=era5_sst,
    )
    # the same weather, grid and seed as the hourly store: the daily files agree with it
    write_era5_cds_daily(ctx, axis, era5_view, era5_grid, era5_years, streams[0], sst=era5_sst)

    scale = century_error_scale(axis)
    rng = np.random.default_rng(streams[1])
    members = [
        reanalysis_view(
            weather, axis, rng, error_scale=scale, tas_bias=0.4, wind_factor=0.92, pr_factor=1.1
        )
        for _ in range(preset.twentycr.members)
    ]
    grid = regular_grid(preset.twentycr.resolution, lat_descending=True, lon_0_360=True)
    # HadISST2-like boundary: pentad means, one realization per member, errors growing back
    pentad = np.convolve(np.pad(sst, 2, mode="edge"), np.ones(5) / 5.0, mode="valid")
    member_ssts = [
        273.15
        + sea_surface_field(
            pentad,
            grid,
            sst_rngs[1],
            bias=-0.2,
            error_std=0.25 * scale,
            land_threshold=COARSE_LAND_THRESHOLD,
        )
        for _ in members
    ]
    write_twentycr(
        ctx,
        axis,
        members,
        grid,
        (preset.twentycr.years.start, preset.twentycr.years.end),
        streams[1],
        member_ssts=member_ssts,
    )

    view = reanalysis_view(
        weather,
        axis,
        np.random.default_rng(streams[2]),
        error_scale=0.8 * scale,
        tas_bias=-0.3,
        wind_factor=0.95,
    )
    grid = regular_grid(preset.era20c.resolution, lat_descending=True, lon_0_360=True)
    era20c_sst = 273.15 + sea_surface_field(
        pentad,
        grid,
        sst_rngs[2],
        bias=0.15,
        error_std=0.2 * scale,
        land_threshold=COARSE_LAND_THRESHOLD,
    )
    write_era20c(
        ctx,
        axis,
        view,
        grid,
        (preset.era20c.years.start, preset.era20c.years.end),
        streams[2],
        sst=era20c_sst,
    )


def _cmip_grids(spec: CmipSourceSpec, preset: Preset) -> dict[str, RegularGrid]:
    """The grids a CMIP-like model is published on: native (gn), and gr if regridded."""
    scale = preset.cmip_resolution_scale
    grids = {"gn": regular_grid(spec.resolution * scale, lat_descending=False, lon_0_360=True)}
    if spec.gr_resolution is not None:
        grids["gr"] = regular_grid(spec.gr_resolution * scale, lat_descending=False, lon_0_360=True)
    return grids


def _start_projections(
    ctx: StoreContext, preset: Preset, projections: list[Realization], stream: Any
) -> Callable[[], list[dict[str, str]]]:
    """Start writing the CMIP6-like and CORDEX-like stores; the returned function
    waits for them, writes the projection truths and returns the truth-index rows.

    The stores are many and small, and zarr's per-array overhead is CPU-bound
    Python, so experiments are written by a process pool (threads would not help,
    and HDF5 is not thread-safe).
    """
    sources = {s.source_id: s for s in preset.cmip_sources}
    by_key = {r.key: r for r in projections}
    grids = {spec.source_id: _cmip_grids(spec, preset) for spec in preset.cmip_sources}
    ocean_grids = {
        spec.source_id: ocean_grid(spec.ocean_resolution * preset.cmip_resolution_scale)
        for spec in preset.cmip_sources
    }
    for spec in preset.cmip_sources:  # land fractions: one fx store per model and grid
        for label, grid in grids[spec.source_id].items():
            fx = {
                "activity_id": "CMIP",
                "institution_id": spec.institution_id,
                "source_id": spec.source_id,
                "experiment_id": "historical",
                "member_id": FIRST_MEMBER,
                "grid_label": label,
            }
            write_cmip_fx(ctx, grid, fx)
        ofx = {k: v for k, v in fx.items() if k != "grid_label"}
        write_cmip_ofx(ctx, ocean_grids[spec.source_id], ofx)
    seeds = iter(stream.spawn(10_000))
    tasks: list[FieldTask] = []
    truth_rows: list[dict[str, str]] = []
    truth_parts: dict[tuple[str, str], list[tuple[str, Realization]]] = {}
    first_historical = ("historical", FIRST_MEMBER)
    for (source_id, scenario, member), path in by_key.items():
        spec = sources[source_id]
        grid, gr_grid = grids[source_id]["gn"], grids[source_id].get("gr")
        experiments = ("historical", scenario) if scenario == SCENARIOS[0] else (scenario,)
        for experiment in experiments:
            meta = {
                "activity_id": "CMIP" if experiment == "historical" else "ScenarioMIP",
                "institution_id": spec.institution_id,
                "source_id": source_id,
                "experiment_id": experiment,
                "member_id": member,
            }
            biases = {
                "tas_bias": spec.tas_bias,
                "hurs_bias": spec.hurs_bias,
                "pr_factor": spec.pr_factor,
                "wind_factor": spec.wind_factor,
                "psl_bias": spec.psl_bias,
            }
            superseded = spec.superseded if (experiment, member) == first_historical else ()
            task = field_task(
                "cmip6",
                path,
                experiment,
                grid,
                biases,
                meta,
                next(seeds),
                gr_grid=gr_grid if member == FIRST_MEMBER else None,
                superseded=superseded,
                ocean_grid=ocean_grids[source_id],
                ocean_table=spec.ocean_table,
                tos_bias=spec.tos_bias,
                # as in CMIP6, the 3-D ocean is published for fewer members
                thetao=member == FIRST_MEMBER,
                thetao_bias=spec.thetao_bias,
            )
            tasks.append(task)
            truth_parts.setdefault(("cmip6", source_id), []).append((experiment, path))

    rgrid = rotated_grid(preset.cordex_resolution)
    for pair in preset.cordex:
        fx = {
            "domain_id": CORDEX_DOMAIN,
            "institution_id": pair.institution,
            "driving_source_id": pair.driving_source,
            "experiment_id": "historical",
            "member_id": "r0i0p0",
            "source_id": pair.rcm,
        }
        write_cordex_fx(ctx, rgrid, fx)
        member = FIRST_MEMBER
        for experiment in preset.cordex_experiments:
            scenario = SCENARIOS[0] if experiment == "historical" else experiment
            path = by_key[(pair.driving_source, scenario, member)]
            meta = {
                "domain_id": CORDEX_DOMAIN,
                "institution_id": pair.institution,
                "driving_source_id": pair.driving_source,
                "experiment_id": experiment,
                "member_id": member,
                "source_id": pair.rcm,
            }
            biases = {
                "tas_bias": pair.tas_bias,
                "hurs_bias": 0.0,
                "pr_factor": pair.pr_factor,
                "wind_factor": pair.wind_factor,
                "psl_bias": 0.0,
            }
            ocean = (
                {} if pair.tos_bias is None else {"ocean_grid": rgrid, "tos_bias": pair.tos_bias}
            )
            task = field_task("cordex", path, experiment, rgrid, biases, meta, next(seeds), **ocean)
            tasks.append(task)
            truth_parts.setdefault(("cordex", pair.rcm), []).append((experiment, path))

    join = start_field_tasks(tasks, ctx.root, ctx.storage_options)

    def finish() -> list[dict[str, str]]:
        for rows in join():
            for collection, row in rows:
                ctx.add_row(collection, **row)
        for (family, source_id), parts in truth_parts.items():
            truth_rows.extend(write_source_truth(ctx, family, source_id, parts))
        return truth_rows

    return finish
