"""Writing the report: tables to CSV, figures to PNG and PDF, the page to report.html.

Why one function: ``cascadia-ensemble report`` and the demo's report stage must write the
same report from the same store; this is the only place that decides what goes in it and
in which order. Sections the store cannot fill (no reanalysis, no period statistics, no
variance partition) say so instead of disappearing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from cascadia.report import figures, tables
from cascadia.report.events import observed_winter_event_days
from cascadia.report.html import Column, Page, Table
from cascadia.report.literature import EXTREME_WINTERS, PALETTE_SOURCE, REFERENCES
from cascadia.report.model_files import (
    model_events,
    observed_series,
    record_start,
    training_source,
)
from cascadia.report.store import (
    BASE_PERIOD,
    FUTURE_PERIOD,
    ReportError,
    open_store,
    reference_source,
    scenarios,
)
from cascadia.report.truth import (
    deep_temperature_changes,
    hindcast_scores,
    load_truth_index,
    truth_comparison,
)

__all__ = ["REPORT_HTML", "ReportResult", "write_run_report"]

REPORT_HTML = "report.html"
TRUTH_JSON = "truth_comparison.json"
HINDCAST_SINCE = tables.HINDCAST_SINCE


@dataclass
class ReportResult:
    """Files written (``report.html`` first) and the truth comparison (``None`` without a
    truth index)."""

    out: Path
    files: list[Path] = field(default_factory=list)
    comparison: dict[str, Any] | None = None


class _Writer:
    """Collects the page and the files while the sections are written."""

    def __init__(self, out: Path, store: str, page: Page) -> None:
        self.out, self.store, self.page = out, store, page
        self.files: list[Path] = []

    def chart(self, chart: figures.Chart | None, missing: str) -> bool:
        if chart is None:
            self.page.text(missing, note=True)
            return False
        self.files += figures.save(chart, self.out)
        self.page.figure(chart.stem, chart.title, chart.caption)
        return True

    def csv(self, name: str, frame: pd.DataFrame) -> Path:
        path = self.out / f"{name}.csv"
        frame.to_csv(path, index=False)
        self.files.append(path)
        return path

    def table(self, table: Table, empty: str) -> None:
        """The table on the page and as CSV; ``empty`` instead when it has no row."""
        if table.frame.empty:
            self.page.text(empty, note=True)
            return
        self.csv(table.name, table.frame)
        self.page.table(table)


def _overview(w: _Writer, results: xr.Dataset, twin: bool) -> None:
    w.page.section("The run")
    frame = tables.overview_table(results)
    columns = [
        Column("experiment", "experiment"),
        Column("models", "models (source_id) done", "{:d}"),
        Column("members", "combinations done", "{:d}"),
        Column("failed", "failed", "{:d}"),
        Column("not_done", "missing or half-written", "{:d}"),
    ]
    if "first_winter" in frame:
        columns += [
            Column("first_winter", "first winter", "{:.0f}"),
            Column("last_winter", "last winter", "{:.0f}"),
        ]
    w.table(
        Table(
            "combinations",
            "Combinations of the store per experiment: models with a done member, done "
            "(source, member) combinations, failed and not yet done ones, and the winters "
            "(year of their January) the done ones cover.",
            frame,
            columns,
        ),
        "The store has no combination.",
    )
    if twin:
        w.page.text(
            "This store is a run over the synthetic twin world (a truth index was given): its "
            "reanalyses, projections and mooring are synthetic, built to look like the real "
            "ones, and its truth is known.",
            note=True,
        )


def _hindcast(
    w: _Writer,
    results: xr.Dataset,
    source: str | None,
    observed: pd.DataFrame | None,
    observed_events: dict[float, pd.Series],
    depths: list[float],
) -> None:
    w.page.section(f"Hindcast since {HINDCAST_SINCE} against the mooring")
    if source is None:
        w.page.text("The store has no done reanalysis: there is no hindcast.", note=True)
        return
    hindcasts = {d: tables.hindcast(results, source, d) for d in depths}
    w.chart(
        figures.hindcast_temperature_chart(hindcasts, observed, source, HINDCAST_SINCE, w.store),
        f"The {source} hindcast has no day since {HINDCAST_SINCE}.",
    )
    run_events = {d: tables.hindcast_winter_event_days(results, source, d) for d in depths}
    w.chart(
        figures.hindcast_events_chart(run_events, observed_events, source, HINDCAST_SINCE, w.store),
        f"The {source} hindcast covers no full winter since {HINDCAST_SINCE}.",
    )
    if observed is None:
        w.page.text(
            "No mooring series: give the model directory (--model) for the observations.",
            note=True,
        )
        return
    frame = tables.hindcast_table(results, source, observed, observed_events)
    w.table(
        Table(
            "hindcast_vs_mooring",
            f"The {source} hindcast against the mooring on the days both have since "
            f"{HINDCAST_SINCE} (members averaged): bias = hindcast - observed; coverage = share "
            "of observed days inside the 90 % predictive interval (q05-q95); event days = "
            "mean per November-April season over the winters both cover, with their Pearson "
            "correlation. In-sample: these days include the model's training winters.",
            frame,
            [
                Column("depth", "depth (m)", "{:g}"),
                Column("first_day", "first day"),
                Column("last_day", "last day"),
                Column("n_days", "days", "{:d}"),
                Column("bias_degC", "bias (°C)", "{:+.3f}"),
                Column("rmse_degC", "RMSE (°C)", "{:.3f}"),
                Column("r", "r daily T", "{:.2f}"),
                Column("coverage_90", "coverage of the 90 % interval", "{:.2f}"),
                Column("n_winters", "winters", "{:d}"),
                Column("event_days_run", "event days hindcast", "{:.1f}"),
                Column("event_days_observed", "event days mooring", "{:.1f}"),
                Column("event_days_r", "r event days", "{:.2f}"),
            ],
        ),
        f"No mooring day since {HINDCAST_SINCE} is also a {source} hindcast day.",
    )
    off = tables.count_level_mismatch(frame)
    if not off.empty:
        counts = "; ".join(
            f"at {row.depth:g} m the {source} hindcast counts {row.event_days_run:.1f} event "
            f"days per winter where the mooring's events number {row.event_days_observed:.1f} "
            f"({row.ratio:.2f} times)"
            for row in off.itertuples()
        )
        w.page.text(
            f"Event-count level (over the winters above, in-sample): {counts}. Every "
            "event-day count in this store, hindcasts and projections alike, is made at the "
            "same calibrated event level, so absolute counts and changes in event days are "
            "likely off by a similar factor; relative changes and the timing of events less "
            "so. On the twin's validation worlds where the hindcast counted 1.3-2.1 times the "
            "mooring's events at 500 m, the projected declines in event days were 1.4-2.5 "
            "times the true ones (docs/validation.md)."
        )


def _reconstruction(
    w: _Writer,
    winters: pd.DataFrame,
    observed_events: dict[float, pd.Series],
    depths: list[float],
    twin: bool,
) -> None:
    w.page.section("Reconstruction through every reanalysis")
    w.chart(
        figures.reconstruction_chart(winters, observed_events, depths, w.store, twin),
        "The store has no reanalysis winter covered for 90 % of its season.",
    )


def _scenarios(w: _Writer, results: xr.Dataset) -> None:
    w.page.section("Projections per scenario: event days and intensity")
    spread = tables.spread_table(results)
    if not spread.empty:
        w.csv("scenario_spread", spread)
    w.chart(
        figures.scenario_chart(spread, scenarios(results), w.store, _weighting(results)),
        "The store has no scenario with multi-model statistics of event days.",
    )
    if not spread.empty:
        w.page.link(
            "scenario_spread.csv",
            "scenario_spread.csv",
            "the multi-model statistics per quantity, experiment, depth and winter: mean, "
            "standard deviation and percentiles across models, number of models (the store's "
            "*_multimodel_* variables).",
        )


def _change(w: _Writer, results: xr.Dataset, future: tuple[int, int]) -> None:
    period = tables.future_period(results, future)
    w.page.section(f"Change {period or 'of the period means'}: size and robustness")
    summary, per_model = tables.change_tables(results)
    if period is None or summary.empty:
        w.page.text(
            "The store has no period change (its runs do not reach a later period, or it "
            "has no period statistics).",
            note=True,
        )
        return
    w.csv("period_model_changes", per_model)
    w.chart(
        figures.change_chart(summary, per_model, period, w.store),
        f"No scenario of the store has a change for {period}.",
    )
    columns = [
        Column("quantity", "quantity"),
        Column("units", "units"),
        Column("experiment", "scenario"),
        Column("depth", "depth (m)", "{:g}"),
        Column("period", "period"),
        Column("baseline_mean", "baseline mean", "{:.3f}"),
        Column("period_mean", "period mean", "{:.3f}"),
        Column("change", "change", "{:+.3f}"),
        Column("model_min", "lowest model change", "{:+.3f}"),
        Column("model_max", "highest model change", "{:+.3f}"),
        Column("agreement", "sign agreement (fraction of models)", "{:.2f}"),
        Column("n_models", "models", "{:d}"),
    ]
    optional = {
        "significant_fraction": Column(
            "significant_fraction", "significant change (fraction of models)", "{:.2f}"
        ),
        "family_count": Column("family_count", "model families", "{:.0f}"),
        "robustness": Column("robustness", "robustness (IPCC AR6)"),
        "likelihood": Column("likelihood", "likelihood of the sign"),
    }
    columns += [c for key, c in optional.items() if key in summary.columns]
    baseline = str(summary["baseline"].iloc[0])
    robustness = (
        "the family-weighted fraction of models with a significant change, the robustness "
        "category (IPCC AR6 advanced approach with xclim.ensembles.robustness_categories) and "
        "the likelihood of the sign - written only where its criteria hold, 'none' elsewhere "
        "(docs/spread.md)"
        if "robustness" in summary.columns
        else "this store has sign agreement only - no significance test, so no IPCC-style "
        "likelihood wording is given"
    )
    w.table(
        Table(
            "period_changes",
            f"Change of the period means against {baseline} per scenario, quantity and depth "
            f"(the store's *_period_* variables; {_weighting(results)}): the multi-model "
            "mean change, the range of the models' changes, the store's sign agreement (the "
            "family-weighted fraction of models "
            f"agreeing on the sign) and the number of models; {robustness}. Each model's "
            "change: period_model_changes.csv.",
            summary,
            columns,
        ),
        "No scenario of the store has a period change.",
    )


def _weighting(results: xr.Dataset) -> str:
    """How the store's spread weights the models, in its own words (first clause)."""
    comment = str(results["event_days_multimodel_mean"].attrs.get("comment", ""))
    return comment.split(";")[0] if comment else "each model weighted equally"


