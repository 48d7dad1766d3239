"""The agent's own metrics, served at its local /metrics."""

from prometheus_client import CollectorRegistry, Counter, Gauge


class AgentMetrics:
    """The agent's own counters and gauges, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reports = Counter(
            "fogline_agent_reports",
            "Reports sent to the hub by result",
            ["result"],
            registry=self.registry,
        )
        self.hub_up = Gauge(
            "fogline_agent_hub_reachable",
            "1 when the last hub call succeeded",
            registry=self.registry,
        )
        self.applied_ok = Gauge(
            "fogline_agent_desired_applied_ok",
            "1 when the last desired state applied cleanly",
            registry=self.registry,
        )
        self.enrolled = Gauge(
            "fogline_agent_enrolled", "1 once the node has an identity", registry=self.registry
        )
