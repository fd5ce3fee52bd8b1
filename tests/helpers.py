"""Small worlds and benchmark loading shared by several test modules."""

from __future__ import annotations

import errno
import importlib.util
import io
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem

from cascadia.twin.presets import PRESETS, Preset, ReanalysisSpec, Years

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

#: 2004–2016 with one CORDEX pair: every kind of combination a run meets, in minutes.
RUN_TWIN: dict[str, Any] = {
    "era5": ReanalysisSpec(years=Years(start=2004, end=2014), resolution=3.0),
    "historical": Years(start=2004, end=2014),
    "future": Years(start=2015, end=2016),
    "cordex": PRESETS["tiny"].cordex[:1],
    "cordex_experiments": ("historical", "ssp585"),
    "observations": Years(start=2004, end=2014),
}


def small_preset(name: str, **update: Any) -> Preset:
    """The tiny preset with one CMIP source and member and no CORDEX, then ``update``."""
    tiny = PRESETS["tiny"]
    base = {"name": name, "cmip_sources": tiny.cmip_sources[:1], "cmip_members": 1, "cordex": ()}
    return tiny.model_copy(update={**base, **update})


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"cascadia_bench_{name}", BENCHMARKS / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def two_year_preset(name: str) -> Preset:
    """:func:`small_preset` cut to 2013–2015 (one 20CR member): a world in ~10 s that a
    smoke model (:func:`cascadia.learning.jobs.smoke_train_job`) can still train on."""
    return small_preset(
        name,
        twentycr=ReanalysisSpec(years=Years(start=2013, end=2014), resolution=3.0, members=1),
        era20c=ReanalysisSpec(years=Years(start=2010, end=2010), resolution=3.0),
        historical=Years(start=2013, end=2014),
        future=Years(start=2015, end=2015),
    )


def chromium() -> str:
    """The Chromium executable (deploy/chromium/install.sh); skip on a developer machine
    without it, fail in CI or as root, so that CI cannot go green by skipping."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    why = "Chromium is not installed"
    if os.environ.get("CI") or os.geteuid() == 0:
        pytest.fail(f"{why}: run `bash deploy/chromium/install.sh` (make services) before pytest")
    pytest.skip(f"{why}; run `bash deploy/chromium/install.sh` as root to enable")


def world_and_smoke_model(root: Path, preset: Preset) -> Path:
    """A twin world of ``preset`` in ``root/world`` and a smoke model trained on it in
    ``root/model`` (predictor cache ``root/cache``), with the winters a two-year world
    has: 2014 to train on, 2015 to validate, 2013 to test. Returns the model directory."""
    from cascadia.learning.jobs import TrainJob, smoke_train_job
    from cascadia.learning.train_job import run_train_job
    from cascadia.twin.world import build_world

    build_world(str(root / "world"), preset, seed=0)
    job = smoke_train_job(
        root / "world",
        str(root / "cache"),
        train_winters=[2014],
        validation_winters=[2015],
        test_winters=[2013],
    )
    run_train_job(TrainJob.model_validate(job), root / "model", log=lambda _: None)
    return root / "model"


def trailing_background_numpy(temperature: np.ndarray) -> np.ndarray:
    """The truth's event background written again in numpy: the q0.8 of the 365 days ending
    on each day (>= half of them with data), then the mean of the last 31 such values that
    exist (docs/events.md "Background", with the window ending on the day)."""
    padded = np.concatenate([np.full(364, np.nan), temperature])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 365)
    enough = np.isfinite(windows).sum(axis=1) >= 183
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows stay NaN
        quantile = np.where(enough, np.nanquantile(windows, 0.8, axis=1), np.nan)
        padded = np.concatenate([np.full(30, np.nan), quantile])
        return np.nanmean(np.lib.stride_tricks.sliding_window_view(padded, 31), axis=1)


class FullDiskFileSystem(LocalFileSystem):
    """A local filesystem of fixed capacity under one folder, as a small disk is: a write
    that would take the folder past ``capacity`` bytes fails with ENOSPC and writes
    nothing; deleting frees space. Writes are whole objects, as zarr's are."""

    protocol = ("fulldisk",)
    root = ""
    capacity = 0
    lock = threading.Lock()  # a claim and its write are one step, as the kernel's are
    #: when a list: every write's path and the bytes the folder needs for it, in order
    claims: list[tuple[str, int]] | None = None

    def used(self) -> int:
        return sum(f.stat().st_size for f in Path(self.root).rglob("*") if f.is_file())

    def _open(self, path, mode="rb", **kwargs):
        if "r" in mode:
            return super()._open(path, mode, **kwargs)
        return _WriteOnClose(self, self._strip_protocol(path), mode)

    def claim(self, path: str, size: int) -> None:
        replaced = os.path.getsize(path) if os.path.isfile(path) else 0
        needed = self.used() - replaced + size
        if self.claims is not None:
            self.claims.append((path, needed))
        if needed > self.capacity:
            raise OSError(errno.ENOSPC, "No space left on device", path)


class _WriteOnClose(io.BytesIO):
    """A file of :class:`FullDiskFileSystem`: its bytes land, or fail, on close."""

    def __init__(self, fs: FullDiskFileSystem, path: str, mode: str) -> None:
        super().__init__()
        self.fs, self.path, self.append = fs, path, "a" in mode

    def close(self) -> None:
        if self.closed:
            return
        data = self.getvalue()
        super().close()  # first: a failed write is not retried when the object is collected
        old = Path(self.path).read_bytes() if self.append and Path(self.path).exists() else b""
        with self.fs.lock:
            self.fs.claim(self.path, len(old) + len(data))
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.path).write_bytes(old + data)
