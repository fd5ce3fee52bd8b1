"""``cascadia-ensemble run`` on a small twin world: every combination, reruns, a killed run.

The world: eleven years of ERA5-like reference (enough overlap for the bias adjustment),
two 20CR-like members, ERA-20C-like, one CMIP-like model (noleap calendar) and one
CORDEX-like model (rotated pole), each with a historical and an ssp585 run. A tiny deep
ensemble is trained on the reference in a module fixture; what the store must hold is
recomputed here in memory with :meth:`TrainedModel.predict` on the cached predictors.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed import LocalCluster
from fsspec.implementations.local import LocalFileSystem
from helpers import RUN_TWIN, FullDiskFileSystem, small_preset

from cascadia.cli import main
from cascadia.mooring.events import events_from_flags
from cascadia.run.cluster import open_cluster
from cascadia.run.deep_ocean import DeepOceanInput, after_record_background
from cascadia.run.inference import InferenceConfig, TrainedModel, load_count
from cascadia.run.lock import StoreLock
from cascadia.run.pipeline import RunSummary, run_pipeline
from cascadia.run.spread import combo_winters
from cascadia.run.store import (
    COMBO_DIMS,
    MODEL_OCEAN_KIND,
    RESULT_VARS,
    SIBLING_OCEAN_KIND,
    combo_status,
    open_cube,
    update_attrs,
)
from cascadia.sources.cache import PredictorCache, fingerprint
from cascadia.sources.catalog import enumerate_combos, open_collection
from cascadia.sources.config import load_run_catalog

PRESET = small_preset("run-twin", **RUN_TWIN)
ERA20C = ("reanalysis", "ERA-20C", "r1")
CMIP_SSP = ("ssp585", "TWIN-ESM-A", "r1i1p1f1")
N_COMBOS = 8  # ERA5, 2 x 20CR, ERA-20C, CMIP x 2, CORDEX x 2

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def twin(run_twin: dict[str, Any]) -> dict[str, Any]:
    """The world, run catalogs, a trained model and the predictor cache it filled (the
    session's run twin, tests/conftest.py)."""
    root, catalogs = run_twin["root"], run_twin["catalogs"]
    return {
        "root": root,
        "catalogs": [str(catalogs / f"{n}.yaml") for n in ("reanalysis", "cmip6-run", "cordex")],
        "model": run_twin["model"],
        "cache": run_twin["cache"],
        "era20c": root / "world/reanalysis/era20c/era20c_sfc_6hr_2010-2011.nc",
    }


@pytest.fixture(scope="module")
def first_run(twin: dict[str, Any]) -> dict[str, Any]:
    """A run on a LocalCluster of two worker processes, ERA-20C's file missing on disk."""
    out = str(twin["root"] / "results.zarr")
    hidden = twin["era20c"].with_suffix(".hidden")
    twin["era20c"].rename(hidden)
    started = time.perf_counter()
    try:
        with open_cluster("local", workers=2) as client:
            summary = run_pipeline(
                twin["catalogs"], twin["model"], out, cache=twin["cache"], client=client
            )
            loads = client.run(load_count)
    finally:
        hidden.rename(twin["era20c"])  # same mtime: the same input fingerprint as before
    print(f"first run: {time.perf_counter() - started:.1f} s")
    return {"out": out, "summary": summary, "loads": loads}


def _by_combo(summary: RunSummary) -> dict[tuple[str, str, str], str]:
    return {r.combo: r.status for r in summary.results if r.combo is not None}


def _open_strict(path: str) -> xr.Dataset:
    """The store's cube view, after a plain ``xr.open_zarr`` of the root and of the spread
    group opened it without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.open_zarr(path).close()
        xr.open_zarr(path, group="spread").close()
        return open_cube(path).load()


def _predictors(twin: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Each combination's model inputs, found in the predictor cache independently."""
    cache = PredictorCache(twin["cache"])
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in twin["catalogs"]:
        catalog = load_run_catalog(path)
        for source in catalog.sources:
            for combo in enumerate_combos(catalog, source, open_collection(catalog, source)):
                labels = combo.labels
                key = (labels["experiment_id"], labels["source_id"], labels["member_id"])
                if source.role == "projection":
                    folder = Path(twin["cache"]) / source.name / combo.slug
                    (adjusted,) = folder.glob("adjusted-*.zarr")
                    found[key] = {"daily": xr.open_zarr(adjusted), "source": source}
                    found[key]["ocean"] = combo.deep_ocean  # its thetao ("" if none)
                    found[key]["sibling"] = combo.ocean_sibling  # or a sibling member's
                    if combo.ocean_driving is not None:  # the RCM's: its driving GCM's
                        driving = load_run_catalog(combo.ocean_driving.catalog)
                        found[key]["source"] = driving.source(combo.ocean_driving.source)
                else:
                    daily = cache.get(source, combo, fingerprint(catalog, source, combo))
                    found[key] = {"daily": daily, "source": source}
    for key, item in found.items():
        if item["source"].role == "projection" and key[0] != "historical":
            item["context"] = found[("historical", *key[1:])]["daily"]
            settings = item["source"].deep_ocean
            if item["ocean"] and settings is not None:  # the background after the record
                assets = (found[("historical", *key[1:])]["ocean"], item["ocean"])
                item["deep"] = DeepOceanInput(
                    "/".join(key), assets, settings, sibling=item["sibling"]
                )
    return found


def _chunks(path: str, combos: list[tuple[str, str, str]]) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every chunk file of the given combinations (their index along
    ``combo`` is the first part of a chunk name of every (combo, ...) array)."""
    with xr.open_zarr(path) as ds:
        labels = list(zip(*([str(x) for x in ds[d].values] for d in COMBO_DIMS), strict=True))
    indices = {str(labels.index(c)) for c in combos}
    out = {}
    for array in Path(path).iterdir():
        if not (array / ".zarray").exists():  # the spread group, the root's metadata
            continue
        dims = json.loads((array / ".zattrs").read_text())["_ARRAY_DIMENSIONS"]
        if dims[:1] != ["combo"]:
            continue
        for file in array.iterdir():
            if file.name.split(".")[0] in indices:
                out[f"{array.name}/{file.name}"] = (file.read_bytes(), file.stat().st_mtime_ns)
    return out


def test_every_combination_runs_and_equals_the_model_in_memory(twin, first_run) -> None:
    summary, out = first_run["summary"], first_run["out"]
    statuses = _by_combo(summary)
    assert len(statuses) == N_COMBOS
    assert statuses.pop(ERA20C) == "failed"
    assert set(statuses.values()) == {"done"}, summary.results
    (failure,) = summary.failed
    assert "era20c_sfc_6hr_2010-2011.nc" in failure.reason and "[era20c]" in failure.reason
    # the model was loaded once per worker process, not once per combination
    loads = first_run["loads"]
    assert len(loads) == 2 and all(n <= 1 for n in loads.values()), loads
    assert sum(loads.values()) >= 1 and summary.count("done") > len(loads)

    # the spread hook ran once every combination had finished
    assert summary.spread == "written"

    ds = _open_strict(out)
    table = combo_status(out).set_index(list(COMBO_DIMS))
    assert table.loc[ERA20C, "status"] == "failed"
    assert table.loc[ERA20C, "status_reason"] == failure.reason
    assert ds.attrs["Conventions"] == "CF-1.11"
    assert "cascadia-ensemble run --catalog" in ds.attrs["history"]
    assert ds.attrs["model_checkpoint_hash"] == TrainedModel.load(twin["model"]).checksum
    # one standard daily axis: the union of the sources' periods (2004-2016)
    np.testing.assert_array_equal(
        ds["time"].values, pd.date_range("2004-01-01", "2016-12-31").values
    )
    assert ds["winter"].values.tolist() == list(range(2004, 2018))

    model = TrainedModel.load(twin["model"])
    inputs = _predictors(twin)
    for combo in statuses:
        item = inputs[combo]
        after, kind = None, MODEL_OCEAN_KIND
        if "deep" in item:
            after, _ = after_record_background(item["deep"], model.background, model.depths)
            kind = SIBLING_OCEAN_KIND if item["deep"].sibling else MODEL_OCEAN_KIND
        daily = item["daily"].load()
        expected = model.predict(daily, item.get("context"), InferenceConfig(), after, kind)
        stored = ds.sel(dict(zip(COMBO_DIMS, combo, strict=True)))
        assert str(stored.status.values) == "done"
        assert str(stored.package_version.values) and str(stored.fingerprint.values)
        # the store names the ocean a background after the record came from
        ocean = json.loads(str(stored.selection.values)).get("deep_ocean")
        if "deep" in item:
            assert ocean["assets"] == list(item["deep"].assets), combo
            assert ("thetao from cmip6" in ocean["of"]) == ("RCM" in combo[1]), ocean
        else:
            assert ocean is None, combo
        for name, (dims, _) in RESULT_VARS.items():
            got = stored[name]
            for dim in ("time", "winter"):
                if dim in dims:
                    outside = got.drop_sel({dim: expected[dim].values})
                    assert bool(outside.isnull().all()), (combo, name)
                    got = got.sel({dim: expected[dim].values})
            want = expected[name].transpose(*dims).values
            np.testing.assert_allclose(got.values, want, rtol=1e-6, atol=1e-6, err_msg=str(combo))
    # the noleap model is on the standard calendar: its 29 February has a prediction
    leap = ds.temperature_mean.sel(experiment="historical", source_id="TWIN-ESM-A")
    assert bool(leap.sel(member_id="r1i1p1f1", time="2008-02-29").notnull().all())
    # a scenario continues its historical run: its first winter is complete
    ssp = ds.sel(dict(zip(COMBO_DIMS, CMIP_SSP, strict=True)))
    assert ssp.winter_days.sel(winter=2015).item() == 181  # its Nov-Apr season
    assert bool(ssp.temperature_mean.sel(time=slice("2004", "2014")).isnull().all())


def test_reruns_do_only_what_is_missing(twin, first_run, capsys) -> None:
    out = first_run["out"]
    done = [c for c, s in _by_combo(first_run["summary"]).items() if s == "done"]
    before = _chunks(out, done)
    args = ["run", "--model", str(twin["model"]), "--out", out, "--cache", twin["cache"]]
    for path in twin["catalogs"]:
        args += ["--catalog", path]

    # the file is still missing: the failure is reported again, nothing else is run
    hidden = twin["era20c"].with_suffix(".hidden")
    twin["era20c"].rename(hidden)
    try:
        assert main(args) == 1
    finally:
        hidden.rename(twin["era20c"])
    printed = capsys.readouterr().out
    assert f"0 done, {N_COMBOS - 1} up to date, 1 failed; 0 tasks" in printed

    # the file is back: only ERA-20C runs (its extraction and its prediction)
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        started = time.perf_counter()
        again = run_pipeline(
            twin["catalogs"], twin["model"], out, cache=twin["cache"], client=client
        )
        seconds = time.perf_counter() - started
    statuses = _by_combo(again)
    assert statuses.pop(ERA20C) == "done"
    assert set(statuses.values()) == {"skipped"}
    assert again.tasks_submitted == 2
    print(f"rerun of one combination: {seconds:.1f} s")
    assert _chunks(out, done) == before

    # nothing left: no task, no cluster, no chunk rewritten; exit 0
    everything = _chunks(out, [*done, ERA20C])
    started = time.perf_counter()
    assert main(args) == 0
    print(f"rerun with nothing to do: {time.perf_counter() - started:.1f} s")
    printed = capsys.readouterr().out
    assert f"0 done, {N_COMBOS} up to date, 0 failed; 0 tasks" in printed
    assert "spread statistics: up to date" in printed
    assert _chunks(out, [*done, ERA20C]) == everything


def test_bad_input_exits_2_with_one_line(twin, tmp_path, capsys) -> None:
    base = ["run", "--model", str(twin["model"]), "--out", str(tmp_path / "r.zarr")]
    assert main([*base, "--catalog", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.yaml: no such run catalog" in err[0]
    no_model = ["run", "--catalog", twin["catalogs"][0], "--model", str(tmp_path)]
    assert main([*no_model, "--out", str(tmp_path / "r.zarr")]) == 2
    assert "is not a model directory" in capsys.readouterr().err
    assert not (tmp_path / "r.zarr").exists()


class _ReadOnlyFileSystem(LocalFileSystem):
    """A local filesystem that refuses every write, as a read-only mount does (root
    ignores file modes, so a chmod cannot show it in CI)."""

    protocol = ("readonly",)

    def _refuse(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    mkdir = makedirs = pipe_file = rm = mv = touch = _refuse

    def open(self, path, mode="rb", **kwargs):
        if "r" not in mode:
            self._refuse()
        return super().open(path, mode, **kwargs)


def test_a_store_another_run_writes_another_model_or_a_read_only_disk_is_refused(
    twin, first_run, tmp_path, capsys
) -> None:
    """Issue 17 items 3 and 4: one writer per store, one model per store, and an output
    that cannot be written fails with one line and exit 2 before any work."""
    out = first_run["out"]
    base = ["run", *[arg for c in twin["catalogs"] for arg in ("--catalog", c)]]
    base += ["--model", str(twin["model"]), "--cache", twin["cache"]]
    before = _chunks(out, list(_by_combo(first_run["summary"])))
    with StoreLock(out, "reprocess"):
        assert main([*base, "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{out} is being written by run" in err[0] and "(reprocess)" in err[0]
    assert "--wait-for-lock SECONDS" in err[0]
    # another model: the store records the one it belongs to
    copy = str(tmp_path / "other-model.zarr")
    shutil.copytree(out, copy)
    update_attrs(copy, {"model_checkpoint_hash": "0" * 64})
    assert main([*base, "--out", copy]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds results of another model (000000000000)" in err[0]
    assert "--replace-model" in err[0] and "new --out" in err[0]
    # a read-only output
    fsspec.register_implementation("readonly", _ReadOnlyFileSystem, clobber=True)
    assert main([*base, "--out", f"readonly://{tmp_path}/ro.zarr"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the results store" in err[0]
    assert "Read-only file system" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "ro.zarr").exists()
    assert _chunks(out, list(_by_combo(first_run["summary"]))) == before  # nothing touched


def test_a_full_disk_fails_its_combinations_leaves_nothing_writing_and_loses_nothing(
    twin, first_run, tmp_path, capsys
) -> None:
    """Issue 17 item 4: the output disk fills up during the run. The combinations whose
    writes fail are marked failed (their partial chunks deleted, which frees the space for
    the status), none is left `writing`, the summary is printed; what was written stays,
    equal to a clean run's; once space is freed a rerun computes only the failed ones."""
    disk = tmp_path / "disk"
    disk.mkdir()
    fsspec.register_implementation("fulldisk", FullDiskFileSystem, clobber=True)
    full_size = sum(f.stat().st_size for f in Path(first_run["out"]).rglob("*") if f.is_file())
    FullDiskFileSystem.root = str(disk)
    FullDiskFileSystem.capacity = int(0.5 * full_size)
    out = f"fulldisk://{disk}/results.zarr"
    args = ["run", *[arg for c in twin["catalogs"] for arg in ("--catalog", c)]]
    args += ["--model", str(twin["model"]), "--cache", twin["cache"], "--out", out]
    # workers in this process, where the fulldisk protocol is registered
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2) as cluster:
        code = main([*args, "--cluster", cluster.scheduler_address])
    printed = capsys.readouterr().out
    status = combo_status(str(disk / "results.zarr")).set_index(list(COMBO_DIMS))
    counts = status["status"].value_counts().to_dict()
    with capsys.disabled():
        used = FullDiskFileSystem().used()
        print(f"full disk: {counts}; {used} of {full_size} bytes used")
    assert code == 1
    assert "writing" not in counts
    assert counts.get("done", 0) >= 1 and counts.get("failed", 0) >= 1, counts
    failed = status[status["status"] == "failed"]
    assert failed["status_reason"].str.contains("No space left on device").all()
    summary = re.search(r"(\d+) done, 0 up to date, (\d+) failed; \d+ tasks", printed)
    assert summary is not None, printed
    assert (int(summary[1]), int(summary[2])) == (counts["done"], counts["failed"])
    assert "No space left on device" in printed and "Traceback" not in printed

    # what was written is a clean run's; the failed combinations read as NaN
    clean = open_cube(first_run["out"], spread=False)
    cube = open_cube(str(disk / "results.zarr"), spread=False)
    clean_done = {k for k, v in _by_combo(first_run["summary"]).items() if v == "done"}
    for combo, row in status.iterrows():
        where = dict(zip(COMBO_DIMS, combo, strict=True))
        values = cube["temperature_mean"].sel(where).values
        if row["status"] == "failed":
            assert np.isnan(values).all(), combo
        elif combo in clean_done:
            expected = clean["temperature_mean"].sel(where).values
            np.testing.assert_allclose(values, expected, rtol=1e-6, equal_nan=True)

    # space freed: a rerun computes exactly the failed combinations, all done
    FullDiskFileSystem.capacity = 100 * full_size
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2) as cluster:
        assert main([*args, "--cluster", cluster.scheduler_address]) == 0
    printed = capsys.readouterr().out
    assert f"{counts['failed']} done, {counts['done']} up to date, 0 failed" in printed
    assert set(combo_status(str(disk / "results.zarr"))["status"]) == {"done"}


