"""The results store: lazy init, disjoint region writes, status, provenance, CF."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cascadia.run import store as store_module
from cascadia.run.store import (
    COMBO_DIMS,
    OPTIONAL_VARS,
    RESULT_VARS,
    STATUSES,
    ResultsSchema,
    StoreError,
    combo_status,
    initialise_store,
    mark_failed,
    open_cube,
    open_schema,
    prepare_store,
    record_families,
    write_combo,
)

TIME = pd.date_range("2000-01-01", "2002-12-31", freq="D").values
COMBOS = [
    (e, s, m) for e in ("historical", "ssp585") for s in ("SRC-A", "SRC-B") for m in ("r1", "r2")
]
WINTERS = (2000, 2001, 2002)
M = 3


def _schema() -> ResultsSchema:
    return ResultsSchema(combos=tuple(COMBOS), time=TIME, n_members=M, winters=WINTERS)


def _combo_dataset(seed: int, time: np.ndarray = TIME, member_series: bool = True) -> xr.Dataset:
    """Random values for every result variable, on its own dims."""
    rng = np.random.default_rng(seed)
    sizes = {"time": len(time), "depth": 2, "quantile": 5, "ensemble": M, "winter": 3}
    coords = {"time": time, "depth": [500.0, 1000.0], "winter": list(WINTERS)}
    data = {
        name: (dims, rng.normal(13.0, 0.3, [sizes[d] for d in dims]).astype(np.float32))
        for name, (dims, _) in RESULT_VARS.items()
        if member_series or name not in OPTIONAL_VARS
    }
    return xr.Dataset(data, coords=coords)


def _prov(tag: str) -> dict[str, str]:
    return {
        "fingerprint": hashlib.sha256(tag.encode()).hexdigest(),
        "model_checkpoint_hash": "sha256:abc123",
        "package_version": "0.1.0",
        "catalog_entry": f"cordex.yaml::{tag}",
        "selection": '{"datasets": [], "skipped": []}',
    }


def _open_strict(path: Path) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(path)
        ds.load()
    return ds


def _cube(path: Path) -> xr.Dataset:
    """The cube view, after checking the store itself opens without a warning."""
    _open_strict(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return open_cube(str(path)).load()


def _sel(ds: xr.Dataset, combo: tuple[str, str, str]) -> xr.Dataset:
    return ds.sel(dict(zip(COMBO_DIMS, combo, strict=True)))


def _chunk_bytes(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.startswith(".z")
    }


def _combo_chunks(path: Path, indices: range) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every chunk file of the combinations at ``indices`` along combo."""
    names = {str(i) for i in indices}
    out = {}
    for array in sorted(p for p in path.iterdir() if (p / ".zarray").exists()):
        if json.loads((array / ".zattrs").read_text())["_ARRAY_DIMENSIONS"][:1] != ["combo"]:
            continue
        for chunk in array.iterdir():
            if chunk.name.split(".")[0] in names:
                out[f"{array.name}/{chunk.name}"] = (chunk.read_bytes(), chunk.stat().st_mtime_ns)
    return out


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "results.zarr"
    initialise_store(str(path), _schema(), {"institution": "test"})
    return path


