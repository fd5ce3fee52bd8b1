"""The deep background after the mooring record, from a projection's own ocean.

A user projecting deep temperature to 2100 relies on: the run catalog finding each
combination's own ``thetao`` (its experiment and member), or where its run publishes none
a sibling member's of the same model and experiment, the model's ocean read from a
Pangeo-like store (curvilinear grid, ``lev`` in cm, a model calendar) and anchored on the
record's last decade, a scenario continuing its historical run, the stored background
taking it after the record with its own flag (``background_kind`` 4, a sibling's 5; not
anomaly-only), a combination without any keeping the flagged held value, and a clear
error naming the store for what cannot be read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import cascadia
from cascadia.cli import main
from cascadia.run import deep_ocean
from cascadia.run.deep_ocean import DeepOceanInput, after_record_background
from cascadia.run.inference import TrainedModel
from cascadia.run.store import (
    ANOMALY_ONLY_KINDS,
    BACKGROUND_KINDS,
    MODEL_OCEAN_KIND,
    SIBLING_OCEAN_KIND,
)
from cascadia.sources.cache import PredictorCache, fingerprint
from cascadia.sources.catalog import list_combos
from cascadia.sources.config import DeepOcean, load_run_catalog
from cascadia.sources.ocean_analysis import OceanAnalysisError


def _record(first: str, last: str, level: float) -> pd.DataFrame:
    """A flat record background at 500 m (its own ``background.csv`` layout)."""
    days = pd.date_range(first, last)
    return pd.DataFrame(
        {"background_500": level, "observed_500": level}, index=pd.Index(days, name="time")
    )


def _thetao_store(path: Path, years: range, value: Any) -> str:
    """A Pangeo-like Omon ``thetao`` Zarr store (no ``.zarr`` suffix, URL ending in "/"):
    noleap calendar, curvilinear 3 x 3 cells around the mooring, ``lev`` in cm."""
    times = [cftime.DatetimeNoLeap(y, m, 15) for y in years for m in range(1, 13)]
    decimal = np.array([t.year + (t.month - 0.5) / 12.0 for t in times])
    lev_cm = np.array([30_000.0, 70_000.0, 120_000.0])  # 300, 700, 1200 m
    j, i = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
    column = value(decimal)[:, None] + 0.001 * (500.0 - lev_cm / 100.0)[None, :]
    values = np.broadcast_to(column[:, :, None, None], (len(times), 3, 3, 3)).copy()
    ds = xr.Dataset(
        {"thetao": (("time", "lev", "j", "i"), values.astype("float32"), {"units": "degC"})},
        coords={
            "time": ("time", times),
            "lev": ("lev", lev_cm, {"units": "centimeters", "positive": "down", "axis": "Z"}),
            "latitude": (("j", "i"), 42.0 + 0.4 * j, {"standard_name": "latitude"}),
            "longitude": (("j", "i"), 3.0 + 0.4 * i, {"standard_name": "longitude"}),
        },
    )
    path.mkdir(parents=True)
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    return path.as_uri() + "/"


def test_a_scenario_continues_the_record_with_its_own_ocean_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = _record("1993-01-01", "2022-12-31", 13.10)

    # the model's ocean: 0.6 degC too warm, flat to 2014, then warming 0.02 degC a year
    def model(year: np.ndarray) -> np.ndarray:
        return 13.70 + 0.02 * np.clip(year - 2015.0, 0.0, None)

    historical = _thetao_store(tmp_path / "hist" / "v1", range(1990, 2015), model)
    scenario = _thetao_store(tmp_path / "ssp" / "v1", range(2015, 2061), model)
    settings = DeepOcean(smooth_days=30)
    inp = DeepOceanInput("cmip6 [x] M/ssp585/r1", (historical, scenario), settings)
    after, summary = after_record_background(inp, record, [500.0])

    row = summary["depths"]["500"]
    # anchored on 2013-2022, over which the model is 0.064 degC above its 2014 level on
    # average (0.02 degC a year from 2015: 0.5 + 1.5 + ... + 7.5 years over ten years)
    in_anchor = 0.02 * 3.2
    assert row["offset"] == pytest.approx(13.10 - 13.70 - in_anchor, abs=0.01)
    assert row["anchor_days"][1] == "2022-12-31"
    assert after.index.min() == pd.Timestamp("2023-01-01")
    # mid-2050: the record's level plus the model's change since the anchoring decade
    value = after["background_500"].loc["2050-07-01"]
    assert value == pytest.approx(13.10 + 0.02 * 35.5 - in_anchor, abs=0.01)
    assert abs(row["step_at_record_end"] - (0.02 * 8.0 - in_anchor)) < 0.01

    # kept in the predictor cache once read: the same background, the stores not read again
    cache = PredictorCache(str(tmp_path / "cache"))
    first, _ = after_record_background(inp, record, [500.0], cache)
    pd.testing.assert_frame_equal(first, after)
    assert len(list((tmp_path / "cache" / "deep_ocean").glob("*.csv"))) == 2  # one per run
    reads: list[str] = []
    real_read = deep_ocean.deep_temperature
    monkeypatch.setattr(
        deep_ocean, "deep_temperature", lambda cfg, d: reads.append(cfg.path) or real_read(cfg, d)
    )
    again, _ = after_record_background(inp, record, [500.0], cache)
    pd.testing.assert_frame_equal(again, after)
    assert reads == []
    # a store rewritten in place (same URL, other values) is read anew
    shutil.rmtree(tmp_path / "hist" / "v1")
    _thetao_store(tmp_path / "hist" / "v1", range(1990, 2015), lambda y: model(y) + 0.5)
    after_record_background(inp, record, [500.0], cache)
    assert reads == [historical]

    # the historical run alone ends before the anchoring decade's second half
    short = DeepOceanInput("cmip6 [x] M/historical/r1", (historical,), settings)
    with pytest.raises(OceanAnalysisError, match=r"M/historical/r1.*covers 2\.\d of the last"):
        after_record_background(short, record, [500.0])
    broken = tmp_path / "broken" / "v1"
    broken.mkdir(parents=True)
    (broken / ".zgroup").write_text("not json")
    bad = DeepOceanInput("cmip6 [x] M/ssp585/r1", (broken.as_uri() + "/",), settings)
    with pytest.raises(OceanAnalysisError, match=r"broken/v1.*cannot be read"):
        after_record_background(bad, record, [500.0])


def _demo_store(out: Path) -> tuple[TrainedModel, pd.Timestamp, xr.Dataset]:
    """The demo's model, the last day of its record and its results store."""
    model = TrainedModel.load(out / "model")
    return (
        model,
        max(last for _, last in model.records()),
        cascadia.open_results(str(out / "results.zarr")).dataset,
    )


