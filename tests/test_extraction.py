"""Canonical daily predictors from the tiny twin equal numpy computed from the raw arrays.

Each reference below reads the raw store with plain xarray/numpy and applies
the documented rules by hand: area weights cos(lat) x cell fraction in the box
(x the sea fraction of the source's own land fraction for the sea-only shelf),
ERA5 accumulations belonging to the hour that ends at their stamp, wind speed
as the mean of hourly speeds, 360_day and noleap years put on the standard
calendar by inserting interpolated days without moving the season.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cascadia.sources.cache import PredictorCache, fill_cache, fingerprint
from cascadia.sources.catalog import SourceError, enumerate_combos, open_collection, open_combo
from cascadia.sources.config import CatalogError, RunCatalog, load_run_catalog
from cascadia.sources.extraction import (
    check_regions,
    crop_to_regions,
    extract_combo,
    read_in_blocks,
    time_blocks,
)
from cascadia.sources.predictors.regions import Region
from cascadia.twin.stores import CMIP_VERSION
from cascadia.twin.world import build_world

CFTIME = xr.coders.CFDatetimeCoder(use_cftime=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("extract") / "world"
    build_world(str(out), "tiny", seed=3)
    return out


def _combo(catalog: RunCatalog, source_name: str, **labels):
    source = catalog.source(source_name)
    datastore = open_collection(catalog, source)
    combos = [
        c
        for c in enumerate_combos(catalog, source, datastore)
        if all(c.labels[k] == v for k, v in labels.items())
    ]
    assert len(combos) == 1, combos
    return source, combos[0], datastore


def _fraction(centres: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Share of each 1-D cell (edges midway between sorted centres) inside [lo, hi]."""
    order = np.argsort(centres)
    c = centres[order]
    edges = np.concatenate(
        [[c[0] - (c[1] - c[0]) / 2], (c[1:] + c[:-1]) / 2, [c[-1] + (c[-1] - c[-2]) / 2]]
    )
    share = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None)
    out = np.empty_like(share)
    out[order] = share / np.diff(edges)
    return out


def _regular_weights(
    lat: np.ndarray, lon: np.ndarray, region: Region, land: np.ndarray | None = None
) -> np.ndarray:
    """cos(lat) x box fraction, x the sea (land) fraction for a sea (land) region."""
    lon180 = (lon + 180.0) % 360.0 - 180.0
    area = (np.cos(np.deg2rad(lat)) * _fraction(lat, region.lat_min, region.lat_max))[
        :, None
    ] * _fraction(lon180, region.lon_min, region.lon_max)[None, :]
    if region.surface == "all":
        return area
    assert land is not None and land.shape == area.shape
    return area * (1.0 - land if region.surface == "sea" else land)


def _area_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.tensordot(values, weights, axes=([1, 2], [0, 1])) / weights.sum()


