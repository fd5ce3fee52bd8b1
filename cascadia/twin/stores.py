"""The twin world's input stores, each in the conventions of the archive it imitates.

* ERA5 (ARCO-ERA5): one Zarr v3 store, hourly; long names; K, m s**-1, Pa;
  precipitation in m and radiation in J m**-2 accumulated over the hour *ending*
  at the time stamp; latitude descending; longitude 0-360 (west of Greenwich at 359);
  the land-sea mask ``land_sea_mask`` in (0 - 1), static; each chunk spans the whole
  domain, one hour per chunk in the full preset (ARCO's ``time: 1``).
* ERA5 from the new CDS (post-processed daily statistics): NetCDF per year with every
  variable; ``t2m``, ``d2m``, ``u10``, ``v10``, ``si10``, ``msl``, ``lsm`` daily means,
  ``tp`` (m) and ``ssrd`` (J m**-2) daily sums stamped at 00 UTC of their day;
  dimension ``valid_time``; latitude descending, longitude -180..180.
* 20CR (NOAA-PSL 20CRv3): NetCDF per member, variable and decade, daily; ``air``,
  ``rhum``, ``uwnd``, ``vwnd``, ``prmsl``, ``prate``; hours since 1800; latitude
  descending, longitude 0-360; errors that grow back in time.
* ERA-20C (ECMWF MARS NetCDF): one file per decade with every variable, 6-hourly;
  ``t2m``, ``d2m``, ``u10``, ``v10``, ``msl``, ``tp``; int16 packing with
  scale_factor/add_offset; ``tp`` accumulated over the 6 h ending at the stamp.
* CMIP6 (Pangeo): one Zarr v2 store per variable in DRS folders; ``noleap`` /
  ``360_day`` / ``standard`` calendars; time at noon with bounds; latitude
  ascending, longitude 0-360; scalar ``height`` of 2 m / 10 m; static model
  biases; some models also regridded (``gr``), one dataset in two versions.
* CORDEX (Med-/EURO-CORDEX): NetCDF per variable, daily; rotated pole (``rlat``,
  ``rlon``, 2-D ``lat``/``lon``, ``rotated_pole`` grid mapping); the driving
  model's calendar.

Every source carries its sea surface temperature (:mod:`cascadia.twin.sea`; K, NaN
over land): ERA5 ``sea_surface_temperature`` in the store and ``sst`` in the CDS files,
20CR ``sst.<decade>.nc`` per member, ERA-20C ``sst`` in the decade files, CMIP6 ``tos``
(degC) in ``Oday`` (one model ``Omon``) on a curvilinear ocean grid with ``areacello``
and ``sftof`` in ``Ofx``, and ``tos`` (degC) of a coupled CORDEX RCM.

Every source carries its land fraction, the cell-area share of land under the
twin's own coastline (:func:`cascadia.twin.fields.land_fraction`), in its
archive's convention: ERA5 ``land_sea_mask`` in the store, 20CR ``land.nc``,
ERA-20C an invariant file with ``lsm``, CMIP6 ``sftlf`` (%) as a Pangeo ``fx``
store per model and grid, CORDEX an ``sftlf`` (%) ``fx`` file per simulation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cascadia.twin.atmosphere import RegionalWeather
from cascadia.twin.fields import (
    daily_fields,
    dewpoint,
    land_fraction,
    specific_humidity,
    subdaily,
)
from cascadia.twin.grids import (
    ROTATED_POLE_LAT,
    ROTATED_POLE_LON,
    CurvilinearGrid,
    RegularGrid,
    RotatedGrid,
    bounds,
)
from cascadia.twin.timeaxis import DayAxis
from cascadia.twin.writers import (
    ZARR3_COMPRESSOR,
    as_uri,
    join,
    write_netcdf,
    write_zarr,
)

FLOAT = "float32"


@dataclass
class StoreContext:
    """Where and how stores are written, and the rows they add to the collections."""

    root: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def url(self, *parts: str) -> str:
        return join(self.root, *parts)

    def add_row(self, collection: str, **row: Any) -> None:
        self.rows.setdefault(collection, []).append(row)


def slice_weather(weather: RegionalWeather, index: slice) -> RegionalWeather:
    """The days ``index`` of a regional weather series."""
    values = {
        k: (v[..., index] if isinstance(v, np.ndarray) else v) for k, v in vars(weather).items()
    }
    values["extra"] = {k: v[..., index] for k, v in weather.extra.items()}
    return RegionalWeather(**values)


def decades(
    axis: DayAxis, first: int, last: int, length: int = 10
) -> Iterator[tuple[int, int, slice]]:
    """(start year, end year, day slice) blocks of ``length`` years within [first, last]."""
    for start in range(first, last + 1, length):
        end = min(start + length - 1, last)
        days = np.flatnonzero((axis.year >= start) & (axis.year <= end))
        yield start, end, slice(int(days[0]), int(days[-1]) + 1)


# --------------------------------------------------------------------------- ERA5


ERA5_NAMES = {
    "2m_temperature": ("2 metre temperature", "K", "t2m"),
    "2m_dewpoint_temperature": ("2 metre dewpoint temperature", "K", "d2m"),
    "10m_u_component_of_wind": ("10 metre U wind component", "m s**-1", "u10"),
    "10m_v_component_of_wind": ("10 metre V wind component", "m s**-1", "v10"),
    "mean_sea_level_pressure": ("Mean sea level pressure", "Pa", "msl"),
    "total_precipitation": ("Total precipitation", "m", "tp"),
    "surface_solar_radiation_downwards": ("Surface solar radiation downwards", "J m**-2", "ssrd"),
}
#: ARCO-ERA5's land-sea mask (name, long name, units, short name); static in the twin.
ERA5_LAND_SEA_MASK = ("land_sea_mask", "Land-sea mask", "(0 - 1)", "lsm")
#: ARCO-ERA5's sea surface temperature: K, NaN over land, one value per day (OSTIA-like
#: daily analyses) repeated on the day's hours.
ERA5_SST = ("sea_surface_temperature", "Sea surface temperature", "K", "sst")


def _year_days(axis: DayAxis, start: int, end: int) -> np.ndarray:
    """Indices of the days of years ``start``..``end`` on ``axis``."""
    return np.flatnonzero((axis.year >= start) & (axis.year <= end))


def era5_hourly_fields(
    axis: DayAxis,
    weather: RegionalWeather,
    grid: RegularGrid,
    years: tuple[int, int],
    seed: np.random.SeedSequence,
) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """(first year, last year, hourly fields) of ERA5, decade by decade (bounded memory).

    The one source of ERA5's weather: the hourly store and the CDS daily files are
    both written from it, so their daily totals and means agree exactly.
    """
    lat2, lon2 = grid.mesh()
    # SeedSequence.spawn is stateful: a fresh copy gives every call the same children
    seed = np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key, pool_size=seed.pool_size)
    for k, (start, end, days) in enumerate(decades(axis, *years)):
        rng = np.random.default_rng(seed.spawn(k + 1)[-1])
        daily = daily_fields(slice_weather(weather, days), lat2, lon2, rng)
        yield start, end, subdaily(daily, 24, axis.phase[days], rng)


def write_era5(
    ctx: StoreContext,
    axis: DayAxis,
    weather: RegionalWeather,
    grid: RegularGrid,
    years: tuple[int, int],
    seed: np.random.SeedSequence,
    time_chunk: int = 24 * 92,
    sst: np.ndarray | None = None,
) -> None:
    """ARCO-ERA5-like hourly store, written decade by decade (bounded memory).

    Each chunk holds ``time_chunk`` hours of the whole domain: 1 is ARCO-ERA5's
    layout (one global hour per chunk), the trap a regional extraction must read
    around; larger chunks write small worlds faster. The values do not depend on it.
    ``sst`` (days of ``axis``, lat, lon; K, NaN over land) adds
    ``sea_surface_temperature``, each day's value on its 24 hours.
    """
    url = ctx.url("reanalysis", "era5", "era5-hourly-single-levels.zarr")
    carry: dict[str, np.ndarray] = {}
    first = True
    for start, end, hourly in era5_hourly_fields(axis, weather, grid, years, seed):
        time = pd.date_range(f"{start}-01-01", f"{end}-12-31 23:00", freq="h")
        accumulated = {}
        for name, step_total in (
            ("total_precipitation", hourly["pr"] * 3600.0 / 1000.0),  # kg m-2 s-1 -> m
            ("surface_solar_radiation_downwards", hourly["rsds"] * 3600.0),  # -> J m-2
        ):
            # the value stamped t is the total of the hour ending at t
            previous = carry.get(name, step_total[:1])
            accumulated[name] = np.concatenate([previous, step_total[:-1]])
            carry[name] = step_total[-1:]
        values = {
            "2m_temperature": hourly["tas"],
            "2m_dewpoint_temperature": dewpoint(hourly["tas"], hourly["hurs"]),
            "10m_u_component_of_wind": hourly["uas"],
            "10m_v_component_of_wind": hourly["vas"],
            "mean_sea_level_pressure": hourly["psl"],
            **accumulated,
        }
        names = dict(ERA5_NAMES)
        if sst is not None:
            names[ERA5_SST[0]] = ERA5_SST[1:]
            values[ERA5_SST[0]] = np.repeat(sst[_year_days(axis, start, end)], 24, axis=0)
        ds = xr.Dataset(
            {
                name: (
                    ("time", "latitude", "longitude"),
                    data.astype(FLOAT),
                    {
                        "long_name": names[name][0],
                        "units": names[name][1],
                        "short_name": names[name][2],
                    },
                )
                for name, data in values.items()
            },
            coords={
                "time": ("time", time),
                "latitude": (
                    "latitude",
                    grid.lat,
                    {"units": "degrees_north", "long_name": "latitude"},
                ),
                "longitude": (
                    "longitude",
                    grid.lon,
                    {"units": "degrees_east", "long_name": "longitude"},
                ),
            },
            attrs={
                "title": "cascadia twin world: ERA5-like hourly single levels (ARCO layout)",
                "institution": "cascadia synthetic twin (not ECMWF data)",
            },
        )
        if first:
            mask, long_name, units, short_name = ERA5_LAND_SEA_MASK
            ds[mask] = (
                ("latitude", "longitude"),
                land_fraction(grid).astype(FLOAT),
                {"long_name": long_name, "units": units, "short_name": short_name},
            )
            encoding = {
                name: {
                    "chunks": (time_chunk, grid.lat.size, grid.lon.size),
                    "compressors": [ZARR3_COMPRESSOR],
                }
                for name in values
            }
            encoding[mask] = {
                "chunks": (grid.lat.size, grid.lon.size),
                "compressors": [ZARR3_COMPRESSOR],
            }
            encoding["time"] = {
                "units": "hours since 1900-01-01",
                "dtype": "int64",
                "calendar": "proleptic_gregorian",
            }
            write_zarr(
                ds, url, zarr_format=3, storage_options=ctx.storage_options, encoding=encoding
            )
            first = False
        else:
            write_zarr(
                ds, url, zarr_format=3, storage_options=ctx.storage_options, append_dim="time"
            )
    written = [*ERA5_NAMES, ERA5_LAND_SEA_MASK[0], *([ERA5_SST[0]] if sst is not None else [])]
    for name in written:
        ctx.add_row(
            "era5",
            activity_id="reanalysis",
            institution_id="ECMWF",
            source_id="ERA5",
            experiment_id="reanalysis",
            member_id="r1",
            frequency="fx" if name == ERA5_LAND_SEA_MASK[0] else "1hr",
            variable_id=name,
            time_range=f"{years[0]}-{years[1]}",
            path=as_uri(url),
            format="zarr",
        )


#: CDS daily statistics: short name -> (long name, units, CF standard name, statistic).
ERA5_CDS_DAILY = {
    "t2m": ("2 metre temperature", "K", "unknown", "daily_mean"),
    "d2m": ("2 metre dewpoint temperature", "K", "unknown", "daily_mean"),
    "u10": ("10 metre U wind component", "m s**-1", "unknown", "daily_mean"),
    "v10": ("10 metre V wind component", "m s**-1", "unknown", "daily_mean"),
    "si10": ("10 metre wind speed", "m s**-1", "unknown", "daily_mean"),
    "msl": ("Mean sea level pressure", "Pa", "air_pressure_at_mean_sea_level", "daily_mean"),
    "tp": ("Total precipitation", "m", "unknown", "daily_sum"),
    "ssrd": ("Surface short-wave (solar) radiation downwards", "J m**-2", "unknown", "daily_sum"),
    "lsm": ("Land-sea mask", "(0 - 1)", "unknown", "daily_mean"),
    "sst": ("Sea surface temperature", "K", "unknown", "daily_mean"),
}


def _per_day(values: np.ndarray, how: str) -> np.ndarray:
    """Daily mean or sum of hourly values (time first, 24 steps per day from 00 UTC)."""
    days = values.reshape(values.shape[0] // 24, 24, *values.shape[1:])
    return days.mean(axis=1) if how == "daily_mean" else days.sum(axis=1)


def write_era5_cds_daily(
    ctx: StoreContext,
    axis: DayAxis,
    weather: RegionalWeather,
    grid: RegularGrid,
    years: tuple[int, int],
    seed: np.random.SeedSequence,
    sst: np.ndarray | None = None,
) -> None:
    """ERA5 daily statistics as the new CDS delivers them: one NetCDF per year, every variable.

    The same hourly weather as :func:`write_era5` (same grid, same seed), reduced
    the way the CDS "ERA5 post-processed daily statistics" do it: means of the 24
    hourly values 00-23 UTC, and for accumulations the sum of the 24 hours of the
    day (01 UTC to 00 UTC of the next day in ERA5's end-of-hour stamps), stamped
    at 00 UTC of the day. NetCDF as the new CDS writes it: dimension
    ``valid_time`` (seconds since 1970), ``latitude`` descending, ``longitude``
    -180..180 as an area request returns it, scalar ``number`` and per-step
    ``expver`` coordinates. The land-sea mask, requested with the rest, repeats
    on every day. ``sst`` (as :func:`write_era5`'s) adds the daily ``sst`` (K, NaN over
    land), the daily mean of the hourly store's.
    """
    lsm = land_fraction(grid)
    for start, end, hourly in era5_hourly_fields(axis, weather, grid, years, seed):
        amounts = {
            "tp": hourly["pr"] * 3600.0 / 1000.0,  # kg m-2 s-1 -> m of water per hour
            "ssrd": hourly["rsds"] * 3600.0,  # W m-2 -> J m-2 per hour
        }
        fields = {
            "t2m": hourly["tas"],
            "d2m": dewpoint(hourly["tas"], hourly["hurs"]),
            "u10": hourly["uas"],
            "v10": hourly["vas"],
            "si10": np.hypot(hourly["uas"], hourly["vas"]),
            "msl": hourly["psl"],
            **amounts,
        }
        daily = {n: _per_day(v, ERA5_CDS_DAILY[n][3]) for n, v in fields.items()}
        days = pd.date_range(f"{start}-01-01", f"{end}-12-31", freq="D")
        daily["lsm"] = np.broadcast_to(lsm, (days.size, *lsm.shape))
        if sst is not None:
            daily["sst"] = sst[_year_days(axis, start, end)]
        for year in range(start, end + 1):
            index = np.flatnonzero(days.year == year)
            ds = _cds_dataset({n: v[index] for n, v in daily.items()}, days[index], grid, year)
            url = ctx.url("reanalysis", "era5-cds", f"era5-daily-stats_gulf-of-lion_{year}.nc")
            encoding: dict[str, dict[str, Any]] = {
                n: {"zlib": True, "complevel": 1, "shuffle": True, "_FillValue": np.float32("nan")}
                for n in daily
            }
            encoding["valid_time"] = {
                "units": "seconds since 1970-01-01",
                "calendar": "proleptic_gregorian",
                "dtype": "int64",
            }
            write_netcdf(ds, url, storage_options=ctx.storage_options, encoding=encoding)
            for name in daily:
                ctx.add_row(
                    "era5-cds",
                    activity_id="reanalysis",
                    institution_id="ECMWF",
                    source_id="ERA5",
                    experiment_id="reanalysis",
                    member_id="r1",
                    frequency="day",
                    variable_id=name,
                    time_range=f"{year}0101-{year}1231",
                    path=as_uri(url),
                    format="netcdf",
                )


def _cds_dataset(
    daily: dict[str, np.ndarray], days: pd.DatetimeIndex, grid: RegularGrid, year: int
) -> xr.Dataset:
    """One year of daily statistics with the coordinates and attributes of a CDS NetCDF."""
    ds = xr.Dataset(
        {
            name: (
                ("valid_time", "latitude", "longitude"),
                values.astype(FLOAT),
                {
                    "long_name": ERA5_CDS_DAILY[name][0],
                    "units": ERA5_CDS_DAILY[name][1],
                    "standard_name": ERA5_CDS_DAILY[name][2],
                },
            )
            for name, values in daily.items()
        },
        coords={
            "number": (
                (),
                np.int64(0),
                {
                    "long_name": "ensemble member numerical id",
                    "units": "1",
                    "standard_name": "realization",
                },
            ),
            "valid_time": ("valid_time", days, {"long_name": "time", "standard_name": "time"}),
            "latitude": (
                "latitude",
                grid.lat,
                {
                    "units": "degrees_north",
                    "standard_name": "latitude",
                    "long_name": "latitude",
                    "stored_direction": "decreasing",
                },
            ),
            "longitude": (
                "longitude",
                (grid.lon + 180.0) % 360.0 - 180.0,
                {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"},
            ),
            "expver": (
                "valid_time",
                np.full(days.size, "0001", dtype=object),
                {"long_name": "Experiment version"},
            ),
        },
        attrs={
            "Conventions": "CF-1.7",
            "institution": "cascadia synthetic twin (not ECMWF data)",
            "title": f"cascadia twin world: ERA5-like post-processed daily statistics, {year}",
            "history": "cascadia twin world: daily statistics of the hourly ERA5-like fields "
            "(means of 00-23 UTC; accumulations summed over the day)",
        },
    )
    # an "area" request returns longitudes -180..180 in ascending order
    return ds.sortby("longitude")


# --------------------------------------------------------------------------- 20CR

TWENTYCR_NAMES = {
    # variable: (file stem, long name, units, canonical field)
    "air": ("air.2m", "Daily 2m air temperature", "K", "tas"),
    "rhum": ("rhum.2m", "Daily relative humidity at 2 m", "%", "hurs"),
    "uwnd": ("uwnd.10m", "Daily u-wind at 10 m", "m/s", "uas"),
    "vwnd": ("vwnd.10m", "Daily v-wind at 10 m", "m/s", "vas"),
    "prmsl": ("prmsl", "Daily pressure at mean sea level", "Pa", "psl"),
    "prate": ("prate", "Daily precipitation rate at surface", "kg/m^2/s", "pr"),
}


def write_twentycr(
    ctx: StoreContext,
    axis: DayAxis,
    member_weathers: list[RegionalWeather],
    grid: RegularGrid,
    years: tuple[int, int],
    seed: np.random.SeedSequence,
    member_ssts: list[np.ndarray] | None = None,
) -> None:
    """20CRv3-like daily NetCDF: one file per member, variable and decade, and ``land.nc``.

    The land fraction is one file for every member, listed once per member.
    ``member_ssts`` (per member: days of ``axis``, lat, lon; K, NaN over land) adds
    ``sst.<decade>.nc`` per member: 20CRv3's prescribed boundary SST (HadISST2-based,
    one realization per member), variable ``sst`` in K.
    """
    lat2, lon2 = grid.mesh()
    land_url = ctx.url("reanalysis", "20crv3", "land.nc")
    land = xr.Dataset(
        {
            "land": (
                ("lat", "lon"),
                land_fraction(grid).astype(FLOAT),
                {"long_name": "Land-sea mask (fraction of land)", "units": "1"},
            )
        },
        coords={
            "lat": ("lat", grid.lat, {"units": "degrees_north", "axis": "Y"}),
            "lon": ("lon", grid.lon, {"units": "degrees_east", "axis": "X"}),
        },
        attrs={"title": "20CRv3-like land-sea mask", "Conventions": "CF-1.6"},
    )
    write_netcdf(land, land_url, storage_options=ctx.storage_options)
    for m in range(len(member_weathers)):
        ctx.add_row(
            "20cr",
            activity_id="reanalysis",
            institution_id="NOAA-PSL",
            source_id="20CRv3",
            experiment_id="reanalysis",
            member_id=f"mem{m + 1:03d}",
            frequency="fx",
            variable_id="land",
            time_range="fx",
            path=as_uri(land_url),
            format="netcdf",
        )
    for m, weather in enumerate(member_weathers):
        member = f"mem{m + 1:03d}"
        for k, (start, end, days) in enumerate(decades(axis, *years)):
            rng = np.random.default_rng(seed.spawn(1000 * m + k + 1)[-1])
            daily = daily_fields(slice_weather(weather, days), lat2, lon2, rng)
            time = pd.date_range(f"{start}-01-01", f"{end}-12-31", freq="D")
            for var, (stem, long_name, units, canonical) in TWENTYCR_NAMES.items():
                attrs = {
                    "long_name": long_name,
                    "units": units,
                    "dataset": "NOAA-CIRES-DOE 20th Century Reanalysis V3 (twin)",
                }
                title = f"20CRv3-like {long_name}, ensemble member {member}"
                _write_twentycr_daily(
                    ctx, var, daily[canonical], attrs, title, time, grid, member, (start, end), stem
                )
            if member_ssts is not None:
                values = member_ssts[m][_year_days(axis, start, end)]
                _write_twentycr_sst(ctx, values, time, grid, member, (start, end))


def _write_twentycr_sst(
    ctx: StoreContext,
    values: np.ndarray,
    time: pd.DatetimeIndex,
    grid: RegularGrid,
    member: str,
    span: tuple[int, int],
) -> None:
    """One member's decade of 20CRv3-like boundary SST (K, NaN over land)."""
    attrs = {
        "long_name": "Daily sea surface temperature (prescribed boundary condition)",
        "units": "K",
        "standard_name": "sea_surface_temperature",
        "dataset": "NOAA-CIRES-DOE 20th Century Reanalysis V3 (twin)",
        "comment": "HadISST2-like boundary SST of this member; missing over land",
    }
    title = f"20CRv3-like sea surface temperature, ensemble member {member}"
    _write_twentycr_daily(ctx, "sst", values, attrs, title, time, grid, member, span, "sst")