def _variance_partition(w: _Writer, results: xr.Dataset) -> None:
    w.page.section("Sources of uncertainty: variance partition")
    partition = tables.partition_table(results)
    if partition.empty:
        w.page.text(
            "Not in this store: it has no variance partition with a value (*_partition_*: "
            "written by the spread statistics where the scenarios, joined with their "
            "historical runs, cover the baseline period).",
            note=True,
        )
        return
    w.csv("variance_partition", partition)
    base = str(partition["quantity"].iloc[0])
    method = str(results[f"{base}_partition_total"].attrs.get("comment", ""))
    w.chart(
        figures.variance_partition_chart(partition, method, w.store),
        "The store's variance partition has no value to draw.",
    )
    w.page.link(
        "variance_partition.csv",
        "variance_partition.csv",
        "per quantity, depth and winter: the variance of each part (the quantity's units "
        "squared) and its fraction of the total (the store's *_partition_* variables).",
    )


def _trends(w: _Writer, results: xr.Dataset) -> None:
    frame = tables.trend_table(results)
    if frame.empty:
        return
    w.page.section("Trends and time of emergence")
    columns = [
        Column("quantity", "quantity"),
        Column("experiment", "scenario"),
        Column("depth", "depth (m)", "{:g}"),
        Column("slope", "Sen slope per winter", "{:+.4f}"),
        Column("slope_low", "95 % interval from", "{:+.4f}"),
        Column("slope_high", "to", "{:+.4f}"),
        Column("slope_units", "slope units"),
        Column("pvalue", "p-value", "{:.3f}"),
        Column("winters", "winters", "{:.0f}"),
    ]
    if "emergence_winter" in frame:
        columns.append(Column("emergence_winter", "time of emergence (winter)", "{:.0f}"))
    base = str(frame["quantity"].iloc[0])
    slope = results[f"{base}_multimodel_trend_slope"].attrs.get("comment", "")
    emergence = results.get(f"{base}_emergence_winter")
    how = "" if emergence is None else str(emergence.attrs.get("long_name", "")).split(": ")[-1]
    slope = str(slope).split("; docs/spread.md")[0]
    w.table(
        Table(
            "trends",
            "Trend of the multi-model mean series per scenario (joined with its historical "
            f"run) and depth: {slope}. "
            + (
                f"Time of emergence ({base}_emergence_winter): {how}; n/a: not emerged by "
                "the last winter."
                if emergence is not None
                else ""
            ),
            frame,
            columns,
        ),
        "No scenario of the store has a trend.",
    )