def test_era5_hourly_store(world):
    catalog = load_run_catalog(str(world / "catalogs/reanalysis.yaml"))
    source, combo, datastore = _combo(catalog, "era5")
    got = extract_combo(catalog, source, combo, datastore).data.compute()

    raw = xr.open_zarr(world / "reanalysis/era5/era5-hourly-single-levels.zarr").load()
    assert raw.latitude[0] > raw.latitude[-1] and raw.longitude.max() > 350
    assert raw.land_sea_mask.attrs["units"] == "(0 - 1)"
    assert [r.surface for r in catalog.regions] == ["sea", "all", "all"]
    days = got.time.size
    for region in catalog.regions:
        land = raw.land_sea_mask.values.astype(float)
        w = _regular_weights(raw.latitude.values, raw.longitude.values, region, land)
        per_hour = {
            name: _area_mean(raw[name].values.astype(float), w)
            for name in (
                "2m_temperature",
                "total_precipitation",
                "surface_solar_radiation_downwards",
            )
        }
        speed = np.hypot(
            raw["10m_u_component_of_wind"].values.astype(float),
            raw["10m_v_component_of_wind"].values.astype(float),
        )
        per_hour["speed"] = _area_mean(speed, w)
        u_mean = _area_mean(raw["10m_u_component_of_wind"].values.astype(float), w)
        daily = {k: v.reshape(days, 24) for k, v in per_hour.items()}
        # accumulations stamped at the end of their hour: hour h of day d is stamp h+1
        rain = np.append(per_hour["total_precipitation"][1:], np.nan).reshape(days, 24)
        sun = np.append(per_hour["surface_solar_radiation_downwards"][1:], np.nan).reshape(days, 24)
        at = got.sel(region=region.name)
        np.testing.assert_allclose(at.tas, daily["2m_temperature"].mean(1), rtol=1e-6)
        np.testing.assert_allclose(at.sfcWind, daily["speed"].mean(1), rtol=1e-5)
        np.testing.assert_allclose(at.uas, u_mean.reshape(days, 24).mean(1), atol=1e-5)
        full = slice(0, days - 1)  # the last day lacks the hour stamped the next midnight
        np.testing.assert_allclose(
            at.pr[full], rain.mean(1)[full] * 1000.0 / 3600.0, rtol=1e-5, atol=1e-12
        )
        np.testing.assert_allclose(at.rsds[full], sun.mean(1)[full] / 3600.0, rtol=1e-5)
        assert at.pr.attrs["units"] == "kg m-2 s-1" and at.tas.attrs["units"] == "K"
        # mean of hourly speeds, not the speed of the mean wind
        assert (at.sfcWind > np.hypot(at.uas, at.vas)).all()
        assert 40 < float(at.hurs.mean()) < 100


def test_reading_in_time_blocks_changes_nothing_but_the_reads(world):
    """The same predictors read in blocks of whole on-disk chunks as with the store's own
    dask chunks (the tiny twin's 2,208 hours), from a period starting inside a chunk."""
    catalog = load_run_catalog(str(world / "catalogs/reanalysis.yaml"))
    source, combo, datastore = _combo(catalog, "era5")
    assert source.time_block_days == 31
    second_year = source.period.model_copy(update={"start": 2014})
    blocks = source.model_copy(update={"period": second_year})
    plain = blocks.model_copy(update={"time_block_days": None})
    got = extract_combo(catalog, blocks, combo, datastore).data.compute()
    want = extract_combo(catalog, plain, combo, datastore).data.compute()
    xr.testing.assert_allclose(got, want)
    assert fingerprint(catalog, blocks, combo) == fingerprint(catalog, plain, combo)

    # 2014 starts 8,760 h into the store, 72 h before the end of its 4th 2,208-h chunk;
    # 31 days round up to one whole chunk per read task
    raw = open_combo(catalog, blocks, combo, datastore)
    assert raw["2m_temperature"].chunks is None  # nothing read before the crop
    cropped = crop_to_regions(raw.sel(time="2014"), catalog.regions)
    read = read_in_blocks(cropped, 31, start=8760)
    assert read["2m_temperature"].chunks[0] == (72, 2208, 2208, 2208, 2064)
    assert read["2m_temperature"].shape[1:] == cropped["2m_temperature"].shape[1:]


def test_time_blocks_cover_whole_stored_chunks():
    # steps 5..24 of a store in blocks of 8: cut at 8, 16 and 24 counted from the store's start
    assert time_blocks(5, 20, 8) == (3, 8, 8, 1)
    assert time_blocks(0, 16, 8) == (8, 8)
    assert time_blocks(3, 2, 8) == (2,)


def test_time_blocks_refuse_collections_that_join_stores(world):
    """Without dask, joining files would read them whole: a clear error instead."""
    catalog = load_run_catalog(str(world / "catalogs/reanalysis.yaml"))
    source, combo, datastore = _combo(catalog, "20cr", member_id="mem001")
    blocks = source.model_copy(update={"time_block_days": 31})
    expected = r"\[20cr\].*time_block_days needs every combination to be one store.*join_existing"
    with pytest.raises(SourceError, match=expected):
        extract_combo(catalog, blocks, combo, datastore)


