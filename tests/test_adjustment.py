"""Bias adjustment of the twin's CMIP-like predictors against its ERA5-like reference.

A small world with a 14-year overlap (the tiny preset has two years of ERA5):
after adjustment the historical quantiles match the reference over the overlap,
and the model's own future change is preserved.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from cascadia.sources.adjustment import adjust_projections, adjusted_url, bias_config
from cascadia.sources.cache import PredictorCache, fill_cache, fingerprint
from cascadia.sources.catalog import enumerate_combos, open_collection
from cascadia.sources.config import load_run_catalog
from cascadia.twin.presets import Preset, ReanalysisSpec, Years, get_preset
from cascadia.twin.world import build_world

QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]


def overlap_preset() -> Preset:
    tiny = get_preset("tiny")
    return tiny.model_copy(
        update={
            "name": "overlap",
            "era5": ReanalysisSpec(years=Years(start=2001, end=2014), resolution=3.0),
            "historical": Years(start=2001, end=2014),
            "future": Years(start=2015, end=2022),
            "cmip_sources": tiny.cmip_sources[1:2],  # TWIN-ESM-B: warm (+2.1 K), dry, 360_day
            "cmip_members": 2,
            "cordex": (),
        }
    )


@pytest.fixture(scope="module")
def adjusted(tmp_path_factory):
    root = tmp_path_factory.mktemp("adjust")
    build_world(str(root / "world"), overlap_preset(), seed=1)
    catalog = load_run_catalog(str(root / "world/catalogs/cmip6.yaml"))
    source = catalog.sources[0]
    source = source.model_copy(
        update={
            "query": {
                **source.query,
                "member_id": "r1i1p1f1",
                "experiment_id": ["historical", "ssp585"],
            }
        }
    )
    catalog = catalog.model_copy(update={"sources": [source]})
    cache = PredictorCache(str(root / "cache"))
    assert all(o.status == "extracted" for o in fill_cache(catalog, cache))
    outcomes = adjust_projections(catalog, cache)
    return root, catalog, cache, outcomes


def _series(catalog, cache, experiment, adjusted_too=True):
    source = catalog.sources[0]
    combos = enumerate_combos(catalog, source, open_collection(catalog, source))
    (combo,) = [c for c in combos if c.labels["experiment_id"] == experiment]
    raw = cache.get(source, combo, fingerprint(catalog, source, combo)).load()
    urls = list(
        (cache_path := __import__("pathlib").Path(cache.url) / source.name / combo.slug).glob(
            "adjusted-*.zarr"
        )
    )
    assert len(urls) == 1, cache_path
    return raw, xr.open_zarr(urls[0]).load()


def test_every_combination_is_adjusted(adjusted):
    _, _, _, outcomes = adjusted
    assert [o.status for o in outcomes] == ["adjusted", "adjusted"], outcomes


def test_historical_quantiles_match_the_reference(adjusted):
    root, catalog, cache, _ = adjusted
    reference = xr.open_zarr(next((root / "cache/era5").rglob("*.zarr"))).load()
    raw, adj = _series(catalog, cache, "historical")
    overlap = slice("2001", "2014")
    for region in catalog.regions:
        ref = reference.tas.sel(region=region.name, time=overlap)
        before = raw.tas.sel(region=region.name, time=overlap)
        after = adj.tas.sel(region=region.name, time=overlap)
        bias_before = np.abs(before.quantile(QUANTILES) - ref.quantile(QUANTILES))
        bias_after = np.abs(after.quantile(QUANTILES) - ref.quantile(QUANTILES))
        assert float(bias_before.max()) > 1.5  # the warm model: the test can fail
        assert float(bias_after.max()) < 0.25, (region.name, bias_after.values)
        wet_ref = reference.pr.sel(region=region.name, time=overlap)
        wet = adj.pr.sel(region=region.name, time=overlap)
        for q in (0.5, 0.75, 0.9):
            assert float(wet.quantile(q)) == pytest.approx(float(wet_ref.quantile(q)), rel=0.1)


def test_the_model_change_is_preserved(adjusted):
    _, catalog, cache, _ = adjusted
    hist_raw, hist_adj = _series(catalog, cache, "historical")
    fut_raw, fut_adj = _series(catalog, cache, "ssp585")
    for region in catalog.regions:

        def change(hist, fut, region=region):
            return float(
                fut.tas.sel(region=region.name).mean()
                - hist.tas.sel(region=region.name, time=slice("2001", "2014")).mean()
            )

        assert change(hist_raw, fut_raw) > 0.3  # the scenario warms
        assert change(hist_adj, fut_adj) == pytest.approx(change(hist_raw, fut_raw), abs=0.2)


def test_fit_and_diagnostics_are_stored_and_reused(adjusted):
    root, catalog, cache, _ = adjusted
    source = catalog.sources[0]
    assert len(list((root / "cache").rglob("qdm-*.zarr.done"))) == 1
    (diag,) = list((root / "cache").rglob("diagnostics-*.zarr"))
    report = xr.open_zarr(diag).load()
    tas_bias = report.bias_mean.sel(variable="tas")
    assert float(np.abs(tas_bias.sel(stage="raw")).min()) > 1.0
    assert float(np.abs(tas_bias.sel(stage="adjusted")).max()) < 0.1
    again = adjust_projections(catalog, cache)
    assert [o.status for o in again] == ["cached", "cached"]
    combos = enumerate_combos(catalog, source, open_collection(catalog, source))
    assert bias_config(catalog).overlap_start == 2001
    assert all("adjusted-" in adjusted_url(cache, source, c, "k" * 20) for c in combos)
