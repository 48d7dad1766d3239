"""The hub's background tasks are supervised as a whole, against a real hub
process: a task that fails is restarted with backoff while the others run
on, and `/healthz` answers 503 naming it until it is back.

Faults are injected through the test-only fault file the hub reads from
FOGLINE_HUB_TEST_FAULT_FILE (fogline.hub._supervise); a hub started without
that variable has no such hook.
"""

import json
import re
from pathlib import Path
from typing import Any

import httpx

from fogline.hub._supervise import FAULT_FILE_ENV
from tests.support.device import enroll_device
from tests.support.processes import HubProcess, start_hub, tls, wait_until

TASKS = (
    "report-writer",
    "desired-watch",
    "rollout-scheduler",
    "retention",
    "health-rollups",
    "alerts",
    "alert-webhook",
)


def _health(hub: HubProcess) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{hub.url}/healthz", verify=tls(hub.ca), timeout=5)
    return response.status_code, response.json()


def _logged(hub: HubProcess, name: str) -> set[str]:
    """The tasks the hub's log shows an `name` event for."""
    found = set()
    for line in hub.log_path.read_text(errors="replace").splitlines():
        if f'"{name}"' in line:
            found.add(json.loads(line).get("task"))
    return found


def test_a_failed_task_is_restarted_and_healthz_names_it_while_down(tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    faults.write_text("")
    hub = start_hub(
        tmp_path / "hub",
        # A webhook nobody listens on: its task runs (and is supervised) all the same.
        extra_args=["--alert-webhook", "http://127.0.0.1:9/hook"],
        env={FAULT_FILE_ENV: str(faults), "FOGLINE_LOG_FORMAT": "json"},
    )
    device = enroll_device(hub, hub.create_claim(), "sup-1", tmp_path)
    assert _health(hub) == (200, {"status": "ok", "version": _health(hub)[1]["version"]})

    # One task down: healthz names it, and the others (the report writer
    # among them) go on serving devices.
    faults.write_text("retention\n")
    wait_until(lambda: _health(hub)[0] == 503, 10, "healthz unhealthy")
    status, body = _health(hub)
    assert status == 503 and body["status"] == "unhealthy"
    assert body["tasks_down"] == ["retention"]
    assert device.report().status_code == 200
    faults.write_text("")
    wait_until(lambda: _health(hub)[0] == 200, 30, "healthz healthy again")
    assert "retention" in _logged(hub, "hub.task_restarted")

    # A fault in every task: each is named, each is restarted and recovers.
    faults.write_text("\n".join(TASKS) + "\n")
    wait_until(
        lambda: set(_health(hub)[1].get("tasks_down", ())) == set(TASKS), 10, "every task down"
    )
    faults.write_text("")
    wait_until(lambda: _health(hub)[0] == 200, 60, "every task back")
    assert _logged(hub, "hub.task_failed") >= set(TASKS)
    assert _logged(hub, "hub.task_restarted") >= set(TASKS)
    assert _logged(hub, "hub.task_recovered") >= set(TASKS)
    # Back for real: the report writer records reports again.
    assert device.report().status_code == 200
    # The error is in the log, never in the public answer.
    assert "InjectedFault" in hub.log_text()
    assert not re.search("Injected", json.dumps(_health(hub)[1]))


def test_without_the_variable_there_is_no_fault_hook(tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    faults.write_text("\n".join(TASKS) + "\n")
    hub = start_hub(tmp_path / "hub")  # started healthy: the file is never read
    assert _health(hub)[0] == 200
    assert "hub.task_failed" not in hub.log_text()
