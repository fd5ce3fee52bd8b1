"""``cascadia-ensemble serve`` on loopback: a run through the service, then every way out.

One module-scoped service (the real command, in a subprocess) serves a store that does
not exist yet. A run of the session's tiny catalog (tests/conftest.py ``tiny_run``) is
submitted with the bearer token (refused without it or with a wrong one), polled to
completion, and must have written what the session's direct run wrote. Then: series and
events equal what ``open_cube`` reads; ``xr.open_zarr`` over HTTP equals the local
store; the HTML page, opened in a real headless Chromium, draws the band, the mean and
the event days; schemathesis finds no 5xx; 200 concurrent series queries are all right
(p50/p95 latency printed, docs/serve.md).
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import schemathesis
import xarray as xr
from helpers import chromium
from hypothesis import HealthCheck, given, settings
from PIL import Image
from schemathesis.checks import not_a_server_error

from cascadia.run.store import COMBO_DIMS, RESULT_VARS, combo_status, open_cube

pytestmark = pytest.mark.slow

SOURCE = "TWIN-ESM-A"
COMBOS = [(e, SOURCE, m) for e in ("historical", "ssp585") for m in ("r1i1p1f1", "r2i1p1f1")]
#: The service's limit of rows per answer: the page's and the load test's series fit,
#: a whole store's quantiles (4 combinations x 1095 days x 2 depths x 5) do not.
MAX_ROWS = 20_000
#: Okabe-Ito colours the page draws with (cascadia/service/page.html).
BAND, MEAN = (0x56, 0xB4, 0xE9), (0xD5, 0x5E, 0x00)
SCENARIOS = [(0xE6, 0x9F, 0x00), (0x00, 0x9E, 0x73)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def service(tiny_run, tmp_path_factory: pytest.TempPathFactory):
    """``cascadia-ensemble serve`` on a free loopback port, on a store not written yet."""
    root = tmp_path_factory.mktemp("service")
    token = secrets.token_hex(16)
    token_file = root / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    port = _free_port()
    store = root / "served.zarr"
    log = root / "service.log"
    command = [
        sys.executable, "-m", "cascadia.cli", "serve",
        "--results", str(store), "--port", str(port), "--token-file", str(token_file),
        "--cluster", "local", "--workers", "1",
        "--model", tiny_run["model"], "--cache", tiny_run["cache"],
        "--max-rows", str(MAX_ROWS),
    ]  # fmt: skip
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the service did not start: {log.read_text()[-3000:]}")
        time.sleep(0.3)
    yield {"base": base, "store": str(store), "token": token, "log": log, "root": root}
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def served_run(service, tiny_run) -> dict[str, Any]:
    """A run submitted through the service: refused without a token, polled to its end."""
    body = {"kind": "run", "catalogs": [tiny_run["catalog"]]}
    auth = _bearer(service["token"])
    with httpx.Client(base_url=service["base"], timeout=60) as client:
        before = client.get("/health").json()
        refused = [
            client.post("/runs", json=body),
            client.post("/runs", json=body, headers=_bearer("not-" + service["token"])),
        ]
        accepted = client.post("/runs", json=body, headers=auth)
        assert accepted.status_code == 202, accepted.text
        run_id = accepted.json()["id"]
        busy = client.post("/runs", json=body, headers=auth)
        anonymous = client.get(f"/runs/{run_id}")
        started, polls = time.monotonic(), []
        while True:
            state = client.get(f"/runs/{run_id}", headers=auth).json()
            polls.append(state)
            if state["status"] not in ("queued", "running"):
                break
            assert time.monotonic() - started < 900, state
            time.sleep(0.5)
    print(f"run through the service: {time.monotonic() - started:.1f} s")
    return {
        "before": before,
        "refused": refused,
        "accepted": accepted,
        "busy": busy,
        "anonymous": anonymous,
        "polls": polls,
    }


@pytest.fixture(scope="module")
def cube(served_run, service) -> xr.Dataset:
    with open_cube(service["store"]) as ds:
        return ds.load()


def test_a_run_submitted_with_its_token_is_polled_to_completion(
    service, served_run, tiny_run
) -> None:
    assert served_run["before"]["store"] == "absent"
    for response in served_run["refused"]:
        assert response.status_code == 401
        assert response.json() == {"detail": "a valid bearer token is required"}
        assert response.headers["www-authenticate"] == "Bearer"
    assert served_run["anonymous"].status_code == 401
    assert served_run["accepted"].json()["status"] in ("queued", "running")
    busy = served_run["busy"]
    assert busy.status_code == 429 and "at most 1 at once" in busy.json()["detail"]

    polls = served_run["polls"]
    final = polls[-1]
    assert final["status"] == "done", final
    assert final["progress"] == {"done": 4, "total": 4}
    assert final["counts"] == {"done": 4} and final["errors"] == []
    assert final["spread"] == "written"
    done = [p["progress"]["done"] for p in polls]
    assert done == sorted(done)  # progress only grows
    assert any(p["status"] == "running" for p in polls)

    # the service's run wrote what the session's direct run wrote, number for number
    assert set(combo_status(service["store"])["status"]) == {"done"}
    mine = combo_status(service["store"]).set_index(list(COMBO_DIMS))
    theirs = combo_status(tiny_run["store"]).set_index(list(COMBO_DIMS))
    assert mine["fingerprint"].to_dict() == theirs["fingerprint"].to_dict()
    with open_cube(service["store"]) as served, open_cube(tiny_run["store"]) as direct:
        for name in RESULT_VARS:
            np.testing.assert_array_equal(served[name].values, direct[name].values, name)
    # the token is never logged
    assert service["token"] not in service["log"].read_text()


def test_runs_refuse_bad_submissions_with_the_reason(service, served_run) -> None:
    auth = _bearer(service["token"])
    with httpx.Client(base_url=service["base"], timeout=30) as client:
        missing = client.post("/runs", json={"catalogs": ["/no/such.yaml"]}, headers=auth)
        assert missing.status_code == 400
        assert missing.json()["detail"] == "/no/such.yaml: no such run catalog"
        empty = client.post("/runs", json={"catalogs": []}, headers=auth)
        assert empty.status_code == 422
        reprocess = client.post(
            "/runs", json={"kind": "reprocess", "catalogs": ["/no/such.yaml"]}, headers=auth
        )
        assert reprocess.status_code == 400
        if find_spec("cascadia.service.reprocess") is None:
            assert "kind 'reprocess' is unavailable" in reprocess.json()["detail"]
        else:
            assert reprocess.json()["detail"] == "/no/such.yaml: no such run catalog"
        assert client.get("/runs/nope", headers=auth).status_code == 404


def _get(base: str, path: str, **params: Any) -> httpx.Response:
    response = httpx.get(f"{base}{path}", params=params, timeout=60)
    assert response.status_code == 200, response.text
    return response


def _same(got: Any, want: Any) -> None:
    np.testing.assert_array_equal(
        np.asarray(got, dtype=np.float64).astype(np.float32), np.asarray(want, dtype=np.float32)
    )


def test_series_and_events_equal_the_store(service, cube) -> None:
    base = service["base"]
    where = {
        "experiment": ["historical", "ssp585"],
        "member_id": "r2i1p1f1",
        "depth": 1000,
        "start": "2014-11-15",
        "end": "2015-02-10",
    }
    days = pd.date_range("2014-11-15", "2015-02-10")
    as_json = pd.DataFrame(_get(base, "/series", **where, stat="band").json())
    response = _get(base, "/series", **where, stat="band", format="csv")
    assert response.headers["transfer-encoding"] == "chunked"  # streamed
    as_csv = pd.read_csv(io.StringIO(response.text))
    for table in (as_json, as_csv):
        assert len(table) == 2 * len(days)
        for experiment in ("historical", "ssp585"):
            rows = table[table.experiment == experiment]
            assert rows["time"].tolist() == [str(d.date()) for d in days]
            at = {"experiment": experiment, "source_id": SOURCE, "member_id": "r2i1p1f1"}
            at |= {"depth": 1000.0, "time": days}
            _same(rows["temperature_mean"], cube["temperature_mean"].sel(at))
            _same(rows["temperature_std"], cube["temperature_std"].sel(at))
            for q in (0.05, 0.95):
                want = cube["temperature_quantile"].sel(at).sel(quantile=q)
                _same(rows[f"temperature_quantile_{q:g}"], want)
    # NetCDF: the selected cube, as open_cube reads it
    response = _get(base, "/series", **where, stat="members", format="netcdf")
    with xr.open_dataset(io.BytesIO(response.content), engine="h5netcdf") as got:
        want = cube["temperature_member"].sel(
            experiment=["historical", "ssp585"], member_id=["r2i1p1f1"], depth=[1000.0]
        )
        np.testing.assert_array_equal(got["temperature_member"].values, want.sel(time=days).values)
    # per-winter events of every combination
    events = pd.DataFrame(_get(base, "/events", depth=500).json())
    assert len(events) == 4 * cube.sizes["winter"]
    for row in events.itertuples(index=False):
        at = dict(zip(COMBO_DIMS, (row.experiment, row.source_id, row.member_id), strict=True))
        at |= {"winter": row.winter}
        _same([row.event_days], [cube["event_days"].sel(at | {"depth": 500.0}).item()])
        _same([row.ood_fraction], [cube["ood_fraction"].sel(at).item()])


def test_limits_and_bad_filters_are_answered_in_one_line(service, served_run) -> None:
    base = service["base"]
    too_big = httpx.get(f"{base}/series", params={"stat": "quantiles"}, timeout=60)
    assert too_big.status_code == 413
    rows = 4 * 1095 * 2 * 5
    assert too_big.json()["detail"].startswith(
        f"the request gives {rows} rows, more than the limit of {MAX_ROWS}"
    )
    unknown = httpx.get(f"{base}/series", params={"experiment": "ssp999"}, timeout=60)
    assert unknown.status_code == 400
    assert (
        unknown.json()["detail"] == "unknown experiment ssp999; the store has: historical, ssp585"
    )
    assert httpx.get(f"{base}/series", params={"depth": "deep"}).status_code == 422
    assert httpx.get(f"{base}/series", params={"stat": "median"}).status_code == 422


def test_remote_open_zarr_equals_the_local_store(service, served_run) -> None:
    remote = xr.open_zarr(f"{service['base']}/zarr").load()
    local = xr.open_zarr(service["store"]).load()
    xr.testing.assert_identical(remote, local)
    # the cube view (and the spread statistics, wherever the layout keeps them) alike
    with open_cube(f"{service['base']}/zarr") as far, open_cube(service["store"]) as near:
        xr.testing.assert_identical(far.load(), near.load())


def test_the_store_is_read_only_and_nothing_outside_it_is_served(service, served_run) -> None:
    secret = service["root"] / "secret.txt"
    secret.write_text("not for the web")
    host, port = service["base"].removeprefix("http://").split(":")
    attempts = [
        "/zarr/../secret.txt",
        "/zarr/%2e%2e/secret.txt",
        "/zarr/..%2fsecret.txt",
        "/zarr/temperature_mean/../../secret.txt",
        "/zarr//etc/passwd",
        "/zarr/%2fetc%2fpasswd",
        "/zarr/.",
        "/zarr/temperature_mean",  # a folder, not a key
    ]
    for path in attempts:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", path)  # sent as written: no client-side normalisation
        response = connection.getresponse()
        body = response.read()
        connection.close()
        assert response.status in (400, 404), (path, response.status)
        assert b"not for the web" not in body and b"root:" not in body
    for method in ("PUT", "POST", "DELETE"):
        response = httpx.request(method, f"{service['base']}/zarr/.zattrs", content=b"{}")
        assert response.status_code == 405
    assert json.loads(Path(service["store"], ".zattrs").read_text())  # untouched


def test_metrics_count_requests_latency_and_runs(service, served_run) -> None:
    text = _get(service["base"], "/metrics").text
    assert 'cascadia_runs_total{kind="run",outcome="done"} 1.0' in text
    counts = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("cascadia_http_requests_total{")
    }
    assert counts['cascadia_http_requests_total{method="POST",route="/runs",status="401"}'] >= 2
    assert counts['cascadia_http_requests_total{method="POST",route="/runs",status="202"}'] >= 1
    assert 'cascadia_http_request_duration_seconds_bucket{le="0.1",route="/health"}' in text


def test_openapi_schema_lists_every_endpoint(service) -> None:
    schema = _get(service["base"], "/openapi.json").json()
    paths = set(schema["paths"])
    for path in ("/health", "/store", "/combinations", "/series", "/events", "/spread"):
        assert path in paths
    assert {"/zarr/{key}", "/runs", "/runs/{run_id}", "/metrics", "/"} <= paths
    series = {p["name"] for p in schema["paths"]["/series"]["get"]["parameters"]}
    assert series == {
        "experiment",
        "source_id",
        "member_id",
        "depth",
        "start",
        "end",
        "stat",
        "format",
    }


# ------------------------------------------------------------------ the page in Chromium


def _screenshot(url: str, shot: Path, profile: Path) -> np.ndarray:
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=30000",  # the page's fetches and drawing finish first
        f"--screenshot={shot}",
        "--window-size=1200,1000",
    ]
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    return np.asarray(Image.open(shot).convert("RGB"))


def _pixels(shot: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """(row, column) of the pixels of exactly ``colour``."""
    return np.argwhere((shot == np.array(colour, dtype=np.uint8)).all(axis=2))


def test_the_page_plots_the_band_the_mean_and_the_event_days(
    service, served_run, cube, tmp_path: Path
) -> None:
    url = f"{service['base']}/?experiment=ssp585&source_id={SOURCE}&member_id=r1i1p1f1&depth=1000"
    shot = _screenshot(url, tmp_path / "page.png", tmp_path / "profile")
    band, mean = _pixels(shot, BAND), _pixels(shot, MEAN)
    # the band fills an area of the series plot, the mean line runs across it
    assert len(band) > 2000, len(band)
    assert len(mean) > 300, len(mean)
    assert np.ptp(mean[:, 1]) > 500  # the line spans the plot's width
    series_top, series_bottom = band[:, 0].min(), band[:, 0].max()
    inside = mean[(mean[:, 0] >= series_top - 5) & (mean[:, 0] <= series_bottom + 5)]
    assert len(inside) > 0.9 * len(mean)  # the mean runs inside the band's rows
    # a 10 x 10 marker per winter with event days, one colour per scenario, below the
    # series plot; ssp585 is drawn last, so none of its markers is hidden
    with_days = cube["event_days"].sel(depth=1000.0).notnull().any(["source_id", "member_id"])
    for colour, experiment in zip(SCENARIOS, ("historical", "ssp585"), strict=True):
        markers = _pixels(shot, colour)
        assert len(markers) >= 100, (experiment, len(markers))
        assert markers[:, 0].min() > series_bottom
    winters = int(with_days.sel(experiment="ssp585").sum())
    assert winters >= 2 and len(_pixels(shot, SCENARIOS[1])) >= 90 * winters
    # the page draws from the service's data: the same page opened from a file, where
    # its requests to the service fail, draws nothing (only its legend's swatches)
    page = tmp_path / "page.html"
    page.write_text(httpx.get(url).text)
    blank = _screenshot(page.as_uri(), tmp_path / "blank.png", tmp_path / "profile2")
    assert len(_pixels(blank, MEAN)) < 0.1 * len(mean)
    assert len(_pixels(blank, BAND)) < 0.1 * len(band)
    # and the band has one point per day of the combination's values
    dom = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         f"--user-data-dir={tmp_path / 'profile3'}", "--virtual-time-budget=30000",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=180, check=True,
    ).stdout  # fmt: skip
    values = cube["temperature_mean"].sel(
        experiment="ssp585", source_id=SOURCE, member_id="r1i1p1f1", depth=1000.0
    )
    assert f'data-points="{int(values.notnull().sum())}"' in dom


# ------------------------------------------------------------------ properties and load


def test_the_openapi_schema_finds_no_server_error(service, served_run) -> None:
    """Property-based requests of every operation of the schema (schemathesis' strategies
    driven by hypothesis here: its pytest loader ``from_fixture`` needs pytest < 9)."""
    schema = schemathesis.openapi.from_url(f"{service['base']}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    calls = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case) -> None:
            response = case.call_and_validate(checks=[not_a_server_error], timeout=60)
            calls.append(response.status_code)

        check()
    assert len(calls) >= 5 * len(operations) and max(calls) < 500


def _expected(cube: xr.Dataset, query: dict[str, Any]) -> np.ndarray:
    at = {
        "experiment": query["experiment"],
        "source_id": SOURCE,
        "member_id": query["member_id"],
        "depth": float(query["depth"]),
    }
    values = cube["temperature_mean"].sel(at).sel(time=slice(query["start"], query["end"]))
    return values.values


def test_200_concurrent_series_queries_are_all_answered_right(service, cube) -> None:
    queries = []
    for i in range(200):
        experiment, _, member = COMBOS[i % 4]
        year = 2013 + (i % 2) if experiment == "historical" else 2015
        queries.append(
            {
                "experiment": experiment,
                "member_id": member,
                "depth": (500, 1000)[(i // 4) % 2],
                "start": f"{year}-{1 + i % 12:02d}",
                "end": f"{year}-12-31",
                "stat": "mean",
                "format": "json",
            }
        )

    async def one(client: httpx.AsyncClient, query: dict[str, Any]) -> tuple[float, Any]:
        started = time.perf_counter()
        response = await client.get("/series", params=query)
        assert response.status_code == 200, response.text
        return time.perf_counter() - started, response.json()

    async def all_at_once() -> list[tuple[float, Any]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(
            base_url=service["base"], timeout=300, limits=limits
        ) as client:
            return await asyncio.gather(*(one(client, q) for q in queries))

    # one at a time first: the service time of a query without queueing
    with httpx.Client(base_url=service["base"], timeout=60) as client:
        alone = []
        for query in queries[:20]:
            started = time.perf_counter()
            assert client.get("/series", params=query).status_code == 200
            alone.append(time.perf_counter() - started)
    started = time.perf_counter()
    answers = asyncio.run(all_at_once())
    wall = time.perf_counter() - started
    for query, (_, rows) in zip(queries, answers, strict=True):
        want = _expected(cube, query)
        assert len(rows) == len(want) > 0
        got = [np.nan if r["temperature_mean"] is None else r["temperature_mean"] for r in rows]
        _same(got, want)
    latencies = sorted(seconds for seconds, _ in answers)
    p50 = statistics.median(latencies)
    p95 = latencies[int(0.95 * len(latencies)) - 1]
    print(
        f"200 concurrent /series queries on {os.cpu_count()} cores: p50 {p50 * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, all in {wall:.1f} s ({200 / wall:.0f} queries/s); one at a "
        f"time: p50 {statistics.median(alone) * 1000:.0f} ms"
    )


def test_bad_serve_settings_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    from cascadia.cli import main

    empty = tmp_path / "token"
    empty.write_text("\n")
    store = str(tmp_path / "results.zarr")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        cases = [
            (["--token-file", str(tmp_path / "none")], "cannot read the token file"),
            (["--token-file", str(empty)], f"the token file {empty} is empty"),
            (["--max-rows", "0"], "--max-rows must be at least 1, got 0"),
            (["--port", port], f"cannot listen on 127.0.0.1:{port}: Address already in use"),
        ]
        for args, message in cases:
            assert main(["serve", "--results", store, "--port", port, *args]) == 2
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1 and message in lines[0], lines