def test_initialise_is_lazy_and_cf(store: Path) -> None:
    # no chunk of any result variable exists before a combo is written
    for name in RESULT_VARS:
        assert sorted(p.name for p in (store / name).iterdir()) == [".zarray", ".zattrs"]
    assert (store / ".zmetadata").exists()
    ds = _open_strict(store)
    assert ds.attrs["Conventions"] == "CF-1.11"
    assert ds.attrs["institution"] == "test"
    assert ds.attrs["featureType"] == "timeSeries" and "cascadia" in ds.attrs["source"]
    for name in ("temperature_mean", "temperature_std", "temperature_quantile"):
        a = ds[name].attrs
        assert a["units"] == "degree_Celsius"
        assert a["standard_name"] == "sea_water_temperature"
        assert "cell_methods" in a
    # CF 7.3: cell_methods name only the variable's dims or standard names
    for name, var in ds.data_vars.items():
        for term in var.attrs.get("cell_methods", "").split("(")[0].split():
            if term.endswith(":"):
                assert term[:-1] in (*var.dims, "time", "realization"), (name, term)
    assert ds.temperature_mean.attrs["cell_methods"] == "time: mean realization: mean"
    assert ds.ensemble.attrs["standard_name"] == "realization"
    # the stacked layout: labels along combo, int8 status with CF flags
    assert ds.sizes["combo"] == 8 and ds.temperature_mean.dims == ("combo", "time", "depth")
    assert [
        tuple(map(str, c)) for c in zip(*(ds[d].values for d in COMBO_DIMS), strict=True)
    ] == COMBOS
    assert ds.status.dtype == np.int8 and ds.status.values.tolist() == [0] * 8
    assert list(ds.status.attrs["flag_values"]) == [0, 1, 2, 3]
    assert ds.status.attrs["flag_meanings"].split() == list(STATUSES)
    # the mooring as a CF time series; the winter axis with time bounds
    assert float(ds.lat) == 42.43 and float(ds.lon) == 3.545
    assert ds.lat.attrs["units"] == "degrees_north" and ds.lon.attrs["standard_name"] == "longitude"
    assert ds.winter_time.attrs["bounds"] == "season_bounds"
    assert ds.winter_time.encoding["units"] == "days since 1850-01-01"
    np.testing.assert_array_equal(
        ds.winter_time.values,
        np.array(["2000-01-31", "2001-01-30", "2002-01-30"], "datetime64[ns]"),  # 182, 181 days
    )
    assert ds.time.encoding["units"] == "days since 1850-01-01"
    assert ds.time.encoding["calendar"] == "standard"
    np.testing.assert_array_equal(ds.time.values, TIME)
    assert ds.depth.values.tolist() == [500.0, 1000.0]
    assert ds["quantile"].values.tolist() == [0.05, 0.25, 0.5, 0.75, 0.95]
    assert ds.sizes["ensemble"] == M and ds.sizes["winter"] == 3
    assert bool(ds.temperature_mean.isnull().all())
    # winter statistics count the November-April season, and the store says which days
    np.testing.assert_array_equal(
        ds.season_bounds.sel(winter=2001).values,
        np.array(["2000-11-01", "2001-05-01"], dtype="datetime64[ns]"),
    )
    for name in ("event_days", "member_peak_intensity", "winter_days"):
        assert "November-April season" in ds[name].attrs["cell_methods"], name
    df = combo_status(str(store))
    assert len(df) == 8 and set(df.status) == {"missing"}


def test_region_writes_status_provenance(store: Path) -> None:
    schema = _schema()
    done = {COMBOS[0]: _combo_dataset(1), COMBOS[5]: _combo_dataset(2)}
    # two combos written concurrently from two separate processes
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        futures = [
            pool.submit(write_combo, str(store), schema, c, d, _prov("-".join(c)))
            for c, d in done.items()
        ]
        for fut in futures:
            fut.result()
    failed = COMBOS[3]
    mark_failed(str(store), failed, "bias adjustment: no overlap with reference")

    ds = _cube(store)
    for combo, src in done.items():
        got = _sel(ds, combo)
        for name in RESULT_VARS:
            np.testing.assert_array_equal(got[name].values, src[name].values)
        assert str(got.status.values) == "done"
        assert str(got.fingerprint.values) == _prov("-".join(combo))["fingerprint"]
        assert str(got.catalog_entry.values) == f"cordex.yaml::{'-'.join(combo)}"
    for combo in COMBOS:
        if combo in done:
            continue
        got = _sel(ds, combo)
        for name in RESULT_VARS:
            assert bool(got[name].isnull().all()), (combo, name)
    # chunks: one combo per chunk on every per-combo variable
    for name, var in _open_strict(store).variables.items():
        if "combo" in var.dims:
            assert var.encoding["chunks"][0] == 1, name
    df = combo_status(str(store)).set_index(list(COMBO_DIMS))
    assert df.loc[failed, "status"] == "failed"
    assert df.loc[failed, "status_reason"] == "bias adjustment: no overlap with reference"
    assert df.loc[COMBOS[0], "package_version"] == "0.1.0"
    assert df.loc[COMBOS[0], "model_checkpoint_hash"] == "sha256:abc123"
    left = [c for c in COMBOS if c not in done and c != failed]
    assert (df.loc[left, "status"] == "missing").all()


