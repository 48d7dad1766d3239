"""Modules end to end: real hub, real agent, real module processes.

One scenario, step by step, as an operator lives it: deploy v1, update to
v2, a bad v3 rolled back to v2 by itself, a killed module restarted, an
edited file found as drift and corrected.
"""

import json
import os
import signal
import time

import httpx
import pytest

from tests.support.modules import deployment, release
from tests.support.processes import AgentProcess, free_port, wait_until


def _served(port: int) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return None


def _modules(hub, name: str) -> dict:
    return hub.device(name).get("reported", {}).get("modules") or {}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_deploy_update_rollback_restart_and_drift(hub, tmp_path):
    keys = tmp_path / "keys"
    created = hub.cli("keys", "create", "ci", "--dir", str(keys))
    hub.cli("apply", "-f", "-", input_text=created.stdout)
    port = free_port()
    key = keys / "ci.key"
    for version in ("1.0.0", "2.0.0"):
        release(hub, tmp_path, key, version, port)
    release(hub, tmp_path, key, "3.0.0", port, broken=True)

    agent = AgentProcess(
        tmp_path / "node", hub, "node-1", hub.create_claim(), extra_args=["--drift-interval", "1"]
    )
    agent.start()
    manifest = tmp_path / "web.yaml"
    try:
        agent.wait_enrolled()

        # v1
        manifest.write_text(deployment("1.0.0"))
        plan = hub.cli("plan", "-f", str(manifest), check=False)
        assert plan.returncode == 2 and "modules[web]" in plan.stdout
        hub.cli("apply", "-f", str(manifest))
        served = wait_until(
            lambda: (s := _served(port)) and s["version"] == "1.0.0" and s, 60, "v1"
        )
        assert served["config"] == {"greeting": "hi"}
        wait_until(lambda: hub.device("node-1")["sync"]["status"] == "in-sync", 15, "in-sync v1")
        logs = wait_until(
            lambda: (
                (out := hub.cli("logs", "node-1", "web").stdout)
                and "web 1.0.0 listening" in out
                and out
            ),
            30,
            "module logs at the hub",
        )
        assert "! web 1.0.0 warming up" in logs  # stderr lines are marked

        # v2
        manifest.write_text(deployment("2.0.0"))
        plan = hub.cli("plan", "-f", str(manifest), check=False)
        assert "modules[web]: 1.0.0 → 2.0.0" in plan.stdout  # one line per module version
        assert "signature" not in plan.stdout
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: (s := _served(port)) and s["version"] == "2.0.0", 60, "v2")
        wait_until(lambda: hub.device("node-1")["sync"]["status"] == "in-sync", 15, "in-sync v2")

        # bad v3: unhealthy, rolled back to v2, reported, not retried in a loop
        manifest.write_text(deployment("3.0.0"))
        hub.cli("apply", "-f", str(manifest))
        sync = wait_until(
            lambda: (s := hub.device("node-1")["sync"])["status"] == "error" and s,
            60,
            "v3 failure reported",
        )
        assert "web 3.0.0" in sync["error"]
        # the rollback restarts v2 (it was stopped for the switch)
        wait_until(lambda: (s := _served(port)) and s["version"] == "2.0.0", 30, "v2 again")
        updates = _modules(hub, "node-1")["updates"]["web"]
        assert updates["version"] == "3.0.0" and updates["state"] == "failed"
        assert updates["failed_in"] in ("health", "rollback", "activate")
        rollbacks = agent.log_text().count('"3.0.0"')
        time.sleep(3)
        assert agent.log_text().count('"3.0.0"') == rollbacks  # no retry loop
        assert _served(port)["version"] == "2.0.0"

        # back to v2 by manifest, then a killed module is restarted
        manifest.write_text(deployment("2.0.0"))
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: hub.device("node-1")["sync"]["status"] == "in-sync", 30, "in-sync again")
        pid = _served(port)["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: (s := _served(port)) and s["pid"] != pid, 30, "module restarted")
        status = wait_until(
            lambda: (
                (m := _modules(hub, "node-1")["modules"].get("web"))
                and m.get("restarts", 0) >= 1
                and m
            ),
            15,
            "restart reported",
        )
        assert status["version"] == "2.0.0"

        # drift: an edited file is found and corrected (policy: correct)
        installed = tmp_path / "node" / "updater" / "modules" / "web" / "current" / "server.py"
        original = installed.read_text()
        installed.write_text(original + "\n# edited by hand\n")
        wait_until(lambda: installed.read_text() == original, 30, "file restored")
        wait_until(
            lambda: _modules(hub, "node-1").get("drift_corrections", 0) >= 1,
            15,
            "correction reported",
        )
        wait_until(lambda: _served(port) is not None, 30, "serving after the repair")
        listing = json.loads(hub.cli("devices", "ls", "-o", "json").stdout)
        assert listing[0]["reported"]["modules"]["drift_policy"] == "correct"
        shown = hub.cli("devices", "show", "node-1", "-o", "table").stdout
        assert "module web" in shown and "2.0.0" in shown
        assert "update web" in shown and "drift policy" in shown and "correct" in shown
        table = hub.cli("devices", "ls", "-o", "table").stdout
        assert "SYNC" in table and "DRIFT" in table
    finally:
        agent.stop()
