"""The Lacaze-Duthiers mooring as an OceanSITES-style time series, with its flaws.

The sensors record the history's true hourly temperature plus 0.003 degC noise.
Like a real mooring they lose data (turnaround gaps of weeks, short outages of
hours), record spikes, most of which QC flags as bad (4) while a few slip
through as good (1), and carry "probably good" (2) stretches after redeployments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from cascadia.twin.ocean import DEPTHS, MOORING_LAT, MOORING_LON
from cascadia.twin.stores import StoreContext
from cascadia.twin.writers import write_netcdf, write_text

FILL = np.float32(99999.0)
QC_MEANINGS = (
    "no_qc_performed good_data probably_good_data bad_data_that_are_potentially_correctable "
    "bad_data value_changed not_used nominal_value interpolated_value missing_value"
)


def observe(hourly: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Measured TEMP (H, 2) with NaN gaps and its OceanSITES QC flags (H, 2)."""
    n = hourly.shape[1]
    temp = hourly.T + rng.normal(0.0, 0.003, (n, 2))
    qc = np.ones((n, 2), dtype="int8")
    years = n / 8766.0
    for d in range(2):
        for _ in range(rng.poisson(0.4 * years) + 1):  # turnaround / instrument loss
            start, length = rng.integers(0, n), int(rng.integers(5 * 24, 45 * 24))
            qc[start : start + length, d] = 9
            after = slice(start + length, start + length + 10 * 24)
            qc[after, d] = np.where(qc[after, d] == 1, 2, qc[after, d])
        for _ in range(rng.poisson(6 * years)):  # short outages
            start = rng.integers(0, n)
            qc[start : start + int(rng.integers(1, 13)), d] = 9
        spikes = rng.choice(n, size=max(3, int(3 * years)), replace=False)
        temp[spikes, d] += rng.choice([-1, 1], spikes.size) * rng.uniform(1.0, 3.0, spikes.size)
        flagged = rng.random(spikes.size) < 0.8
        qc[spikes[flagged], d] = 4
    temp[qc == 9] = np.nan
    return temp.astype("float32"), qc


def write_mooring(
    ctx: StoreContext, time: pd.DatetimeIndex, temp: np.ndarray, qc: np.ndarray
) -> None:
    """``observations/lacaze-duthiers.nc`` (OceanSITES-like) and the same series as CSV."""
    ds = xr.Dataset(
        {
            "TEMP": (
                ("TIME", "DEPTH"),
                temp,
                {
                    "standard_name": "sea_water_temperature",
                    "units": "degree_Celsius",
                    "long_name": "sea water temperature in-situ ITS-90 scale",
                    "ancillary_variables": "TEMP_QC",
                    "valid_min": -2.5,
                    "valid_max": 40.0,
                },
            ),
            "TEMP_QC": (
                ("TIME", "DEPTH"),
                qc,
                {
                    "long_name": "quality flag",
                    "conventions": "OceanSITES reference table 2",
                    "flag_values": np.arange(10, dtype="int8"),
                    "flag_meanings": QC_MEANINGS,
                },
            ),
            "LATITUDE": (
                (),
                MOORING_LAT,
                {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"},
            ),
            "LONGITUDE": (
                (),
                MOORING_LON,
                {"standard_name": "longitude", "units": "degrees_east", "axis": "X"},
            ),
        },
        coords={
            "TIME": ("TIME", time, {"standard_name": "time", "axis": "T"}),
            "DEPTH": (
                "DEPTH",
                np.array(DEPTHS, dtype="float32"),
                {"standard_name": "depth", "units": "m", "positive": "down", "axis": "Z"},
            ),
        },
        attrs={
            "data_type": "OceanSITES time-series data",
            "format_version": "1.4",
            "platform_code": "LACAZE-DUTHIERS",
            "site_code": "GOL-LD",
            "title": "Lacaze-Duthiers canyon mooring, 500 m and 1000 m temperature (twin world)",
            "Conventions": "CF-1.6 OceanSITES-Manual-1.4",
            "geospatial_lat_min": MOORING_LAT,
            "geospatial_lon_min": MOORING_LON,
            "comment": "cascadia synthetic twin world: not the real mooring record",
        },
    )
    encoding = {
        "TEMP": {"_FillValue": FILL, "zlib": True, "complevel": 4},
        "TEMP_QC": {"_FillValue": np.int8(-128), "zlib": True},
        "TIME": {
            "units": "days since 1950-01-01T00:00:00Z",
            "dtype": "float64",
            "calendar": "gregorian",
        },
    }
    write_netcdf(
        ds,
        ctx.url("observations", "lacaze-duthiers.nc"),
        storage_options=ctx.storage_options,
        encoding=encoding,
    )
    frame = pd.DataFrame(
        {
            "time": np.repeat(time.strftime("%Y-%m-%dT%H:%M:%SZ"), 2),
            "depth": np.tile(np.array(DEPTHS, dtype=int), time.size),
            "TEMP": temp.reshape(-1),
            "TEMP_QC": qc.reshape(-1),
        }
    )
    write_text(
        frame.to_csv(index=False, float_format="%.4f"),
        ctx.url("observations", "lacaze-duthiers.csv"),
        ctx.storage_options,
    )
