"""Write datasets to any fsspec URL: Zarr directly, NetCDF through a local temporary file."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import fsspec
import xarray as xr
from zarr.codecs import BloscCodec
from zarr.storage import MemoryStore

ZARR3_COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


def join(root: str, *parts: str) -> str:
    """Join URL parts with '/', whatever the protocol."""
    return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])


def as_uri(url: str) -> str:
    """A URL intake-esm and zarr accept: local paths become absolute ``file://`` URIs,
    not percent-encoded (fsspec strips ``file://`` and never decodes: a world written
    under a folder with a space would name stores that do not exist)."""
    if "://" in url:
        return url
    return "file://" + Path(url).resolve().as_posix()


def zarr_storage_options(url: str, options: dict[str, Any] | None) -> dict[str, Any] | None:
    """zarr accepts ``storage_options`` only with a URL, never with a plain path."""
    return options if "://" in url and options else None


def write_zarr(
    ds: xr.Dataset,
    url: str,
    *,
    zarr_format: int,
    storage_options: dict[str, Any] | None = None,
    encoding: dict[str, dict[str, Any]] | None = None,
    append_dim: str | None = None,
) -> None:
    """Write (or, with ``append_dim``, extend) a consolidated Zarr store (v2 or v3).

    A new store is encoded in memory and then written file by file through
    fsspec: for the twin's many small stores this is ~3x faster than zarr's own
    asynchronous file I/O, and works the same for local folders and buckets.
    """
    with warnings.catch_warnings():
        # zarr-python warns that consolidated metadata is an extension in v3;
        # real v3 archives (ARCO-ERA5) carry it, and readers then open silently.
        warnings.filterwarnings("ignore", message=".*Consolidated metadata.*")
        if append_dim:
            options = zarr_storage_options(url, storage_options)
            ds.to_zarr(url, append_dim=append_dim, consolidated=True, storage_options=options)
            return
        encoded: dict[str, Any] = {}
        ds.to_zarr(
            MemoryStore(store_dict=encoded),
            mode="w",
            zarr_format=zarr_format,
            consolidated=True,
            encoding=encoding or {},
        )
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if fs.exists(root):
        fs.rm(root, recursive=True)
    files = {f"{root}/{key}": buffer.to_bytes() for key, buffer in encoded.items()}
    for parent in sorted({fs._parent(path) for path in files}):
        fs.makedirs(parent, exist_ok=True)
    fs.pipe(files)


def write_netcdf(
    ds: xr.Dataset,
    url: str,
    *,
    storage_options: dict[str, Any] | None = None,
    encoding: dict[str, dict[str, Any]] | None = None,
    netcdf_format: str = "NETCDF4",
) -> None:
    """Write NetCDF (NetCDF-4 unless ``netcdf_format`` says otherwise) to ``url`` (local or
    remote) with the netCDF4 engine."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "file.nc"
        ds.to_netcdf(local, engine="netcdf4", format=netcdf_format, encoding=encoding or {})
        fs.makedirs(fs._parent(path), exist_ok=True)
        fs.put_file(str(local), path)


def write_text(text: str, url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Write a small text file (CSV, JSON, YAML) to ``url``."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    fs.makedirs(fs._parent(path), exist_ok=True)
    with fs.open(path, "w") as handle:
        handle.write(text)