#: A run in a process of its own (two worker threads), to be killed with SIGKILL.
KILLABLE_RUN = """
import sys

from distributed import Client

from cascadia.run.pipeline import run_pipeline

if __name__ == "__main__":
    out, model, cache, *catalogs = sys.argv[1:]
    with Client(processes=False, n_workers=2, threads_per_worker=1) as client:
        run_pipeline(catalogs, model, out, cache=cache, client=client)
"""


def test_a_killed_run_resumes_with_only_the_missing_combinations(twin, first_run, tmp_path) -> None:
    out = str(tmp_path / "killed.zarr")
    # one combination's read hangs (a FIFO in place of a data chunk) so that the run
    # cannot finish before it is killed: its cached predictors are removed first
    folder = Path(twin["cache"]) / "cmip6" / "cmip6.TWIN-ESM-A_ssp585_r1i1p1f1"
    (raw,) = [p for p in folder.glob("*.zarr") if re.fullmatch(r"[0-9a-f]{20}\.zarr", p.name)]
    shutil.rmtree(raw)
    raw.with_suffix(".json").unlink()
    world = twin["root"] / "world/cmip6/ScenarioMIP/TWINLAB-A/TWIN-ESM-A/ssp585/r1i1p1f1"
    chunk = world / "day/tas/gn/v20260101/tas/0.0.0"
    saved = chunk.with_suffix(".saved")
    chunk.rename(saved)
    os.mkfifo(chunk)
    script = tmp_path / "run.py"
    script.write_text(KILLABLE_RUN)
    command = [sys.executable, str(script), out, str(twin["model"]), twin["cache"]]
    command += twin["catalogs"]
    proc = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 420  # generous: CI machines may be loaded
        while time.monotonic() < deadline:
            try:
                if (combo_status(out)["status"] == "done").sum() >= 3:
                    break
            except Exception:  # the store does not exist yet, or a chunk is being written
                pass
            assert proc.poll() is None, "the run ended although one read hangs"
            time.sleep(0.2)
        else:
            pytest.fail("fewer than 3 combinations done after 420 s")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        chunk.unlink()
        saved.rename(chunk)

    table = combo_status(out).set_index(list(COMBO_DIMS))
    done_before = [c for c in table.index if table.loc[c, "status"] == "done"]
    assert len(done_before) >= 3 and CMIP_SSP not in done_before
    before = _chunks(out, done_before)
    from distributed import Client

    with Client(processes=False, n_workers=2, threads_per_worker=1) as client:
        resumed = run_pipeline(
            twin["catalogs"], twin["model"], out, cache=twin["cache"], client=client
        )
    statuses = _by_combo(resumed)
    assert {c for c, s in statuses.items() if s == "skipped"} == set(done_before)
    assert {c for c, s in statuses.items() if s == "done"} == set(statuses) - set(done_before)
    assert len(statuses) == N_COMBOS and not resumed.failed
    assert _chunks(out, done_before) == before
    # the resumed store holds what an uninterrupted run stored
    first = _open_strict(first_run["out"])
    again = _open_strict(out)
    for combo in statuses:
        where = dict(zip(COMBO_DIMS, combo, strict=True))
        a = first.temperature_mean.sel(where).values
        if str(first.status.sel(where).values) == "done":
            np.testing.assert_array_equal(again.temperature_mean.sel(where).values, a)


