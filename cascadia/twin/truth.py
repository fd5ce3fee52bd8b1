"""What the twin world knows and the real one hides: the true deep temperature.

Written for scoring: ``truth/history.zarr`` holds the real history's hourly
500/1000 m temperature and daily shelf diagnostics; each projection source gets
``truth/projections/<family>/<source>.zarr`` with daily values, dims
(experiment_id, member_id, time, depth), in the source's own calendar;
``truth/index.csv`` maps every combination of the collections (reanalysis
members included) to its truth store.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cascadia.twin.ocean import DEPTHS, OceanResult, hourly_temperature
from cascadia.twin.realizations import Realization
from cascadia.twin.stores import StoreContext
from cascadia.twin.writers import as_uri, write_text, write_zarr

DEPTH_ATTRS = {"units": "m", "positive": "down", "standard_name": "depth", "axis": "Z"}


def daily_truth(ocean: OceanResult, time: Any, index: slice, river: np.ndarray) -> xr.Dataset:
    """Daily diagnostics of one realization over the days ``index``."""
    depth = ("depth", np.array(DEPTHS), DEPTH_ATTRS)

    def per_depth(values: np.ndarray, units: str, long_name: str) -> tuple:
        return (
            ("depth", "time"),
            values[:, index].astype("float32"),
            {"units": units, "long_name": long_name},
        )

    def shelf(values: np.ndarray, units: str, long_name: str) -> tuple:
        return ("time", values[index].astype("float32"), {"units": units, "long_name": long_name})

    ds = xr.Dataset(
        {
            "temperature": per_depth(
                ocean.temperature, "degree_Celsius", "true daily mean sea water temperature"
            ),
            "background_temperature": per_depth(
                ocean.background_temp, "degree_Celsius", "deep background temperature"
            ),
            "cascading_flux": per_depth(
                ocean.cascading_flux, "1", "dense-water plume flux reaching the depth (0 = none)"
            ),
            "density_excess": per_depth(
                ocean.density_excess, "kg m-3", "shelf minus ambient in-situ density at the depth"
            ),
            "shelf_temperature": shelf(
                ocean.shelf_temp, "degree_Celsius", "shelf slab temperature"
            ),
            "shelf_salinity": shelf(ocean.shelf_salt, "1e-3", "shelf slab practical salinity"),
            "shelf_sigma0": shelf(ocean.shelf_sigma0, "kg m-3", "shelf potential density anomaly"),
            "heat_flux": shelf(ocean.heat_flux, "W m-2", "net air-sea heat flux, positive down"),
            "river_discharge": (
                "time",
                river[index].astype("float32"),
                {"units": "m3 s-1", "long_name": "Rhône discharge"},
            ),
        },
        coords={"time": ("time", time[index]), "depth": depth},
    )
    return ds.transpose("time", "depth")


def write_history_truth(
    ctx: StoreContext, history: Realization, rng: np.random.Generator
) -> tuple[xr.Dataset, np.ndarray]:
    """The history's truth store; returns the daily dataset and the hourly series (2, H)."""
    ocean = history.ocean
    assert ocean is not None
    everything = slice(0, history.axis.size)
    daily = daily_truth(ocean, history.axis.time, everything, history.hidden.river)
    hourly = hourly_temperature(ocean.temperature, ocean.cascading_flux, rng)
    start = pd.Timestamp(history.axis.time[0])
    hours = pd.date_range(start, periods=hourly.shape[1], freq="h")
    ds = daily.rename(time="day")
    ds["temperature_hourly"] = (
        ("time", "depth"),
        hourly.T.astype("float32"),
        {"units": "degree_Celsius", "long_name": "true hourly sea water temperature"},
    )
    ds = ds.assign_coords(time=("time", hours))
    ds.attrs = {
        "title": "cascadia twin world: true ocean of the real history",
        "mooring_latitude": 42.43,
        "mooring_longitude": 3.545,
    }
    encoding = {"temperature_hourly": {"chunks": (24 * 366 * 5, 2)}}
    write_zarr(
        ds,
        ctx.url("truth", "history.zarr"),
        zarr_format=2,
        storage_options=ctx.storage_options,
        encoding=encoding,
    )
    return daily, hourly


def write_source_truth(
    ctx: StoreContext, family: str, source_id: str, parts: list[tuple[str, Realization]]
) -> list[dict[str, str]]:
    """One daily truth store per projection source, dims (experiment, member, time, depth).

    Time is the whole path (historical + scenario) in the source's calendar; each
    experiment is NaN outside its own period. Returns the truth-index rows.
    """
    experiments = list(dict.fromkeys(e for e, _ in parts))
    members = sorted({path.key[2] for _, path in parts})
    axis = parts[0][1].axis
    pieces = []
    for experiment in experiments:
        per_member = []
        for member in members:
            path = next(p for e, p in parts if e == experiment and p.key[2] == member)
            assert path.ocean is not None
            ds = daily_truth(path.ocean, axis.time, slice(0, axis.size), path.hidden.river)
            n_hist = path.historical_days
            inside = np.arange(axis.size) < n_hist
            if experiment != "historical":
                inside = ~inside
            per_member.append(ds.where(xr.DataArray(inside, dims="time")))
        pieces.append(xr.concat(per_member, dim=pd.Index(members, name="member_id")))
    ds = xr.concat(pieces, dim=pd.Index(experiments, name="experiment_id"))
    ds = ds.transpose("experiment_id", "member_id", "time", "depth")
    ds.attrs = {
        "title": f"cascadia twin world: true ocean under {source_id}",
        "calendar": axis.calendar,
        "family": family,
    }
    url = ctx.url("truth", "projections", family, f"{source_id}.zarr")
    write_zarr(ds, url, zarr_format=2, storage_options=ctx.storage_options)
    return [
        {"family": family, "source_id": source_id, "experiment_id": e, "member_id": m, "path": url}
        for e in experiments
        for m in members
        if any(ex == e and p.key[2] == m for ex, p in parts)
    ]


def write_truth_index(ctx: StoreContext, rows: list[dict[str, str]]) -> None:
    """``truth/index.csv``: every combination and the URL of its truth store."""
    frame = pd.DataFrame(
        rows, columns=["family", "source_id", "experiment_id", "member_id", "path"]
    )
    frame["path"] = [as_uri(p) for p in frame["path"]]
    write_text(frame.to_csv(index=False), ctx.url("truth", "index.csv"), ctx.storage_options)
