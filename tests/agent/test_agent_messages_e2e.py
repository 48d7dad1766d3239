"""What the agent says, read from a real agent and hub (issue #19).

- A clean stop (SIGTERM) logs nothing at error level: uvicorn's lifespan
  task used to be cancelled with the agent and log an error-level
  CancelledError on every stop.
- A module failing its health check is a warning in the agent's log.
- A failed update names its release once in the sync error the hub shows,
  not `web 2.0.0: web 2.0.0: ...`.
"""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.modules import deployment, release
from tests.support.processes import AgentProcess, HubProcess, free_port, wait_until


def _records(log: Path, start: int = 0) -> list[dict[str, Any]]:
    """The agent's JSON log records from byte `start` on (lines that are not JSON are kept as text)."""
    records = []
    for line in log.read_bytes()[start:].decode(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            records.append({"level": "text", "event": line})
    return records


def _sync(hub: HubProcess, name: str) -> dict[str, Any]:
    return dict(hub.device(name).get("sync") or {})


@pytest.mark.timeout(180)
def test_a_clean_stop_logs_no_error_and_a_failed_update_names_its_release_once(
    hub: HubProcess, tmp_path: Path
) -> None:
    key = hub.trust_new_key(tmp_path / "keys")
    port = free_port()
    release(hub, tmp_path, key, "1.0.0", port)
    release(hub, tmp_path, key, "2.0.0", port, broken=True)
    manifest = tmp_path / "web.yaml"
    manifest.write_text(deployment("1.0.0"))
    hub.cli("apply", "-f", str(manifest))

    node = AgentProcess(
        tmp_path / "node", hub, "node-1", hub.create_claim(), extra_args=["--log-format", "json"]
    )
    node.start()
    node.wait_enrolled()
    wait_until(lambda: _sync(hub, "node-1").get("status") == "in-sync", 60, "web 1.0.0 in sync")

    # A running agent with a running module, stopped as a service manager does.
    assert node.stop() == 0
    records = _records(node.log_path)
    assert any(r.get("event") == "agent.enrolled" for r in records)  # the log is JSON lines
    errors = [r for r in records if r.get("level") in ("error", "critical", "text")]
    assert not errors, errors

    # Started again (its identity kept), it is given a release that never gets healthy.
    offset = node.log_path.stat().st_size
    node.start()
    manifest.write_text(deployment("2.0.0"))
    hub.cli("apply", "-f", str(manifest))
    sync = wait_until(
        lambda: (s := _sync(hub, "node-1")).get("status") == "error" and s, 90, "web 2.0.0 refused"
    )
    assert re.fullmatch(r"web 2\.0\.0: not healthy within [0-9.]+s", sync["error"]), sync
    shown = hub.cli("devices", "show", "node-1").stdout
    assert shown.count("web 2.0.0") <= 1 and "not healthy within" in shown, shown

    unhealthy = [
        r
        for r in _records(node.log_path, offset)
        if r.get("event") == "module.state" and r.get("to") == "unhealthy"
    ]
    assert unhealthy and all(r["level"] == "warning" for r in unhealthy), unhealthy
    assert unhealthy[0]["module"] == "web" and unhealthy[0]["version"] == "2.0.0"
    assert "HTTP 500" in unhealthy[0]["error"]
