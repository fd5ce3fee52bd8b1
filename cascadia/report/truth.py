"""The twin world's truth next to the run: projected change and hindcast before the record.

Why: on the twin world the true deep temperature of every projection path and of the real
history is known, so the report can say whether the projected change of cascading is the
*true* change, and how good the hindcast is before the mooring record. The truth's event
days apply the model's own event rule (its ``job.yaml``: thresholds, duration, gaps and
background) to the true temperature, with one change: the background is the running
quantile of the *trailing* window (:func:`causal_background`), not of a centred one, so it
sees no future and gives no spurious events ahead of a step (2014). With the default job's
``background_window: trailing`` that is exactly the quantity the model is trained and
calibrated on (the mooring's event days), measured on the truth.
A second truth, on the twin's physical anomaly (true temperature minus the background
process the twin's ocean relaxes to), is reported next to it: the running quantile sits
above that background by a fraction of the ordinary variability (docs/events.md), so it
counts slightly more event days (0.6 per winter on the demo world, 1994-2022). Both are
counted over the same November-April season as the run's and go through the same reductions
as :mod:`cascadia.run.spread` (season scaling, members then models, period means and
changes), so run and truth differ only by what the model got wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cascadia.mooring.events import EventConfig, background_series, event_days
from cascadia.report.events import season_event_days
from cascadia.report.store import (
    BASE_PERIOD,
    FUTURE_PERIOD,
    REANALYSIS,
    ReportError,
    combos,
    daily,
    scenario_combos,
)
from cascadia.run.spread import (
    COMBO_DIMS,
    HISTORICAL,
    SpreadOptions,
    combo_winters,
    multimodel_change,
    period_changes,
    winters_resampled,
)
from cascadia.run.store import MODEL_OCEAN_KIND, SIBLING_OCEAN_KIND

__all__ = [
    "TRUTH_KINDS",
    "causal_background",
    "deep_temperature_changes",
    "hindcast_scores",
    "load_truth_index",
    "run_winter_event_days",
    "truth_comparison",
    "truth_cubes",
    "truth_winter_event_days",
    "winter_sampling",
]

#: The truths the report compares the run with: the primary one first.
TRUTH_KINDS = ("truth", "truth_physical")
TRUTH_BACKGROUND = {
    "truth": (
        "the model's event rule (job.yaml: thresholds, duration, gaps, background quantile, "
        "window and smoothing) on the true temperature, its background the running quantile "
        "of the trailing window (sees no future, so the 2014 step gives no spurious events; "
        "the centred window of the training targets anticipates it by up to half a window)"
    ),
    "truth_physical": (
        "the same rule on the physical anomaly, true temperature minus the twin's "
        "background_temperature (the background process its ocean relaxes to), which lies "
        "below the running quantile by a fraction of the ordinary variability: fewer event "
        "days in every climate"
    ),
}
RUN_EVENTS = (
    "the run's event days are the store's event_days (the model's calibrated event levels and "
    "job.yaml rule, cascadia.run.inference), counted over the same November-April season as "
    "the truth's; a scenario's first winter counts its warm-started context run's "
    "November-December days"
)


# ---------------------------------------------------------------- truth


def load_truth_index(path: str | Path) -> pd.DataFrame:
    """``truth/index.csv`` of a twin world, checked for its columns."""
    try:
        table = pd.read_csv(path, dtype=str)
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read the truth index: {exc}") from None
    need = {"family", "source_id", "experiment_id", "member_id", "path"}
    if not need <= set(table.columns):
        raise ReportError(f"{path}: truth index lacks columns {sorted(need - set(table.columns))}")
    return table


def _truth_source(index: pd.DataFrame, store_source: str) -> str | None:
    """The truth's source_id for a store label: equal, or the label's last ``_`` part
    (CORDEX labels are ``<driving model>_<RCM>``, the truth is per RCM)."""
    sources = set(index["source_id"])
    if store_source in sources:
        return store_source
    tail = store_source.rsplit("_", 1)[-1]
    return tail if tail in sources else None


def _truth_path(index: pd.DataFrame, source: str, experiment: str, member: str) -> str | None:
    rows = index[
        (index.source_id == source)
        & (index.experiment_id == experiment)
        & (index.member_id == member)
    ]
    return None if rows.empty else str(rows["path"].iloc[0])


def _open_truth(url: str) -> xr.Dataset:
    return xr.open_zarr(url, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))


def _joined_truth(truth: xr.Dataset, experiment: str, member: str, depth: float) -> xr.Dataset:
    """A scenario's true daily series continuing its historical run (the path is one run)."""
    one = truth.sel(member_id=member, depth=depth)
    own = one.sel(experiment_id=experiment)
    if HISTORICAL in truth["experiment_id"].values and experiment != HISTORICAL:
        own = one.sel(experiment_id=HISTORICAL).combine_first(own)
    return own[["temperature", "background_temperature"]].load()


