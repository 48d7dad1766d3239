"""Alert thresholds are `hub serve --alert-*` flags (issue #15): the same
report fires nothing on a hub with the defaults and every threshold alert on
a hub whose thresholds are moved past it; a wrong value stops the hub at
start with a one-line error naming the flag."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.device import FACTS, TestDevice, enroll_device
from tests.support.processes import HubProcess, fogline_cmd, start_hub, wait_until

MIB = 1024 * 1024
# 40 % disk free, 20 % memory used, a module restarted 4 times but healthy.
REPORT = {
    "facts": FACTS,
    "health": {
        "disk_free_bytes": 40 * MIB,
        "disk_total_bytes": 100 * MIB,
        "mem_used_bytes": 20 * MIB,
        "mem_available_bytes": 80 * MIB,
    },
    "modules": {"modules": {"web": {"name": "web", "state": "healthy", "restarts": 4}}},
}
MOVED = [
    "--alert-disk-free-below",
    "50%",
    "--alert-memory-used-above",
    "15",
    "--alert-crash-loop-restarts",
    "3",
    "--alert-cert-expiry",
    "400d",  # the default certificates live 365 days
]


def _report(device: TestDevice, state: str = "healthy") -> None:
    body = {**REPORT, "modules": {"modules": {"web": {"name": "web", "state": state}}}}
    with device.client() as client:
        assert (
            client.post("/v1/report", json=body if state != "healthy" else REPORT).status_code
            == 200
        )


def _active(hub: HubProcess, device: str) -> dict[str, str]:
    out = hub.cli("alerts", "ls", "--active", "-o", "json").stdout
    return {a["kind"]: a["detail"] for a in json.loads(out) if a["device"] == device}


@pytest.mark.parametrize("moved", [False, True], ids=["defaults", "moved"])
def test_a_changed_threshold_changes_what_fires(tmp_path: Path, moved: bool) -> None:
    hub = start_hub(tmp_path / "hub", extra_args=MOVED if moved else [])
    try:
        device = enroll_device(hub, hub.create_claim(), "edge", tmp_path)
        # A device that crash-loops under any thresholds: once its alert is
        # up, a pass has judged both reports.
        marker = enroll_device(hub, hub.create_claim(), "marker", tmp_path)
        _report(device)
        _report(marker, state="crash-loop")
        wait_until(lambda: "crash-loop" in _active(hub, "marker"), 20, "a pass after the reports")
        active = _active(hub, "edge")
        if not moved:
            assert active == {}
            return
        assert active == {
            "disk-low": "40.0 % disk free",
            "memory-high": "20.0 % memory used",
            "crash-loop": "crash-looping: web",
            "cert-expiring": active["cert-expiring"],
        }
    finally:
        hub.stop()


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("--alert-disk-free-below", "0%", "percentage between 0 and 100"),
        ("--alert-memory-used-above", "100%", "percentage between 0 and 100"),
        ("--alert-cert-expiry", "30", "unit"),
        ("--alert-offline-after", "500ms", "at least 1s"),
        ("--alert-crash-loop-restarts", "-1", "greater than or equal to 0"),
    ],
)
def test_a_bad_threshold_is_refused_at_start_naming_the_flag(
    tmp_path: Path, flag: str, value: str, reason: str
) -> None:
    result = subprocess.run(
        [*fogline_cmd(), "hub", "serve", "--data-dir", str(tmp_path), f"{flag}={value}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Rich boxes and wraps the message: compare its words.
    said = " ".join(re.sub("[\u2500-\u257f]", " ", result.stderr).split())
    assert result.returncode == 2 and flag in said and reason in said, result.stderr
    assert not (tmp_path / "ca.pem").exists()
