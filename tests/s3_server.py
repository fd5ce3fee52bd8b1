"""A real S3 API server (moto) on loopback for the ``s3`` tests, never a mock of s3fs.

Why a server and not ``mock_aws``: intake-esm, zarr and h5netcdf reach the bucket
through s3fs/aiobotocore over HTTP, so only a server on a socket exercises the
path the real archives take (endpoint, credentials, ranged GETs, listings).
The server runs in its own process (``python -m moto.server``): in a thread it
would share the GIL with the writers and dask, and a tiny world took ~1.5x longer.

Use the fixture in a test module with ``s3_options = s3_server.s3_options`` (a
module-level alias: importing the name and taking it as an argument trips
ruff's F811).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

#: Bucket created on the server for every session.
BUCKET = "cascadia-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once the port accepts connections; False if the server died or timed out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


@contextlib.contextmanager
def moto_s3(bucket: str = BUCKET, timeout: float = 30.0) -> Iterator[dict[str, Any]]:
    """Start moto's S3 API on 127.0.0.1 (a free port), create ``bucket``, yield s3fs options.

    The options are flat strings with ``endpoint_url`` at the top level, not in
    ``client_kwargs``: intake-esm 2025.12 hands the collection's storage options
    to ``polars.scan_csv`` as ``cloud_options``, which rejects nested dicts
    (``'dict' object cannot be converted to 'PyString'``). s3fs, zarr's
    ``FsspecStore`` and intake-esm's ``zarr`` asset format take them unchanged.
    """
    pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    process: subprocess.Popen[bytes] | None = None
    port = 0
    for _ in range(3):  # another process may grab the port between probe and bind
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if _wait_listening(port, process, timeout):
            break
        process.kill()
        process.wait()
        process = None
    if process is None:
        pytest.fail("the moto S3 server did not start on 127.0.0.1")
    options: dict[str, Any] = {
        "key": "testing",
        "secret": "testing",
        "endpoint_url": f"http://127.0.0.1:{port}",
    }
    try:
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir(bucket)
        fs.invalidate_cache()
        yield options
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # a cached s3fs instance would point at a dead endpoint later in the session
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def s3_options() -> Iterator[dict[str, Any]]:
    """s3fs storage options for the bucket ``BUCKET`` on a loopback moto server."""
    with moto_s3() as options:
        yield options
