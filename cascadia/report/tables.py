"""The report's tables, read from the results store (and the model directory's mooring series).

Why: every number the report shows is first a row of a pandas table built here with
xarray from the store's own variables, then written unchanged as a CSV file and formatted
into the HTML page, so the CSV files are the report's numbers at full precision and a test
can hold both against the store. Statistics across combinations are the store's spread
variables (:mod:`cascadia.run.spread`), read, never recomputed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cascadia.report.store import (
    BASE_PERIOD,
    FUTURE_PERIOD,
    REANALYSIS,
    combos,
    done_array,
    scenarios,
)
from cascadia.report.truth import TRUTH_KINDS
from cascadia.run.spread import done_mask, season_days
from cascadia.run.store import (
    ANALYSIS_KIND,
    ANOMALY_ONLY_KINDS,
    MODEL_OCEAN_KIND,
    SIBLING_OCEAN_KIND,
)

__all__ = [
    "CHANGE_BASES",
    "EVENT_STATS",
    "SPREAD_BASES",
    "background_summary",
    "background_table",
    "category_variables",
    "change_tables",
    "column_name",
    "count_level_mismatch",
    "future_period",
    "hindcast",
    "hindcast_table",
    "hindcast_winter_event_days",
    "ood_by_period",
    "ood_table",
    "overview_table",
    "partition_table",
    "spread_table",
    "trend_table",
    "truth_change_table",
    "truth_hindcast_table",
    "winter_event_table",
]

#: Per-winter event statistics of a combination, and their CSV suffix (units).
EVENT_STATS: dict[str, str] = {"event_days": "", "event_count": "", "peak_intensity": "_degC"}
#: Spread bases drawn per scenario (winter event days and intensity).
SPREAD_BASES: tuple[str, ...] = ("event_days", "peak_intensity")
#: Spread bases with period changes in the report (the absolute winter temperature is not
#: shown: after the mooring record its level is anomaly-only, docs/run.md).
CHANGE_BASES: tuple[str, ...] = ("event_days", "winter_temperature_anomaly")
#: Period statistics shown where the store has them (the spread's robustness inputs).
OPTIONAL_CHANGE_STATS: tuple[str, ...] = ("significant_fraction", "family_count")
#: Parts of the variance partition (``{base}_partition_<part>``), total last.
PARTITION_PARTS: tuple[str, ...] = ("scenario", "model", "internal", "emulator", "total")
#: How far the hindcast's event count over the record may stand from the mooring's before
#: the report says so: a quarter either way, fixed a priori (ratio of the two).
COUNT_LEVEL_BAND: tuple[float, float] = (0.8, 1.25)
#: Reference day of the hindcast comparison: the mooring record is shown from here on.
HINDCAST_SINCE = BASE_PERIOD[0]


@contextmanager
def _quiet() -> Iterator[None]:
    """All-NaN slices (a combination without events, a winter without data) give NaN."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
        with np.errstate(invalid="ignore", divide="ignore"):
            yield


def column_name(stat: str, depth: float) -> str:
    """CSV column of a per-depth statistic: ``event_days_500m``, ``peak_intensity_500m_degC``."""
    return f"{stat}_{depth:g}m{EVENT_STATS.get(stat, '')}"


def _depths(results: xr.Dataset) -> list[float]:
    return [float(d) for d in results["depth"].values]


# ---------------------------------------------------------------- overview


def overview_table(results: xr.Dataset) -> pd.DataFrame:
    """Per experiment: combinations by status, models and members done, winters covered."""
    status = results["status"].load()
    done = done_array(results)
    rows = []
    for experiment in results["experiment"].values:
        flags = np.array([str(v) for v in status.sel(experiment=experiment).values.ravel()])
        one = done.sel(experiment=experiment)
        row = {
            "experiment": str(experiment),
            "done": int((flags == "done").sum()),
            "failed": int((flags == "failed").sum()),
            "not_done": int(np.isin(flags, ["missing", "writing"]).sum()),
            "models": int(one.any("member_id").sum()),
            "members": int(one.sum()),
        }
        if "winter_days" in results:
            days = results["winter_days"].sel(experiment=experiment).where(one)
            covered = results["winter"].values[
                (days.fillna(0) > 0).any(("source_id", "member_id")).values
            ]
            row["first_winter"] = int(covered.min()) if covered.size else np.nan
            row["last_winter"] = int(covered.max()) if covered.size else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- per combination and winter


