"""A throwaway CA and a server certificate for 127.0.0.1: Fogline's own CA code."""

from dataclasses import dataclass
from pathlib import Path

from fogline.security import CertificateAuthority


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_server_tls(directory: Path, common_name: str = "test-ca") -> TlsFiles:
    """A CA (ca.pem) and a certificate for IP 127.0.0.1 it signed (server.pem,
    server.key, 0600; the certificate file holds the chain)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.load_or_create(directory, name=common_name)
    files = TlsFiles(
        directory / CertificateAuthority.CERT_FILE,
        directory / "server.pem",
        directory / "server.key",
    )
    ca.issue_server_cert(files.key, files.cert, ["127.0.0.1"])
    return files
