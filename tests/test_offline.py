"""Offline and unreachable archives: a run ends within seconds, one line per store.

The test condition is this machine's (and CI's): no network. The shipped catalogs
point at the real archives (ARCO-ERA5 on Google Cloud, Pangeo CMIP6, EURO-CORDEX on
AWS) and at placeholder templates; ``run`` on each must exit non-zero in seconds,
with one line per failure naming the source and the URL, never a library traceback,
and leave no results store behind. A reachable collection whose stores sit behind a
closed loopback port (S3 and GCS endpoints) stands for archives that are listed but
not served: every combination fails fast, one line each.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from helpers import two_year_preset, world_and_smoke_model

from cascadia.cli import main
from cascadia.sources.reach import Unreachable, endpoint, ensure_reachable

CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"
ARCO = "gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3"
EURO_CORDEX_TABLE = "https://euro-cordex.s3.eu-central-1.amazonaws.com/catalog/CORDEX.csv"
PANGEO = "https://storage.googleapis.com/cmip6/pangeo-cmip6.json"
#: The seconds a user may wait for a run that cannot start (the issue's bound).
BOUND = 15.0

#: Shipped catalog -> {failure label: what its one line must name}.
SHIPPED = {
    "cordex.yaml": {
        "euro-cordex *": EURO_CORDEX_TABLE,
        "med-cordex *": "collections/med-cordex.example.json",
    },
    "era5.yaml": {"ERA5/reanalysis/r1": ARCO},
    "cmip6.yaml": {"cmip6 *": PANGEO},
    "20cr.yaml": {"20cr *": "collections/20cr.example.json"},
    "era20c.yaml": {"era20c *": "collections/era20c.example.json"},
    "era5-cds.yaml": {"era5 *": "collections/era5-cds.example.json"},
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke model: ``run`` loads the model before it plans, as a user's run would."""
    root = tmp_path_factory.mktemp("offline")
    world_and_smoke_model(root, two_year_preset("offline"))
    return root / "model"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(catalog: Path, model: Path, tmp_path: Path, capsys) -> tuple[int, float, str, str]:
    out = tmp_path / "results.zarr"
    started = time.perf_counter()
    argv = ["run", "--catalog", str(catalog), "--model", str(model), "--out", str(out)]
    code = main([*argv, "--cache", str(tmp_path / "cache")])
    elapsed = time.perf_counter() - started
    captured = capsys.readouterr()
    assert not out.exists(), "a run that cannot start must not create the store"
    return code, elapsed, captured.out, captured.err


def _failure_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("failed ")]


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_catalog_offline_fails_in_seconds_one_line_per_store(
    name: str, model: Path, tmp_path: Path, capsys
) -> None:
    code, elapsed, out, err = _run(CATALOGS / name, model, tmp_path, capsys)
    assert code == 1
    assert elapsed < BOUND, f"{name}: {elapsed:.1f} s"
    lines = _failure_lines(err)
    assert len(lines) == len(SHIPPED[name]), lines
    for label, named in SHIPPED[name].items():
        (line,) = [x for x in lines if x.startswith(f"failed {label}: ")]
        assert named in line
        source = label.split(" ")[0] if label.endswith("*") else "era5"
        assert f"[{source}]" in line
        if "example" in named:
            assert "placeholders" in line and "point 'collection'" in line
        else:
            assert "cannot be reached" in line
    assert "Traceback" not in out + err
    summary = f"0 done, 0 up to date, {len(SHIPPED[name])} failed; 0 tasks"
    assert summary in out and "the store was not touched" in out


def test_cordex_catalog_never_waits_for_the_unused_reference(
    model: Path, tmp_path: Path, capsys
) -> None:
    """No CORDEX combination can be listed, so ERA5 (the bias-adjustment reference on
    Google Cloud) is neither fingerprinted nor named."""
    code, elapsed, _, err = _run(CATALOGS / "cordex.yaml", model, tmp_path, capsys)
    assert code == 1 and elapsed < BOUND
    assert "googleapis" not in err and "arco-era5" not in err


