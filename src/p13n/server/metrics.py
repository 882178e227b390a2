"""Prometheus metrics: requests by route template and status, latency, the model's queue,
redactions, and the process's memory. Labels never carry ids (no user or tenant leaks).

Each app has its own ``Metrics`` (built by ``create_app``), in a registry of its own: two apps
in one process never share a counter."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)


class QueueGauges(Protocol):
    """What the queue gauges read (the server state's ``GenerationGate``)."""

    @property
    def waiting(self) -> int: ...

    @property
    def admitted(self) -> int: ...


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
"""Seconds; generations take seconds to minutes, the rest milliseconds."""


class Metrics:
    """One app's registry and the metrics in it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "p13n_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "p13n_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge(
            "p13n_generation_waiting", "Generations waiting for the model", registry=self.registry
        )
        self.admitted = Gauge(
            "p13n_generation_admitted", "Generations running or waiting", registry=self.registry
        )
        self.redactions = Counter(
            "p13n_redactions_total",
            "PII spans redacted at ingest",
            ["entity"],
            registry=self.registry,
        )

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request, by its route's template (never the path: it holds ids)."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def record_redactions(self, counts: dict[str, int]) -> None:
        for entity, count in counts.items():
            self.redactions.labels(entity).inc(count)

    def exposition(self, gate: QueueGauges) -> tuple[bytes, str]:
        """The registry in Prometheus's text format (the queue's gauges read now), and its
        content type."""
        self.queue.set(gate.waiting)
        self.admitted.set(gate.admitted)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