def test_rewrite_leaves_others_byte_identical(store: Path) -> None:
    schema = _schema()
    for i, c in enumerate(COMBOS[:3]):
        write_combo(str(store), schema, c, _combo_dataset(i), _prov(str(i)))
    before = _chunk_bytes(store)
    meta_before = (store / ".zmetadata").read_bytes()
    write_combo(str(store), schema, COMBOS[1], _combo_dataset(99), _prov("new"))
    after = _chunk_bytes(store)
    assert (store / ".zmetadata").read_bytes() == meta_before
    changed = {k for k in after if before.get(k) != after[k]}
    # only the chunks of combination 1 (historical, SRC-A, r2) may change
    assert changed, "rewrite changed nothing"
    assert all(Path(k).name.split(".")[0] == "1" for k in changed), changed
    assert set(before) <= set(after)
    ds = _cube(store)
    np.testing.assert_array_equal(
        _sel(ds, COMBOS[1]).temperature_mean.values, _combo_dataset(99).temperature_mean.values
    )
    np.testing.assert_array_equal(
        _sel(ds, COMBOS[0]).temperature_mean.values, _combo_dataset(0).temperature_mean.values
    )


def test_partial_time_is_nan_padded_and_bad_input_rejected(store: Path) -> None:
    schema = _schema()
    sub = TIME[366:]
    src = _combo_dataset(7, time=sub)
    write_combo(str(store), schema, COMBOS[4], src, _prov("p"))
    got = _sel(_cube(store), COMBOS[4])
    assert bool(got.temperature_mean.isel(time=slice(0, 366)).isnull().all())
    np.testing.assert_array_equal(
        got.temperature_mean.isel(time=slice(366, None)).values, src.temperature_mean.values
    )
    with pytest.raises(StoreError, match="outside"):
        late = pd.date_range("2002-06-01", "2003-06-01", freq="D").values
        write_combo(str(store), schema, COMBOS[2], _combo_dataset(1, time=late), _prov("x"))
    with pytest.raises(StoreError, match="not in the schema"):
        write_combo(str(store), schema, ("x", "y", "z"), src, _prov("x"))
    with pytest.raises(StoreError, match="provenance"):
        write_combo(str(store), schema, COMBOS[2], src, {"fingerprint": "f"})
    cf = src.convert_calendar("noleap", align_on="year")
    with pytest.raises(StoreError, match="standard calendar"):
        write_combo(str(store), schema, COMBOS[2], cf, _prov("x"))
    assert combo_status(str(store)).set_index(list(COMBO_DIMS)).loc[COMBOS[2], "status"] == (
        "missing"
    )


