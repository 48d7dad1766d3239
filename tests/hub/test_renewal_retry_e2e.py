"""A renewal asked twice with the same key, on a real hub: the second
answer is the first certificate again, so a node's late first request
cannot supersede the certificate its retry was given."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from fogline.security import make_csr, write_private_key, write_public_file

from ..support.device import enroll_device
from ..support.processes import HubProcess

if TYPE_CHECKING:  # annotations only: pytest would collect a Test* class
    from tests.support.device import TestDevice


def _holding(
    device: TestDevice, cert_pem: str, key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> TestDevice:
    """The same device, presenting `cert_pem`."""
    held = type(device)(
        device.device_id,
        device.name,
        tmp_path / "held-cert.pem",
        tmp_path / "held-key.pem",
        device.hub,
    )
    write_private_key(held.key_path, key)
    write_public_file(held.cert_path, cert_pem.encode())
    return held


def test_a_renewal_asked_again_gets_the_same_certificate_and_both_stay_accepted(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    device = enroll_device(shared_hub, shared_hub.create_claim(), "renew-twice", tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = make_csr(key, device.name).decode()
    with device.client() as client:
        first = client.post("/v1/renew", json={"csr": csr})
        again = client.post("/v1/renew", json={"csr": csr})
    assert first.status_code == 200, first.text
    assert again.status_code == 200, again.text
    assert again.json()["certificate"] == first.json()["certificate"]
    with shared_hub.client() as client:
        entries = client.get(
            "/v1/audit", params={"actor": f"device:{device.name}", "action": "device.renew"}
        ).json()
    assert [entry["detail"]["replayed"] for entry in entries[-2:]] == [False, True]
    # The node may hold either answer or none: both certificates work.
    assert device.report().status_code == 200
    renewed = _holding(device, first.json()["certificate"], key, tmp_path)
    assert renewed.report().status_code == 200
    # Once it showed the new one, the old one is done, and so is the replay.
    refused = device.report()
    assert refused.status_code == 403, refused.text
    with device.client() as client:
        assert client.post("/v1/renew", json={"csr": csr}).status_code == 403
