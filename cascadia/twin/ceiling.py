"""Skill ceiling on the twin world: how well could *any* model do, next to the trained one.

A trained model's test CRPS says little on its own: is 0.03 °C close to what the
atmosphere allows, or far from it? On the twin world the process model is known, so
the question has an answer. The twin's one real history is regenerated (and checked
against the stored truth) and two oracles are scored on exactly the days and targets
the model was scored on (``background.csv`` of the model directory, test winters of
its job):

* **full-ocean oracle** — knows every driver except the deep eddy noise: its mean is
  the twin's noise-free deep temperature. Nothing that sees the ocean only at the
  mooring's daily resolution does better; the rest is eddy noise and mooring error.
* **atmosphere-only oracle** — the twin's own physics driven by the true weather,
  with every hidden ocean driver at its expectation (Rhône without its Alpine
  memory, no stratification, no offshore salinity anomaly, no eddy noise) and the
  deep background *as the model holds it* (its ``background.csv``, held at the
  ends; salinity from the deep water's T–S line), never the generator's
  background trend: the best a model fed perfect atmospheric predictors can hope
  for.
* **background only** — anomaly 0: the reference that knows no cascading at all.

Each oracle is a Gaussian with one constant σ per depth, fitted by CRPS on the
*validation* winters (never on the test winters, which would flatter the ceiling).
:func:`compute_ceiling` returns every number; :func:`write_ceiling` writes
``ceiling.json``, ``ceiling.md`` and ``ceiling.png``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr
import yaml

from cascadia.learning.evaluation import write_json
from cascadia.learning.metrics import crps_gaussian, nse, rmse
from cascadia.mooring.events import winter_labels
from cascadia.twin.atmosphere import RegionalWeather
from cascadia.twin.ocean import (
    DEPTHS,
    HiddenOcean,
    OceanParams,
    background,
    river_discharge,
    run_ocean,
)
from cascadia.twin.physics import params_from_manifest
from cascadia.twin.presets import Preset
from cascadia.twin.realizations import make_history
from cascadia.twin.timeaxis import DayAxis

__all__ = [
    "BASELINES",
    "ORACLES",
    "SIGMA_GRID",
    "TABLE_COLUMNS",
    "CeilingError",
    "compute_ceiling",
    "expected_hidden",
    "fit_sigma",
    "markdown",
    "read_metrics",
    "read_model_series",
    "read_winter_split",
    "regenerate_twin",
    "share_sentence",
    "table_rows",
    "write_ceiling",
]

FloatArray = npt.NDArray[np.float64]

#: Largest |regenerated − stored| true temperature (°C) accepted: float32 storage is ~1e-6.
TRUTH_TOLERANCE = 1e-3
#: Candidate constant σ (°C) of the oracles' Gaussians.
SIGMA_GRID = np.geomspace(0.002, 0.3, 200)
#: Cascading flux above which a day counts as a strong-cascade day.
STRONG_FLUX = 0.01
BASELINES = ("climatology", "persistence", "index_regression", "gradient_boosting")
ORACLES = ("background_only", "atmosphere_only", "full_ocean")
#: Table rows, weakest first, and their labels.
ROWS = {
    "background_only": "background only",
    "climatology": "climatology",
    "persistence": "persistence",
    "index_regression": "index regression",
    "gradient_boosting": "gradient boosting",
    "ensemble": "ensemble",
    "atmosphere_only": "atmosphere-only oracle",
    "full_ocean": "full-ocean oracle",
}
TABLE_COLUMNS = ("forecast", "CRPS (°C)", "skill vs best", "NSE", "RMSE (°C)", "σ (°C)")


class CeilingError(ValueError):
    """The world or the model directory cannot give a skill ceiling."""


# ------------------------------------------------------------------ the twin's oracles


def held_background(twin_time: pd.DatetimeIndex, series: ModelSeries) -> FloatArray:
    """The model's own background on the twin's day axis, (2, N) °C in ``DEPTHS`` order.

    What an atmosphere-only forecaster knows of the deep water: the background the
    model holds (``background.csv``: the running quantile of the mooring, test
    winters excluded), held at its first and last value outside the model's days as
    the model holds it. A twin depth the model lacks is held at the generator's
    mean over the model's days (a level, no trend).
    """
    index = twin_time.get_indexer(series.time)
    inside = index >= 0
    out = np.full((len(DEPTHS), len(twin_time)), np.nan)
    for k, depth in enumerate(DEPTHS):
        name = f"{depth:g}"
        if name in series.depths:
            values = np.full(len(twin_time), np.nan)
            values[index[inside]] = series.background[inside, series.depths.index(name)]
            out[k] = pd.Series(values).ffill().bfill().to_numpy()
    missing = ~np.isfinite(out).all(axis=1)
    if missing.any():
        years = twin_time.year.to_numpy() + (twin_time.dayofyear.to_numpy() - 0.5) / 365.25
        generator, _ = background(years[index[inside]], None)
        out[missing] = generator[missing].mean(axis=1, keepdims=True)
    return out


def water_mass_salinity(temperature: FloatArray) -> FloatArray:
    """Deep salinity (2, N) on the twin's deep T–S line at the given temperature (2, N).

    The oracle's ambient density needs a salinity the model never sees. Reading it
    off the water mass's T–S relation (the twin's background curve as a T–S line,
    not as a function of time) keeps the density compensation of the intermediate
    water without telling the oracle *when* the background changes.
    """
    years = np.linspace(1900.0, 2025.0, 1001)
    line_t, line_s = background(years, None)
    return np.array([np.interp(temperature[k], line_t[k], line_s[k]) for k in range(len(DEPTHS))])


def expected_hidden(
    hidden: HiddenOcean, axis: DayAxis, weather: RegionalWeather, background_temp: FloatArray
) -> tuple[HiddenOcean, FloatArray]:
    """Every hidden ocean driver at its expectation, the deep background the model's.

    What an atmosphere-only forecaster may know: the weather (rain feeds the river)
    and the deep background as the model itself holds it (``background_temp``,
    (2, N) °C, see :func:`held_background`) — never the generator's background
    trend or its scenario, which no atmospheric predictor carries — none of the
    ocean's own variability. Returns the hidden drivers and that background.
    """
    out = copy.copy(hidden)
    out.river = river_discharge(axis, weather)  # the Alpine factor at its mean, 1
    out.stratification = np.zeros_like(hidden.stratification)
    out.offshore_salinity_anomaly = np.zeros_like(hidden.offshore_salinity_anomaly)
    bg_t = np.asarray(background_temp, dtype=np.float64)
    if bg_t.shape != hidden.background_temp.shape:
        raise CeilingError(
            f"the oracle's background has shape {bg_t.shape}, expected "
            f"{hidden.background_temp.shape} (depths × twin days)"
        )
    out.background_temp = bg_t
    out.background_salt = water_mass_salinity(bg_t)
    out.deep_noise = np.zeros_like(hidden.deep_noise)
    return out, bg_t


@dataclass
class Twin:
    """The regenerated history and its oracles on the twin's day axis, arrays (2, N)."""

    time: pd.DatetimeIndex
    truth: FloatArray  # stored true daily temperature
    cascading_flux: FloatArray  # stored true plume flux
    clean: FloatArray  # full-ocean oracle: temperature without the deep eddy noise
    atmosphere_anomaly: FloatArray  # atmosphere-only oracle's anomaly
    max_difference: float  # max |regenerated − stored| temperature
    preset: str
    seed: int


