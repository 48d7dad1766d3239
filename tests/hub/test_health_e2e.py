"""Device health end to end: a real agent's reports carry its node's health,
the hub keeps it as series (raw, rollups, retention, on SQLite and
PostgreSQL) and serves it to `GET /v1/devices/{ref}/health` and the CLI
(issue #15)."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import AgentProcess, HubProcess, start_hub, wait_until

# Short durations so that rollups and retention happen within a test.
SHORT = [
    "--health-rollup-step",
    "2s",
    "--health-raw-retention",
    "5s",
    "--health-rollup-retention",
    "1h",
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[HubProcess, str]]:
    db_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    hub = start_hub(tmp_path / "hub", db_url=db_url, extra_args=SHORT)
    agent = AgentProcess(tmp_path / "node", hub, "healthy-node", hub.create_claim())
    agent.start()
    try:
        yield hub, agent.wait_enrolled()
    finally:
        agent.stop()
        hub.stop()


def _health(hub: HubProcess, ref: str) -> dict[str, Any] | None:
    health = hub.device(ref)["reported"].get("health")
    return health if health and health.get("cpu_percent") is not None else None


def _series(hub: HubProcess, ref: str, **params: str) -> dict[str, Any]:
    with hub.client() as client:
        response = client.get(f"/v1/devices/{ref}/health", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _at(point: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(point["at"].replace("Z", "+00:00"))


def test_an_agents_health_is_shown_kept_rolled_up_and_expired(
    fleet: tuple[HubProcess, str],
) -> None:
    hub, device_id = fleet
    # The second report has a CPU share (taken between two samples).
    health = wait_until(lambda: _health(hub, device_id), 30, "a report with health")
    assert health["mem_used_bytes"] > 0 and health["mem_available_bytes"] > 0
    assert 0 < health["disk_free_bytes"] <= health["disk_total_bytes"]
    assert health["agent_rss_bytes"] > 10 * 1024 * 1024  # a Python process
    assert health["load1"] >= 0 and 0 <= health["cpu_percent"] <= 100

    # Raw samples, one a report (every second), by name as by id: a window
    # within the raw retention (5 s here).
    raw = wait_until(
        lambda: len(_series(hub, "healthy-node", since="5s")["points"]) >= 3, 20, "raw samples"
    )
    series = _series(hub, "healthy-node", since="5s")
    assert raw and series["step_s"] == 0 and series["device_id"] == device_id
    assert all(p["mem_used_bytes"] > 0 for p in series["points"])

    # Rollups of 2 s buckets appear once a bucket has closed.
    rollups = wait_until(
        lambda: _series(hub, device_id, since="1h", step="2s")["points"], 30, "rollups"
    )
    assert all(p["modules"] is None and p["mem_used_bytes"] > 0 for p in rollups)
    assert all(_at(p).timestamp() % 2 == 0 for p in rollups)  # bucket starts

    # Raw samples older than 5 s are deleted (a pass runs every second).
    def expired() -> bool:
        points = _series(hub, device_id, since="1h", step="1s")["points"]
        oldest = min(_at(p) for p in points)
        return dt.datetime.now(dt.UTC) - oldest < dt.timedelta(seconds=8)

    started = time.monotonic()
    wait_until(expired, 30, "raw samples past retention to be deleted")
    assert time.monotonic() - started < 30
    # The rollups outlive the raw samples they came from.
    assert _series(hub, device_id, since="1h", step="2s")["points"][0]["at"] == rollups[0]["at"]


@pytest.fixture(scope="module")
def reporting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub with one reporting agent, for the read-only tests below."""
    root = tmp_path_factory.mktemp("health")
    hub = start_hub(root / "hub")
    agent = AgentProcess(root / "node", hub, "edge-7", hub.create_claim())
    agent.start()
    try:
        device_id = agent.wait_enrolled()
        wait_until(lambda: _health(hub, device_id), 30, "a report with health")
        yield hub
    finally:
        agent.stop()
        hub.stop()


def test_devices_show_gives_current_values_in_units_and_a_trend(reporting: HubProcess) -> None:
    out = reporting.cli("devices", "show", "edge-7", "-o", "table").stdout
    assert "MiB used" in out and "MiB available" in out and "% used" in out
    assert "MiB free of" in out and "MiB resident" in out
    cpu_line = next(line for line in out.splitlines() if line.strip().startswith("cpu"))
    assert "%" in cpu_line and "load" in cpu_line
    assert any(bar in cpu_line for bar in "▁▂▃▄▅▆▇█")  # the trend


def test_devices_show_gives_the_days_min_avg_max_and_the_health_level(
    reporting: HubProcess,
) -> None:
    out = reporting.cli("devices", "show", "edge-7", "-o", "table").stdout
    day = next(line for line in out.splitlines() if line.strip().startswith("24 h"))
    assert re.search(r"min/avg/max over \d+ points", day), day
    assert re.search(r"cpu [\d.,]+/[\d.,]+/[\d.,]+ %", day), day
    assert re.search(r"memory used [\d,]+/[\d,]+/[\d,]+ MiB", day), day
    assert re.search(r"disk free [\d,]+/[\d,]+/[\d,]+ MiB", day), day
    health = next(line for line in out.splitlines() if line.strip().startswith("health "))
    assert health.split()[-1] in ("ok", "warning", "critical"), health


def test_devices_health_prints_the_series(reporting: HubProcess) -> None:
    result = reporting.cli("devices", "health", "edge-7", "--since", "1h", "-o", "table")
    assert "MEM USED MiB" in result.stdout and "CPU %" in result.stdout
    assert "edge-7" in result.stderr and "points" in result.stderr
    series = json.loads(reporting.cli("devices", "health", "edge-7", "-o", "json").stdout)
    assert series["name"] == "edge-7" and series["points"]
    assert series["points"][-1]["mem_used_bytes"] > 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "forever"}, "since"),
        ({"since": "10"}, "since"),
        ({"since": "30d", "step": "1s"}, "step"),
        ({"since": "1h", "step": "often"}, "step"),
    ],
)
def test_a_bad_window_or_step_is_a_422_naming_it(
    reporting: HubProcess, params: dict[str, str], field: str
) -> None:
    with reporting.client() as client:
        response = client.get("/v1/devices/edge-7/health", params=params)
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["details"]] == [field]


def test_an_unknown_device_is_404_and_the_cli_says_so_in_one_line(
    reporting: HubProcess,
) -> None:
    with reporting.client() as client:
        assert client.get("/v1/devices/nobody/health").status_code == 404
    result = reporting.cli("devices", "health", "nobody", check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
