"""The twin world's ocean is physically sane (in memory, no stores written).

Rates and magnitudes are checked on several seeds of the real history and of
the projection paths, against the observed facts in shared/notes/dswc-science.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from cascadia.twin.atmosphere import air_climatology
from cascadia.twin.ocean import OceanParams, run_ocean, sea_surface_temperature
from cascadia.twin.physics import PAIR_RANGES, RANGES, draw_ocean_params, seed_params
from cascadia.twin.presets import get_preset
from cascadia.twin.realizations import Realization, make_history, make_projections, run_all

SEEDS = (0, 1, 2, 3)
DROP_500, DROP_1000 = 0.15, 0.10  # degC below background that count as cascading


def winter_stats(r: Realization, winters: range) -> dict[str, np.ndarray]:
    """Per winter: event days and the largest drop below background at 500/1000 m."""
    assert r.ocean is not None
    labels = r.axis.winter_of_day()
    anomaly = r.ocean.temperature - r.ocean.background_temp
    days = np.array(
        [
            [np.sum(anomaly[d, labels == w] < -t) for w in winters]
            for d, t in ((0, DROP_500), (1, DROP_1000))
        ]
    )
    drop = np.array([[-anomaly[d, labels == w].min() for w in winters] for d in (0, 1)])
    return {"days": days, "drop": drop, "cascading": days >= 2}


@pytest.fixture(scope="module")
def histories() -> list[Realization]:
    preset = get_preset("demo")
    runs = [make_history(preset, seed) for seed in SEEDS]
    run_all(runs)
    return runs


def test_cascading_winters_at_a_plausible_rate(histories):
    counts = [winter_stats(h, range(1993, 2014))["cascading"][0].sum() for h in histories]
    # observed: 6 intense winters in 1993-2013; "roughly 1 winter in 4 to 6"
    assert 3.5 <= np.mean(counts) <= 6.5, counts
    assert all(2 <= c <= 8 for c in counts), counts


def test_drops_are_realistic_and_weaker_at_1000m(histories):
    drops_500, drops_1000, n500, n1000 = [], [], 0, 0
    for h in histories:
        stats = winter_stats(h, range(1950, 2026))
        cascading = stats["cascading"]
        drops_500 += list(stats["drop"][0][cascading[0]])
        drops_1000 += list(stats["drop"][1][cascading[1]])
        n500, n1000 = n500 + cascading[0].sum(), n1000 + cascading[1].sum()
    drops_500 = np.array(drops_500)
    assert np.median(drops_500) > 0.3 and drops_500.max() < 1.5, drops_500
    assert np.mean((drops_500 > 0.2) & (drops_500 < 1.5)) > 0.9
    assert n1000 < n500
    assert np.median(drops_1000) < np.median(drops_500)


def test_events_happen_january_to_april_and_last_days_to_weeks(histories):
    months, durations = [], []
    for h in histories:
        assert h.ocean is not None
        cold = (h.ocean.temperature[0] - h.ocean.background_temp[0]) < -DROP_500
        months += list(np.asarray(h.axis.time.month)[cold])
        edges = np.diff(np.concatenate([[0], cold.astype(int), [0]]))
        durations += list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
    months, durations = np.array(months), np.array(durations)
    assert np.mean(np.isin(months, [1, 2, 3, 4])) > 0.9
    assert np.mean(months == 12) < 0.05
    long_enough = durations[durations >= 2]
    assert 5 <= np.median(long_enough) <= 45, np.median(long_enough)


def _event_days(history: Realization, params: OceanParams | None = None, **changes) -> int:
    """500 m event days of the history over 1950-2025 with perturbed forcing."""
    weather = history.weather.copy()
    for name, change in changes.items():
        setattr(weather, name, change(getattr(weather, name)))
    (ocean,) = run_ocean([history.axis], [weather], [history.hidden], [None], params)
    keep = history.axis.year >= 1950
    return int(np.sum((ocean.temperature[0] - ocean.background_temp[0])[keep] < -DROP_500))


@pytest.fixture(scope="module")
def unchanged_days(histories) -> list[int]:
    """:func:`_event_days` of the first two histories as they are (each perturbation
    below is compared with the same run)."""
    return [_event_days(history) for history in histories[:2]]


@pytest.mark.parametrize(
    ("label", "changes"),
    [
        ("colder by 1 K", {"tas": lambda v: v - 1.0}),
        ("windier by 15 %", {"uas": lambda v: v * 1.15, "vas": lambda v: v * 1.15}),
        ("drier by 8 % relative humidity", {"hurs": lambda v: np.clip(v - 8.0, 5, 100)}),
    ],
)
def test_colder_windier_drier_winters_cascade_more(histories, unchanged_days, label, changes):
    # the changed air only: the hidden ocean and the offshore water's own year-to-year
    # anomaly (which the perturbation shifts with its climatology) stay as they were
    for history, unchanged in zip(histories[:2], unchanged_days, strict=True):
        assert _event_days(history, **changes) > 1.15 * unchanged, label


@pytest.mark.parametrize(
    ("label", "params"),
    [
        ("fresher: twice the Rhône", OceanParams(river_factor=2.0)),
        ("more stratified autumns", OceanParams(stratification_offset=1.5)),
    ],
)
def test_fresher_or_more_stratified_shelf_cascades_less(histories, unchanged_days, label, params):
    for history, unchanged in zip(histories[:2], unchanged_days, strict=True):
        assert _event_days(history, params) < 0.8 * unchanged, label


@pytest.fixture(scope="module")
def projections() -> list[Realization]:
    preset = get_preset("demo")
    paths = make_projections(preset, seed=5)
    run_all(paths)
    return paths


def test_ssp585_cascades_clearly_less_by_2080_2100(projections):
    historical, late = [], []
    for path in projections:
        if path.scenario != "ssp585":
            continue
        stats_hist = winter_stats(path, range(1960, 2015))
        stats_late = winter_stats(path, range(2080, 2101))
        historical.append(stats_hist["cascading"][0].mean())
        late.append(stats_late["cascading"][0].mean())
    assert np.mean(historical) > 0.1
    assert np.mean(late) < 0.4 * np.mean(historical), (historical, late)


def test_historical_segment_is_shared_by_the_scenarios_of_a_member(projections):
    by_member: dict[tuple[str, str], list[Realization]] = {}
    for path in projections:
        by_member.setdefault((path.key[0], path.key[2]), []).append(path)
    for paths in by_member.values():
        assert {p.scenario for p in paths} == {"ssp126", "ssp245", "ssp585"}
        n = paths[0].historical_days
        for other in paths[1:]:
            assert other.ocean is not None and paths[0].ocean is not None
            np.testing.assert_array_equal(
                other.ocean.temperature[:, :n], paths[0].ocean.temperature[:, :n]
            )
            assert not np.array_equal(
                other.ocean.temperature[:, n:], paths[0].ocean.temperature[:, n:]
            )


def test_background_warms_with_a_2014_step(histories):
    h = histories[0]
    assert h.ocean is not None
    year = h.axis.year
    bg = h.ocean.background_temp[0]
    step = bg[year == 2015].mean() - bg[year == 2013].mean()
    assert 0.2 < step < 0.5
    assert bg[year == 2025].mean() > bg[year == 1950].mean() + 0.4


# ------------------------------------------------------------------ offshore surface water


def _period_mean(path: Realization, first: int, last: int) -> float:
    assert path.ocean is not None
    keep = (path.axis.year >= first) & (path.axis.year <= last)
    return float(path.ocean.offshore_temp[keep].mean())


def test_offshore_warming_follows_each_models_sensitivity(projections):
    """2080-2100 minus 1993-2022 offshore warming, per source under ssp585, scales
    with the source's sensitivity (0.85, 1.0, 1.25) like its air does."""
    sea, air = {}, {}
    for path in projections:
        if path.scenario != "ssp585":
            continue
        assert path.ocean is not None
        keep_late = (path.axis.year >= 2080) & (path.axis.year <= 2100)
        keep_ref = (path.axis.year >= 1993) & (path.axis.year <= 2022)
        tas = path.weather.tas - air_climatology(path.axis.phase)
        sea.setdefault(path.key[0], []).append(
            _period_mean(path, 2080, 2100) - _period_mean(path, 1993, 2022)
        )
        air.setdefault(path.key[0], []).append(tas[keep_late].mean() - tas[keep_ref].mean())
    sea_mean = {k: np.mean(v) for k, v in sea.items()}
    air_mean = {k: np.mean(v) for k, v in air.items()}
    assert sea_mean["TWIN-ESM-A"] < sea_mean["TWIN-ESM-C"] < sea_mean["TWIN-ESM-B"], sea_mean
    assert 1.3 < sea_mean["TWIN-ESM-B"] / sea_mean["TWIN-ESM-A"] < 1.65, sea_mean  # 1.25 / 0.85
    for source, warming in sea_mean.items():
        # the sea warms by ~0.8 of the air (land-sea warming contrast)
        assert 0.65 < warming / air_mean[source] < 0.95, (source, warming, air_mean[source])
        assert 1.5 < warming < 5.0, (source, warming)


