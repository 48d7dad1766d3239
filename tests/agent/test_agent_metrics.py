"""The agent's own metrics: counted without prometheus_client, served as its Counter and Gauge were.

An idle agent no one scrapes does not import prometheus_client (BENCHMARKS.md,
"Agent idle RSS"); what /metrics answers must not change for it: the same
families, samples, values and order as prometheus_client's own metric
classes give for the same updates (their `_created` times aside).
"""

import re
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge as PromGauge

from fogline.agent._metrics import AgentMetrics

_CREATED = re.compile(rb"(_created(?:\{[^}]*\})?) [0-9.e+]+$", re.MULTILINE)


def _masked(text: bytes) -> bytes:
    return _CREATED.sub(rb"\1 T", text)


def _prometheus_clients(
    registry: CollectorRegistry,
) -> tuple[PromCounter, PromGauge, PromGauge, PromGauge]:
    return (
        PromCounter(
            "fogline_agent_reports",
            "Reports sent to the hub by result",
            ["result"],
            registry=registry,
        ),
        PromGauge(
            "fogline_agent_hub_reachable", "1 when the last hub call succeeded", registry=registry
        ),
        PromGauge(
            "fogline_agent_desired_applied_ok",
            "1 when the last desired state applied cleanly",
            registry=registry,
        ),
        PromGauge("fogline_agent_enrolled", "1 once the node has an identity", registry=registry),
    )


def test_metrics_read_as_prometheus_client_s_own_would() -> None:
    ours = AgentMetrics()
    theirs = CollectorRegistry()
    reports, hub_up, applied_ok, enrolled = _prometheus_clients(theirs)
    # Before any update: label-less gauges at 0, the counter with no sample.
    assert _masked(generate_latest(ours.registry())) == _masked(generate_latest(theirs))
    for result in ["ok", "ok", "unreachable", "ok"]:
        ours.reports.labels(result).inc()
        reports.labels(result).inc()
    ours.hub_up.set(1)
    hub_up.set(1)
    ours.applied_ok.set(0)
    applied_ok.set(0)
    ours.enrolled.set(1)
    enrolled.set(1)
    text = generate_latest(ours.registry())
    assert _masked(text) == _masked(generate_latest(theirs))
    assert b'fogline_agent_reports_total{result="ok"} 3.0' in text
    assert b'fogline_agent_reports_created{result="unreachable"}' in text


class _Extra:
    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily("extra_depth", "A collector registered beside", value=7)


def test_collectors_registered_before_or_after_the_first_scrape_are_served() -> None:
    metrics = AgentMetrics()
    metrics.register(_Extra())
    first = generate_latest(metrics.registry())
    assert first.index(b"fogline_agent_enrolled 0.0") < first.index(b"extra_depth 7.0")
    late = AgentMetrics()
    late.registry()
    late.register(_Extra())
    assert b"extra_depth 7.0" in generate_latest(late.registry())


def test_a_counter_refuses_a_wrong_label_count_and_a_decrement() -> None:
    metrics = AgentMetrics()
    with pytest.raises(ValueError, match="expected labels"):
        metrics.reports.labels()
    with pytest.raises(ValueError, match="non-negative"):
        metrics.reports.labels("ok").inc(-1)


def test_counting_does_not_import_prometheus_client() -> None:
    code = (
        "import sys\n"
        "from fogline.agent._metrics import AgentMetrics\n"
        "m = AgentMetrics(); m.reports.labels('ok').inc(); m.hub_up.set(1)\n"
        "assert 'prometheus_client' not in sys.modules\n"
        "m.registry()\n"
        "assert 'prometheus_client' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
