"""ERA5 daily statistics as the new CDS delivers them: layout, daily totals, one open per file.

The twin writes them from the same hourly fields as its ARCO-like hourly store,
so the hourly store is the reference: a daily total from the CDS files must be
the sum of the same day's hours there (ERA5 stamps an hour's amount at its end,
so day D is 01 UTC of D to 00 UTC of D+1), and the extracted predictors of the
two catalogs must agree day by day.
"""

from __future__ import annotations

import warnings

import h5netcdf
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers import small_preset

from cascadia.sources.catalog import SourceError, enumerate_combos, open_collection, open_kwargs
from cascadia.sources.config import RunCatalog, load_run_catalog
from cascadia.sources.extraction import extract_combo
from cascadia.twin.world import build_world

CDS_VARIABLES = ["d2m", "lsm", "msl", "si10", "ssrd", "sst", "t2m", "tp", "u10", "v10"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("cds") / "world"
    build_world(str(out), small_preset("cds"), seed=2)
    return out


def _extract(catalog: RunCatalog) -> xr.Dataset:
    source = catalog.source("era5")
    datastore = open_collection(catalog, source)
    (combo,) = enumerate_combos(catalog, source, datastore)
    return extract_combo(catalog, source, combo, datastore).data.compute()


def test_files_are_laid_out_as_the_new_cds_writes_them(world):
    files = sorted((world / "reanalysis/era5-cds").glob("*.nc"))
    assert [f.name for f in files] == [
        "era5-daily-stats_gulf-of-lion_2013.nc",
        "era5-daily-stats_gulf-of-lion_2014.nc",
    ]
    with xr.open_dataset(files[0], engine="h5netcdf") as ds:
        assert sorted(ds.data_vars) == CDS_VARIABLES
        assert ds["t2m"].dims == ("valid_time", "latitude", "longitude")
        assert ds.sizes["valid_time"] == 365
        assert ds.valid_time.encoding["units"] == "seconds since 1970-01-01"
        assert (ds.valid_time.dt.hour == 0).all()
        assert ds.latitude[0] > ds.latitude[-1]
        assert ds.longitude.min() < 0 and np.all(np.diff(ds.longitude) > 0)
        assert {"number", "expver"} <= set(ds.coords)
        units = {n: ds[n].attrs["units"] for n in CDS_VARIABLES}
        assert units == {
            "d2m": "K",
            "lsm": "(0 - 1)",
            "msl": "Pa",
            "si10": "m s**-1",
            "ssrd": "J m**-2",
            "sst": "K",
            "t2m": "K",
            "tp": "m",
            "u10": "m s**-1",
            "v10": "m s**-1",
        }
        assert float(ds.tp.min()) >= 0.0 and float(ds.tp.max()) < 0.3  # metres per day


def test_daily_totals_are_the_hourly_stores_totals_of_the_same_day(world):
    hourly = xr.open_zarr(world / "reanalysis/era5/era5-hourly-single-levels.zarr")
    hourly_tp = hourly["total_precipitation"].load()
    days = xr.open_mfdataset(
        sorted((world / "reanalysis/era5-cds").glob("*.nc")), engine="h5netcdf"
    ).load()
    # day D: the hours stamped 01 UTC of D to 00 UTC of D+1 (the last day lacks its 00 UTC)
    summed = hourly_tp.shift(time=-1).resample(time="1D").sum(min_count=24)
    on_grid = summed.assign_coords(longitude=(summed.longitude + 180) % 360 - 180)
    on_grid = on_grid.sortby("longitude").rename(time="valid_time")
    tp = days["tp"].isel(valid_time=slice(0, -1))
    expected = on_grid.sel(valid_time=tp.valid_time)
    np.testing.assert_allclose(tp.values, expected.values, rtol=1e-5, atol=1e-9)
    assert float(tp.sum()) > 0.5  # it rains in the twin

    cds = _extract(load_run_catalog(str(world / "catalogs/era5-cds.yaml")))
    reference = _extract(load_run_catalog(str(world / "catalogs/reanalysis.yaml")))
    assert cds.time.values[0] == reference.time.values[0] == np.datetime64("2013-01-01")
    same = slice(None, "2014-12-30")  # the hourly store's last day misses its 00 UTC hour
    for name in ("pr", "rsds", "tas", "psl", "uas", "vas", "sfcWind"):
        expected = reference[name].sel(time=same).values
        np.testing.assert_allclose(  # float32 sums of 24 values: 1e-6 of the series' scale
            cds[name].sel(time=same).values,
            expected,
            rtol=0,
            atol=1e-6 * float(np.abs(expected).max()),
            err_msg=name,
        )
    # shifted by a day, the precipitation series would not match at all
    shifted = cds["pr"].sel(time=same).shift(time=1).isel(time=slice(1, None))
    ref = reference["pr"].sel(time=same).isel(time=slice(1, None))
    assert float(np.abs(shifted - ref).mean()) > 0.3 * float(ref.mean())


def _with_accumulated(path, **accumulated: str) -> RunCatalog:
    catalog = load_run_catalog(str(path))
    source = catalog.source("era5")
    return catalog.model_copy(
        update={"sources": [source.model_copy(update={"accumulated": accumulated})]}
    )


def test_an_hourly_convention_on_daily_totals_is_refused(world):
    catalog = _with_accumulated(world / "catalogs/era5-cds.yaml", tp="period_ending")
    with pytest.raises(SourceError, match=r"'tp' is declared 'period_ending'.*daily_total"):
        _extract(catalog)


def test_a_daily_total_declared_on_hourly_amounts_is_refused(world):
    catalog = _with_accumulated(
        world / "catalogs/reanalysis.yaml", total_precipitation="daily_total"
    )
    with pytest.raises(SourceError, match=r"'total_precipitation'.*3600 s"):
        _extract(catalog)


def test_each_file_is_opened_once(world, monkeypatch):
    opened: list[str] = []
    original = h5netcdf.File.__init__

    def counting(self, path, *args, **kwargs):
        opened.append(str(path))
        original(self, path, *args, **kwargs)

    monkeypatch.setattr(h5netcdf.File, "__init__", counting)
    catalog = load_run_catalog(str(world / "catalogs/era5-cds.yaml"))
    source = catalog.source("era5")
    datastore = open_collection(catalog, source)
    (combo,) = enumerate_combos(catalog, source, datastore)
    assert len(combo.assets) == 2 and len(source.source_variables) == 9

    # what opening the collection key by key does: every file once per variable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        datastore.search(variable_id=source.source_variables).to_dataset_dict(
            xarray_open_kwargs=open_kwargs(source, datastore), progressbar=False
        )
    assert len(opened) == 18
    opened.clear()

    data = extract_combo(catalog, source, combo, datastore).data.compute()
    # every file once for the data, and the file whose lsm masks the sea region once more
    files = sorted(a.removeprefix("file://") for a in combo.assets)
    assert sorted(opened) == sorted([*files, combo.land_fraction.removeprefix("file://")])
    assert pd.Timestamp(data.time.values[-1]) == pd.Timestamp("2014-12-31")
