"""The fleet CA on disk: rotation with an overlap, retiring the old CA, a
rotation a crash cut short, and the key encrypted at rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fogline.security import (
    CaKeyError,
    CertificateAuthority,
    ca_key_id,
    issuer_key_id,
    make_csr,
    read_trust_bundle,
    write_private_key,
    write_public_file,
)


def _csr() -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    return x509.load_pem_x509_csr(make_csr(key, "dev"))


def test_rotation_issues_from_the_new_ca_and_trusts_both_until_the_old_is_retired(
    tmp_path: Path,
) -> None:
    old = CertificateAuthority.load_or_create(tmp_path)
    new = CertificateAuthority.rotate(tmp_path)
    assert new.key_id != old.key_id
    assert [ca_key_id(c) for c in read_trust_bundle(tmp_path / "ca.pem")] == [
        new.key_id,
        old.key_id,
    ]
    loaded = CertificateAuthority.load_or_create(tmp_path)
    issued = x509.load_pem_x509_certificate(loaded.issue_device_cert(_csr(), "d").pem)
    assert issuer_key_id(issued) == new.key_id

    with pytest.raises(CaKeyError, match="retire-old"):
        CertificateAuthority.rotate(tmp_path)

    retired = CertificateAuthority.retire_previous(tmp_path)
    assert [ca_key_id(c) for c in retired] == [old.key_id]
    assert [ca_key_id(c) for c in read_trust_bundle(tmp_path / "ca.pem")] == [new.key_id]
    assert CertificateAuthority.retire_previous(tmp_path) == []


def test_a_rotation_cut_after_the_bundle_is_finished_at_the_next_load(tmp_path: Path) -> None:
    old = CertificateAuthority.load_or_create(tmp_path)
    # What rotate() leaves when killed between the bundle and the key's rename.
    other = CertificateAuthority.load_or_create(tmp_path / "elsewhere")  # a new CA
    (tmp_path / "ca-next-key.pem").write_bytes((tmp_path / "elsewhere" / "ca-key.pem").read_bytes())
    write_public_file(tmp_path / "ca.pem", other.cert_pem + old.cert_pem)
    loaded = CertificateAuthority.load_or_create(tmp_path)
    assert loaded.key_id == other.key_id
    assert not (tmp_path / "ca-next-key.pem").exists()


def test_a_rotation_cut_before_the_bundle_leaves_the_old_ca(tmp_path: Path) -> None:
    old = CertificateAuthority.load_or_create(tmp_path)
    write_private_key(tmp_path / "ca-next-key.pem", ec.generate_private_key(ec.SECP256R1()))
    assert CertificateAuthority.load_or_create(tmp_path).key_id == old.key_id
    assert not (tmp_path / "ca-next-key.pem").exists()


def test_the_ca_key_is_encrypted_at_rest_with_a_passphrase(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, passphrase=b"correct horse")
    pem = (tmp_path / "ca-key.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    with pytest.raises(CaKeyError, match="--ca-key-passphrase-file"):
        CertificateAuthority.load_or_create(tmp_path)
    with pytest.raises(CaKeyError, match="wrong passphrase"):
        CertificateAuthority.load_or_create(tmp_path, passphrase=b"wrong")
    again = CertificateAuthority.load_or_create(tmp_path, passphrase=b"correct horse")
    assert again.key_id == ca.key_id
    rotated = CertificateAuthority.rotate(tmp_path, passphrase=b"correct horse")
    assert (tmp_path / "ca-key.pem").read_bytes().startswith(b"-----BEGIN ENCRYPTED")
    assert CertificateAuthority.load_or_create(tmp_path, passphrase=b"correct horse").key_id == (
        rotated.key_id
    )


def test_a_plain_ca_key_is_encrypted_once_a_passphrase_is_given(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    assert b"ENCRYPTED" not in (tmp_path / "ca-key.pem").read_bytes()
    CertificateAuthority.load_or_create(tmp_path, passphrase=b"pass")
    key = serialization.load_pem_private_key(
        (tmp_path / "ca-key.pem").read_bytes(), password=b"pass"
    )
    assert key.public_key() == ca.cert.public_key()