def winter_event_table(results: xr.Dataset) -> pd.DataFrame:
    """One row per done combination and winter that it covers: the store's event statistics.

    Columns: the combination, the winter (year of its January) with its season's first
    and last day, ``winter_days`` (season days the run covers), per depth the store's
    ``event_days``, ``event_count``, ``peak_intensity`` (°C, positive = colder) and, where
    the store keeps them per deep-ensemble member, their range across members
    (``*_member_min`` / ``*_member_max``), then ``ood_fraction`` and ``ood_max_z``. Values
    are the store's as written (float32), not rescaled. Read one combination at a time
    (one chunk each), so a store of many sparse combinations is never densified.
    """
    columns: dict[str, xr.DataArray] = {}
    if "winter_days" in results:
        columns["winter_days"] = results["winter_days"]
    for stat in (s for s in EVENT_STATS if s in results):
        for depth in _depths(results):
            columns[column_name(stat, depth)] = results[stat].sel(depth=depth, drop=True)
            member = f"member_{stat}"
            if member in results:
                one = results[member].sel(depth=depth, drop=True)
                stem, unit = f"{stat}_{depth:g}m", EVENT_STATS[stat]
                columns[f"{stem}_member_min{unit}"] = one.min("ensemble", skipna=True)
                columns[f"{stem}_member_max{unit}"] = one.max("ensemble", skipna=True)
    for name in ("ood_fraction", "ood_max_z"):
        if name in results:
            columns[name] = results[name]
    data = xr.Dataset(columns).reset_coords(drop=True)
    frames = []
    with _quiet():
        for experiment, source, member in combos(results):
            one = data.sel(experiment=experiment, source_id=source, member_id=member)
            frame = one.compute().to_dataframe().reset_index()
            covered = (
                frame["winter_days"].fillna(0) > 0
                if "winter_days" in frame
                else frame.drop(columns="winter").notna().any(axis=1)
            )
            frames.append(frame[covered])
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    lead = ["experiment", "source_id", "member_id", "winter"]
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    if "season_bounds" in results.coords:
        bounds = pd.DataFrame(
            results["season_bounds"].values, index=results["winter"].values, columns=["a", "b"]
        )
        first = pd.DatetimeIndex(bounds["a"].reindex(frame["winter"]).to_numpy())
        after = pd.DatetimeIndex(bounds["b"].reindex(frame["winter"]).to_numpy())
        frame.insert(4, "season_first_day", first.strftime("%Y-%m-%d"))
        frame.insert(5, "season_last_day", (after - pd.Timedelta(days=1)).strftime("%Y-%m-%d"))
    return frame


# ---------------------------------------------------------------- spread per scenario


def spread_table(results: xr.Dataset, bases: tuple[str, ...] = SPREAD_BASES) -> pd.DataFrame:
    """Per quantity, experiment, depth and winter: the store's multi-model statistics.

    ``multimodel_mean``, ``multimodel_std`` (across models, ddof 0), one column per stored
    percentile (``p10``, ``p50``, ``p90``: across models) and ``n_models``, from the
    spread variables ``{base}_multimodel_*`` (members averaged first, models weighted
    equally, scenarios joined with their historical run; docs/spread.md). Rows without a
    model are left out.
    """
    frames = []
    for base in bases:
        names = [f"{base}_multimodel_{s}" for s in ("mean", "std", "percentile", "count")]
        if not all(n in results for n in names):
            continue
        mean, std, pct, count = (results[n] for n in names)
        data = {"multimodel_mean": mean, "multimodel_std": std}
        for p in pct["percentile"].values:
            data[f"p{float(p):g}"] = pct.sel(percentile=p, drop=True)
        data["n_models"] = count
        frame = (
            xr.Dataset(data)
            .reset_coords(drop=True)
            .to_dataframe(dim_order=["experiment", "depth", "winter"])
            .reset_index()
        )
        frame = frame[frame["n_models"] > 0]
        frame.insert(0, "units", str(mean.attrs.get("units", "")))
        frame.insert(0, "quantity", base)
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out["n_models"] = out["n_models"].astype(int)
    return out


# ---------------------------------------------------------------- period changes


def future_period(results: xr.Dataset, future: tuple[int, int] = FUTURE_PERIOD) -> str | None:
    """The store's period label of the change shown: ``future`` when the store has it, else
    its last period; ``None`` for a store without period statistics."""
    if "period" not in results.coords or results.sizes["period"] < 2:
        return None
    labels = [str(p) for p in results["period"].values]
    wanted = f"{future[0]}-{future[1]}"
    return wanted if wanted in labels else labels[-1]


