"""The run report: hindcast, projected event days, and the projected change against the truth.

Why: a results store holds numbers for every combination; a reader first wants three
pictures — does the hindcast follow the mooring, how many cascading days per winter does
each scenario project and how much do the models disagree, and (on the twin world only)
is the projected 2080-2100 change the *true* change, and how good is the hindcast before
the mooring record. The truth comparison applies the model's own event rule (its
``job.yaml``) to the twin's physical anomaly (true temperature minus its true background,
which, unlike a centred running quantile, sees no future), counts run and truth over the
same November-April season, and takes the same reductions as :mod:`cascadia.run.spread`
(season scaling, members then models, period means and changes), so run and truth differ
only by what the model got wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr
import yaml

from cascadia.mooring.events import EventConfig, event_days
from cascadia.run.spread import (
    COMBO_DIMS,
    HISTORICAL,
    SEASON_MONTHS,
    SpreadOptions,
    combo_winters,
    done_mask,
    period_changes,
    season_days,
)

__all__ = [
    "ReportError",
    "ReportResult",
    "background_summary",
    "hindcast_scores",
    "load_truth_index",
    "ood_by_period",
    "run_changes",
    "run_winter_event_days",
    "season_event_days",
    "truth_changes",
    "truth_comparison",
    "truth_winter_event_days",
    "write_run_report",
]

REANALYSIS = "reanalysis"
BASE_PERIOD = (1993, 2022)
FUTURE_PERIOD = (2080, 2100)
TRUTH_BACKGROUND = (
    "anomaly = true temperature - the twin's background_temperature (the physical deep "
    "background the twin's ocean relaxes to): a background that sees no future, so the "
    "2014 step gives no spurious events (a running quantile of the true series anticipates "
    "it by up to half its window); the model's event rule (thresholds, duration, gaps) "
    "from its job.yaml"
)
RUN_EVENTS = (
    "the run's event days are the store's event_days (the model's calibrated event levels and "
    "job.yaml rule, cascadia.run.inference), counted over the same November-April season as "
    "the truth's; a scenario's first winter counts its warm-started context run's "
    "November-December days"
)


class ReportError(ValueError):
    """The results store, truth index or model directory cannot make the report."""


@dataclass
class ReportResult:
    """Files written and the truth comparison (``None`` without a truth index)."""

    out: Path
    files: list[Path] = field(default_factory=list)
    comparison: dict[str, Any] | None = None


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


def season_event_days(
    events: npt.ArrayLike, covered: npt.ArrayLike, time: Any, min_winter_coverage: float = 0.9
) -> pd.Series:
    """Event days per winter, counted over the November-April season the winter is named by.

    Parameters
    ----------
    events, covered
        Daily flags along ``time``: the day is an event day; the day has a value.
    time
        The days (datetime64 or cftime, any calendar).
    min_winter_coverage
        A winter counts only when this fraction of its standard-calendar season days is
        covered; its count is scaled to the full season (noleap / 360_day calendars lack
        a few days, as in :func:`cascadia.run.spread.combo_winters`).

    Returns
    -------
    pandas.Series
        Event days (days per season, float) indexed by winter (year of its January), NaN
        for under-covered winters.
    """
    time = xr.DataArray(np.asarray(time), dims="time")
    month = time.dt.month.values
    label = (time.dt.year + (time.dt.month >= 11)).values
    season = np.isin(month, SEASON_MONTHS)
    flags = np.asarray(events, dtype=bool) & season
    have = np.asarray(covered, dtype=bool) & season
    counts = pd.Series(flags.astype(float)).groupby(label).sum()
    days = pd.Series(have.astype(float)).groupby(label).sum()
    out = {}
    for winter in counts.index:
        full = season_days(int(winter))
        ok = days[winter] / full >= min_winter_coverage
        out[int(winter)] = float(counts[winter]) * full / days[winter] if ok else np.nan
    return pd.Series(out, dtype=float)


def truth_winter_event_days(
    temperature: xr.DataArray,
    background: xr.DataArray,
    events: EventConfig,
    min_winter_coverage: float = 0.9,
) -> pd.Series:
    """Event days per winter (November-April) of one true daily series.

    The model's event rule (thresholds, duration, gaps) on the physical anomaly
    ``temperature - background``, where ``background`` is the twin's own
    ``background_temperature``: the true background process, which a running quantile of
    the series would only estimate - and anticipate its steps (2014) with - by looking
    up to half a window into the future.
    """
    anomaly = (temperature - background).rename("anomaly")
    flags = event_days(anomaly, config=events).values
    return season_event_days(
        flags, np.isfinite(anomaly.values), temperature["time"].values, min_winter_coverage
    )


def _combos(results: xr.Dataset, keep: Callable[[str], bool]) -> list[tuple[str, str, str]]:
    done = done_mask(results)
    combos = []
    for e, s, m in zip(*np.nonzero(done), strict=True):
        experiment = str(results["experiment"].values[e])
        if keep(experiment):
            combos.append(
                (
                    experiment,
                    str(results["source_id"].values[s]),
                    str(results["member_id"].values[m]),
                )
            )
    return combos


def _scenario_combos(results: xr.Dataset) -> list[tuple[str, str, str]]:
    return _combos(results, lambda e: e not in (REANALYSIS, HISTORICAL))


def _daily(results: xr.Dataset, name: str, combo: tuple[str, str, str], depth: float) -> np.ndarray:
    experiment, source, member = combo
    one = results[name].sel(experiment=experiment, source_id=source, member_id=member, depth=depth)
    return np.asarray(one.values, dtype=np.float64)


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
    results: xr.Dataset, combos: list[tuple[str, str, str]]
) -> tuple[dict[str, Any], np.ndarray]:
    coords = {
        "experiment": sorted({c[0] for c in combos}),
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


def truth_changes(
    results: xr.Dataset,
    truth_index: pd.DataFrame,
    events: EventConfig,
    options: SpreadOptions,
    depth: float = 500.0,
) -> tuple[dict[str, xr.DataArray], list[str]]:
    """The true period changes of winter (November-April) event days.

    For every done scenario combination of the run, its true series (historical +
    scenario) gives winter event days on the physical anomaly
    (:func:`truth_winter_event_days`); these go through
    :func:`cascadia.run.spread.period_changes` like the run's. Returns its output and the
    combinations without a truth (named).
    """
    combos = _scenario_combos(results)
    coords, values = _cube(results, combos)
    opened: dict[str, xr.Dataset] = {}
    missing = []
    for combo in combos:
        experiment, source, member = combo
        truth_source = _truth_source(truth_index, source)
        url = truth_source and _truth_path(truth_index, truth_source, experiment, member)
        if not url:
            missing.append(f"{source}/{experiment}/{member}")
            continue
        truth = opened.setdefault(url, _open_truth(url))
        series = _joined_truth(truth, experiment, member, depth)
        per_winter = truth_winter_event_days(
            series["temperature"],
            series["background_temperature"],
            events,
            options.min_winter_coverage,
        )
        values[_at(coords, combo)] = per_winter.reindex(coords["winter"]).to_numpy()
    da = xr.DataArray(values, dims=tuple(coords), coords=coords)
    return period_changes(da, options), missing


def run_changes(
    results: xr.Dataset, options: SpreadOptions, depth: float = 500.0
) -> dict[str, xr.DataArray]:
    """The run's period changes of winter (November-April) event days of every done
    scenario combination (:func:`run_winter_event_days`), reduced like the truth's."""
    scenarios = sorted({c[0] for c in _scenario_combos(results)})
    return period_changes(
        run_winter_event_days(results, options, depth).sel(experiment=scenarios), options
    )


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
    run = run_changes(results, options, depth)
    truth, missing = truth_changes(results, truth_index, events, options, depth)
    scenarios = {
        str(experiment): {
            "run": _summary(run, str(experiment), label),
            "truth": _summary(truth, str(experiment), label),
        }
        for experiment in truth["period_multimodel_change"]["experiment"].values
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
        "scenarios": scenarios,
    }


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
    per-winter (November-April) event days with the truth's (physical anomaly), per depth.
    """
    time = pd.DatetimeIndex(results["time"].values)
    days = time < pd.Timestamp(before, 1, 1)
    combos = _combos(results, lambda e: e == REANALYSIS)
    depths = [float(d) for d in results["depth"].values]
    stored = combo_winters(results, SpreadOptions(min_winter_coverage=min_winter_coverage))
    opened: dict[str, xr.Dataset] = {}
    by_source: dict[str, list[tuple[str, str, str]]] = {}
    for combo in combos:
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
                series["background_temperature"],
                events,
                min_winter_coverage,
            )
            stack = np.stack([_daily(results, "temperature_mean", c, depth) for c in members])
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
            "correlation of per-winter (Nov-Apr) event days, run vs truth (physical "
            "anomaly), over the winters before the record; members of a source averaged"
        ),
        "sources": sources,
    }


def background_summary(results: xr.Dataset) -> dict[str, Any] | None:
    """Where the stored deep temperature is anomaly-only (background not from the record).

    Returns, per depth, the mooring record's span (days whose background is from it, over
    the done combinations), the background held after it, and the share of stored days
    that are anomaly-only; with the spread's ``anomaly_only_periods``. ``None`` for a store
    without ``background_kind`` (older stores).
    """
    if "background_kind" not in results:
        return None
    done = done_mask(results)
    time = pd.DatetimeIndex(results["time"].values)
    depths = [float(d) for d in results["depth"].values]
    inside = np.zeros((time.size, len(depths)), dtype=bool)
    held, total = np.zeros(len(depths)), np.zeros(len(depths))
    after: list[set[float]] = [set() for _ in depths]
    for e, s_, m in zip(*np.nonzero(done), strict=True):
        where = {"experiment": e, "source_id": s_, "member_id": m}
        one = results[["background_kind", "background_temperature"]].isel(where).load()
        kind = one["background_kind"].transpose("time", "depth").values
        background = one["background_temperature"].transpose("time", "depth").values
        inside |= kind == 0
        held += (kind > 0).sum(axis=0)
        total += np.isfinite(kind).sum(axis=0)
        for j in range(len(depths)):
            last = np.flatnonzero(kind[:, j] == 0)
            later = kind[:, j] > 0
            if last.size:
                later[: last[-1]] = False
            after[j].update(np.round(background[later, j], 3).tolist())
    periods = ""
    change = results.get("winter_temperature_period_multimodel_change")
    if change is not None:
        periods = str(change.attrs.get("anomaly_only_periods", ""))
    out: dict[str, Any] = {"anomaly_only_periods": periods.split(), "depths": {}}
    for j, depth in enumerate(depths):
        days = time[inside[:, j]]
        out["depths"][f"{depth:g}"] = {
            "record": [str(days[0].date()), str(days[-1].date())] if days.size else None,
            "held_after_record": sorted(after[j]),
            "anomaly_only_share": round(float(held[j] / total[j]), 3) if total[j] else None,
        }
    return out


def _background_lines(summary: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Deep temperature after the mooring record: anomaly-only",
        "",
        "The model predicts the anomaly against the deep background; outside the mooring "
        "record the stored background is held at the record's end (start) value, not "
        "projected (`background_kind` > 0). There `temperature_mean` is the anomaly plus that "
        "held background: its level is not a projection, and its change is the same in every "
        "scenario apart from the anomaly's. Read `temperature_anomaly_mean` (with "
        "`temperature_std`) for what the model projects; a projected background (e.g. CMIP6 "
        "`thetao` at 500/1000 m) is not part of this run.",
        "",
        "| depth (m) | record (background from the mooring) | background held after it (°C) "
        "| anomaly-only share of stored days |",
        "|---|---|---|---|",
    ]
    for depth, row in summary["depths"].items():
        record = " … ".join(row["record"]) if row["record"] else "n/a"
        values = ", ".join(f"{v:.3f}" for v in row["held_after_record"]) or "n/a"
        share = "n/a" if row["anomaly_only_share"] is None else f"{row['anomaly_only_share']:.0%}"
        lines.append(f"| {depth} | {record} | {values} | {share} |")
    if summary["anomaly_only_periods"]:
        lines += [
            "",
            "Spread variables: the winter temperature changes of the periods "
            f"{', '.join(summary['anomaly_only_periods'])} are changes of the anomaly "
            "(`winter_temperature_period_*` attribute `anomaly_only_periods`; also "
            "`winter_temperature_anomaly_*`).",
        ]
    return [*lines, ""]


def ood_by_period(
    results: xr.Dataset, periods: tuple[tuple[int, int], ...] = (BASE_PERIOD, FUTURE_PERIOD)
) -> dict[str, dict[str, float | None]]:
    """Mean ``ood_fraction`` per experiment and period: members of a model averaged, then
    models equally weighted (done combinations only; each experiment's own winters, a
    scenario's not joined with its historical run)."""
    fraction = results["ood_fraction"].where(
        xr.DataArray(done_mask(results), dims=("experiment", "source_id", "member_id"))
    )
    per_model = fraction.mean("member_id", skipna=True)
    out: dict[str, dict[str, float | None]] = {}
    with np.errstate(invalid="ignore"):
        for experiment in results["experiment"].values:
            one = per_model.sel(experiment=experiment)
            row = {}
            for first, last in periods:
                inside = one.sel(winter=slice(first, last)).mean("winter", skipna=True)
                value = float(inside.mean("source_id", skipna=True))
                row[f"{first}-{last}"] = round(value, 3) if np.isfinite(value) else None
            out[str(experiment)] = row
    return out


def _ood_figure(results: xr.Dataset, path: Path) -> bool:
    """Per-winter fraction of out-of-distribution days per experiment (models averaged)."""
    fraction = results["ood_fraction"].where(
        xr.DataArray(done_mask(results), dims=("experiment", "source_id", "member_id"))
    )
    per_model = fraction.mean("member_id", skipna=True).load()
    fig, ax = plt.subplots(figsize=(11, 3.5))
    drawn = False
    with np.errstate(invalid="ignore"):
        for experiment in per_model["experiment"].values:
            one = per_model.sel(experiment=experiment)
            mean = one.mean("source_id", skipna=True).to_pandas().dropna()
            if mean.empty:
                continue
            low = one.min("source_id", skipna=True).to_pandas().reindex(mean.index)
            high = one.max("source_id", skipna=True).to_pandas().reindex(mean.index)
            (line,) = ax.plot(mean.index, mean.values, lw=1, label=str(experiment))
            ax.fill_between(mean.index, low, high, color=line.get_color(), alpha=0.15)
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_ylabel("fraction of Nov-Apr days")
    ax.set_xlabel("winter (year of its January)")
    ax.set_title(
        "Days with a model input outside its training range (mean of models, band = model range)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _ood_lines(results: xr.Dataset, base: tuple[int, int], future: tuple[int, int]) -> list[str]:
    table = ood_by_period(results, (base, future))
    labels = [f"{a}-{b}" for a, b in (base, future)]
    lines = [
        "## Out-of-distribution inputs",
        "",
        "Fraction of the winter's November-April days on which any model input lies outside "
        f"its training range ({results['ood_fraction'].attrs.get('comment', '')}); mean over "
        "winters, members of a model averaged, models equally weighted (store: "
        "`ood_fraction`, `ood_max_z`).",
        "",
        "| experiment | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for experiment, row in table.items():
        cells = " | ".join("n/a" if row[k] is None else f"{row[k]:.2f}" for k in labels)
        lines.append(f"| {experiment} | {cells} |")
    return [*lines, ""]


# ---------------------------------------------------------------- figures


def _hindcast_figure(results: xr.Dataset, observed: pd.DataFrame | None, path: Path) -> bool:
    """Monthly means of the reanalysis hindcasts with their 90 % band, observations on top."""
    if REANALYSIS not in results["experiment"].values:
        return False
    experiments = [str(e) for e in results["experiment"].values]
    ok = done_mask(results)[experiments.index(REANALYSIS)]
    sel = results.sel(experiment=REANALYSIS)
    depths = [float(d) for d in results["depth"].values]
    fig, axes = plt.subplots(len(depths), 1, figsize=(11, 3.2 * len(depths)), sharex=True)
    axes = np.atleast_1d(axes)
    drawn = False
    for s, source in enumerate(results["source_id"].values):
        members = np.flatnonzero(ok[s])
        if not members.size:
            continue
        one = sel.isel(source_id=s, member_id=members)
        mean = one["temperature_mean"].mean("member_id").to_pandas()
        q = one["temperature_quantile"].mean("member_id")
        low = q.sel(quantile=0.05, method="nearest").to_pandas()
        high = q.sel(quantile=0.95, method="nearest").to_pandas()
        for ax, depth in zip(axes, depths, strict=True):
            m = mean[depth].dropna().resample("MS").mean()
            if m.empty:
                continue
            lo = low[depth].resample("MS").mean().reindex(m.index)
            hi = high[depth].resample("MS").mean().reindex(m.index)
            (line,) = ax.plot(m.index, m.values, lw=0.8, label=f"{source} ({members.size})")
            ax.fill_between(m.index, lo.values, hi.values, color=line.get_color(), alpha=0.2)
            drawn = True
    if observed is not None:
        for ax, depth in zip(axes, depths, strict=True):
            column = f"observed_{depth:g}"
            if column in observed:
                obs = observed[column].resample("MS").mean()
                ax.plot(obs.index, obs.values, color="black", lw=0.9, label="observed (mooring)")
    for ax, depth in zip(axes, depths, strict=True):
        ax.set_ylabel(f"T at {depth:g} m (°C)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=3, loc="upper left")
    axes[0].set_title("Hindcasts: monthly mean of the ensemble mean, 90 % band (q05-q95)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return drawn


def _events_figure(results: xr.Dataset, depth: float, path: Path) -> bool:
    """Per-winter event days per experiment: multi-model mean and percentile band."""
    mean_name, pct_name = "event_days_multimodel_mean", "event_days_multimodel_percentile"
    if mean_name not in results or pct_name not in results:
        return False
    mean = results[mean_name].sel(depth=depth).load()
    pct = results[pct_name].sel(depth=depth).load()
    lo_p, hi_p = float(pct["percentile"].min()), float(pct["percentile"].max())
    fig, ax = plt.subplots(figsize=(11, 4))
    for experiment in mean["experiment"].values:
        if experiment == REANALYSIS:
            continue
        m = mean.sel(experiment=experiment).to_pandas().dropna()
        if m.empty:
            continue
        band = pct.sel(experiment=experiment).to_pandas().T.reindex(m.index)
        (line,) = ax.plot(m.index, m.values, lw=1, label=str(experiment))
        ax.fill_between(m.index, band[lo_p], band[hi_p], color=line.get_color(), alpha=0.15)
    ax.set_ylabel(f"event days per winter at {depth:g} m")
    ax.set_xlabel("winter (year of its January)")
    ax.set_title(f"Multi-model mean and p{lo_p:g}-p{hi_p:g} across models (spread variables)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _truth_figure(comparison: Mapping[str, Any], path: Path) -> None:
    """Bars: run change vs true change per scenario, whiskers = model range."""
    scenarios = list(comparison["scenarios"])
    kinds = (
        ("run", "run (deep ensemble)", "tab:blue"),
        ("truth", "truth (physical anomaly)", "tab:orange"),
    )
    x = np.arange(len(scenarios))
    width = 0.36
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (key, label, color) in enumerate(kinds):
        rows = [comparison["scenarios"][s][key] for s in scenarios]
        mean = np.array([np.nan if r["change"] is None else r["change"] for r in rows])
        lo = np.array([np.nan if r["model_min"] is None else r["model_min"] for r in rows])
        hi = np.array([np.nan if r["model_max"] is None else r["model_max"] for r in rows])
        err = np.vstack([mean - lo, hi - mean])
        ax.bar(x + (k - 0.5) * width, mean, width, label=label, color=color)
        ax.errorbar(x + (k - 0.5) * width, mean, yerr=err, fmt="none", ecolor="black", lw=0.8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(x, scenarios)
    ax.set_ylabel("change in winter event days")
    ax.set_title(
        f"{comparison['future_period']} vs {comparison['base_period']}: "
        f"{comparison['quantity'].split(',')[0]}",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------- the report


def _fmt(x: float | None, sign: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.1f}" if sign else f"{x:.1f}"


def _truth_table(comparison: Mapping[str, Any]) -> list[str]:
    lines = [
        "| scenario | run change (range) | agreement | true change (range) "
        "| run base → future | truth base → future |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, row in comparison["scenarios"].items():
        run, truth = row["run"], row["truth"]
        lines.append(
            f"| {scenario} | {_fmt(run['change'], True)} ({_fmt(run['model_min'], True)} … "
            f"{_fmt(run['model_max'], True)}), {run['n_models']} models "
            f"| {_fmt(run['agreement'])} "
            f"| {_fmt(truth['change'], True)} ({_fmt(truth['model_min'], True)} … "
            f"{_fmt(truth['model_max'], True)}) "
            f"| {_fmt(run['base_mean'])} → {_fmt(run['future_mean'])} "
            f"| {_fmt(truth['base_mean'])} → {_fmt(truth['future_mean'])} |"
        )
    return lines


def _hindcast_table(scores: Mapping[str, Any]) -> list[str]:
    lines = [
        "| source | members | depth (m) | NSE daily T | days | r(event days) | winters "
        "| event days run / truth |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for source, row in scores["sources"].items():
        for depth, one in row["depths"].items():
            lines.append(
                f"| {source} | {row['members']} | {depth} | {_fmt3(one['nse'])} "
                f"| {one['n_days']} | {_fmt3(one['event_days_correlation'])} "
                f"| {one['n_winters']} | {_fmt(one['run_mean_event_days'])} / "
                f"{_fmt(one['truth_mean_event_days'])} |"
            )
    return lines


def _fmt3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _model_events(model_dir: Path) -> EventConfig:
    path = model_dir / "job.yaml"
    try:
        job = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return EventConfig.model_validate(job.get("events", {}))
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read the model's event rule: {exc}") from None


def _observed(model_dir: Path) -> pd.DataFrame | None:
    path = model_dir / "background.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path, parse_dates=["time"]).set_index("time")


def record_start(model_dir: Path) -> int:
    """First year of the mooring record the model was trained on (its ``background.csv``)."""
    observed = _observed(model_dir)
    columns = [c for c in (observed.columns if observed is not None else []) if "observed" in c]
    if observed is None or not columns or observed[columns].dropna(how="all").empty:
        raise ReportError(f"{model_dir / 'background.csv'}: no observed series to date the record")
    return int(observed[columns].dropna(how="all").index[0].year)


def write_run_report(
    results: str,
    out: str | Path,
    *,
    truth_index: str | Path | None = None,
    model_dir: str | Path | None = None,
    base: tuple[int, int] = BASE_PERIOD,
    future: tuple[int, int] = FUTURE_PERIOD,
    depth: float = 500.0,
) -> ReportResult:
    """Write ``report.md``, ``hindcast.png``, ``event-days.png`` and, with a truth index,
    ``truth-change.png`` + ``truth_comparison.json`` (with the pre-record hindcast scores)
    into ``out``.

    The truth comparison takes the event rule from the model directory's ``job.yaml`` (for
    the truth; the run's event days are the store's) and the record's start from
    ``background.csv``
    (the QC'd daily mooring series it was trained on, also overlaid on the hindcast).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(model_dir) if model_dir is not None else None
    report = ReportResult(out=out)
    with xr.open_zarr(results) as ds:
        status = pd.Series([str(v) for v in ds["status"].values.ravel()]).value_counts()
        lines = [
            "# Run report",
            "",
            f"Results store `{results}`: "
            + ", ".join(f"{n} {s}" for s, n in status.items() if s != "not_in_catalog")
            + " combinations.",
            "",
        ]
        hindcast = out / "hindcast.png"
        if _hindcast_figure(ds, _observed(model) if model else None, hindcast):
            report.files.append(hindcast)
            lines += ["## Hindcasts (reanalyses)", "", f"![hindcast]({hindcast.name})", ""]
        events_png = out / "event-days.png"
        if _events_figure(ds, depth, events_png):
            report.files.append(events_png)
            lines += [
                f"## Winter event days at {depth:g} m per scenario",
                "",
                f"![event days]({events_png.name})",
                "",
            ]
        summary = background_summary(ds)
        if summary is not None:
            lines += _background_lines(summary)
        if "ood_fraction" in ds:
            ood_png = out / "ood.png"
            if _ood_figure(ds, ood_png):
                report.files.append(ood_png)
                lines += [
                    *_ood_lines(ds, base, future),
                    f"![out of distribution]({ood_png.name})",
                    "",
                ]
        if truth_index is not None:
            if model is None:
                raise ReportError("the truth comparison needs model_dir= (event rule, levels)")
            events = _model_events(model)
            index = load_truth_index(truth_index)
            comparison = truth_comparison(ds, index, events, base=base, future=future, depth=depth)
            comparison["hindcast"] = hindcast_scores(ds, index, events, record_start(model))
            report.comparison = comparison
            table = out / "truth_comparison.json"
            table.write_text(json.dumps(comparison, indent=2) + "\n", encoding="utf-8")
            figure = out / "truth-change.png"
            _truth_figure(comparison, figure)
            report.files += [table, figure]
            lines += [
                "## Against the twin's truth",
                "",
                f"Change of {comparison['quantity']}, {comparison['future_period']} vs "
                f"{comparison['base_period']}; range = across models (members averaged).",
                "",
                *_truth_table(comparison),
                "",
                f"![truth]({figure.name})",
                "",
                f"Truth: {comparison['truth_background']}.",
                "",
                f"Run: {comparison['run_events']}.",
                "",
                f"Reduction: {comparison['reduction']}.",
                "",
                f"### Hindcast before the mooring record (before {record_start(model)})",
                "",
                f"{comparison['hindcast']['quantity']}.",
                "",
                *_hindcast_table(comparison["hindcast"]),
                "",
            ]
            if comparison["combinations_without_truth"]:
                lines.append(
                    "Combinations without a truth: "
                    + ", ".join(comparison["combinations_without_truth"])
                )
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report.files.insert(0, path)
    return report
