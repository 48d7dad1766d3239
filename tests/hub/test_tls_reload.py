"""The hub's TLS and CA files reloaded while it runs: a new certificate is
served to new connections, a half-written set keeps the previous one."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fogline.hub._tls import ReloadingServerTls
from fogline.hub._trust import FleetTrust
from fogline.security import CertificateAuthority, ca_key_id, write_private_key


def _setup(tmp_path: Path) -> tuple[CertificateAuthority, Path, Path]:
    ca = CertificateAuthority.load_or_create(tmp_path)
    cert, key = tmp_path / "hub.pem", tmp_path / "hub-key.pem"
    ca.issue_server_cert(key, cert, ["localhost"])
    return ca, cert, key


def _served_serial(context: ssl.SSLContext, ca: Path) -> int:
    """The serial of the certificate `context` serves, over an in-memory handshake."""
    client = ssl.create_default_context(cafile=str(ca))
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    server_side = context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):  # bounded: a TLS 1.3 handshake takes a few flights
        for side in (client_side, server_side):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    der = client_side.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_a_replaced_certificate_is_served_to_new_connections(tmp_path: Path) -> None:
    ca, cert, key = _setup(tmp_path)
    tls = ReloadingServerTls(cert, key, tmp_path / "ca.pem")
    before = _served_serial(tls.context(), tmp_path / "ca.pem")
    ca.issue_server_cert(key, cert, ["localhost"])
    tls._checked_at = 0.0  # the next look, without waiting a second
    after = _served_serial(tls.context(), tmp_path / "ca.pem")
    assert after != before
    assert after == x509.load_pem_x509_certificate(cert.read_bytes()).serial_number


def test_a_key_that_does_not_match_its_certificate_keeps_the_previous_context(
    tmp_path: Path,
) -> None:
    ca, cert, key = _setup(tmp_path)
    tls = ReloadingServerTls(cert, key, tmp_path / "ca.pem")
    first = tls.context()
    write_private_key(key, ec.generate_private_key(ec.SECP256R1()))  # the cert not yet
    tls._checked_at = 0.0
    assert tls.context() is first
    ca.issue_server_cert(key, cert, ["localhost"])  # the pair is whole again
    tls._checked_at = 0.0
    assert tls.context() is not first


def test_fleet_trust_follows_a_rotation_and_keeps_its_ca_between_two_writes(
    tmp_path: Path,
) -> None:
    old = CertificateAuthority.load_or_create(tmp_path)
    trust = FleetTrust(tmp_path)
    assert trust.signing_ca().key_id == old.key_id
    new = CertificateAuthority.rotate(tmp_path)
    trust._checked_at = 0.0
    assert trust.signing_ca().key_id == new.key_id
    assert [ca_key_id(c) for c in x509.load_pem_x509_certificates(trust.bundle_pem())] == [
        new.key_id,
        old.key_id,
    ]
    # A key file that belongs to no CA of the bundle (caught mid-write):
    # the CA loaded before goes on issuing.
    write_private_key(tmp_path / "ca-key.pem", ec.generate_private_key(ec.SECP256R1()))
    trust._checked_at = 0.0
    assert trust.signing_ca().key_id == new.key_id
