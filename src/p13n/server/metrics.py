"""Prometheus metrics: requests by route template and status, latency, the model's queue,
redactions, and the process's memory. Labels never carry ids (no user or tenant leaks)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from p13n.server.http import error_response

if TYPE_CHECKING:
    from p13n.server.state import ServerState

logger = logging.getLogger(__name__)

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


class Observer:
    """Counts every request by route template and status, and times it to its last byte. An
    unhandled error is logged, counted as a 500 and answered in the API's error shape (were it
    left to the server, it would bypass the counters and answer in plain text)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            logger.exception("unhandled error in %s %s", scope["method"], _template(scope))
            if status is not None:  # the response had started: all that can be done is end it
                raise
            status = 500
            response = error_response(500, "internal error (logged on the server)", "server_error")
            await response(scope, receive, send)
        finally:
            template = _template(scope)
            REQUESTS.labels(scope["method"], template, str(status or 500)).inc()
            LATENCY.labels(template).observe(time.perf_counter() - started)


def _template(scope: Scope) -> str:
    return getattr(scope.get("route"), "path", None) or "unmatched"


def exposition(state: ServerState) -> tuple[bytes, str]:
    QUEUE.set(state.gate.waiting)
    ADMITTED.set(state.gate.admitted)
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
