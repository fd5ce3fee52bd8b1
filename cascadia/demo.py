"""The whole chain on the embedded twin world: synth → train → run → report.

Why one entry point: the quick start must show, on a fresh machine, what the package is
for — a results store over every reanalysis and projection of the twin, and a report that
scores the run's projected change against the twin's truth. Each stage is skipped when its
output is already complete for the same inputs, so ``run_demo`` can be called again after
an interruption and does only what is missing. ``DIR`` holds ``world/``, ``cache/``
(predictor cache), ``train.yaml`` (the generated training job), ``model/``,
``results.zarr`` and ``report/``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cascadia.learning.jobs import load_train_job
from cascadia.learning.train_job import run_train_job
from cascadia.report import ReportResult, write_run_report
from cascadia.run.pipeline import ComboResult, RunSummary, run_pipeline
from cascadia.sources.config import load_run_catalog
from cascadia.twin.ceiling import compute_ceiling, write_ceiling
from cascadia.twin.presets import PRESETS, Preset, ReanalysisSpec, Years
from cascadia.twin.world import MANIFEST, build_world

__all__ = [
    "DEMO_JOBS",
    "DEMO_WORLDS",
    "TRUTH_PERIODS",
    "DemoError",
    "DemoResult",
    "StageResult",
    "demo_job",
    "run_demo",
]

#: The training job of each preset (repository ``jobs/``): the demo job is the documented
#: default ensemble; the tiny one a smoke job whose scores mean nothing.
DEMO_JOBS: dict[str, str] = {"demo": "train.yaml", "tiny": "train-tiny.yaml"}
#: The world of each demo preset. ``tiny`` is the tiny twin with ERA5 and the historical
#: runs over 2004-2014 and one CMIP member (bias adjustment needs at least 10 years of
#: overlap with the reference, which the 2-year tiny ERA5 lacks), and the mooring from
#: 2008, so that ERA5's 2004-2007 are a hindcast before the record, as 1940-1992 in ``demo``.
DEMO_WORLDS: dict[str, Preset] = {
    "demo": PRESETS["demo"],
    "tiny": PRESETS["tiny"].model_copy(
        update={
            "name": "tiny-demo",
            "era5": ReanalysisSpec(years=Years(start=2004, end=2014), resolution=2.25),
            "historical": Years(start=2004, end=2014),
            "observations": Years(start=2008, end=2014),
            "cmip_members": 1,
        }
    ),
}
#: Base and future winters of the truth comparison: the headline periods for ``demo``; the
#: tiny world only spans 2012-2016, so its periods just exercise the chain.
TRUTH_PERIODS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "demo": ((1993, 2022), (2080, 2100)),
    "tiny": ((2005, 2014), (2015, 2016)),
}
#: The world's run catalogs the demo runs: era5-cds.yaml reads the same ERA5 as
#: reanalysis.yaml from CDS-style daily files, so running both would give one combination twice.
ALTERNATIVE_CATALOGS = frozenset({"catalogs/era5-cds.yaml"})
JOBS_DIR = Path(__file__).resolve().parents[1] / "jobs"
#: Written last by ``run_train_job``'s scoring: a model folder without it is incomplete.
MODEL_COMPLETE = "timing.json"
#: Keys of a job that name where it lives rather than what it trains.
_LOCATION_KEYS = ("path", "output")


class DemoError(ValueError):
    """The demo cannot run: unknown preset, missing job template, failed stage."""


@dataclass(frozen=True)
class StageResult:
    """One stage of the chain: its name, wall time, whether it was skipped, and why."""

    name: str
    seconds: float
    skipped: bool
    detail: str


@dataclass
class DemoResult:
    """Where everything is, what each stage did, and the run's summary."""

    out: Path
    stages: list[StageResult] = field(default_factory=list)
    summary: RunSummary | None = None
    report: ReportResult | None = None
    ceiling_files: list[Path] = field(default_factory=list)

    @property
    def world(self) -> Path:
        return self.out / "world"

    @property
    def model(self) -> Path:
        return self.out / "model"

    @property
    def results(self) -> Path:
        return self.out / "results.zarr"

    @property
    def report_dir(self) -> Path:
        return self.out / "report"

    @property
    def ceiling_dir(self) -> Path:
        return self.report_dir / "ceiling"

    @property
    def ok(self) -> bool:
        return self.summary is not None and self.summary.ok

    def stage(self, name: str) -> StageResult:
        return next(s for s in self.stages if s.name == name)


