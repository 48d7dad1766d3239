"""Writing key material: created 0600 from the first byte, replaced atomically."""

import os
import stat
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ._errors import TokenFileError

MAX_TOKEN_FILE_BYTES: Final = 4096


def write_secret_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600, atomically (temp file + rename).

    The temp file is opened with 0600 by os.open, so the secret is never
    readable by others, not even between create and chmod.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_public_file(path: Path, data: bytes) -> None:
    """Write a non-secret file (certificates) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private_key(path: Path, key: PrivateKeyTypes) -> None:
    """Store a private key as unencrypted PKCS#8 PEM with mode 0600."""
    write_secret_file(path, private_key_pem(key))


def load_private_key(path: Path) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


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
