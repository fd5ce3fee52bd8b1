"""Checks that canonical daily predictors can be real before a model reads them.

Why: a deleted chunk, a NaN or inf storm, or a units attribute that lies (``degC`` on
Kelvin values) all reach the model as numbers it cannot tell from weather: a long gap
becomes the training mean, a 561 K temperature a record heat wave. Every such input is
refused here, per combination, naming the variable, region and dates, so the run marks
that combination failed and the others go on. The bounds are those of daily regional
means on Earth (what no archive's correct values leave), not of the Gulf of Lion's
climate, so a user's own region and a 2100 projection pass; the *typical* ranges bound the
median of a whole series, which is where a mislabelled unit shows (°C labelled K gives a
median near 15 "K", Pa labelled hPa a median near 1e8 Pa).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from cascadia.sources.catalog import SourceError

__all__ = [
    "PLAUSIBLE",
    "RAW_CHECK",
    "Plausible",
    "PredictorDataError",
    "check_predictors",
    "magnitude_problems",
]


class PredictorDataError(SourceError):
    """Predictors that cannot be real: gaps, non-finite values, impossible magnitudes."""


@dataclass(frozen=True)
class Plausible:
    """What a canonical variable's daily regional means can be, in its canonical unit.

    ``low``/``high`` bound every value (outside: physically impossible); ``typical``
    bounds the median of a series; ``mislabelled`` maps median ranges that betray a
    units error to the error they betray.
    """

    unit: str
    low: float
    high: float
    typical: tuple[float, float]
    mislabelled: tuple[tuple[float, float, str], ...] = ()


#: Bounds per canonical variable (units of ``canonical.CANONICAL_UNITS``). Sources: the
#: WMO world records (−89.2 °C Vostok, 56.7 °C Death Valley; 870 and 1084 hPa sea-level
#: pressure; 1825 mm in one day, La Réunion), sea water freezing near −1.9 °C, the daily
#: mean top-of-atmosphere insolation (≤ ~560 W m-2), with a margin for model biases.
PLAUSIBLE: dict[str, Plausible] = {
    "tas": Plausible(
        "K",
        180.0,
        340.0,
        (200.0, 320.0),
        ((-60.0, 60.0, "values look like °C labelled K"), (400.0, 640.0, "°C converted twice")),
    ),
    "tos": Plausible(
        "degC",
        -3.0,
        40.0,
        (-2.5, 35.0),
        ((250.0, 320.0, "values look like K labelled °C"),),
    ),
    "hurs": Plausible(
        "%", 0.0, 110.0, (5.0, 100.0), ((0.0, 1.1, "values look like a fraction labelled %"),)
    ),
    "huss": Plausible(
        "1", 0.0, 0.05, (1e-4, 0.03), ((0.1, 40.0, "values look like g/kg labelled kg/kg"),)
    ),
    "pr": Plausible(
        "kg m-2 s-1",
        -1e-6,
        0.03,
        (0.0, 2e-4),
        ((0.01, 50.0, "values look like mm/day or m/day labelled kg m-2 s-1"),),
    ),
    "uas": Plausible("m s-1", -75.0, 75.0, (-30.0, 30.0)),
    "vas": Plausible("m s-1", -75.0, 75.0, (-30.0, 30.0)),
    "sfcWind": Plausible("m s-1", 0.0, 75.0, (0.2, 30.0)),
    "psl": Plausible(
        "Pa",
        85_000.0,
        110_000.0,
        (95_000.0, 105_000.0),
        ((850.0, 1100.0, "values look like hPa labelled Pa"),),
    ),
    "rsds": Plausible("W m-2", 0.0, 600.0, (0.0, 400.0)),
    "rlds": Plausible("W m-2", 30.0, 600.0, (100.0, 500.0)),
    "clt": Plausible(
        "%", 0.0, 101.0, (0.5, 100.0), ((0.0, 1.01, "values look like a fraction labelled %"),)
    ),
}

#: The attribute of an adjusted variable that carries what its raw series showed.
RAW_CHECK = "raw_check"

#: Problems listed in one error before "and N more".
MAX_LISTED = 6


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    padded = np.concatenate([[False], flags, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _day(time: pd.DatetimeIndex | np.ndarray, i: int) -> str:
    return str(pd.Timestamp(np.asarray(time)[i]).date())


def _problems(name: str, values: np.ndarray, time: np.ndarray) -> list[str]:
    """What is wrong with one daily series (empty: nothing)."""
    return _gaps(name, values, time) + _magnitudes(name, values, time)


def _gaps(name: str, values: np.ndarray, time: np.ndarray) -> list[str]:
    """Missing days and infinite values of one daily series."""
    found = []
    missing = np.isnan(values)
    if missing.any():
        runs = _runs(missing)
        longest = max(runs, key=lambda r: r[1] - r[0])
        found.append(
            f"{name}: {int(missing.sum())} missing days in {len(runs)} gap(s), the longest "
            f"{longest[1] - longest[0] + 1} days {_day(time, longest[0])}..{_day(time, longest[1])}"
            " (gaps longer than the catalog's max_gap_days are never filled)"
        )
    infinite = np.isinf(values)
    if infinite.any():
        first = int(np.flatnonzero(infinite)[0])
        found.append(
            f"{name}: {int(infinite.sum())} infinite values, the first on {_day(time, first)}"
        )
    return found


def _magnitudes(name: str, values: np.ndarray, time: np.ndarray) -> list[str]:
    """Values no archive's correct daily means reach, and a median that betrays a unit."""
    found: list[str] = []
    finite = values[np.isfinite(values)]
    spec = PLAUSIBLE.get(name.split("@")[0])
    if spec is None or finite.size == 0:
        return found
    median = float(np.median(finite))
    hint = next((h for lo, hi, h in spec.mislabelled if lo <= median <= hi), None)
    outside = np.isfinite(values) & ((values < spec.low) | (values > spec.high))
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        found.append(
            f"{name}: {int(outside.sum())} values outside the physically possible "
            f"{spec.low:g}..{spec.high:g} {spec.unit} (min {finite.min():.4g}, max "
            f"{finite.max():.4g}, the first on {_day(time, first)})" + (f": {hint}" if hint else "")
        )
    elif not spec.typical[0] <= median <= spec.typical[1]:
        found.append(
            f"{name}: median {median:.4g} {spec.unit} is not a plausible daily mean "
            f"(expected {spec.typical[0]:g}..{spec.typical[1]:g} {spec.unit})"
            + (f": {hint}" if hint else "; check the variable's units attribute")
        )
    return found