def _history_truth(truth: xr.Dataset, depth: float) -> xr.Dataset:
    """The real history's true daily series (``truth/history.zarr``: daily dim ``day``)."""
    daily = truth[["temperature", "background_temperature"]].sel(depth=depth)
    return daily.rename(day="time").load()


def causal_background(temperature: xr.DataArray, events: EventConfig) -> xr.DataArray:
    """The event rule's background of a daily series, from its past only.

    :func:`cascadia.mooring.events.background_series` with the rule's quantile, window,
    smoothing and minimum fraction over **trailing** windows, whatever window the job's
    own targets use (``background_window``): the truth never sees the future. Its lag
    behind a trend (half a window, ~0.01 °C for the projected deep warming) is far below
    the event thresholds.
    """
    return background_series(
        temperature,
        events.background_window_days,
        events.background_quantile,
        events.background_smooth_days,
        events.background_min_fraction,
        trailing=True,
    )


def truth_winter_event_days(
    temperature: xr.DataArray,
    background: xr.DataArray,
    events: EventConfig,
    min_winter_coverage: float = 0.9,
) -> pd.Series:
    """Event days per winter (November-April) of one true daily series.

    The model's event rule (thresholds, duration, gaps) on ``temperature - background``,
    where ``background`` sees no future: the series' :func:`causal_background` or the
    twin's own ``background_temperature`` (the physical anomaly). A centred running
    quantile would anticipate the background's steps (2014) by up to half a window.
    """
    anomaly = (temperature - background).rename("anomaly")
    flags = event_days(anomaly, config=events).values
    return season_event_days(
        flags, np.isfinite(anomaly.values), temperature["time"].values, min_winter_coverage
    )


def run_winter_event_days(
    results: xr.Dataset, options: SpreadOptions, depth: float = 500.0
) -> xr.DataArray:
    """The run's event days per combination and winter (November-April) at ``depth``, as
    the store counts them (``event_days``, the event rule of the model's job.yaml and its
    calibrated levels) and the spread statistics reduce them: scaled to the full season,
    under-covered winters NaN, a scenario joined with its historical run
    (:func:`cascadia.run.spread.combo_winters`)."""
    return combo_winters(results, options)["event_days"].sel(depth=depth)


def _cube(
    results: xr.Dataset, done: list[tuple[str, str, str]]
) -> tuple[dict[str, Any], np.ndarray]:
    coords = {
        "experiment": sorted({c[0] for c in done}),
        "source_id": results["source_id"].values,
        "member_id": results["member_id"].values,
        "winter": results["winter"].values,
    }
    return coords, np.full(tuple(len(v) for v in coords.values()), np.nan)


def _at(coords: dict[str, Any], combo: tuple[str, str, str]) -> tuple[int, int, int]:
    experiment, source, member = combo
    return (
        coords["experiment"].index(experiment),
        int(np.flatnonzero(coords["source_id"] == source)[0]),
        int(np.flatnonzero(coords["member_id"] == member)[0]),
    )