def _read_world(world: Path) -> tuple[Preset, int, OceanParams]:
    """Preset, seed and ocean parameters of a world from its ``world.json``."""
    path = world / "world.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        preset = Preset.model_validate(manifest["preset_spec"])
        return preset, int(manifest["seed"]), params_from_manifest(manifest)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CeilingError(
            f"{path}: cannot read the twin world's preset, seed and ocean parameters: {exc}"
        ) from None


def _read_truth(world: Path) -> tuple[pd.DatetimeIndex, FloatArray, FloatArray]:
    """Stored daily true temperature and cascading flux, (2, N) in ``DEPTHS`` order."""
    path = world / "truth" / "history.zarr"
    try:
        with xr.open_zarr(path) as ds:
            ds = ds[["temperature", "cascading_flux"]].sel(depth=list(DEPTHS)).load()
    except (OSError, KeyError, ValueError) as exc:
        raise CeilingError(f"{path}: cannot read the twin's true history: {exc}") from None
    time = pd.DatetimeIndex(ds["day"].values)
    temp = ds["temperature"].transpose("depth", "day").values.astype(np.float64)
    flux = ds["cascading_flux"].transpose("depth", "day").values.astype(np.float64)
    return time, temp, flux


def regenerate_twin(world: str | Path, series: ModelSeries) -> Twin:
    """Regenerate the history of ``world``, check it against its truth, run the oracles.

    ``series`` is the model's ``background.csv`` (:func:`read_model_series`): the
    atmosphere-only oracle holds the deep background as the model does.

    Raises
    ------
    CeilingError
        If the regenerated temperature differs from the stored truth by more than
        ``TRUTH_TOLERANCE``: the oracles would describe another world.
    """
    world = Path(world)
    preset, seed, params = _read_world(world)
    time, truth, flux = _read_truth(world)
    history = make_history(preset, seed, params)
    axis = history.axis
    bg_model = held_background(pd.DatetimeIndex(axis.time), series)
    hidden, bg_t = expected_hidden(history.hidden, axis, history.weather, bg_model)
    full, atmosphere = run_ocean(
        [axis, axis], [history.weather] * 2, [history.hidden, hidden], [None, None], params
    )
    regenerated = pd.DatetimeIndex(axis.time)
    if len(time) != len(regenerated) or not (time == regenerated).all():
        raise CeilingError(
            f"{world}: the stored truth covers {time[0].date()}–{time[-1].date()} but the "
            f"world's preset regenerates {regenerated[0].date()}–{regenerated[-1].date()}: "
            "it was written by another version of the generator; the skill ceiling cannot "
            "be computed"
        )
    difference = float(np.max(np.abs(full.temperature - truth)))
    if not difference <= TRUTH_TOLERANCE:
        raise CeilingError(
            f"{world}: the regenerated history differs from the stored truth by up to "
            f"{difference:.3g} °C (tolerance {TRUTH_TOLERANCE:g} °C): the world was written by "
            "another version of the generator or with other ocean parameters (or its "
            "world.json was changed), so its skill ceiling cannot be computed"
        )
    return Twin(
        time=regenerated,
        truth=truth,
        cascading_flux=flux,
        clean=full.temperature - history.hidden.deep_noise,
        atmosphere_anomaly=atmosphere.temperature - bg_t,
        max_difference=difference,
        preset=preset.name,
        seed=seed,
    )