def _write_twentycr_daily(
    ctx: StoreContext,
    var: str,
    values: np.ndarray,
    attrs: dict[str, str],
    title: str,
    time: pd.DatetimeIndex,
    grid: RegularGrid,
    member: str,
    span: tuple[int, int],
    stem: str,
) -> None:
    """One 20CRv3-like daily file ``<stem>.<start>-<end>.nc`` of one member and its row."""
    ds = xr.Dataset(
        {var: (("time", "lat", "lon"), values.astype(FLOAT), attrs)},
        coords={
            "time": ("time", time, {"long_name": "Time", "axis": "T"}),
            "lat": ("lat", grid.lat, {"units": "degrees_north", "axis": "Y"}),
            "lon": ("lon", grid.lon, {"units": "degrees_east", "axis": "X"}),
        },
        attrs={"title": title, "Conventions": "CF-1.6", "ensemble_member": member},
    )
    encoding = {
        var: {"zlib": True, "complevel": 4, "_FillValue": -9.96921e36},
        "time": {"units": "hours since 1800-01-01 00:00:0.0", "dtype": "float64"},
    }
    url = ctx.url("reanalysis", "20crv3", member, f"{stem}.{span[0]}-{span[1]}.nc")
    write_netcdf(ds, url, storage_options=ctx.storage_options, encoding=encoding)
    ctx.add_row(
        "20cr",
        activity_id="reanalysis",
        institution_id="NOAA-PSL",
        source_id="20CRv3",
        experiment_id="reanalysis",
        member_id=member,
        frequency="day",
        variable_id=var,
        time_range=f"{span[0]}0101-{span[1]}1231",
        path=as_uri(url),
        format="netcdf",
    )


