"""The report's figures: one function per figure, drawn from the report's tables.

Each function takes the tables that also become the CSV files (or the store variables they
come from) and returns a :class:`Chart` - a matplotlib figure with its caption - or
``None`` when the store has nothing to draw. Figures are made on ``Figure`` objects (no
global pyplot state) and saved as PNG, for the HTML page, and PDF, for a paper. Colours are
Okabe-Ito (colour-blind safe, :data:`cascadia.report.literature.OKABE_ITO`); series that
share a panel also differ in line style or marker, so no figure needs colour to be read.
Every axis names its quantity and unit; every figure names its source at the bottom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cascadia.report.literature import EXTREME_WINTERS, OKABE_ITO, PALETTE_SOURCE
from cascadia.report.store import REANALYSIS, done_array
from cascadia.run.spread import season_days

__all__ = [
    "Chart",
    "change_chart",
    "hindcast_events_chart",
    "hindcast_temperature_chart",
    "ood_chart",
    "reconstruction_chart",
    "save",
    "scenario_chart",
    "truth_chart",
    "variance_partition_chart",
]

#: Colours of successive series: Okabe-Ito without yellow (too pale for lines on white).
SEQUENCE: tuple[str, ...] = tuple(
    OKABE_ITO[c]
    for c in ("blue", "vermillion", "bluish green", "reddish purple", "orange", "sky blue")
)
LINESTYLES: tuple[str, ...] = ("-", "--", "-.", ":")
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P")
OBSERVED = OKABE_ITO["black"]
#: Scenario colours by forcing level (SSP / RCP suffix), cool to warm.
FORCING_COLOURS: dict[str, str] = {
    "119": OKABE_ITO["sky blue"],
    "126": OKABE_ITO["blue"],
    "26": OKABE_ITO["blue"],
    "245": OKABE_ITO["orange"],
    "45": OKABE_ITO["orange"],
    "370": OKABE_ITO["reddish purple"],
    "585": OKABE_ITO["vermillion"],
    "85": OKABE_ITO["vermillion"],
}
#: Short forms of the spread's robustness categories for the change figure's labels.
SHORT_CATEGORIES: dict[str, str] = {
    "robust signal": "robust",
    "no change or no robust signal": "no robust signal",
    "conflicting signal": "conflicting",
}
SPAN = (1950, 2100)  # winters of the projection figures
DPI = 100
#: Widest figure (inches): at DPI it fits the page's column unscaled.
MAX_WIDTH = 11.0
PALETTE_NOTE = f"Colours: Okabe-Ito palette, colour-blind safe ({PALETTE_SOURCE})."


@dataclass
class Chart:
    """A figure, the file stem it is saved under, its title and caption (plain text)."""

    stem: str
    title: str
    figure: Figure
    caption: str


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _source(fig: Figure, text: str) -> None:
    """The figure's source, in small type under the axes (also in the PDF on its own)."""
    fig.get_layout_engine().set(h_pad=0.1)
    fig.supxlabel(f"Source: {text}", fontsize=7, color="#444444", x=0.01, ha="left")


