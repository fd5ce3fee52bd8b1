"""Input identities by content: every chunk of a Zarr store counts, on disk and on S3.

A store's metadata documents stay untouched when a chunk is rewritten or deleted, so
an identity taken from them alone (the old one) missed both; the identity now lists
every object once (``fs.find``) and hashes their sizes and stamps.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import s3_server
import xarray as xr
import zarr

from cascadia.sources.cache import AssetIdentities, _asset_identity

s3_options = s3_server.s3_options


def _store(path: Path, chunks: int) -> Path:
    """A Zarr v2 store of ``chunks`` uncompressed float32 chunks (same size whatever the data)."""
    array = zarr.create_array(
        store=str(path),
        name="tas",
        shape=(chunks, 4),
        chunks=(1, 4),
        dtype="f4",
        compressors=None,
        zarr_format=2,
    )
    # uncompressed v2 chunks are their C-order bytes: written directly, 10k in a second
    for i in range(chunks):
        (path / "tas" / f"{i}.0").write_bytes(np.arange(4 * i, 4 * i + 4, dtype="<f4").tobytes())
    assert float(array[chunks - 1, 3]) == 4 * chunks - 1
    return path


def _same_size_rewrite(chunk: Path) -> None:
    raw = chunk.read_bytes()
    new = (np.frombuffer(raw, dtype="f4") + 1).astype("f4").tobytes()
    assert len(new) == len(raw) and new != raw
    stat = chunk.stat()
    chunk.write_bytes(new)
    os.utime(chunk, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a later write


def test_a_changed_or_deleted_chunk_changes_the_identity_of_10k_chunks(tmp_path: Path) -> None:
    store = _store(tmp_path / "big.zarr", 10_000)
    url = f"file://{store}"
    started = time.perf_counter()
    first = _asset_identity(url, {})
    seconds = time.perf_counter() - started
    print(f"listed {first['objects']} objects in {seconds:.2f} s")
    assert first["objects"] == 10_000 + 4  # the chunks and .zarray, .zattrs, .zgroup, .zattrs
    assert _asset_identity(url, {}) == first
    metadata = {p: p.stat().st_mtime_ns for p in store.rglob(".z*")}

    _same_size_rewrite(store / "tas" / "1234.0")
    changed = _asset_identity(url, {})
    assert changed["content"] != first["content"] and changed["objects"] == first["objects"]
    (store / "tas" / "4321.0").unlink()
    deleted = _asset_identity(url, {})
    assert deleted["content"] not in (first["content"], changed["content"])
    assert deleted["objects"] == first["objects"] - 1
    # what the old identity read did not move: it would have called all three equal
    assert {p: p.stat().st_mtime_ns for p in store.rglob(".z*")} == metadata
    assert seconds < 10


def test_a_netcdf_file_is_its_own_object(tmp_path: Path) -> None:
    path = tmp_path / "era20c.nc"
    xr.Dataset({"t2m": ("time", np.arange(10.0))}).to_netcdf(path)
    first = _asset_identity(str(path), {})
    assert first["objects"] == 1
    stat = path.stat()
    xr.Dataset({"t2m": ("time", np.arange(10.0) + 1)}).to_netcdf(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert path.stat().st_size == stat.st_size
    assert _asset_identity(str(path), {})["content"] != first["content"]
    path.unlink()
    with pytest.raises(FileNotFoundError):
        _asset_identity(str(path), {})


def test_one_pass_lists_each_store_once(tmp_path: Path, monkeypatch) -> None:
    store = _store(tmp_path / "small.zarr", 3)
    calls: list[str] = []
    import cascadia.sources.cache as cache

    real = cache._asset_identity
    monkeypatch.setattr(cache, "_asset_identity", lambda u, o: calls.append(u) or real(u, o))
    identities = AssetIdentities()
    assert identities(str(store), {}) == identities(str(store), {})
    assert calls == [str(store)]
    assert AssetIdentities()(str(store), {}) == identities(str(store), {})  # a new pass lists
    assert len(calls) == 2


@pytest.mark.s3
def test_s3_objects_count_by_etag(tmp_path: Path, s3_options: dict[str, Any]) -> None:
    """On S3 a chunk's ETag (its content's digest) identifies it: a rewrite with other
    bytes changes the identity, the same bytes uploaded again do not; the writes of another
    client are seen by a process that listed the store before."""
    import s3fs

    # another client writes, as another process would: this one's listing cache is not told
    fs = s3fs.S3FileSystem(**s3_options, skip_instance_cache=True)
    local = _store(tmp_path / "s3.zarr", 20)
    url = f"s3://{s3_server.BUCKET}/identity/s3.zarr"
    fs.put(str(local), url.removeprefix("s3://"), recursive=True)
    first = _asset_identity(url, s3_options)
    assert first["objects"] == 24
    chunk = f"{url}/tas/7.0"
    raw = (local / "tas" / "7.0").read_bytes()
    fs.pipe(chunk, raw)  # the same bytes again: a new LastModified, the same ETag
    assert _asset_identity(url, s3_options) == first
    fs.pipe(chunk, (np.frombuffer(raw, dtype="f4") + 1).astype("f4").tobytes())
    changed = _asset_identity(url, s3_options)
    assert changed["content"] != first["content"]
    fs.rm(f"{url}/tas/8.0")
    assert _asset_identity(url, s3_options)["objects"] == 23