# --------------------------------------------------------------------------- ERA-20C

ERA20C_NAMES = {
    "t2m": ("2 metre temperature", "K", "tas"),
    "d2m": ("2 metre dewpoint temperature", "K", None),
    "u10": ("10 metre U wind component", "m s**-1", "uas"),
    "v10": ("10 metre V wind component", "m s**-1", "vas"),
    "msl": ("Mean sea level pressure", "Pa", "psl"),
    "tp": ("Total precipitation", "m", None),
    "sst": ("Sea surface temperature", "K", None),
}


def _packing(values: np.ndarray) -> dict[str, Any]:
    """int16 packing parameters as ECMWF's NetCDF converters write them."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    scale = (hi - lo) / 65532.0 or 1.0
    return {
        "dtype": "int16",
        "scale_factor": scale,
        "add_offset": (hi + lo) / 2.0,
        "_FillValue": -32767,
        "zlib": True,
        "complevel": 4,
    }


def write_era20c(
    ctx: StoreContext,
    axis: DayAxis,
    weather: RegionalWeather,
    grid: RegularGrid,
    years: tuple[int, int],
    seed: np.random.SeedSequence,
    sst: np.ndarray | None = None,
) -> None:
    """ERA-20C-like 6-hourly NetCDF, one file per decade holding every variable.

    The land-sea mask ``lsm`` comes in an invariant file with one time step, as
    ECMWF's invariant fields do. ``sst`` (days of ``axis``, lat, lon; K, NaN over
    land) adds ``sst`` to the decade files, each day's value (ERA-20C's HadISST2
    boundary) on its four steps.
    """
    lat2, lon2 = grid.mesh()
    invariant = xr.Dataset(
        {
            "lsm": (
                ("time", "latitude", "longitude"),
                land_fraction(grid)[None].astype(FLOAT),
                {"long_name": "Land-sea mask", "units": "(0 - 1)"},
            )
        },
        coords={
            "time": ("time", pd.DatetimeIndex([f"{years[0]}-01-01"]), {"long_name": "time"}),
            "latitude": ("latitude", grid.lat, {"units": "degrees_north"}),
            "longitude": ("longitude", grid.lon, {"units": "degrees_east"}),
        },
        attrs={"Conventions": "CF-1.6", "history": "cascadia twin world: ERA-20C-like invariant"},
    )
    invariant_url = ctx.url("reanalysis", "era20c", "era20c_invariant.nc")
    write_netcdf(
        invariant,
        invariant_url,
        storage_options=ctx.storage_options,
        encoding={"time": {"units": "hours since 1900-01-01 00:00:00.0", "dtype": "int32"}},
    )
    ctx.add_row(
        "era20c",
        activity_id="reanalysis",
        institution_id="ECMWF",
        source_id="ERA-20C",
        experiment_id="reanalysis",
        member_id="r1",
        frequency="fx",
        variable_id="lsm",
        time_range=f"{years[0]}0101-{years[0]}0101",
        path=as_uri(invariant_url),
        format="netcdf",
    )
    carry: np.ndarray | None = None
    for k, (start, end, days) in enumerate(decades(axis, *years)):
        rng = np.random.default_rng(seed.spawn(k + 1)[-1])
        daily = daily_fields(slice_weather(weather, days), lat2, lon2, rng)
        six = subdaily(daily, 4, axis.phase[days], rng)
        total = six["pr"] * 6 * 3600.0 / 1000.0  # m of water per 6 h
        tp = np.concatenate([total[:1] if carry is None else carry, total[:-1]])
        carry = total[-1:]
        values = {
            "t2m": six["tas"],
            "d2m": dewpoint(six["tas"], six["hurs"]),
            "u10": six["uas"],
            "v10": six["vas"],
            "msl": six["psl"],
            "tp": tp,
        }
        if sst is not None:
            values["sst"] = np.repeat(sst[_year_days(axis, start, end)], 4, axis=0)
        time = pd.date_range(f"{start}-01-01", f"{end}-12-31 18:00", freq="6h")
        ds = xr.Dataset(
            {
                name: (
                    ("time", "latitude", "longitude"),
                    data,
                    {"long_name": ERA20C_NAMES[name][0], "units": ERA20C_NAMES[name][1]},
                )
                for name, data in values.items()
            },
            coords={
                "time": ("time", time, {"long_name": "time"}),
                "latitude": ("latitude", grid.lat, {"units": "degrees_north"}),
                "longitude": ("longitude", grid.lon, {"units": "degrees_east"}),
            },
            attrs={
                "Conventions": "CF-1.6",
                "history": "cascadia twin world: ERA-20C-like MARS NetCDF conversion",
            },
        )
        encoding: dict[str, dict[str, Any]] = {n: _packing(v) for n, v in values.items()}
        encoding["time"] = {
            "units": "hours since 1900-01-01 00:00:00.0",
            "dtype": "int32",
            "calendar": "gregorian",
        }
        url = ctx.url("reanalysis", "era20c", f"era20c_sfc_6hr_{start}-{end}.nc")
        write_netcdf(ds, url, storage_options=ctx.storage_options, encoding=encoding)
        for name in values:
            ctx.add_row(
                "era20c",
                activity_id="reanalysis",
                institution_id="ECMWF",
                source_id="ERA-20C",
                experiment_id="reanalysis",
                member_id="r1",
                frequency="6hr",
                variable_id=name,
                time_range=f"{start}0101-{end}1231",
                path=as_uri(url),
                format="netcdf",
            )


# --------------------------------------------------------------------------- CMIP6 / CORDEX

CMIP_ATTRS = {
    "tas": ("air_temperature", "Near-Surface Air Temperature", "K"),
    "hurs": ("relative_humidity", "Near-Surface Relative Humidity", "%"),
    "huss": ("specific_humidity", "Near-Surface Specific Humidity", "1"),
    "pr": ("precipitation_flux", "Precipitation", "kg m-2 s-1"),
    "uas": ("eastward_wind", "Eastward Near-Surface Wind", "m s-1"),
    "vas": ("northward_wind", "Northward Near-Surface Wind", "m s-1"),
    "sfcWind": ("wind_speed", "Near-Surface Wind Speed", "m s-1"),
    "psl": ("air_pressure_at_mean_sea_level", "Sea Level Pressure", "Pa"),
    "tos": ("sea_surface_temperature", "Sea Surface Temperature", "degC"),
}
CORDEX_VARIABLES = ("tas", "hurs", "pr", "uas", "vas", "sfcWind", "psl")


def biased_fields(
    weather: RegionalWeather,
    lat2: np.ndarray,
    lon2: np.ndarray,
    rng: np.random.Generator,
    phase: np.ndarray,
    tas_bias: float,
    hurs_bias: float,
    pr_factor: float,
    wind_factor: float,
    psl_bias: float,
) -> dict[str, np.ndarray]:
    """Daily fields of a model: physical fields plus the model's static biases.

    The temperature bias is 30 % larger in winter; ``sfcWind`` is the daily mean
    of sub-daily speeds, hence ~8 % above the speed of the daily-mean wind.
    """
    daily = daily_fields(weather, lat2, lon2, rng)
    seasonal = 1.0 + 0.3 * np.cos(2 * np.pi * (phase - 0.05))
    daily["tas"] = daily["tas"] + tas_bias * seasonal[:, None, None]
    daily["hurs"] = np.clip(daily["hurs"] + hurs_bias, 5.0, 100.0)
    daily["pr"] = daily["pr"] * pr_factor
    daily["uas"] = daily["uas"] * wind_factor
    daily["vas"] = daily["vas"] * wind_factor
    daily["sfcWind"] = np.hypot(daily["uas"], daily["vas"]) * 1.08
    daily["psl"] = daily["psl"] + psl_bias
    daily["huss"] = specific_humidity(daily["tas"], daily["hurs"], daily["psl"])
    return daily


def _variable_attrs(variable: str, **extra: str) -> dict[str, str]:
    """CF attributes of a CMIP/CORDEX daily variable."""
    standard_name, long_name, units = CMIP_ATTRS[variable]
    return {"standard_name": standard_name, "long_name": long_name, "units": units, **extra}


def _noon_time(axis: DayAxis, index: slice, units: str) -> tuple[xr.Variable, xr.Variable]:
    """CMIP daily time at noon with [day start, day end] bounds, in the axis calendar."""
    import cftime

    start = axis.time[index]
    nums = cftime.date2num(
        [cftime.datetime(t.year, t.month, t.day, calendar=axis.calendar) for t in start],
        units,
        calendar=axis.calendar,
    )
    nums = np.asarray(nums, dtype="float64")
    attrs = {
        "units": units,
        "calendar": axis.calendar,
        "standard_name": "time",
        "axis": "T",
        "bounds": "time_bnds",
    }
    time = xr.Variable("time", nums + 0.5, attrs)
    bnds = xr.Variable(("time", "bnds"), np.stack([nums, nums + 1.0], axis=1))
    return time, bnds


#: Height of the near-surface variables, m: a scalar ``height`` coordinate in real
#: CMIP6 data (2 m screen level, 10 m winds) that makes a naive merge of the
#: variables fail ("conflicting values for variable 'height'").
CMIP_HEIGHTS = {"tas": 2.0, "hurs": 2.0, "huss": 2.0, "uas": 10.0, "vas": 10.0, "sfcWind": 10.0}
#: Version of every CMIP6-like dataset (Pangeo's ``version`` column, ``v`` in the path).
CMIP_VERSION = "20260101"


def cmip_dataset(
    values: np.ndarray,
    axis: DayAxis,
    index: slice,
    grid: RegularGrid,
    meta: dict[str, str],
    variable: str,
    grid_label: str,
) -> xr.Dataset:
    """One variable of one (source, experiment, member) as a CMIP6 Zarr store holds it."""
    time, time_bnds = _noon_time(axis, index, "days since 1850-01-01")
    coords: dict[str, Any] = {
        "time": time,
        "lat": (
            "lat",
            grid.lat,
            {
                "units": "degrees_north",
                "standard_name": "latitude",
                "axis": "Y",
                "bounds": "lat_bnds",
            },
        ),
        "lon": (
            "lon",
            grid.lon,
            {
                "units": "degrees_east",
                "standard_name": "longitude",
                "axis": "X",
                "bounds": "lon_bnds",
            },
        ),
    }
    if variable in CMIP_HEIGHTS:
        coords["height"] = (
            (),
            CMIP_HEIGHTS[variable],
            {
                "units": "m",
                "axis": "Z",
                "positive": "up",
                "long_name": "height",
                "standard_name": "height",
            },
        )
    ds = xr.Dataset(
        {
            variable: (
                ("time", "lat", "lon"),
                values.astype(FLOAT),
                _variable_attrs(variable, cell_methods="area: mean time: mean"),
            ),
            "time_bnds": time_bnds,
            "lat_bnds": (("lat", "bnds"), bounds(grid.lat)),
            "lon_bnds": (("lon", "bnds"), bounds(grid.lon)),
        },
        coords=coords,
        attrs={
            "Conventions": "CF-1.7 CMIP-6.2",
            "activity_id": meta["activity_id"],
            "institution_id": meta["institution_id"],
            "source_id": meta["source_id"],
            "experiment_id": meta["experiment_id"],
            "variant_label": meta["member_id"],
            "table_id": "day",
            "variable_id": variable,
            "grid_label": grid_label,
            "frequency": "day",
            "further_info_url": "cascadia synthetic twin world (not CMIP6 data)",
        },
    )
    return ds.set_coords(["time_bnds", "lat_bnds", "lon_bnds"])


def write_cmip_store(
    ctx: StoreContext, ds: xr.Dataset, meta: dict[str, str], version: str = CMIP_VERSION
) -> None:
    """Write a :func:`cmip_dataset` where Pangeo keeps it, and its row of the collection.

    The path is the CMIP6 DRS (``.../<table>/<variable>/<grid>/v<version>``) and the
    ``zstore`` URL ends with "/" as Pangeo's do; ``dcpp_init_year`` is an empty cell.
    """
    variable, grid_label = ds.attrs["variable_id"], ds.attrs["grid_label"]
    table = ds.attrs["table_id"]
    url = ctx.url(
        "cmip6",
        meta["activity_id"],
        meta["institution_id"],
        meta["source_id"],
        meta["experiment_id"],
        meta["member_id"],
        table,
        variable,
        grid_label,
        f"v{version}",
    )
    encoding = {
        variable: {"chunks": (3650, *ds[variable].shape[1:])},
        "time": {"dtype": "float64"},
    }
    write_zarr(ds, url, zarr_format=2, storage_options=ctx.storage_options, encoding=encoding)
    ctx.add_row(
        "cmip6",
        activity_id=meta["activity_id"],
        institution_id=meta["institution_id"],
        source_id=meta["source_id"],
        experiment_id=meta["experiment_id"],
        member_id=meta["member_id"],
        table_id=table,
        variable_id=variable,
        grid_label=grid_label,
        zstore=as_uri(url) + "/",
        dcpp_init_year="",
        version=version,
    )


def write_cmip_fx(ctx: StoreContext, grid: RegularGrid, meta: dict[str, str]) -> None:
    """A Pangeo-like ``fx`` Zarr v2 store of ``sftlf`` (%) for one model and grid.

    As in the Pangeo collection, fixed fields sit under one experiment and member
    (``meta``'s, typically historical r1i1p1f1) with ``table_id`` fx and no time;
    ``meta["grid_label"]`` (default ``gn``) names the grid.
    """
    grid_label = meta.get("grid_label", "gn")
    ds = xr.Dataset(
        {
            "sftlf": (
                ("lat", "lon"),
                (100.0 * land_fraction(grid)).astype(FLOAT),
                {
                    "standard_name": "land_area_fraction",
                    "long_name": "Percentage of the Grid Cell Occupied by Land (Including Lakes)",
                    "units": "%",
                    "cell_methods": "area: mean",
                },
            ),
            "lat_bnds": (("lat", "bnds"), bounds(grid.lat)),
            "lon_bnds": (("lon", "bnds"), bounds(grid.lon)),
        },
        coords={
            "lat": (
                "lat",
                grid.lat,
                {"units": "degrees_north", "standard_name": "latitude", "bounds": "lat_bnds"},
            ),
            "lon": (
                "lon",
                grid.lon,
                {"units": "degrees_east", "standard_name": "longitude", "bounds": "lon_bnds"},
            ),
        },
        attrs={
            "Conventions": "CF-1.7 CMIP-6.2",
            "activity_id": meta["activity_id"],
            "institution_id": meta["institution_id"],
            "source_id": meta["source_id"],
            "experiment_id": meta["experiment_id"],
            "variant_label": meta["member_id"],
            "table_id": "fx",
            "variable_id": "sftlf",
            "grid_label": grid_label,
            "frequency": "fx",
            "further_info_url": "cascadia synthetic twin world (not CMIP6 data)",
        },
    ).set_coords(["lat_bnds", "lon_bnds"])
    url = ctx.url(
        "cmip6",
        meta["activity_id"],
        meta["institution_id"],
        meta["source_id"],
        meta["experiment_id"],
        meta["member_id"],
        "fx",
        "sftlf",
        grid_label,
        f"v{CMIP_VERSION}",
    )
    write_zarr(ds, url, zarr_format=2, storage_options=ctx.storage_options)
    ctx.add_row(
        "cmip6",
        activity_id=meta["activity_id"],
        institution_id=meta["institution_id"],
        source_id=meta["source_id"],
        experiment_id=meta["experiment_id"],
        member_id=meta["member_id"],
        table_id="fx",
        variable_id="sftlf",
        grid_label=grid_label,
        zstore=as_uri(url) + "/",
        dcpp_init_year="",
        version=CMIP_VERSION,
    )


def _ocean_grid_coords(grid: CurvilinearGrid) -> dict[str, tuple[Any, ...]]:
    """CMOR's coordinates of a curvilinear ocean grid: index ``j``/``i``, 2-D
    ``latitude``/``longitude`` (0-360) and their cell ``vertices``."""
    lat, lon = grid.mesh()
    vlat, vlon = grid.vertices()
    return {
        "j": (
            "j",
            np.arange(grid.ny, dtype="int32"),
            {"long_name": "cell index along second dimension", "units": "1"},
        ),
        "i": (
            "i",
            np.arange(grid.nx, dtype="int32"),
            {"long_name": "cell index along first dimension", "units": "1"},
        ),
        "latitude": (
            ("j", "i"),
            lat,
            {"standard_name": "latitude", "units": "degrees_north", "bounds": "vertices_latitude"},
        ),
        "longitude": (
            ("j", "i"),
            lon % 360.0,
            {"standard_name": "longitude", "units": "degrees_east", "bounds": "vertices_longitude"},
        ),
        "vertices_latitude": (("j", "i", "vertices"), vlat, {"units": "degrees_north"}),
        "vertices_longitude": (("j", "i", "vertices"), vlon % 360.0, {"units": "degrees_east"}),
    }


def _cmip_global_attrs(
    meta: dict[str, str], table: str, variable: str, frequency: str
) -> dict[str, str]:
    return {
        "Conventions": "CF-1.7 CMIP-6.2",
        "activity_id": meta["activity_id"],
        "institution_id": meta["institution_id"],
        "source_id": meta["source_id"],
        "experiment_id": meta["experiment_id"],
        "variant_label": meta["member_id"],
        "table_id": table,
        "variable_id": variable,
        "grid_label": "gn",
        "grid": "native ocean curvilinear grid",
        "frequency": frequency,
        "further_info_url": "cascadia synthetic twin world (not CMIP6 data)",
    }


def monthly_means(
    values: np.ndarray, axis: DayAxis, index: slice
) -> tuple[np.ndarray, xr.Variable, xr.Variable]:
    """Calendar-month means (in the model's calendar) of daily ``values`` over ``index``,
    stamped mid-month with the month's bounds, as CMOR writes Omon."""
    time, time_bnds = _noon_time(axis, index, "days since 1850-01-01")
    days = axis.time[index]
    months = np.array([d.year * 12 + d.month for d in days])
    starts = np.flatnonzero(np.diff(months, prepend=months[0] - 1))
    ends = np.append(starts[1:], months.size)
    means = np.stack([values[a:b].mean(axis=0) for a, b in zip(starts, ends, strict=True)])
    lower = time_bnds.values[starts, 0]
    upper = time_bnds.values[ends - 1, 1]
    month_time = xr.Variable("time", 0.5 * (lower + upper), time.attrs)
    bounds = xr.Variable(("time", "bnds"), np.stack([lower, upper], axis=1))
    return means, month_time, bounds


def cmip_ocean_dataset(
    values: np.ndarray,
    axis: DayAxis,
    index: slice,
    grid: CurvilinearGrid,
    meta: dict[str, str],
    table: str = "Oday",
) -> xr.Dataset:
    """``tos`` (degC, NaN over land) of one run on its ocean grid, table Oday or Omon.

    Omon holds calendar-month means (in the model's calendar) stamped mid-month with
    the month's bounds, as CMOR writes them.
    """
    time, time_bnds = _noon_time(axis, index, "days since 1850-01-01")
    frequency = "day"
    if table == "Omon":
        values, time, time_bnds = monthly_means(values, axis, index)
        frequency = "mon"
    elif table != "Oday":
        raise ValueError(f"tos is written in table Oday or Omon, not {table!r}")
    ds = xr.Dataset(
        {
            "tos": (
                ("time", "j", "i"),
                values.astype(FLOAT),
                _variable_attrs(
                    "tos",
                    cell_methods="area: mean where sea time: mean",
                    cell_measures="area: areacello",
                    coordinates="latitude longitude",
                ),
            ),
            "time_bnds": time_bnds,
        },
        coords={"time": time, **_ocean_grid_coords(grid)},
        attrs=_cmip_global_attrs(meta, table, "tos", frequency),
    )
    return ds.set_coords(["time_bnds"])


def cmip_thetao_dataset(
    values: np.ndarray,
    time: xr.Variable,
    time_bnds: xr.Variable,
    levels_m: np.ndarray,
    grid: CurvilinearGrid,
    meta: dict[str, str],
) -> xr.Dataset:
    """Omon ``thetao`` (degC, NaN over land and below the sea floor) ``(time, lev, j, i)``
    on the ocean grid; ``lev`` in centimetres, positive down, as CESM publishes it."""
    ds = xr.Dataset(
        {
            "thetao": (
                ("time", "lev", "j", "i"),
                values.astype(FLOAT),
                {
                    "standard_name": "sea_water_potential_temperature",
                    "long_name": "Sea Water Potential Temperature",
                    "units": "degC",
                    "cell_methods": "area: mean where sea time: mean",
                    "cell_measures": "area: areacello volume: volcello",
                    "coordinates": "latitude longitude",
                },
            ),
            "time_bnds": time_bnds,
        },
        coords={
            "time": time,
            "lev": (
                "lev",
                (levels_m * 100.0).astype("float64"),
                {
                    "long_name": "ocean model level",
                    "units": "centimeters",
                    "positive": "down",
                    "axis": "Z",
                },
            ),
            **_ocean_grid_coords(grid),
        },
        attrs=_cmip_global_attrs(meta, "Omon", "thetao", "mon"),
    )
    return ds.set_coords(["time_bnds"])


def write_cmip_ofx(ctx: StoreContext, grid: CurvilinearGrid, meta: dict[str, str]) -> None:
    """Pangeo-like ``Ofx`` stores of the ocean grid: ``areacello`` (m2) and ``sftof`` (%).

    Under one experiment and member (``meta``'s) like the ``fx`` stores; the ocean
    model's mask is binary, so ``sftof`` is 0 or 100.
    """
    from cascadia.twin.sea import sea_mask

    fields = {
        "areacello": (
            grid.cell_area(),
            {
                "standard_name": "cell_area",
                "long_name": "Grid-Cell Area for Ocean Variables",
                "units": "m2",
            },
        ),
        "sftof": (
            np.where(sea_mask(grid), 100.0, 0.0),
            {
                "standard_name": "sea_area_fraction",
                "long_name": "Sea Area Percentage",
                "units": "%",
                "cell_measures": "area: areacello",
            },
        ),
    }
    for variable, (values, attrs) in fields.items():
        ds = xr.Dataset(
            {
                variable: (
                    ("j", "i"),
                    values.astype(FLOAT),
                    {
                        **attrs,
                        "cell_methods": "area: sum" if variable == "areacello" else "area: mean",
                        "coordinates": "latitude longitude",
                    },
                )
            },
            coords=_ocean_grid_coords(grid),
            attrs=_cmip_global_attrs(meta, "Ofx", variable, "fx"),
        )
        url = ctx.url(
            "cmip6",
            meta["activity_id"],
            meta["institution_id"],
            meta["source_id"],
            meta["experiment_id"],
            meta["member_id"],
            "Ofx",
            variable,
            "gn",
            f"v{CMIP_VERSION}",
        )
        write_zarr(ds, url, zarr_format=2, storage_options=ctx.storage_options)
        ctx.add_row(
            "cmip6",
            activity_id=meta["activity_id"],
            institution_id=meta["institution_id"],
            source_id=meta["source_id"],
            experiment_id=meta["experiment_id"],
            member_id=meta["member_id"],
            table_id="Ofx",
            variable_id=variable,
            grid_label="gn",
            zstore=as_uri(url) + "/",
            dcpp_init_year="",
            version=CMIP_VERSION,
        )


def _yyyymmdd(date: Any) -> str:
    return f"{date.year:04d}{date.month:02d}{date.day:02d}"


def _rotated_pole() -> tuple[tuple[()], np.int32, dict[str, Any]]:
    """The CF grid-mapping variable of the twin's rotated-pole grid."""
    return (
        (),
        np.int32(0),
        {
            "grid_mapping_name": "rotated_latitude_longitude",
            "grid_north_pole_latitude": ROTATED_POLE_LAT,
            "grid_north_pole_longitude": ROTATED_POLE_LON,
        },
    )


def _rotated_coords(grid: RotatedGrid) -> dict[str, tuple[Any, ...]]:
    """Rotated 1-D ``rlat``/``rlon`` and geographic 2-D ``lat``/``lon``, as CORDEX files hold."""
    return {
        "rlat": (
            "rlat",
            grid.rlat,
            {"standard_name": "grid_latitude", "units": "degrees", "axis": "Y"},
        ),
        "rlon": (
            "rlon",
            grid.rlon,
            {"standard_name": "grid_longitude", "units": "degrees", "axis": "X"},
        ),
        "lat": (
            ("rlat", "rlon"),
            grid.lat,
            {"standard_name": "latitude", "units": "degrees_north"},
        ),
        "lon": (
            ("rlat", "rlon"),
            grid.lon,
            {"standard_name": "longitude", "units": "degrees_east"},
        ),
    }


def _cordex_attrs(meta: dict[str, str], frequency: str) -> dict[str, str]:
    """Global attributes of a CORDEX-like file (CORDEX-CMIP6 names)."""
    return {
        "Conventions": "CF-1.7",
        "project_id": "CORDEX",
        "domain_id": meta["domain_id"],
        "institution_id": meta["institution_id"],
        "driving_source_id": meta["driving_source_id"],
        "driving_experiment_id": meta["experiment_id"],
        "driving_variant_label": meta["member_id"],
        "source_id": meta["source_id"],
        "frequency": frequency,
        "comment": "cascadia synthetic twin world (not CORDEX data)",
    }


def write_cordex_variable(
    ctx: StoreContext,
    daily: dict[str, np.ndarray],
    axis: DayAxis,
    index: slice,
    grid: RotatedGrid,
    meta: dict[str, str],
    variable: str,
) -> None:
    """One Med-CORDEX-like NetCDF file for one variable on the rotated-pole grid."""
    time, time_bnds = _noon_time(axis, index, "days since 1949-12-01 00:00:00")
    ds = xr.Dataset(
        {
            variable: (
                ("time", "rlat", "rlon"),
                daily[variable].astype(FLOAT),
                _variable_attrs(
                    variable,
                    grid_mapping="rotated_pole",
                    coordinates="lat lon",
                    cell_methods="time: mean",
                ),
            ),
            "time_bnds": time_bnds,
            "rotated_pole": _rotated_pole(),
        },
        coords={"time": time, **_rotated_coords(grid)},
        attrs=_cordex_attrs(meta, "day"),
    )
    ds = ds.set_coords("time_bnds")
    first, last = axis.time[index][0], axis.time[index][-1]
    span = f"{_yyyymmdd(first)}-{_yyyymmdd(last)}"
    name = (
        f"{variable}_{meta['domain_id']}_{meta['driving_source_id']}_{meta['experiment_id']}_"
        f"{meta['member_id']}_{meta['institution_id']}-{meta['source_id']}_v1_day_{span}.nc"
    )
    url = ctx.url(
        "cordex",
        meta["domain_id"],
        meta["institution_id"],
        meta["driving_source_id"],
        meta["experiment_id"],
        meta["member_id"],
        meta["source_id"],
        "day",
        variable,
        name,
    )
    encoding = {
        variable: {"zlib": True, "complevel": 4, "_FillValue": np.float32(1e20)},
        "time": {"dtype": "float64"},
    }
    write_netcdf(ds, url, storage_options=ctx.storage_options, encoding=encoding)
    ctx.add_row(
        "cordex",
        project_id="CORDEX",
        activity_id="DD",
        domain_id=meta["domain_id"],
        institution_id=meta["institution_id"],
        driving_source_id=meta["driving_source_id"],
        experiment_id=meta["experiment_id"],
        member_id=meta["member_id"],
        source_id=meta["source_id"],
        frequency="day",
        variable_id=variable,
        time_range=span,
        path=as_uri(url),
        format="netcdf",
    )


def write_cordex_fx(ctx: StoreContext, grid: RotatedGrid, meta: dict[str, str]) -> None:
    """One CORDEX-like ``sftlf`` (%) fx file of one simulation on the rotated-pole grid.

    As in the CORDEX archive, the file has no time axis, the ensemble member
    ``r0i0p0`` and frequency ``fx``, under the driving model's historical run.
    """
    ds = xr.Dataset(
        {
            "sftlf": (
                ("rlat", "rlon"),
                (100.0 * land_fraction(grid)).astype(FLOAT),
                {
                    "standard_name": "land_area_fraction",
                    "long_name": "Land Area Fraction",
                    "units": "%",
                    "grid_mapping": "rotated_pole",
                    "coordinates": "lat lon",
                },
            ),
            "rotated_pole": _rotated_pole(),
        },
        coords=_rotated_coords(grid),
        attrs=_cordex_attrs(meta, "fx"),
    )
    name = (
        f"sftlf_{meta['domain_id']}_{meta['driving_source_id']}_{meta['experiment_id']}_"
        f"{meta['member_id']}_{meta['institution_id']}-{meta['source_id']}_v1_fx.nc"
    )
    url = ctx.url(
        "cordex",
        meta["domain_id"],
        meta["institution_id"],
        meta["driving_source_id"],
        meta["experiment_id"],
        meta["member_id"],
        meta["source_id"],
        "fx",
        "sftlf",
        name,
    )
    encoding = {"sftlf": {"zlib": True, "complevel": 4, "_FillValue": np.float32(1e20)}}
    write_netcdf(ds, url, storage_options=ctx.storage_options, encoding=encoding)
    ctx.add_row(
        "cordex",
        project_id="CORDEX",
        activity_id="DD",
        domain_id=meta["domain_id"],
        institution_id=meta["institution_id"],
        driving_source_id=meta["driving_source_id"],
        experiment_id=meta["experiment_id"],
        member_id=meta["member_id"],
        source_id=meta["source_id"],
        frequency="fx",
        variable_id="sftlf",
        time_range="fx",
        path=as_uri(url),
        format="netcdf",
    )
