"""The fleet's trust as one hub process sees it: the CA it issues from, the
bundle it trusts and hands to devices, reloaded when the data directory's
files change.

`fogline ca rotate` and `fogline ca retire-old` change DIR/ca.pem and
DIR/ca-key.pem while the hub runs; every worker (and the TLS listener, see
_tls.py) notices at its next look, at most RELOAD_CHECK_S later.
"""

import logging
import threading
import time
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization

from fogline._log import event
from fogline.security import CaKeyError, CertificateAuthority, read_trust_bundle

log = logging.getLogger("fogline.hub")

# How often a look at the files is made at most: a stat of two files per
# second per process, whatever the request rate.
RELOAD_CHECK_S: Final = 1.0


def file_signature(*paths: Path) -> tuple[tuple[int, int, int], ...]:
    """What changes when any of `paths` is replaced (atomic writes replace
    the inode) or rewritten."""
    signature = []
    for path in paths:
        try:
            info = path.stat()
        except FileNotFoundError:
            signature.append((0, 0, 0))
            continue
        signature.append((info.st_ino, info.st_mtime_ns, info.st_size))
    return tuple(signature)


class FleetTrust:
    """The issuing CA and the trust bundle of a hub data directory."""

    def __init__(self, root: Path, passphrase: bytes | None = None) -> None:
        self._root = root
        self._passphrase = passphrase
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._signature: tuple[tuple[int, int, int], ...] = ()
        self._ca: CertificateAuthority | None = None
        self._bundle_pem = b""
        self._refresh(force=True)

    @property
    def _paths(self) -> tuple[Path, Path]:
        return (
            self._root / CertificateAuthority.CERT_FILE,
            self._root / CertificateAuthority.KEY_FILE,
        )

    def _refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked_at < RELOAD_CHECK_S:
            return
        with self._lock:
            self._checked_at = now
            signature = file_signature(*self._paths)
            if signature == self._signature and self._ca is not None:
                return
            try:
                ca = CertificateAuthority.load_or_create(self._root, passphrase=self._passphrase)
                bundle = read_trust_bundle(self._paths[0])
            except (CaKeyError, OSError, ValueError) as exc:
                if self._ca is None:
                    raise
                # Caught between two writes of a rotation: keep issuing from
                # the CA loaded before, and look again at the next call.
                event(log, "hub.ca_reload_failed", logging.WARNING, error=str(exc))
                return
            self._bundle_pem = b"".join(
                cert.public_bytes(serialization.Encoding.PEM) for cert in bundle
            )
            self._ca, self._signature = ca, signature

    def signing_ca(self) -> CertificateAuthority:
        """The CA device certificates are issued from now."""
        self._refresh()
        assert self._ca is not None
        return self._ca

    def bundle_pem(self) -> bytes:
        """Every CA the hub trusts, the issuing one first (PEM)."""
        self._refresh()
        return self._bundle_pem