def _cmip_raw(world, source_id: str, variable: str, region: Region) -> xr.DataArray:
    pattern = f"*/*/{source_id}/historical/r1i1p1f1/day/{variable}/gn/v{CMIP_VERSION}"
    store = next((world / "cmip6").glob(pattern))
    raw = xr.open_zarr(store, decode_times=CFTIME).load()
    (fx,) = (world / "cmip6").glob(f"CMIP/*/{source_id}/historical/r1i1p1f1/fx/sftlf/gn/*")
    sftlf = xr.open_zarr(fx).sftlf
    assert sftlf.attrs["units"] == "%" and (sftlf.lat.values == raw.lat.values).all()
    w = _regular_weights(raw.lat.values, raw.lon.values, region, sftlf.values / 100.0)
    return xr.DataArray(
        _area_mean(raw[variable].values.astype(float), w),
        dims="time",
        coords={"time": raw.time.values},
    )


def test_noleap_store_gets_february_29(world):
    catalog = load_run_catalog(str(world / "catalogs/cmip6.yaml"))
    source, combo, datastore = _combo(
        catalog, "cmip6", source_id="TWIN-ESM-A", experiment_id="historical", member_id="r1i1p1f1"
    )
    got = extract_combo(catalog, source, combo, datastore).data.compute()
    region = catalog.regions[0]
    raw = _cmip_raw(world, "TWIN-ESM-A", "tas", region)
    assert raw.time.dt.calendar == "noleap"
    series = got.tas.sel(region=region.name).to_series()
    for t, value in zip(raw.time.values, raw.values, strict=True):
        assert series[pd.Timestamp(t.year, t.month, t.day)] == pytest.approx(value, rel=1e-6)
    leap = pd.Timestamp("2012-02-29")
    expected = (series[pd.Timestamp("2012-02-28")] + series[pd.Timestamp("2012-03-01")]) / 2
    assert series[leap] == pytest.approx(expected, rel=1e-9)
    assert series.index.is_monotonic_increasing and not series.isna().any()


def test_360_day_store_keeps_its_seasons(world):
    catalog = load_run_catalog(str(world / "catalogs/cmip6.yaml"))
    source, combo, datastore = _combo(
        catalog, "cmip6", source_id="TWIN-ESM-B", experiment_id="historical", member_id="r1i1p1f1"
    )
    got = extract_combo(catalog, source, combo, datastore).data.compute()
    region = catalog.regions[0]
    raw = _cmip_raw(world, "TWIN-ESM-B", "tas", region)
    assert raw.time.dt.calendar == "360_day"
    series = got.tas.sel(region=region.name).to_series()
    for year in (2012, 2013, 2014):
        model_year = raw.sel(time=str(year)).values
        standard = series[str(year)].values
        assert standard.size == (366 if year == 2012 else 365)
        # the 360 model days appear in order; each inserted day lies between its neighbours
        matched, position = [], 0
        for value in model_year:
            hits = np.flatnonzero(np.isclose(standard[position:], value, rtol=1e-7, atol=0))
            assert hits.size, f"{year}: model value {value} not found after day {position}"
            position += int(hits[0])
            matched.append(position)
            position += 1
        inserted = sorted(set(range(standard.size)) - set(matched))
        assert len(inserted) == standard.size - 360
        for i in inserted:
            lo, hi = sorted((standard[i - 1], standard[i + 1]))
            assert lo - 1e-9 <= standard[i] <= hi + 1e-9
        # no season shift: model day k lands within 3 days of k * len / 360
        expected = np.arange(360) * standard.size / 360
        assert np.abs(np.array(matched) - expected).max() <= 3