def demo_job(preset: str, out: str | Path, template: str | Path | None = None) -> dict[str, Any]:
    """The training job of ``preset`` with every path pointing into ``out``.

    The one place the demo's job is made: ``template`` (default: the repository's
    ``jobs/`` template for the preset), its predictors, cache, observations and output
    redirected to ``out``'s world, cache and model folders (absolute paths).
    """
    if preset not in DEMO_JOBS:
        raise DemoError(f"unknown preset {preset!r}; expected one of: {', '.join(DEMO_JOBS)}")
    template = Path(template) if template is not None else JOBS_DIR / DEMO_JOBS[preset]
    if not template.is_file():
        raise DemoError(
            f"training job template {template} not found: the demo needs the repository's "
            "jobs/ folder (an editable install, as `make demo` does)"
        )
    job = yaml.safe_load(template.read_text(encoding="utf-8"))
    root = Path(out).resolve()
    job["predictors"]["catalog"] = str(root / "world/catalogs/reanalysis.yaml")
    job["predictors"]["cache"] = str(root / "cache/predictors")
    job["observations"]["path"] = str(root / "world/observations/lacaze-duthiers.nc")
    job["output"] = str(root / "model")
    analysis = (job.get("targets") or {}).get("before_record")
    if analysis:
        files = _manifest(root / "world").get("ocean_analysis")
        if files is None:
            raise DemoError(
                f"{root / 'world'} has no ocean analysis (a world built by an older cascadia): "
                "delete it and run again"
            )
        analysis["path"] = str(root / "world" / files)
    # the model must run on every source of the run, not only the reference it trains on
    features = job.setdefault("features", {}) or {}
    features["variables"] = common_variables(root / "world")
    job["features"] = features
    return job


def run_catalogs(world: Path) -> list[str]:
    """The world's run catalogs (relative paths) the demo trains and runs on."""
    return [c for c in _manifest(world)["catalogs"] if c not in ALTERNATIVE_CATALOGS]


def common_variables(world: Path) -> list[str]:
    """Canonical predictors that every source of the world's run catalogs provides.

    Why: a job with ``variables: null`` takes every variable of the reference (ERA5 has
    ``rsds``); a model trained on those cannot run on 20CR, ERA-20C or the projections.
    A source's ``optional`` variables count (``tos``, which uncoupled RCMs take from
    their driving model): a combination that still lacks one is refused by the run,
    by name and with the reason, while the others run.
    """
    names: set[str] | None = None
    for catalog in run_catalogs(world):
        for source in load_run_catalog(str(world / catalog)).sources:
            have = set(source.variables) | set(source.derived)
            if {"uas", "vas"} <= have:
                have.add("sfcWind")  # extraction derives it from the components
            names = have if names is None else names & have
    if not names:
        raise DemoError(f"the run catalogs of {world} share no predictor variable")
    return sorted(names)


def world_is_complete(world: Path, preset: str | Preset, seed: int) -> bool:
    """True when ``world`` holds a finished world (``world.json``) of ``preset`` (a demo
    preset's name or a world preset) and ``seed``."""
    name = preset.name if isinstance(preset, Preset) else DEMO_WORLDS[preset].name
    manifest = world / MANIFEST
    if not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return data.get("preset") == name and data.get("seed") == seed


def _job_identity(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k not in _LOCATION_KEYS}


def model_is_complete(model: Path, job_file: Path) -> bool:
    """True when ``model`` was fully trained by the job in ``job_file`` (paths resolved)."""
    recorded = model / "job.yaml"
    if not (model / MODEL_COMPLETE).is_file() or not recorded.is_file():
        return False
    wanted = load_train_job(job_file).resolved().model_dump(mode="json")
    have = yaml.safe_load(recorded.read_text(encoding="utf-8")) or {}
    return _job_identity(have) == _job_identity(wanted)


def _timed(
    name: str, work: Callable[[], tuple[bool, str]], on_stage: Callable[[StageResult], None]
) -> StageResult:
    started = time.perf_counter()
    skipped, detail = work()
    result = StageResult(name, time.perf_counter() - started, skipped, detail)
    on_stage(result)
    return result