def truth_cubes(
    results: xr.Dataset,
    truth_index: pd.DataFrame,
    events: EventConfig,
    options: SpreadOptions,
    depth: float = 500.0,
) -> tuple[dict[str, xr.DataArray], list[str]]:
    """Winter event days of the truth of every done scenario combination, per truth
    (:data:`TRUTH_KINDS`), dims ``(experiment, source_id, member_id, winter)`` on the
    store's winters; and the combinations without a truth (named)."""
    done = scenario_combos(results)
    coords, values = _cube(results, done)
    cubes = {kind: values.copy() for kind in TRUTH_KINDS}
    opened: dict[str, xr.Dataset] = {}
    missing = []
    for combo in done:
        experiment, source, member = combo
        truth_source = _truth_source(truth_index, source)
        url = truth_source and _truth_path(truth_index, truth_source, experiment, member)
        if not url:
            missing.append(f"{source}/{experiment}/{member}")
            continue
        truth = opened.setdefault(url, _open_truth(url))
        series = _joined_truth(truth, experiment, member, depth)
        backgrounds = {
            "truth": causal_background(series["temperature"], events),
            "truth_physical": series["background_temperature"],
        }
        for kind, background in backgrounds.items():
            per_winter = truth_winter_event_days(
                series["temperature"], background, events, options.min_winter_coverage
            )
            cubes[kind][_at(coords, combo)] = per_winter.reindex(coords["winter"]).to_numpy()
    return {
        kind: xr.DataArray(cube, dims=tuple(coords), coords=coords) for kind, cube in cubes.items()
    }, missing


def _summary(changes: Mapping[str, xr.DataArray], experiment: str, label: str) -> dict[str, Any]:
    def value(name: str) -> xr.DataArray:
        return changes[name].sel(experiment=experiment, period=label)

    per_model = value("period_model_change").dropna("source_id")
    means = changes["period_model_mean"].sel(experiment=experiment)

    def num(x: Any) -> float | None:
        x = float(x)
        return None if not np.isfinite(x) else round(x, 3)

    return {
        "change": num(value("period_multimodel_change")),
        "model_min": num(per_model.min()) if per_model.size else None,
        "model_max": num(per_model.max()) if per_model.size else None,
        "agreement": num(value("period_model_agreement")),
        "n_models": int(value("period_model_count")),
        "base_mean": num(
            changes["period_multimodel_mean"].sel(experiment=experiment).isel(period=0)
        ),
        "future_mean": num(
            changes["period_multimodel_mean"].sel(experiment=experiment, period=label)
        ),
        "per_model": {
            str(s): num(per_model.sel(source_id=s)) for s in per_model["source_id"].values
        },
        "per_model_future_mean": {
            str(s): num(means.sel(source_id=s, period=label)) for s in per_model["source_id"].values
        },
    }


