"""Alerts the hub raises by itself (issue #15): a real hub judges what a
device reports and when, raises one alert per device and kind, clears it
when its cause goes, sends new ones to a webhook, and lets an operator
acknowledge them (audited). /metrics gives fleet aggregates only."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.device import FACTS, TestDevice, enroll_device
from tests.support.processes import HubProcess, fogline_cmd, start_hub, wait_until
from tests.support.receivers import Receiver

MIB = 1024 * 1024


def _report(device: TestDevice, *, sick: bool) -> None:
    health = {
        "disk_free_bytes": (5 if sick else 50) * MIB,
        "disk_total_bytes": 100 * MIB,
        "mem_used_bytes": (95 if sick else 10) * MIB,
        "mem_available_bytes": (5 if sick else 90) * MIB,
    }
    state = "crash-loop" if sick else "healthy"
    body = {
        "facts": FACTS,
        "health": health,
        "modules": {"modules": {"web": {"name": "web", "state": state, "restarts": 4}}},
    }
    with device.client() as client:
        assert client.post("/v1/report", json=body).status_code == 200


def _alerts(hub: HubProcess, active: bool = True) -> dict[str, dict[str, Any]]:
    out = hub.cli("alerts", "ls", *(["--active"] if active else []), "-o", "json").stdout
    return {a["kind"]: a for a in json.loads(out)}


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_alerts_are_raised_once_sent_acknowledged_and_cleared(
    tmp_path: Path, receiver: Receiver, db: str, request: pytest.FixtureRequest
) -> None:
    hub = start_hub(
        tmp_path / "hub",
        db_url=request.getfixturevalue("postgres_url") if db == "postgresql" else None,
        extra_args=[
            # Long enough that the sick report's alerts are checked before
            # its silence counts (CLI calls take seconds on a loaded box).
            "--alert-offline-after",
            "15s",
            "--alert-webhook",
            receiver.url(),
            # Certificates that expire within 30 days: every device's alert.
            "--device-cert-validity",
            "10d",
        ],
    )
    try:
        device = enroll_device(hub, hub.create_claim(), "sick-node", tmp_path)
        _report(device, sick=True)
        sick = {"cert-expiring", "crash-loop", "disk-low", "memory-high"}
        # A loaded machine can take longer than the 3 s offline threshold
        # between two looks: `offline` may join here; it is judged last.
        alerts = wait_until(lambda: set(_alerts(hub)) >= sick and _alerts(hub), 20, "alerts")
        alerts = {kind: a for kind, a in alerts.items() if kind != "offline"}
        assert set(alerts) == sick
        assert alerts["disk-low"]["detail"] == "5.0 % disk free"
        assert alerts["memory-high"]["detail"] == "95.0 % memory used"
        assert alerts["crash-loop"]["detail"] == "crash-looping: web"
        assert all(a["device"] == "sick-node" for a in alerts.values())

        # Each goes to the webhook once, as JSON.
        wait_until(lambda: len(receiver.seen) >= 4, 20, "webhook deliveries")
        sent = [json.loads(seen.body) for seen in receiver.seen]
        assert sorted(a["kind"] for a in sent if a["kind"] != "offline") == sorted(sick)
        _report(device, sick=True)  # still sick: nothing new is raised
        now = {a["id"] for kind, a in _alerts(hub).items() if kind != "offline"}
        assert now == {a["id"] for a in alerts.values()}

        # An operator acknowledges one; the audit trail says who.
        acked = hub.cli("alerts", "ack", alerts["disk-low"]["id"], "-o", "table").stdout
        assert "acknowledged disk-low on sick-node" in acked
        assert _alerts(hub)["disk-low"]["acked_by"] == "admin"
        with hub.client() as client:
            entries = client.get("/v1/audit", params={"action": "alert.ack"}).json()
        assert [e["target"] for e in entries] == [alerts["disk-low"]["id"]]

        # /metrics: aggregates by kind and version, no label naming a device.
        assert hub.metric("fogline_hub_alerts_active", kind="disk-low") == 1
        assert hub.metric("fogline_hub_devices_by_version", version="test") == 1
        with hub.client() as client:
            assert "sick-node" not in client.get("/metrics").text

        # Healthy again: its alerts clear; silent for 15 s: offline is raised.
        _report(device, sick=False)
        wait_until(lambda: set(_alerts(hub)) <= {"cert-expiring", "offline"}, 20, "alerts to clear")
        wait_until(lambda: "offline" in _alerts(hub), 40, "the offline alert")
        cleared = [a for a in _alerts(hub, active=False).values() if not a["active"]]
        assert cleared and all(a["cleared_at"] for a in cleared)
        table = hub.cli("alerts", "ls", "-o", "table").stdout
        assert "offline" in table and "cleared" in table
    finally:
        hub.stop()


def test_an_unknown_alert_is_404_and_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "hub")
    try:
        with hub.client() as client:
            assert client.post("/v1/alerts/nope/ack").status_code == 404
        result = hub.cli("alerts", "ack", "nope", check=False)
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    finally:
        hub.stop()


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--alert-webhook", "file:///etc/passwd"),
        ("--alert-offline-after", "300"),
        ("--health-rollup-step", "500ms"),
        ("--health-raw-retention", "5m"),  # shorter than two 5m rollup steps
        ("--health-rollup-retention", "1m"),
        ("--forecast-window", "soon"),
        ("--forecast-interval", "500ms"),
        ("--forecast-horizon", "0s"),
    ],
)
def test_a_bad_alert_or_health_flag_is_refused_at_start(
    tmp_path: Path, flag: str, value: str
) -> None:
    result = subprocess.run(
        [*fogline_cmd(), "hub", "serve", "--data-dir", str(tmp_path), flag, value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and flag in result.stderr, result.stderr
    assert not (tmp_path / "ca.pem").exists()
