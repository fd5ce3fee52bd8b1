"""Bias adjustment of the twin's CMIP-like predictors against its ERA5-like reference.

One world, two models (TWIN-ESM-A: cold, wet; TWIN-ESM-B: warm, dry), one member,
historical 1981-2014 and ssp585 to 2100, ERA5 over the overlap 1981-2010: the
periods of the shipped catalogs.  Adjusted with the twin catalog's
``bias_adjustment`` section through the pipeline's own functions, the historical
run matches the reference over the overlap and each model keeps its own change
(2071-2100 vs 1981-2010).  The models are written on the standard calendar so
that extracting 120 years stays a few seconds (calendar conversion is tested in
the extraction tests).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from cascadia.sources.adjustment import adjust_projections, adjusted_url, bias_config
from cascadia.sources.bias import FittedAdjustment
from cascadia.sources.cache import PredictorCache, fill_cache, fingerprint
from cascadia.sources.catalog import enumerate_combos, open_collection
from cascadia.sources.config import load_run_catalog
from cascadia.twin.presets import Preset, ReanalysisSpec, Years, get_preset

QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]
WET_QUANTILES = [0.5, 0.9, 0.99]
MM_DAY = 1 / 86400  # kg m-2 s-1 per mm/day
SHELF = "gulf_of_lion_shelf"
OVERLAP = slice("1981", "2010")
LATE = slice("2071", "2100")
MODELS = ("TWIN-ESM-A", "TWIN-ESM-B")


def change_preset() -> Preset:
    tiny = get_preset("tiny")
    return tiny.model_copy(
        update={
            "name": "change",
            "era5": ReanalysisSpec(years=Years(start=1981, end=2010), resolution=3.0),
            "historical": Years(start=1981, end=2014),
            "future": Years(start=2015, end=2100),
            "cmip_sources": tuple(
                s.model_copy(update={"calendar": "standard"}) for s in tiny.cmip_sources[:2]
            ),
            "cmip_members": 1,
            "cordex": (),
        }
    )


@pytest.fixture(scope="module")
def adjusted(tmp_path_factory):
    root = tmp_path_factory.mktemp("adjust")
    from cascadia.twin.world import build_world

    build_world(str(root / "world"), change_preset(), seed=1)
    # Only the two predictors the checks read, from the reference too: a third of the work.
    catalogs = root / "world/catalogs"
    reanalysis = yaml.safe_load((catalogs / "reanalysis.yaml").read_text())
    (era5,) = [s for s in reanalysis["sources"] if s["name"] == "era5"]
    era5["variables"] = {k: v for k, v in era5["variables"].items() if k in ("tas", "pr")}
    era5.pop("derived")
    reanalysis["sources"] = [era5]
    (catalogs / "era5-tas-pr.yaml").write_text(yaml.safe_dump(reanalysis))
    catalog = load_run_catalog(str(catalogs / "cmip6.yaml"))
    source = catalog.sources[0].model_copy(
        update={
            "query": {**catalog.sources[0].query, "experiment_id": ["historical", "ssp585"]},
            "variables": {"tas": "tas", "pr": "pr"},
        }
    )
    section = catalog.bias_adjustment
    assert (section.overlap.start, section.overlap.end) == (1981, 2010)
    section = section.model_copy(
        update={"reference": section.reference.model_copy(update={"catalog": "era5-tas-pr.yaml"})}
    )
    catalog = catalog.model_copy(update={"sources": [source], "bias_adjustment": section})
    cache = PredictorCache(str(root / "cache"))
    assert all(o.status == "extracted" for o in fill_cache(catalog, cache))
    outcomes = adjust_projections(catalog, cache)
    return root, catalog, cache, outcomes


def _series(catalog, cache, model: str, experiment: str) -> tuple[xr.Dataset, xr.Dataset]:
    """Raw and adjusted predictors of one combination, from the cache."""
    source = catalog.sources[0]
    combos = enumerate_combos(catalog, source, open_collection(catalog, source))
    (combo,) = [
        c
        for c in combos
        if c.labels["source_id"] == model and c.labels["experiment_id"] == experiment
    ]
    raw = cache.get(source, combo, fingerprint(catalog, source, combo)).load()
    (url,) = (Path(cache.url) / source.name / combo.slug).glob("adjusted-*.zarr")
    return raw, xr.open_zarr(url).load()


def _reference(root: Path) -> xr.Dataset:
    return xr.open_zarr(next((root / "cache/era5").rglob("*.zarr"))).load()


def _relative_change(hist: xr.Dataset, fut: xr.Dataset) -> float:
    """Mean precipitation 2071-2100 over 1981-2010 on the shelf, minus 1, in %."""
    late = fut.pr.sel(region=SHELF, time=LATE).mean()
    base = hist.pr.sel(region=SHELF, time=OVERLAP).mean()
    return 100 * float(late / base - 1)


def _wet_quantiles(pr: xr.DataArray) -> np.ndarray:
    values = pr.values / MM_DAY
    return np.quantile(values[values > 1.0], WET_QUANTILES)


def test_every_combination_is_adjusted(adjusted):
    _, _, _, outcomes = adjusted
    assert [o.status for o in outcomes] == ["adjusted"] * 4, outcomes


def test_each_model_keeps_its_precipitation_change(adjusted):
    _, catalog, cache, _ = adjusted
    changes = {}
    for model in MODELS:
        hist_raw, hist_adj = _series(catalog, cache, model, "historical")
        fut_raw, fut_adj = _series(catalog, cache, model, "ssp585")
        changes[model] = (
            _relative_change(hist_raw, fut_raw),
            _relative_change(hist_adj, fut_adj),
        )
    # Measured (%, raw -> adjusted): TWIN-ESM-A +14.1 -> +15.8, TWIN-ESM-B -15.4 -> -14.4.
    for model, (raw, adj) in changes.items():
        assert abs(adj - raw) < 5.0, (model, changes)
    raws = [raw for raw, _ in changes.values()]
    assert max(raws) - min(raws) > 10.0, changes  # the models disagree: the test can fail


def test_without_mean_change_preservation_qdm_inflates_it(adjusted):
    """Plain multiplicative QDM (the parameters without PresRat) on the same fit."""
    root, catalog, cache, _ = adjusted
    hist_raw, _ = _series(catalog, cache, "TWIN-ESM-A", "historical")
    fut_raw, _ = _series(catalog, cache, "TWIN-ESM-A", "ssp585")
    (store,) = (root / "cache/cmip6").glob("*TWIN-ESM-A_historical*/qdm-*.zarr")
    fitted = FittedAdjustment.from_dataset(xr.open_zarr(store))
    pr = fitted.config.for_variable("pr").model_copy(update={"preserve_mean_change": False})
    config = fitted.config.model_copy(update={"variables": {**fitted.config.variables, "pr": pr}})
    plain = replace(fitted, config=config, _models={})
    hist, fut = plain.adjust(hist_raw, ["pr"]), plain.adjust(fut_raw, ["pr"])
    inflation = _relative_change(hist, fut) - _relative_change(hist_raw, fut_raw)
    # Measured: +28.3 % instead of +14.1 %, i.e. +14.2 percentage points.
    assert inflation > 5.0


def test_wet_day_quantiles_match_the_reference(adjusted):
    root, catalog, cache, _ = adjusted
    reference = _reference(root)
    errors = {}
    for model in MODELS:
        raw, adj = _series(catalog, cache, model, "historical")
        for region in reference.region.values:
            ref_q = _wet_quantiles(reference.pr.sel(region=region, time=OVERLAP))
            errors[model, region] = (
                100 * (_wet_quantiles(raw.pr.sel(region=region, time=OVERLAP)) / ref_q - 1),
                100 * (_wet_quantiles(adj.pr.sel(region=region, time=OVERLAP)) / ref_q - 1),
            )
    # Measured (%, 50/90/99 % of wet days): raw -36 ... +22, adjusted -6.8 ... +3.7.
    assert max(np.abs(raw).max() for raw, _ in errors.values()) > 20.0  # the dry model
    assert max(np.abs(adj).max() for _, adj in errors.values()) < 10.0, errors


def test_temperature_bias_removed_and_change_kept(adjusted):
    root, catalog, cache, _ = adjusted
    reference = _reference(root)
    for model in MODELS:
        hist_raw, hist_adj = _series(catalog, cache, model, "historical")
        fut_raw, fut_adj = _series(catalog, cache, model, "ssp585")
        for region in reference.region.values:
            ref = reference.tas.sel(region=region, time=OVERLAP).quantile(QUANTILES)
            before = hist_raw.tas.sel(region=region, time=OVERLAP).quantile(QUANTILES) - ref
            after = hist_adj.tas.sel(region=region, time=OVERLAP).quantile(QUANTILES) - ref
            assert float(np.abs(before).max()) > 1.0  # both models are biased
            assert float(np.abs(after).max()) < 0.25, (model, region, after.values)

            def change(hist, fut, region=region):
                late = fut.tas.sel(region=region, time=LATE).mean()
                return float(late - hist.tas.sel(region=region, time=OVERLAP).mean())

            assert change(hist_raw, fut_raw) > 2.0  # the scenario warms
            assert change(hist_adj, fut_adj) == pytest.approx(change(hist_raw, fut_raw), abs=0.1)


def test_options_fit_and_diagnostics_are_stored_and_reused(adjusted):
    root, catalog, cache, _ = adjusted
    source = catalog.sources[0]
    assert len(list((root / "cache").rglob("qdm-*.zarr.done"))) == 2
    (store,) = (root / "cache/cmip6").glob("*TWIN-ESM-B_historical*/qdm-*.zarr")
    params = xr.open_zarr(store)
    settings = json.loads(params.attrs["cascadia_bias_adjustment"])["settings"]
    assert settings["tas"]["kind"] == "+" and settings["tas"]["group"] == "time.month"
    assert params.pr_af.dims == ("region", "season", "pr_quantiles")
    assert params.sizes["pr_quantiles"] == 302  # 300 nodes and two tail nodes
    _, adj = _series(catalog, cache, "TWIN-ESM-B", "ssp585")
    pr = json.loads(adj.pr.attrs["bias_adjustment"])
    assert pr["kind"] == "*" and pr["group"] == "time.season" and pr["nquantiles"] == 300
    assert pr["preserve_mean_change"] is True and pr["extrapolation"] == "constant"
    assert pr["adapt_freq_thresh"].startswith("1.157407") and pr["reference_period"]
    config = json.loads(adj.attrs["bias_adjustment_config"])
    assert (config["overlap_start"], config["overlap_end"]) == (1981, 2010)
    diag = xr.open_zarr(next((root / "cache").rglob("diagnostics-*.zarr"))).load()
    tas_bias = diag.bias_mean.sel(variable="tas")
    assert float(np.abs(tas_bias.sel(stage="raw")).min()) > 1.0
    assert float(np.abs(tas_bias.sel(stage="adjusted")).max()) < 0.1
    assert float(np.abs(diag.change_preservation_error.sel(variable="pr")).max()) < 0.05
    again = adjust_projections(catalog, cache)
    assert [o.status for o in again] == ["cached"] * 4
    combos = enumerate_combos(catalog, source, open_collection(catalog, source))
    assert bias_config(catalog).overlap_start == 1981
    assert all("adjusted-" in adjusted_url(cache, source, c, "k" * 20) for c in combos)


def _rewrite_raw(catalog, cache, model: str, experiment: str, change) -> None:
    """Rewrite one combination's cached raw predictors in place, as a bad file would give."""
    source = catalog.sources[0]
    combos = enumerate_combos(catalog, source, open_collection(catalog, source))
    (combo,) = [
        c
        for c in combos
        if c.labels["source_id"] == model and c.labels["experiment_id"] == experiment
    ]
    url = cache.complete_url(source, combo, fingerprint(catalog, source, combo))
    data = change(xr.open_zarr(url).load())
    for name in data.variables:
        data[name].encoding = {}
    data.to_zarr(url, mode="w", zarr_format=2, consolidated=True)