# ------------------------------------------------------------------ the model directory


@dataclass
class ModelSeries:
    """What the model was scored on: its daily axis, background and observed temperature."""

    time: pd.DatetimeIndex
    depths: tuple[str, ...]  # "500", "1000"
    background: FloatArray  # (T, D) °C
    observed: FloatArray  # (T, D) °C, NaN where unobserved
    #: ``hindcast.csv`` of the train job, if present: ensemble mean, 5 % and 95 % (3, T, D) °C
    hindcast: FloatArray | None = None


@dataclass
class WinterSplit:
    """Test and validation winters of the model's job and the month a winter starts."""

    test: list[int]
    validation: list[int]
    start_month: int


def read_model_series(model: str | Path) -> ModelSeries:
    """``background.csv``: the training targets' background and observations, per depth."""
    path = Path(model) / "background.csv"
    try:
        table = pd.read_csv(path, parse_dates=["time"])
    except (OSError, ValueError) as exc:
        raise CeilingError(f"{path}: cannot read the model's background table: {exc}") from None
    depths = tuple(c.removeprefix("background_") for c in table if c.startswith("background_"))
    missing = [f"observed_{d}" for d in depths if f"observed_{d}" not in table]
    if not depths or missing:
        raise CeilingError(
            f"{path}: expected background_<depth> and observed_<depth> columns, "
            f"has {list(table.columns)}"
        )
    time = pd.DatetimeIndex(table["time"]).normalize()
    return ModelSeries(
        time=time,
        depths=depths,
        background=table[[f"background_{d}" for d in depths]].to_numpy(np.float64),
        observed=table[[f"observed_{d}" for d in depths]].to_numpy(np.float64),
        hindcast=_read_hindcast(Path(model) / "hindcast.csv", time, depths),
    )