def _season_recount(probability: np.ndarray, time: np.ndarray, level: float, rule) -> pd.Series:
    """Event days per Nov-Apr season from a daily probability: flagged at ``level``, then
    the duration/gap rule on the whole series, scaled to the full standard season."""
    below = xr.DataArray(probability >= level, dims="time", coords={"time": time})
    flags = events_from_flags(below, config=rule).values
    days = pd.DatetimeIndex(time)
    label = days.year + (days.month >= 11)
    season = days.month.isin([11, 12, 1, 2, 3, 4])
    out = {}
    for w in np.unique(label):
        full = (pd.Timestamp(w, 5, 1) - pd.Timestamp(w - 1, 11, 1)).days
        have = (season & np.isfinite(probability))[label == w].sum()
        n = (flags & season)[label == w].sum()
        out[int(w)] = n * full / have if have >= 0.9 * full else np.nan
    return pd.Series(out)


def test_stored_event_days_equal_a_recount_of_the_stored_probability(twin, first_run) -> None:
    """The store's per-winter event days count the Nov-Apr season: the same numbers as a
    recount from the stored daily event probability (the model's levels and rule), but for
    a scenario's first winter, whose Nov-Dec days the store takes from the scenario's own
    warm-started context run and the recount from the historical run."""
    ds = _open_strict(first_run["out"])
    model = TrainedModel.load(twin["model"])
    calibration = model.ensemble.calibration
    # fitted on the validation winters' two-member mixture: the mixture's count
    assert calibration is not None and calibration.level_fitted_members == 2
    assert not calibration.counts_members
    stored = combo_winters(ds)["event_days"]
    time = ds["time"].values
    compared, first_winter = 0, []
    for combo, status in _by_combo(first_run["summary"]).items():
        if status != "done":
            continue
        where = dict(zip(COMBO_DIMS, combo, strict=True))
        for j, depth in enumerate(calibration.depths):
            level = calibration.event_probability_threshold[j]
            prob = ds["event_probability"].sel(depth=depth)
            own = prob.sel(where).values.astype(np.float64)
            if combo[0] == "ssp585":  # joined: historical before the scenario's first day
                history = prob.sel({**where, "experiment": "historical"}).values
                cut = int(np.flatnonzero(np.isfinite(own))[0])
                own = np.concatenate([history[:cut], own[cut:]])
            recount = _season_recount(own, time, level, model.events)
            mine = stored.sel({**where, "depth": depth}).to_pandas().reindex(recount.index)
            assert (recount.notna() == mine.notna()).all(), (combo, depth)
            both = recount.notna() & mine.notna()
            if combo[0] == "ssp585":
                first_winter.append(float(abs(recount[2015] - mine[2015])))
                both[2015] = False
            np.testing.assert_allclose(mine[both], recount[both], atol=1e-9, err_msg=str(combo))
            compared += int(both.sum())
    print(f"compared {compared} winters; first scenario winter |store - recount|: {first_winter}")
    assert compared > 20


