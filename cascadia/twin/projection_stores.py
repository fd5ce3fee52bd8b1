"""Write the projection stores (CMIP6-like Zarr, CORDEX-like NetCDF) with a process pool."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from cascadia.twin.atmosphere import RegionalWeather, red_noise
from cascadia.twin.grids import CurvilinearGrid, RegularGrid, RotatedGrid, regrid
from cascadia.twin.ocean import sea_surface_temperature
from cascadia.twin.ocean_analysis import SHELF_LATITUDE, water_column
from cascadia.twin.realizations import Realization
from cascadia.twin.sea import (
    COARSE_LAND_THRESHOLD,
    OCEAN_LAND_THRESHOLD,
    sea_mask,
    sea_surface_field,
)
from cascadia.twin.stores import (
    StoreContext,
    biased_fields,
    cmip_dataset,
    cmip_ocean_dataset,
    cmip_thetao_dataset,
    monthly_means,
    slice_weather,
    write_cmip_store,
    write_cordex_variable,
)
from cascadia.twin.timeaxis import DayAxis

CMIP_VARIABLES = ("tas", "hurs", "huss", "pr", "uas", "vas", "sfcWind", "psl")
CORDEX_VARIABLES = ("tas", "hurs", "pr", "uas", "vas", "sfcWind", "psl")
#: Version of the superseded, incomplete first publication of a CMIP6-like dataset.
EARLIER_VERSION = "20250601"


@dataclass(frozen=True)
class FieldTask:
    """Everything needed to write one experiment of one model: picklable, seeded."""

    family: str  # "cmip6" or "cordex"
    weather: RegionalWeather  # the experiment's days only
    axis: DayAxis  # the whole path (historical + scenario)
    index: slice  # the experiment's days within ``axis``
    grid: RegularGrid | RotatedGrid
    biases: dict[str, float]
    meta: dict[str, str]
    seed: np.random.SeedSequence
    gr_grid: RegularGrid | None = None  # CMIP6: also written regridded (grid_label gr)
    superseded: tuple[str, ...] = ()  # CMIP6: variables also in an earlier, partial version
    ocean_grid: CurvilinearGrid | RotatedGrid | None = None  # where ``tos`` is written
    ocean_table: str = "Oday"  # CMIP6: Oday, or Omon for a model with monthly tos only
    tos_bias: float = 0.0  # K, static bias of the model's sea surface
    sst: np.ndarray | None = None  # degC, the path's true sea surface on the experiment's days
    thetao_bias: float = 0.0  # K, static bias of the model's intermediate water
    deep: np.ndarray | None = None  # degC (day, 2): the path's water mass at 500 and 1000 m


def experiment_days(path: Realization, experiment: str) -> slice:
    """Days of ``experiment`` within a projection path."""
    if experiment == "historical":
        return slice(0, path.historical_days)
    return slice(path.historical_days, path.axis.size)


def field_task(
    family: str,
    path: Realization,
    experiment: str,
    grid: RegularGrid | RotatedGrid,
    biases: dict[str, float],
    meta: dict[str, str],
    seed: np.random.SeedSequence,
    **layout: Any,
) -> FieldTask:
    index = experiment_days(path, experiment)
    weather = slice_weather(path.weather, index)
    if layout.get("ocean_grid") is not None:
        assert path.ocean is not None, "run the ocean before writing a model's tos"
        layout["sst"] = sea_surface_temperature(path.ocean.offshore_temp, path.axis.phase)[index]
    if layout.pop("thetao", False):
        assert path.ocean is not None and layout.get("ocean_grid") is not None
        layout["deep"] = np.asarray(path.ocean.background_temp)[:, index].T
    return FieldTask(family, weather, path.axis, index, grid, biases, meta, seed, **layout)


def write_field_task(
    task: FieldTask, root: str, storage_options: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """Generate the experiment's daily fields and write one store per variable."""
    ctx = StoreContext(root=root, storage_options=storage_options)
    lat2, lon2 = task.grid.mesh()
    daily = biased_fields(
        task.weather,
        lat2,
        lon2,
        np.random.default_rng(task.seed),
        task.axis.phase[task.index],
        **task.biases,
    )
    if task.family == "cmip6":
        assert isinstance(task.grid, RegularGrid)
        write_cmip_task(ctx, task, daily)
    else:
        assert isinstance(task.grid, RotatedGrid)
        for variable in CORDEX_VARIABLES:
            write_cordex_variable(ctx, daily, task.axis, task.index, task.grid, task.meta, variable)
    if task.sst is not None:
        write_tos(ctx, task)
    if task.deep is not None:
        write_thetao(ctx, task)
    return [(collection, row) for collection, rows in ctx.rows.items() for row in rows]


def write_cmip_task(ctx: StoreContext, task: FieldTask, daily: dict[str, np.ndarray]) -> None:
    """Every variable's store on the native grid, plus the task's ``gr`` and earlier copies."""
    assert isinstance(task.grid, RegularGrid)
    years = task.axis.year[task.index]
    first_year = int(np.count_nonzero(years == years[0]))
    for variable in CMIP_VARIABLES:
        args = (task.axis, task.index)
        native = cmip_dataset(daily[variable], *args, task.grid, task.meta, variable, "gn")
        write_cmip_store(ctx, native, task.meta)
        if variable in task.superseded:
            partial = native.isel(time=slice(0, first_year))
            write_cmip_store(ctx, partial, task.meta, EARLIER_VERSION)
        if task.gr_grid is not None:
            values = regrid(daily[variable], task.grid, task.gr_grid)
            regridded = cmip_dataset(values, *args, task.gr_grid, task.meta, variable, "gr")
            write_cmip_store(ctx, regridded, task.meta)


