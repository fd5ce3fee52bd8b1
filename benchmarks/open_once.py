"""Opens and time to read a folder of yearly CDS-style ERA5 files: per variable vs once per file.

Why: a collection lists a file holding many variables once per variable; opened
key by key (what intake-esm does with such a collection, and what cascadia did
before issue 12), 46 yearly files of six variables are opened 276 times.
``open_combo`` now opens each file once. Both are measured here on the same
files: the twin's CDS-style daily statistics (``write_era5_cds_daily``, nine
variables per file, eight read), catalogued with ``catalog build``'s builder, read for the
run catalog's variables, cropped to the regions and loaded. Opens are counted
by wrapping ``h5netcdf.File.__init__`` (each call opens the file).

    python benchmarks/open_once.py [--first 1979] [--last 2024] [--resolution 0.5]
        [--folder DIR] [--repeat 2]

Prints measured numbers only.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5netcdf
import numpy as np
import xarray as xr
import yaml

from cascadia.sources.builder import build_collection
from cascadia.sources.catalog import _requested, enumerate_combos, open_collection, open_combo
from cascadia.sources.catalog import open_kwargs as catalog_open_kwargs
from cascadia.sources.config import RunCatalog, SourceConfig, load_run_catalog
from cascadia.sources.extraction import crop_to_regions
from cascadia.twin.catalogs import run_catalogs
from cascadia.twin.grids import regular_grid
from cascadia.twin.presets import ReanalysisSpec, Years, get_preset
from cascadia.twin.realizations import make_history, reanalysis_view
from cascadia.twin.stores import StoreContext, write_era5_cds_daily


def write_files(folder: Path, first: int, last: int, resolution: float) -> None:
    """The twin's CDS-style daily files, one per year, unless ``folder`` holds them."""
    if len(list(folder.glob("*.nc"))) == last - first + 1:
        print(f"files: reusing {folder}")
        return
    started = time.perf_counter()
    preset = get_preset("tiny").model_copy(
        update={
            "era5": ReanalysisSpec(years=Years(start=first, end=last), resolution=resolution),
            "observations": Years(start=first, end=last),
        }
    )
    history = make_history(preset, seed=0)
    seed = np.random.SeedSequence([0, 99])
    view = reanalysis_view(
        history.weather, history.axis, np.random.default_rng(seed), error_scale=0.3
    )
    grid = regular_grid(resolution, lat_descending=True, lon_0_360=True)
    ctx = StoreContext(root=str(folder.parent / "twin"))
    write_era5_cds_daily(ctx, history.axis, view, grid, (first, last), seed)
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((folder.parent / "twin" / "reanalysis" / "era5-cds").glob("*.nc")):
        path.rename(folder / path.name)
    print(f"files: wrote {last - first + 1} in {time.perf_counter() - started:.1f} s")


def run_catalog(folder: Path, collection: str) -> RunCatalog:
    """The twin's era5-cds run catalog, pointed at the built collection."""
    spec = run_catalogs(get_preset("tiny"))["era5-cds"]
    source = spec["sources"][0]
    source.update(collection=collection, query={"source_id": "ERA5", "frequency": "day"})
    source.pop("period")
    path = folder.parent / "era5-cds.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_run_catalog(str(path))


def per_variable(catalog: RunCatalog, source: SourceConfig, datastore: Any) -> xr.Dataset:
    """The collection opened key by key (one key per variable), merged: the previous way."""
    combo = enumerate_combos(catalog, source, datastore)[0]
    subset = datastore.search(**combo.facets, variable_id=source.source_variables)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        datasets = subset.to_dataset_dict(
            xarray_open_kwargs=catalog_open_kwargs(source, datastore), progressbar=False
        )
    merged = xr.merge(
        [_requested(ds, source.source_variables) for ds in datasets.values()],
        compat="override",
        join="outer",
    )
    return merged.rename(source.rename)


def once(catalog: RunCatalog, source: SourceConfig, datastore: Any) -> xr.Dataset:
    return open_combo(catalog, source, enumerate_combos(catalog, source, datastore)[0], datastore)


def measure(
    label: str, opener: Callable[[], xr.Dataset], regions: Any, repeat: int
) -> dict[str, Any]:
    """Best wall time of ``repeat`` runs of open + crop + load, and the opens of the last."""
    opened: list[str] = []
    original = h5netcdf.File.__init__

    def counting(self, path, *args, **kwargs):
        opened.append(str(path))
        original(self, path, *args, **kwargs)

    times = []
    h5netcdf.File.__init__ = counting
    try:
        for _ in range(repeat):
            opened.clear()
            started = time.perf_counter()
            ds = opener()
            opened_at = time.perf_counter() - started
            data = crop_to_regions(ds, regions).load()
            times.append((time.perf_counter() - started, opened_at))
    finally:
        h5netcdf.File.__init__ = original
    total, open_only = min(times)
    row = {
        "how": label,
        "opens": len(opened),
        "distinct_files": len(set(opened)),
        "open_s": round(open_only, 2),
        "open_and_load_s": round(total, 2),
        "days": int(data.sizes["time"]),
        "variables": len(data.data_vars),
    }
    print(json.dumps(row))
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=1979)
    parser.add_argument("--last", type=int, default=2024)
    parser.add_argument("--resolution", type=float, default=0.5, help="degrees")
    parser.add_argument("--folder", help="work folder (files reused if present)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.folder or tmp)
        files = work / "era5-daily"
        write_files(files, args.first, args.last, args.resolution)
        started = time.perf_counter()
        result = build_collection(str(files), str(work / "collection" / "era5-daily.json"))
        print(
            f"catalog build: {result.assets} files, {len(result.frame)} rows, "
            f"{time.perf_counter() - started:.1f} s"
        )
        catalog = run_catalog(files, result.json_url)
        source = catalog.source("era5")
        datastore = open_collection(catalog, source)
        rows = [
            measure(
                "per variable (before)",
                lambda: per_variable(catalog, source, datastore),
                catalog.regions,
                args.repeat,
            ),
            measure(
                "once per file (open_combo)",
                lambda: once(catalog, source, datastore),
                catalog.regions,
                args.repeat,
            ),
        ]
    print(f"\n{'how':<28} {'opens':>6} {'open s':>8} {'open+load s':>12}")
    for row in rows:
        print(f"{row['how']:<28} {row['opens']:>6} {row['open_s']:>8} {row['open_and_load_s']:>12}")


if __name__ == "__main__":
    main()
