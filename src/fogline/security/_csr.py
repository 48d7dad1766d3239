"""Certificate signing requests: made on the node, checked on the hub.

The node's private key never leaves it; only the CSR travels. The hub
accepts a CSR only with a strong key and a valid self-signature.
"""

import hashlib
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from ._errors import CsrRejectedError

MAX_CSR_BYTES: Final = 8192
MIN_RSA_BITS: Final = 2048
MIN_EC_BITS: Final = 256


def generate_device_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key: small, fast on ARM, and accepted by every TLS stack."""
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, common_name: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class CheckedCsr:
    csr: x509.CertificateSigningRequest
    common_name: str | None


def check_csr(pem: str) -> CheckedCsr:
    """Parse and vet a CSR from a device.

    Raises:
        CsrRejectedError: too large, unparsable, bad signature, weak or
            unsupported key.
    """
    data = pem.encode()
    if len(data) > MAX_CSR_BYTES:
        raise CsrRejectedError(f"CSR is {len(data)} bytes; at most {MAX_CSR_BYTES}")
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise CsrRejectedError("CSR is not a valid PEM certificate request") from exc
    if not csr.is_signature_valid:
        raise CsrRejectedError("CSR signature does not match its public key")
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CsrRejectedError(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS}")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < MIN_EC_BITS:
            raise CsrRejectedError(f"EC key on {key.curve.name}; at least {MIN_EC_BITS} bits")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise CsrRejectedError(f"unsupported key type {type(key).__name__}")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = names[0].value if names else None
    return CheckedCsr(csr, common_name if isinstance(common_name, str) else None)


def public_key_sha256(csr: x509.CertificateSigningRequest | x509.Certificate) -> str:
    """Fingerprint of the CSR's (or certificate's) public key (SubjectPublicKeyInfo DER)."""
    der = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def key_kind(csr: x509.CertificateSigningRequest | x509.Certificate) -> str:
    """The key's algorithm and size, as `ec:secp256r1`, `rsa:2048` or `ed25519`:
    a renewal keeps the kind of key the device enrolled with."""
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ec:{key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa:{key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    return type(key).__name__