def write_tos(ctx: StoreContext, task: FieldTask) -> None:
    """The model's ``tos`` (degC, NaN over land) on its ocean grid (CMIP6) or its own
    rotated grid (a coupled CORDEX RCM), from its own random stream."""
    assert task.sst is not None and task.ocean_grid is not None
    key = (*task.seed.spawn_key, 1)  # a child key no other task's seed has
    rng = np.random.default_rng(np.random.SeedSequence(task.seed.entropy, spawn_key=key))
    # an ocean model's binary mask; a coupled RCM's ocean on its coarse atmospheric grid
    coarse = isinstance(task.ocean_grid, RotatedGrid)
    threshold = COARSE_LAND_THRESHOLD if coarse else OCEAN_LAND_THRESHOLD
    tos = sea_surface_field(
        task.sst, task.ocean_grid, rng, bias=task.tos_bias, error_std=0.05, land_threshold=threshold
    )
    if task.family == "cmip6":
        assert isinstance(task.ocean_grid, CurvilinearGrid)
        args = (task.axis, task.index, task.ocean_grid, task.meta, task.ocean_table)
        write_cmip_store(ctx, cmip_ocean_dataset(tos, *args), task.meta)
    else:
        assert isinstance(task.ocean_grid, RotatedGrid)
        write_cordex_variable(
            ctx, {"tos": tos}, task.axis, task.index, task.ocean_grid, task.meta, "tos"
        )


#: The twin's ``thetao`` levels (m): a coarse ocean model's, down to 1500 m.
THETAO_LEVELS = np.array([5.0, 50.0, 150.0, 300.0, 450.0, 600.0, 800.0, 1000.0, 1250.0, 1500.0])


def write_thetao(ctx: StoreContext, task: FieldTask) -> None:
    """The model's own ``thetao`` (Omon, on its ocean grid) from the path's water mass.

    A model's ocean is the path's ocean seen through a coarse grid: its static bias
    (``thetao_bias``) with a tilt in depth, a drift (spin-up not finished: up to about a
    tenth of a degree per century) and a red-noise monthly error, from its own random
    stream; land and the levels below the shelf's floor are missing.
    """
    assert task.deep is not None and task.sst is not None
    assert isinstance(task.ocean_grid, CurvilinearGrid)
    key = (*task.seed.spawn_key, 2)  # a child key no other task's seed has
    rng = np.random.default_rng(np.random.SeedSequence(task.seed.entropy, spawn_key=key))
    # one daily table, averaged per model month like tos
    daily = np.column_stack([task.sst, task.deep])
    monthly, time, time_bnds = monthly_means(daily, task.axis, task.index)
    profile = water_column(monthly[:, 0], monthly[:, 1:], THETAO_LEVELS)
    years = np.asarray(time.values) / 365.25  # years since 1850, near enough for a drift
    tilt, drift = rng.normal(0.0, 0.1), rng.normal(0.0, 0.1)
    static = task.thetao_bias + tilt * (THETAO_LEVELS - 700.0) / 1000.0
    noise = red_noise(rng, years.size, np.exp(-1.0 / 6.0), 0.05)
    profile = profile + static[None] + (drift * (years - 165.0) / 100.0 + noise)[:, None]
    lat, _ = task.ocean_grid.mesh()
    floor = np.where(lat > SHELF_LATITUDE, 100.0, 2500.0)
    valid = sea_mask(task.ocean_grid)[None] & (THETAO_LEVELS[:, None, None] < floor[None])
    field = np.where(valid[None], profile[:, :, None, None], np.nan)
    args = (time, time_bnds, THETAO_LEVELS, task.ocean_grid, task.meta)
    write_cmip_store(ctx, cmip_thetao_dataset(field, *args), task.meta)


def start_field_tasks(
    tasks: list[FieldTask], root: str, storage_options: dict[str, Any]
) -> Callable[[], list[list[tuple[str, dict[str, Any]]]]]:
    """Start the tasks on one process per core; return a function that waits for them.

    The caller keeps working (reanalyses, truth) while the pool writes, which is
    where the twin world's wall time goes. Workers start with ``forkserver``:
    zarr runs an event-loop thread that a plain fork would copy half-alive.
    """
    workers = min(len(tasks), os.cpu_count() or 1)
    if workers <= 1:
        return lambda: [write_field_task(t, root, storage_options) for t in tasks]
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("forkserver")
    )
    futures = [pool.submit(write_field_task, t, root, storage_options) for t in tasks]

    def join() -> list[list[tuple[str, dict[str, Any]]]]:
        try:
            return [f.result() for f in futures]
        except BrokenProcessPool:
            # e.g. a __main__ read from stdin cannot be re-imported by the workers;
            # every task is deterministic and idempotent, so write them all here.
            return [write_field_task(t, root, storage_options) for t in tasks]
        finally:
            pool.shutdown(cancel_futures=True)

    return join
