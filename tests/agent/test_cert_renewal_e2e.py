"""Certificate renewal with real hub and agent processes and short lifetimes:
agents renew again and again while reporting, survive a SIGKILL at every
point of a renewal, and a node whose certificate expired comes back only
with a claim."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from fogline.agent.updater._crash import RENEWAL_POINTS

from ..support.processes import AgentProcess, HubProcess, start_hub, wait_until

VALIDITY = "12s"  # renewed every ~8 s: three renewals fit in a test


def renewals(hub: HubProcess, device_id: str, outcome: str = "ok") -> list[dict[str, Any]]:
    """The device's renewal entries in the audit trail (actor `device:<name>`)."""
    with hub.client() as client:
        name = client.get(f"/v1/devices/{device_id}").raise_for_status().json()["name"]
        response = client.get(
            "/v1/audit", params={"actor": f"device:{name}", "action": "device.renew"}
        )
        response.raise_for_status()
    return [entry for entry in response.json() if entry["outcome"] == outcome]


def cert_of(agent: AgentProcess) -> x509.Certificate:
    return x509.load_pem_x509_certificate((agent.data_dir / "identity" / "cert.pem").read_bytes())


def last_seen(hub: HubProcess, device_id: str) -> dt.datetime:
    return dt.datetime.fromisoformat(hub.device(device_id)["last_seen"])


@pytest.fixture
def hub(tmp_path: Path) -> HubProcess:
    return start_hub(tmp_path / "hub", extra_args=["--device-cert-validity", VALIDITY])


@pytest.fixture
def roomy_hub(tmp_path: Path) -> HubProcess:
    """Certificates of 21 s: a node killed when its renewal falls due (at
    14 s) has 7 s to start again and report before the certificate expires.
    With 12 s it had 4, which a loaded machine's restart can take, and the
    node, expired and without a claim, then never reported."""
    return start_hub(tmp_path / "hub", extra_args=["--device-cert-validity", "21s"])


def test_agent_renews_three_times_while_reporting_and_stays_the_same_device(
    hub: HubProcess, tmp_path: Path
) -> None:
    agent = AgentProcess(tmp_path / "node", hub, "renewer", hub.create_claim())
    agent.start()
    device_id = agent.wait_enrolled()
    first_key = (agent.data_dir / "identity" / "key.pem").read_bytes()
    first_serial = cert_of(agent).serial_number

    wait_until(lambda: len(renewals(hub, device_id)) >= 3, 90, "three renewals")

    # The same device, reporting with the newest certificate and a new key,
    # enrolled once.
    assert agent.health()["device_id"] == device_id  # type: ignore[index]
    assert (agent.data_dir / "identity" / "key.pem").read_bytes() != first_key
    assert cert_of(agent).serial_number != first_serial
    assert agent.log_path.read_text().count('"event":"agent.enrolled"') == 1
    mark = last_seen(hub, device_id)
    wait_until(lambda: last_seen(hub, device_id) > mark, 15, "a report after the renewals")
    assert hub.device(device_id)["status"] == "online"
    assert renewals(hub, device_id, "refused") == []
    assert oct((agent.data_dir / "identity" / "key.pem").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("point", RENEWAL_POINTS)
def test_agent_killed_during_renewal_still_connects_and_renews(
    roomy_hub: HubProcess, tmp_path: Path, point: str
) -> None:
    hub = roomy_hub
    agent = AgentProcess(
        tmp_path / "node",
        hub,
        "crashy",
        hub.create_claim(),
        env={"FOGLINE_FAULT_CRASH_AT": point},
    )
    agent.start()
    device_id = agent.wait_enrolled()
    assert agent.proc is not None
    wait_until(lambda: agent.proc is not None and agent.proc.poll() is not None, 60, point)
    assert agent.proc.returncode == -signal.SIGKILL
    agent.stop()

    before = len(renewals(hub, device_id))
    restarted = AgentProcess(tmp_path / "node", hub, "crashy", None)  # no claim: no re-enrolling
    restarted.start()
    assert restarted.wait_enrolled() == device_id
    mark = last_seen(hub, device_id)
    wait_until(lambda: last_seen(hub, device_id) > mark, 20, "a report after the restart")
    wait_until(lambda: len(renewals(hub, device_id)) > before, 40, "a renewal after the restart")
    # The key and certificate on disk belong together and the hub takes them.
    mark = last_seen(hub, device_id)
    wait_until(lambda: last_seen(hub, device_id) > mark, 20, "a report with the renewed cert")
    assert not (tmp_path / "node" / "identity" / "renew-cert.pem").exists()
    # One log for both runs: the first enrolled, the second did not.
    assert restarted.log_path.read_text().count('"event":"agent.enrolled"') == 1


def test_a_node_whose_certificate_expired_offline_comes_back_only_with_a_claim(
    hub: HubProcess, tmp_path: Path
) -> None:
    agent = AgentProcess(tmp_path / "node", hub, "sleeper", hub.create_claim())
    agent.start()
    device_id = agent.wait_enrolled()
    agent.stop()  # offline before its first renewal
    expiry = cert_of(agent).not_valid_after_utc
    wait_until(lambda: dt.datetime.now(dt.UTC) > expiry, 30, "the certificate to expire")
    mark = last_seen(hub, device_id)

    # Without a claim: it runs, says why it cannot reach the hub, never reports.
    stranded = AgentProcess(tmp_path / "node", hub, "sleeper", None)
    stranded.start()
    wait_until(
        lambda: '"event":"agent.certificate_expired"' in stranded.log_path.read_text(),
        30,
        "the agent to see its certificate expired",
    )
    assert last_seen(hub, device_id) == mark
    stranded.stop()

    # With a valid claim (another one than it enrolled with): the same
    # device again, with its labels and history, reporting.
    back = AgentProcess(tmp_path / "node", hub, "sleeper", hub.create_claim())
    back.start()
    assert back.wait_enrolled() == device_id
    wait_until(lambda: last_seen(hub, device_id) > mark, 20, "a report after recovering")
    assert cert_of(back).not_valid_after_utc > expiry