def truth_comparison(
    results: xr.Dataset,
    truth_index: pd.DataFrame,
    events: EventConfig,
    *,
    base: tuple[int, int] = BASE_PERIOD,
    future: tuple[int, int] = FUTURE_PERIOD,
    depth: float = 500.0,
) -> dict[str, Any]:
    """Per scenario: the run's and the truth's change of mean winter event days at ``depth``.

    Returns a JSON-ready mapping: the settings, and per scenario ``run`` and ``truth``, each
    with the multi-model mean change, model range, agreement, base and future means.
    """
    options = SpreadOptions(periods=(tuple(base), tuple(future)))
    label = options.period_labels[1]
    scenario_names = sorted({c[0] for c in scenario_combos(results)})
    run_cube = run_winter_event_days(results, options, depth).sel(experiment=scenario_names)
    truth_cube, missing = truth_cubes(results, truth_index, events, options, depth)
    run = period_changes(run_cube, options)
    truths = {kind: period_changes(cube, options) for kind, cube in truth_cube.items()}
    sampling = winter_sampling(run_cube, truth_cube["truth"], options)
    scenarios = {
        str(experiment): {
            "run": _summary(run, str(experiment), label),
            **{kind: _summary(truths[kind], str(experiment), label) for kind in TRUTH_KINDS},
            "sampling": sampling.get(str(experiment)),
        }
        for experiment in truths["truth"]["period_multimodel_change"]["experiment"].values
    }
    return {
        "quantity": f"mean winter event days at {depth:g} m, winter = Nov-Apr",
        "base_period": options.period_labels[0],
        "future_period": label,
        "event_rule": events.model_dump(mode="json"),
        "truth_background": TRUTH_BACKGROUND,
        "run_events": RUN_EVENTS,
        "reduction": (
            "per combination: event days of the November-April season per winter, scaled to "
            "the full standard season; members of a model averaged, period means need 80 % "
            "of the winters, change per model, multi-model mean of the changes, agreement = "
            "fraction of models with the sign of the mean change "
            "(cascadia.run.spread.period_changes)"
        ),
        "combinations_without_truth": missing,
        "sampling": SAMPLING,
        "scenarios": scenarios,
    }


#: Winter resamples of :func:`winter_sampling`.
SAMPLING_DRAWS = 2000
SAMPLING = (
    f"{SAMPLING_DRAWS} draws of each period's winters with replacement, the same draw for the "
    "run and the truth (paired: both see the same weather) and for every model; 95 % "
    "intervals of the multi-model mean change of each, of the run's error (run minus "
    "truth), and the fraction of draws in which the run's change is within 30 % of the "
    "truth's. The truth's interval is how much the change itself moves with which winters "
    "fell in the two periods: a target narrower than it cannot be told apart"
)


