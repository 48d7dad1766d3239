"""Prometheus metrics of one hub process, on a registry of its own.

A registry per app (not the global one) keeps tests that start several
apps in one process from colliding.
"""

import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 10, 35)


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fogline_hub_requests",
            "HTTP requests handled",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fogline_hub_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.telemetry = Counter(
            "fogline_hub_telemetry_records",
            "Telemetry records received (before dedupe)",
            registry=self.registry,
        )
        # Resends after a lost acknowledgement land here, not in the store: the
        # evidence that at-least-once upload plus the unique key is exactly-once.
        self.telemetry_duplicates = Counter(
            "fogline_hub_telemetry_duplicates",
            "Telemetry records ignored because that (device, stream, seq) was already stored",
            registry=self.registry,
        )
        self.report_batches = Histogram(
            "fogline_hub_report_batch_size",
            "Device reports written per database transaction",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
            registry=self.registry,
        )
        self.deltas = Counter(
            "fogline_hub_artifact_deltas",
            "Delta requests by result: served, or none (the node fetches the full archive)",
            ["result"],
            registry=self.registry,
        )
        self.enrollments = Counter(
            "fogline_hub_enrollments",
            "Enrollment attempts by result",
            ["result"],
            registry=self.registry,
        )

        self.connections_shed = Counter(
            "fogline_hub_connections_shed",
            "Connections refused at accept or closed for stalling, by reason",
            ["reason"],
            registry=self.registry,
        )
        # A reconnecting fleet should mostly resume (see _tickets.py): many
        # full handshakes mean tickets are off, not shared, or expiring.
        self.tls_handshakes = Counter(
            "fogline_hub_tls_handshakes",
            "Finished TLS handshakes of this process: session full or resumed",
            ["session"],
            registry=self.registry,
        )

    def add_device_counter(self, count_by_status: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_DevicesByStatus(count_by_status))

    def add_fleet_aggregates(
        self, count: Callable[[], tuple[dict[str, int], dict[str, int]]]
    ) -> None:
        """Devices by agent version and active alerts by kind, read at scrape time."""
        self.registry.register(_FleetAggregates(count))

    def add_connection_gauge(self, count_open: Callable[[], int]) -> None:
        self.registry.register(_OpenConnections(count_open))


class _OpenConnections(Collector):
    """The process's open connections (handshakes included), read at scrape time."""

    def __init__(self, count_open: Callable[[], int]) -> None:
        self._count = count_open

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "fogline_hub_connections_open",
            "Open client connections of this process, TLS handshakes included",
            value=self._count(),
        )


class _DevicesByStatus(Collector):
    """Counts devices by status at scrape time, so the gauge is never stale."""

    def __init__(self, count_by_status: Callable[[], dict[str, int]]) -> None:
        self._count = count_by_status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("fogline_hub_devices", "Devices by status", labels=["status"])
        counts = self._count()
        for status in ("online", "offline", "revoked"):
            family.add_metric([status], counts.get(status, 0))
        yield family


class _FleetAggregates(Collector):
    """Fleet-wide counts only, never a series per device: a label's values are
    agent versions (the most common MAX_VERSION_LABELS, the rest as "other")
    and alert kinds."""

    def __init__(self, count: Callable[[], tuple[dict[str, int], dict[str, int]]]) -> None:
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_version, by_kind = self._count()
        versions = GaugeMetricFamily(
            "fogline_hub_devices_by_version",
            "Devices not revoked, by agent version",
            labels=["version"],
        )
        for version, count in by_version.items():
            versions.add_metric([version], count)
        yield versions
        alerts = GaugeMetricFamily(
            "fogline_hub_alerts_active", "Active alerts, by kind", labels=["kind"]
        )
        for kind, count in by_kind.items():
            alerts.add_metric([kind], count)
        yield alerts


class RouteMetrics:
    """The request metrics of one route, bound once: `.labels()` is a
    dictionary lookup under a lock on every call, too dear for a hot path."""

    def __init__(self, metrics: HubMetrics, method: str, route: str) -> None:
        self._requests = metrics.requests
        self._method = method
        self._route = route
        self._latency = metrics.latency.labels(method, route)
        self._counts: dict[int, Any] = {}

    def observe(self, status: int, seconds: float) -> None:
        self._latency.observe(seconds)
        count = self._counts.get(status)
        if count is None:
            count = self._counts[status] = self._requests.labels(
                self._method, self._route, str(status)
            )
        count.inc()


def route_template(scope: Scope) -> str:
    """The matched route's path template, so metrics never get one series per device."""
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class RequestTiming:
    """Counts requests and times them, by method, route template and status.

    Plain ASGI rather than `app.middleware("http")`: Starlette's
    BaseHTTPMiddleware runs every request through an extra task and memory
    streams, which cost more than the device reports it measures.
    """

    def __init__(self, app: ASGIApp, metrics: HubMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The router writes the matched route into this same scope dict.
            route = route_template(scope)
            method = scope["method"]
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, route, str(status)).inc()


class PlainHttpMetricsOnly:
    """The outermost app: a request that did not come over TLS (only the
    loopback metrics listener serves plain HTTP) gets /metrics or a 404,
    never the API. Over TLS, everything passes to `app`, where /metrics
    needs an operator token."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self._metrics = make_asgi_app(registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") == "https":
            await self.app(scope, receive, send)
        elif scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            await self._metrics(scope, receive, send)
        else:
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"10")],
                }
            )
            await send({"type": "http.response.body", "body": b"not found\n"})
