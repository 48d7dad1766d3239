"""The fleet certificate authority: issues the hub's TLS cert and device certs.

Device certificates carry the device id as their subject CN; that id is the
identity the hub trusts on the device API, so the hub, not the device,
chooses it.
"""

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._files import load_private_key, write_private_key, write_public_file

CA_VALIDITY: Final = dt.timedelta(days=3650)
SERVER_VALIDITY: Final = dt.timedelta(days=825)
DEVICE_VALIDITY: Final = dt.timedelta(days=365)
# Clocks on edge nodes drift; a cert valid "from now" fails on a node a few
# minutes behind.
BACKDATE: Final = dt.timedelta(minutes=10)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str, org: str = "Fogline") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True, slots=True)
class IssuedCert:
    serial: int
    not_after: dt.datetime
    pem: bytes


class CertificateAuthority:
    """A CA key and certificate kept in a directory (key file 0600)."""

    KEY_FILE: Final = "ca-key.pem"
    CERT_FILE: Final = "ca.pem"

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self.cert = cert

    @classmethod
    def load_or_create(
        cls, directory: Path, *, name: str = "Fogline fleet CA"
    ) -> "CertificateAuthority":
        key_path, cert_path = directory / cls.KEY_FILE, directory / cls.CERT_FILE
        if key_path.exists() and cert_path.exists():
            key = load_private_key(key_path)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path}: expected an EC private key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        write_private_key(key_path, key)
        write_public_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def _builder(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey | object,
        validity: dt.timedelta,
    ) -> x509.CertificateBuilder:
        now = _now()
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )

    def issue_server_cert(self, key_path: Path, cert_path: Path, sans: list[str]) -> None:
        """Create the hub's TLS key and certificate for the given DNS names and IPs."""
        key = ec.generate_private_key(ec.SECP256R1())
        alt_names: list[x509.GeneralName] = []
        for san in dict.fromkeys(sans):
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                alt_names.append(x509.DNSName(san))
        cert = (
            self._builder(_name("fogline-hub"), key.public_key(), SERVER_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        write_private_key(key_path, key)
        write_public_file(cert_path, cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem)

    def issue_device_cert(
        self,
        csr: x509.CertificateSigningRequest,
        device_id: str,
        validity: dt.timedelta = DEVICE_VALIDITY,
    ) -> IssuedCert:
        """Sign a checked CSR; the subject is the hub's choice, not the CSR's."""
        builder = (
            self._builder(_name(device_id, "Fogline device"), csr.public_key(), validity)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(device_uri(device_id))]
                ),
                critical=False,
            )
        )
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCert(
            serial=cert.serial_number,
            not_after=cert.not_valid_after_utc,
            pem=cert.public_bytes(serialization.Encoding.PEM),
        )


def device_uri(device_id: str) -> str:
    return f"urn:fogline:device:{device_id}"


def device_id_from_cert(cert: x509.Certificate) -> str | None:
    """The device id in a client certificate the TLS layer already verified."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    value = names[0].value
    return value if isinstance(value, str) else None