def _read_hindcast(
    path: Path, time: pd.DatetimeIndex, depths: tuple[str, ...]
) -> FloatArray | None:
    """The ensemble's daily mean and 90 % interval on the model's axis (None if absent)."""
    if not path.is_file():
        return None
    table = pd.read_csv(path, parse_dates=["time"])
    columns = [[f"{kind}_{d}" for d in depths] for kind in ("mean", "q05", "q95")]
    missing = [c for group in columns for c in group if c not in table]
    if missing or not pd.DatetimeIndex(table["time"]).normalize().equals(time):
        raise CeilingError(
            f"{path}: expected columns {missing or 'mean/q05/q95_<depth>'} on the days of "
            "background.csv"
        )
    return np.stack([table[group].to_numpy(np.float64) for group in columns])


def _training_section(model: Path) -> tuple[Path, dict[str, Any]]:
    """The training config the model was evaluated with: ``job.yaml``, else ``config.yaml``."""
    job = model / "job.yaml"
    for path, key in ((job, "training"), (model / "config.yaml", None)):
        if not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise CeilingError(f"{path}: cannot read the model's training config: {exc}") from None
        section = data.get(key) if key else data
        if isinstance(section, dict):
            return path, section
    raise CeilingError(f"{model}: neither job.yaml nor config.yaml holds a training config")


def read_winter_split(model: str | Path) -> WinterSplit:
    """Test and validation winters, as the train job scored and calibrated the model."""
    path, cfg = _training_section(Path(model))
    test, validation = cfg.get("test_winters") or [], cfg.get("validation_winters") or []
    if not test or not validation:
        raise CeilingError(f"{path}: the training config lists no test or no validation winters")
    return WinterSplit(
        test=[int(w) for w in test],
        validation=[int(w) for w in validation],
        start_month=int(cfg.get("winter_start_month", 11)),
    )


def read_metrics(model: str | Path) -> dict[str, Any]:
    """``metrics.json``: ``{model: {depth: {metric: value}}}`` on the test winters."""
    path = Path(model) / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CeilingError(f"{path}: cannot read the model's metrics: {exc}") from None
    if not isinstance(data, dict):
        raise CeilingError(f"{path}: expected a JSON object")
    return data


def _day_index(twin: pd.DatetimeIndex, days: pd.DatetimeIndex, world: Path) -> npt.NDArray[Any]:
    """Position of each model day on the twin's day axis; every day must be there."""
    index = twin.get_indexer(days)
    if (index < 0).any():
        outside = days[index < 0]
        raise CeilingError(
            f"{world}: the model's days {outside[0].date()}–{outside[-1].date()} are outside "
            f"the twin's history ({twin[0].date()}–{twin[-1].date()}): was the model trained "
            "on this world?"
        )
    return index


# ------------------------------------------------------------------ scores


def fit_sigma(
    observed: FloatArray, mean: FloatArray, days: npt.NDArray[np.bool_]
) -> tuple[float, float]:
    """Constant σ (°C) minimising the mean CRPS on ``days``, and that CRPS.

    Fitted on the validation winters: the oracles know their mean, not their error,
    and a σ tuned on the test winters would flatter the ceiling.
    """
    ok = days & np.isfinite(observed) & np.isfinite(mean)
    if not ok.any():
        raise CeilingError("no observed validation day to fit the oracles' σ on")
    crps = np.asarray(
        crps_gaussian(observed[ok, None], mean[ok, None], SIGMA_GRID[None, :], axis=0)
    )
    best = int(np.argmin(crps))
    return float(SIGMA_GRID[best]), float(crps[best])


