"""Every realization of the twin world: one real history and the projection paths.

* The *history* is one weather sequence and one hidden ocean: what really
  happened. Reanalyses are imperfect views of it (their own errors, growing back
  in time for 20CR and ERA-20C, and small biases); the mooring observes its ocean.
* A *projection path* is (source, member, scenario): a historical run that
  branches into each scenario. Its weather is its own (models do not share
  weather), its stored fields carry the model's static biases, and its truth is
  the ocean's response to its unbiased atmosphere and its own hidden ocean.
  The historical segment is identical across the scenarios of a member.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascadia.twin.atmosphere import (
    RegionalWeather,
    red_noise,
    regional_weather,
    severity_by_winter,
)
from cascadia.twin.ocean import HiddenOcean, OceanParams, OceanResult, hidden_ocean, run_ocean
from cascadia.twin.presets import SCENARIOS, Preset
from cascadia.twin.timeaxis import DayAxis, concat_axes, day_axis


@dataclass
class Realization:
    """One forcing path of the ocean, with its truth once the ocean has run."""

    key: tuple[str, str, str]  # (source_id, experiment path, member_id)
    axis: DayAxis
    weather: RegionalWeather
    hidden: HiddenOcean
    scenario: str | None
    sensitivity: float = 1.0
    historical_days: int = 0  # length of the historical segment of a projection path
    ocean: OceanResult | None = None


def _concat(first: object, second: object) -> object:
    values = {}
    for name, a in vars(first).items():
        b = getattr(second, name)
        if isinstance(a, np.ndarray):
            values[name] = np.concatenate([a, b], axis=-1)
        elif isinstance(a, dict):
            values[name] = {k: np.concatenate([a[k], b[k]], axis=-1) for k in a}
        else:
            values[name] = a
    return type(first)(**values)


def history_span(preset: Preset) -> tuple[int, int]:
    """First and last year the real history must cover."""
    specs = [preset.era5.years, preset.twentycr.years, preset.era20c.years, preset.observations]
    return min(s.start for s in specs), max(s.end for s in specs)


def make_history(preset: Preset, seed: int, params: OceanParams | None = None) -> Realization:
    """The one real history of the twin world (``params``: its noise levels)."""
    start, end = history_span(preset)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    axis = day_axis(start, end, "standard")
    severity = severity_by_winter(rng, start, end, history=True)
    weather = regional_weather(axis, rng, severity)
    return Realization(
        ("history", "reanalysis", "r1"),
        axis,
        weather,
        hidden_ocean(axis, rng, weather, None, params),
        None,
    )


def make_projections(
    preset: Preset, seed: int, params: OceanParams | None = None
) -> list[Realization]:
    """One path per (CMIP source, member, scenario)."""
    paths = []
    for i, source in enumerate(preset.cmip_sources):
        for m in range(preset.cmip_members):
            member = f"r{m + 1}i1p1f1"
            rng = np.random.default_rng(np.random.SeedSequence([seed, 1, i, m]))
            hist_axis = day_axis(preset.historical.start, preset.historical.end, source.calendar)
            severity = severity_by_winter(
                rng, preset.historical.start, preset.future.end, history=False
            )
            hist_weather = regional_weather(
                hist_axis, rng, severity, "historical", source.sensitivity
            )
            hist_hidden = hidden_ocean(hist_axis, rng, hist_weather, "historical", params)
            for j, scenario in enumerate(SCENARIOS):
                rng_f = np.random.default_rng(np.random.SeedSequence([seed, 2, i, m, j]))
                fut_axis = day_axis(preset.future.start, preset.future.end, source.calendar)
                fut_weather = regional_weather(
                    fut_axis, rng_f, severity, scenario, source.sensitivity
                )
                fut_hidden = hidden_ocean(fut_axis, rng_f, fut_weather, scenario, params)
                paths.append(
                    Realization(
                        key=(source.source_id, scenario, member),
                        axis=concat_axes(hist_axis, fut_axis),
                        weather=_concat(hist_weather, fut_weather),
                        hidden=_concat(hist_hidden, fut_hidden),
                        scenario=scenario,
                        sensitivity=source.sensitivity,
                        historical_days=hist_axis.size,
                    )
                )
    return paths


def run_all(realizations: list[Realization], params: OceanParams | None = None) -> None:
    """Run the ocean for every realization in one batch and attach the results."""
    results = run_ocean(
        [r.axis for r in realizations],
        [r.weather for r in realizations],
        [r.hidden for r in realizations],
        [r.scenario for r in realizations],
        params,
        sensitivities=[r.sensitivity for r in realizations],
    )
    for realization, result in zip(realizations, results, strict=True):
        realization.ocean = result


def reanalysis_view(
    weather: RegionalWeather,
    axis: DayAxis,
    rng: np.random.Generator,
    *,
    error_scale: np.ndarray | float,
    tas_bias: float = 0.0,
    wind_factor: float = 1.0,
    pr_factor: float = 1.0,
) -> RegionalWeather:
    """The history as a reanalysis sees it: red-noise errors of size ``error_scale``."""
    n = axis.size
    view = weather.copy()
    view.tas = view.tas + tas_bias + error_scale * red_noise(rng, n, 0.6, 0.8)
    view.hurs = np.clip(view.hurs + error_scale * red_noise(rng, n, 0.5, 4.0), 5.0, 100.0)
    wind_error = 1.0 + error_scale * red_noise(rng, n, 0.5, 0.08)
    view.uas = view.uas * wind_factor * wind_error
    view.vas = view.vas * wind_factor * wind_error
    view.psl = view.psl + error_scale * red_noise(rng, n, 0.7, 120.0)
    view.pr = view.pr * pr_factor * np.exp(error_scale * 0.3 * rng.standard_normal(n))
    return view


def century_error_scale(axis: DayAxis) -> np.ndarray:
    """Error growth back in time of the century reanalyses (fewer observations)."""
    return 0.4 + 0.8 * np.clip((1980.0 - axis.year) / 80.0, 0.0, 1.0)
