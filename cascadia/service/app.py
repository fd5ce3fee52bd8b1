"""The HTTP service on one results store (FastAPI): a thin shell over the reader API.

Reads go through :class:`cascadia.service.results.Results` and
:func:`cascadia.service.query.run_query`, exactly as ``cascadia-ensemble query`` does,
and stream their answer (:mod:`cascadia.service.formats`); ``/zarr`` hands out the
store's own keys (:mod:`cascadia.service.store_keys`); ``POST /runs`` starts a run or
reprocessing pass (:mod:`cascadia.service.runs`) behind a bearer token
(:mod:`cascadia.service.auth`). Every answer's size is checked before it is read
(413 over the limits). See docs/serve.md.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, Literal

import fsspec
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from cascadia import __version__
from cascadia.service.auth import BearerToken
from cascadia.service.formats import MEDIA_TYPES, encode
from cascadia.service.metrics import Metrics
from cascadia.service.query import DAILY_STATS, Limits, TooLarge, run_query
from cascadia.service.query import Query as StoreQuery
from cascadia.service.results import Results, ResultsError
from cascadia.service.runs import RunBusy, RunManager, RunRefused, RunState
from cascadia.service.store_keys import BadKey, StoreKeys

__all__ = ["ServiceSettings", "create_app"]

Format = Literal["json", "csv", "netcdf"]
DailyStat = Literal[
    "mean", "std", "band", "quantiles", "anomaly", "background", "probability", "members"
]
# the query filters of /series, /events, /spread (module level: FastAPI resolves them)
Experiment = Annotated[list[str] | None, Query(description="experiment(s); default all")]
Source = Annotated[list[str] | None, Query(description="source_id(s); default all")]
Member = Annotated[list[str] | None, Query(description="member_id(s); default all")]
Depth = Annotated[list[float] | None, Query(description="depth(s), m; default all")]
Start = Annotated[str | None, Query(description="first day: YYYY, YYYY-MM or YYYY-MM-DD")]
End = Annotated[str | None, Query(description="last day (YYYY: through 31 December)")]
Variable = Annotated[list[str] | None, Query(description="variable(s)")]
assert set(DailyStat.__args__) == set(DAILY_STATS)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ServiceSettings:
    """Everything the service is started with (``cascadia-ensemble serve``)."""

    results: str
    storage_options: dict[str, Any] | None = None
    model: str = "model"
    cache: str | None = None
    cluster: str | None = None
    workers: int | None = None
    token: str | None = field(default=None, repr=False)
    #: Largest answer of one request: rows of a table, days of a daily statistic.
    max_rows: int = 1_000_000
    max_days: int = 36_600
    #: Runs queued or running at once (they write the one store).
    max_runs: int = 1


class RunRequest(BaseModel):
    """``POST /runs``: a run (or reprocessing pass) over run catalogs the server can read."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["run", "reprocess"] = "run"
    catalogs: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        min_length=1,
        max_length=100,
        description="run catalog paths or URLs, as the server sees them",
    )