def winter_sampling(
    run: xr.DataArray,
    truth: xr.DataArray,
    options: SpreadOptions,
    draws: int = SAMPLING_DRAWS,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per scenario, how the run's and the truth's multi-model mean changes move with the
    winters drawn (:data:`SAMPLING`); cubes as :func:`truth_cubes` gives them."""
    label = options.period_labels[1]

    def changes(cube: xr.DataArray) -> xr.DataArray:
        resampled = winters_resampled(cube, options, draws, seed)
        return multimodel_change(resampled, options)[2].sel(period=label)

    run_change, truth_change = changes(run), changes(truth)
    out = {}
    for experiment in truth_change["experiment"].values:
        r = run_change.sel(experiment=experiment).to_numpy()
        t = truth_change.sel(experiment=experiment).to_numpy()
        ok = np.isfinite(r) & np.isfinite(t)
        if not ok.any():
            continue
        r, t = r[ok], t[ok]

        def interval(x: np.ndarray) -> list[float]:
            return [round(float(v), 3) for v in np.percentile(x, [2.5, 97.5])]

        out[str(experiment)] = {
            "draws": int(ok.sum()),
            "run_change_95": interval(r),
            "truth_change_95": interval(t),
            "error_95": interval(r - t),
            "within_30_percent": round(float(np.mean(np.abs(r - t) <= 0.3 * np.abs(t))), 3),
        }
    return out


def _winter_means(time: xr.DataArray, values: np.ndarray) -> pd.Series:
    """November-April means per winter (labelled by the year it ends) of a daily series,
    in any calendar."""
    year, month = time.dt.year.values, time.dt.month.values
    keep = np.isin(month, (11, 12, 1, 2, 3, 4)) & np.isfinite(values)
    label = (year + (month >= 11))[keep]
    return pd.Series(values[keep]).groupby(label).mean()


def _period_change(winters: pd.Series, base: tuple[int, int], future: tuple[int, int]) -> float:
    """Mean of the future period's winters minus the base period's (NaN if either lacks
    80 % of its winters)."""

    def mean(first: int, last: int) -> float:
        inside = winters.loc[first:last].dropna()
        return float(inside.mean()) if len(inside) >= 0.8 * (last - first + 1) else np.nan

    return mean(*future) - mean(*base)


def deep_temperature_changes(
    results: xr.Dataset,
    truth_index: pd.DataFrame,
    *,
    base: tuple[int, int] = BASE_PERIOD,
    future: tuple[int, int] = FUTURE_PERIOD,
    depth: float = 500.0,
) -> dict[str, Any]:
    """Per scenario: the change of mean winter (November-April) deep temperature, the
    run's stored ``temperature_mean`` against the twin's true temperature, per done
    combination (historical joined), grouped by where the run's background in the future
    period came from outside the record: the combination's own ocean (``background_kind``
    4 on every such day), a sibling member's (5) or neither (held, anomaly-only)."""
    kind_name = {MODEL_OCEAN_KIND: "model_ocean", SIBLING_OCEAN_KIND: "sibling_ocean"}
    out: dict[str, Any] = {
        "quantity": f"mean winter (Nov-Apr) temperature at {depth:g} m, degC",
        "base_period": f"{base[0]}-{base[1]}",
        "future_period": f"{future[0]}-{future[1]}",
        "scenarios": {},
    }
    opened: dict[str, xr.Dataset] = {}
    for experiment, source, member in scenario_combos(results):
        truth_source = _truth_source(truth_index, source)
        url = truth_source and _truth_path(truth_index, truth_source, experiment, member)
        if not url:
            continue
        true = _joined_truth(opened.setdefault(url, _open_truth(url)), experiment, member, depth)
        true_change = _period_change(
            _winter_means(true["time"], true["temperature"].values.astype(np.float64)),
            base,
            future,
        )
        series = []
        for part in (HISTORICAL, experiment):
            one = results.sel(experiment=part, source_id=source, member_id=member, depth=depth)
            series.append(one[["temperature_mean", "background_kind"]].load())
        run = series[0].combine_first(series[1])
        run_change = _period_change(
            _winter_means(run["time"], run["temperature_mean"].values), base, future
        )
        later = run["background_kind"].sel(time=slice(f"{future[0] - 1}-11-01", None)).values
        later = later[np.isfinite(later) & (later != 0)]  # the record's days aside
        kinds = set(later.tolist())
        name = kind_name.get(kinds.pop(), "held") if len(kinds) == 1 else "held"
        group = (
            out["scenarios"].setdefault(experiment, {}).setdefault(name, {"per_combination": {}})
        )
        group["per_combination"][f"{source}/{member}"] = {
            "run": _round(run_change),
            "truth": _round(true_change),
        }
    for groups in out["scenarios"].values():
        for group in groups.values():
            pairs = np.array(
                [[v["run"], v["truth"]] for v in group["per_combination"].values()], dtype=float
            )
            ok = np.isfinite(pairs).all(axis=1)
            group["n"] = int(ok.sum())
            group["run_mean"] = _round(float(pairs[ok, 0].mean())) if ok.any() else None
            group["truth_mean"] = _round(float(pairs[ok, 1].mean())) if ok.any() else None
    return out


def _nse(predicted: np.ndarray, observed: np.ndarray) -> tuple[float | None, int]:
    """Nash-Sutcliffe efficiency over the days where both are finite, and their number."""
    ok = np.isfinite(predicted) & np.isfinite(observed)
    n = int(ok.sum())
    if n < 2:
        return None, n
    obs = observed[ok]
    denominator = float(((obs - obs.mean()) ** 2).sum())
    if denominator == 0.0:
        return None, n
    return 1.0 - float(((predicted[ok] - obs) ** 2).sum()) / denominator, n


