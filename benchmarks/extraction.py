"""Time cascadia's ERA5 extraction against a plain xarray loop over the same data and regions.

Why: extraction is the expensive I/O step of a run; this measures what the
catalog, cropping, unit and daily machinery costs relative to the simplest
thing a user would write, and, on a store in ARCO-ERA5's layout (one hour of
the whole domain per chunk, ``--hourly``), how many bytes cascadia reads
against the bytes of the chunks that intersect the regions. Both readers run
in the same process, on the same store, one after the other, ``--repeat``
times; the best time of each is reported.

    python benchmarks/extraction.py [--world DIR] [--preset tiny|demo|full]
        [--hourly] [--era5-years START END] [--era5-resolution DEG]
        [--baseline-years N] [--repeat 3]

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
import zarr

from cascadia.sources.catalog import enumerate_combos, open_collection
from cascadia.sources.config import Period, RunCatalog, SourceConfig, load_run_catalog
from cascadia.sources.extraction import crop_to_regions, extract_combo
from cascadia.twin.presets import Preset, Years, get_preset
from cascadia.twin.world import MANIFEST, build_world


def ensure_world(out: Path, preset: Preset, seed: int) -> Path:
    """The world in ``out``, built there if it has no manifest (an unfinished build)."""
    if (out / MANIFEST).exists():
        print(f"world: reusing {out}")
        return out
    started = time.perf_counter()
    build_world(str(out), preset, seed=seed, overwrite=out.exists())
    print(
        f"world: built {preset.name} (seed {seed}, ERA5 {preset.era5.years.start}-"
        f"{preset.era5.years.end}, {preset.era5_time_chunk} h per chunk) in {out} "
        f"in {time.perf_counter() - started:.1f} s"
    )
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


def intersecting_chunks(store: Path, source: SourceConfig, catalog: RunCatalog) -> list[Path]:
    """Chunk files of the source's variables that hold data extraction needs.

    Those intersecting the period and the block of cells that
    :func:`~cascadia.sources.extraction.crop_to_regions` keeps (Zarr v3 keys
    ``c/<time>/<lat>/<lon>``); in the twin every chunk spans the whole domain.
    """
    ds = xr.open_zarr(store, chunks=None)
    steps = np.arange(ds.sizes["time"])
    grid = ds.assign_coords(step=("time", steps), row=("latitude", np.arange(ds.sizes["latitude"])))
    grid = grid.assign_coords(col=("longitude", np.arange(ds.sizes["longitude"])))
    period = source.period
    if period:
        grid = grid.sel(time=slice(str(period.start), str(period.end)))
    box = crop_to_regions(grid, catalog.regions)
    group = zarr.open_group(store, mode="r")
    files = []
    for name in source.source_variables:
        ct, cy, cx = group[name].chunks
        for t in np.unique(box["step"].values // ct):
            for y in np.unique(box["row"].values // cy):
                for x in np.unique(box["col"].values // cx):
                    path = store / name / "c" / str(t) / str(y) / str(x)
                    if path.exists():  # a chunk never written holds fill values only
                        files.append(path)
    return files


def bytes_read() -> int:
    """Bytes this process has read so far through read() calls (``rchar``, Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", help="world folder to reuse (built there if missing)")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "demo", "full"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--hourly", action="store_true", help="ERA5 in ARCO-ERA5's layout: one hour per chunk"
    )
    parser.add_argument(
        "--era5-years", type=int, nargs=2, metavar=("START", "END"), help="ERA5 years to build"
    )
    parser.add_argument("--era5-resolution", type=float, help="ERA5 grid spacing, degrees")
    parser.add_argument(
        "--baseline-years",
        type=int,
        help="time both readers on the first N years only (the plain loop's graph on "
        "one-hour chunks is ~50k tasks per variable and year: decades do not fit in memory); "
        "cascadia's bytes and time over the whole period are measured as well",
    )
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    update: dict[str, Any] = {}
    if args.hourly:
        update["era5_time_chunk"] = 1
    era5: dict[str, Any] = {}
    if args.era5_years:
        era5["years"] = Years(start=args.era5_years[0], end=args.era5_years[1])
    if args.era5_resolution:
        era5["resolution"] = args.era5_resolution
    if era5:
        update["era5"] = preset.era5.model_copy(update=era5)
    if update:
        preset = preset.model_copy(update={**update, "name": f"{preset.name}-custom"})
    if args.world:
        run(ensure_world(Path(args.world), preset, args.seed), args.repeat, args.baseline_years)
        return
    with tempfile.TemporaryDirectory(prefix="cascadia-bench-") as tmp:
        world = ensure_world(Path(tmp) / "world", preset, args.seed)
        run(world, args.repeat, args.baseline_years)


