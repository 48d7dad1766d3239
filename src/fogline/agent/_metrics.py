"""The agent's own metrics, served at its local /metrics.

They are counted in plain Python; prometheus_client (with its exposition
code: http.server, wsgiref, gzip...) is imported when /metrics is first
asked (`AgentMetrics.registry`), not at idle: 1.4 MB resident in an agent
no one scrapes (BENCHMARKS.md, "Agent idle RSS"). What /metrics answers is
what prometheus_client's own Counter and Gauge gave: the same families,
samples (a counter's `_created` too) and order.
"""

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


class MetricsCollector(Protocol):
    """What the registry asks of a collector: its families, read at scrape time."""

    def collect(self) -> Any: ...


class _CounterChild:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()  # as prometheus_client's: when the label set first appears

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class Counter:
    """A counter by label values (`labels(...).inc()`), as prometheus_client's."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._children: dict[tuple[str, ...], _CounterChild] = {}

    def labels(self, *values: str) -> _CounterChild:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = _CounterChild()
        return child

    def samples(self) -> list[tuple[tuple[str, ...], _CounterChild]]:
        return list(self._children.items())


class Gauge:
    """A gauge without labels (`set`), 0 until set, as prometheus_client's."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = float(value)


class AgentMetrics:
    """The agent's own counters and gauges, and the collectors registered beside them."""

    def __init__(self) -> None:
        self.reports = Counter(
            "fogline_agent_reports", "Reports sent to the hub by result", ["result"]
        )
        self.hub_up = Gauge("fogline_agent_hub_reachable", "1 when the last hub call succeeded")
        self.applied_ok = Gauge(
            "fogline_agent_desired_applied_ok", "1 when the last desired state applied cleanly"
        )
        self.enrolled = Gauge("fogline_agent_enrolled", "1 once the node has an identity")
        self._collectors: list[MetricsCollector] = []
        self._registry: CollectorRegistry | None = None

    def register(self, collector: MetricsCollector) -> None:
        """Serve `collector`'s families after the agent's own."""
        self._collectors.append(collector)
        if self._registry is not None:
            self._registry.register(collector)

    def registry(self) -> "CollectorRegistry":
        """prometheus_client's registry of all of them, made (and imported) on first call."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry()
            for collector in (_OwnCollector(self), *self._collectors):
                registry.register(collector)
            self._registry = registry
        return self._registry


class _OwnCollector:
    def __init__(self, metrics: AgentMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client import metrics as prometheus_metrics
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        # PROMETHEUS_DISABLE_CREATED_SERIES, as prometheus_client's Counter reads it.
        use_created = getattr(prometheus_metrics, "_use_created", True)
        m = self._metrics
        counter = CounterMetricFamily(
            m.reports.name, m.reports.documentation, labels=list(m.reports.labelnames)
        )
        for values, child in m.reports.samples():
            counter.add_metric(
                list(values), child.value, created=child.created if use_created else None
            )
        yield counter
        for gauge in (m.hub_up, m.applied_ok, m.enrolled):
            yield GaugeMetricFamily(gauge.name, gauge.documentation, value=gauge.value)
