"""Self-healing a deployment enables (hub/_self_healing.py), against a real hub:
a device that crash-loops twice within the window is quarantined with the
hub-owned label, audited with the actor `hub`, listed in the insights (API,
CLI) and posted to the alert webhook once; a device that failed once is
not; an operator lifts the quarantine (audited) and the old failures are not
counted again. The manifest field is checked strictly at plan time."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.device import FACTS, TestDevice, enroll_device
from tests.support.processes import HubProcess, start_hub, wait_until
from tests.support.receivers import Receiver

DEPLOYMENT = """\
apiVersion: fogline.dev/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {site: berlin}}
  selfHealing:
    quarantineAfter: {failures: 2, window: 10m}
"""


def _report(device: TestDevice, state: str) -> None:
    modules = {"web": {"name": "web", "version": "2.1.0", "state": state, "restarts": 3}}
    body = {"facts": FACTS, "modules": {"modules": modules}}
    with device.client() as client:
        assert client.post("/v1/report", json=body).status_code == 200


def _looping(hub: HubProcess, name: str) -> bool:
    with hub.client() as client:
        alerts = client.get("/v1/alerts", params={"active": "true"}).json()
    return any(a["device"] == name and a["kind"] == "crash-loop" for a in alerts)


def _crash_loop_once(hub: HubProcess, device: TestDevice) -> None:
    """One crash-loop alert raised and cleared again."""
    _report(device, "crash-loop")
    wait_until(lambda: _looping(hub, device.name), 20, f"{device.name}'s crash-loop alert")
    _report(device, "healthy")
    wait_until(lambda: not _looping(hub, device.name), 20, f"{device.name}'s alert to clear")


def _labels(hub: HubProcess, name: str) -> dict[str, Any]:
    labels: dict[str, Any] = hub.device(name)["labels"]
    return labels


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _actions_posted(receiver: Receiver) -> list[dict[str, Any]]:
    bodies = [json.loads(seen.body) for seen in list(receiver.seen)]
    return [b for b in bodies if b.get("kind") == "self-healing"]


def test_a_device_that_crash_loops_repeatedly_is_quarantined_and_can_be_released(
    tmp_path: Path, receiver: Receiver
) -> None:
    hub = start_hub(
        tmp_path / "hub",
        extra_args=["--report-interval", "0.3", "--alert-webhook", receiver.url()],
    )
    try:
        manifest = tmp_path / "web.yaml"
        manifest.write_text(DEPLOYMENT)
        hub.cli("apply", "-f", str(manifest))
        claim = hub.create_claim(labels="site=berlin")
        flaky = enroll_device(hub, claim, "flaky", tmp_path)
        once = enroll_device(hub, claim, "once", tmp_path)

        _crash_loop_once(hub, once)
        _crash_loop_once(hub, flaky)
        assert "fogline.dev/quarantined" not in _labels(hub, "flaky")
        _report(flaky, "crash-loop")  # the second failure within 10 minutes
        wait_until(
            lambda: _labels(hub, "flaky").get("fogline.dev/quarantined") == "true",
            20,
            "flaky's quarantine",
        )
        assert "fogline.dev/quarantined" not in _labels(hub, "once")

        with hub.client() as client:
            entries = client.get("/v1/audit", params={"action": "device.quarantine"}).json()
        assert [(e["actor"], e["target"]) for e in entries] == [("hub", "flaky")]
        assert entries[0]["detail"]["deployment"] == "web"
        assert entries[0]["detail"]["failures"] == 2

        # The insights list it, from that audit entry; the webhook got it once.
        sentence = "quarantined flaky: 2 crash loops within 10m (deployment web); rollouts skip it"
        with hub.client() as client:
            [action] = client.get("/v1/insights").json()["actions"]
        assert (action["action"], action["device"], action["module"]) == (
            "quarantine",
            "flaky",
            None,
        )
        assert (action["detail"], action["audit_seq"]) == (sentence, entries[0]["seq"])
        assert action["reason"] == entries[0]["detail"]["reason"]
        assert action["device_id"] == hub.device("flaky")["id"]
        listed = json.loads(hub.cli("insights", "ls", "-o", "json").stdout)
        assert listed["actions"] == [action]
        table = hub.cli("insights", "ls", "-o", "table").stdout
        assert "self-healing: quarantine" in table and sentence in table, table
        assert f"(audit #{action['audit_seq']})" in table
        wait_until(lambda: _actions_posted(receiver), 20, "the action at the webhook")
        [posted] = _actions_posted(receiver)
        expected = {**action, "kind": "self-healing", "id": f"action-{action['audit_seq']}"}
        assert _when(posted.pop("at")) == _when(expected.pop("at"))
        assert posted == expected

        # An operator lifts it; the two failures before are not counted again,
        # though the device still crash-loops.
        shown = json.loads(hub.cli("devices", "unquarantine", "flaky", "-o", "json").stdout)
        assert "fogline.dev/quarantined" not in shown[0]["labels"]
        _report(flaky, "healthy")
        wait_until(lambda: not _looping(hub, "flaky"), 20, "flaky's alert to clear")
        assert "fogline.dev/quarantined" not in _labels(hub, "flaky")
        with hub.client() as client:
            lifted = client.get("/v1/audit", params={"action": "device.unquarantine"}).json()
            assert [(e["actor"], e["target"]) for e in lifted] == [("admin", "flaky")]
            again = client.post("/v1/devices/flaky/unquarantine")
        assert again.status_code == 409 and "not quarantined" in again.text
        # Still listed as taken (the lift is an operator's act, not the hub's),
        # and posted once only, though alert passes ran since.
        with hub.client() as client:
            assert [a["action"] for a in client.get("/v1/insights").json()["actions"]] == [
                "quarantine"
            ]
        assert len(_actions_posted(receiver)) == 1
    finally:
        hub.stop()


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        ("quarantineAfter: {failures: 0, window: 10m}", "must be at least 1 (got 0)"),
        ("quarantineAfter: {failures: 2, window: 5s}", "between 1m and 30d"),
        ("quarantineAfter: {failures: 2, window: soon}", "window"),
        ('quarantineAfter: {failures: "2", window: 10m}', "failures"),
        ("quarantineAfter: {failures: 2}", "window"),
        ("restartEverything: true", "restartEverything"),
    ],
)
def test_a_bad_self_healing_block_is_refused_naming_the_field(
    tmp_path: Path, block: str, reason: str
) -> None:
    from fogline.manifest import ManifestError, ManifestSource, load_manifests

    text = DEPLOYMENT.replace("quarantineAfter: {failures: 2, window: 10m}", block)
    with pytest.raises(ManifestError) as caught:
        load_manifests([ManifestSource("web.yaml", text)])
    message = str(caught.value)
    assert "spec.selfHealing" in message and reason in message, message
