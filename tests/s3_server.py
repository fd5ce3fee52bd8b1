"""A real S3 API server (moto) on loopback for the ``s3`` tests, never a mock of s3fs.

Why a server and not ``mock_aws``: intake-esm, zarr and h5netcdf reach the bucket
through s3fs/aiobotocore over HTTP, so only a server on a socket exercises the
path the real archives take (endpoint, credentials, ranged GETs, listings).

Import the fixture into a test module with ``s3_options = s3_server.s3_options``
(a module-level alias keeps ruff's F811 quiet where the test takes it as an
argument).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

#: Bucket created on the server for every session.
BUCKET = "cascadia-test"


@contextlib.contextmanager
def moto_s3(bucket: str = BUCKET) -> Iterator[dict[str, Any]]:
    """Start moto's S3 API on 127.0.0.1 (a free port), create ``bucket``, yield s3fs options.

    The options carry ``endpoint_url`` in ``client_kwargs``: the form s3fs, zarr's
    ``FsspecStore`` and intake-esm's ``zarr`` asset format all pass through
    unchanged (formats ``zarr2``/``zarr3`` drop them, see
    shared/notes/stack-pitfalls.md).
    """
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    # moto answers any credentials; fixed ones keep botocore from looking for a profile
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    # werkzeug logs every request at INFO: thousands of lines per world
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options: dict[str, Any] = {
            "key": "testing",
            "secret": "testing",
            "endpoint_url": f"http://{host}:{port}",
        }
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir(bucket)
        fs.invalidate_cache()
        yield options
    finally:
        server.stop()
        # a cached s3fs instance would point at a dead endpoint in a later session
        s3fs.S3FileSystem.clear_instance_cache()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def s3_options() -> Iterator[dict[str, Any]]:
    """s3fs storage options for a bucket ``BUCKET`` on a loopback moto server (session-wide)."""
    with moto_s3() as options:
        yield options