def _assert_stored_background(one: xr.Dataset, inp: DeepOceanInput, model: TrainedModel) -> None:
    """The stored 500 m background after the record is ``inp``'s, anchored on the record."""
    after, _ = after_record_background(inp, model.background, model.depths)
    stored = one["background_temperature"].sel(depth=500.0).dropna("time").to_pandas()
    expected = after["background_500"].reindex(stored.index)
    np.testing.assert_allclose(stored.to_numpy(), expected.to_numpy(), atol=1e-5)


def test_the_run_stores_each_first_member_scenario_background_from_its_own_ocean(
    tiny_demo: dict[str, Any],
) -> None:
    out = tiny_demo["out"]
    catalog = load_run_catalog(str(out / "world/catalogs/cmip6.yaml"))
    source = catalog.sources[0]
    assert source.deep_ocean is not None
    combos = {c.label: c for c in list_combos(catalog, source).combos}
    for label, combo in combos.items():
        source_id, experiment, member = label.split("/")
        assert f"/{source_id}/{experiment}/{member}/Omon/thetao/" in combo.deep_ocean
        assert combo.ocean_of == "own" and not combo.ocean_sibling, label

    model, record_end, results = _demo_store(out)
    checked = 0
    for label, combo in combos.items():
        source_id, experiment, member = label.split("/")
        if experiment == "historical":
            continue
        one = results.sel(experiment=experiment, source_id=source_id, member_id=member)
        one = one.sel(time=slice(record_end + pd.Timedelta(days=1), None))
        kind = one["background_kind"].sel(depth=500.0).values
        kind = kind[np.isfinite(kind)]
        assert kind.size > 300, label
        assert set(kind) == {MODEL_OCEAN_KIND}, label
        hist = combos[f"{source_id}/historical/{member}"]
        inp = DeepOceanInput(label, (hist.deep_ocean, combo.deep_ocean), source.deep_ocean)
        _assert_stored_background(one, inp, model)
        selection = json.loads(str(one["selection"].values))
        assert selection["deep_ocean"]["assets"] == list(inp.assets), label
        checked += 1
    assert checked == 9  # three models x three scenarios
    assert MODEL_OCEAN_KIND in BACKGROUND_KINDS and MODEL_OCEAN_KIND not in ANOMALY_ONLY_KINDS


