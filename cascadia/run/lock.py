"""One writer per results store: a lease beside the store, kept alive by a heartbeat.

Why: two runs (or a scheduled reprocess and a hand-started run) on one store would both
recompute everything, both report success and collide on the spread and metadata writes.
Zarr has no transactions, so the store gets a lease: a small JSON object next to it
(``<store>.lock``; beside, not inside, because creating a store replaces its folder) that
names the holder (host, pid, run id, command, start) and carries a heartbeat the holder
refreshes every few seconds. Another run finds it and refuses (or waits, if asked); a
lease whose heartbeat is older than its time-to-live, or whose process is gone from this
host, is stale: a killed run's lease is taken over, never a live one's.

Works wherever fsspec writes: on a POSIX filesystem each read-decide-write of the lease
holds an exclusive ``flock`` on ``<store>.lock.mutex``, so of two runs taking over a stale
lease exactly one wins; on object stores, which offer no portable compare-and-swap, the
writer reads its lease back after a short settle and gives way when another run's id is
there (last writer wins: two runs started within that second could both proceed).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec

__all__ = ["Lease", "LeaseLostError", "StoreLock", "StoreLockedError", "check_held"]

#: Seconds without a heartbeat after which a lease is stale.
DEFAULT_TTL = 60.0
#: Seconds an object-store writer waits before reading its lease back.
SETTLE = 0.5


class StoreLockedError(RuntimeError):
    """Another run holds the results store's lease."""


class LeaseLostError(RuntimeError):
    """Another run took this run's lease over: this run must not write the store."""


def check_held(
    store_url: str, run_id: str, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Raise :class:`LeaseLostError` unless the lease of ``store_url`` is still
    ``run_id``'s: a worker's last check before it writes a combination."""
    lock = StoreLock(store_url, storage_options=storage_options)
    current = lock.holder()
    if current is None or current.run_id != run_id:
        who = current.describe(time.time()) if current is not None else "nobody (removed)"
        raise LeaseLostError(
            f"not written: the results store's lease ({lock.url}) is now held by {who}; "
            "this run stopped writing"
        )


@dataclass(frozen=True)
class Lease:
    """Who writes the store, since when, and when it last said so."""

    run_id: str
    host: str
    pid: int
    command: str
    started: str
    heartbeat: float  # seconds since the epoch
    ttl: float

    def describe(self, now: float) -> str:
        return (
            f"run {self.run_id[:8]} ({self.command}) on {self.host}, pid {self.pid}, "
            f"since {self.started}, last heartbeat {now - self.heartbeat:.0f} s ago"
        )

    def stale(self, now: float) -> bool:
        """Past its time-to-live, or its process has gone from this host."""
        if now - self.heartbeat > self.ttl:
            return True
        return self.host == socket.gethostname() and not _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class StoreLock:
    """The lease of one results store, held for a ``with`` block.

    Parameters
    ----------
    url
        The results store (folder or fsspec URL); the lease is ``<url>.lock``.
    command
        What holds it, for the message another run prints (``"run"``, ``"reprocess"``).
    wait
        Seconds to wait for a live lease to be released (0: refuse at once).
    ttl
        Seconds without a heartbeat after which the lease is stale; the heartbeat is
        refreshed every ``ttl / 4``.
    """

    def __init__(
        self,
        url: str,
        command: str = "run",
        *,
        wait: float = 0.0,
        ttl: float = DEFAULT_TTL,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = f"{url.rstrip('/')}.lock"
        self.command = command
        self.wait = wait
        self.ttl = ttl
        self.fs, self.path = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))
        self.run_id = uuid.uuid4().hex
        self.took_over: Lease | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._lost = threading.Event()

    # ------------------------------------------------------------------ reading
    def holder(self) -> Lease | None:
        """The lease on record, or None."""
        try:
            with self.fs.open(self.path, "rb") as fh:
                return Lease(**json.loads(fh.read()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # half-written or foreign: treat as stale
            return Lease("unreadable", "?", -1, "?", "?", 0.0, 0.0)

    # ------------------------------------------------------------------ writing
    def _lease(self) -> Lease:
        return Lease(
            run_id=self.run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            command=self.command,
            started=datetime.now(UTC).isoformat(timespec="seconds"),
            heartbeat=time.time(),
            ttl=self.ttl,
        )

    def _write(self, lease: Lease) -> None:
        """Replace the lease in one step (a rename on POSIX; one PUT on object stores)."""
        data = json.dumps(asdict(lease)).encode()
        parent = self.path.rsplit("/", 1)[0]
        if parent and parent != self.path:
            self.fs.makedirs(parent, exist_ok=True)
        if _is_local(self.fs):
            tmp = f"{self.path}.{self.run_id}"
            Path(tmp).write_bytes(data)
            os.replace(tmp, self.path)
        else:
            self.fs.pipe_file(self.path, data)

    @contextlib.contextmanager
    def _critical(self) -> Iterator[None]:
        """Read-decide-write of the lease as one step: an exclusive ``flock`` on a mutex
        file beside it on a POSIX filesystem (nothing on object stores, see the module)."""
        if not _is_local(self.fs):
            yield
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.mutex", "a") as mutex:
            fcntl.flock(mutex, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(mutex, fcntl.LOCK_UN)

    def _try(self) -> Lease | None:
        """Take the lease if free or stale; the live holder otherwise."""
        with self._critical():
            current = self.holder()
            if current is not None and not current.stale(time.time()):
                return current
            self._write(self._lease())
            if current is not None:
                self.took_over = current
        if not _is_local(self.fs):
            time.sleep(SETTLE)  # another writer's lease may land after ours: last one wins
            now_held = self.holder()
            if now_held is None or now_held.run_id != self.run_id:
                self.took_over = None
                return now_held
        return None

    def acquire(self) -> None:
        """Take the lease, waiting up to ``wait`` seconds for a live holder.

        Raises
        ------
        StoreLockedError
            Another live run holds it (named, with the options that resolve it).
        """
        deadline = time.monotonic() + self.wait
        while True:
            other = self._try()
            if other is None:
                break
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"the results store {self.url[: -len('.lock')]} is being written by "
                    f"{other.describe(time.time())}; wait for it to finish (or pass "
                    "--wait-for-lock SECONDS), or write to another --out. A killed run's "
                    f"lease ({self.url}) is taken over once its heartbeat is {self.ttl:.0f} s "
                    "old or its process is gone"
                )
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="store-lease", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                with self._critical():
                    current = self.holder()
                    if current is None or current.run_id != self.run_id:
                        self._lost.set()  # taken over: someone judged us dead
                        return
                    self._write(self._lease_renewed(current))
            except OSError:
                # a full or briefly unreachable disk: the lease keeps its last heartbeat
                # and the next beat tries again; beats missed for a whole ttl make it
                # stale, and the run notices a takeover through still_held()
                continue

    def _lease_renewed(self, current: Lease) -> Lease:
        return Lease(**{**asdict(current), "heartbeat": time.time()})

    @property
    def lost(self) -> bool:
        """Whether another run took the lease over while this one held it."""
        return self._lost.is_set()

    def still_held(self) -> bool:
        """Read the lease now (not at the next heartbeat): whether it is still ours."""
        if not self._lost.is_set():
            current = self.holder()
            if current is None or current.run_id != self.run_id:
                self._lost.set()
        return not self._lost.is_set()

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still ours."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        with self._critical():
            current = self.holder()
            if current is not None and current.run_id == self.run_id:
                self.fs.rm(self.path)

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol
    return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))
