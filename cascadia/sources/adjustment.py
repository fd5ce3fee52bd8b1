"""Bias-adjust the cached projection predictors against the reference reanalysis.

For each projection source, member by member: the historical combination is
fitted against the reference over the catalog's overlap (xsdba trend-preserving
quantile delta mapping, :mod:`cascadia.sources.bias`), the fitted parameters are stored
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
from dataclasses import dataclass
from typing import Any

import fsspec
import xarray as xr

from cascadia.sources.bias import BiasAdjustmentConfig, FittedAdjustment, diagnostics, fit
from cascadia.sources.cache import ComboOutcome, PredictorCache, fill_cache, fingerprint
from cascadia.sources.catalog import Combo, SourceError, enumerate_combos, open_collection
from cascadia.sources.config import RunCatalog, SourceConfig, load_run_catalog
from cascadia.sources.predictors.plausibility import RAW_CHECK, magnitude_problems


def bias_config(catalog: RunCatalog) -> BiasAdjustmentConfig:
    """The library configuration of a catalog's ``bias_adjustment`` section."""
    section = catalog.bias_adjustment
    assert section is not None
    return BiasAdjustmentConfig.model_validate(
        {
            **section.model_dump(exclude={"reference", "overlap"}),
            "overlap_start": section.overlap.start,
            "overlap_end": section.overlap.end,
        }
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
        member = fit_member(
            catalog, cache, source, historical, hist_key, reference, ref_key, config
        )
    except Exception as exc:
        for combo in group:
            record(ComboOutcome.failed(source.name, combo.label, where, exc, started))
        return
    for combo in group:
        started = time.perf_counter()
        try:
            # fingerprint stats every asset: once per combination
            key = hist_key if combo is historical else fingerprint(catalog, source, combo)
            _, status = adjust_combo(catalog, cache, source, combo, key, member, reference, config)
            record(
                ComboOutcome(
                    source.name, combo.label, status, seconds=time.perf_counter() - started
                )
            )
        except Exception as exc:
            record(ComboOutcome.failed(source.name, combo.label, where, exc, started))


@dataclass(frozen=True)
class MemberFit:
    """A QDM fitted on one member's historical run against the reference, in the cache."""

    historical: Combo
    hist_key: str  # input fingerprint of the historical combination
    ref_key: str  # input fingerprint of the reference
    fit_key: str
    url: str

    def load(self, cache: PredictorCache) -> FittedAdjustment:
        return FittedAdjustment.from_dataset(_read(self.url, cache).load())

    def adjusted_url(
        self, cache: PredictorCache, source: SourceConfig, combo: Combo, key: str
    ) -> str:
        """Where ``combo`` (input fingerprint ``key``) adjusted with this fit is stored."""
        return adjusted_url(cache, source, combo, _digest(self.fit_key, key))


def fit_member(
    catalog: RunCatalog,
    cache: PredictorCache,
    source: SourceConfig,
    historical: Combo,
    hist_key: str,
    reference: xr.Dataset,
    ref_key: str,
    config: BiasAdjustmentConfig,
) -> MemberFit:
    """Fit (or find in the cache) the QDM of one member's historical run.

    ``hist_key`` and ``ref_key`` are the input fingerprints of the historical run and
    of the reference (both already in the predictor cache).
    """
    where = f"{catalog.path} [{source.name}]"
    hist_raw = cache.get(source, historical, hist_key)
    if hist_raw is None:
        raise SourceError(
            f"{where} {historical.label}: not in the predictor cache "
            "(run `cascadia-ensemble extract` first)"
        )
    fit_key = _digest(ref_key, hist_key, config.model_dump(mode="json"))
    fit_url = f"{cache.url.rstrip('/')}/{source.name}/{historical.slug}/qdm-{fit_key[:20]}.zarr"
    if not _exists(fit_url + ".done", cache):
        variables = [v for v in hist_raw.data_vars if v in reference.data_vars]
        fitted = fit(reference[variables].load(), hist_raw[variables].load(), config)
        _write(fitted.to_dataset(), fit_url, cache)
    return MemberFit(historical, hist_key, ref_key, fit_key, fit_url)


def adjust_combo(
    catalog: RunCatalog,
    cache: PredictorCache,
    source: SourceConfig,
    combo: Combo,
    key: str,
    member: MemberFit,
    reference: xr.Dataset,
    config: BiasAdjustmentConfig,
) -> tuple[str, str]:
    """Adjust one combination (input fingerprint ``key``) with its member's fit.

    Writes the adjusted predictors and, for a scenario, the before/after diagnostics;
    returns their URL and ``"adjusted"``, or ``"cached"`` when they were already there.
    """
    where = f"{catalog.path} [{source.name}]"
    url = member.adjusted_url(cache, source, combo, key)
    if _exists(url + ".done", cache):
        return url, "cached"
    raw = cache.get(source, combo, key)
    if raw is None:
        raise SourceError(f"{where} {combo.label}: not in the predictor cache")
    raw = raw.load()
    hist_raw = None  # the historical run this scenario's fit was made on, read once
    if combo.facets != member.historical.facets:
        stored = cache.get(source, member.historical, member.hist_key)
        if stored is None:
            raise SourceError(f"{where} {member.historical.label}: not in the predictor cache")
        hist_raw = stored.load()
    fitted = member.load(cache)
    adjusted = fitted.adjust(raw).compute()
    inputs = [(combo.label, raw), (member.historical.label, hist_raw)]
    _flag_raw_problems(adjusted, inputs, reference)
    adjusted.attrs.update(
        {
            "bias_adjustment": "xsdba QuantileDeltaMapping",
            "bias_reference_fingerprint": member.ref_key,
            "fit": member.url,
        }
    )
    _write(adjusted, url, cache)
    if hist_raw is not None:
        hist_url = member.adjusted_url(cache, source, member.historical, member.hist_key)
        hist_adjusted = (
            _read(hist_url, cache).load()
            if _exists(hist_url + ".done", cache)
            else fitted.adjust(hist_raw).compute()
        )
        report = diagnostics(reference, hist_raw, hist_adjusted, raw, adjusted, config=config)
        _write(report, url.replace("adjusted-", "diagnostics-"), cache)
    return url, "adjusted"


#: Why a raw series' problems are kept with its adjusted values, as the run's error says.
FOUND_BEFORE_ADJUSTMENT = (
    "(found before bias adjustment, which maps a units error onto the reference's values "
    "and leaves it in the projected change: fix the units attribute of the source files)"
)


def _flag_raw_problems(
    adjusted: xr.Dataset,
    inputs: list[tuple[str, xr.Dataset | None]],
    reference: xr.Dataset,
) -> None:
    """Mark each adjusted variable whose inputs hold impossible magnitudes or a
    betraying median (:data:`~cascadia.sources.predictors.plausibility.RAW_CHECK`): the
    labelled raw series of ``inputs`` (this combination's and the historical run it was
    fitted on; None: none) and the reference. The model refuses such a variable only if
    it reads it."""
    names = [str(v) for v in adjusted.data_vars if v in reference.data_vars]
    checked = [*inputs, ("the bias-adjustment reference", reference[names].load())]
    found: dict[str, list[str]] = {}
    for label, data in checked:
        if data is None:
            continue
        for name, problems in magnitude_problems(data, label).items():
            found.setdefault(name, []).extend(problems)
    for name, problems in found.items():
        if name in adjusted.data_vars:
            adjusted[name].attrs[RAW_CHECK] = "; ".join(problems) + " " + FOUND_BEFORE_ADJUSTMENT