def test_rotated_pole_store(world):
    catalog = load_run_catalog(str(world / "catalogs/cordex.yaml"))
    # a box holding every cell entirely: the weights are then exactly cos(lat)
    wide = Region(name="wide", lat_min=30.0, lat_max=55.0, lon_min=-20.0, lon_max=25.0)
    catalog = catalog.model_copy(update={"regions": [wide, *catalog.regions]})
    source, combo, datastore = _combo(
        catalog, "cordex", experiment_id="ssp585", source_id="TWIN-ESM-C_TWIN-RCM-Y"
    )
    got = extract_combo(catalog, source, combo, datastore).data.compute()
    path = next((world / "cordex").rglob("tas_MED-TWIN_TWIN-ESM-C_ssp585_*.nc"))
    raw = xr.open_dataset(path, engine="h5netcdf", decode_times=CFTIME).load()
    assert raw.lat.dims == ("rlat", "rlon")
    w = np.cos(np.deg2rad(raw.lat.values))
    expected = _area_mean(raw.tas.values.astype(float), w)
    standard = got.tas.sel(region="wide").to_series()
    for t, value in zip(raw.time.values, expected, strict=True):
        assert standard[pd.Timestamp(t.year, t.month, t.day)] == pytest.approx(value, rel=1e-6)
    assert not got.to_array().sel(region="gulf_of_lion_shelf").isnull().any()


def test_cache_is_reused_and_invalidated(world, tmp_path):
    catalog = load_run_catalog(str(world / "catalogs/reanalysis.yaml"))
    cache = PredictorCache(str(tmp_path / "cache"))
    first = fill_cache(catalog, cache, sources=["era20c"])
    assert [o.status for o in first] == ["extracted"]
    again = fill_cache(catalog, cache, sources=["era20c"])
    assert [o.status for o in again] == ["cached"]
    source, combo, _ = _combo(catalog, "era20c")
    key = fingerprint(catalog, source, combo)
    cached = cache.get(source, combo, key)
    assert cached is not None and cached.attrs["fingerprint"] == key
    # a changed catalog entry (another period) is a new key: extracted again
    changed = source.model_copy(update={"period": source.period.model_copy(update={"end": 2010})})
    catalog2 = catalog.model_copy(update={"sources": [changed]})
    assert fingerprint(catalog2, changed, combo) != key
    assert [o.status for o in fill_cache(catalog2, cache)] == ["extracted"]


def test_a_bad_combination_does_not_stop_the_others(world, tmp_path):
    catalog = load_run_catalog(str(world / "catalogs/cordex.yaml"))
    source = catalog.sources[0]
    # a variable some stores lack: remove one file of one combination
    victim = next((world / "cordex").rglob("psl_MED-TWIN_TWIN-ESM-A_ssp126_*.nc"))
    victim.rename(victim.with_suffix(".moved"))
    try:
        outcomes = fill_cache(catalog, PredictorCache(str(tmp_path / "c")), [source.name])
    finally:
        victim.with_suffix(".moved").rename(victim)
    failed = [o for o in outcomes if o.status == "failed"]
    assert len(failed) == 1 and "TWIN-ESM-A_TWIN-RCM-X/ssp126" in failed[0].combo
    assert "cordex.yaml" in failed[0].reason and "[cordex]" in failed[0].reason
    assert sum(o.status == "extracted" for o in outcomes) == len(outcomes) - 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.replace("tas: 2m_temperature", "tas: 2m_temperatur"), "2m_temperatur"),
        (lambda s: s.replace("version: 1", "version: 1\nbogus: 3"), "bogus"),
        (lambda s: s.replace("role: reference", "role: referee", 1), "role"),
        (lambda s: s.replace("time_block_days: 31", "time_block_days: 0"), "time_block_days"),
        (
            lambda s: s.replace(
                "time_block_days: 31", "time_block_days: 31\n  xarray_open_kwargs: {chunks: {}}"
            ),
            "remove xarray_open_kwargs.chunks",
        ),
    ],
)
def test_bad_catalogs_name_the_entry(world, tmp_path, change, message):
    text = (world / "catalogs/reanalysis.yaml").read_text()
    path = tmp_path / "catalogs" / "bad.yaml"
    path.parent.mkdir()
    (tmp_path / "collections").symlink_to(world / "collections")
    path.write_text(change(text))
    try:
        catalog = load_run_catalog(str(path))
    except CatalogError as exc:
        assert str(path) in str(exc) and message in str(exc)
        return
    source, combo, datastore = _combo(catalog, "era5")
    with pytest.raises(SourceError) as err:
        extract_combo(catalog, source, combo, datastore)
    assert "[era5]" in str(err.value) and message in str(err.value)