def test_prepare_store_grows_without_touching_written_combinations(tmp_path: Path) -> None:
    path = tmp_path / "results.zarr"
    first = ResultsSchema(combos=tuple(COMBOS[:7]), time=TIME, n_members=M, winters=WINTERS)
    assert prepare_store(str(path), first, {"model_checkpoint_hash": "sha256:a"}) == first
    for i in (0, 1):
        write_combo(str(path), first, COMBOS[i], _combo_dataset(i), _prov(str(i)))
    mark_failed(str(path), COMBOS[2], "no input")
    record_families(str(path), {c: c[1] for c in COMBOS[:7]})
    before = _combo_chunks(path, range(7))
    assert any(k.startswith("temperature_mean/0.") for k in before)

    # the same run again: reused, nothing written but the global attributes
    assert prepare_store(str(path), first, {"model_checkpoint_hash": "sha256:b"}) == first
    assert _combo_chunks(path, range(7)) == before
    assert _open_strict(path).attrs["model_checkpoint_hash"] == "sha256:b"

    # a new member and the combination missing so far: appended along combo
    member = ("historical", "SRC-A", "r3")
    more = ResultsSchema(combos=(COMBOS[7], member), time=TIME[10:], n_members=M, winters=WINTERS)
    merged = prepare_store(str(path), more, history="cascadia-ensemble run --catalog more.yaml")
    assert merged.combos == (*COMBOS[:7], COMBOS[7], member)
    assert merged.region(COMBOS[0]) == first.region(COMBOS[0]) == {"combo": slice(0, 1)}
    write_combo(str(path), merged, member, _combo_dataset(5), _prov("new"))
    record_families(str(path), {member: "SRC-A"})
    assert _combo_chunks(path, range(7)) == before  # bytes and mtimes
    status = combo_status(str(path)).set_index(list(COMBO_DIMS))["status"]
    assert status[COMBOS[7]] == "missing" and status[member] == "done"
    assert status[COMBOS[0]] == "done" and status[COMBOS[2]] == "failed"
    assert open_schema(str(path)) == merged
    cube = _cube(path)
    assert cube.member_id.values.tolist() == ["r1", "r2", "r3"]
    assert str(_sel(cube, ("ssp585", "SRC-A", "r3")).status.values) == "not_in_catalog"
    np.testing.assert_array_equal(
        _sel(cube, COMBOS[0]).temperature_mean.values, _combo_dataset(0).temperature_mean.values
    )
    np.testing.assert_array_equal(
        _sel(cube, member).temperature_mean.values, _combo_dataset(5).temperature_mean.values
    )
    history = _open_strict(path).attrs["history"].splitlines()
    assert len(history) == 1 and "more.yaml: 2 combinations appended" in history[0]

    # a longer period: time and winter axes grow at their end, the written chunks stay
    longer = pd.date_range("2000-01-01", "2004-03-31", freq="D").values
    later = ResultsSchema(
        combos=(COMBOS[3],), time=longer, n_members=M, winters=(*WINTERS, 2003, 2004)
    )
    before = _combo_chunks(path, range(9))
    grown = prepare_store(str(path), later, history="cascadia-ensemble run --catalog long.yaml")
    np.testing.assert_array_equal(grown.time, longer)
    assert grown.winters == (*WINTERS, 2003, 2004) and grown.combos == merged.combos
    assert _combo_chunks(path, range(9)) == before
    cube = _cube(path)
    old = _sel(cube, COMBOS[0])
    np.testing.assert_array_equal(
        old.temperature_mean.sel(time=TIME).values, _combo_dataset(0).temperature_mean.values
    )
    assert bool(old.temperature_mean.sel(time=slice("2003-01-01", None)).isnull().all())
    assert bool(old.event_days.sel(winter=[2003, 2004]).isnull().all())
    np.testing.assert_array_equal(
        cube.season_bounds.sel(winter=2004).values,
        np.array(["2003-11-01", "2004-05-01"], dtype="datetime64[ns]"),
    )
    assert "time extended to 2004-03-31; winters 2003..2004 added" in cube.attrs["history"]
    # the grown store takes a combination over the whole new period
    src = _combo_dataset(9, time=longer)
    src = src.assign_coords(winter=[*WINTERS, 2003, 2004][:3])
    write_combo(str(path), grown, COMBOS[3], src, _prov("long"))
    np.testing.assert_array_equal(
        _sel(_cube(path), COMBOS[3]).temperature_mean.values, src.temperature_mean.values
    )
    assert open_schema(str(path)).time_chunk == len(TIME)

    def refused(schema: ResultsSchema, match: str) -> None:
        with pytest.raises(StoreError, match=match):
            prepare_store(str(path), schema)

    earlier = pd.date_range("1999-06-01", "2001-06-30", freq="D").values
    refused(
        ResultsSchema(combos=(COMBOS[0],), time=earlier, n_members=M),
        r"starts on 1999-06-01, before the store's first day 2000-01-01.*new --out",
    )
    refused(ResultsSchema(combos=(COMBOS[0],), time=TIME, n_members=M + 1), "n_members")
    refused(ResultsSchema(combos=(COMBOS[0],), time=TIME, n_members=M, depth=(500.0,)), "depth")
    refused(
        ResultsSchema(combos=(COMBOS[0],), time=TIME, n_members=M, member_series=False),
        "member_series",
    )
    assert combo_status(str(path)).set_index(list(COMBO_DIMS)).loc[COMBOS[0], "status"] == "done"

    other = tmp_path / "not-a-store"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a consolidated Zarr"):
        prepare_store(str(other), first)
    assert (other / "notes.txt").read_text() == "mine"