def _background(w: _Writer, results: xr.Dataset) -> None:
    summary = tables.background_summary(results)
    if summary is None:
        return
    w.page.section("Deep temperature outside the mooring record")
    w.page.text(
        "The model predicts the anomaly against the deep background. Before the mooring "
        "record, a model trained with an ocean analysis takes the background from the "
        "analysis' changes anchored on the record (background_kind 3); after it, a projection "
        "whose run catalog names its own ocean (deep_ocean: CMIP6 thetao) takes the changes of "
        "that ocean near the mooring, anchored on the record's last decade (background_kind 4; "
        "a member without one takes a sibling member's of the same model and experiment, "
        "background_kind 5: the model's forced change, another run's variability). "
        "Elsewhere outside the record the stored background is held at the record's end "
        "(start) value, not projected (background_kind 1 or 2): there temperature_mean is the "
        "anomaly plus that held background, its level is not a projection; read "
        "temperature_anomaly_mean (with temperature_std) for what the model projects."
    )
    periods = summary["anomaly_only_periods"]
    w.table(
        Table(
            "anomaly_only",
            "Per depth: the mooring record's span (days whose background is from it), the "
            "background held after it (°C) and the share of stored days that are anomaly-only"
            + (
                f"; the spread's temperature changes of {', '.join(periods)} are changes of "
                "the anomaly."
                if periods
                else "."
            ),
            tables.background_table(summary),
            [
                Column("depth", "depth (m)", "{:g}"),
                Column("record_first_day", "record from"),
                Column("record_last_day", "record to"),
                Column("held_after_record_degC", "background held after it (°C)"),
                Column("anomaly_only_share", "anomaly-only share of stored days", "{:.2f}"),
                Column("analysis_share", "share from the ocean analysis", "{:.2f}"),
            ],
        ),
        "No depth in the summary.",
    )


