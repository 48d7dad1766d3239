"""Staged rollouts against a real hub, with fake devices reporting over mTLS."""

import textwrap
import time

import pytest

from tests.support.device import enroll_device
from tests.support.processes import wait_until
from tests.support.rollout_device import desired_revision, report_applied, sync


def manifest(rate: int, rollout: str = "") -> str:
    text = textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: web}}
        spec:
          selector: {{}}
          config: {{rate_hz: {rate}}}
        """)
    return text + (textwrap.indent(f"rollout: {rollout}\n", "  ") if rollout else "")


def apply(hub, tmp_path, text):
    path = tmp_path / f"m{time.monotonic_ns()}.yaml"
    path.write_text(text)
    hub.cli("apply", "-f", str(path))


def rollout(hub, ref="web"):
    with hub.client() as client:
        response = client.get(f"/v1/rollouts/{ref}")
    assert response.status_code == 200, response.text
    return response.json()


def act(hub, action, ref="web"):
    with hub.client() as client:
        return client.post(f"/v1/rollouts/{ref}/{action}")


def audit(hub):
    with hub.client() as client:
        return client.get("/v1/audit").json()


@pytest.fixture
def fleet(hub, tmp_path):
    claim = hub.create_claim(max_uses=5)
    devices = [enroll_device(hub, claim, f"dev-{i}", tmp_path) for i in range(3)]
    for device in devices:
        sync(device)  # online, on the empty document
    return hub, devices


def pump(devices, **health):
    for device in devices:
        sync(device, **health.get(device.name, {}))


def test_waves_advance_after_bake_and_later_waves_wait(fleet, tmp_path):
    hub, devices = fleet
    before = {d.name: desired_revision(d) for d in devices}
    apply(hub, tmp_path, manifest(5, "{waves: [1, 100%], bake: 1s, waveTimeout: 20s}"))
    view = rollout(hub)
    assert view["state"] == "running" and [w["devices"] for w in view["waves"]] == [1, 2]
    canary, rest = devices[0], devices[1:]
    assert desired_revision(canary) != before[canary.name]
    # Not in a started wave: still served the old document.
    assert all(desired_revision(d) == before[d.name] for d in rest)
    pump(devices)
    assert rollout(hub)["current_wave"] == 1  # baking: the next wave waits
    wait_until(lambda: pump(devices) or rollout(hub)["state"] == "completed", 20, "completed")
    view = rollout(hub)
    assert view["succeeded"] == 3 and view["failed"] == 0
    assert len({desired_revision(d) for d in devices}) == 1
    actions = [e["action"] for e in audit(hub)]
    assert actions.count("rollout.wave-start") == 2
    assert "apply" in actions and "rollout.last-wave-passed" in actions


def test_crash_looping_canary_pauses_and_abort_ends_the_paused_rollout(fleet, tmp_path):
    hub, devices = fleet
    old = desired_revision(devices[1])
    apply(
        hub,
        tmp_path,
        manifest(6, "{waves: [1, 100%], bake: 1s, waveTimeout: 20s, onFailure: pause}"),
    )
    bad = {"dev-0": {"modules": {"web": "crash-loop"}}}
    wait_until(lambda: pump(devices, **bad) or rollout(hub)["state"] == "paused", 15, "paused")
    view = rollout(hub)
    assert "maxFailures" in view["reason"] and view["failed"] == 1
    assert desired_revision(devices[1]) == old  # the second wave never started
    assert act(hub, "abort").json()["state"] == "aborted"
    refused = act(hub, "resume")
    assert refused.status_code == 409, refused.text
    entries = audit(hub)
    paused = [e for e in entries if e["action"] == "rollout.gate-failed-pause"]
    assert paused and paused[0]["actor"] == "hub" and "maxFailures" in paused[0]["detail"]["reason"]
    aborted = [e for e in entries if e["action"] == "rollout.abort"]
    assert aborted and aborted[0]["actor"] == "admin"
    assert any(e["action"] == "rollout.device-failed" for e in entries)


def test_refused_canary_rolls_back_to_its_old_revision_and_deployment(fleet, tmp_path):
    hub, devices = fleet
    canary = devices[0]
    old = desired_revision(canary)
    apply(hub, tmp_path, manifest(7, "{waves: [1, 100%], bake: 1s, onFailure: rollback}"))
    new = desired_revision(canary)
    assert new != old
    report_applied(canary, new, ok=False, error="health check failed; rolled back")
    wait_until(lambda: rollout(hub)["state"] == "rolled-back", 10, "rolled back")
    assert desired_revision(canary) == old
    assert rollout(hub)["reverted"] == 1
    with hub.client() as client:
        assert client.get("/v1/deployments/web").status_code == 404  # restored: it did not exist


def test_offline_device_is_skipped_after_wave_timeout_and_catches_up(fleet, tmp_path):
    hub, devices = fleet
    online, away = devices[:2], devices[2]
    old = desired_revision(away)
    # `away` stops reporting: offline after 3.5 report intervals
    wait_until(lambda: hub.device("dev-2")["status"] == "offline", 10, "dev-2 offline")
    apply(hub, tmp_path, manifest(8, "{bake: 0s, waveTimeout: 2s}"))
    wait_until(lambda: pump(online) or rollout(hub)["state"] == "completed", 15, "completed")
    view = rollout(hub)
    assert view["skipped"] == 1 and view["succeeded"] == 2
    # Back online: it is served the new revision, and the hub sees it applied.
    new = desired_revision(away)
    assert new != old
    sync(away)
    assert hub.device("dev-2")["sync"]["status"] == "in-sync"


def test_new_apply_supersedes_a_running_rollout(fleet, tmp_path):
    hub, devices = fleet
    apply(hub, tmp_path, manifest(9, "{waves: [1, 100%], bake: 1h}"))
    first = rollout(hub)["id"]
    apply(hub, tmp_path, manifest(10, "{waves: [100%], bake: 0s}"))
    assert rollout(hub, first)["state"] == "superseded"
    second = rollout(hub)
    assert second["id"] != first and second["devices"] == 3
    wait_until(lambda: pump(devices) or rollout(hub)["state"] == "completed", 15, "completed")
    superseded = [e for e in audit(hub) if e["action"] == "rollout.supersede"]
    assert superseded and second["id"] in superseded[0]["detail"]["reason"]


def test_abort_ends_a_rollout_whose_devices_are_offline(fleet, tmp_path):
    hub, _devices = fleet
    apply(hub, tmp_path, manifest(11, "{waves: [1, 2, 100%], bake: 1h, waveTimeout: 1h}"))
    assert act(hub, "pause").json()["state"] == "paused"
    assert act(hub, "resume").json()["state"] == "running"
    assert act(hub, "abort").json()["state"] == "aborted"
    again = act(hub, "abort")
    assert again.status_code == 409 and "aborted" in again.json()["message"]
    assert act(hub, "nosuch").status_code == 422
    assert act(hub, "pause", "no-such-rollout").status_code == 404


def test_invalid_rollout_policy_is_refused_with_its_path(hub, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(manifest(1, "{waves: [50%, 10%], onFailure: explode}"))
    result = hub.cli("apply", "-f", str(path), check=False)
    assert result.returncode == 1
    assert "spec.rollout" in result.stderr
