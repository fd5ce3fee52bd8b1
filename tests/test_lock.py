"""One writer per results store: the lease refuses a second run, lets a killed run's go."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import s3_server

from cascadia.run.lock import Lease, StoreLock, StoreLockedError

s3_options = s3_server.s3_options


def _lease(path: Path, **fields) -> None:
    base = Lease("a" * 32, "elsewhere", 4242, "run", "2026-01-01T00:00:00+00:00", time.time(), 60.0)
    path.write_text(json.dumps({**asdict(base), **fields}))


def test_a_second_run_is_refused_naming_the_first_and_the_lease_goes_with_it(
    tmp_path: Path,
) -> None:
    store = str(tmp_path / "results.zarr")
    with StoreLock(store, "run") as first:
        lease = json.loads(Path(store + ".lock").read_text())
        assert lease["pid"] == first.holder().pid
        assert lease["host"] == socket.gethostname()
        with pytest.raises(StoreLockedError) as info:
            StoreLock(store, "reprocess").acquire()
        message = str(info.value)
        assert f"{store} is being written by run {first.run_id[:8]} (run) on " in message
        assert "--wait-for-lock SECONDS" in message
        assert "another --out" in message
    assert not Path(store + ".lock").exists()


def test_a_waiting_run_gets_the_lease_once_it_is_released(tmp_path: Path) -> None:
    store = str(tmp_path / "results.zarr")
    first = StoreLock(store)
    first.acquire()
    threading.Timer(0.6, first.release).start()
    started = time.monotonic()
    with StoreLock(store, wait=10) as second:
        assert second.holder().run_id == second.run_id
    assert 0.5 < time.monotonic() - started < 8


def test_a_killed_runs_lease_is_taken_over(tmp_path: Path) -> None:
    store = tmp_path / "results.zarr"
    lock_file = Path(f"{store}.lock")
    # a run on this host whose process is gone: stale at once, however fresh its heartbeat
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    _lease(lock_file, host=socket.gethostname(), pid=int(gone.stdout))
    with StoreLock(str(store)) as lock:
        assert lock.took_over is not None and lock.took_over.pid == int(gone.stdout)
    # a run elsewhere whose heartbeat stopped longer than its time-to-live ago
    _lease(lock_file, heartbeat=time.time() - 61)
    with StoreLock(str(store)) as lock:
        assert lock.took_over.host == "elsewhere"
    # a live run elsewhere is never taken over
    _lease(lock_file)
    with pytest.raises(StoreLockedError, match="on elsewhere, pid 4242"):
        StoreLock(str(store)).acquire()


def test_the_heartbeat_keeps_a_long_run_alive(tmp_path: Path) -> None:
    store = str(tmp_path / "results.zarr")
    with StoreLock(store, ttl=0.4) as lock:
        first = lock.holder().heartbeat
        time.sleep(0.9)
        assert lock.holder().heartbeat > first
        with pytest.raises(StoreLockedError):  # alive, although older than one ttl
            StoreLock(store, ttl=0.4).acquire()
        assert not lock.lost


def test_a_heartbeat_that_cannot_write_for_a_while_goes_on(tmp_path: Path, monkeypatch) -> None:
    """A full disk for a few beats: the heartbeat thread survives (no traceback from the
    thread) and renews the lease once writes succeed again."""
    crashes: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(args.exc_value))
    with StoreLock(str(tmp_path / "results.zarr"), ttl=0.4) as lock:
        write = lock._write

        def full_disk(lease: Lease) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        lock._write = full_disk
        stuck = lock.holder().heartbeat
        time.sleep(0.5)  # five beats, every one failing
        assert lock.holder().heartbeat == stuck
        lock._write = write
        time.sleep(0.3)
        assert lock.holder().heartbeat > stuck and not lock.lost
    assert crashes == []


def test_of_many_runs_taking_over_a_stale_lease_exactly_one_wins(tmp_path: Path) -> None:
    store = tmp_path / "results.zarr"
    _lease(Path(f"{store}.lock"), heartbeat=time.time() - 3600)
    locks = [StoreLock(str(store)) for _ in range(8)]
    barrier = threading.Barrier(len(locks))
    won: list[StoreLock] = []

    def race(lock: StoreLock) -> None:
        barrier.wait()
        try:
            lock.acquire()
            won.append(lock)
        except StoreLockedError:
            pass

    threads = [threading.Thread(target=race, args=(lock,)) for lock in locks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert json.loads(Path(f"{store}.lock").read_text())["run_id"] == won[0].run_id
    won[0].release()


@pytest.mark.s3
def test_the_lease_works_on_an_object_store(s3_options) -> None:
    store = f"s3://{s3_server.BUCKET}/lock-test/results.zarr"
    with StoreLock(store, storage_options=s3_options) as first:
        with pytest.raises(StoreLockedError, match="is being written by run"):
            StoreLock(store, storage_options=s3_options).acquire()
        assert first.holder().run_id == first.run_id
    assert StoreLock(store, storage_options=s3_options).holder() is None


def test_a_run_whose_lease_is_taken_over_stops_writing(tiny_run: dict, tmp_path: Path) -> None:
    """Another run judged this one dead and took the store: this run cancels what is
    queued, writes no further combination, no spread, and leaves the other's lease."""
    from cascadia.run.cluster import open_cluster
    from cascadia.run.pipeline import run_pipeline
    from cascadia.run.store import combo_status

    out = tmp_path / "results.zarr"
    lease = Path(f"{out}.lock")
    seen: list[str] = []

    def on_result(result) -> None:
        seen.append(result.status)
        if len(seen) == 1:  # the first combination is in: another run takes over now
            _lease(lease, run_id="b" * 32, command="reprocess")

    with open_cluster("local", workers=1) as client:
        summary = run_pipeline(
            [tiny_run["catalog"]],
            tiny_run["model"],
            str(out),
            cache=tiny_run["cache"],
            client=client,
            on_result=on_result,
        )
    assert summary.lease_lost and summary.spread.startswith("not written")
    assert summary.count("done") == 1 and summary.count("failed") == 3, summary.results
    for r in summary.failed:
        assert "lease" in r.reason and "b" * 8 in r.reason, r.reason
    assert json.loads(lease.read_text())["run_id"] == "b" * 32  # theirs, left in place
    status = combo_status(str(out)).set_index(["experiment", "source_id", "member_id"])
    assert (status["status"] == "done").sum() == 1  # nothing written after the takeover
    assert not (out / "spread").exists()