class _Store:
    """The served store, reopened when its consolidated metadata changes (a run or a
    reprocessing pass appended to it) and absent until the first run writes it."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None) -> None:
        self.url, self.storage_options = url, storage_options
        self.fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        self.marker = f"{root.rstrip('/')}/.zmetadata"
        self._results: Results | None = None
        self._seen: Any = None
        self._lock = threading.Lock()

    def version(self) -> Any:
        try:
            info = self.fs.info(self.marker)
        except FileNotFoundError:
            return None
        return (info.get("mtime"), info.get("LastModified"), info.get("ETag"), info.get("size"))

    def get(self) -> Results:
        version = self.version()
        if version is None:
            raise HTTPException(404, f"no results store at {self.url} yet (a POST /runs writes it)")
        with self._lock:
            if self._results is None or version != self._seen:
                try:
                    opened = Results(self.url, self.storage_options)
                except ResultsError as exc:
                    raise HTTPException(503, str(exc)) from None
                if self._results is not None:
                    self._results.close()
                self._results, self._seen = opened, version
            return self._results

    def forget(self) -> None:
        with self._lock:
            self._seen = None


def _stream(answer: Any, fmt: str, name: str) -> StreamingResponse:
    suffix = {"csv": "csv", "json": "json", "netcdf": "nc"}[fmt]
    headers = {"X-Rows": str(answer.rows)}
    if fmt != "json":
        headers["Content-Disposition"] = f'attachment; filename="{name}.{suffix}"'
    return StreamingResponse(
        encode(answer.table, answer.dataset, fmt), media_type=MEDIA_TYPES[fmt], headers=headers
    )


def create_app(settings: ServiceSettings) -> FastAPI:
    """The service's ASGI app (uvicorn runs it: :func:`cascadia.service.serve.serve`)."""
    app = FastAPI(
        title="cascadia results service",
        version=__version__,
        description="Query a cascadia results store (series, per-winter events, spread), "
        "read the store itself as Zarr over HTTP, and run or reprocess it on the Dask "
        "cluster. See docs/serve.md.",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: nothing external
        redoc_url=None,
    )
    metrics = Metrics()
    app.middleware("http")(metrics.middleware)
    store = _Store(settings.results, settings.storage_options)
    keys = StoreKeys(settings.results, settings.storage_options)
    limits = Limits(settings.max_rows, settings.max_days)

    def finished(state: RunState) -> None:
        metrics.runs.labels(state.kind, state.status).inc()
        metrics.runs_active.set(runs.active)
        store.forget()

    runs = RunManager(
        settings.results,
        model=settings.model,
        cache=settings.cache,
        cluster=settings.cluster,
        workers=settings.workers,
        storage_options=settings.storage_options,
        max_active=settings.max_runs,
        on_finish=finished,
    )
    authorised = Depends(BearerToken(settings.token))

    def answer(query: StoreQuery, fmt: str, name: str) -> StreamingResponse:
        results = store.get()
        try:
            found = run_query(results, query, limits)
        except TooLarge as exc:
            raise HTTPException(413, str(exc)) from None
        except ResultsError as exc:
            raise HTTPException(400, str(exc)) from None
        return _stream(found, fmt, name)

    @app.get("/health", summary="liveness and the store's presence")
    def health() -> dict[str, Any]:
        present = store.version() is not None
        return {
            "status": "ok",
            "version": __version__,
            "store": "present" if present else "absent",
            "runs_active": runs.active,
        }

    @app.get("/store", summary="what the store holds: labels, depths, period, variables")
    def summary() -> dict[str, Any]:
        results = store.get()
        ds = results.dataset
        days = ds["time"].values
        return {
            "url": settings.results,
            "experiments": results.labels("experiment"),
            "source_ids": results.labels("source_id"),
            "member_ids": results.labels("member_id"),
            "depths": results.depths,
            "first_day": str(days[0])[:10] if len(days) else None,
            "last_day": str(days[-1])[:10] if len(days) else None,
            "winters": results.winters,
            "variables": results.variables,
            "spread": results.spread is not None,
            "stats": [*DAILY_STATS, "events", "spread"],
        }

    @app.get("/combinations", summary="one row per combination: status, family, provenance")
    def combinations(
        experiment: Experiment = None,
        source_id: Source = None,
        member_id: Member = None,
        format: Literal["json", "csv"] = "json",
    ) -> StreamingResponse:
        query = StoreQuery(
            experiment=experiment, source_id=source_id, member_id=member_id, stat="combinations"
        )
        return answer(query, format, "combinations")

    @app.get("/series", summary="daily statistics of the selected combinations")
    def series(
        experiment: Experiment = None,
        source_id: Source = None,
        member_id: Member = None,
        depth: Depth = None,
        start: Start = None,
        end: End = None,
        stat: DailyStat = "mean",
        format: Format = "json",
    ) -> StreamingResponse:
        query = StoreQuery(experiment, source_id, member_id, depth, start, end, stat)
        return answer(query, format, f"series-{stat}")

    @app.get("/events", summary="per-winter event statistics of the selected combinations")
    def events(
        experiment: Experiment = None,
        source_id: Source = None,
        member_id: Member = None,
        depth: Depth = None,
        start: Start = None,
        end: End = None,
        format: Format = "json",
    ) -> StreamingResponse:
        query = StoreQuery(experiment, source_id, member_id, depth, start, end, "events")
        return answer(query, format, "events")

    @app.get("/spread", summary="multi-model spread statistics, one row per value")
    def spread(
        experiment: Experiment = None,
        source_id: Source = None,
        member_id: Member = None,
        depth: Depth = None,
        start: Start = None,
        end: End = None,
        variable: Variable = None,
        format: Format = "json",
    ) -> StreamingResponse:
        query = StoreQuery(experiment, source_id, member_id, depth, start, end, "spread", variable)
        return answer(query, format, "spread")

    @app.head("/zarr/{key:path}", include_in_schema=False)
    @app.get(
        "/zarr/{key:path}",
        summary="the store's own keys, read-only: xr.open_zarr('http://HOST:PORT/zarr')",
        response_class=Response,
    )
    def zarr_key(key: str) -> Response:
        try:
            data = keys.read(key)
        except BadKey as exc:
            raise HTTPException(400, str(exc)) from None
        except KeyError:
            raise HTTPException(404, f"the store has no key {key}") from None
        return Response(
            data, media_type=keys.media_type(key), headers={"Cache-Control": "no-cache"}
        )

    @app.post(
        "/runs",
        status_code=202,
        summary="start a run or reprocessing pass (bearer token)",
        dependencies=[authorised],
    )
    def submit(request: RunRequest) -> dict[str, Any]:
        try:
            state = runs.submit(request.kind, request.catalogs)
        except RunRefused as exc:
            raise HTTPException(400, str(exc)) from None
        except RunBusy as exc:
            raise HTTPException(429, str(exc)) from None
        metrics.runs_active.set(runs.active)
        return state

    @app.get(
        "/runs/{run_id}",
        summary="status and progress of a run (bearer token)",
        dependencies=[authorised],
    )
    def run_status(run_id: str) -> dict[str, Any]:
        state = runs.get(run_id)
        if state is None:
            raise HTTPException(404, f"no run {run_id}")
        return state

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:
        return metrics.render()

    page = resources.files("cascadia.service").joinpath("page.html").read_text(encoding="utf-8")

    @app.get(
        "/", summary="a page that plots a series and the event days", response_class=HTMLResponse
    )
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.exception_handler(ResultsError)
    def results_error(_: Any, exc: ResultsError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    app.state.settings = settings
    app.state.runs = runs
    return app
