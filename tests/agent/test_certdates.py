"""The agent reads its certificate's dates and issuer key id without
cryptography (agent/_certdates.py): the same answers as cryptography's, on
the certificates the hub issues and on shapes it does not (UTCTime and
GeneralizedTime, no authority key id, one without its key identifier), and
a refusal (ValueError) for anything damaged."""

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fogline.agent._certdates import cert_dates
from fogline.security import (
    CertificateAuthority,
    check_csr,
    generate_device_key,
    issuer_key_id,
    make_csr,
)

_KEY = ec.generate_private_key(ec.SECP256R1())


def _cert(
    not_before: dt.datetime,
    not_after: dt.datetime,
    aki: x509.AuthorityKeyIdentifier | None,
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = _KEY,
) -> bytes:
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "n")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if aki is not None:
        builder = builder.add_extension(aki, critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def _as_cryptography_reads_it(pem: bytes) -> tuple[dt.datetime, dt.datetime, str | None]:
    cert = x509.load_pem_x509_certificate(pem)
    return cert.not_valid_before_utc, cert.not_valid_after_utc, issuer_key_id(cert)


def test_a_device_certificate_the_hub_issues_reads_as_cryptography_reads_it(tmp_path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    checked = check_csr(make_csr(generate_device_key(), "node").decode())
    pem = ca.issue_device_cert(checked.csr, "device-1").pem
    dates = cert_dates(pem + ca.cert_pem)  # a chain: the first is the node's
    assert tuple(dates) == _as_cryptography_reads_it(pem)
    assert dates.issuer_key_id == ca.key_id  # what renewal compares with the hub's CA
    # The CA's own certificate: no authority key id there.
    assert tuple(cert_dates(ca.cert_pem)) == _as_cryptography_reads_it(ca.cert_pem)


_UTC = dt.UTC
_AKI = x509.AuthorityKeyIdentifier(bytes(range(20)), None, None)


@pytest.mark.parametrize(
    ("not_before", "not_after", "aki"),
    [
        # UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280).
        (dt.datetime(1999, 1, 2, 3, 4, 5, tzinfo=_UTC), dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=_UTC), _AKI),
        (dt.datetime(2026, 12, 7, tzinfo=_UTC), dt.datetime(2050, 1, 1, tzinfo=_UTC), _AKI),
        (dt.datetime(1950, 1, 1, tzinfo=_UTC), dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=_UTC), None),
        # An authority key id naming the issuer and serial, without a key identifier.
        (
            dt.datetime(2026, 1, 1, tzinfo=_UTC),
            dt.datetime(2027, 1, 1, tzinfo=_UTC),
            x509.AuthorityKeyIdentifier(None, [x509.DNSName("ca.example")], 7),
        ),
    ],
)  # fmt: skip
def test_every_time_encoding_and_authority_key_id_shape_reads_as_cryptography_reads_it(
    not_before: dt.datetime, not_after: dt.datetime, aki: x509.AuthorityKeyIdentifier | None
) -> None:
    pem = _cert(not_before, not_after, aki)
    assert tuple(cert_dates(pem)) == _as_cryptography_reads_it(pem)
    assert cert_dates(pem).not_after == not_after


def test_an_ed25519_certificate_reads_as_cryptography_reads_it() -> None:
    now = dt.datetime.now(_UTC).replace(microsecond=0)
    pem = _cert(now, now + dt.timedelta(days=1), _AKI, ed25519.Ed25519PrivateKey.generate())
    assert tuple(cert_dates(pem)) == _as_cryptography_reads_it(pem)


def test_damaged_certificates_are_refused() -> None:
    now = dt.datetime.now(_UTC).replace(microsecond=0)
    pem = _cert(now, now + dt.timedelta(days=1), _AKI)
    lines = pem.splitlines()
    for damaged in (
        b"",
        b"not a certificate",
        pem.replace(b"-----END CERTIFICATE-----", b""),
        b"\n".join([*lines[:3], *lines[-1:]]),  # cut short: truncated DER
        b"\n".join([lines[0], b"MIIB*" + lines[1][5:], *lines[2:]]),  # not base64
        b"\n".join([lines[0], b"AAAA" + lines[1][4:], *lines[2:]]),  # not a SEQUENCE
    ):
        with pytest.raises(ValueError):
            cert_dates(damaged)
