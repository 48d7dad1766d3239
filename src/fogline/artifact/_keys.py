"""Ed25519 release keys: generate, store (0600, never overwritten), load, identify."""

import base64
import binascii
import errno
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fogline._durable import write_new

from ._errors import ReleaseKeyError

KEY_ID_PREFIX: Final = "ed25519:"
# A PEM Ed25519 key is ~120 bytes (encrypted ~300); refuse to slurp anything big.
_MAX_KEY_FILE_BYTES: Final = 16 * 1024
_MAX_PUBLIC_KEY_CHARS: Final = 1024


def key_id(public_key: Ed25519PublicKey) -> str:
    """`ed25519:` + the first 16 hex digits of sha256 over the raw public key.

    The id only picks which trusted key to try; the signature check itself
    always uses the full pinned key.
    """
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_ID_PREFIX + hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    """The public key as a SubjectPublicKeyInfo PEM block."""
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode("ascii")


def public_key_base64(public_key: Ed25519PublicKey) -> str:
    """The 32 raw public key bytes in standard base64 (44 characters)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public_key(text: str) -> Ed25519PublicKey:
    """Parse a public key given as PEM or as base64 of the 32 raw bytes.

    Raises:
        ReleaseKeyError: neither form, or not an Ed25519 key.
    """
    text = text.strip()
    if len(text) > _MAX_PUBLIC_KEY_CHARS:
        raise ReleaseKeyError("<public key>", f"longer than {_MAX_PUBLIC_KEY_CHARS} characters")
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
            raise ReleaseKeyError("<public key>", f"not a PEM public key ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ReleaseKeyError("<public key>", f"not an Ed25519 key ({type(key).__name__})")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReleaseKeyError("<public key>", "neither PEM nor base64") from exc
    if len(raw) != 32:
        raise ReleaseKeyError("<public key>", f"raw Ed25519 keys are 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True, slots=True, repr=False)
class ReleaseKeyPair:
    """A release signing key; its public half is what nodes pin at enrollment."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def __repr__(self) -> str:  # never anything secret in logs
        return f"ReleaseKeyPair(key_id={self.key_id!r})"

    def write_private_key(self, path: Path, *, password: bytes | None = None) -> None:
        """Store the private key as PKCS#8 PEM in a new file readable by its owner only.

        The file appears complete or not at all, and an existing file is never
        replaced: overwriting a release key by mistake cannot be undone.

        Raises:
            ReleaseKeyError: `path` already exists.
            OSError: the directory is not writable.
        """
        path = Path(path)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        # 0600 from creation on, so the key is never readable by others even
        # for an instant; created complete or not at all, never over a file.
        try:
            write_new(path, pem, mode=0o600)
        except FileExistsError:
            raise ReleaseKeyError(path, "already exists; refusing to overwrite a key") from None


def generate_release_key() -> ReleaseKeyPair:
    """A new random Ed25519 release key."""
    return ReleaseKeyPair(Ed25519PrivateKey.generate())


def load_private_key(path: Path, *, password: bytes | None = None) -> ReleaseKeyPair:
    """Load a PKCS#8 PEM Ed25519 private key written by `write_private_key`.

    Raises:
        ReleaseKeyError: missing, unreadable, too large, malformed, wrong
            password, or not an Ed25519 key.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        reason = "does not exist" if exc.errno == errno.ENOENT else f"cannot read ({exc})"
        raise ReleaseKeyError(path, reason) from exc
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise ReleaseKeyError(path, f"larger than {_MAX_KEY_FILE_BYTES} bytes; not a key file")
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:  # password given for a clear key, or missing for an encrypted one
        raise ReleaseKeyError(path, str(exc)) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ReleaseKeyError(path, "not a PEM private key, or a wrong password") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseKeyError(path, f"not an Ed25519 key ({type(key).__name__})")
    return ReleaseKeyPair(key)
