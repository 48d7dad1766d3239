"""The hub's data directory: CA, TLS certificate and the first admin token.

DIR/ca.pem, DIR/ca-key.pem (0600)      the fleet CA: ca.pem is the trust bundle
                                       (the issuing CA first, during a rotation
                                       the previous one too); the key may be
                                       encrypted (--ca-key-passphrase-file)
DIR/tls/hub.pem, DIR/tls/hub-key.pem   the hub's server certificate
DIR/tls/sans.json                      the names it was issued for
DIR/tls/ticket-secret (0600)           TLS session tickets' key material, shared by
                                       every worker and replica (see _tickets.py)
DIR/admin-token (0600)                 written on first start and by rotate-admin-token
DIR/hub.db                             SQLite, unless --db says otherwise
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fogline.security import CertificateAuthority, write_public_file, write_secret_file

DEFAULT_SANS: Final = ("localhost", "127.0.0.1")
ADMIN_TOKEN_FILE: Final = "admin-token"  # noqa: S105 (a file name, not a secret)


@dataclass(frozen=True, slots=True)
class HubFiles:
    root: Path
    ca: CertificateAuthority
    # Opens the CA key when it is encrypted at rest (--ca-key-passphrase-file).
    passphrase: bytes | None = None

    @property
    def ca_cert(self) -> Path:
        return self.root / CertificateAuthority.CERT_FILE

    @property
    def tls_cert(self) -> Path:
        return self.root / "tls" / "hub.pem"

    @property
    def tls_key(self) -> Path:
        return self.root / "tls" / "hub-key.pem"

    @property
    def admin_token(self) -> Path:
        return self.root / ADMIN_TOKEN_FILE


def prepare_data_dir(
    root: Path, extra_sans: list[str], passphrase: bytes | None = None
) -> HubFiles:
    """Create or reuse the CA and the hub certificate under `root`.

    The server certificate is reissued only when the requested names change.

    Raises:
        CaKeyError: the CA key is encrypted and `passphrase` does not open it.
    """
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    ca = CertificateAuthority.load_or_create(root, passphrase=passphrase)
    files = HubFiles(root, ca, passphrase)
    sans = sorted(set(DEFAULT_SANS) | set(extra_sans))
    sans_file = root / "tls" / "sans.json"
    current = json.loads(sans_file.read_text()) if sans_file.exists() else None
    if current != sans or not files.tls_cert.exists() or not files.tls_key.exists():
        ca.issue_server_cert(files.tls_key, files.tls_cert, sans)
        write_public_file(sans_file, json.dumps(sans).encode())
    return files


def reissue_server_cert(files: HubFiles, ca: CertificateAuthority) -> None:
    """Issue the hub's TLS certificate again, from `ca`, for the names it has;
    running hubs serve it to new connections (see _tls.ReloadingServerTls)."""
    sans_file = files.root / "tls" / "sans.json"
    sans = json.loads(sans_file.read_text()) if sans_file.exists() else list(DEFAULT_SANS)
    ca.issue_server_cert(files.tls_key, files.tls_cert, [str(san) for san in sans])


def save_admin_token(path: Path, token: str) -> None:
    """Write the admin token 0600, atomically: a reader sees the old token or
    the new one, never half of one. It is never printed (see _admin.py)."""
    write_secret_file(path, (token + "\n").encode())