def category_variables(results: xr.Dataset, base: str) -> dict[str, str]:
    """Category statistics of ``base``'s period change: column -> store variable.

    The variables ``{base}_period_<name>`` with CF flags (``flag_values``,
    ``flag_meanings``) on (experiment, period[, depth]) - the spread's ``robustness``
    (IPCC AR6 categories, xclim) and ``likelihood`` - under the column ``<name>``.
    """
    prefix = f"{base}_period_"
    found = {}
    for name in results.data_vars:
        var = results[name]
        if (
            str(name).startswith(prefix)
            and "flag_values" in var.attrs
            and "flag_meanings" in var.attrs
            and set(var.dims) <= {"experiment", "period", "depth"}
        ):
            found[str(name).removeprefix(prefix)] = str(name)
    return found


def _flag_text(var: xr.DataArray, where: Mapping[str, Any]) -> str:
    value = var.sel({k: v for k, v in where.items() if k in var.dims}).values
    if not np.isfinite(value):
        return ""
    values = np.atleast_1d(var.attrs["flag_values"]).tolist()
    meanings = str(var.attrs["flag_meanings"]).split()
    match = [m for v, m in zip(values, meanings, strict=False) if v == value]
    return match[0].replace("_", " ") if match else f"{float(value):g}"


def change_tables(results: xr.Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The store's period changes against its first period, per scenario and depth.

    Returns
    -------
    summary
        One row per quantity (:data:`CHANGE_BASES`), scenario, depth and later period:
        multi-model period means of the baseline and the period, the multi-model mean
        change, the range of the models' changes, the fraction of models agreeing on its
        sign and their number (``{base}_period_*``); where the store has them, the
        family-weighted fraction of models with a significant change and the number of
        model families, and a column per category statistic (:func:`category_variables`:
        ``robustness``, ``likelihood``), its flag meaning as text. Rows without a change
        are left out.
    per_model
        One row per quantity, scenario, model, depth and later period: the model's change
        (``{base}_period_model_change``, members averaged).
    """
    if "period" not in results.coords:
        return pd.DataFrame(), pd.DataFrame()
    periods = [str(p) for p in results["period"].values]
    baseline = periods[0]
    keep = scenarios(results)
    rows, per_model = [], []
    for base in CHANGE_BASES:
        names = {
            s: f"{base}_period_{s}"
            for s in (
                "multimodel_mean",
                "multimodel_change",
                "model_change",
                "model_agreement",
                "model_count",
            )
        }
        if not all(n in results for n in names.values()):
            continue
        data = {s: results[n].load() for s, n in names.items()}
        optional = {
            s: results[f"{base}_period_{s}"].load()
            for s in OPTIONAL_CHANGE_STATS
            if f"{base}_period_{s}" in results
        }
        flags = {c: results[n].load() for c, n in category_variables(results, base).items()}
        units = str(data["multimodel_change"].attrs.get("units", ""))
        for experiment in keep:
            for depth in _depths(results):
                for period in periods[1:]:
                    where = {"experiment": experiment, "period": period, "depth": depth}
                    change = float(data["multimodel_change"].sel(where))
                    models = data["model_change"].sel(where).dropna("source_id")
                    if not np.isfinite(change) and not models.size:
                        continue
                    row = {
                        "quantity": base,
                        "units": units,
                        "experiment": experiment,
                        "depth": depth,
                        "baseline": baseline,
                        "period": period,
                        "baseline_mean": float(
                            data["multimodel_mean"].sel(where | {"period": baseline})
                        ),
                        "period_mean": float(data["multimodel_mean"].sel(where)),
                        "change": change,
                        "model_min": float(models.min()) if models.size else np.nan,
                        "model_max": float(models.max()) if models.size else np.nan,
                        "agreement": float(data["model_agreement"].sel(where)),
                        "n_models": int(data["model_count"].sel(where)),
                    }
                    for name, var in optional.items():
                        row[name] = float(var.sel(where))
                    for name, var in flags.items():
                        row[name] = _flag_text(var, where)
                    rows.append(row)
                    per_model += [
                        {
                            "quantity": base,
                            "units": units,
                            "experiment": experiment,
                            "source_id": str(s),
                            "depth": depth,
                            "period": period,
                            "change": float(models.sel(source_id=s)),
                        }
                        for s in models["source_id"].values
                    ]
    return pd.DataFrame(rows), pd.DataFrame(per_model)


# ---------------------------------------------------------------- partition and trends


def partition_table(results: xr.Dataset) -> pd.DataFrame:
    """The store's variance partition per quantity, depth and winter.

    One row per base with ``{base}_partition_total`` (winter event days, the winter
    temperature anomaly), depth and winter with a total: the variance of each part
    (:data:`PARTITION_PARTS`, the quantity's units squared; ``emulator`` NaN where the
    store has no deep-ensemble member values) and each part's fraction of the total.
    """
    frames = []
    for base in (b for b in CHANGE_BASES if f"{b}_partition_total" in results):
        names = {p: f"{base}_partition_{p}" for p in PARTITION_PARTS}
        data = xr.Dataset({p: results[n] for p, n in names.items() if n in results})
        frame = (
            data.reset_coords(drop=True)
            .to_dataframe(dim_order=["depth", "winter"])
            .reset_index()
            .dropna(subset=["total"])
        )
        for part in PARTITION_PARTS[:-1]:
            if part in frame:
                frame[f"{part}_fraction"] = frame[part] / frame["total"]
        frame.insert(0, "units", str(results[names["total"]].attrs.get("units", "")))
        frame.insert(0, "quantity", base)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def trend_table(results: xr.Dataset) -> pd.DataFrame:
    """Trend of the multi-model mean and time of emergence per quantity, scenario, depth.

    From ``{base}_multimodel_trend_*`` (Sen slope per winter with its 95 % interval,
    autocorrelation-corrected Mann-Kendall p-value, winters) and ``{base}_emergence_winter``
    (first winter the forced change stays beyond the store's threshold of internal
    variability; NaN: not emerged), where the store has them; scenarios only.
    """
    fields = ("slope", "slope_low", "slope_high", "pvalue", "winters")
    rows = []
    for base in CHANGE_BASES:
        names = {f: f"{base}_multimodel_trend_{f}" for f in fields}
        if not all(n in results for n in names.values()):
            continue
        data = {f: results[n].load() for f, n in names.items()}
        emergence = results.get(f"{base}_emergence_winter")
        units = str(data["slope"].attrs.get("units", ""))
        for experiment in scenarios(results):
            for depth in _depths(results):
                where = {"experiment": experiment, "depth": depth}
                row = {"quantity": base, "slope_units": units, "experiment": experiment}
                row["depth"] = depth
                row.update({f: float(data[f].sel(where)) for f in fields})
                if emergence is not None:
                    row["emergence_winter"] = float(emergence.sel(where))
                rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame[frame["winters"].fillna(0) > 0].reset_index(drop=True)


# ---------------------------------------------------------------- hindcast


def hindcast(results: xr.Dataset, source: str, depth: float) -> pd.DataFrame:
    """The reanalysis ``source``'s daily hindcast at ``depth`` (°C), members averaged.

    Columns ``mean`` (``temperature_mean``) and ``q05`` / ``q95`` (``temperature_quantile``
    at 0.05 and 0.95: the deep ensemble's 90 % predictive interval), on the days with a
    value (done members only).
    """
    done = done_array(results).sel(experiment=REANALYSIS, source_id=source)
    one = results.sel(experiment=REANALYSIS, source_id=source, depth=depth)
    members = [m for m, ok in zip(done["member_id"].values, done.values, strict=True) if ok]
    one = one.sel(member_id=members)
    with _quiet():
        quantile = one["temperature_quantile"]
        frame = pd.DataFrame(
            {
                "mean": one["temperature_mean"].mean("member_id").values,
                "q05": quantile.sel(quantile=0.05, method="nearest").mean("member_id").values,
                "q95": quantile.sel(quantile=0.95, method="nearest").mean("member_id").values,
            },
            index=pd.DatetimeIndex(results["time"].values, name="time"),
        )
    return frame.dropna(subset=["mean"])


def hindcast_winter_event_days(
    results: xr.Dataset, source: str, depth: float, min_winter_coverage: float = 0.9
) -> pd.DataFrame:
    """The reanalysis ``source``'s event days per winter at ``depth`` (store ``event_days``,
    members averaged) and the range across its deep-ensemble members
    (``member_event_days``), on the winters its run covers for ``min_winter_coverage`` of
    the season."""
    done = done_array(results).sel(experiment=REANALYSIS, source_id=source)
    members = [m for m, ok in zip(done["member_id"].values, done.values, strict=True) if ok]
    one = results.sel(experiment=REANALYSIS, source_id=source, member_id=members, depth=depth)
    full = xr.DataArray(
        [season_days(int(w)) for w in results["winter"].values],
        dims="winter",
        coords={"winter": results["winter"].values},
    )
    covered = (one["winter_days"] >= min_winter_coverage * full).all("member_id")
    with _quiet():
        data = {"event_days": one["event_days"].mean("member_id")}
        if "member_event_days" in one:
            data["member_min"] = one["member_event_days"].min(("member_id", "ensemble"))
            data["member_max"] = one["member_event_days"].max(("member_id", "ensemble"))
        frame = xr.Dataset(data).where(covered).reset_coords(drop=True).to_dataframe()
    return frame.dropna(subset=["event_days"])


def hindcast_table(
    results: xr.Dataset,
    source: str,
    observed: pd.DataFrame,
    observed_events: Mapping[float, pd.Series],
    since: int = HINDCAST_SINCE,
) -> pd.DataFrame:
    """The reference hindcast against the mooring, per depth, on the days both have since
    1 January ``since``.

    Columns: days compared, bias (hindcast - observed, °C), RMSE (°C), Pearson r, the
    share of observed days inside the 90 % predictive interval (q05-q95), and over the
    winters both cover, the mean event days per winter of each and their correlation.
    These days include the model's training winters: an in-sample fit, not a skill score
    (the model's ``metrics.json`` scores held-out winters).
    """
    rows = []
    for depth in _depths(results):
        column = f"observed_{depth:g}"
        if column not in observed:
            continue
        run = hindcast(results, source, depth)
        both = run.join(observed[column].rename("observed"), how="inner").dropna()
        both = both[both.index >= pd.Timestamp(since, 1, 1)]
        diff = both["mean"] - both["observed"]
        inside = (both["observed"] >= both["q05"]) & (both["observed"] <= both["q95"])
        events = hindcast_winter_event_days(results, source, depth)["event_days"]
        seen = observed_events.get(depth, pd.Series(dtype=float))
        pair = pd.concat([events.rename("run"), seen.rename("obs")], axis=1).dropna()
        pair = pair[pair.index >= since]
        r_events = (
            float(np.corrcoef(pair["run"], pair["obs"])[0, 1])
            if len(pair) >= 3 and pair["run"].std() > 0 and pair["obs"].std() > 0
            else np.nan
        )
        rows.append(
            {
                "source_id": source,
                "depth": depth,
                "first_day": str(both.index[0].date()) if len(both) else "",
                "last_day": str(both.index[-1].date()) if len(both) else "",
                "n_days": len(both),
                "bias_degC": float(diff.mean()) if len(both) else np.nan,
                "rmse_degC": float(np.sqrt((diff**2).mean())) if len(both) else np.nan,
                "r": float(np.corrcoef(both["mean"], both["observed"])[0, 1])
                if len(both) >= 3
                else np.nan,
                "coverage_90": float(inside.mean()) if len(both) else np.nan,
                "n_winters": len(pair),
                "event_days_run": float(pair["run"].mean()) if len(pair) else np.nan,
                "event_days_observed": float(pair["obs"].mean()) if len(pair) else np.nan,
                "event_days_r": r_events,
            }
        )
    return pd.DataFrame(rows)


def count_level_mismatch(
    frame: pd.DataFrame, band: tuple[float, float] = COUNT_LEVEL_BAND
) -> pd.DataFrame:
    """Rows of :func:`hindcast_table` whose hindcast event count per winter stands outside
    ``band`` times the mooring's (``ratio`` added; depths with no observed event left out).

    Why: every count of a store — hindcasts and projections alike — is made at the model's
    calibrated event level; a level that over-counts the record's own events over-counts
    the projections' too, and a change in event days with it (docs/validation.md, "Today's
    default on fresh seeds 121, 122, 123"). The check needs no truth, only the mooring.
    """
    if frame.empty:
        return frame.assign(ratio=pd.Series(dtype=float))
    observed = frame["event_days_observed"]
    ratio = frame["event_days_run"] / observed.where(observed > 0)
    off = ratio.notna() & ((ratio < band[0]) | (ratio > band[1]))
    return frame.assign(ratio=ratio)[off]


# ---------------------------------------------------------------- background and OOD


def background_summary(results: xr.Dataset) -> dict[str, Any] | None:
    """Where the stored deep temperature is anomaly-only (background not from the record).

    Returns, per depth, the mooring record's span (days whose background is from it, over
    the done combinations), the background held after it, and the share of stored days
    that are anomaly-only, from an ocean analysis before the record and from a projection's
    own (or a sibling member's) ocean after it; with the spread's ``anomaly_only_periods``.
    ``None`` for a store without ``background_kind`` (older stores).
    """
    if "background_kind" not in results:
        return None
    done = done_mask(results)
    time = pd.DatetimeIndex(results["time"].values)
    depths = [float(d) for d in results["depth"].values]
    inside = np.zeros((time.size, len(depths)), dtype=bool)
    held, analysed, modelled, total = (np.zeros(len(depths)) for _ in range(4))
    after: list[set[float]] = [set() for _ in depths]
    for e, s_, m in zip(*np.nonzero(done), strict=True):
        where = {"experiment": e, "source_id": s_, "member_id": m}
        one = results[["background_kind", "background_temperature"]].isel(where).load()
        kind = one["background_kind"].transpose("time", "depth").values
        background = one["background_temperature"].transpose("time", "depth").values
        inside |= kind == 0
        anomaly_only = np.isin(kind, ANOMALY_ONLY_KINDS)
        held += anomaly_only.sum(axis=0)
        analysed += (kind == ANALYSIS_KIND).sum(axis=0)
        modelled += np.isin(kind, (MODEL_OCEAN_KIND, SIBLING_OCEAN_KIND)).sum(axis=0)
        total += np.isfinite(kind).sum(axis=0)
        for j in range(len(depths)):
            last = np.flatnonzero(kind[:, j] == 0)
            later = anomaly_only[:, j].copy()
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
            "analysis_share": round(float(analysed[j] / total[j]), 3) if total[j] else None,
            "model_ocean_share": round(float(modelled[j] / total[j]), 3) if total[j] else None,
        }
    return out


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


def background_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`background_summary` as one row per depth."""
    rows = []
    for depth, row in summary["depths"].items():
        rows.append(
            {
                "depth": float(depth),
                "record_first_day": row["record"][0] if row["record"] else "",
                "record_last_day": row["record"][1] if row["record"] else "",
                "held_after_record_degC": " ".join(f"{v:.3f}" for v in row["held_after_record"]),
                "anomaly_only_share": row["anomaly_only_share"],
                "analysis_share": row.get("analysis_share"),
                "model_ocean_share": row.get("model_ocean_share"),
            }
        )
    return pd.DataFrame(rows)


def ood_table(
    results: xr.Dataset, periods: tuple[tuple[int, int], ...] = (BASE_PERIOD, FUTURE_PERIOD)
) -> pd.DataFrame:
    """:func:`ood_by_period` as one row per experiment, one column per period."""
    table = ood_by_period(results, periods)
    return pd.DataFrame(
        [
            {"experiment": e, **{p: np.nan if v is None else v for p, v in row.items()}}
            for e, row in table.items()
        ]
    )


# ---------------------------------------------------------------- the twin's truth


def truth_change_table(comparison: Mapping[str, Any]) -> pd.DataFrame:
    """The truth comparison (``truth_comparison.json``) as one row per scenario and side."""
    rows = []
    for scenario, sides in comparison["scenarios"].items():
        sampling = sides.get("sampling") or {}
        for side in ("run", *TRUTH_KINDS):
            if side not in sides:
                continue
            one = sides[side]
            low, high = sampling.get(f"{side}_change_95", (None, None))
            rows.append(
                {
                    "experiment": scenario,
                    "side": side,
                    "change": one["change"],
                    "change_low": low,
                    "change_high": high,
                    "model_min": one["model_min"],
                    "model_max": one["model_max"],
                    "agreement": one["agreement"],
                    "n_models": one["n_models"],
                    "base_mean": one["base_mean"],
                    "future_mean": one["future_mean"],
                }
            )
    numbers = ("change", "change_low", "change_high", "base_mean", "future_mean")
    return pd.DataFrame(rows).astype(dict.fromkeys(numbers, float))


def truth_hindcast_table(scores: Mapping[str, Any]) -> pd.DataFrame:
    """The pre-record hindcast scores (``truth_comparison.json`` → ``hindcast``), one row per
    reanalysis and depth."""
    rows = []
    for source, row in scores["sources"].items():
        for depth, one in row["depths"].items():
            rows.append(
                {"source_id": source, "members": row["members"], "depth": float(depth), **one}
            )
    return pd.DataFrame(rows)