def _score(
    observed: FloatArray, mean: FloatArray, sigma: float, bg: FloatArray
) -> dict[str, float]:
    """CRPS, NSE (temperature and anomaly) and RMSE on the finite days of ``observed``."""
    return {
        "crps": float(crps_gaussian(observed, mean, sigma)),
        "nse": float(nse(observed, mean)),
        "nse_anomaly": float(nse(observed - bg, mean - bg)),
        "rmse": float(rmse(observed, mean)),
        "sigma": sigma,
    }


def _oracle_means(twin: Twin, index: npt.NDArray[Any], k: int, bg: FloatArray) -> dict[str, Any]:
    """Temperature means (°C) of the three references on the model's days at twin depth ``k``."""
    return {
        "background_only": bg,
        "atmosphere_only": bg + twin.atmosphere_anomaly[k, index],
        "full_ocean": twin.clean[k, index],
    }


def _skill(crps: float | None, reference: float | None) -> float | None:
    """CRPS skill 1 − crps / reference (None where either is missing)."""
    if crps is None or reference is None or reference <= 0:
        return None
    return 1.0 - crps / reference


def _share(best: float | None, model: float | None, oracle: float | None) -> float | None:
    """Fraction of the oracle's CRPS gain over the best baseline that the model realised."""
    if best is None or model is None or oracle is None or best - oracle <= 0:
        return None
    return (best - model) / (best - oracle)


def _model_rows(metrics: dict[str, Any], depth: str) -> dict[str, dict[str, Any]]:
    """Ensemble and baseline scores of ``metrics.json`` at ``depth`` (None where absent)."""
    rows = {}
    for name in ("ensemble", *BASELINES):
        entry = metrics.get(name, {}).get(depth, {})
        rows[name] = {k: entry.get(k) for k in ("crps", "nse", "nse_anomaly", "rmse", "n_days")}
    return rows


def _add_skills(rows: dict[str, dict[str, Any]]) -> str | None:
    """Skill of every row vs each baseline and the best one; returns the best baseline."""
    scored = [b for b in BASELINES if rows[b]["crps"] is not None]
    best = min(scored, key=lambda b: rows[b]["crps"]) if scored else None
    for row in rows.values():
        skill = {b: _skill(row["crps"], rows[b]["crps"]) for b in BASELINES}
        skill["best_baseline"] = skill[best] if best else None
        row["skill"] = skill
    return best


def _strong_cascade(
    observed: FloatArray, means: dict[str, FloatArray], flux: FloatArray
) -> dict[str, Any]:
    """Oracle RMSE on test days with a strong true cascade and on the other test days.

    Also the share of each reference's squared error that falls on the strong days:
    where the error sits, not only how large it is.
    """
    strong = np.isfinite(observed) & (flux > STRONG_FLUX)
    other = np.isfinite(observed) & ~strong
    out: dict[str, Any] = {"flux_threshold": STRONG_FLUX, "n_days": int(strong.sum())}
    out["rmse"] = {name: _masked_rmse(observed, m, strong) for name, m in means.items()}
    out["rmse_other_days"] = {name: _masked_rmse(observed, m, other) for name, m in means.items()}
    out["squared_error_share"] = {
        name: _squared_error_share(observed, m, strong) for name, m in means.items()
    }
    return out


def _squared_error_share(
    observed: FloatArray, mean: FloatArray, days: npt.NDArray[np.bool_]
) -> float:
    """Fraction of the total squared error (finite days) that falls on ``days``."""
    error = np.where(np.isfinite(observed), (observed - mean) ** 2, 0.0)
    total = float(error.sum())
    return float(error[days].sum()) / total if total > 0 else float("nan")


def _masked_rmse(observed: FloatArray, mean: FloatArray, days: npt.NDArray[np.bool_]) -> float:
    return float(rmse(observed[days], mean[days])) if days.any() else float("nan")