def run(world: Path, repeat: int, baseline_years: int | None = None) -> dict[str, float]:
    """Time both readers on the world's ERA5 reference source; print and return the numbers."""
    catalog = load_run_catalog(str(world / "catalogs" / "reanalysis.yaml"))
    source = next(s for s in catalog.sources if s.role == "reference")
    datastore = open_collection(catalog, source)
    (combo,) = enumerate_combos(catalog, source, datastore)
    store = combo.assets[0]
    path = Path(store.removeprefix("file://"))
    chunks = zarr.open_group(path, mode="r")[source.source_variables[0]].chunks
    print(f"store: {store}; chunks {chunks}; time_block_days {source.time_block_days}")

    def cascadia(src: SourceConfig) -> Callable[[], xr.Dataset]:
        return lambda: extract_combo(catalog, src, combo, datastore).data.compute()

    numbers: dict[str, float] = {}
    full = source
    if baseline_years is not None:
        assert full.period is not None
        window = Period(start=full.period.start, end=full.period.start + baseline_years - 1)
        source = full.model_copy(update={"period": window})
    stored = sum(p.stat().st_size for p in intersecting_chunks(path, source, catalog))
    seconds_c, out_c = best_of(repeat, cascadia(source))
    if baseline_years is not None:
        assert full.period is not None
        # The whole period, once: bytes read and time. After the window's extractions: the
        # process's first extraction also reads the modules it imports lazily and the
        # catalog (10-15 MB that are not data), which would be counted as chunk reads.
        expected = sum(p.stat().st_size for p in intersecting_chunks(path, full, catalog))
        before = bytes_read()
        started = time.perf_counter()
        out = cascadia(full)()
        numbers["full_seconds"] = time.perf_counter() - started
        numbers["full_bytes_read"] = bytes_read() - before
        numbers["full_chunk_bytes"] = expected
        print(
            f"cascadia, {full.period.start}-{full.period.end} ({out.sizes['time']} days): "
            f"{numbers['full_seconds']:.1f} s; read {numbers['full_bytes_read'] / 1e6:.1f} MB, "
            f"intersecting chunks {expected / 1e6:.1f} MB, "
            f"ratio {numbers['full_bytes_read'] / expected:.3f}"
        )
    seconds_b, out_b = best_of(repeat, lambda: baseline(store, catalog, source))
    days = out_c.sizes["time"]
    mb = stored / 1e6
    print(
        f"source chunks: {mb:.2f} MB, {len(source.source_variables)} variables, "
        f"{days} days x {len(catalog.regions)} regions; best of {repeat}"
    )
    print(f"{'':10} {'seconds':>9} {'MB/s':>9} {'days/s':>9}")
    for name, seconds in (("cascadia", seconds_c), ("baseline", seconds_b)):
        print(f"{name:10} {seconds:9.3f} {mb / seconds:9.2f} {days / seconds:9.1f}")
    print(f"throughput ratio cascadia/baseline: {seconds_b / seconds_c:.3f}")
    print(f"baseline output: {dict(out_b.sizes)}; cascadia output: {dict(out_c.sizes)}")
    numbers.update(cascadia=seconds_c, baseline=seconds_b, ratio=seconds_b / seconds_c)
    return numbers


if __name__ == "__main__":
    main()
