"""The twin world's skill ceiling (cascadia.twin.ceiling) on a tiny world and model.

A tiny twin world (two years of ERA5-like reanalysis and mooring) and a tiny deep
ensemble trained on it in a module fixture; what the ceiling must equal is recomputed
here from the world's and the model directory's own files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers import small_preset, world_and_smoke_model

from cascadia.cli import main
from cascadia.learning.metrics import crps_gaussian
from cascadia.twin import ocean
from cascadia.twin.ceiling import (
    CeilingError,
    compute_ceiling,
    expected_hidden,
    held_background,
    read_model_series,
    regenerate_twin,
    water_mass_salinity,
)
from cascadia.twin.realizations import make_history

PRESET = small_preset("tiny-ceiling")
TEST, VALIDATION = [2013], [2015]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny world and a smoke model trained on it."""
    root = tmp_path_factory.mktemp("ceiling")
    world_and_smoke_model(root, PRESET)  # the winters of TEST and VALIDATION
    return {"world": root / "world", "model": root / "model"}


@pytest.fixture(scope="module")
def result(twin: dict[str, Path]) -> dict:
    return compute_ceiling(twin["world"], twin["model"])


def _table(model: Path) -> pd.DataFrame:
    table = pd.read_csv(model / "background.csv", parse_dates=["time"])
    table["winter"] = table["time"].dt.year + (table["time"].dt.month >= 11)
    return table


def test_the_regenerated_history_equals_the_stored_truth(twin, result) -> None:
    history = make_history(PRESET, 0)
    stored = xr.open_zarr(twin["world"] / "truth" / "history.zarr")["temperature"].load()
    regenerated = regenerate_twin(twin["world"], read_model_series(twin["model"]))
    with_noise = regenerated.clean + history.hidden.deep_noise
    assert np.abs(stored.transpose("depth", "day").values - with_noise).max() < 1e-3
    assert result["regeneration_max_abs_difference"] < 1e-3
    # the full-ocean oracle lacks exactly the eddy noise: not the truth itself
    assert np.abs(regenerated.clean - regenerated.truth).max() > 0.01


def test_the_oracle_river_replaces_only_the_alpine_memory_by_its_mean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = make_history(PRESET, 0)
    monkeypatch.setattr(ocean, "red_noise", lambda rng, n, *_: np.zeros(n))
    wetter = history.weather.copy()
    wetter.pr = 2.0 * wetter.pr + 1e-5 * (history.axis.phase > 0.5)
    gaps = []
    for weather in (history.weather, wetter):
        # with the noise at zero the drawn Alpine factor is exp(−0.045), its mean is 1
        hidden = ocean.hidden_ocean(history.axis, np.random.default_rng(0), weather, None)
        expected, _ = expected_hidden(hidden, history.axis, weather, hidden.background_temp)
        assert (expected.river > hidden.river).all()
        gaps.append(expected.river - hidden.river)
    # the rain-fed part is kept as it is: the gap does not depend on the weather
    np.testing.assert_allclose(gaps[0], gaps[1], rtol=1e-9)


def test_the_atmosphere_oracle_holds_the_background_as_the_model_does(twin) -> None:
    """No generator trend: the oracle's deep water is the model's background, held at its ends."""
    series = read_model_series(twin["model"])
    history = make_history(PRESET, 0)
    time = pd.DatetimeIndex(history.axis.time)
    held = held_background(time, series)
    index = time.get_indexer(series.time)
    assert (index >= 0).all()
    np.testing.assert_allclose(held[:, index].T, series.background)
    assert (held[:, : index.min() + 1] == held[:, [index.min()]]).all()
    assert (held[:, index.max() :] == held[:, [index.max()]]).all()
    oracle, background = expected_hidden(history.hidden, history.axis, history.weather, held)
    np.testing.assert_array_equal(oracle.background_temp, held)
    np.testing.assert_array_equal(background, held)
    # A model whose background is flat gives the oracle flat deep water, salinity included,
    # although the generator's own background steps up by 0.3 degC in 2014.
    flat = held_background(
        time,
        type(series)(
            series.time, series.depths, np.full_like(series.background, 13.4), series.observed
        ),
    )
    oracle, _ = expected_hidden(history.hidden, history.axis, history.weather, flat)
    assert np.ptp(oracle.background_temp, axis=1).max() == 0.0
    assert np.ptp(oracle.background_salt, axis=1).max() == 0.0
    # Salinity follows the water mass's T-S line: warmer deep water is saltier.
    warm, cold = (
        water_mass_salinity(np.full((2, 1), 13.6)),
        water_mass_salinity(np.full((2, 1), 13.0)),
    )
    assert (warm > cold).all() and (cold > 38.4).all() and (warm < 38.8).all()
    with pytest.raises(CeilingError, match="expected"):
        expected_hidden(history.hidden, history.axis, history.weather, held[:, :10])


