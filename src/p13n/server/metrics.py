"""Prometheus metrics: requests by route template and status, latency, the model's queue,
redactions, and the process's memory. Labels never carry ids (no user or tenant leaks)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

if TYPE_CHECKING:
    from p13n.server.state import ServerState

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
REQUESTS = Counter(
    "p13n_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY
)
LATENCY = Histogram(
    "p13n_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
QUEUE = Gauge("p13n_generation_waiting", "Generations waiting for the model", registry=REGISTRY)
ADMITTED = Gauge("p13n_generation_admitted", "Generations running or waiting", registry=REGISTRY)
REDACTIONS = Counter(
    "p13n_redactions_total", "PII spans redacted at ingest", ["entity"], registry=REGISTRY
)


def record_redactions(counts: dict[str, int]) -> None:
    for entity, count in counts.items():
        REDACTIONS.labels(entity).inc(count)


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        REQUESTS.labels(request.method, template, str(response.status_code)).inc()
        LATENCY.labels(template).observe(time.perf_counter() - started)
        return response


def exposition(state: ServerState) -> tuple[bytes, str]:
    QUEUE.set(state.gate.waiting)
    ADMITTED.set(state.gate.admitted)
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
