"""Device health end to end: a real agent's reports carry its node's health,
and the hub shows it and keeps it as a series (issue #15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.processes import AgentProcess, HubProcess, start_hub, wait_until


def _health(hub: HubProcess, ref: str) -> dict[str, Any] | None:
    health = hub.device(ref)["reported"].get("health")
    return health if health and health.get("cpu_percent") is not None else None


def test_an_agents_report_shows_its_nodes_health_at_the_hub(tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "hub")
    agent = AgentProcess(tmp_path / "node", hub, "healthy-node", hub.create_claim())
    agent.start()
    try:
        device_id = agent.wait_enrolled()
        # The second report has a CPU share (taken between two samples).
        health = wait_until(lambda: _health(hub, device_id), 30, "a report with health")
        assert health["mem_used_bytes"] > 0 and health["mem_available_bytes"] > 0
        assert 0 < health["disk_free_bytes"] <= health["disk_total_bytes"]
        assert health["agent_rss_bytes"] > 10 * 1024 * 1024  # a Python process
        assert health["load1"] >= 0 and 0 <= health["cpu_percent"] <= 100
        assert health["net_rx_bytes"] is not None
    finally:
        agent.stop()
        hub.stop()
