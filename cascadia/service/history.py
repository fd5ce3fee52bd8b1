"""The results store's CF ``history`` attribute: one line per pass, oldest first.

CF asks every program that modifies a dataset to append a line beginning with a
timestamp; a scheduled reprocessing pass reads as its own line, and no earlier line
is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import zarr

from cascadia.run.store import update_attrs


def read_history(url: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """The lines of the store's ``history`` attribute (empty when it has none)."""
    options = {"storage_options": dict(storage_options)} if storage_options else {}
    group = zarr.open_group(url, mode="r", zarr_format=2, **options)
    text = str(group.attrs.get("history", ""))
    return [line for line in text.splitlines() if line.strip()]


def history_line(text: str, when: datetime | None = None) -> str:
    """``text`` on one line after an ISO 8601 UTC timestamp (``2026-01-31T04:00:00Z``)."""
    stamp = (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} {' '.join(text.split())}"


def append_history(url: str, text: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """Append one timestamped line to the store's ``history``; return the line.

    Client side, while no worker writes (it re-consolidates the metadata).
    """
    line = history_line(text)
    lines = [*read_history(url, storage_options), line]
    update_attrs(url, {"history": "\n".join(lines)}, storage_options)
    return line