def _depth_result(
    observed: FloatArray,
    means: dict[str, FloatArray],
    test: npt.NDArray[np.bool_],
    validation: npt.NDArray[np.bool_],
    bg: FloatArray,
    model_rows: dict[str, dict[str, Any]],
    flux: FloatArray,
    ensemble_mean: FloatArray | None = None,
) -> dict[str, Any]:
    """Every number of one depth: oracle fits and scores, skills, realised shares."""
    test_obs = np.where(test, observed, np.nan)
    if not np.isfinite(test_obs).any():
        raise CeilingError("no observed day in the test winters to score the oracles on")
    rows: dict[str, dict[str, Any]] = {}
    for name, mean in means.items():
        sigma, val_crps = fit_sigma(observed, mean, validation)
        rows[name] = {**_score(test_obs, mean, sigma, bg), "validation_crps": val_crps}
        rows[name]["sigma_at_grid_edge"] = sigma in (SIGMA_GRID[0], SIGMA_GRID[-1])
    rows.update(model_rows)
    best = _add_skills(rows)
    best_crps = rows[best]["crps"] if best else None
    ensemble = rows["ensemble"]["crps"]
    return {
        "n_test_days": int(np.isfinite(test_obs).sum()),
        "n_validation_days": int((validation & np.isfinite(observed)).sum()),
        "best_baseline": best,
        "rows": {name: rows[name] for name in ROWS},
        "realised_share": {
            o: _share(best_crps, ensemble, rows[o]["crps"])
            for o in ("atmosphere_only", "full_ocean")
        },
        "strong_cascade": _strong_cascade(
            test_obs, means if ensemble_mean is None else {**means, "ensemble": ensemble_mean}, flux
        ),
    }


def _figure_data(
    series: ModelSeries,
    means: dict[str, dict[str, FloatArray]],
    winters: npt.NDArray[np.int64],
    test: npt.NDArray[np.bool_],
) -> dict[str, Any]:
    """Daily anomalies of the test winter with the strongest observed cold anomaly at 500 m."""
    j = series.depths.index("500") if "500" in series.depths else 0
    anomaly = np.where(test, series.observed[:, j] - series.background[:, j], np.nan)
    winter = int(winters[int(np.nanargmin(anomaly))])
    days = winters == winter
    out: dict[str, Any] = {
        "winter": winter,
        "depth_chosen_on": series.depths[j],
        "time": [d.strftime("%Y-%m-%d") for d in series.time[days]],
    }
    for i, depth in enumerate(series.depths):
        bg = series.background[days, i]
        out[depth] = {
            "observed": series.observed[days, i] - bg,
            "atmosphere_only": means[depth]["atmosphere_only"][days] - bg,
            "full_ocean": means[depth]["full_ocean"][days] - bg,
        }
        if series.hindcast is not None:
            mean, low, high = series.hindcast[:, days, i] - bg
            out[depth].update(ensemble=mean, ensemble_q05=low, ensemble_q95=high)
    return out


