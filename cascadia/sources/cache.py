"""The predictor cache: canonical daily predictors per combination, written once, reused.

Extraction is the expensive I/O step (ARCO-ERA5 is one global hour per chunk),
so each combination's daily regional predictors are written to a small,
time-chunked Zarr keyed by an *input fingerprint*: the package version, the
source's catalog entry, the regions and daily rules, and the content identity of
every asset, the land fraction's included: the size and modification time (or ETag)
of every object of a Zarr store, chunks included, or of a NetCDF file. Any change
gives a new key; a store counts only once its ``.json`` marker, written
after the data, exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
import xarray as xr

from cascadia import __version__
from cascadia.sources.catalog import Combo, SourceError, enumerate_combos, open_collection
from cascadia.sources.config import RunCatalog, SourceConfig, load_run_catalog
from cascadia.sources.extraction import Extracted, check_regions, extract_combo
from cascadia.sources.reach import Unreachable, ensure_reachable

TIME_CHUNK = 3650  # days per chunk of a cached series
#: Versions of each cached product kept per combination by :meth:`PredictorCache.prune`:
#: its current inputs' and the one before (two catalogs alternating on one cache, an edit
#: undone), so a scheduled reprocess over changing inputs keeps the cache bounded.
KEEP_VERSIONS = 2


def default_cache_url() -> str:
    """``$XDG_CACHE_HOME/cascadia/predictors`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "cascadia" / "predictors")


#: Fields of a listing entry that identify an object's version, the first present wins: a
#: content tag where the store keeps one (S3 ETag, GCS md5Hash), else its modification time.
_STAMPS = ("ETag", "etag", "md5Hash", "mtime", "LastModified", "updated")


def _stamp(info: Mapping[str, Any]) -> str:
    for key in _STAMPS:
        if info.get(key) not in (None, ""):
            return f"{key}={info[key]}"
    return ""


def _modified(info: Mapping[str, Any]) -> float:
    """A listing entry's modification time in seconds (local mtime, object stores'
    LastModified / updated), 0 when the store gives none."""
    for key in ("mtime", "LastModified", "updated", "last_modified"):
        value = info.get(key)
        if value in (None, ""):
            continue
        if isinstance(value, int | float):
            return float(value)
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return 0.0


def _asset_identity(url: str, storage_options: Mapping[str, Any]) -> dict[str, Any]:
    """Content identity of an asset: the size and version stamp of every object in it.

    One listing per asset (``fs.find``): every chunk of a Zarr store, its metadata
    documents included, or the file itself (NetCDF), so any changed, added or deleted
    chunk changes the identity; the names, sizes and stamps are hashed, the identity
    stays small whatever the number of chunks. Over HTTP, which cannot list, only the
    store's metadata document is seen (a documented limit).

    Raises :class:`~cascadia.sources.reach.Unreachable` within seconds when the
    asset's host does not answer, before the filesystem's own retries start, and
    :class:`FileNotFoundError` when nothing is there.
    """
    ensure_reachable(url, storage_options)
    fs, path = fsspec.core.url_to_fs(url, **storage_options)
    root = path.rstrip("/")
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if protocols & {"http", "https"}:
        listing = _metadata_document(fs, root)
    else:
        # filesystems are cached by their options, some with their listings: a long-lived
        # process (the HTTP service) must see what changed between its passes
        fs.invalidate_cache(root)
        listing = fs.find(root, detail=True) or {root: fs.info(root)}
    lines = sorted(
        f"{name[len(root) :]}\t{info.get('size')}\t{_stamp(info)}"
        for name, info in listing.items()
        if info.get("type") != "directory"
    )
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return {"asset": url, "objects": len(lines), "content": digest}


def _metadata_document(fs: Any, path: str) -> dict[str, dict[str, Any]]:
    """The store's metadata document (or the file itself) where objects cannot be listed."""
    for name in ("zarr.json", ".zmetadata", ".zgroup"):
        if fs.exists(f"{path}/{name}"):
            return {f"{path}/{name}": fs.info(f"{path}/{name}")}
    return {path: fs.info(path)}


class AssetIdentities:
    """Asset identities listed once each during one planning pass.

    Why: combinations share assets (a source's land fraction, an ocean grid's cell
    areas, a driving model's stores); a pass lists each store once. Make a new one per
    pass: an identity kept across passes would hide a change made in between.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], dict[str, Any]] = {}

    def __call__(self, url: str, storage_options: Mapping[str, Any]) -> dict[str, Any]:
        key = (url, json.dumps(storage_options, sort_keys=True, default=str))
        if key not in self._known:
            self._known[key] = _asset_identity(url, storage_options)
        return self._known[key]


def fingerprint(
    catalog: RunCatalog,
    source: SourceConfig,
    combo: Combo,
    identities: AssetIdentities | None = None,
) -> str:
    """SHA-256 of everything the cached predictors depend on.

    The assets count by content (:func:`_asset_identity`: every chunk's size and
    stamp); ``identities`` shares their listings between the combinations of one pass.
    Raises :class:`SourceError` naming the entry, the combination and the URL when
    an asset's host cannot be reached.
    """
    identity = identities or AssetIdentities()
    try:
        assets = [identity(a, source.storage_options) for a in combo.assets]
        land_fraction = (
            identity(combo.land_fraction, source.storage_options) if combo.land_fraction else None
        )
        # the fixed fields of other table groups (an ocean grid's sftof and areacello)
        fixed = sorted(
            {a for g in combo.groups for a in (g.land_fraction, g.cell_area) if a}
            - {combo.land_fraction}
        )
        fixed_ids = [identity(a, source.storage_options) for a in fixed]
    except Unreachable as exc:
        raise SourceError(
            f"{catalog.path} [{source.name}] {combo.label}: asset store {exc}"
        ) from None
    payload = {
        "cascadia": __version__,
        # how the stores are read (options, time blocks) does not change what is extracted,
        # nor which combinations the query and selection rules list: the datasets they
        # chose are the assets below (a catalog widened by one member keeps the others');
        # nor does whether a member may take a sibling's deep ocean (added later: left out,
        # caches written before it keep their keys)
        "source": source.model_dump(
            mode="json",
            exclude={
                "storage_options": True,
                "collection_storage_options": True,
                "time_block_days": True,
                "query": True,
                "selection": True,
                "deep_ocean": {"sibling_members"},
            },
        ),
        "regions": [r.model_dump(mode="json") for r in catalog.regions],
        "calendar": catalog.output_calendar,
        "max_gap_days": catalog.max_gap_days,
        "min_coverage": catalog.min_coverage,
        "facets": combo.facets,
        "assets": assets,
        "land_fraction": land_fraction,
    }
    if fixed_ids:
        payload["fixed_fields"] = fixed_ids
    if combo.driving is not None:  # what it takes from its driving model counts too
        driving = combo.driving
        driving_catalog = load_run_catalog(driving.catalog)
        payload["driving"] = {
            "variables": list(driving.variables),
            "fingerprint": fingerprint(
                driving_catalog, driving_catalog.source(driving.source), driving.combo, identity
            ),
        }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class PredictorCache:
    """A folder or bucket of cached daily predictors."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def _paths(self, source: SourceConfig, combo: Combo, key: str) -> tuple[str, str]:
        stem = f"{self.url.rstrip('/')}/{source.name}/{combo.slug}/{key[:20]}"
        return f"{stem}.zarr", f"{stem}.json"

    def get(self, source: SourceConfig, combo: Combo, key: str) -> xr.Dataset | None:
        """The cached predictors for ``key``, or None if absent or incomplete."""
        store = self.complete_url(source, combo, key)
        if store is None:
            return None
        return self.open(store)

    def complete_url(self, source: SourceConfig, combo: Combo, key: str) -> str | None:
        """URL of the cached predictors for ``key`` if complete (marker written), else None."""
        store, marker = self._paths(source, combo, key)
        fs, path = fsspec.core.url_to_fs(marker, **self.storage_options)
        return store if fs.exists(path) else None

    def open(self, url: str) -> xr.Dataset:
        """Open (lazily) a Zarr store of this cache by URL, as ``(time, region)`` predictors.

        Coordinates other than the axes are dropped: a grid-mapping scalar carried
        along by the regional means (CORDEX's ``rotated_pole``) describes no axis of
        the cached series, and would make two sources' region axes compare unequal.
        """
        ds = xr.open_zarr(url, storage_options=self._zarr_options(url))
        return ds.drop_vars([c for c in ds.coords if c not in ds.dims])

    def put(self, source: SourceConfig, combo: Combo, key: str, extracted: Extracted) -> str:
        """Write the computed predictors, then the marker that makes them count."""
        store, marker = self._paths(source, combo, key)
        data = extracted.data.chunk({"time": TIME_CHUNK})
        for name in data.variables:
            data[name].encoding = {}
        data.attrs["fingerprint"] = key
        data.to_zarr(
            store,
            mode="w",
            zarr_format=2,
            consolidated=True,
            storage_options=self._zarr_options(store),
        )
        info = {
            "fingerprint": key,
            "source": source.name,
            "combo": combo.labels,
            "facets": combo.facets,
            "assets": list(combo.assets),
            "land_fraction": combo.land_fraction,
            "long_gaps": [
                {
                    "variable": str(g.variable),
                    "region": str(g.region),
                    "start": str(g.start),
                    "end": str(g.end),
                    "days": g.length_days,
                }
                for g in extracted.gaps
            ],
            "cascadia_version": __version__,
        }
        fs, path = fsspec.core.url_to_fs(marker, **self.storage_options)
        fs.makedirs(fs._parent(path), exist_ok=True)
        with fs.open(path, "w") as handle:
            json.dump(info, handle, indent=2)
        return store

    def _zarr_options(self, url: str) -> dict[str, Any] | None:
        return self.storage_options if "://" in url and self.storage_options else None

    def prune(self, source: SourceConfig, combo: Combo, keep: int = KEEP_VERSIONS) -> int:
        """Delete all but the ``keep`` newest complete versions of each product cached for
        one combination (its predictors, bias-adjusted series, adjustment diagnostics and
        QDM fits); the number of versions deleted.

        Older versions belong to inputs that have since changed: nothing reads them but a
        run still on those inputs, which would extract them again. Versions without their
        marker are left alone (a writer may be at work); a marker goes before its data, so
        a version is never complete and partly deleted.
        """
        fs, folder = fsspec.core.url_to_fs(
            f"{self.url.rstrip('/')}/{source.name}/{combo.slug}", **self.storage_options
        )
        try:
            listing = fs.ls(folder, detail=True)
        except FileNotFoundError:
            return 0
        versions: dict[str, list[tuple[float, str, str]]] = {}
        for info in listing:
            marker = info["name"].rstrip("/")
            name = marker.rsplit("/", 1)[-1]
            if name.endswith(".zarr.done"):  # adjusted-, diagnostics-, qdm-<key>.zarr
                data, kind = marker.removesuffix(".done"), name.split("-", 1)[0]
            elif name.endswith(".json"):  # extracted predictors: <key>.json beside <key>.zarr
                data, kind = marker.removesuffix(".json") + ".zarr", "predictors"
            else:
                continue
            versions.setdefault(kind, []).append((_modified(info), marker, data))
        deleted = 0
        for found in versions.values():
            for _, marker, data in sorted(found, reverse=True)[keep:]:
                fs.rm(marker)
                if fs.exists(data):
                    fs.rm(data, recursive=True)
                deleted += 1
        return deleted


@dataclass(frozen=True)
class CacheEntry:
    """Where one combination's cached predictors are, and whether they were just made."""

    url: str
    key: str
    status: str  # "extracted" or "cached"
    long_gaps: int = 0


def cache_combo(
    catalog: RunCatalog,
    cache: PredictorCache,
    source: SourceConfig,
    combo: Combo,
    key: str,
    datastore: Any = None,
    scheduler: Any = None,
) -> CacheEntry:
    """Extract one combination into the cache unless ``key`` is already there.

    ``key`` is :func:`fingerprint` of the combination (computed by the caller, who
    usually needs it too). ``scheduler`` computes the extraction's task graph (any
    dask scheduler, e.g. a distributed client; default: dask's current one); opening
    the stores and writing the cache stay in the calling thread. Errors propagate
    (:class:`SourceError` names the entry).
    """
    url = cache.complete_url(source, combo, key)
    if url is not None:
        return CacheEntry(url, key, "cached")
    extracted = extract_combo(catalog, source, combo, datastore).compute(scheduler)
    check_regions(extracted, catalog, source)
    url = cache.put(source, combo, key, extracted)
    return CacheEntry(url, key, "extracted", long_gaps=len(extracted.gaps))


@dataclass
class ComboOutcome:
    """What happened to one combination during an extraction run."""

    source: str
    combo: str
    status: str  # "extracted", "cached" or "failed"
    seconds: float = 0.0
    reason: str = ""
    long_gaps: int = 0

    @classmethod
    def failed(
        cls, source: str, combo: str, where: str, exc: Exception, started: float
    ) -> ComboOutcome:
        """A failure, its reason naming the catalog entry (``where``) unless it already does."""
        reason = (
            str(exc)
            if isinstance(exc, SourceError)
            else (f"{where} {combo}: {type(exc).__name__}: {exc}")
        )
        return cls(source, combo, "failed", seconds=time.perf_counter() - started, reason=reason)


def fill_cache(
    catalog: RunCatalog,
    cache: PredictorCache,
    sources: Iterable[str] | None = None,
    on_combo: Callable[[ComboOutcome], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> list[ComboOutcome]:
    """Extract every combination not yet cached; one failure never stops the others.

    ``on_total`` receives the number of combinations once known and ``on_combo``
    each outcome as it happens (progress bars).
    """
    chosen = [s for s in catalog.sources if sources is None or s.name in set(sources)]
    plans: list[tuple[SourceConfig, Any, Combo | None, str]] = []
    outcomes: list[ComboOutcome] = []
    for source in chosen:
        try:
            datastore = open_collection(catalog, source)
            combos = enumerate_combos(catalog, source, datastore)
        except SourceError as exc:
            outcome = ComboOutcome(source.name, "*", "failed", reason=str(exc))
            outcomes.append(outcome)
            continue
        plans += [(source, datastore, combo, "") for combo in combos]
    if on_total:
        on_total(len(plans) + len(outcomes))
    for outcome in outcomes:
        if on_combo:
            on_combo(outcome)
    for source, datastore, combo, _ in plans:
        assert combo is not None
        started = time.perf_counter()
        try:
            key = fingerprint(catalog, source, combo)
            entry = cache_combo(catalog, cache, source, combo, key, datastore)
            outcome = ComboOutcome(
                source.name, combo.label, entry.status, long_gaps=entry.long_gaps
            )
        except Exception as exc:  # isolate: report and go on with the others
            outcome = ComboOutcome.failed(
                source.name, combo.label, f"{catalog.path} [{source.name}]", exc, started
            )
        outcome.seconds = time.perf_counter() - started
        outcomes.append(outcome)
        if on_combo:
            on_combo(outcome)
    return outcomes
