"""The node's identity: a private key that never leaves it, and its certificate.

    DATA/identity/key.pem      0600, made on the node
    DATA/identity/cert.pem     issued by the hub at enrollment
    DATA/identity/ca.pem       the fleet CA, pinned at enrollment
    DATA/identity/device.json  device id and name

device.json is written last, so a crash during enrollment leaves no
half-identity: without it the node simply enrolls again with a new key.
"""

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from fogline.security import (
    generate_device_key,
    load_private_key,
    make_csr,
    write_private_key,
    write_public_file,
)

from ._errors import IdentityError


@dataclass(frozen=True, slots=True)
class Identity:
    device_id: str
    name: str
    key_path: Path
    cert_path: Path
    ca_path: Path


class IdentityStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "identity"

    @property
    def key_path(self) -> Path:
        return self.root / "key.pem"

    def secure(self) -> None:
        """Keep the identity the agent's alone: the directory 0700, the key 0600.

        Run at every start, so a node set up by an older agent, or loosened
        by hand, is tightened before any module runs.
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        if self.key_path.exists():
            os.chmod(self.key_path, 0o600)

    def load(self) -> Identity | None:
        """The enrolled identity, or None when the node has not enrolled yet.

        Raises:
            IdentityError: device.json exists but is unreadable or its files are missing.
        """
        meta = self.root / "device.json"
        if not meta.exists():
            return None
        try:
            data = json.loads(meta.read_text())
            identity = Identity(
                device_id=str(data["device_id"]),
                name=str(data["name"]),
                key_path=self.key_path,
                cert_path=self.root / "cert.pem",
                ca_path=self.root / "ca.pem",
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IdentityError(
                f"{meta}: unreadable identity ({exc}); remove it to re-enroll"
            ) from exc
        for path in (identity.key_path, identity.cert_path, identity.ca_path):
            if not path.is_file():
                raise IdentityError(f"{path}: missing; remove {meta} to re-enroll")
        return identity

    def new_csr(self, name: str) -> str:
        """A CSR for the node's key, made (0600) on first use and kept.

        Every enrollment attempt reuses the same key, also across restarts:
        an attempt whose answer was lost is then recognised by the hub as the
        same device retrying, not a second device taking the name.
        """
        try:
            key = self.current_key()
        except (OSError, ValueError, IdentityError):
            key = generate_device_key()
            write_private_key(self.key_path, key)
        return make_csr(key, name).decode()

    def current_key(self) -> ec.EllipticCurvePrivateKey:
        key = load_private_key(self.key_path)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise IdentityError(f"{self.key_path}: not an EC private key")
        return key

    def pinned_release_keys(self) -> dict[str, str]:
        """Release keys the hub gave at enrollment (name -> base64 Ed25519 key)."""
        path = self.root / "release-keys.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def pinned_key_scopes(self) -> dict[str, Any]:
        """Scopes of the release keys pinned at enrollment (name -> patterns), as
        stored; a key not listed was given unscoped (or by a hub without scopes)."""
        path = self.root / "release-key-scopes.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            # Unreadable: every pinned key may then sign nothing rather than anything.
            return {name: None for name in self.pinned_release_keys()}
        return dict(data) if isinstance(data, dict) else {}

    def save(
        self,
        device_id: str,
        name: str,
        cert_pem: str,
        ca_pem: str,
        release_keys: dict[str, str] | None = None,
        release_key_scopes: Mapping[str, Sequence[str]] | None = None,
    ) -> Identity:
        write_public_file(
            self.root / "release-keys.json", json.dumps(release_keys or {}, sort_keys=True).encode()
        )
        scopes = {key: list(patterns) for key, patterns in (release_key_scopes or {}).items()}
        write_public_file(
            self.root / "release-key-scopes.json", json.dumps(scopes, sort_keys=True).encode()
        )
        write_public_file(self.root / "cert.pem", cert_pem.encode())
        write_public_file(self.root / "ca.pem", ca_pem.encode())
        write_public_file(
            self.root / "device.json", json.dumps({"device_id": device_id, "name": name}).encode()
        )
        identity = self.load()
        assert identity is not None
        return identity
