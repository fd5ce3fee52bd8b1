"""Reading the results store for the report: its done combinations and their roles.

Why one module: every table and figure asks the same questions of a store - which
combinations are done, which experiments are reanalyses, historical runs or scenarios, what
a combination's values are - and must answer them the same way, so that the numbers of
the report and of its CSV files are those a user reads from the store's cube view
(:func:`cascadia.run.store.open_cube`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from cascadia.run.spread import HISTORICAL, done_mask
from cascadia.run.store import StoreError, open_cube

__all__ = [
    "BASE_PERIOD",
    "FUTURE_PERIOD",
    "HISTORICAL",
    "REANALYSIS",
    "ReportError",
    "combos",
    "daily",
    "done_array",
    "open_store",
    "reference_source",
    "scenario_combos",
    "scenarios",
]

REANALYSIS = "reanalysis"
BASE_PERIOD = (1993, 2022)
FUTURE_PERIOD = (2080, 2100)
Combo = tuple[str, str, str]


class ReportError(ValueError):
    """The results store, truth index or model directory cannot make the report."""


def open_store(url: str) -> xr.Dataset:
    """The results store's cube view, opened lazily; one clear error when it is not one
    (a store of the old layout: the command that migrates it)."""
    try:
        ds = open_cube(url)
    except StoreError as exc:
        raise ReportError(str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        raise ReportError(f"{url}: cannot open the results store: {exc}") from None
    lacking = [n for n in ("status", "temperature_mean", "event_days") if n not in ds]
    if lacking:
        ds.close()
        raise ReportError(
            f"{url}: not a cascadia results store (lacks {', '.join(lacking)}; "
            "written by `cascadia-ensemble run`)"
        )
    return ds


def done_array(results: xr.Dataset) -> xr.DataArray:
    """True for the done combinations, on the store's (experiment, source_id, member_id)."""
    return xr.DataArray(
        done_mask(results),
        dims=("experiment", "source_id", "member_id"),
        coords={d: results[d].values for d in ("experiment", "source_id", "member_id")},
    )


def combos(results: xr.Dataset, keep: Callable[[str], bool] = lambda _: True) -> list[Combo]:
    """The done (experiment, source_id, member_id) whose experiment ``keep`` accepts."""
    done = done_mask(results)
    found = []
    for e, s, m in zip(*np.nonzero(done), strict=True):
        experiment = str(results["experiment"].values[e])
        if keep(experiment):
            found.append(
                (
                    experiment,
                    str(results["source_id"].values[s]),
                    str(results["member_id"].values[m]),
                )
            )
    return found


def scenario_combos(results: xr.Dataset) -> list[Combo]:
    """Done combinations of the projection scenarios (neither reanalysis nor historical)."""
    return combos(results, lambda e: e not in (REANALYSIS, HISTORICAL))


def scenarios(results: xr.Dataset) -> list[str]:
    """The scenarios with a done combination, in the store's order."""
    have = {c[0] for c in scenario_combos(results)}
    return [str(e) for e in results["experiment"].values if str(e) in have]


def daily(results: xr.Dataset, name: str, combo: Combo, depth: float) -> np.ndarray:
    """One combination's daily series of ``name`` at ``depth`` (float64, NaN where none)."""
    experiment, source, member = combo
    one = results[name].sel(experiment=experiment, source_id=source, member_id=member, depth=depth)
    return np.asarray(one.values, dtype=np.float64)


def reference_source(results: xr.Dataset, preferred: str | None = None) -> str | None:
    """The reanalysis the hindcast is shown for: the model's training source when the
    store has it (catalog names are matched without case, ``era5`` is ``ERA5``), else the
    reanalysis with the most done days since 1993."""
    reanalyses = sorted({c[1] for c in combos(results, lambda e: e == REANALYSIS)})
    if not reanalyses:
        return None
    if preferred is not None:
        for source in reanalyses:
            if source.lower() == preferred.lower():
                return source
    time = results["time"].sel(time=slice(f"{BASE_PERIOD[0]}-01-01", None))
    covered = (
        results["temperature_mean"]
        .sel(experiment=REANALYSIS, source_id=reanalyses, time=time)
        .notnull()
        .any(("depth", "member_id"))
        .sum("time")
        .values
    )
    return reanalyses[int(np.argmax(covered))]
