"""A CA rotation under a running fleet, real processes and short lifetimes:
agents move to the new CA on their own while reporting, `fogline ca
retire-old` refuses while an online device has not moved (naming it), and
after it the hub serves a certificate of the new CA without a restart."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fogline.security import ca_key_id, issuer_key_id, make_csr, read_trust_bundle

from ..agent.test_cert_renewal_e2e import cert_of, last_seen, renewals
from ..support.device import enroll_device
from ..support.processes import AgentProcess, start_hub, tls, wait_until


def _new_ca_only(bundle_path: Path, tmp_path: Path) -> Path:
    first = read_trust_bundle(bundle_path)[0]
    path = tmp_path / "new-ca-only.pem"
    path.write_bytes(first.public_bytes(serialization.Encoding.PEM))
    return path


def _handshake_ok(url: str, context: ssl.SSLContext) -> bool:
    try:
        return httpx.get(f"{url}/healthz", verify=context, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.timeout(240)
def test_a_fleet_moves_to_a_new_ca_while_reporting_and_the_old_one_is_retired(
    tmp_path: Path,
) -> None:
    hub = start_hub(tmp_path / "hub", extra_args=["--device-cert-validity", "30s"])
    claim = hub.create_claim()
    agents = [AgentProcess(tmp_path / f"n{i}", hub, f"node-{i}", claim) for i in range(3)]
    for agent in agents:
        agent.start()
    ids = [agent.wait_enrolled() for agent in agents]
    old_id = ca_key_id(read_trust_bundle(hub.ca)[0])
    # A device that only renews when told to: it holds the old CA's certificate.
    laggard = enroll_device(hub, claim, "laggard", tmp_path)
    old_pair = (laggard.cert_path.read_bytes(), laggard.key_path.read_bytes())
    assert laggard.report().status_code == 200

    out = hub.cli("ca", "rotate", "--data-dir", str(hub.data_dir)).stdout
    new_id = ca_key_id(read_trust_bundle(hub.ca)[0])
    assert new_id != old_id and new_id in out
    assert [ca_key_id(c) for c in read_trust_bundle(hub.ca)] == [new_id, old_id]

    # Every agent renews onto the new CA soon (its report's ack names it),
    # not at two thirds of its lifetime.
    def moved() -> bool:
        return all(issuer_key_id(cert_of(agent)) == new_id for agent in agents)

    wait_until(moved, 30, "agents on the new CA")
    for agent in agents:
        bundle = read_trust_bundle(agent.data_dir / "identity" / "ca.pem")
        assert [ca_key_id(c) for c in bundle] == [new_id, old_id]

    # The laggard is online and on the old CA: retiring is refused, naming it.
    assert laggard.report().status_code == 200
    refused = hub.cli("ca", "retire-old", "--data-dir", str(hub.data_dir), check=False)
    assert refused.returncode == 1, refused.stdout
    assert "laggard" in refused.stderr and "node-0" not in refused.stderr
    assert len(read_trust_bundle(hub.ca)) == 2

    # It renews (by hand here, as an agent would) and the overlap can end.
    key = ec.generate_private_key(ec.SECP256R1())
    with laggard.client() as client:
        answer = client.post("/v1/renew", json={"csr": make_csr(key, "laggard").decode()})
    assert answer.status_code == 200, answer.text
    assert issuer_key_id(x509.load_pem_x509_certificate(answer.json()["certificate"].encode())) == (
        new_id
    )
    hub.cli("ca", "retire-old", "--data-dir", str(hub.data_dir))
    assert [ca_key_id(c) for c in read_trust_bundle(hub.ca)] == [new_id]

    # The hub's own certificate, from the new CA, served without a restart.
    only_new = _new_ca_only(hub.ca, tmp_path)
    wait_until(lambda: _handshake_ok(hub.url, tls(only_new)), 10, "the hub's new certificate")

    # A certificate of the retired CA no longer gets through TLS.
    (tmp_path / "old-cert.pem").write_bytes(old_pair[0])
    (tmp_path / "old-key.pem").write_bytes(old_pair[1])
    with pytest.raises(httpx.HTTPError):
        httpx.post(
            f"{hub.url}/v1/report",
            json={"facts": {}, "labels": {}},
            verify=tls(hub.ca, tmp_path / "old-cert.pem", tmp_path / "old-key.pem"),
            timeout=5,
        ).raise_for_status()

    # The fleet goes on: reporting, renewing, nobody enrolled again.
    marks = {device_id: last_seen(hub, device_id) for device_id in ids}
    counts = {device_id: len(renewals(hub, device_id)) for device_id in ids}
    wait_until(lambda: all(last_seen(hub, d) > marks[d] for d in ids), 20, "reports after retiring")
    wait_until(
        lambda: all(len(renewals(hub, d)) > counts[d] and len(renewals(hub, d)) >= 3 for d in ids),
        40,
        "renewals after retiring, three or more in all",
    )
    for agent, device_id in zip(agents, ids, strict=True):
        assert agent.health()["device_id"] == device_id  # type: ignore[index]
        assert agent.log_path.read_text().count('"event":"agent.enrolled"') == 1
        assert [
            ca_key_id(c) for c in read_trust_bundle(agent.data_dir / "identity" / "ca.pem")
        ] == [new_id]
        assert hub.device(device_id)["status"] == "online"


def test_ca_commands_refuse_what_makes_no_sense_with_one_line_errors(tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "hub")
    hub.stop()
    data = str(hub.data_dir)
    nothing = hub.cli("ca", "retire-old", "--data-dir", data, check=False)
    assert nothing.returncode == 1
    assert "no CA rotation in progress" in nothing.stderr
    assert "Traceback" not in nothing.stderr
    hub.cli("ca", "rotate", "--data-dir", data)
    again = hub.cli("ca", "rotate", "--data-dir", data, check=False)
    assert again.returncode == 1
    assert "retire-old" in again.stderr and "Traceback" not in again.stderr
    missing = hub.cli("ca", "rotate", "--data-dir", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 1 and "no hub data directory" in missing.stderr


def test_an_encrypted_ca_key_needs_its_passphrase_to_serve_and_rotate(tmp_path: Path) -> None:
    secret = tmp_path / "ca-pass"
    secret.write_text("a long passphrase\n")
    secret.chmod(0o600)
    hub = start_hub(tmp_path / "hub", extra_args=["--ca-key-passphrase-file", str(secret)])
    assert (hub.data_dir / "ca-key.pem").read_bytes().startswith(b"-----BEGIN ENCRYPTED")
    agent = AgentProcess(tmp_path / "node", hub, "locked", hub.create_claim())
    agent.start()
    agent.wait_enrolled()
    hub.stop()

    plain = hub.cli("hub", "serve", "--data-dir", str(hub.data_dir), check=False, timeout_s=30)
    assert plain.returncode == 1
    assert "--ca-key-passphrase-file" in plain.stderr and "Traceback" not in plain.stderr
    refused = hub.cli("ca", "rotate", "--data-dir", str(hub.data_dir), check=False)
    assert refused.returncode == 1 and "encrypted" in refused.stderr
    hub.cli(
        "ca", "rotate", "--data-dir", str(hub.data_dir), "--ca-key-passphrase-file", str(secret)
    )
    assert (hub.data_dir / "ca-key.pem").read_bytes().startswith(b"-----BEGIN ENCRYPTED")
