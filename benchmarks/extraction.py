"""Time cascadia's ERA5 extraction against a plain xarray loop over the same data and regions.

Why: extraction is the expensive I/O step of a run; this measures what the
catalog, cropping, unit and daily machinery costs relative to the simplest
thing a user would write. Both run in the same process, on the same store, one
after the other, ``--repeat`` times; the best time of each is reported.

    python benchmarks/extraction.py [--world DIR] [--preset tiny|demo] [--repeat 3]

Prints measured numbers only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cascadia.sources.catalog import enumerate_combos, open_collection
from cascadia.sources.config import RunCatalog, SourceConfig, load_run_catalog
from cascadia.sources.extraction import extract_combo
from cascadia.twin.world import MANIFEST, build_world


def ensure_world(out: Path, preset: str, seed: int) -> Path:
    """The world in ``out``, built there if it has no manifest (an unfinished build)."""
    if (out / MANIFEST).exists():
        print(f"world: reusing {out}")
        return out
    started = time.perf_counter()
    build_world(str(out), preset, seed=seed, overwrite=out.exists())
    print(f"world: built {preset} (seed {seed}) in {out} in {time.perf_counter() - started:.1f} s")
    return out


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """Smallest wall time of ``repeat`` runs (the least disturbed one) and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def baseline(store: str, catalog: RunCatalog, source: SourceConfig) -> xr.Dataset:
    """Plain xarray: open, box-select each region, unweighted mean, daily mean, compute."""
    ds = xr.open_zarr(store)[source.source_variables]
    if source.period:
        ds = ds.sel(time=slice(str(source.period.start), str(source.period.end)))
    lon = (ds["longitude"].values + 180.0) % 360.0 - 180.0
    lat = ds["latitude"].values
    series = []
    for region in catalog.regions:
        rows = np.flatnonzero((lat >= region.lat_min) & (lat <= region.lat_max))
        cols = np.flatnonzero((lon >= region.lon_min) & (lon <= region.lon_max))
        box = ds.isel(latitude=rows, longitude=cols).mean(["latitude", "longitude"])
        series.append(box.resample(time="1D").mean())
    return xr.concat(series, dim="region").compute()


def chunk_bytes(store: Path, variables: list[str]) -> int:
    """Stored bytes of the variables' chunks (the twin's ERA5 chunks span the whole grid)."""
    return sum(p.stat().st_size for v in variables for p in (store / v).rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", help="world folder to reuse (built there if missing)")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "demo", "full"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.world:
        run(ensure_world(Path(args.world), args.preset, args.seed), args.repeat)
        return
    with tempfile.TemporaryDirectory(prefix="cascadia-bench-") as tmp:
        run(ensure_world(Path(tmp) / "world", args.preset, args.seed), args.repeat)


def run(world: Path, repeat: int) -> None:
    """Time both readers on the world's ERA5 reference source and print the numbers."""
    catalog = load_run_catalog(str(world / "catalogs" / "reanalysis.yaml"))
    source = next(s for s in catalog.sources if s.role == "reference")
    datastore = open_collection(catalog, source)
    (combo,) = enumerate_combos(catalog, source, datastore)
    store = combo.assets[0]
    stored = chunk_bytes(Path(store.removeprefix("file://")), source.source_variables)

    def cascadia() -> xr.Dataset:
        return extract_combo(catalog, source, combo, datastore).data.compute()

    seconds_c, out_c = best_of(repeat, cascadia)
    seconds_b, out_b = best_of(repeat, lambda: baseline(store, catalog, source))
    days = out_c.sizes["time"]
    mb = stored / 1e6
    print(f"store: {store}")
    print(
        f"source chunks: {mb:.2f} MB, {len(source.source_variables)} variables, "
        f"{days} days x {len(catalog.regions)} regions; best of {repeat}"
    )
    print(f"{'':10} {'seconds':>9} {'MB/s':>9} {'days/s':>9}")
    for name, seconds in (("cascadia", seconds_c), ("baseline", seconds_b)):
        print(f"{name:10} {seconds:9.3f} {mb / seconds:9.2f} {days / seconds:9.1f}")
    print(f"throughput ratio cascadia/baseline: {seconds_b / seconds_c:.3f}")
    print(f"baseline output: {dict(out_b.sizes)}; cascadia output: {dict(out_c.sizes)}")


if __name__ == "__main__":
    main()