def test_a_store_of_the_old_layout_names_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "old.zarr"
    labels = {"experiment": ["historical"], "source_id": ["SRC-A"], "member_id": ["r1"]}
    xr.Dataset(
        {"status": (COMBO_DIMS, np.full((1, 1, 1), "done", dtype=object))},
        coords=labels,
        attrs={"title": "cascadia ensemble results"},
    ).to_zarr(path, zarr_format=2, consolidated=True)
    for call in (lambda: open_schema(str(path)), lambda: open_cube(str(path))):
        with pytest.raises(StoreError, match=r"old .* layout.*cascadia-ensemble migrate --results"):
            call()


def test_member_series_is_optional(tmp_path: Path) -> None:
    path = tmp_path / "lean.zarr"
    schema = ResultsSchema(
        combos=tuple(COMBOS), time=TIME, n_members=M, winters=WINTERS, member_series=False
    )
    initialise_store(str(path), schema)
    src = _combo_dataset(3, member_series=False)
    write_combo(str(path), schema, COMBOS[2], src, _prov("lean"))
    ds = _cube(path)
    assert not any(v in ds for v in OPTIONAL_VARS)
    np.testing.assert_array_equal(
        _sel(ds, COMBOS[2]).member_event_days.values, src.member_event_days.values
    )
    assert open_schema(str(path)).member_series is False


def test_a_write_that_dies_never_leaves_done_over_new_data(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = _schema()
    write_combo(str(store), schema, COMBOS[1], _combo_dataset(1), _prov("old"))
    real = store_module._region_write

    def dies_on_data(url, ds, region, options):  # the status write passes, the data write dies
        if "temperature_mean" in ds:
            raise OSError("disk full")
        real(url, ds, region, options)

    monkeypatch.setattr(store_module, "_region_write", dies_on_data)
    with pytest.raises(OSError, match="disk full"):
        write_combo(str(store), schema, COMBOS[1], _combo_dataset(2), _prov("new"))
    row = combo_status(str(store)).set_index(list(COMBO_DIMS)).loc[COMBOS[1]]
    assert row["status"] == "writing" and row["fingerprint"] == ""


def test_a_failed_combination_reads_as_nan_and_only_its_chunks_go(store: Path) -> None:
    """Issue 17 item 6: a combination that fails on a rerun loses its old data (it reads as
    NaN, as documented), and no other combination's chunk is touched."""
    schema = _schema()
    for seed, combo in enumerate(COMBOS[:2]):
        write_combo(str(store), schema, combo, _combo_dataset(seed), _prov(str(seed)))
    others = {k: v for k, v in _chunk_bytes(store).items()}
    mark_failed(str(store), COMBOS[1], "predict: model inputs: tas@shelf: 92 missing days")
    got = _sel(_cube(store), COMBOS[1])
    for name in RESULT_VARS:
        assert bool(got[name].isnull().all()), name
    assert str(got.status.values) == "failed"
    kept = _sel(_cube(store), COMBOS[0])
    np.testing.assert_array_equal(
        kept["temperature_mean"].values, _combo_dataset(0)["temperature_mean"].values
    )
    after = _chunk_bytes(store)
    with xr.open_zarr(store) as ds:
        along = list(zip(*([str(x) for x in ds[d].values] for d in COMBO_DIMS), strict=True))
    mine = f"{along.index(COMBOS[1])}."
    for key, data in others.items():
        name = key.rsplit("/", 1)[-1]
        if key.split("/")[0] in RESULT_VARS and name.startswith(mine):
            assert key not in after, key  # its chunks are gone
        elif key.split("/")[0] in RESULT_VARS:
            assert after[key] == data, key  # every other result chunk byte-identical