def test_a_member_without_thetao_takes_a_sibling_members_ocean(
    tiny_run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The twin publishes ``thetao`` for first members only: a second member takes its first
    sibling's (same model and experiment), says so in ``catalog check``, and its stored
    background after the record is flagged apart (kind 5, not anomaly-only); with
    ``sibling_members: false`` it has none (held)."""
    catalog = load_run_catalog(tiny_run["catalog"])
    source = catalog.sources[0]
    assert source.deep_ocean is not None and source.deep_ocean.sibling_members
    combos = list_combos(catalog, source).combos
    members = {c.labels["member_id"] for c in combos}
    assert members == {"r1i1p1f1", "r2i1p1f1"}
    first = {
        (c.labels["source_id"], c.labels["experiment_id"]): c
        for c in combos
        if c.labels["member_id"] == "r1i1p1f1"
    }
    for combo in combos:
        run = (combo.labels["source_id"], combo.labels["experiment_id"])
        own = combo.labels["member_id"] == "r1i1p1f1"
        assert "/r1i1p1f1/Omon/thetao/" in combo.deep_ocean, combo.label
        assert combo.deep_ocean == first[run].deep_ocean, combo.label
        assert combo.ocean_sibling == ("" if own else "r1i1p1f1"), combo.label
        assert combo.ocean_of == ("own" if own else "member r1i1p1f1"), combo.label
    # catalog check shows whose ocean each combination takes
    assert main(["catalog", "check", "--catalog", tiny_run["catalog"]]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "r2i1p1f1" in line]
    assert len(rows) == len(combos) // 2
    for row in rows:
        assert [c.strip() for c in row.split("│")][-2] == "member r1i1p1f1", row
    alone = source.model_copy(
        update={"deep_ocean": source.deep_ocean.model_copy(update={"sibling_members": False})}
    )
    for combo in list_combos(catalog, alone).combos:
        own = combo.labels["member_id"] == "r1i1p1f1"
        assert bool(combo.deep_ocean) == own and not combo.ocean_sibling, combo.label
        # the switch does not shape the predictors: their cache keeps its key
        assert fingerprint(catalog, alone, combo) == fingerprint(catalog, source, combo)
    # stored apart: kind 5 where the background after the record is a sibling's
    model = TrainedModel.load(tiny_run["model"])
    record_end = max(last for _, last in model.records())
    days = pd.date_range(record_end - pd.Timedelta(days=9), periods=20)
    after = pd.DataFrame({"background_500": 13.5, "background_1000": 13.1}, index=days)
    kind = model.background_kind_on(days.values, after, SIBLING_OCEAN_KIND)
    assert set(kind[days > record_end].ravel()) == {SIBLING_OCEAN_KIND}
    assert set(kind[days <= record_end].ravel()) == {0.0}
    assert SIBLING_OCEAN_KIND in BACKGROUND_KINDS and SIBLING_OCEAN_KIND not in ANOMALY_ONLY_KINDS


def test_a_regional_model_takes_its_driving_models_ocean(tiny_demo: dict[str, Any]) -> None:
    """An uncoupled RCM has no ocean: with ``driving_model.deep_ocean`` each CORDEX
    combination takes the ``thetao`` of its driving GCM's run (same experiment and
    member), and its stored background after the record is that ocean anchored on the
    record (kind 4), not the held one."""
    out = tiny_demo["out"]
    cmip = load_run_catalog(str(out / "world/catalogs/cmip6.yaml"))
    gcm = {c.label: c for c in list_combos(cmip, cmip.sources[0]).combos}
    catalog = load_run_catalog(str(out / "world/catalogs/cordex.yaml"))
    source = catalog.sources[0]
    assert source.driving_model is not None and source.driving_model.deep_ocean
    combos = {c.label: c for c in list_combos(catalog, source).combos}
    assert combos
    model, record_end, results = _demo_store(out)
    checked = 0
    for label, combo in combos.items():
        source_id, experiment, member = label.split("/")
        driving = f"{source_id.split('_')[0]}/{experiment}/{member}"
        assert combo.ocean_driving is not None and combo.ocean_driving.combo.label == driving
        assert combo.deep_ocean == gcm[driving].deep_ocean != ""
        if experiment == "historical":
            continue
        one = results.sel(experiment=experiment, source_id=source_id, member_id=member)
        one = one.sel(time=slice(record_end + pd.Timedelta(days=1), None))
        kind = one["background_kind"].sel(depth=500.0).values
        assert set(kind[np.isfinite(kind)]) == {MODEL_OCEAN_KIND}, label
        hist = combos[f"{source_id}/historical/{member}"]
        assert cmip.sources[0].deep_ocean is not None
        inp = DeepOceanInput(label, (hist.deep_ocean, combo.deep_ocean), cmip.sources[0].deep_ocean)
        _assert_stored_background(one, inp, model)
        checked += 1
    assert checked >= 2
