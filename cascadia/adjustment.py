"""Bias-adjust the cached projection predictors against the reference reanalysis.

For each projection source, member by member: the historical combination is
fitted against the reference over the catalog's overlap (xsdba trend-preserving
quantile delta mapping, :mod:`cascadia.bias`), the fitted parameters are stored
beside the historical predictors, and every experiment of that member
(historical and scenarios) is adjusted with them and stored with its
before/after diagnostics. Everything is keyed by the fingerprints of its
inputs, so a rerun only redoes what changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import fsspec
import xarray as xr

from cascadia.bias import BiasAdjustmentConfig, FittedAdjustment, diagnostics, fit
from cascadia.cache import ComboOutcome, PredictorCache, fill_cache, fingerprint
from cascadia.catalog import Combo, SourceError, enumerate_combos, open_collection
from cascadia.config import RunCatalog, SourceConfig, load_run_catalog


def bias_config(catalog: RunCatalog) -> BiasAdjustmentConfig:
    section = catalog.bias_adjustment
    assert section is not None
    return BiasAdjustmentConfig(
        overlap_start=section.overlap.start,
        overlap_end=section.overlap.end,
        kinds=dict(section.kinds),
    )


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _exists(url: str, cache: PredictorCache) -> bool:
    fs, path = fsspec.core.url_to_fs(url, **cache.storage_options)
    return fs.exists(path)


def _write(ds: xr.Dataset, url: str, cache: PredictorCache) -> None:
    """Write a Zarr store, then its ``.done`` marker (only then does it count)."""
    for name in ds.variables:
        ds[name].encoding = {}
    options = cache.storage_options if "://" in url and cache.storage_options else None
    ds.to_zarr(url, mode="w", zarr_format=2, consolidated=True, storage_options=options)
    fs, path = fsspec.core.url_to_fs(url + ".done", **cache.storage_options)
    fs.pipe(path, b"")


def _read(url: str, cache: PredictorCache) -> xr.Dataset:
    options = cache.storage_options if "://" in url and cache.storage_options else None
    return xr.open_zarr(url, storage_options=options)


def adjusted_url(cache: PredictorCache, source: SourceConfig, combo: Combo, key: str) -> str:
    return f"{cache.url.rstrip('/')}/{source.name}/{combo.slug}/adjusted-{key[:20]}.zarr"


def reference_predictors(catalog: RunCatalog, cache: PredictorCache) -> tuple[xr.Dataset, str]:
    """The reference reanalysis' cached predictors (extracting them if needed) and their key."""
    section = catalog.bias_adjustment
    assert section is not None
    ref_catalog = load_run_catalog(catalog.resolve(section.reference.catalog))
    source = ref_catalog.source(section.reference.source)
    failed = [o for o in fill_cache(ref_catalog, cache, [source.name]) if o.status == "failed"]
    if failed:
        raise SourceError(f"reference {source.name} for bias adjustment: {failed[0].reason}")
    (combo,) = enumerate_combos(ref_catalog, source, open_collection(ref_catalog, source))
    key = fingerprint(ref_catalog, source, combo)
    data = cache.get(source, combo, key)
    assert data is not None
    return data, key


def adjust_projections(
    catalog: RunCatalog,
    cache: PredictorCache,
    on_combo: Callable[[ComboOutcome], None] | None = None,
) -> list[ComboOutcome]:
    """Adjust every projection combination of ``catalog`` (already in the cache)."""
    if catalog.bias_adjustment is None:
        return []
    config = bias_config(catalog)
    reference, ref_key = reference_predictors(catalog, cache)
    outcomes: list[ComboOutcome] = []

    def record(outcome: ComboOutcome) -> None:
        outcomes.append(outcome)
        if on_combo:
            on_combo(outcome)

    for source in (s for s in catalog.sources if s.role == "projection"):
        combos = enumerate_combos(catalog, source, open_collection(catalog, source))
        members: dict[tuple[str, str], list[Combo]] = {}
        for combo in combos:
            members.setdefault((combo.labels["source_id"], combo.labels["member_id"]), []).append(
                combo
            )
        for (model, member), group in members.items():
            historical = [c for c in group if c.labels["experiment_id"] == "historical"]
            if not historical:
                for combo in group:
                    record(
                        ComboOutcome(
                            source.name,
                            combo.label,
                            "failed",
                            reason=f"{catalog.path} [{source.name}] {combo.label}: "
                            f"no historical run of {model} {member} to fit against",
                        )
                    )
                continue
            _adjust_member(
                catalog, cache, source, historical[0], group, reference, ref_key, config, record
            )
    return outcomes


def _adjust_member(
    catalog: RunCatalog,
    cache: PredictorCache,
    source: SourceConfig,
    historical: Combo,
    group: list[Combo],
    reference: xr.Dataset,
    ref_key: str,
    config: BiasAdjustmentConfig,
    record: Callable[[ComboOutcome], None],
) -> None:
    where = f"{catalog.path} [{source.name}]"
    started = time.perf_counter()
    try:
        hist_key = fingerprint(catalog, source, historical)
        hist_raw = cache.get(source, historical, hist_key)
        if hist_raw is None:
            raise SourceError(
                f"{where} {historical.label}: not in the predictor cache "
                "(run `cascadia-ensemble extract` first)"
            )
        fit_key = _digest(ref_key, hist_key, config.model_dump(mode="json"))
        fit_url = f"{cache.url.rstrip('/')}/{source.name}/{historical.slug}/qdm-{fit_key[:20]}.zarr"
        if _exists(fit_url + ".done", cache):
            fitted = FittedAdjustment.from_dataset(_read(fit_url, cache).load())
        else:
            variables = [v for v in hist_raw.data_vars if v in reference.data_vars]
            fitted = fit(reference[variables].load(), hist_raw[variables].load(), config)
            _write(fitted.to_dataset(), fit_url, cache)
        hist_adjusted = fitted.adjust(hist_raw.load()).compute()
    except Exception as exc:
        for combo in group:
            record(ComboOutcome.failed(source.name, combo.label, where, exc, started))
        return
    for combo in group:
        started = time.perf_counter()
        try:
            combo_key = fingerprint(catalog, source, combo)  # stats every asset: once
            url = adjusted_url(cache, source, combo, _digest(fit_key, combo_key))
            if _exists(url + ".done", cache):
                record(ComboOutcome(source.name, combo.label, "cached"))
                continue
            raw = cache.get(source, combo, combo_key)
            if raw is None:
                raise SourceError(f"{where} {combo.label}: not in the predictor cache")
            adjusted = hist_adjusted if combo is historical else fitted.adjust(raw.load()).compute()
            adjusted.attrs.update(
                {
                    "bias_adjustment": "xsdba QuantileDeltaMapping",
                    "bias_reference_fingerprint": ref_key,
                    "fit": fit_url,
                }
            )
            _write(adjusted, url, cache)
            if combo is not historical:
                report = diagnostics(
                    reference, hist_raw.load(), hist_adjusted, raw.load(), adjusted, config=config
                )
                _write(report, url.replace("adjusted-", "diagnostics-"), cache)
            record(
                ComboOutcome(
                    source.name, combo.label, "adjusted", seconds=time.perf_counter() - started
                )
            )
        except Exception as exc:
            record(ComboOutcome.failed(source.name, combo.label, where, exc, started))
