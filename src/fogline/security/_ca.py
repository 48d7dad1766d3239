"""The fleet certificate authority: issues the hub's TLS cert and device certs.

Device certificates carry the device id as their subject CN; that id is the
identity the hub trusts on the device API, so the hub, not the device,
chooses it.
"""

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fogline._durable import fsync_dir

from ._errors import CaKeyError
from ._files import load_private_key, write_private_key, write_public_file

CA_VALIDITY: Final = dt.timedelta(days=3650)
SERVER_VALIDITY: Final = dt.timedelta(days=825)
DEVICE_VALIDITY: Final = dt.timedelta(days=365)
# Clocks on edge nodes drift; a cert valid "from now" fails on a node a few
# minutes behind. At most a tenth of the validity, so that a short-lived
# certificate (minutes, in tests) is not mostly backdating: the node renews
# at two thirds of not_before..not_after.
BACKDATE: Final = dt.timedelta(minutes=10)


def backdate_for(validity: dt.timedelta) -> dt.timedelta:
    return min(BACKDATE, validity / 10)


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
    """A CA key and certificate kept in a directory (key file 0600).

    DIR/ca.pem is the fleet's trust bundle: the CA that issues now first,
    then, during a rotation's overlap, the previous CA. DIR/ca-key.pem is
    the issuing CA's key, encrypted when a passphrase is given.
    """

    KEY_FILE: Final = "ca-key.pem"
    CERT_FILE: Final = "ca.pem"
    # A rotation's new key, before it replaces KEY_FILE (see `rotate`).
    NEXT_KEY_FILE: Final = "ca-next-key.pem"

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self.cert = cert

    @classmethod
    def load_or_create(
        cls, directory: Path, *, name: str = "Fogline fleet CA", passphrase: bytes | None = None
    ) -> "CertificateAuthority":
        """The CA in `directory`, created on first use.

        With `passphrase`, the key is kept encrypted at rest (an unencrypted
        key found there is encrypted now).

        Raises:
            CaKeyError: the key is encrypted and no passphrase (or the wrong
                one) was given, or it is not the key of the bundle's first CA.
        """
        key_path, cert_path = directory / cls.KEY_FILE, directory / cls.CERT_FILE
        if key_path.exists() and cert_path.exists():
            _finish_rotation(directory, passphrase)
            key = _load_ca_key(key_path, passphrase)
            cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
            if not _same_key(key, cert):
                raise CaKeyError(f"{key_path}: not the key of the first CA in {cert_path}")
            if passphrase is not None and not _is_encrypted(key_path):
                write_private_key(key_path, key, passphrase)
            return cls(key, cert)
        key, cert = _new_ca(name)
        write_private_key(key_path, key, passphrase)
        write_public_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert)

    @classmethod
    def rotate(
        cls, directory: Path, *, name: str = "Fogline fleet CA", passphrase: bytes | None = None
    ) -> "CertificateAuthority":
        """Create a new CA that issues from now on; the bundle keeps the
        previous one (the overlap) until `retire_previous`.

        Crash-safe: the new key is written aside first, then the bundle
        naming the new CA first, then the key takes its place; a start after
        a crash in between finishes the step (see `load_or_create`).

        Raises:
            CaKeyError: see `load_or_create`; or a rotation is already in
                its overlap (retire the previous CA first).
        """
        current = cls.load_or_create(directory, name=name, passphrase=passphrase)
        bundle = read_trust_bundle(directory / cls.CERT_FILE)
        if len(bundle) > 1:
            raise CaKeyError(
                "a CA rotation is already in its overlap: run `fogline ca retire-old` first"
            )
        key, cert = _new_ca(name)
        write_private_key(directory / cls.NEXT_KEY_FILE, key, passphrase)
        write_public_file(
            directory / cls.CERT_FILE,
            cert.public_bytes(serialization.Encoding.PEM) + current.cert_pem,
        )
        _finish_rotation(directory, passphrase)
        return cls(key, cert)

    @classmethod
    def retire_previous(cls, directory: Path) -> list[x509.Certificate]:
        """End the overlap: the bundle holds the issuing CA alone. Returns
        the CAs taken out of it."""
        path = directory / cls.CERT_FILE
        bundle = read_trust_bundle(path)
        if len(bundle) > 1:
            write_public_file(path, bundle[0].public_bytes(serialization.Encoding.PEM))
        return bundle[1:]

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_id(self) -> str:
        """The CA's key identifier (hex): what a certificate it issued names
        as its authority key id. Rotated CAs share a name, never a key."""
        return ca_key_id(self.cert)

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
            .not_valid_before(now - backdate_for(validity))
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


def ca_key_id(ca_cert: x509.Certificate) -> str:
    """A CA certificate's subject key identifier, hex."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(ca_cert.public_key())
    return ski.digest.hex()


def issuer_key_id(cert: x509.Certificate) -> str | None:
    """The key identifier of the CA that issued `cert` (its authority key
    id, hex), or None when the certificate does not name one."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return aki.key_identifier.hex() if aki.key_identifier is not None else None


def read_trust_bundle(path: Path) -> list[x509.Certificate]:
    """The CA certificates of a bundle file, the issuing CA first."""
    return x509.load_pem_x509_certificates(path.read_bytes())


def _new_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _load_ca_key(path: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    encrypted = _is_encrypted(path)
    if encrypted and passphrase is None:
        raise CaKeyError(f"{path}: the CA key is encrypted; pass --ca-key-passphrase-file")
    try:
        key = load_private_key(path, passphrase if encrypted else None)
    except (ValueError, TypeError) as exc:
        raise CaKeyError(f"{path}: cannot open the CA key: wrong passphrase or damaged") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaKeyError(f"{path}: expected an EC private key")
    return key


def _is_encrypted(path: Path) -> bool:
    return b"ENCRYPTED PRIVATE KEY" in path.read_bytes()[:64]


def _same_key(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    return bool(key.public_key() == cert.public_key())


def _finish_rotation(directory: Path, passphrase: bytes | None) -> None:
    """Complete a rotation a crash interrupted: the bundle already names the
    new CA first, so its key (written aside) takes the key file's place; a
    key written aside before the bundle changed is dropped."""
    next_path = directory / CertificateAuthority.NEXT_KEY_FILE
    if not next_path.exists():
        return
    first = read_trust_bundle(directory / CertificateAuthority.CERT_FILE)[0]
    try:
        if _same_key(_load_ca_key(next_path, passphrase), first):
            os.replace(next_path, directory / CertificateAuthority.KEY_FILE)
            fsync_dir(directory)
        else:
            next_path.unlink()
    except FileNotFoundError:
        pass  # another process (a hub worker, the CLI) finished it first


def device_uri(device_id: str) -> str:
    return f"urn:fogline:device:{device_id}"


def device_id_from_cert(cert: x509.Certificate) -> str | None:
    """The device id in a client certificate the TLS layer already verified."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    value = names[0].value
    return value if isinstance(value, str) else None