def save(chart: Chart, out: Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` into ``out``; return both paths."""
    png, pdf = out / f"{chart.stem}.png", out / f"{chart.stem}.pdf"
    chart.figure.savefig(png, dpi=DPI)
    chart.figure.savefig(pdf)
    return [png, pdf]


def scenario_style(name: str, index: int) -> dict[str, str]:
    """Colour and line style of a scenario: by its forcing level when the name has one."""
    digits = "".join(ch for ch in name if ch.isdigit())
    colour = FORCING_COLOURS.get(digits, SEQUENCE[index % len(SEQUENCE)])
    return {"color": colour, "linestyle": LINESTYLES[index % len(LINESTYLES)]}


def _style(index: int) -> dict[str, str]:
    return {
        "color": SEQUENCE[index % len(SEQUENCE)],
        "linestyle": LINESTYLES[index % len(LINESTYLES)],
        "marker": MARKERS[index % len(MARKERS)],
    }


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#555555")


# ---------------------------------------------------------------- hindcast since 1993


def hindcast_temperature_chart(
    hindcasts: Mapping[float, pd.DataFrame],
    observed: pd.DataFrame | None,
    source: str,
    since: int,
    store: str,
) -> Chart | None:
    """Daily deep temperature of the reference hindcast with its 90 % band, and the mooring."""
    start = pd.Timestamp(since, 1, 1)
    shown = {d: h[h.index >= start] for d, h in hindcasts.items()}
    if not any(len(h) for h in shown.values()):
        return None
    fig = _figure(MAX_WIDTH, 2.6 * len(shown) + 0.6)
    axes = np.atleast_1d(fig.subplots(len(shown), 1, sharex=True))
    colour = OKABE_ITO["blue"]
    for ax, (depth, run) in zip(axes, shown.items(), strict=True):
        ax.fill_between(
            run.index,
            run["q05"],
            run["q95"],
            color=OKABE_ITO["sky blue"],
            alpha=0.45,
            lw=0,
            label="90 % predictive interval (q05-q95)",
        )
        ax.plot(run.index, run["mean"], color=colour, lw=0.7, label=f"hindcast ({source})")
        column = f"observed_{depth:g}"
        if observed is not None and column in observed:
            obs = observed.loc[observed.index >= start, column].dropna()
            ax.plot(obs.index, obs.values, color=OBSERVED, lw=0.6, ls="--", label="mooring")
        ax.set_ylabel(f"temperature at {depth:g} m (°C)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=3, loc="upper left")
    axes[-1].set_xlabel("date")
    fig.suptitle(f"Hindcast of the deep temperature since {since} ({source})", fontsize=11)
    _source(
        fig,
        f"results store {store} (temperature_mean, temperature_quantile, reanalysis/{source}); "
        "mooring: the model directory's background.csv (QC'd daily observations).",
    )
    caption = (
        f"Daily deep-water temperature (°C) in the Lacaze-Duthiers canyon at "
        f"{', '.join(f'{d:g}' for d in shown)} m since {since}: the deep ensemble driven by "
        f"the {source} reanalysis (solid line: ensemble mean, temperature_mean; shaded band: "
        "its 90 % predictive interval, the 5th to 95th percentile of the ensemble mixture, "
        "temperature_quantile; members of the reanalysis averaged) and the mooring's quality-"
        "controlled daily observations (dashed black). The record includes the winters the "
        "model was trained on: the match there is in-sample, not skill (the model's "
        f"metrics.json scores held-out winters). {PALETTE_NOTE}"
    )
    return Chart("hindcast-temperature", "Hindcast since 1993", fig, caption)


def hindcast_events_chart(
    run_events: Mapping[float, pd.DataFrame],
    observed_events: Mapping[float, pd.Series],
    source: str,
    since: int,
    store: str,
) -> Chart | None:
    """Event days per winter of the reference hindcast (member range) and of the mooring."""
    shown = {d: e[e.index >= since] for d, e in run_events.items()}
    if not any(len(e) for e in shown.values()):
        return None
    fig = _figure(MAX_WIDTH, 2.4 * len(shown) + 0.6)
    axes = np.atleast_1d(fig.subplots(len(shown), 1, sharex=True))
    for ax, (depth, run) in zip(axes, shown.items(), strict=True):
        if {"member_min", "member_max"} <= set(run.columns):
            ax.errorbar(
                run.index - 0.12,
                run["event_days"],
                yerr=np.vstack(
                    [run["event_days"] - run["member_min"], run["member_max"] - run["event_days"]]
                ).clip(min=0),
                fmt="o",
                color=OKABE_ITO["blue"],
                ecolor=OKABE_ITO["blue"],
                capsize=2,
                ms=4,
                lw=0.8,
                label=f"hindcast ({source}); whiskers: range of the ensemble members",
            )
        else:
            ax.plot(run.index, run["event_days"], "o", color=OKABE_ITO["blue"], label="hindcast")
        obs = observed_events.get(depth, pd.Series(dtype=float))
        obs = obs[(obs.index >= since)].dropna()
        if len(obs):
            ax.plot(obs.index + 0.12, obs.values, "s", color=OBSERVED, ms=4, label="mooring")
        ax.set_ylabel(f"event days at {depth:g} m\n(days per Nov-Apr)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel("winter (year of its January; season 1 Nov - 30 Apr)")
    fig.suptitle(f"Cascading event days per winter since {since} ({source})", fontsize=11)
    _source(
        fig,
        f"results store {store} (event_days, member_event_days, reanalysis/{source}); mooring: "
        "background.csv with the model's event rule (job.yaml).",
    )
    caption = (
        "Cascading event days per winter (November-April season, days) since "
        f"{since}: the store's event_days of the {source}-driven deep ensemble (circles; "
        "whiskers: the range, lowest to highest, of the deep-ensemble members' own counts, "
        "member_event_days) and the mooring's (squares: the model's event rule from its "
        "job.yaml applied to the observed anomaly against the background the model was "
        "trained with). Winters the run covers for less than 90 % of the season are left "
        f"out. {PALETTE_NOTE}"
    )
    return Chart("hindcast-events", "Event days per winter since 1993", fig, caption)


# ---------------------------------------------------------------- reconstruction


def _extreme_marks(ax: Any, first: int, last: int, label: bool) -> list[int]:
    """Grey columns at the known extreme winters in ``first..last``; their years on top."""
    marked = [w.winter for w in EXTREME_WINTERS if first <= w.winter <= last]
    for i, winter in enumerate(marked):
        ax.axvspan(
            winter - 0.45,
            winter + 0.45,
            color="#BBBBBB",
            alpha=0.5,
            lw=0,
            label="known extreme winter (literature)" if label and i == 0 else None,
        )
    if label and marked:
        top = ax.secondary_xaxis("top")
        top.set_xticks(marked, [str(w) for w in marked], rotation=90, fontsize=7)
        top.tick_params(length=0, pad=1)
    return marked


def reconstruction_chart(
    winters: pd.DataFrame,
    observed_events: Mapping[float, pd.Series],
    depths: Sequence[float],
    store: str,
    twin: bool,
) -> Chart | None:
    """Event days per winter of every reanalysis back to its first winter, members as a band."""
    rows = winters[winters["experiment"] == REANALYSIS].copy()
    if rows.empty:
        return None
    full = rows["winter"].map(season_days)
    rows = rows[rows["winter_days"] >= 0.9 * full]
    if rows.empty:
        return None
    first, last = int(rows["winter"].min()), int(rows["winter"].max())
    fig = _figure(MAX_WIDTH, 2.7 * len(depths) + 0.8)
    axes = np.atleast_1d(fig.subplots(len(depths), 1, sharex=True))
    sources = sorted(rows["source_id"].unique())
    bands = []
    for ax_i, (ax, depth) in enumerate(zip(axes, depths, strict=True)):
        column = f"event_days_{depth:g}m"
        for i, source in enumerate(sources):
            one = rows[rows["source_id"] == source].pivot(
                index="winter", columns="member_id", values=column
            )
            style = _style(i)
            if one.shape[1] > 1:
                ax.fill_between(
                    one.index,
                    one.min(axis=1),
                    one.max(axis=1),
                    color=style["color"],
                    alpha=0.25,
                    lw=0,
                    step="mid",
                    label=f"{source}: range of its {one.shape[1]} members",
                )
                if ax_i == 0:
                    bands.append(f"{source} ({one.shape[1]} members)")
            ax.plot(
                one.index,
                one.mean(axis=1),
                color=style["color"],
                ls=style["linestyle"],
                marker=style["marker"],
                ms=3,
                lw=1,
                label=source if one.shape[1] == 1 else f"{source}: member mean",
            )
        obs = observed_events.get(depth, pd.Series(dtype=float)).dropna()
        if len(obs):
            ax.plot(obs.index, obs.values, "s-", color=OBSERVED, ms=3, lw=0.8, label="mooring")
        _extreme_marks(ax, first, last, label=ax_i == 0)
        ax.set_ylabel(f"event days at {depth:g} m\n(days per Nov-Apr)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    axes[-1].set_xlabel("winter (year of its January; season 1 Nov - 30 Apr)")
    axes[-1].set_xlim(first - 1, last + 1)
    fig.suptitle("Reconstruction: cascading event days per winter from every reanalysis")
    _source(
        fig,
        f"results store {store} (event_days, experiment reanalysis); extreme winters: "
        "literature (see caption); mooring: background.csv with the model's event rule.",
    )
    marked = [w for w in EXTREME_WINTERS if first <= w.winter <= last]
    marks = "; ".join(f"{w.winter}: {w.what} ({', '.join(w.references)})" for w in marked)
    where = (
        "These are winters of the real Gulf of Lion: this store is from the synthetic twin "
        "world, whose weather is not the real weather, so they mark real-world winters for "
        "orientation, not events the twin must reproduce."
        if twin
        else "These are winters of the real Gulf of Lion; on a store from the synthetic "
        "twin world they mark real-world winters, not the twin's own."
    )
    caption = (
        "Reconstruction of cascading event days per winter (November-April season, days) "
        "from every reanalysis in the store, back to its first winter: single-member "
        "reanalyses as lines with markers; a reanalysis with several members (20CR) as the "
        "mean of its members (line) and the range, lowest to highest, of its members "
        f"(shaded band{': ' + ', '.join(bands) if bands else ''}); the mooring's event days "
        "in black. Winters covered for less than 90 % of the season are left out. Grey "
        "columns: winters with strong dense shelf water cascading or deep convection in the "
        f"Gulf of Lion reported in the literature ({marks or 'none in this span'}). {where} "
        f"{PALETTE_NOTE}"
    )
    return Chart("reconstruction", "Reconstruction through every reanalysis", fig, caption)


# ---------------------------------------------------------------- scenarios


def scenario_chart(
    spread: pd.DataFrame, scenarios: Sequence[str], store: str, weighting: str
) -> Chart | None:
    """Per scenario (columns) and quantity and depth (rows): multi-model mean and band."""
    if spread.empty or not scenarios:
        return None
    rows = spread[spread["experiment"].isin(scenarios)]
    rows = rows[(rows["winter"] >= SPAN[0]) & (rows["winter"] <= SPAN[1])]
    if rows.empty:
        return None
    pct = sorted(
        (float(c[1:]), c)
        for c in spread.columns
        if c.startswith("p") and c[1:].replace(".", "").isdigit()
    )
    low, high = pct[0][1], pct[-1][1]
    panels = [(q, d) for q in spread["quantity"].unique() for d in sorted(spread["depth"].unique())]
    fig = _figure(min(MAX_WIDTH, 3.6 * len(scenarios) + 0.8), 2.3 * len(panels) + 0.8)
    axes = fig.subplots(len(panels), len(scenarios), sharex=True, sharey="row", squeeze=False)
    labels = {"event_days": "event days", "peak_intensity": "peak intensity"}
    for r, (quantity, depth) in enumerate(panels):
        sel = rows[(rows["quantity"] == quantity) & (rows["depth"] == depth)]
        units = str(sel["units"].iloc[0]) if len(sel) else ""
        unit = "°C colder" if units == "degree_Celsius" else units
        for c, scenario in enumerate(scenarios):
            ax = axes[r, c]
            one = sel[sel["experiment"] == scenario].set_index("winter").sort_index()
            style = scenario_style(scenario, c)
            if one.empty or one["multimodel_mean"].isna().all():
                _empty(ax, "no value (no event in any model)")
            else:
                ax.fill_between(
                    one.index,
                    one[low],
                    one[high],
                    color=style["color"],
                    alpha=0.25,
                    lw=0,
                    label=f"{low}-{high} across models",
                )
                ax.plot(
                    one.index,
                    one["multimodel_mean"],
                    color=style["color"],
                    ls=style["linestyle"],
                    lw=1.2,
                    label="multi-model mean",
                )
            if r == 0:
                ax.set_title(scenario, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{labels.get(quantity, quantity)}\nat {depth:g} m ({unit})")
                if ax.get_legend_handles_labels()[0]:  # an empty panel has nothing to name
                    ax.legend(fontsize=7, loc="upper right")
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("winter (year of its January)")
    first, last = int(rows["winter"].min()), int(rows["winter"].max())
    fig.suptitle("Projected cascading per scenario: multi-model mean and spread", fontsize=11)
    _source(
        fig,
        f"results store {store} (event_days_multimodel_*, peak_intensity_multimodel_*).",
    )
    caption = (
        "Per scenario (columns): cascading event days per winter (November-April season, "
        "days) and peak intensity (largest cooling below the background on an event day, °C, "
        "positive = colder), at each depth (rows), for the winters "
        f"{SPAN[0]}-{SPAN[1]} the store holds ({first}-{last}). Line: multi-model mean; "
        f"shaded band: the {low[1:]}th to {high[1:]}th percentile across models. Weighting: "
        f"{weighting}. Each scenario continues its model's historical run before the "
        "scenario's first day (docs/spread.md). "
        f"Peak intensity has no value in winters without an event. {PALETTE_NOTE}"
    )
    return Chart("scenarios", "Projections per scenario", fig, caption)


def change_chart(
    summary: pd.DataFrame, per_model: pd.DataFrame, period: str, store: str
) -> Chart | None:
    """Change of the period mean against the baseline per scenario: models, mean, range."""
    rows = summary[summary["period"] == period] if not summary.empty else summary
    if rows.empty or rows["change"].isna().all():
        return None
    quantities = list(dict.fromkeys(rows["quantity"]))
    depths = sorted(rows["depth"].unique())
    fig = _figure(min(MAX_WIDTH, 4.2 * len(depths) + 0.8), 3.0 * len(quantities) + 0.8)
    axes = np.atleast_2d(fig.subplots(len(quantities), len(depths), squeeze=False))
    labels = {
        "event_days": "change in event days\nper winter (days)",
        "winter_temperature_anomaly": "change in winter-mean\ntemperature anomaly (°C)",
    }
    rng = np.random.default_rng(0)  # jitter of the model dots only
    for r, quantity in enumerate(quantities):
        for c, depth in enumerate(depths):
            ax = axes[r, c]
            sel = rows[(rows["quantity"] == quantity) & (rows["depth"] == depth)]
            experiments = list(sel["experiment"])
            for i, experiment in enumerate(experiments):
                one = sel[sel["experiment"] == experiment].iloc[0]
                style = scenario_style(experiment, i)
                models = per_model[
                    (per_model["quantity"] == quantity)
                    & (per_model["depth"] == depth)
                    & (per_model["period"] == period)
                    & (per_model["experiment"] == experiment)
                ]["change"]
                ax.scatter(
                    i + rng.uniform(-0.15, 0.15, len(models)),
                    models,
                    s=14,
                    facecolors="none",
                    edgecolors=style["color"],
                    label="one model (members averaged)" if i == 0 else None,
                )
                ax.errorbar(
                    i + 0.3,
                    one["change"],
                    yerr=[[one["change"] - one["model_min"]], [one["model_max"] - one["change"]]],
                    fmt="D",
                    color=style["color"],
                    ms=6,
                    capsize=3,
                    label="multi-model mean; whiskers: model range" if i == 0 else None,
                )
                agree = (
                    f"{one['agreement']:.0%} of {one['n_models']}"
                    if np.isfinite(one["agreement"])
                    else "n/a"
                )
                words = [
                    SHORT_CATEGORIES.get(str(one.get(k, "")), str(one.get(k, "")))
                    for k in ("robustness", "likelihood")
                ]
                words = [w for w in words if w and w not in ("none", "nan")]
                if words:
                    agree += "\n" + ", ".join(words)
                ax.annotate(
                    agree,
                    (i, 1.0),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
            ax.axhline(0, color="black", lw=0.6)
            ax.set_xticks(range(len(experiments)), experiments)
            ax.set_xlim(-0.6, len(experiments) - 0.4)
            ax.grid(axis="y", alpha=0.3)
            if r == 0:
                ax.set_title(f"{depth:g} m", fontsize=10, pad=28)
            if c == 0:
                ax.set_ylabel(labels.get(quantity, quantity))
    axes[0, 0].legend(fontsize=7, loc="lower left")
    baseline = str(rows["baseline"].iloc[0])
    fig.suptitle(f"Change {period} vs {baseline} per scenario", fontsize=11)
    _source(
        fig,
        f"results store {store} (*_period_model_change, *_period_multimodel_change, "
        "*_period_model_agreement).",
    )
    caption = (
        f"Change of the period mean, {period} against {baseline}, per scenario and depth: "
        "winter (November-April) event days (days per winter) and the winter-mean predicted "
        "temperature anomaly (°C; after the mooring record the stored background is held, "
        "so the anomaly, not the absolute temperature, is what the model projects). Open "
        "circles: each model's change (its members averaged; horizontally spread to be "
        "seen); diamond: the multi-model mean change; whiskers: the range, lowest to highest, "
        "of the models' changes. Above each scenario: the store's sign agreement "
        "(period_model_agreement, the family-weighted fraction of models agreeing on the "
        "sign) of the number of models with a change, and, where the store has them, its "
        "robustness category (IPCC AR6 advanced approach: significance and sign agreement, "
        "period_robustness) and the likelihood of the sign (period_likelihood, written only "
        f"where its criteria hold). {PALETTE_NOTE}"
    )
    return Chart("change", f"Change {period}", fig, caption)


# ---------------------------------------------------------------- variance partition

PART_COLOURS: dict[str, str] = {
    "scenario": OKABE_ITO["vermillion"],
    "model": OKABE_ITO["blue"],
    "internal": OKABE_ITO["orange"],
    "emulator": OKABE_ITO["bluish green"],
}
PART_LABELS: dict[str, str] = {
    "scenario": "scenario",
    "model": "climate model (structural)",
    "internal": "internal variability (members)",
    "emulator": "emulator (deep-ensemble members)",
}
QUANTITY_LABELS: dict[str, str] = {
    "event_days": "winter event days",
    "winter_temperature_anomaly": "winter-mean temperature anomaly",
}


def variance_partition_chart(partition: pd.DataFrame, method: str, store: str) -> Chart | None:
    """Fractions of the total variance by source over the winters, per quantity and depth."""
    if partition.empty:
        return None
    panels = list(dict.fromkeys(zip(partition["quantity"], partition["depth"], strict=True)))
    parts = [p for p in PART_COLOURS if f"{p}_fraction" in partition and partition[p].notna().any()]
    fig = _figure(MAX_WIDTH, 2.5 * len(panels) + 0.8)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (quantity, depth) in zip(axes, panels, strict=True):
        one = partition[(partition["quantity"] == quantity) & (partition["depth"] == depth)]
        one = one.sort_values("winter")
        ax.set_title(f"{QUANTITY_LABELS.get(quantity, quantity)} at {depth:g} m", fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_ylabel("fraction of the\ntotal variance (1)")
        ax.grid(alpha=0.3)
        if not (one["total"] > 0).any():
            _empty(ax, "no spread to partition (total variance 0)")
            continue
        ax.stackplot(
            one["winter"],
            np.vstack([one[f"{p}_fraction"].fillna(0.0).to_numpy() for p in parts]),
            labels=[PART_LABELS[p] for p in parts],
            colors=[PART_COLOURS[p] for p in parts],
            alpha=0.9,
        )
    drawn = [ax for ax in axes if ax.get_legend_handles_labels()[0]]
    if not drawn:
        return None
    drawn[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    axes[-1].set_xlabel("winter (year of its January)")
    fig.suptitle("Sources of uncertainty of the projected change", fontsize=11)
    names = sorted({f"{q}_partition_*" for q, _ in panels})
    _source(fig, f"results store {store} ({', '.join(names)}).")
    missing = [PART_LABELS[p] for p in PART_COLOURS if p not in parts]
    caption = (
        "Fraction of the total variance of the projected change (against the store's "
        "baseline period) due to each source, per winter: scenario, climate model "
        "(structural; RCMs driven by one GCM weighted as one family), internal variability "
        "(the climate models' members) and the emulator (the deep ensemble's own members), "
        "stacked to 1 - after Hawkins and Sutton (2009) and Lafferty and Sriver (2023). "
        + (f"Not in this store: {', '.join(missing)}. " if missing else "")
        + f"Method (the store's own description): {method.rstrip('.')}. "
        f"{PALETTE_NOTE}"
    )
    return Chart("variance-partition", "Variance partition", fig, caption)


# ---------------------------------------------------------------- out of distribution


def ood_chart(results: xr.Dataset, store: str) -> Chart | None:
    """Per-winter fraction of out-of-distribution days per experiment (models averaged)."""
    fraction = results["ood_fraction"].where(done_array(results))
    with np.errstate(invalid="ignore"):
        per_model = fraction.mean("member_id", skipna=True).load()
    fig = _figure(MAX_WIDTH, 3.6)
    ax = fig.subplots()
    drawn = False
    with np.errstate(invalid="ignore"):
        for i, experiment in enumerate(per_model["experiment"].values):
            one = per_model.sel(experiment=experiment)
            mean = one.mean("source_id", skipna=True).to_pandas().dropna()
            if mean.empty:
                continue
            low = one.min("source_id", skipna=True).to_pandas().reindex(mean.index)
            high = one.max("source_id", skipna=True).to_pandas().reindex(mean.index)
            style = scenario_style(str(experiment), i)
            ax.plot(mean.index, mean.values, lw=1, label=str(experiment), **style)
            ax.fill_between(mean.index, low, high, color=style["color"], alpha=0.15, lw=0)
            drawn = True
    if not drawn:
        return None
    ax.set_ylabel("fraction of Nov-Apr days (1)")
    ax.set_xlabel("winter (year of its January)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("Days with a model input outside its training range", fontsize=11)
    _source(fig, f"results store {store} (ood_fraction).")
    caption = (
        "Fraction of each winter's November-April days on which any model input lies outside "
        "its training range (mean ± 4 training standard deviations), per experiment: line, "
        "the mean over models (each model's members averaged); shaded band, the range, "
        f"lowest to highest, across models. {PALETTE_NOTE}"
    )
    return Chart("ood", "Out-of-distribution inputs", fig, caption)


# ---------------------------------------------------------------- the twin's truth


def truth_chart(comparison: Mapping[str, Any]) -> Chart:
    """Bars: run change vs true change per scenario, whiskers = model range."""
    scenarios = list(comparison["scenarios"])
    kinds = (
        ("run", "run (deep ensemble)", OKABE_ITO["blue"], ""),
        ("truth", "truth (event rule, trailing background)", OKABE_ITO["orange"], "//"),
        ("truth_physical", "truth (physical anomaly)", OKABE_ITO["vermillion"], ".."),
    )
    first = comparison["scenarios"][scenarios[0]] if scenarios else {}
    kinds = tuple(k for k in kinds if k[0] in first)
    x = np.arange(len(scenarios))
    width = 0.8 / max(len(kinds), 1)
    fig = _figure(7.5, 4.2)
    ax = fig.subplots()
    for k, (key, label, colour, hatch) in enumerate(kinds):
        rows = [comparison["scenarios"][s][key] for s in scenarios]
        mean = np.array([np.nan if r["change"] is None else r["change"] for r in rows])
        lo = np.array([np.nan if r["model_min"] is None else r["model_min"] for r in rows])
        hi = np.array([np.nan if r["model_max"] is None else r["model_max"] for r in rows])
        err = np.vstack([mean - lo, hi - mean])
        offset = (k - (len(kinds) - 1) / 2) * width
        ax.bar(x + offset, mean, width, label=label, color=colour, hatch=hatch)
        ax.errorbar(x + offset, mean, yerr=err, fmt="none", ecolor="black", lw=0.8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(x, scenarios)
    ax.set_ylabel("change in event days per winter (days)")
    ax.set_title(
        f"{comparison['future_period']} vs {comparison['base_period']}: "
        f"{comparison['quantity'].split(',')[0]}",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    _source(fig, "truth_comparison.json (results store and the twin's truth/index.csv).")
    caption = (
        f"Change of the {comparison['quantity']}, {comparison['future_period']} against "
        f"{comparison['base_period']}, per scenario: the run (deep ensemble, the store's "
        "event_days) and the twin's truth: the model's event rule on the true temperature "
        "with the running-quantile background of the trailing window, and on the physical "
        "anomaly (true temperature minus the twin's background process). Bars: multi-model "
        "mean change; whiskers: the range, lowest to highest, of the models' changes "
        f"(members averaged). {PALETTE_NOTE}"
    )
    return Chart("truth-change", "Against the twin's truth", fig, caption)