def test_sea_surface_co_varies_with_the_air_from_year_to_year(histories):
    """Winter (Dec-Mar) SST anomalies follow the air's with a positive, imperfect
    correlation, and vary by a few tenths of a degree from winter to winter."""
    correlations, spreads = [], []
    for h in histories:
        assert h.ocean is not None
        sst = sea_surface_temperature(h.ocean.offshore_temp, h.axis.phase)
        tas = h.weather.tas - air_climatology(h.axis.phase)
        months = np.asarray(h.axis.time.month)
        labels = h.axis.winter_of_day()
        winters = np.arange(1901, 2025)
        winter = np.isin(months, [12, 1, 2, 3])
        sst_w = np.array([sst[winter & (labels == w)].mean() for w in winters])
        tas_w = np.array([tas[winter & (labels == w)].mean() for w in winters])
        # year-to-year differences: the trend out, the interannual link in
        correlations.append(np.corrcoef(np.diff(sst_w), np.diff(tas_w))[0, 1])
        spreads.append(np.std(np.diff(sst_w)) / np.sqrt(2))
    assert all(0.5 < c < 0.99 for c in correlations), correlations
    assert all(0.1 < s < 0.6 for s in spreads), spreads


# ------------------------------------------------------------------ physics drawn per seed


def test_drawn_ocean_parameters_stay_in_their_ranges_and_vary():
    draws = [seed_params(seed) for seed in range(30)]
    for params in draws:
        for name, (low, high) in RANGES.items():
            assert low <= getattr(params, name) <= high, name
        for name, ranges in PAIR_RANGES.items():
            for value, (low, high) in zip(getattr(params, name), ranges, strict=True):
                assert low <= value <= high, name
    for name in [*RANGES, *PAIR_RANGES]:
        assert len({getattr(p, name) for p in draws}) == len(draws), name
    assert seed_params(7) == seed_params(7)
    assert draw_ocean_params(np.random.default_rng(1)) != draw_ocean_params(
        np.random.default_rng(2)
    )


def test_drawn_oceans_still_cascade_plausibly():
    """Every drawn ocean cascades in some winters of 1993-2013, never in all of them."""
    for seed in (11, 12, 13):
        params = seed_params(seed)
        history = make_history(get_preset("demo"), seed, params)
        run_all([history], params)
        counts = winter_stats(history, range(1993, 2014))["cascading"][0].sum()
        assert 1 <= counts <= 15, (seed, counts)