def test_each_historical_is_bias_adjusted_once(twin, tmp_path, monkeypatch) -> None:
    """A scenario's adjustment waits for its historical's: the historical (which its
    diagnostics compare with) is adjusted once per member, not again by every scenario
    that starts before it is done. Two worker threads, so both are ready at once."""
    from distributed import Client

    from cascadia.sources.bias import FittedAdjustment

    adjusted: list[tuple[int, int]] = []
    original = FittedAdjustment.adjust

    def counting(self, simulation, variables=None):  # type: ignore[no-untyped-def]
        years = simulation["time"].dt.year
        adjusted.append((int(years[0]), int(years[-1])))
        return original(self, simulation, variables)

    monkeypatch.setattr(FittedAdjustment, "adjust", counting)
    catalog = twin["catalogs"][1]  # cmip6-run.yaml, one member: historical, ssp585
    with Client(processes=False, n_workers=2, threads_per_worker=1) as client:
        summary = run_pipeline(
            [catalog],
            twin["model"],
            str(tmp_path / "r.zarr"),
            cache=str(tmp_path / "cache"),
            client=client,
        )
    assert summary.count("done") == 2 and summary.ok
    historical = (RUN_TWIN["historical"].start, RUN_TWIN["historical"].end)
    future = (RUN_TWIN["future"].start, RUN_TWIN["future"].end)
    assert sorted(adjusted) == sorted([historical, future]), adjusted