def _ood(w: _Writer, results: xr.Dataset, base: tuple[int, int], future: tuple[int, int]) -> None:
    if "ood_fraction" not in results:
        return
    w.page.section("Out-of-distribution inputs")
    frame = tables.ood_table(results, (base, future))
    labels = [c for c in frame.columns if c != "experiment"]
    w.table(
        Table(
            "ood_by_period",
            "Fraction of the winter's November-April days on which any model input lies "
            f"outside its training range ({results['ood_fraction'].attrs.get('comment', '')}); "
            "mean over the period's winters, members of a model averaged, models equally "
            "weighted (store: ood_fraction; each experiment's own winters).",
            frame,
            [Column("experiment", "experiment")] + [Column(p, p, "{:.2f}") for p in labels],
        ),
        "No experiment in the store.",
    )
    w.chart(figures.ood_chart(results, w.store), "No done combination has an OOD score.")


def _truth(
    w: _Writer,
    results: xr.Dataset,
    truth_index: str | Path,
    model: Path,
    base: tuple[int, int],
    future: tuple[int, int],
    depth: float,
) -> dict[str, Any]:
    events = model_events(model)
    index = load_truth_index(truth_index)
    comparison = truth_comparison(results, index, events, base=base, future=future, depth=depth)
    start = record_start(model)
    comparison["hindcast"] = hindcast_scores(results, index, events, start)
    comparison["deep_temperature"] = deep_temperature_changes(
        results, index, base=base, future=future, depth=depth
    )
    path = w.out / TRUTH_JSON
    path.write_text(json.dumps(comparison, indent=2) + "\n", encoding="utf-8")
    w.files.append(path)
    truths = "; ".join(f"{kind}: {text}" for kind, text in comparison["truth_background"].items())
    w.page.section("Against the twin's truth")
    w.table(
        Table(
            "truth_comparison",
            f"Change of {comparison['quantity']}, {comparison['future_period']} vs "
            f"{comparison['base_period']}: the run and the twin's truth, multi-model mean, its "
            "95 % interval over the winters drawn, the range of the models' changes (members "
            f"averaged), sign agreement and the period means. {truths}. Run: "
            f"{comparison['run_events']}. Reduction: {comparison['reduction']}. Interval: "
            f"{comparison['sampling']} (the run's error and the fraction within 30 %: "
            f"{TRUTH_JSON}).",
            tables.truth_change_table(comparison),
            [
                Column("experiment", "scenario"),
                Column("side", "run or truth"),
                Column("change", "change (days)", "{:+.2f}"),
                Column("change_low", "95 % over winters, low", "{:+.2f}"),
                Column("change_high", "… high", "{:+.2f}"),
                Column("model_min", "lowest model", "{:+.2f}"),
                Column("model_max", "highest model", "{:+.2f}"),
                Column("agreement", "sign agreement", "{:.2f}"),
                Column("n_models", "models", "{:d}"),
                Column("base_mean", "baseline mean (days)", "{:.2f}"),
                Column("future_mean", "future mean (days)", "{:.2f}"),
            ],
        ),
        "The truth comparison found no scenario.",
    )
    w.chart(figures.truth_chart(comparison), "No truth to draw.")
    scores = comparison["hindcast"]
    w.table(
        Table(
            "truth_hindcast",
            f"Hindcast before the mooring record (before {start}): {scores['quantity']}.",
            tables.truth_hindcast_table(scores),
            [
                Column("source_id", "reanalysis"),
                Column("members", "members", "{:d}"),
                Column("depth", "depth (m)", "{:g}"),
                Column("nse", "NSE daily T", "{:.2f}"),
                Column("n_days", "days", "{:d}"),
                Column("event_days_correlation", "r event days", "{:.2f}"),
                Column("n_winters", "winters", "{:d}"),
                Column("run_mean_event_days", "event days run", "{:.1f}"),
                Column("truth_mean_event_days", "event days truth", "{:.1f}"),
            ],
        ),
        f"No reanalysis of the store has a day before the mooring record ({start}).",
    )
    if comparison["combinations_without_truth"]:
        w.page.text(
            "Combinations without a truth: " + ", ".join(comparison["combinations_without_truth"])
        )
    return comparison


