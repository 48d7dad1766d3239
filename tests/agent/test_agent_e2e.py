"""Real `fogline agent run` processes against a real hub."""

import json
import stat

import httpx
import pytest

from fogline.hub._device_labels import normalize_arch
from tests.support.processes import (
    AFTER_HUB_OUTAGE_S,
    AgentProcess,
    list_devices,
    start_hub,
    wait_until,
)


def _agent(tmp_path, hub, name, claim, labels=""):
    agent = AgentProcess(tmp_path / name, hub, name, claim, labels)
    agent.start()
    return agent


def test_agent_enrolls_appears_online_with_platform_and_requested_labels(hub, tmp_path):
    claim = hub.create_claim(labels="site=plant-7", max_uses=5)
    agent = _agent(tmp_path, hub, "edge-1", claim, "tier=gold")
    try:
        device_id = agent.wait_enrolled()
        device = wait_until(
            lambda: (d := hub.device("edge-1"))["status"] == "online" and d, 10, "device online"
        )
        assert device["id"] == device_id
        assert device["labels"]["site"] == "plant-7"
        # What the agent asks for is shown apart and not selected on.
        assert device["reported_labels"] == {"tier": "gold"} and "tier" not in device["labels"]
        assert device["labels"]["fogline.dev/os"] == "linux"
        assert device["labels"]["fogline.dev/arch"] == normalize_arch(device["arch"])
        assert device["agent_version"]
        key = tmp_path / "edge-1" / "identity" / "key.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    finally:
        agent.stop()


def test_restarted_agent_reuses_its_identity_without_a_claim(hub, tmp_path):
    claim = hub.create_claim(max_uses=1)
    agent = _agent(tmp_path, hub, "edge-r", claim)
    device_id = agent.wait_enrolled()
    assert agent.stop() == 0  # SIGTERM is a clean stop
    key_before = (tmp_path / "edge-r" / "identity" / "key.pem").read_bytes()
    again = _agent(tmp_path, hub, "edge-r", None)  # no claim: the used-up one would fail anyway
    try:
        assert again.wait_enrolled() == device_id
        assert (tmp_path / "edge-r" / "identity" / "key.pem").read_bytes() == key_before
        first_seen = hub.device("edge-r")["last_seen"]
        wait_until(lambda: hub.device("edge-r")["last_seen"] != first_seen, 10, "a new report")
    finally:
        again.stop()
    with hub.client() as client:
        assert len(list_devices(client)) == 1


def test_agent_waits_for_a_hub_that_is_down_then_enrolls(tmp_path):
    hub = start_hub(tmp_path / "hub")
    claim = hub.create_claim()
    hub.stop()
    agent = _agent(tmp_path, hub, "patient", claim)
    try:

        def unreachable() -> int:
            events = [
                json.loads(line)["event"]
                for line in agent.log_text().splitlines()
                if line.startswith("{")
            ]
            return events.count("agent.hub_unreachable")

        wait_until(lambda: unreachable() >= 2, 15, "several failed attempts with backoff")
        assert agent.proc is not None and agent.proc.poll() is None, agent.log_text()
        health = agent.health()
        assert health is not None and not health["enrolled"]
        hub.start()
        agent.wait_enrolled(timeout_s=45)
        wait_until(lambda: hub.device("patient")["status"] == "online", 10, "online")
    finally:
        agent.stop()
        hub.stop()


@pytest.mark.timeout(240)  # room for the report backoff after the outage
def test_agent_survives_a_hub_outage_and_reports_again(hub, tmp_path):
    agent = _agent(tmp_path, hub, "steady", hub.create_claim())
    try:
        agent.wait_enrolled()
        hub.kill()
        wait_until(
            lambda: (h := agent.health()) and h["hub"] == "unreachable", 15, "outage noticed"
        )
        hub.start()
        wait_until(
            lambda: (h := agent.health()) and h["hub"] == "reachable",
            AFTER_HUB_OUTAGE_S,
            "reconnect",
        )
        assert agent.proc is not None and agent.proc.poll() is None
    finally:
        agent.stop()


def test_agent_with_a_bad_claim_exits_with_a_clear_error(hub, tmp_path):
    agent = _agent(tmp_path, hub, "refused", "fgc_aaaaaaaaaaaa." + "b" * 43)
    assert agent.proc is not None
    code = agent.proc.wait(timeout=30)
    assert code == 1
    assert "claim refused" in agent.log_text()
    assert "Traceback" not in agent.log_text()


def test_revoked_agent_keeps_running_but_is_refused(hub, tmp_path):
    agent = _agent(tmp_path, hub, "bad-apple", hub.create_claim())
    try:
        agent.wait_enrolled()
        hub.cli("devices", "revoke", "bad-apple")
        wait_until(lambda: "agent.report_refused" in agent.log_text(), 10, "refused report")
        assert agent.proc is not None and agent.proc.poll() is None
        assert hub.device("bad-apple")["status"] == "revoked"
    finally:
        agent.stop()


def test_agent_serves_healthz_and_metrics_on_loopback(hub, tmp_path):
    agent = _agent(tmp_path, hub, "observed", hub.create_claim())
    try:
        agent.wait_enrolled()
        port = int((tmp_path / "observed" / "local-port").read_text())
        wait_until(
            lambda: (
                'fogline_agent_reports_total{result="ok"}'
                in httpx.get(f"http://127.0.0.1:{port}/metrics").text
            ),
            10,
            "a report counted",
        )
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "fogline_agent_enrolled 1.0" in text
        assert httpx.get(f"http://127.0.0.1:{port}/nope").status_code == 404
    finally:
        agent.stop()
