"""Hostile renewals: a device may renew its own certificate, for its own
name, with the same kind of key, while it is not revoked; everything else
is refused, and recorded in the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fogline.security import make_csr, write_private_key, write_public_file

from ..support.device import enroll_device
from ..support.processes import HubProcess, tls

if TYPE_CHECKING:  # imported for the annotations only: pytest would collect a Test* class
    from tests.support.device import TestDevice


def renew(device: TestDevice, csr: str) -> httpx.Response:
    with device.client() as client:
        return client.post("/v1/renew", json={"csr": csr})


def audit_renewals(hub: HubProcess, name: str) -> list[dict[str, Any]]:
    with hub.client() as client:
        entries = client.get(
            "/v1/audit", params={"actor": f"device:{name}", "action": "device.renew"}
        ).json()
    assert isinstance(entries, list), entries
    return entries


@pytest.fixture
def device(shared_hub: HubProcess, tmp_path: Path, request: pytest.FixtureRequest) -> TestDevice:
    name = f"renew-{abs(hash(request.node.name)) % 10**8}"
    return enroll_device(shared_hub, shared_hub.create_claim(), name, tmp_path)


def test_a_revoked_device_is_refused_renewal_and_the_refusal_is_audited(
    shared_hub: HubProcess, device: TestDevice
) -> None:
    shared_hub.cli("devices", "revoke", device.device_id)
    response = renew(
        device, make_csr(ec.generate_private_key(ec.SECP256R1()), device.name).decode()
    )
    assert response.status_code == 403, response.text
    assert "revoked" in response.json()["message"]
    [entry] = audit_renewals(shared_hub, device.name)
    assert entry["outcome"] == "refused"


def test_a_csr_for_another_device_name_is_refused(
    shared_hub: HubProcess, device: TestDevice
) -> None:
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()), "someone-else").decode()
    response = renew(device, csr)
    assert response.status_code == 403, response.text
    assert response.json()["details"][0]["field"] == "csr"
    assert audit_renewals(shared_hub, device.name)[-1]["outcome"] == "refused"


def test_a_csr_with_another_kind_of_key_is_refused(device: TestDevice) -> None:
    csr = make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), device.name)
    response = renew(device, csr.decode())
    assert response.status_code == 403, response.text
    assert "rsa:2048" in response.json()["message"]


def test_a_malformed_csr_is_a_422_naming_the_field(device: TestDevice) -> None:
    response = renew(device, "-----BEGIN CERTIFICATE REQUEST-----\nnope\n")
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == "csr"


def test_renewal_needs_a_client_certificate(shared_hub: HubProcess) -> None:
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()), "anyone").decode()
    response = httpx.post(
        f"{shared_hub.url}/v1/renew", json={"csr": csr}, verify=tls(shared_hub.ca), timeout=10
    )
    assert response.status_code == 401, response.text


def test_the_old_certificate_is_refused_once_the_device_showed_the_new_one(
    shared_hub: HubProcess, device: TestDevice, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    response = renew(device, make_csr(key, device.name).decode())
    assert response.status_code == 200, response.text
    assert audit_renewals(shared_hub, device.name)[-1]["outcome"] == "ok"
    # Until the device shows the new certificate, the old one still works
    # (the answer may have been lost on the way).
    assert device.report().status_code == 200
    renewed = type(device)(
        device.device_id,
        device.name,
        tmp_path / "new-cert.pem",
        tmp_path / "new-key.pem",
        shared_hub,
    )
    write_private_key(renewed.key_path, key)
    write_public_file(renewed.cert_path, response.json()["certificate"].encode())
    assert renewed.report().status_code == 200
    stale = device.report()
    assert stale.status_code == 403
    assert "superseded" in stale.json()["message"]