def _files(w: _Writer, winters: pd.DataFrame) -> None:
    w.page.section("Per-winter event statistics")
    w.csv("winter_event_statistics", winters)
    w.page.link(
        "winter_event_statistics.csv",
        "winter_event_statistics.csv",
        "one row per done combination (experiment, source_id, member_id) and winter it "
        "covers: the season's first and last day, winter_days (season days covered), per "
        "depth the store's event_days (days), event_count (events), peak_intensity_*_degC "
        "(°C below the background, positive = colder) and their range across the deep-"
        "ensemble members (*_member_min, *_member_max), ood_fraction and ood_max_z. Values "
        "as stored (not rescaled for missing days).",
    )


def _references(w: _Writer) -> None:
    w.page.section("References")
    used = {r for winter in EXTREME_WINTERS for r in winter.references} | {PALETTE_SOURCE}
    w.page.items([REFERENCES[key] for key in sorted(used)])


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
    """Write the report of the results store ``results`` into the folder ``out``.

    Files: ``report.html`` (one self-contained page), each figure as PNG and PDF beside it,
    each table as CSV (``winter_event_statistics.csv``: one row per combination and
    winter), and, with a truth index, ``truth_comparison.json``.

    Parameters
    ----------
    results
        Results store URL or path (``cascadia-ensemble run``).
    out
        Output folder (created).
    truth_index
        A twin world's ``truth/index.csv``: adds the comparison with the truth (needs
        ``model_dir``).
    model_dir
        The trained model directory: its event rule (``job.yaml``) and mooring series
        (``background.csv``) for the observations in the hindcast and reconstruction.
    base, future
        Winters of the truth comparison's baseline and future period; ``future`` also
        picks the store's period shown in the change section when the store has it.
    depth
        Depth (m) of the truth comparison.

    Raises
    ------
    ReportError
        A store, model directory or truth index that cannot make the report.
    """
    if truth_index is not None and model_dir is None:
        raise ReportError(
            "the truth comparison needs the model directory (--model: its event rule and record)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(model_dir) if model_dir is not None else None
    if model is not None and not model.is_dir():
        raise ReportError(f"{model}: model directory not found")
    twin = truth_index is not None
    report = ReportResult(out=out)
    with open_store(results) as ds:
        page = Page(
            "Dense shelf water cascading: run report",
            f"Results store {results}" + (f"; model {model}." if model else "."),
        )
        w = _Writer(out, str(results), page)
        depths = [float(d) for d in ds["depth"].values]
        observed = observed_series(model) if model is not None else None
        events = model_events(model) if model is not None and observed is not None else None
        observed_events = (
            {d: observed_winter_event_days(observed, events, d) for d in depths}
            if observed is not None and events is not None
            else {}
        )
        winters = tables.winter_event_table(ds)
        _overview(w, ds, twin)
        source = reference_source(ds, training_source(model) if model is not None else None)
        _hindcast(w, ds, source, observed, observed_events, depths)
        _reconstruction(w, winters, observed_events, depths, twin)
        _scenarios(w, ds)
        _change(w, ds, future)
        _variance_partition(w, ds)
        _trends(w, ds)
        _background(w, ds)
        _ood(w, ds, base, future)
        if truth_index is not None and model is not None:
            report.comparison = _truth(w, ds, truth_index, model, base, future, depth)
        _files(w, winters)
        _references(w)
    path = out / REPORT_HTML
    path.write_text(page.render(), encoding="utf-8")
    report.files = [path, *w.files]
    return report