def compute_ceiling(world: str | Path, model: str | Path) -> dict[str, Any]:
    """Skill ceiling of the twin ``world`` next to the trained ``model`` (see the module).

    Parameters
    ----------
    world : str or Path
        Twin world folder (``world.json``, ``truth/history.zarr``).
    model : str or Path
        Model directory of ``cascadia-ensemble train`` on that world.

    Returns
    -------
    dict
        Settings, the regeneration check and, under ``depths``, per depth: day counts,
        ``rows`` (CRPS, NSE, RMSE, σ, skills of every forecast), ``best_baseline``,
        ``realised_share`` and ``strong_cascade``; ``figure`` holds the plotted series.

    Raises
    ------
    CeilingError
        Unreadable inputs, a world that does not regenerate, model days off the twin.
    """
    world, model = Path(world), Path(model)
    series = read_model_series(model)
    split = read_winter_split(model)
    metrics = read_metrics(model)
    twin = regenerate_twin(world, series)
    index = _day_index(twin.time, series.time, world)
    winters = np.asarray(
        winter_labels(xr.DataArray(series.time, dims="time"), split.start_month).values
    )
    test, validation = np.isin(winters, split.test), np.isin(winters, split.validation)
    twin_depths = [f"{d:g}" for d in DEPTHS]
    depths, means = {}, {}
    for j, depth in enumerate(series.depths):
        if depth not in twin_depths:
            raise CeilingError(f"{model}: depth {depth} m is not a twin depth {twin_depths}")
        k = twin_depths.index(depth)
        means[depth] = _oracle_means(twin, index, k, series.background[:, j])
        depths[depth] = _depth_result(
            series.observed[:, j],
            means[depth],
            test,
            validation,
            series.background[:, j],
            _model_rows(metrics, depth),
            twin.cascading_flux[k, index],
            None if series.hindcast is None else series.hindcast[0, :, j],
        )
    return {
        "world": str(world),
        "model": str(model),
        "preset": twin.preset,
        "seed": twin.seed,
        "regeneration_max_abs_difference": twin.max_difference,
        "test_winters": split.test,
        "validation_winters": split.validation,
        "winter_start_month": split.start_month,
        "sigma_grid": {
            "min": float(SIGMA_GRID[0]),
            "max": float(SIGMA_GRID[-1]),
            "n": len(SIGMA_GRID),
            "spacing": "geometric",
        },
        "depths": depths,
        "figure": _figure_data(series, means, winters, test),
    }


# ------------------------------------------------------------------ outputs


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:.0f} %"


def table_rows(result: dict[str, Any], depth: str) -> list[list[str]]:
    """Cells of the ceiling table at ``depth``, one list per forecast (``TABLE_COLUMNS``)."""
    rows = result["depths"][depth]["rows"]
    return [
        [
            label,
            _number(rows[name]["crps"]),
            _percent(rows[name]["skill"]["best_baseline"]),
            _number(rows[name]["nse"], 3),
            _number(rows[name]["rmse"]),
            _number(rows[name].get("sigma")),
        ]
        for name, label in ROWS.items()
    ]


def share_sentence(result: dict[str, Any], depth: str) -> str:
    """One sentence: how much of the attainable CRPS gain the ensemble realised."""
    entry = result["depths"][depth]
    best, rows = entry["best_baseline"], entry["rows"]
    if best is None or rows["ensemble"]["crps"] is None:
        return f"At {depth} m metrics.json lacks the ensemble or the baselines: no share."

    def clause(oracle: str) -> str:
        share, crps = entry["realised_share"][oracle], _number(rows[oracle]["crps"])
        if share is None:
            return f"no share of what the {ROWS[oracle]} attains ({crps} °C: no better)"
        return f"{_percent(share)} of what the {ROWS[oracle]} attains ({crps} °C)"

    return (
        f"At {depth} m the ensemble ({_number(rows['ensemble']['crps'])} °C) realised "
        f"{clause('atmosphere_only')} and {clause('full_ocean')}, counting CRPS gains over "
        f"the best baseline ({ROWS[best]}, {_number(rows[best]['crps'])} °C)."
    )


def _cascade_sentence(entry: dict[str, Any], depth: str) -> str:
    strong = entry["strong_cascade"]
    rmse_strong, rmse_other = strong["rmse"], strong["rmse_other_days"]
    if not strong["n_days"]:
        return f"No test day has a true cascading flux > {strong['flux_threshold']:g} at {depth} m."
    return (
        f"On the {strong['n_days']} test days with a true cascading flux > "
        f"{strong['flux_threshold']:g} at {depth} m the oracles' RMSE is "
        f"{_number(rmse_strong['atmosphere_only'])} °C (atmosphere only) and "
        f"{_number(rmse_strong['full_ocean'])} °C (full ocean), against "
        f"{_number(rmse_other['atmosphere_only'])} / {_number(rmse_other['full_ocean'])} °C on "
        f"the other test days (background only: {_number(rmse_strong['background_only'])} / "
        f"{_number(rmse_other['background_only'])} °C"
        + (
            f"; the ensemble: {_number(rmse_strong['ensemble'])} / "
            f"{_number(rmse_other['ensemble'])} °C)."
            if "ensemble" in rmse_strong
            else ")."
        )
    )


