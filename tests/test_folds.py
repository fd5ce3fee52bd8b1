"""Cross-fitted ensembles: fold assignment, per-fold selection, out-of-fold forecasts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydantic
import pytest
from test_training import TEST, TRAIN, VALIDATION, _config, synthetic_series

from cascadia.learning.ensemble import DeepEnsemble
from cascadia.learning.extrapolation_split import (
    split_by_air_temperature,
    split_by_cascade_strength,
)
from cascadia.learning.folds import assign_folds, cascade_strength, out_of_fold, select_per_fold
from cascadia.learning.jobs import JobError
from cascadia.learning.metrics import crps_gaussian
from cascadia.learning.training import candidate_splits, prepare_series, train_ensemble


def _winter_days(minima: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """Ten days per winter; the coldest day of each winter at the given anomaly."""
    labels, values = [], []
    for winter, coldest in minima.items():
        days = np.full((10, 2), -0.01)
        days[4] = [coldest, coldest / 3]
        labels += [winter] * 10
        values.append(days)
    return np.asarray(labels), np.concatenate(values)


def test_folds_spread_the_strong_cascades() -> None:
    strong = {2000: -1.0, 2005: -0.9, 2010: -0.8}
    quiet = {w: -0.05 - 0.001 * (w % 7) for w in range(1995, 2015) if w not in strong}
    winters, targets = _winter_days({**strong, **quiet})
    pool = sorted({**strong, **quiet})
    folds = assign_folds(pool, winters, targets, 3)
    assert sorted(w for fold in folds for w in fold) == pool
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    # One strong cascade in each fold, whatever their order in the calendar.
    assert sorted(len(set(fold) & set(strong)) for fold in folds) == [1, 1, 1]
    assert assign_folds(pool, winters, targets, 3) == folds  # deterministic
    # A winter without data counts as quiet, not as an error.
    gap = targets.copy()
    gap[winters == 1995] = np.nan
    assert sorted(w for fold in assign_folds(pool, winters, gap, 3) for w in fold) == pool
    with pytest.raises(ValueError, match="between 2 and"):
        assign_folds(pool[:2], winters, targets, 3)


def test_each_fold_keeps_its_best_candidates_in_turn() -> None:
    folds = [0, 1, 2, 0, 1, 2, 0, 1, 2]
    scores = [0.5, 0.1, 0.3, 0.2, float("nan"), 0.4, 0.9, 0.3, 0.35]
    # Best of each fold: 3 (0.2), 1 (0.1), 2 (0.3); then second of each: 0, 7, 8.
    assert select_per_fold(folds, scores, 3) == [1, 2, 3]
    assert select_per_fold(folds, scores, 5) == [0, 1, 2, 3, 7]
    # The third round starts again with fold 0.
    assert select_per_fold(folds, scores, 7) == [0, 1, 2, 3, 6, 7, 8]
    assert select_per_fold(folds, scores, 9) == list(range(9))
    # A diverged candidate (NaN) ranks last in its fold.
    assert select_per_fold([0, 0, 1], [float("nan"), 0.5, 0.1], 2) == [1, 2]


def test_out_of_fold_forecast_uses_only_members_that_did_not_learn_the_day() -> None:
    winters = np.repeat([2001, 2002, 2003, 2004], 5)
    # Members 0 and 2 validated on {2001, 2002}, member 1 on {2003}; 2004 is test.
    member_winters = [[2001, 2002], [2003], [2002, 2001]]
    mean = np.broadcast_to(np.arange(3.0)[:, None, None], (3, 20, 2)).copy()
    std = mean + 10
    oof_mean, oof_std, covered = out_of_fold(mean, std, member_winters, winters)
    # One member per fold (the smallest fold's count), the fold's first one.
    assert oof_mean.shape == (1, 20, 2)
    np.testing.assert_array_equal(oof_mean[0, winters <= 2002], 0.0)
    np.testing.assert_array_equal(oof_mean[0, winters == 2003], 1.0)
    np.testing.assert_array_equal(oof_std[0, winters == 2003], 11.0)
    assert np.isnan(oof_mean[0, winters == 2004]).all()
    np.testing.assert_array_equal(covered, winters <= 2003)


def test_config_checks_the_folds() -> None:
    with pytest.raises(pydantic.ValidationError, match="must not exceed members"):
        _config(members=2, folds=3)
    with pytest.raises(pydantic.ValidationError, match="exceed the 3 training"):
        _config(members=5, folds=4, train_winters=[1993, 1994], validation_winters=[1995])
    assert _config(members=2, folds=2).learning_winters() == sorted(TRAIN + VALIDATION)
    assert _config().learning_winters() == TRAIN


def test_candidate_splits_rotate_the_validation_fold() -> None:
    data = synthetic_series()
    config = _config(members=3, candidates=6, folds=3)
    series, norm = prepare_series(data, config)
    splits, folds = candidate_splits(config, data, series)
    assert folds is not None and sorted(w for fold in folds for w in fold) == sorted(
        TRAIN + VALIDATION
    )
    winters = data.winters()
    pool = np.isin(winters, TRAIN + VALIDATION)
    for i, split in enumerate(splits):
        np.testing.assert_array_equal(split.validation, np.isin(winters, folds[i % 3]))
        np.testing.assert_array_equal(split.train, pool & ~split.validation)
        assert not (split.train | split.validation)[np.isin(winters, TEST)].any()
    # The normalisation sees every winter the members learn from, never the test winters.
    np.testing.assert_allclose(norm.target_mean, np.nanmean(data.targets[pool], 0))


def test_cross_fitted_ensemble_keeps_a_member_per_fold(tmp_path: Path) -> None:
    data = synthetic_series(n_winters=16)
    config = _config(
        architectures=None,
        hparams={"hidden": 8},
        members=2,
        candidates=4,
        folds=2,
        epochs=3,
        patience=3,
    )
    train_ensemble(config, data, tmp_path / "model", workers=1)
    record = json.loads((tmp_path / "model" / "candidates.json").read_text())
    folds = record["folds"]
    assert record["selection"] == "validation_crps_per_fold"
    for fold in folds:
        mine = [c for c in record["candidates"] if c["validation_winters"] == fold]
        assert len(mine) == 2 and sum(c["kept"] for c in mine) == 1
        kept = next(c for c in mine if c["kept"])
        assert kept["validation_crps"] == min(c["validation_crps"] for c in mine)
    loaded = DeepEnsemble.load(tmp_path / "model")
    assert sorted(map(tuple, (i["validation_winters"] for i in loaded.info))) == sorted(
        map(tuple, folds)
    )
    # Each member's recorded score is its CRPS on its own fold (°C, mean of depths).
    pred = loaded.predict(data.predictors, data.time)
    for m, info in enumerate(loaded.info):
        held = np.isin(data.winters(), info["validation_winters"])
        per_depth = []
        for d in range(2):
            ok = held & np.isfinite(data.targets[:, d])
            per_depth.append(
                crps_gaussian(
                    data.targets[ok, d], pred.member_mean[m, ok, d], pred.member_std[m, ok, d]
                )
            )
        assert info["validation_crps"] == pytest.approx(np.mean(per_depth), rel=1e-3)


def test_the_splits_hold_out_the_coldest_warmest_or_strongest_winters() -> None:
    """Cold and warm splits: a third of the winters by mean air temperature; strong: the
    tenth whose coldest anomaly (in standard deviations, averaged over depths) is lowest —
    the rest keeps the weaker cascades to learn from."""
    temperature = {2000 + i: 280.0 + t for i, t in enumerate([3, 1, 8, 5, 0, 7, 2, 6, 4])}
    train, validation, test = split_by_air_temperature(temperature, 2, "cold")
    assert test == [2001, 2004, 2006]  # 280, 281, 282 K
    assert sorted(train + validation + test) == sorted(temperature) and len(validation) == 2
    assert split_by_air_temperature(temperature, 2, "warm")[2] == [2002, 2005, 2007]

    winters = np.repeat(np.arange(2000, 2020), 10)
    anomaly = np.zeros((200, 2))
    minima = {2003: (-3.0, -1.0), 2011: (-2.0, -0.5), 2017: (-0.4, -0.1)}
    for winter, (deep500, deep1000) in minima.items():
        anomaly[np.flatnonzero(winters == winter)[4]] = deep500, deep1000
    anomaly[winters == 2019, 1] = np.nan  # a depth without data counts by the other one
    pool = list(range(2000, 2020))
    strength = cascade_strength(pool, winters, anomaly)
    assert strength[2003] < strength[2011] < strength[2017] < strength[2000] == 0.0
    assert strength[2019] == 0.0
    train, validation, test = split_by_cascade_strength(strength, 3)
    assert test == [2003, 2011]  # round(20 / 10) = 2 strongest; 2017's weak one is learned
    assert 2017 in train + validation and len(validation) == 3
    assert sorted(train + validation + test) == pool
    with pytest.raises(JobError, match="strong_split needs at least 3 winters"):
        split_by_cascade_strength({2000: -1.0, 2001: 0.0}, 1)