def run_demo(
    preset: str = "demo",
    out: str | Path = "demo",
    *,
    workers: int | None = None,
    seed: int = 0,
    job: str | Path | None = None,
    world: Preset | None = None,
    world_options: dict[str, Any] | None = None,
    truth_periods: tuple[tuple[int, int], tuple[int, int]] | None = None,
    ceiling: bool = True,
    log: Callable[[str], None] = lambda _: None,
    on_stage: Callable[[StageResult], None] = lambda _: None,
    on_total: Callable[[int], None] | None = None,
    on_result: Callable[[ComboResult], None] | None = None,
    device: str = "auto",
) -> DemoResult:
    """Synth, train, run and report on the twin world of ``preset`` under ``out``.

    Parameters
    ----------
    preset
        ``tiny`` (seconds to minutes, a smoke test) or ``demo`` (the quick start).
    out
        Folder for ``world/``, ``cache/``, ``train.yaml``, ``model/``, ``results.zarr``
        and ``report/``; reused: a complete world of the same preset and seed, a model
        trained by the same job and the store's done combinations are kept.
    workers
        Dask workers of the local cluster (default: one per core).
    seed
        Seed of the twin world.
    job
        Training job template (default: the preset's in the repository's ``jobs/``).
    world, world_options, truth_periods
        Twin world preset (default: the demo preset's), extra keyword arguments of
        :func:`cascadia.twin.world.build_world` and the truth comparison's base and
        future winters (default: the preset's); ``cascadia.validate`` sets them.
    ceiling
        Also compute the twin's skill ceiling into ``report/ceiling``.
    log, on_stage, on_total, on_result
        Progress: lines of the current stage; each finished stage; the run's number of
        combinations and each combination's result.
    device
        Where the model trains and predicts (``auto``: a GPU when torch sees one).

    Raises
    ------
    DemoError
        Unknown preset or missing job template.
    """
    if preset not in DEMO_WORLDS or preset not in DEMO_JOBS:
        raise DemoError(f"unknown preset {preset!r}; expected one of: {', '.join(DEMO_JOBS)}")
    root = Path(out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    result = DemoResult(out=root)
    spec = world or DEMO_WORLDS[preset]
    base, future = truth_periods or TRUTH_PERIODS[preset]

    def synth() -> tuple[bool, str]:
        if world_is_complete(result.world, spec, seed):
            return True, f"{spec.name} world (seed {seed}) already complete"
        build_world(
            str(result.world), spec, seed, overwrite=True, step=log, **(world_options or {})
        )
        return False, f"{spec.name} world (seed {seed}) built"

    job_file = root / "train.yaml"

    def train() -> tuple[bool, str]:
        made = demo_job(preset, root, job)
        job_file.write_text(yaml.safe_dump(made, sort_keys=False), "utf-8")
        if model_is_complete(result.model, job_file):
            return True, "model already trained by this job"
        if result.model.exists():
            shutil.rmtree(result.model)
        trained = run_train_job(load_train_job(job_file), result.model, log=log, device=device)
        return False, f"trained in {trained.train_seconds:.0f} s"

    def run() -> tuple[bool, str]:
        catalogs = [str(result.world / c) for c in run_catalogs(result.world)]
        summary = run_pipeline(
            catalogs,
            result.model,
            str(result.results),
            cache=str(root / "cache/predictors"),
            workers=workers,
            on_total=on_total,
            on_result=on_result,
            device=device,
        )
        result.summary = summary
        n = len(summary.results)
        detail = (
            f"{summary.count('done')} done, {summary.count('skipped')} up to date, "
            f"{summary.count('failed')} failed of {n} combinations"
        )
        return summary.count("skipped") == n, detail

    def report() -> tuple[bool, str]:
        result.report = write_run_report(
            str(result.results),
            result.report_dir,
            truth_index=result.world / "truth/index.csv",
            model_dir=result.model,
            base=base,
            future=future,
        )
        if ceiling:
            # How far the model is from what any model could reach on this world.
            result.ceiling_files = write_ceiling(
                compute_ceiling(result.world, result.model), result.ceiling_dir
            )
        return False, f"{len(result.report.files) + len(result.ceiling_files)} files"

    for name, work in (("synth", synth), ("train", train), ("run", run), ("report", report)):
        result.stages.append(_timed(name, work, on_stage))
    return result


def _manifest(world: Path) -> dict[str, Any]:
    return json.loads((world / MANIFEST).read_text(encoding="utf-8"))