def _correlation(a: pd.Series, b: pd.Series) -> tuple[float | None, int]:
    both = pd.concat([a, b], axis=1).dropna()
    if len(both) < 3 or both.iloc[:, 0].std() == 0 or both.iloc[:, 1].std() == 0:
        return None, len(both)
    return float(np.corrcoef(both.iloc[:, 0], both.iloc[:, 1])[0, 1]), len(both)


def _round(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 3)


def hindcast_scores(
    results: xr.Dataset,
    truth_index: pd.DataFrame,
    events: EventConfig,
    before: int,
    min_winter_coverage: float = 0.9,
) -> dict[str, Any]:
    """The reanalysis hindcasts before the mooring record, scored against the twin's truth.

    For each done reanalysis source with days before the record (members averaged where it
    has several), on the days before 1 January ``before`` and the winters before winter
    ``before``: the NSE of the daily ``temperature_mean`` (°C, the model's background
    added, as stored) against the true daily temperature, and the correlation of the run's
    per-winter (November-April) event days with the truth's (:func:`causal_background`), per
    depth.
    """
    time = pd.DatetimeIndex(results["time"].values)
    days = time < pd.Timestamp(before, 1, 1)
    reanalyses = combos(results, lambda e: e == REANALYSIS)
    depths = [float(d) for d in results["depth"].values]
    stored = combo_winters(results, SpreadOptions(min_winter_coverage=min_winter_coverage))
    opened: dict[str, xr.Dataset] = {}
    by_source: dict[str, list[tuple[str, str, str]]] = {}
    for combo in reanalyses:
        by_source.setdefault(combo[1], []).append(combo)
    sources: dict[str, Any] = {}
    first_day = None
    for source, members in by_source.items():
        url = _truth_path(truth_index, source, REANALYSIS, members[0][2])
        if not url:
            continue
        truth = opened.setdefault(url, xr.open_zarr(url))
        per_depth = {}
        for depth in depths:
            series = _history_truth(truth, depth)
            true_t = series["temperature"].to_pandas().reindex(time).to_numpy()
            true_events = truth_winter_event_days(
                series["temperature"],
                causal_background(series["temperature"], events),
                events,
                min_winter_coverage,
            )
            stack = np.stack([daily(results, "temperature_mean", c, depth) for c in members])
            count = np.isfinite(stack).sum(axis=0)
            total = np.where(np.isfinite(stack), stack, 0.0).sum(axis=0)
            predicted = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            have = days & np.isfinite(predicted)
            if have.any():
                first = time[have][0]
                first_day = first if first_day is None else min(first_day, first)
            nse, n_days = _nse(np.where(days, predicted, np.nan), true_t)
            run_events = pd.concat(
                [
                    stored["event_days"]
                    .sel({**dict(zip(COMBO_DIMS, c, strict=True)), "depth": depth})
                    .to_pandas()
                    for c in members
                ],
                axis=1,
            ).mean(axis=1)
            run_events = run_events[run_events.index < before]
            r, n_winters = _correlation(run_events, true_events[true_events.index < before])
            per_depth[f"{depth:g}"] = {
                "nse": _round(nse),
                "n_days": n_days,
                "event_days_correlation": _round(r),
                "n_winters": n_winters,
                "run_mean_event_days": _round(run_events.mean()) if len(run_events) else None,
                "truth_mean_event_days": _round(
                    true_events.reindex(run_events.dropna().index).mean()
                )
                if run_events.notna().any()
                else None,
            }
        if any(one["n_days"] for one in per_depth.values()):  # a source from the record on
            sources[source] = {"members": len(members), "depths": per_depth}
    return {
        "before": before,
        "first_day": None if first_day is None else str(first_day.date()),
        "quantity": (
            "NSE of the daily deep-ensemble mean temperature (as stored, background added) "
            "against the true daily temperature, on every day before the mooring record; "
            "correlation of per-winter (Nov-Apr) event days, run vs truth (the event rule "
            "with the trailing running-quantile background), over the winters before the "
            "record; members of a source averaged"
        ),
        "sources": sources,
    }
