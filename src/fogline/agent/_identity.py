"""The node's identity: a private key that never leaves it, and its certificate.

    DATA/identity/key.pem      0600, made on the node
    DATA/identity/cert.pem     issued by the hub at enrollment
    DATA/identity/ca.pem       the fleet CA, pinned at enrollment
    DATA/identity/device.json  device id and name
    DATA/identity/renew-key.pem, renew-cert.pem   a renewal on its way

device.json is written last, so a crash during enrollment leaves no
half-identity: without it the node simply enrolls again with a new key.

A renewal writes its new key aside (renew-key.pem) before asking, then the
certificate the hub answered (renew-cert.pem), and only then puts the pair in
place of key.pem and cert.pem. `load` finishes a promotion a crash cut short,
so the node always starts with a key and certificate that belong together:
the old pair (which the hub still accepts, see hub/_renewal.py) or the new.
"""

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fogline._durable import make_dirs
from fogline.security import write_public_file, write_secret_file

from ._certdates import cert_dates
from ._errors import IdentityError
from .updater import PINNED_ROOT_FILE

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

# cryptography (keys, CSRs, certificates: about 8.5 MB resident) is imported
# by the methods that enroll and renew, when called: an idle agent reads its
# certificate's dates with _certdates and never holds a key object.


@dataclass(frozen=True, slots=True)
class Identity:
    device_id: str
    name: str
    key_path: Path
    cert_path: Path
    ca_path: Path


@dataclass(frozen=True, slots=True)
class CertLifetime:
    """What renewal needs to know of the node's certificate."""

    not_before: dt.datetime
    not_after: dt.datetime
    issuer_key_id: str | None

    @property
    def renew_at(self) -> dt.datetime:
        """Two thirds into its lifetime: a third left to retry in."""
        return self.not_before + (self.not_after - self.not_before) * 2 / 3

    def is_expired(self, now: dt.datetime) -> bool:
        return now >= self.not_after


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
        # Durably: the files inside are fsynced, and a power cut must not
        # take away the directory that names them (tests/test_power_loss.py).
        make_dirs(self.root, mode=0o700)
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
        self._finish_renewal()
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
        from fogline.security import generate_device_key, make_csr, write_private_key

        try:
            key = self.current_key()
        except (OSError, ValueError, IdentityError):
            key = generate_device_key()
            write_private_key(self.key_path, key)
        return make_csr(key, name).decode()

    def current_key(self) -> "ec.EllipticCurvePrivateKey":
        from cryptography.hazmat.primitives.asymmetric import ec

        from fogline.security import load_private_key

        key = load_private_key(self.key_path)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise IdentityError(f"{self.key_path}: not an EC private key")
        return key

    # -- renewal ---------------------------------------------------------------

    @property
    def _renew_key_path(self) -> Path:
        return self.root / "renew-key.pem"

    @property
    def _renew_cert_path(self) -> Path:
        return self.root / "renew-cert.pem"

    def lifetime(self) -> CertLifetime:
        """The current certificate's validity and issuer.

        Raises:
            IdentityError: the certificate cannot be read.
        """
        try:
            dates = cert_dates((self.root / "cert.pem").read_bytes())
        except (OSError, ValueError) as exc:
            raise IdentityError(f"{self.root / 'cert.pem'}: unreadable certificate") from exc
        return CertLifetime(dates.not_before, dates.not_after, dates.issuer_key_id)

    def renewal_csr(self, name: str, *, new_key: bool = True) -> str:
        """A CSR for the renewal: a new key (0600, written aside before the
        request leaves, and reused by a retry), or the current one."""
        from cryptography.hazmat.primitives.asymmetric import ec

        from fogline.security import (
            generate_device_key,
            load_private_key,
            make_csr,
            write_private_key,
        )

        current = self.current_key()
        if not new_key:
            return make_csr(current, name).decode()
        key: ec.EllipticCurvePrivateKey | None = None
        try:
            loaded = load_private_key(self._renew_key_path)
            if isinstance(loaded, ec.EllipticCurvePrivateKey):
                key = loaded
        except (OSError, ValueError):
            key = None
        if key is None or key.public_key() == current.public_key():
            key = generate_device_key()
            write_private_key(self._renew_key_path, key)
        return make_csr(key, name).decode()

    def finish_renewal(
        self, cert_pem: str, ca_pem: str, crash_hook: Callable[[str], None] | None = None
    ) -> None:
        """Put the renewed certificate (and the key it was asked for) in place,
        with the trust bundle the hub sent.

        Raises:
            IdentityError: the certificate is not for the key asked with.
        """
        key = self._key_for(cert_pem.encode())
        if key is None:
            raise IdentityError("the renewed certificate is not for the key this node asked with")
        # The bundle first: it only adds trust (the new CA) to the old.
        write_public_file(self.root / "ca.pem", ca_pem.encode())
        write_public_file(self._renew_cert_path, cert_pem.encode())
        self._finish_renewal(crash_hook)

    def _key_for(self, cert_pem: bytes) -> "ec.EllipticCurvePrivateKey | None":
        """The key (the renewal's, or the current one) `cert_pem` certifies."""
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec

        from fogline.security import load_private_key

        try:
            public = x509.load_pem_x509_certificate(cert_pem).public_key()
        except ValueError:
            return None
        for path in (self._renew_key_path, self.key_path):
            try:
                key = load_private_key(path)
            except (OSError, ValueError):
                continue
            if isinstance(key, ec.EllipticCurvePrivateKey) and key.public_key() == public:
                return key
        return None

    def _finish_renewal(self, crash_hook: Callable[[str], None] | None = None) -> None:
        """Promote a complete renewal (renew-cert.pem and its key) to key.pem
        and cert.pem. Idempotent: a crash anywhere in it is finished by the
        next call; a renew-cert.pem without its key is dropped."""
        if not self._renew_cert_path.exists():
            return
        if crash_hook is not None:
            crash_hook("renew:cert-written")
        cert_pem = self._renew_cert_path.read_bytes()
        key = self._key_for(cert_pem)
        if key is not None:
            # key.pem first, then cert.pem: between the two, the pair on disk
            # does not match, and this runs again at the next start.
            from fogline.security import private_key_pem

            write_secret_file(self.key_path, private_key_pem(key))
            if crash_hook is not None:
                crash_hook("renew:key-promoted")
            write_public_file(self.root / "cert.pem", cert_pem)
        self._renew_cert_path.unlink()
        self._renew_key_path.unlink(missing_ok=True)

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
        tuf_root: str | None = None,
    ) -> Identity:
        write_public_file(
            self.root / "release-keys.json", json.dumps(release_keys or {}, sort_keys=True).encode()
        )
        scopes = {key: list(patterns) for key, patterns in (release_key_scopes or {}).items()}
        write_public_file(
            self.root / "release-key-scopes.json", json.dumps(scopes, sort_keys=True).encode()
        )
        if tuf_root is not None:
            # Pinned once: from now on only releases TUF metadata chained to
            # this root vouches for are installed (agent/updater/_tuf.py).
            write_public_file(self.root / PINNED_ROOT_FILE, tuf_root.encode())
        write_public_file(self.root / "cert.pem", cert_pem.encode())
        write_public_file(self.root / "ca.pem", ca_pem.encode())
        write_public_file(
            self.root / "device.json", json.dumps({"device_id": device_id, "name": name}).encode()
        )
        identity = self.load()
        assert identity is not None
        return identity
