"""The deep background beyond the mooring record from a projection's own ocean.

Why: a model trained on the record predicts the temperature's departure from the
record's background; beyond the record's last day that background is not known. Held at
its last value it misses the intermediate water's projected warming (+0.8 to +2 °C by
2100 in a strong scenario), so the run used to flag those days anomaly-only
(``background_kind`` 1). A climate model carries its own ocean (CMIP6 ``thetao``, found
per combination by the run catalog's ``deep_ocean`` section): its **changes** near the
mooring continue the background, anchored on the record's **level** over the record's
last ``anchor_years`` (the delta method, as for the ocean analysis before the record,
:mod:`cascadia.learning.before_record`). A model's ocean has its own static bias (removed
by the anchoring), drift and decadal variability out of phase with the real ocean's
(not removed: the anchoring's error, of the order of its decadal swings).
"""

from __future__ import annotations

import json
import logging
import posixpath
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from cascadia.learning.before_record import DAYS_PER_YEAR, anchor_offset, record_beside
from cascadia.sources.cache import AssetIdentities, PredictorCache
from cascadia.sources.config import DeepOcean
from cascadia.sources.ocean_analysis import (
    OceanAnalysisConfig,
    OceanAnalysisError,
    deep_temperature,
)

__all__ = ["DeepOceanInput", "after_record_background"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeepOceanInput:
    """A combination's own ocean: its assets (a scenario's historical run first)."""

    label: str  # the combination, for messages
    assets: tuple[str, ...]
    settings: DeepOcean
    storage_options: dict[str, Any] = field(default_factory=dict)
    sibling: str = ""  # the member whose ocean it is, where not the combination's own run's

    def read(self, depths: Sequence[float], cache: PredictorCache | None = None) -> pd.DataFrame:
        """Temperature (°C) near the mooring at ``depths``, one row per month, the runs
        joined in time order (a month in two runs: the later run's). With a ``cache``,
        each run's series is kept there once read (see :func:`_cached_series`)."""
        frames = [_cached_series(self, asset, depths, cache) for asset in self.assets]
        joined = pd.concat(frames)
        return joined[~joined.index.duplicated(keep="last")].sort_index()


def _cached_series(
    inp: DeepOceanInput, asset: str, depths: Sequence[float], cache: PredictorCache | None
) -> pd.DataFrame:
    """One run's monthly series near the mooring, from the predictor cache when there.

    Why: a model's ``thetao`` store is chunked over the globe, so reading the few cells
    near the mooring costs the whole store; a historical run is continued by every
    scenario, and a rerun reprocesses them all. Kept as ``deep_ocean/<key>.csv`` beside
    the cached predictors, keyed by the asset's content (the listing of its objects'
    sizes and stamps, as the predictors are: a store rewritten in place is read anew) and
    what shapes the series (variable, radius, depths); written whole under a temporary
    name, then renamed, so a reader never sees half a file.
    """
    settings = inp.settings
    what = [asset, settings.variable, settings.radius_km, [float(d) for d in depths]]
    url = ""
    if cache is not None:
        try:
            what.append(AssetIdentities()(asset, inp.storage_options)["content"])
        except OSError as exc:  # unreachable, or nothing there
            raise OceanAnalysisError(f"{inp.label}: {asset} cannot be read ({exc})") from None
        key = sha256(json.dumps(what).encode()).hexdigest()[:20]
        url = f"{cache.url.rstrip('/')}/deep_ocean/{key}.csv"
        fs, path = fsspec.core.url_to_fs(url, **cache.storage_options)
        if fs.exists(path):
            with fs.open(path, "rb") as f:
                kept = pd.read_csv(f, index_col="time", parse_dates=["time"])
            kept.columns = [float(c) for c in kept.columns]
            return kept
    cfg = OceanAnalysisConfig(
        path=asset,
        variable=settings.variable,
        radius_km=settings.radius_km,
        storage_options=inp.storage_options,
    )
    series = deep_temperature(cfg, depths)
    if cache is not None:
        series.index.name = "time"
        partial = f"{path}.{uuid.uuid4().hex}.partial"
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        fs.pipe_file(partial, series.to_csv().encode())
        fs.mv(partial, path)
        logger.info("%s: %s series kept as %s", inp.label, asset, url)
    return series


def after_record_background(
    inp: DeepOceanInput,
    record: pd.DataFrame,
    depths: Sequence[float],
    cache: PredictorCache | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The anchored background after each depth's record, and what the anchoring did.

    Parameters
    ----------
    inp : DeepOceanInput
        The combination's ocean.
    record : pandas.DataFrame
        The model's ``background.csv``: daily ``background_<d>`` and ``observed_<d>``.
    depths : sequence of float
        The model's depths.
    cache : PredictorCache, optional
        Where each run's series near the mooring is kept once read.

    Returns
    -------
    (pandas.DataFrame, dict)
        Daily ``background_<d>`` after the depth's last observed day (index ``time``);
        per depth, the offset added, the anchoring days and the step on the record's
        last day (anchored model ocean minus the record's background).

    Raises
    ------
    OceanAnalysisError
        An asset that cannot be read (named), or a model ocean covering less than
        ``min_overlap_years`` of the record's last ``anchor_years`` at a depth.
    """
    settings = inp.settings
    ocean = inp.read(depths, cache)
    columns: dict[str, pd.Series] = {}
    summary: dict[str, Any] = {"assets": list(inp.assets), "depths": {}}
    for depth in depths:
        name = f"{depth:g}"
        background, smooth, pair = record_beside(record, depth, ocean[depth], settings.smooth_days)
        last = background.index[-1]
        day = pd.Timedelta(days=1)
        span = (last + day - pd.Timedelta(days=settings.anchor_years * DAYS_PER_YEAR), last + day)
        anchor, offset = anchor_offset(
            pair,
            span,
            settings.min_overlap_years,
            f"{inp.label}: its {settings.variable} covers {{years}} of the last "
            f"{settings.anchor_years:g} years of the {name} m record (to {last.date()}); "
            f"anchoring needs {settings.min_overlap_years:g} (deep_ocean.min_overlap_years)",
        )
        anchored = smooth + offset
        columns[f"background_{name}"] = anchored[anchored.index > last]
        step = anchored.get(last, np.nan) - background.iloc[-1]
        summary["depths"][name] = {
            "offset": round(offset, 4),
            "anchor_days": [str(anchor.index[0].date()), str(anchor.index[-1].date())],
            "step_at_record_end": round(float(step), 4) if np.isfinite(step) else None,
        }
    frame = pd.DataFrame(columns)
    frame.index.name = "time"
    logger.info("%s: deep background after the record from %s", inp.label, summary)
    return frame, summary
