"""Desired state reaching real agents: propagation, autonomy, label moves."""

import json
import textwrap
import time

from fogline.agent._sync import LONG_POLL_S
from tests.support.processes import AgentProcess, wait_until

BASE = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: base}
    spec:
      selector: {}
      config: {sampling: {rate_hz: RATE}}
    """)
NORTH = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: north}
    spec:
      selector:
        matchExpressions: [{key: zone, operator: In, values: [north]}]
      priority: 5
      config: {zone_alarm: true}
    """)


def _config(agent: AgentProcess) -> dict | None:
    path = agent.data_dir / "config" / "config.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _apply(hub, tmp_path, text: str) -> None:
    path = tmp_path / f"m-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    hub.cli("apply", "-f", str(path))


def _in_sync(hub, name: str) -> bool:
    sync = hub.device(name)["sync"]
    return bool(sync) and sync["status"] == "in-sync"


def test_a_change_reaches_a_connected_agent_in_about_a_second(hub, tmp_path):
    agent = AgentProcess(tmp_path / "a1", hub, "a1", hub.create_claim())
    agent.start()
    try:
        agent.wait_enrolled()
        _apply(hub, tmp_path, BASE.replace("RATE", "10"))
        wait_until(lambda: (_config(agent) or {}).get("sampling") == {"rate_hz": 10}, 15, "config")
        # In sync: the agent reported what it applied, and its sync loop went
        # straight from applying back to long-polling.
        wait_until(lambda: _in_sync(hub, "a1"), 10, "in-sync")
        _apply(hub, tmp_path, BASE.replace("RATE", "20"))
        started = time.monotonic()  # the change is committed: the push starts now
        wait_until(lambda: (_config(agent) or {}).get("sampling") == {"rate_hz": 20}, 10, "update")
        # Pushed: about a second on a quiet machine. Without the push the
        # agent would see it when its long-poll (LONG_POLL_S, 25 s) ends.
        assert time.monotonic() - started < LONG_POLL_S / 5
        wait_until(lambda: _in_sync(hub, "a1"), 10, "in-sync after update")
        shown = hub.cli("devices", "show", "a1", "-o", "json").stdout
        sync = json.loads(shown)["sync"]
        assert sync["desired_revision"] == sync["reported_revision"]
    finally:
        agent.stop()


def test_agent_restarted_while_the_hub_is_down_applies_its_last_state(hub, tmp_path):
    agent = AgentProcess(tmp_path / "a2", hub, "a2", hub.create_claim())
    agent.start()
    agent.wait_enrolled()
    _apply(hub, tmp_path, BASE.replace("RATE", "7"))
    wait_until(lambda: _config(agent) == {"sampling": {"rate_hz": 7}}, 15, "config")
    agent.stop()
    hub.stop()
    (agent.data_dir / "config" / "config.json").unlink()  # prove it is re-applied offline
    agent.start()
    try:
        wait_until(lambda: _config(agent) == {"sampling": {"rate_hz": 7}}, 15, "offline apply")
        assert "sync.local_copy_loaded" in agent.log_text()
        assert agent.proc is not None and agent.proc.poll() is None
    finally:
        agent.stop()


def test_corrupted_local_copy_is_ignored_and_fetched_again(hub, tmp_path):
    agent = AgentProcess(tmp_path / "a3", hub, "a3", hub.create_claim())
    agent.start()
    agent.wait_enrolled()
    _apply(hub, tmp_path, BASE.replace("RATE", "3"))
    wait_until(lambda: _config(agent) is not None, 15, "config")
    agent.stop()
    desired = agent.data_dir / "state" / "desired.json"
    doc = json.loads(desired.read_text())
    doc["document"]["config"]["sampling"]["rate_hz"] = 999  # tampered: hash no longer matches
    desired.write_text(json.dumps(doc))
    agent.start()
    try:
        wait_until(lambda: "sync.local_copy_corrupt" in agent.log_text(), 15, "corruption noticed")
        wait_until(lambda: _config(agent) == {"sampling": {"rate_hz": 3}}, 15, "refetched")
    finally:
        agent.stop()


def test_label_change_moves_a_device_between_deployments(hub, tmp_path):
    agent = AgentProcess(tmp_path / "a4", hub, "a4", hub.create_claim(), labels="zone=south")
    agent.start()
    try:
        agent.wait_enrolled()
        _apply(hub, tmp_path, BASE.replace("RATE", "1") + "---\n" + NORTH)
        wait_until(lambda: _config(agent) == {"sampling": {"rate_hz": 1}}, 15, "base only")
        hub.cli("devices", "label", "a4", "zone=north")
        wait_until(lambda: (_config(agent) or {}).get("zone_alarm") is True, 10, "moved north")
        # The agent asked for zone=south: never selected on, so removing the
        # operator's zone leaves the device in no zone.
        hub.cli("devices", "label", "a4", "zone-")
        wait_until(
            lambda: "zone_alarm" not in (_config(agent) or {"zone_alarm": 1}), 10, "moved out"
        )
    finally:
        agent.stop()