def test_unknown_units_and_wrong_calendar_are_named(world, tmp_path):
    catalog = load_run_catalog(str(world / "catalogs/cmip6.yaml"))
    source, combo, datastore = _combo(
        catalog, "cmip6", source_id="TWIN-ESM-C", experiment_id="historical", member_id="r2i1p1f1"
    )
    pattern = f"*/*/TWIN-ESM-C/historical/r2i1p1f1/day/psl/gn/v{CMIP_VERSION}"
    store = next((world / "cmip6").glob(pattern))
    meta = store / "psl" / ".zattrs"
    original = meta.read_text()
    try:
        meta.write_text(original.replace('"Pa"', '"furlongs"'))
        (store / ".zmetadata").write_text(
            (store / ".zmetadata").read_text().replace('"units": "Pa"', '"units": "furlongs"')
        )
        with pytest.raises(SourceError) as err:
            extract_combo(catalog, source, combo, datastore).data.compute()
        assert "psl" in str(err.value) and "furlongs" in str(err.value)
        assert "TWIN-ESM-C/historical/r2i1p1f1" in str(err.value)
    finally:
        meta.write_text(original)
        (store / ".zmetadata").write_text(
            (store / ".zmetadata").read_text().replace('"units": "furlongs"', '"units": "Pa"')
        )


def test_unreachable_store_is_reported(world, tmp_path):
    catalog = load_run_catalog(str(world / "catalogs/reanalysis.yaml"))
    source = catalog.source("era5").model_copy(
        update={"collection": str(tmp_path / "nowhere.json")}
    )
    with pytest.raises(SourceError, match=r"nowhere\.json not found"):
        open_collection(catalog, source)


def test_wrong_calendar_attribute_is_named(world):
    catalog = load_run_catalog(str(world / "catalogs/cmip6.yaml"))
    source, combo, datastore = _combo(
        catalog, "cmip6", source_id="TWIN-ESM-A", experiment_id="ssp245", member_id="r2i1p1f1"
    )
    pattern = f"*/*/TWIN-ESM-A/ssp245/r2i1p1f1/day/*/gn/v{CMIP_VERSION}"
    stores = list((world / "cmip6").glob(pattern))
    saved = {s: (s / ".zmetadata").read_text() for s in stores}
    try:
        for store, text in saved.items():
            (store / ".zmetadata").write_text(text.replace('"noleap"', '"lunar"'))
        with pytest.raises(SourceError) as err:
            extract_combo(catalog, source, combo, datastore)
        assert "TWIN-ESM-A/ssp245/r2i1p1f1" in str(err.value) and "lunar" in str(err.value)
    finally:
        for store, text in saved.items():
            (store / ".zmetadata").write_text(text)


def test_a_region_off_the_grid_is_named(world):
    catalog = load_run_catalog(str(world / "catalogs/reanalysis.yaml"))
    far = Region(name="baltic", lat_min=55.0, lat_max=60.0, lon_min=15.0, lon_max=20.0)
    catalog = catalog.model_copy(update={"regions": [far]})
    source, combo, datastore = _combo(catalog, "era20c")
    with pytest.raises(SourceError) as err:
        extract_combo(catalog, source, combo, datastore)
    assert "[era20c]" in str(err.value) and "baltic" in str(err.value)