def test_oracles_rank_full_ocean_then_atmosphere_then_background_at_500_m(result) -> None:
    rows = result["depths"]["500"]["rows"]
    full, atmosphere, bg = (
        rows[k]["crps"] for k in ("full_ocean", "atmosphere_only", "background_only")
    )
    print(f"500 m CRPS: full {full:.4f}, atmosphere {atmosphere:.4f}, background {bg:.4f}")
    assert 0 < full < atmosphere < bg


def test_oracle_sigma_is_positive_and_fitted_on_the_validation_winters(twin, result) -> None:
    table = _table(twin["model"])
    regenerated = regenerate_twin(twin["world"], read_model_series(twin["model"]))
    index = regenerated.time.get_indexer(pd.DatetimeIndex(table["time"]))
    observed, bg = table["observed_500"].to_numpy(), table["background_500"].to_numpy()
    means = {
        "full_ocean": regenerated.clean[0, index],
        "atmosphere_only": bg + regenerated.atmosphere_anomaly[0, index],
        "background_only": bg,
    }
    validation = table["winter"].isin(VALIDATION).to_numpy() & np.isfinite(observed)
    test = table["winter"].isin(TEST).to_numpy()
    for name, mean in means.items():
        row = result["depths"]["500"]["rows"][name]
        sigma = row["sigma"]
        assert sigma > 0
        at = [crps_gaussian(observed[validation], mean[validation], f * sigma) for f in (1, 1.5)]
        below = crps_gaussian(observed[validation], mean[validation], sigma / 1.5)
        assert at[0] == pytest.approx(row["validation_crps"], rel=1e-12)
        assert at[0] <= at[1] and at[0] <= below, name
        on_test = crps_gaussian(np.where(test, observed, np.nan), mean, sigma)
        assert on_test == pytest.approx(row["crps"], rel=1e-12)


def test_scored_days_are_the_finite_test_winter_observations(twin, result) -> None:
    table = _table(twin["model"])
    metrics = json.loads((twin["model"] / "metrics.json").read_text())
    for depth in ("500", "1000"):
        expected = int((table["winter"].isin(TEST) & table[f"observed_{depth}"].notna()).sum())
        entry = result["depths"][depth]
        assert entry["n_test_days"] == expected > 100
        assert entry["rows"]["ensemble"]["n_days"] == expected
        ensemble = metrics["ensemble"][depth]["crps"]
        assert entry["rows"]["ensemble"]["crps"] == ensemble
        skill = entry["rows"]["ensemble"]["skill"]["climatology"]
        assert skill == pytest.approx(1 - ensemble / metrics["climatology"][depth]["crps"])
        # The ensemble's own daily mean (hindcast.csv) enters the error split and the figure.
        assert set(entry["strong_cascade"]["rmse_other_days"]) >= {"ensemble", "full_ocean"}
        other = entry["strong_cascade"]["rmse_other_days"]["ensemble"]
        assert other == pytest.approx(metrics["ensemble"][depth]["rmse"], rel=0.5)
        assert len(result["figure"][depth]["ensemble"]) == len(result["figure"]["time"])


def test_the_cli_writes_the_three_files(twin, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ceiling", "--model", str(twin["model"]), "--world", str(twin["world"])])
    out = twin["model"] / "report" / "ceiling"
    assert code == 0
    for name in ("ceiling.json", "ceiling.md", "ceiling.png"):
        assert (out / name).stat().st_size > 500, name
    written = json.loads((out / "ceiling.json").read_text())
    assert set(written["depths"]) == {"500", "1000"}
    assert "full-ocean oracle" in (out / "ceiling.md").read_text()
    assert "atmosphere-only oracle" in capsys.readouterr().out


def test_a_world_with_another_seed_is_refused(twin, tmp_path: Path, capsys) -> None:
    world = tmp_path / "other-world"
    shutil.copytree(twin["world"] / "truth" / "history.zarr", world / "truth" / "history.zarr")
    manifest = json.loads((twin["world"] / "world.json").read_text())
    (world / "world.json").write_text(json.dumps({**manifest, "seed": manifest["seed"] + 1}))
    with pytest.raises(CeilingError, match="another version of the generator") as info:
        compute_ceiling(world, twin["model"])
    assert str(world) in str(info.value)
    code = main(["ceiling", "--model", str(twin["model"]), "--world", str(world)])
    assert code == 2
    assert str(world) in capsys.readouterr().err
