"""Prometheus metrics of the service: requests by route and status, latency, runs.

Each app has its own registry (two services in one process, as in the tests, never
share counters); ``/metrics`` renders it in the text exposition format.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["Metrics"]

#: Latency buckets, seconds: a cached metadata key is milliseconds, a long series seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Counters and histograms of one app, and the middleware that fills them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cascadia_http_requests",
            "HTTP requests answered, by method, route template and status code",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "cascadia_http_request_duration_seconds",
            "Time to the response headers (streamed bodies follow), by route template",
            ("route",),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.runs = Counter(
            "cascadia_runs",
            "Runs and reprocessing passes finished, by kind and outcome",
            ("kind", "outcome"),
            registry=self.registry,
        )
        self.runs_active = Gauge(
            "cascadia_runs_active", "Runs queued or running", registry=self.registry
        )

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.latency.labels(template).observe(time.perf_counter() - started)
            self.requests.labels(request.method, template, str(status)).inc()

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