def _collection(folder: Path, name: str, rows: list[dict[str, str]]) -> Path:
    """A local intake-esm collection (CSV + JSON) of one-variable Zarr assets."""
    pd.DataFrame(rows).to_csv(folder / f"{name}.csv", index=False)
    columns = [c for c in rows[0] if c != "path"]
    spec = {
        "esmcat_version": "0.1.0",
        "id": name,
        "description": f"{name}: stores behind a closed port",
        "catalog_file": f"{name}.csv",
        "attributes": [{"column_name": c, "vocabulary": ""} for c in columns],
        "assets": {"column_name": "path", "format": "zarr"},
        "aggregation_control": {
            "variable_column_name": "variable_id",
            "groupby_attrs": ["source_id", "experiment_id", "member_id"],
            "aggregations": [{"type": "union", "attribute_name": "variable_id"}],
        },
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def _source(name: str, collection: Path, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "collection": str(collection),
        "storage_options": options,
        "role": "hindcast",
        "period": {"start": 2000, "end": 2001},
        "variables": {"tas": "tas", "pr": "pr"},
    }


def test_listed_but_unserved_stores_fail_each_combination_in_seconds(
    model: Path, tmp_path: Path, capsys
) -> None:
    port = _closed_port()
    rows = {
        "s3": [
            {
                "source_id": "MODEL-S3",
                "experiment_id": "reanalysis",
                "member_id": f"r{m}",
                "variable_id": v,
                "path": f"s3://bucket/MODEL-S3/r{m}/{v}.zarr",
            }
            for m in (1, 2, 3)
            for v in ("tas", "pr")
        ],
        "gcs": [
            {
                "source_id": "MODEL-GS",
                "experiment_id": "reanalysis",
                "member_id": f"r{m}",
                "variable_id": v,
                "path": f"gs://bucket/MODEL-GS/r{m}/{v}.zarr",
            }
            for m in (1, 2)
            for v in ("tas", "pr")
        ],
    }
    endpoint_url = f"http://127.0.0.1:{port}"
    catalog = {
        "version": 1,
        "regions": [
            {"name": "shelf", "lat_min": 42.3, "lat_max": 43.6, "lon_min": 3.0, "lon_max": 5.0}
        ],
        "sources": [
            _source(
                "s3-store",
                _collection(tmp_path, "s3", rows["s3"]),
                {"anon": True, "client_kwargs": {"endpoint_url": endpoint_url}},
            ),
            _source(
                "gcs-store",
                _collection(tmp_path, "gcs", rows["gcs"]),
                {"token": "anon", "endpoint_url": endpoint_url},
            ),
        ],
    }
    path = tmp_path / "unserved.yaml"
    path.write_text(yaml.safe_dump(catalog))
    code, elapsed, out, err = _run(path, model, tmp_path, capsys)
    assert code == 1 and elapsed < BOUND, elapsed
    lines = _failure_lines(err)
    expected = {f"MODEL-S3/reanalysis/r{m}": f"s3://bucket/MODEL-S3/r{m}/" for m in (1, 2, 3)} | {
        f"MODEL-GS/reanalysis/r{m}": f"gs://bucket/MODEL-GS/r{m}/" for m in (1, 2)
    }
    assert len(lines) == len(expected), lines
    for label, url in expected.items():
        (line,) = [x for x in lines if x.startswith(f"failed {label}: ")]
        assert url in line and f"127.0.0.1:{port}" in line and "connection refused" in line
    assert "Traceback" not in out + err


def test_each_filesystem_is_probed_where_its_library_connects(monkeypatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert endpoint(ARCO, {"token": "anon"}) == ("storage.googleapis.com", 443)
    assert endpoint("s3://euro-cordex/CMIP5/x", {"anon": True}) == ("s3.amazonaws.com", 443)
    regional = {"client_kwargs": {"region_name": "eu-central-1"}}
    assert endpoint("s3://euro-cordex/x", regional) == ("s3.eu-central-1.amazonaws.com", 443)
    moto = {"endpoint_url": "http://127.0.0.1:5555"}
    assert endpoint("simplecache::s3://bucket/x", moto) == ("127.0.0.1", 5555)
    assert endpoint(EURO_CORDEX_TABLE) == ("euro-cordex.s3.eu-central-1.amazonaws.com", 443)
    assert endpoint("http://localhost:8080/c.json") == ("localhost", 8080)
    assert endpoint("file:///data/x.nc") is None and endpoint("/data/x.nc") is None
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")
    assert endpoint("gs://bucket/x") == ("127.0.0.1", 4443)


def test_a_proxy_that_refuses_is_named(monkeypatch) -> None:
    """Behind a proxy the libraries connect to the proxy: so does the probe."""
    port = _closed_port()
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    with pytest.raises(Unreachable) as err:
        ensure_reachable("https://data.example.org/catalog.json")
    assert time.perf_counter() - started < 2.0
    assert f"through the proxy 127.0.0.1:{port}" in str(err.value)
    assert "data.example.org:443" in str(err.value)


def test_run_as_typed_finds_its_model_and_store_by_default(
    model: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """`run --catalog catalogs/cordex.yaml`, nothing else: the model from $CASCADIA_MODEL
    (else ./model), the store ./results.zarr; offline it fails in seconds, one line per
    source, and creates no store. Without any model it says how to give one, instantly."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CASCADIA_MODEL", raising=False)
    monkeypatch.delenv("CASCADIA_RESULTS", raising=False)
    argv = ["run", "--catalog", str(CATALOGS / "cordex.yaml")]
    started = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - started < 2.0
    err = capsys.readouterr().err
    assert err.startswith("cascadia-ensemble: error: no model given and no ./model model")
    assert "set CASCADIA_MODEL" in err and len(err.strip().splitlines()) == 1

    for how in ("environment", "folder"):
        if how == "environment":
            monkeypatch.setenv("CASCADIA_MODEL", str(model))
        else:
            monkeypatch.delenv("CASCADIA_MODEL")
            (tmp_path / "model").symlink_to(model, target_is_directory=True)
        started = time.perf_counter()
        code = main(argv)
        elapsed = time.perf_counter() - started
        out, err = capsys.readouterr()
        assert code == 1 and elapsed < BOUND, (how, elapsed)
        assert sorted(line.split(":")[0] for line in _failure_lines(err)) == [
            "failed euro-cordex *",
            "failed med-cordex *",
        ]
        assert "Traceback" not in out + err
        assert not (tmp_path / "results.zarr").exists()


def test_a_bad_catalog_is_reported_before_the_heavy_imports(tmp_path) -> None:
    """Quiet, never slow (issue 17 item 7): `run` names a catalog's errors before it imports
    the pipeline (torch, dask.distributed, xclim), measured in a fresh interpreter."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [{name: x, collection: y}]\n")
    code = (
        "import sys, time; t = time.perf_counter(); from cascadia.cli import main; "
        f"rc = main(['run', '--catalog', {str(bad)!r}, '--model', {str(tmp_path)!r}, "
        f"'--out', {str(tmp_path / 'o.zarr')!r}]); "
        "print(sorted(m for m in ('torch', 'xclim', 'distributed') if m in sys.modules)); "
        "sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert "sources[x].role: Field required" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.strip() == "[]"  # none of the heavy libraries was imported


def test_tables_in_a_log_are_not_wrapped(capsys) -> None:
    """A summary row longer than 80 columns stays one line when stdout is not a terminal."""
    from rich.table import Table

    from cascadia.cli import _stdout

    table = Table(title="summary")
    for column in ("combination", "status", "reason"):
        table.add_column(column)
    label = "reanalysis.20CRv3-like.r10i1p1f1 " * 2
    table.add_row(label, "failed", "model inputs: tas@gulf_of_lion_shelf: 92 missing days")
    _stdout().print(table)
    lines = [line for line in capsys.readouterr().out.splitlines() if "failed" in line]
    assert len(lines) == 1
    assert label.strip() in lines[0]
    assert "92 missing days" in lines[0]
