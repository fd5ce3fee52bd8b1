"""The run report: hindcast, projected event days, and the projected change against the truth.

Why: a results store holds numbers for every combination; a reader first wants three
pictures — does the hindcast follow the mooring, how many cascading days per winter does
each scenario project and how much do the models disagree, and (on the twin world only)
is the projected 2080-2100 change the *true* change. The truth comparison uses the model's
own event rule (its ``job.yaml``) on the twin's true deep temperature, and the same
reductions as :mod:`cascadia.run.spread` (season scaling, members then models, period means
and changes), so run and truth differ only by what the model got wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
import yaml

from cascadia.mooring.events import EventConfig, background_series, winter_statistics
from cascadia.run.spread import (
    HISTORICAL,
    SEASON_MONTHS,
    SpreadOptions,
    combo_winters,
    done_mask,
    period_changes,
    season_days,
)

__all__ = [
    "BACKGROUND_CHOICES",
    "ReportError",
    "ReportResult",
    "load_truth_index",
    "run_changes",
    "truth_changes",
    "truth_comparison",
    "truth_winter_event_days",
    "write_run_report",
]

REANALYSIS = "reanalysis"
BASE_PERIOD = (1993, 2022)
FUTURE_PERIOD = (2080, 2100)
#: How the truth's anomaly is formed: ``running_quantile`` = the model's own target
#: definition applied to the true temperature (the headline); ``physical`` = the twin's
#: known background process (``background_temperature``), for contrast.
BACKGROUND_CHOICES = ("running_quantile", "physical")


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


def truth_winter_event_days(
    temperature: xr.DataArray,
    background: xr.DataArray,
    events: EventConfig,
    min_winter_coverage: float = 0.9,
) -> pd.Series:
    """Event days per winter of one true daily series, per full standard-calendar season.

    The model's event rule on ``temperature - background``; like
    :func:`cascadia.run.spread.combo_winters`, event days are scaled by the standard season's
    days over the season days the series covers (noleap / 360_day calendars lack a few),
    and a winter counts only if at least ``min_winter_coverage`` of them are covered.
    """
    anomaly = (temperature - background).rename("anomaly")
    stats = winter_statistics(anomaly, config=events)
    time = temperature["time"]
    in_season = time.dt.month.isin(SEASON_MONTHS).values & np.isfinite(temperature.values)
    label = (time.dt.year + (time.dt.month >= 11)).values
    covered = pd.Series(in_season.astype(float)).groupby(label).sum()
    out = {}
    for winter, days in zip(stats["winter"].values, stats["event_days"].values, strict=True):
        full = season_days(int(winter))
        have = float(covered.get(int(winter), 0.0))
        ok = have / full >= min_winter_coverage
        out[int(winter)] = float(days) * full / have if ok else np.nan
    return pd.Series(out, dtype=float)


def _scenario_combos(results: xr.Dataset) -> list[tuple[str, str, str]]:
    done = done_mask(results)
    combos = []
    for e, s, m in zip(*np.nonzero(done), strict=True):
        experiment = str(results["experiment"].values[e])
        if experiment in (REANALYSIS, HISTORICAL):
            continue
        combos.append(
            (experiment, str(results["source_id"].values[s]), str(results["member_id"].values[m]))
        )
    return combos


def truth_changes(
    results: xr.Dataset,
    truth_index: pd.DataFrame,
    events: EventConfig,
    options: SpreadOptions,
    depth: float = 500.0,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The true period changes of winter event days, one per background choice.

    For every done scenario combination of the run, its true series (historical + scenario)
    gives winter event days; these go through :func:`cascadia.run.spread.period_changes` like
    the run's. Returns ``{choice: period_changes output}`` and the combinations without a
    truth (named).
    """
    combos = _scenario_combos(results)
    winters = results["winter"].values
    coords = {
        "experiment": sorted({c[0] for c in combos}),
        "source_id": results["source_id"].values,
        "member_id": results["member_id"].values,
        "winter": winters,
    }
    shape = tuple(len(v) for v in coords.values())
    values = {choice: np.full(shape, np.nan) for choice in BACKGROUND_CHOICES}
    opened: dict[str, xr.Dataset] = {}
    missing = []
    for experiment, source, member in combos:
        truth_source = _truth_source(truth_index, source)
        url = truth_source and _truth_path(truth_index, truth_source, experiment, member)
        if not url:
            missing.append(f"{source}/{experiment}/{member}")
            continue
        truth = opened.setdefault(url, _open_truth(url))
        series = _joined_truth(truth, experiment, member, depth)
        temperature = series["temperature"]
        backgrounds = {
            "running_quantile": background_series(
                temperature,
                events.background_window_days,
                events.background_quantile,
                events.background_smooth_days,
                events.background_min_fraction,
            ),
            "physical": series["background_temperature"],
        }
        index = (
            coords["experiment"].index(experiment),
            int(np.flatnonzero(coords["source_id"] == source)[0]),
            int(np.flatnonzero(coords["member_id"] == member)[0]),
        )
        for choice, background in backgrounds.items():
            per_winter = truth_winter_event_days(
                temperature, background, events, options.min_winter_coverage
            )
            values[choice][index] = per_winter.reindex(winters).to_numpy()
    out = {}
    for choice, array in values.items():
        da = xr.DataArray(array, dims=tuple(coords), coords=coords)
        out[choice] = period_changes(da, options)
    return out, missing