def test_a_units_error_in_a_raw_projection_travels_with_its_adjusted_values(adjusted, tmp_path):
    """QDM maps °C labelled K, or mm/day labelled kg m-2 s-1, onto the reference's values,
    so the raw series are checked first: what they show is kept on the adjusted variable
    (``raw_check``, naming the combination it came from), for every combination fitted on
    a bad historical run, and nowhere else; the model then refuses such a variable if it
    reads it (test_inference.py)."""
    root, catalog, _, _ = adjusted
    shutil.copytree(root / "cache", tmp_path / "cache")
    cache = PredictorCache(str(tmp_path / "cache"))
    for store in (tmp_path / "cache/cmip6").glob("*/*-*.zarr*"):
        if store.name.startswith(("qdm-", "adjusted-", "diagnostics-")):
            shutil.rmtree(store) if store.is_dir() else store.unlink()

    def celsius(ds: xr.Dataset) -> xr.Dataset:
        return ds.assign(tas=(ds.tas - 273.15).assign_attrs(ds.tas.attrs))  # still "K"

    def mm_per_day(ds: xr.Dataset) -> xr.Dataset:
        return ds.assign(pr=(ds.pr * 86400).assign_attrs(ds.pr.attrs))  # still kg m-2 s-1

    _rewrite_raw(catalog, cache, "TWIN-ESM-B", "historical", celsius)
    _rewrite_raw(catalog, cache, "TWIN-ESM-A", "ssp585", mm_per_day)
    assert [o.status for o in adjust_projections(catalog, cache)] == ["adjusted"] * 4
    flags = {}
    for model in MODELS:
        for experiment in ("historical", "ssp585"):
            _, adj = _series(catalog, cache, model, experiment)
            flags[model, experiment] = {v: adj[v].attrs.get("raw_check", "") for v in ("tas", "pr")}
    for experiment in ("historical", "ssp585"):  # both fitted on the bad historical run
        tas = flags["TWIN-ESM-B", experiment]["tas"]
        assert tas.startswith("TWIN-ESM-B/historical/r1i1p1f1 tas@"), tas
        assert "°C labelled K" in tas and "found before bias adjustment" in tas
        assert flags["TWIN-ESM-B", experiment]["pr"] == ""
    pr = flags["TWIN-ESM-A", "ssp585"]["pr"]
    assert pr.startswith("TWIN-ESM-A/ssp585/r1i1p1f1 pr@") and "physically possible" in pr
    assert flags["TWIN-ESM-A", "ssp585"]["tas"] == ""
    assert flags["TWIN-ESM-A", "historical"] == {"tas": "", "pr": ""}
