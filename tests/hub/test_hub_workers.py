"""`fogline hub serve --workers N`: several processes on one port, one hub.

Devices and operators see one hub whichever worker answers; the workers
stop together, a worker that dies takes the hub down (exit 1) so its
supervisor restarts it whole, and no worker outlives a SIGKILLed hub.
"""

import json
import os
import signal
import textwrap
from pathlib import Path

import pytest

from tests.support.device import enroll_device
from tests.support.processes import HubProcess, list_devices, process_alive, start_hub, wait_until

GOLD = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: gold}
    spec:
      selector: {}
      config: {rate_hz: 9}
    """)


def _worker_pids(hub: HubProcess, count: int) -> list[int]:
    def started() -> list[int] | None:
        pids = [
            json.loads(line)["pid"]
            for line in hub.log_path.read_text().splitlines()
            if '"hub.worker_started"' in line
        ]
        return pids if len(pids) >= count else None

    return wait_until(started, 20, f"{count} workers started")


@pytest.fixture
def workers_hub(tmp_path):
    hub = start_hub(tmp_path / "hub", extra_args=["--workers", "2"])
    try:
        yield hub
    finally:
        hub.stop()


def test_two_workers_serve_one_hub(workers_hub, tmp_path):
    pids = _worker_pids(workers_hub, 2)
    assert len(set(pids)) == 2 and workers_hub.proc.pid not in pids
    claim = workers_hub.create_claim(max_uses=12)
    devices = [enroll_device(workers_hub, claim, f"w-{i}", tmp_path) for i in range(12)]
    for device in devices:  # each on a new connection: both workers answer some
        assert device.report().status_code == 200
    with workers_hub.client() as client:
        listed = list_devices(client)
    assert {d["name"] for d in listed} >= {f"w-{i}" for i in range(12)}
    # A change applied through whichever worker reaches every device's desired state.
    path = tmp_path / "gold.yaml"
    path.write_text(GOLD)
    workers_hub.cli("apply", "-f", str(path))
    for device in devices:
        with device.client() as client:
            document = client.get("/v1/desired").json()["document"]
        assert document["config"] == {"rate_hz": 9}


def test_sigterm_stops_every_worker_and_exits_0(workers_hub):
    pids = _worker_pids(workers_hub, 2)
    proc = workers_hub.proc
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert not any(process_alive(pid) for pid in pids)


def test_a_dead_worker_takes_the_hub_down_with_exit_1(workers_hub):
    first, second = _worker_pids(workers_hub, 2)
    os.kill(first, signal.SIGKILL)
    assert workers_hub.proc.wait(timeout=15) == 1
    wait_until(lambda: not process_alive(second), 10, "the other worker stopped")
    assert "hub.worker_exited" in workers_hub.log_text()


def test_workers_do_not_outlive_a_sigkilled_hub(workers_hub):
    pids = _worker_pids(workers_hub, 2)
    workers_hub.proc.kill()
    workers_hub.proc.wait(timeout=5)
    wait_until(lambda: not any(process_alive(pid) for pid in pids), 10, "the workers gone")


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_the_parent_waits_as_a_small_interpreter(workers_hub):
    """After forking, the hub's process execs fogline._hub_parent (same pid):
    the workers stay its children, and it no longer holds the hub's imports."""
    workers = _worker_pids(workers_hub, 2)
    parent = workers_hub.proc.pid

    def exec_done() -> bool:
        return b"fogline._hub_parent" in Path(f"/proc/{parent}/cmdline").read_bytes()

    wait_until(exec_done, 20, "the parent to exec its small supervisor")
    assert all(_status_kb(pid, "PPid") == parent for pid in workers)
    # About 14 MB against about 120 MB for a worker (and for the parent before).
    assert _status_kb(parent, "VmRSS") * 3 < min(_status_kb(pid, "VmRSS") for pid in workers)
    with workers_hub.client() as client:
        assert client.get("/healthz").status_code == 200