def run_changes(
    results: xr.Dataset, options: SpreadOptions, depth: float = 500.0
) -> dict[str, xr.DataArray]:
    """The run's period changes of winter event days (as :mod:`cascadia.run.spread` stores them)."""
    winters = combo_winters(results, options)["event_days"].sel(depth=depth)
    return period_changes(winters, options)


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

    Returns a JSON-ready mapping: the settings, and per scenario ``run`` and
    ``truth`` (model's background treatment) and ``truth_physical_background``, each with
    the multi-model mean change, model range, agreement, base and future means.
    """
    options = SpreadOptions(periods=(tuple(base), tuple(future)))
    label = options.period_labels[1]
    run = run_changes(results, options, depth)
    truths, missing = truth_changes(results, truth_index, events, options, depth)
    scenarios = {}
    for experiment in truths["running_quantile"]["period_multimodel_change"]["experiment"].values:
        scenarios[str(experiment)] = {
            "run": _summary(run, str(experiment), label),
            "truth": _summary(truths["running_quantile"], str(experiment), label),
            "truth_physical_background": _summary(truths["physical"], str(experiment), label),
        }
    return {
        "quantity": f"mean winter event days at {depth:g} m, winter = Nov-Apr",
        "base_period": options.period_labels[0],
        "future_period": label,
        "event_rule": events.model_dump(mode="json"),
        "truth_background": (
            "truth: anomaly = true temperature - the model's own background definition "
            "(events.background_series with the job's settings) computed on the true series, "
            "so it warms with each scenario's truth; truth_physical_background: anomaly = true "
            "temperature - the twin's background_temperature. The run's anomalies are the "
            "model's predicted anomalies: its stored temperature adds a background held at its "
            "end-of-record value, which does not enter the event days."
        ),
        "reduction": (
            "per combination: event days per winter scaled to the full standard season; "
            "members of a model averaged, period means need 80 % of the winters, change per "
            "model, multi-model mean of the changes, agreement = fraction of models with the "
            "sign of the mean change (cascadia.run.spread.period_changes)"
        ),
        "combinations_without_truth": missing,
        "scenarios": scenarios,
    }


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
        ("truth", "truth (model's background rule)", "tab:orange"),
        ("truth_physical_background", "truth (physical background)", "tab:gray"),
    )
    x = np.arange(len(scenarios))
    width = 0.27
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (key, label, color) in enumerate(kinds):
        rows = [comparison["scenarios"][s][key] for s in scenarios]
        mean = np.array([np.nan if r["change"] is None else r["change"] for r in rows])
        lo = np.array([np.nan if r["model_min"] is None else r["model_min"] for r in rows])
        hi = np.array([np.nan if r["model_max"] is None else r["model_max"] for r in rows])
        err = np.vstack([mean - lo, hi - mean])
        ax.bar(x + (k - 1) * width, mean, width, label=label, color=color)
        ax.errorbar(x + (k - 1) * width, mean, yerr=err, fmt="none", ecolor="black", lw=0.8)
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
        "| true change, physical bg | run base → future | truth base → future |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario, row in comparison["scenarios"].items():
        run, truth, phys = row["run"], row["truth"], row["truth_physical_background"]
        lines.append(
            f"| {scenario} | {_fmt(run['change'], True)} ({_fmt(run['model_min'], True)} … "
            f"{_fmt(run['model_max'], True)}), {run['n_models']} models "
            f"| {_fmt(run['agreement'])} "
            f"| {_fmt(truth['change'], True)} ({_fmt(truth['model_min'], True)} … "
            f"{_fmt(truth['model_max'], True)}) | {_fmt(phys['change'], True)} "
            f"| {_fmt(run['base_mean'])} → {_fmt(run['future_mean'])} "
            f"| {_fmt(truth['base_mean'])} → {_fmt(truth['future_mean'])} |"
        )
    return lines


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


def write_run_report(
    results: str,
    out: str | Path,
    *,
    truth_index: str | Path | None = None,
    model_dir: str | Path | None = None,
    events: EventConfig | None = None,
    base: tuple[int, int] = BASE_PERIOD,
    future: tuple[int, int] = FUTURE_PERIOD,
    depth: float = 500.0,
) -> ReportResult:
    """Write ``report.md``, ``hindcast.png``, ``event-days.png`` and, with a truth index,
    ``truth-change.png`` + ``truth_comparison.json`` into ``out``.

    The event rule of the truth comparison is ``events``, else the model directory's
    ``job.yaml``; the observations overlaid on the hindcast come from the model
    directory's ``background.csv`` (the QC'd daily mooring series it was trained on).
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
        if truth_index is not None:
            if events is None:
                if model is None:
                    raise ReportError("the truth comparison needs events= or model_dir=")
                events = _model_events(model)
            comparison = truth_comparison(
                ds, load_truth_index(truth_index), events, base=base, future=future, depth=depth
            )
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
                f"Truth background: {comparison['truth_background']}",
                "",
                f"Reduction: {comparison['reduction']}.",
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
