"""What the report reads from the model directory: event rule, mooring record, reference.

Why: the store holds the run; the observations it is judged against and the rule that
turns a deep-temperature anomaly into event days live with the trained model
(``job.yaml``, ``background.csv``, written by ``cascadia-ensemble train``), so the report
reads them from there - never recomputes them - and says so when they are missing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from cascadia.mooring.events import EventConfig
from cascadia.report.store import ReportError

__all__ = [
    "model_events",
    "observed_series",
    "record_start",
    "training_source",
]


def _job(model_dir: Path) -> dict:
    path = model_dir / "job.yaml"
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ReportError(f"{path}: cannot read the model's training job: {exc}") from None


def model_events(model_dir: Path) -> EventConfig:
    """The model's event rule (``job.yaml`` → ``events``): thresholds, duration, gaps."""
    try:
        return EventConfig.model_validate(_job(model_dir).get("events", {}))
    except ValueError as exc:
        raise ReportError(f"{model_dir / 'job.yaml'}: bad event rule: {exc}") from None


def training_source(model_dir: Path) -> str | None:
    """The catalog source the model was trained on (``job.yaml`` → ``predictors.source``)."""
    source = (_job(model_dir).get("predictors") or {}).get("source")
    return None if source is None else str(source)


def observed_series(model_dir: Path) -> pd.DataFrame | None:
    """The daily QC'd mooring series and its background (``background.csv``), °C by depth.

    Columns ``observed_<depth>`` and ``background_<depth>`` (depth in m, ``%g``), indexed by
    day; ``None`` when the model directory has no such file.
    """
    path = model_dir / "background.csv"
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, parse_dates=["time"]).set_index("time")
    except (OSError, ValueError, KeyError) as exc:
        raise ReportError(f"{path}: cannot read the mooring series: {exc}") from None


def record_start(model_dir: Path) -> int:
    """First year of the mooring record the model was trained on (its ``background.csv``)."""
    observed = observed_series(model_dir)
    columns = [c for c in (observed.columns if observed is not None else []) if "observed" in c]
    if observed is None or not columns or observed[columns].dropna(how="all").empty:
        raise ReportError(f"{model_dir / 'background.csv'}: no observed series to date the record")
    return int(observed[columns].dropna(how="all").index[0].year)
