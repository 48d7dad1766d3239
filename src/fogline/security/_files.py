"""Writing key material: created 0600 from the first byte, replaced atomically."""

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fogline._durable import write_atomic

from ._errors import TokenFileError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

# cryptography is imported by the key functions below, when called: an idle
# agent reads token files here and holds no key object (about 8.5 MB resident).

MAX_TOKEN_FILE_BYTES: Final = 4096


def write_secret_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600, atomically and durably.

    The temporary file is created 0600, so the secret is never readable by
    others, not even between create and rename.
    """
    write_atomic(path, data, mode=0o600)


def write_public_file(path: Path, data: bytes) -> None:
    """Write a non-secret file (certificates) atomically and durably."""
    write_atomic(path, data, mode=0o644)


def private_key_pem(key: "PrivateKeyTypes", passphrase: bytes | None = None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def write_private_key(path: Path, key: "PrivateKeyTypes", passphrase: bytes | None = None) -> None:
    """Store a private key as PKCS#8 PEM with mode 0600; with `passphrase`,
    encrypted (cryptography's best available encryption)."""
    write_secret_file(path, private_key_pem(key, passphrase))


def load_private_key(path: Path, passphrase: bytes | None = None) -> "PrivateKeyTypes":
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(path.read_bytes(), password=passphrase)


def read_token_file(path: Path) -> str:
    """The token held in `path`, surrounding whitespace stripped.

    Like ssh with its keys, a file that group or others may access is
    refused: a token file is a credential, and a mode that lets other users
    read it leaks it just as a command line would.

    Raises:
        TokenFileError: missing or unreadable, not a regular file, accessible
            to group or others, empty, or larger than MAX_TOKEN_FILE_BYTES.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise TokenFileError(f"{path}: cannot open: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TokenFileError(f"{path}: not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise TokenFileError(
                f"{path}: mode {mode:04o} lets group or others read it; chmod 600 {path}"
            )
        data = os.read(fd, MAX_TOKEN_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise TokenFileError(f"{path}: larger than {MAX_TOKEN_FILE_BYTES} bytes")
    token = data.decode("utf-8", errors="replace").strip()
    if not token:
        raise TokenFileError(f"{path}: empty")
    return token
