"""`GET /v1/devices?health=` and `fogline devices ls --health/--version/--sort`
against a real hub, on SQLite and PostgreSQL: three devices report, the
alert pass judges them, and each level lists the device its alerts give."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.device import FACTS, TestDevice, enroll_device
from tests.support.processes import HubProcess, start_hub, wait_until

MIB = 1024 * 1024


def _report(device: TestDevice, *, memory_used: int, state: str) -> None:
    body = {
        "facts": FACTS,
        "health": {
            "mem_used_bytes": memory_used * MIB,
            "mem_available_bytes": (100 - memory_used) * MIB,
        },
        "modules": {"modules": {"web": {"name": "web", "state": state}}},
    }
    with device.client() as client:
        assert client.post("/v1/report", json=body).status_code == 200


def _names(hub: HubProcess, **params: str) -> list[str]:
    return [row["name"] for row in hub.devices(**params)]


def _ls(hub: HubProcess, *args: str) -> list[dict[str, Any]]:
    return list(json.loads(hub.cli("devices", "ls", *args, "-o", "json").stdout))


def test_health_filter_lists_each_device_at_the_level_its_alerts_give(
    db_url: str, tmp_path: Path
) -> None:
    hub = start_hub(tmp_path / "hub", db_url=db_url)
    try:
        claim = hub.create_claim()
        calm = enroll_device(hub, claim, "calm", tmp_path)
        full = enroll_device(hub, claim, "full", tmp_path)  # memory-high: a warning
        looping = enroll_device(hub, claim, "looping", tmp_path)  # crash-loop: critical
        _report(calm, memory_used=10, state="healthy")
        _report(full, memory_used=95, state="healthy")
        _report(looping, memory_used=10, state="crash-loop")
        wait_until(
            lambda: (
                _names(hub, health="critical") == ["looping"]
                and _names(hub, health="warning") == ["full"]
            ),
            30,
            "the alert pass to judge the reports",
        )
        assert _names(hub, health="ok") == ["calm"]
        assert _names(hub, health="warning,critical") == ["full", "looping"]
        assert {d["name"]: d["health"] for d in hub.devices()} == {
            "calm": "ok",
            "full": "warning",
            "looping": "critical",
        }

        # The CLI maps onto the same query; --version is the agent's.
        rows = _ls(hub, "--health", "critical", "--health", "warning", "--sort", "name", "--desc")
        assert [r["name"] for r in rows] == ["looping", "full"]
        assert [r["name"] for r in _ls(hub, "--version", FACTS["agent_version"])] == [
            "calm",
            "full",
            "looping",
        ]
        assert _ls(hub, "--version", "0.0.0-none") == []
        table = hub.cli("devices", "ls", "-o", "table").stdout
        assert "HEALTH" in table and "critical" in table
        refused = hub.cli("devices", "ls", "--health", "sick", check=False)
        assert refused.returncode != 0 and "sick" in refused.stderr

        # Healthy again: the alerts clear and the device is ok.
        _report(looping, memory_used=10, state="healthy")
        wait_until(lambda: _names(hub, health="critical") == [], 30, "the crash-loop to clear")
        assert _names(hub, health="ok") == ["calm", "looping"]
    finally:
        hub.stop()