def test_malformed_collection_is_named(world, tmp_path):
    catalog = load_run_catalog(str(world / "catalogs/reanalysis.yaml"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"esmcat_version": "0.1.0", "id": "x", "assets": {}}')
    source = catalog.source("era5").model_copy(update={"collection": str(broken)})
    with pytest.raises(SourceError) as err:
        open_collection(catalog, source)
    assert "[era5]" in str(err.value) and "not a valid ESM collection" in str(err.value)


def test_an_all_nan_region_series_is_named(world):
    catalog = load_run_catalog(str(world / "catalogs/reanalysis.yaml"))
    source, combo, datastore = _combo(catalog, "era20c")
    extracted = extract_combo(catalog, source, combo, datastore)
    data = extracted.data.compute()
    data["tas"] = data.tas.where(data.region != "mistral")  # e.g. a masked-out land region
    extracted.data = data
    with pytest.raises(SourceError) as err:
        check_regions(extracted, catalog, source)
    assert "[era20c]" in str(err.value) and "tas@mistral" in str(err.value)


def test_multi_variable_files_split_over_decades_are_joined(world, tmp_path):
    """ERA-20C's MARS conversions hold every variable per file, one file per decade.

    intake-esm lists each file once per variable and turns the file's other variables
    into coordinates; joined over several files they used to clash in the merge.
    """
    import shutil

    copy = tmp_path / "world"
    shutil.copytree(world, copy)
    folder = copy / "reanalysis/era20c"
    (original,) = folder.glob("era20c_sfc_6hr_*.nc")
    earlier = folder / "era20c_sfc_6hr_2008-2009.nc"
    with xr.open_dataset(original, engine="h5netcdf") as ds:
        shifted = ds.load().assign_coords(time=ds["time"] - pd.Timedelta(days=731))
    shifted.to_netcdf(earlier, engine="h5netcdf")
    table = pd.read_csv(copy / "collections/era20c.csv")
    table["path"] = table["path"].str.replace(str(world), str(copy))
    before = table[table.frequency != "fx"].copy()  # the invariant lsm file is listed once
    before["path"] = before["path"].str.replace(original.name, earlier.name)
    before["time_range"] = "20080101-20091231"
    pd.concat([before, table]).to_csv(copy / "collections/era20c.csv", index=False)
    collection = (copy / "collections/era20c.json").read_text()
    (copy / "collections/era20c.json").write_text(collection.replace(str(world), str(copy)))
    text = (copy / "catalogs/reanalysis.yaml").read_text()
    (copy / "catalogs/reanalysis.yaml").write_text(text.replace("start: 2010", "start: 2008"))
    catalog = load_run_catalog(str(copy / "catalogs/reanalysis.yaml"))
    source, combo, datastore = _combo(catalog, "era20c")
    daily = extract_combo(catalog, source, combo, datastore).data.load()
    assert str(daily["time"].values[0])[:10] == "2008-01-01"
    assert str(daily["time"].values[-1])[:10] == "2011-12-31"
    assert not daily["tas"].sel(region="gulf_of_lion_shelf").isnull().any()


def test_sea_shelf_on_the_rotated_grid_weights_by_the_sftlf_file(world):
    """A sea box holding every rotated cell: weights exactly cos(lat) x (1 - sftlf / 100)."""
    catalog = load_run_catalog(str(world / "catalogs/cordex.yaml"))
    wide = Region(
        name="wide_sea", lat_min=30.0, lat_max=55.0, lon_min=-20.0, lon_max=25.0, surface="sea"
    )
    catalog = catalog.model_copy(update={"regions": [wide]})
    source, combo, datastore = _combo(
        catalog, "cordex", experiment_id="historical", source_id="TWIN-ESM-A_TWIN-RCM-X"
    )
    assert combo.land_fraction.endswith("_v1_fx.nc")
    got = extract_combo(catalog, source, combo, datastore).data.compute()
    raw = xr.open_dataset(
        next((world / "cordex").rglob("tas_MED-TWIN_TWIN-ESM-A_historical_*.nc")),
        engine="h5netcdf",
        decode_times=CFTIME,
    ).load()
    sftlf = xr.open_dataset(combo.land_fraction.removeprefix("file://"), engine="h5netcdf")
    assert sftlf.sftlf.attrs["units"] == "%" and 0 < float(sftlf.sftlf.min()) < 50
    w = np.cos(np.deg2rad(raw.lat.values)) * (1.0 - sftlf.sftlf.values / 100.0)
    expected = _area_mean(raw.tas.values.astype(float), w)
    series = got.tas.sel(region="wide_sea").to_series()
    for t, value in zip(raw.time.values, expected, strict=True):
        assert series[pd.Timestamp(t.year, t.month, t.day)] == pytest.approx(value, rel=1e-6)
    assert got.attrs["land_fraction"] == "sftlf"


def test_a_missing_land_fraction_fails_that_combination_only(world):
    """A model member without an fx store: that combination fails, naming what is missing."""
    catalog = load_run_catalog(str(world / "catalogs/cmip6.yaml"))
    source = catalog.sources[0]
    # only r1i1p1f1 has an fx store in the twin, as often in the Pangeo archive
    strict = source.land_fraction.model_copy(
        update={"match": ["source_id", "grid_label", "member_id"]}
    )
    source = source.model_copy(update={"land_fraction": strict})
    catalog = catalog.model_copy(update={"sources": [source]})
    datastore = open_collection(catalog, source)
    combos = {
        c.label: c
        for c in enumerate_combos(catalog, source, datastore)
        if c.labels["source_id"] == "TWIN-ESM-A" and c.labels["experiment_id"] == "ssp126"
    }
    done = extract_combo(catalog, source, combos["TWIN-ESM-A/ssp126/r1i1p1f1"], datastore)
    assert not done.data.tas.sel(region="gulf_of_lion_shelf").isnull().any()
    missing = combos["TWIN-ESM-A/ssp126/r2i1p1f1"]
    assert missing.land_fraction == ""
    with pytest.raises(SourceError) as err:
        extract_combo(catalog, source, missing, datastore)
    message = str(err.value)
    assert "[cmip6] TWIN-ESM-A/ssp126/r2i1p1f1" in message and "no land fraction 'sftlf'" in message
    assert "land_fraction: unmasked" in message


def test_unmasked_opt_out_and_an_all_land_sea_region(world):
    catalog = load_run_catalog(str(world / "catalogs/reanalysis.yaml"))
    source, combo, datastore = _combo(catalog, "era5")
    masked = extract_combo(catalog, source, combo, datastore).data.compute()
    unmasked_source = source.model_copy(update={"land_fraction": "unmasked"})
    plain = extract_combo(catalog, unmasked_source, combo, datastore).data.compute()
    assert plain.attrs["land_fraction"].startswith("unmasked")
    everything = [r.model_copy(update={"surface": "all"}) for r in catalog.regions]
    by_box = extract_combo(
        catalog.model_copy(update={"regions": everything}), source, combo, datastore
    ).data.compute()
    xr.testing.assert_identical(plain.drop_attrs(), by_box.drop_attrs())
    # only the sea shelf changes (its hand computation is in test_era5_hourly_store)
    shelf = "gulf_of_lion_shelf"
    assert float(np.abs(masked.tas - plain.tas).sel(region=shelf).max()) > 0.01
    xr.testing.assert_identical(
        masked.drop_sel(region=shelf).drop_attrs(), plain.drop_sel(region=shelf).drop_attrs()
    )

    inland = Region(
        name="massif_central", lat_min=44.5, lat_max=45.0, lon_min=-0.5, lon_max=1.5, surface="sea"
    )
    catalog = catalog.model_copy(update={"regions": [inland]})
    with pytest.raises(SourceError) as err:
        extract_combo(catalog, source, combo, datastore)
    assert "[era5]" in str(err.value) and "'massif_central'" in str(err.value)
    assert "cells land" in str(err.value)
