"""The run report: what a results store says, as one HTML page with figures and CSV tables.

May import: run, learning, sources and mooring (a top-level shell like ``cli`` and
``demo``, split by concern); never twin, cli or demo.

``store`` reads the results store, ``model_files`` the trained model's event
rule and mooring series, ``events`` counts event days per winter like the store,
``tables`` turns both into the report's tables (also its CSV files), ``figures`` draws
them, ``literature`` holds the extreme winters and palette it cites, ``truth`` compares the
run with a twin world's truth, ``html`` renders the page and ``writer`` writes it all
(:func:`write_run_report`, ``cascadia-ensemble report``).
"""

from cascadia.report.events import season_event_days
from cascadia.report.store import ReportError
from cascadia.report.tables import background_summary, ood_by_period
from cascadia.report.truth import (
    hindcast_scores,
    load_truth_index,
    run_winter_event_days,
    truth_comparison,
    truth_cubes,
    truth_winter_event_days,
)
from cascadia.report.writer import REPORT_HTML, ReportResult, write_run_report

__all__ = [
    "REPORT_HTML",
    "ReportError",
    "ReportResult",
    "background_summary",
    "hindcast_scores",
    "load_truth_index",
    "ood_by_period",
    "run_winter_event_days",
    "season_event_days",
    "truth_comparison",
    "truth_cubes",
    "truth_winter_event_days",
    "write_run_report",
]