def check_predictors(
    daily: xr.Dataset,
    what: str,
    pairs: Iterable[tuple[str, str]] | None = None,
    flagged: Sequence[xr.Dataset | None] = (),
) -> None:
    """Refuse predictors that cannot be real.

    Parameters
    ----------
    daily : xarray.Dataset
        Canonical daily predictors ``(time, region)``, canonical units.
    what : str
        What they are, for the message (``"model inputs"``).
    pairs : optional
        The (variable, region) series to check (default: all; absent ones are skipped).
    flagged : optional
        Datasets ``daily`` was joined from, whose variables' :data:`RAW_CHECK` also count
        (a scenario's own flags, lost where its context came first).

    Raises
    ------
    PredictorDataError
        Missing days (gaps left after the short-gap fill), non-finite values, values
        outside :data:`PLAUSIBLE`'s bounds or a median that betrays a units error, each
        named with its variable@region, count and dates; and what
        :func:`magnitude_problems` found in a read variable before bias adjustment.
    """
    regions = [str(r) for r in daily["region"].values]
    pairs = (
        list(pairs)
        if pairs is not None
        else [(str(v), r) for v in daily.data_vars for r in regions]
    )
    time = daily["time"].values
    problems: list[str] = []
    for name, region in dict.fromkeys(pairs):
        if name not in daily.data_vars or region not in regions:
            continue
        values = np.asarray(daily[name].sel(region=region).values, dtype=np.float64)
        problems.extend(_problems(f"{name}@{region}", values, time))
    read = dict.fromkeys(name for name, _ in pairs)
    for data in (daily, *(f for f in flagged if f is not None)):
        problems.extend(
            f"{name}: {data[name].attrs[RAW_CHECK]}"
            for name in read
            if name in data.data_vars and data[name].attrs.get(RAW_CHECK)
        )
    if problems:
        problems = list(dict.fromkeys(problems))
        more = len(problems) - MAX_LISTED
        listed = "; ".join(problems[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")
        raise PredictorDataError(f"{what}: {listed}")


def magnitude_problems(daily: xr.Dataset, label: str) -> dict[str, list[str]]:
    """Per variable: values no correct archive holds, or a median that betrays a units
    error, each message starting with ``label`` (empty dict: nothing).

    Why: a projection is bias-adjusted before the model reads it, and quantile delta
    mapping maps *any* series onto the reference's distribution — hPa labelled Pa comes
    out as plausible pascals while the model's change (+3 hPa) becomes +3 Pa. So the raw
    series are checked before adjustment and what is found travels with the adjusted
    variable (:data:`RAW_CHECK`) to :func:`check_predictors`, which refuses it only if
    the model reads that variable.
    """
    regions = [str(r) for r in daily["region"].values]
    time = daily["time"].values
    found: dict[str, list[str]] = {}
    for name in map(str, daily.data_vars):
        for region in regions:
            values = np.asarray(daily[name].sel(region=region).values, dtype=np.float64)
            for problem in _magnitudes(f"{name}@{region}", values, time):
                found.setdefault(name, []).append(f"{label} {problem}")
    return found
