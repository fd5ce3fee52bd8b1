"""The results store's own keys, read-only, for ``xr.open_zarr("http://host:port/zarr")``.

The service hands out the bytes of the store as they are on disk (``.zmetadata``,
``.zattrs``, chunk files, the ``spread`` group): a remote reader opens exactly the
store a local one does, in whatever layout it has, and sees each pass's writes as soon
as they are consolidated. A key is a relative path of plain components: no ``..``,
``.`` or empty component, no backslash or control character, so no request reaches
outside the store.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

import fsspec

__all__ = ["BadKey", "StoreKeys"]

#: Keys holding JSON (served as ``application/json``).
JSON_KEYS = (".zmetadata", ".zattrs", ".zgroup", ".zarray", "zarr.json")


class BadKey(ValueError):
    """A key that is not a plain relative path inside the store."""


def check_key(key: str) -> str:
    """``key`` if it is a plain relative path, else :class:`BadKey`."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or any(ord(c) < 32 or c == "\x7f" for c in key)
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise BadKey(f"{key!r} is not a key of the store")
    return key


class StoreKeys:
    """Reads keys of one store through fsspec (local folder, S3, GCS ...)."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        self.root = root.rstrip("/")

    def _path(self, key: str) -> str:
        path = posixpath.normpath(f"{self.root}/{check_key(key)}")
        if not path.startswith(self.root + "/"):
            raise BadKey(f"{key!r} is not a key of the store")
        return path

    def read(self, key: str) -> bytes:
        """The bytes of ``key``; ``KeyError`` when the store has no such key."""
        path = self._path(key)
        try:
            return self.fs.cat_file(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(key) from None

    def media_type(self, key: str) -> str:
        name = key.rsplit("/", 1)[-1]
        return "application/json" if name in JSON_KEYS else "application/octet-stream"
