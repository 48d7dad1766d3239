"""A module removed from a node and deployed again with the same release runs
again: real hub, real agent, a real module process, and no second download.
Removed, it stays down also across an agent restart.
"""

import json

import httpx
import pytest

from tests.support.modules import deployment, release
from tests.support.processes import AgentProcess, HubProcess, free_port, wait_until

_FULL_ROUTE = {"method": "GET", "route": "/v1/artifacts/{digest}", "status": "200"}


def _served(port: int) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return None


def _modules(hub: HubProcess) -> dict:
    return hub.device("node-1").get("reported", {}).get("modules") or {}


def _starts(agent: AgentProcess) -> int:
    """How many times the agent started the module's process (from its log:
    a start at boot that the desired state stops at once prints nothing)."""
    starts = 0
    for line in agent.log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and (
            (entry.get("event"), entry.get("module"), entry.get("to"))
            == ("module.state", "web", "starting")
        ):
            starts += 1
    return starts


def _applied(agent: AgentProcess) -> int:
    return agent.log_path.read_text(errors="replace").count("sync.applied")


def _downloads(hub: HubProcess) -> float:
    try:
        return hub.metric("fogline_hub_requests_total", **_FULL_ROUTE)
    except AssertionError:  # never requested: absent from /metrics
        return 0.0


@pytest.mark.timeout(180)
def test_a_module_deleted_and_deployed_again_with_the_same_release_runs_again(
    hub: HubProcess, tmp_path
) -> None:
    keys = tmp_path / "keys"
    hub.cli(
        "apply", "-f", "-", input_text=hub.cli("keys", "create", "ci", "--dir", str(keys)).stdout
    )
    port = free_port()
    release(hub, tmp_path, keys / "ci.key", "1.0.0", port)
    agent = AgentProcess(tmp_path / "node", hub, "node-1", hub.create_claim())
    agent.start()
    manifest = tmp_path / "web.yaml"
    manifest.write_text(deployment("1.0.0"))
    try:
        agent.wait_enrolled()
        hub.cli("apply", "-f", str(manifest))
        first = wait_until(lambda: (s := _served(port)) and s["version"] == "1.0.0" and s, 60, "v1")
        wait_until(lambda: hub.device("node-1")["sync"]["status"] == "in-sync", 15, "in-sync")
        assert _downloads(hub) == 1

        hub.cli("delete", "deployment", "web")
        wait_until(lambda: _served(port) is None, 30, "web stopped")
        wait_until(
            lambda: (
                "web" not in _modules(hub).get("modules", {})
                and hub.device("node-1")["sync"]["status"] == "in-sync"
            ),
            15,
            "the removal reported",
        )
        assert _starts(agent) == 1

        # The agent restarts: its last desired state does not list web, so
        # recover() leaves it installed and stopped.
        applied = _applied(agent)
        agent.stop()
        agent.start()
        wait_until(lambda: _applied(agent) > applied, 30, "the local copy applied at start")
        assert _starts(agent) == 1 and _served(port) is None

        hub.cli("apply", "-f", str(manifest))  # the same release, the same config
        again = wait_until(
            lambda: (s := _served(port)) and s["pid"] != first["pid"] and s, 30, "web served again"
        )
        assert again["version"] == "1.0.0" and again["config"] == {"greeting": "hi"}
        reported = wait_until(
            lambda: (
                (m := _modules(hub))
                and (m.get("modules", {}).get("web") or {}).get("state") == "healthy"
                and hub.device("node-1")["sync"]["status"] == "in-sync"
                and m
            ),
            30,
            "web reported healthy and in sync",
        )
        assert reported["modules"]["web"]["version"] == "1.0.0"
        assert reported["modules"]["web"]["pid"] == again["pid"]
        assert reported["updates"]["web"]["state"] == "done"
        assert reported["progress"]["web"]["detail"] == "installed; started again"
        assert _starts(agent) == 2
        assert _downloads(hub) == 1  # started from the kept install, not fetched again
    finally:
        agent.stop()
