"""The hub's data directory: CA, TLS certificate and the first admin token.

DIR/ca.pem, DIR/ca-key.pem (0600)      the fleet CA
DIR/tls/hub.pem, DIR/tls/hub-key.pem   the hub's server certificate
DIR/tls/sans.json                      the names it was issued for
DIR/admin-token (0600)                 written once, on first start
DIR/hub.db                             SQLite, unless --db says otherwise
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fogline.security import CertificateAuthority, write_public_file, write_secret_file

DEFAULT_SANS: Final = ("localhost", "127.0.0.1")


@dataclass(frozen=True, slots=True)
class HubFiles:
    root: Path
    ca: CertificateAuthority

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
        return self.root / "admin-token"


def prepare_data_dir(root: Path, extra_sans: list[str]) -> HubFiles:
    """Create or reuse the CA and the hub certificate under `root`.

    The server certificate is reissued only when the requested names change.
    """
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    ca = CertificateAuthority.load_or_create(root)
    files = HubFiles(root, ca)
    sans = sorted(set(DEFAULT_SANS) | set(extra_sans))
    sans_file = root / "tls" / "sans.json"
    current = json.loads(sans_file.read_text()) if sans_file.exists() else None
    if current != sans or not files.tls_cert.exists() or not files.tls_key.exists():
        ca.issue_server_cert(files.tls_key, files.tls_cert, sans)
        write_public_file(sans_file, json.dumps(sans).encode())
    return files


def save_admin_token(files: HubFiles, token: str) -> None:
    write_secret_file(files.admin_token, (token + "\n").encode())
