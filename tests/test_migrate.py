"""Migration of a store of the old dense layout into the stacked (combo) layout.

The old layout is built here with xarray directly, as the old ``initialise_store`` and
region writes left it: experiment x source_id x member_id dims, string status with
"not_in_catalog" holes, one combination per chunk, a spread variable beside them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cascadia.cli import main
from cascadia.report.store import ReportError, open_store
from cascadia.run.store import (
    COMBO_DIMS,
    RESULT_VARS,
    STRING_VARS,
    combo_status,
    open_cube,
    open_spread,
)

TIME = pd.date_range("1999-11-01", "2002-04-30", freq="D").values
WINTERS = [2000, 2001, 2002]
LABELS = {"experiment": ["historical", "ssp585"], "source_id": ["A", "B"], "member_id": ["r1"]}
STATUS = np.array([[["done"], ["failed"]], [["done"], ["not_in_catalog"]]], dtype=object)
M = 2


def _old_store(path: Path) -> xr.Dataset:
    """A small store of the old layout, as today's main wrote it."""
    rng = np.random.default_rng(4)
    sizes = {"time": len(TIME), "depth": 2, "quantile": 5, "ensemble": M, "winter": 3}
    shape = tuple(len(v) for v in LABELS.values())
    written = (STATUS == "done") | (STATUS == "failed")
    data = {}
    for name, (dims, attrs) in RESULT_VARS.items():
        values = rng.normal(13.0, 0.3, (*shape, *[sizes[d] for d in dims])).astype(np.float32)
        values[~written] = np.nan
        data[name] = ((*COMBO_DIMS, *dims), values, dict(attrs))
    strings = {
        "status": STATUS,
        "status_reason": np.where(STATUS == "failed", "no input", "").astype(object),
        "catalog_family": np.where(STATUS == "not_in_catalog", "", "FAM").astype(object),
    }
    for i, name in enumerate(STRING_VARS[2:]):
        strings[name] = np.where(STATUS == "done", f"{name}-{i}", "").astype(object)
    for name, values in strings.items():
        data[name] = (COMBO_DIMS, values)
    data["model_member_count"] = (
        ("experiment", "source_id"),
        np.array([[1, 0], [1, 0]], np.int32),
        {"cascadia_role": "spread_statistics"},
    )
    edges = np.array([[f"{w - 1}-11-01", f"{w}-05-01"] for w in WINTERS], dtype="datetime64[ns]")
    ds = xr.Dataset(
        data,
        coords={
            **LABELS,
            "time": TIME,
            "depth": [500.0, 1000.0],
            "quantile": [0.05, 0.25, 0.5, 0.75, 0.95],
            "ensemble": np.arange(M),
            "winter": WINTERS,
            "season_bounds": (("winter", "bounds"), edges),
        },
        attrs={
            "Conventions": "CF-1.10",
            "title": "cascadia ensemble results",
            "model_checkpoint_hash": "sha256:old",
            "spread_method": "old",
        },
    )
    encoding = {n: {"chunks": (1, 1, 1, *ds[n].shape[3:])} for n in ds.data_vars if ds[n].ndim >= 3}
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    return ds


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("migrate")
    old = _old_store(root / "old.zarr")
    new = root / "new.zarr"
    assert main(["migrate", "--results", str(root / "old.zarr"), "--out", str(new)]) == 0
    return {"root": root, "old": old, "new": new}


def test_migration_keeps_every_combination_and_drops_the_holes(migrated: dict) -> None:
    old, new = migrated["old"], str(migrated["new"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stacked = xr.open_zarr(new).load()
        cube = open_cube(new).load()
    assert stacked.sizes["combo"] == 3  # the not_in_catalog cell is gone
    table = combo_status(new).set_index(list(COMBO_DIMS))
    assert table["status"].to_dict() == {
        ("historical", "A", "r1"): "done",
        ("historical", "B", "r1"): "failed",
        ("ssp585", "A", "r1"): "done",
    }
    assert table.loc[("historical", "B", "r1"), "status_reason"] == "no input"
    assert table.loc[("ssp585", "A", "r1"), "catalog_entry"] == "catalog_entry-3"
    # the cube view is the old store, value for value (its holes NaN / not_in_catalog)
    for name in (*RESULT_VARS, *STRING_VARS, "catalog_family"):
        np.testing.assert_array_equal(cube[name].values, old[name].values, err_msg=name)
    assert stacked.attrs["model_checkpoint_hash"] == "sha256:old"
    assert stacked.attrs["Conventions"] == "CF-1.11" and "spread_method" not in stacked.attrs
    assert "migrated from the experiment x source_id x member_id layout" in stacked.attrs["history"]
    assert "model_member_count" not in stacked  # the spread is recomputed into its group


def test_migration_recomputes_the_spread(migrated: dict) -> None:
    spread = open_spread(str(migrated["new"]))
    assert spread is not None
    count = spread["model_member_count"].transpose("experiment", "source_id")
    assert count.values.tolist() == [[1, 0], [1, 0]]  # done members per model
    cube = open_cube(str(migrated["new"]))
    assert "spread statistics written" in cube.attrs["history"]
    assert (
        "winter (November-April) mean" in cube["winter_temperature_model_mean"].attrs["long_name"]
    )


def test_old_layout_is_refused_with_the_command_and_migrates_in_place(
    migrated: dict, capsys: pytest.CaptureFixture
) -> None:
    path = migrated["root"] / "inplace.zarr"
    _old_store(path)
    with pytest.raises(ReportError, match=r"cascadia-ensemble migrate --results .*inplace.zarr"):
        open_store(str(path))
    assert main(["migrate", "--results", str(path)]) == 0
    assert "kept as" in capsys.readouterr().out
    assert (migrated["root"] / "inplace.zarr.cube-layout" / "status").exists()
    xr.testing.assert_identical(
        open_cube(str(path)).drop_attrs(), open_cube(str(migrated["new"])).drop_attrs()
    )
    # a second migration of the converted store says there is nothing to do
    assert main(["migrate", "--results", str(path)]) == 2
    assert "already has the stacked (combo) layout" in capsys.readouterr().err
