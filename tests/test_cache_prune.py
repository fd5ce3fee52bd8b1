"""The predictor cache keeps the two newest versions of each product per combination."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from cascadia.sources.cache import KEEP_VERSIONS, PredictorCache


def _version(folder: Path, stem: str, marker: str, age: float) -> None:
    (folder / stem).mkdir(parents=True)
    (folder / stem / "chunk").write_bytes(b"x" * 10)
    (folder / marker).write_text("{}")
    when = 1_700_000_000 - age
    os.utime(folder / marker, (when, when))


def test_superseded_versions_go_the_newest_and_unfinished_stay(tmp_path: Path) -> None:
    folder = tmp_path / "cmip6" / "cmip6.TWIN-ESM-A_ssp585_r1i1p1f1"
    for age, key in enumerate(["aaa", "bbb", "ccc", "ddd"]):  # aaa newest
        _version(folder, f"{key}.zarr", f"{key}.json", age)  # extracted predictors
        _version(folder, f"adjusted-{key}.zarr", f"adjusted-{key}.zarr.done", age)
    _version(folder, "qdm-eee.zarr", "qdm-eee.zarr.done", 10)  # the only fit: kept
    (folder / "adjusted-fff.zarr").mkdir()  # a writer at work (no marker yet): kept
    cache = PredictorCache(str(tmp_path))
    source = SimpleNamespace(name="cmip6")
    combo = SimpleNamespace(slug="cmip6.TWIN-ESM-A_ssp585_r1i1p1f1")
    assert KEEP_VERSIONS == 2
    assert cache.prune(source, combo) == 4
    assert sorted(p.name for p in folder.iterdir()) == [
        "aaa.json",
        "aaa.zarr",
        "adjusted-aaa.zarr",
        "adjusted-aaa.zarr.done",
        "adjusted-bbb.zarr",
        "adjusted-bbb.zarr.done",
        "adjusted-fff.zarr",
        "bbb.json",
        "bbb.zarr",
        "qdm-eee.zarr",
        "qdm-eee.zarr.done",
    ]
    assert cache.prune(source, combo) == 0
    missing = SimpleNamespace(slug="never-cached")
    assert cache.prune(source, missing) == 0