def markdown(result: dict[str, Any]) -> str:
    """``ceiling.md``: per depth the table, the realised share and the strong-cascade RMSE."""
    lines = [
        "# Skill ceiling on the twin world",
        "",
        f"World `{result['world']}` (preset {result['preset']}, seed {result['seed']}), "
        f"model `{result['model']}`. "
        f"Scored on test winters {result['test_winters']}; the oracles' σ fitted by CRPS on "
        f"validation winters {result['validation_winters']}. Regenerated history vs stored "
        f"truth: max |Δ| = {result['regeneration_max_abs_difference']:.2g} °C.",
        "",
        "Skill = 1 − CRPS / CRPS(best baseline). Atmosphere-only oracle: the twin's physics "
        "driven by the true weather, hidden ocean drivers at their expectation. Full-ocean "
        "oracle: the true temperature without the deep eddy noise. Each oracle's σ is one "
        "constant per depth, so on quiet days it is less sharp than a model with a "
        "day-to-day spread can be: where the CRPS of an oracle and the ensemble are close, "
        "read the RMSE and NSE too.",
    ]
    for depth, entry in result["depths"].items():
        lines += [
            "",
            f"## {depth} m ({entry['n_test_days']} test days; best baseline: "
            f"{ROWS.get(entry['best_baseline'], '–')})",
            "",
            "| " + " | ".join(TABLE_COLUMNS) + " |",
            "|" + "---|" * len(TABLE_COLUMNS),
            *("| " + " | ".join(row) + " |" for row in table_rows(result, depth)),
            "",
            share_sentence(result, depth),
            "",
            _cascade_sentence(entry, depth),
        ]
    lines += [
        "",
        f"![observed, ensemble and oracle anomalies, winter {result['figure']['winter']}]"
        "(ceiling.png)",
        "",
    ]
    return "\n".join(lines)


def plot_ceiling(result: dict[str, Any], path: Path) -> None:
    """Observed, ensemble and oracle anomalies through the coldest test winter, per depth."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = result["figure"]
    time = pd.DatetimeIndex(data["time"])
    depths = list(result["depths"])
    fig = Figure(figsize=(10, 3.2 * len(depths)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(depths), 1, sharex=True, squeeze=False)[:, 0]
    styles = {
        "observed": ("observed", "k", 1.4),
        "atmosphere_only": ("atmosphere-only oracle", "tab:blue", 1.0),
        "full_ocean": ("full-ocean oracle", "tab:orange", 1.0),
    }
    for ax, depth in zip(axes, depths, strict=True):
        if "ensemble" in data[depth]:
            ax.fill_between(
                time,
                np.asarray(data[depth]["ensemble_q05"], dtype=float),
                np.asarray(data[depth]["ensemble_q95"], dtype=float),
                color="tab:green",
                alpha=0.2,
                lw=0,
                label="ensemble 5–95 %",
            )
            ax.plot(
                time,
                np.asarray(data[depth]["ensemble"], dtype=float),
                color="tab:green",
                lw=1.0,
                label="ensemble mean",
            )
        for key, (label, color, width) in styles.items():
            values = np.asarray(data[depth][key], dtype=float)
            ax.plot(time, values, color=color, lw=width, label=label)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_ylabel(f"{depth} m anomaly (°C)")
    axes[0].set_title(
        f"Winter {data['winter']}: strongest observed cold anomaly at "
        f"{data['depth_chosen_on']} m among the test winters"
    )
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_ceiling(result: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``ceiling.json``, ``ceiling.md`` and ``ceiling.png`` into ``out``; return them."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "ceiling.json", out / "ceiling.md", out / "ceiling.png"]
    write_json(paths[0], _plain(result))
    paths[1].write_text(markdown(result), encoding="utf-8")
    plot_ceiling(result, paths[2])
    return paths


def _plain(value: Any) -> Any:
    """Arrays as lists, rounded to 1e-5 °C, so that ``write_json`` can write them."""
    if isinstance(value, np.ndarray):
        return [round(float(v), 5) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.bool_):
        return bool(value)
    return value
