"""Query answers as CSV, JSON or NetCDF bytes, produced in blocks so they can be streamed.

Values are written so that they read back to exactly what the store holds: float32
results as their shortest decimal (``13.123457``, which parses back to the same
float32), days as ``YYYY-MM-DD``, missing values as empty CSV cells and JSON ``null``.
The same blocks go to a file or stdout (``cascadia-ensemble query``) and into a
streamed HTTP response (``cascadia-ensemble serve``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["FORMATS", "MEDIA_TYPES", "encode"]

FORMATS: tuple[str, ...] = ("csv", "json", "netcdf")
MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "netcdf": "application/x-netcdf",
}
#: Rows per block of CSV/JSON text; bytes per block of a NetCDF file.
ROWS_PER_BLOCK = 20_000
BYTES_PER_BLOCK = 1 << 20


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float | np.floating) and np.isnan(value))


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    """Days as ISO dates, float32 as the float64 of their shortest decimal, labels as str."""
    out = table.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            days = column.dt.strftime("%Y-%m-%d")
            out[name] = days.astype(object).where(column.notna(), None)
        elif column.dtype == np.float32:
            out[name] = column.to_numpy().astype(str).astype(np.float64)
        elif (
            isinstance(column.dtype, pd.api.extensions.ExtensionDtype) and column.dtype.kind in "iu"
        ):
            # nullable integers (a dimension some rows lack): missing as None
            out[name] = pd.Series(
                [None if pd.isna(v) else int(v) for v in column], index=column.index, dtype=object
            )
        elif not pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            out[name] = pd.Series(
                [None if _missing(v) else str(v) for v in column], index=column.index, dtype=object
            )
    return out


def _csv(table: pd.DataFrame) -> Iterator[bytes]:
    plain = _plain(table)
    yield plain.iloc[:0].to_csv(index=False).encode()
    for first in range(0, len(plain), ROWS_PER_BLOCK):
        block = plain.iloc[first : first + ROWS_PER_BLOCK]
        yield block.to_csv(index=False, header=False).encode()


def _json_value(value: object) -> object:
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _json(table: pd.DataFrame) -> Iterator[bytes]:
    """A JSON array of records (one object per row), written block by block."""
    plain = _plain(table)
    columns = [str(c) for c in plain.columns]
    yield b"["
    sep = ""
    for first in range(0, len(plain), ROWS_PER_BLOCK):
        block = plain.iloc[first : first + ROWS_PER_BLOCK]
        rows = [
            dict(zip(columns, map(_json_value, row), strict=True))
            for row in block.itertuples(index=False, name=None)
        ]
        text = ",".join(json.dumps(r, allow_nan=False, separators=(",", ":")) for r in rows)
        if text:
            yield (sep + text).encode()
            sep = ","
    yield b"]"


def _netcdf_ready(ds: xr.Dataset) -> xr.Dataset:
    """Numpy 2 string arrays as object strings (the NetCDF writers take those)."""
    out = ds.copy()
    for name, var in list(out.variables.items()):
        if var.dtype.kind == "T" or str(var.dtype).startswith("String"):
            out[name] = var.copy(data=var.values.astype(object))
    for var in out.variables.values():
        # the store's Zarr encoding (chunks, compressors) means nothing to NetCDF
        var.encoding = {k: v for k, v in var.encoding.items() if k in ("units", "calendar")}
    return out


def _netcdf(ds: xr.Dataset) -> Iterator[bytes]:
    handle, path = tempfile.mkstemp(suffix=".nc")
    os.close(handle)
    try:
        _netcdf_ready(ds).to_netcdf(path, engine="netcdf4")
        with open(path, "rb") as f:
            while block := f.read(BYTES_PER_BLOCK):
                yield block
    finally:
        os.unlink(path)


def encode(table: pd.DataFrame, dataset: xr.Dataset, fmt: str) -> Iterator[bytes]:
    """The answer in ``fmt``: ``table`` as CSV or JSON records, ``dataset`` as NetCDF."""
    if fmt == "csv":
        return _csv(table)
    if fmt == "json":
        return _json(table)
    if fmt == "netcdf":
        return _netcdf(dataset)
    raise ValueError(f"unknown format {fmt!r}; expected one of: {', '.join(FORMATS)}")
