"""Sealed files: a byte stream encrypted under a passphrase, chunk by chunk.

A sealed file holds the hub's trust (CA key, token hashes) in a backup, so
anyone who holds the file but not the passphrase must learn nothing, and any
change to it must be refused before a single byte is used. Chunks let a
backup of any size stream through a bounded buffer.

Layout (format 1), every integer big-endian:

    header   magic (8) | format u8 | kdf u8 (1 = scrypt) | log2(n) u8 | r u8 | p u8
             | salt (16) | chunk size u32 | header MAC (32)
    chunk*   frame u32 (top bit: last chunk; low 31 bits: ciphertext length)
             | AES-256-GCM ciphertext and tag

scrypt(passphrase, salt) gives 64 bytes: the first 32 are the AES key, the
last 32 the key of the header's HMAC-SHA256. A wrong passphrase fails the
header MAC, before any chunk is read, and says so apart from damage.

Each chunk's nonce is its index (11 bytes) and the last-chunk flag (1 byte),
and its associated data is the whole header: chunks cannot be reordered,
dropped, moved to another file, or cut off at a chunk boundary (the stream
must end with the chunk flagged last, and nothing may follow it). The salt
is fresh for every file, so the key is too, and counter nonces never repeat
under one key.
"""

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ._errors import DamagedSealedFileError, WrongPassphraseError

MAGIC: Final = b"\x89FGLSEAL"  # a high byte first, as PNG: text-mode copies show
FORMAT: Final = 1
_KDF_SCRYPT: Final = 1
_HEAD: Final = struct.Struct(">8sBBBBB16sI")
_MAC_BYTES: Final = 32
HEADER_BYTES: Final = _HEAD.size + _MAC_BYTES
_FRAME: Final = struct.Struct(">I")
_LAST: Final = 0x8000_0000
_TAG_BYTES: Final = 16
DEFAULT_CHUNK_BYTES: Final = 1024 * 1024
# What a reader accepts from a header: the file chooses the work and memory
# the KDF costs the reader, so both are bounded (1 GiB for scrypt at most).
MIN_CHUNK_BYTES: Final = 4096
MAX_CHUNK_BYTES: Final = 16 * 1024 * 1024
_MAX_SCRYPT_BYTES: Final = 1024 * 1024 * 1024


class ByteSource(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class ByteSink(Protocol):
    def write(self, data: bytes, /) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ScryptCost:
    """scrypt's parameters: memory is 128 * r * 2**log2_n bytes (128 MiB by default)."""

    log2_n: int = 17
    r: int = 8
    p: int = 1

    def check(self) -> None:
        """Raises: DamagedSealedFileError: out of the bounds a reader accepts."""
        fits = 128 * self.r * 2**self.log2_n <= _MAX_SCRYPT_BYTES if 1 <= self.r <= 32 else False
        if not (14 <= self.log2_n <= 22 and 1 <= self.p <= 4 and fits):
            raise DamagedSealedFileError(
                f"scrypt cost out of bounds (log2 n={self.log2_n}, r={self.r}, p={self.p})"
            )


def _derive(passphrase: str, salt: bytes, cost: ScryptCost) -> tuple[bytes, bytes]:
    kdf = Scrypt(salt=salt, length=64, n=2**cost.log2_n, r=cost.r, p=cost.p)
    key = kdf.derive(passphrase.encode("utf-8"))
    return key[:32], key[32:]


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class SealedWriter:
    """Encrypts what is written to it into `sink`, one chunk at a time.

    `close()` writes the last chunk (it must be called, or the file reads
    as truncated); it does not close `sink`. At most one chunk is buffered.
    """

    def __init__(
        self,
        sink: ByteSink,
        passphrase: str,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        cost: ScryptCost | None = None,
    ) -> None:
        if not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES:
            raise ValueError(f"chunk_bytes: expected {MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES}")
        cost = cost or ScryptCost()
        cost.check()
        salt = os.urandom(16)
        key, mac_key = _derive(passphrase, salt, cost)
        head = _HEAD.pack(
            MAGIC, FORMAT, _KDF_SCRYPT, cost.log2_n, cost.r, cost.p, salt, chunk_bytes
        )
        self._header = head + hmac.new(mac_key, head, hashlib.sha256).digest()
        self._aead = AESGCM(key)
        self._sink = sink
        self._chunk_bytes = chunk_bytes
        self._buffer = bytearray()
        self._index = 0
        self._closed = False
        sink.write(self._header)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed SealedWriter")
        self._buffer += data
        # Strictly more than a chunk: the last chunk is written by close(),
        # flagged, and may be anything from empty to a full chunk.
        while len(self._buffer) > self._chunk_bytes:
            self._emit(bytes(self._buffer[: self._chunk_bytes]), last=False)
            del self._buffer[: self._chunk_bytes]
        return len(data)

    def close(self) -> None:
        if not self._closed:
            self._emit(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True

    def _emit(self, plain: bytes, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._index, last), plain, self._header)
        self._sink.write(_FRAME.pack(len(sealed) | (_LAST if last else 0)) + sealed)
        self._index += 1


class SealedReader:
    """Decrypts a sealed file as it is read; only authenticated bytes come out.

    The header is checked when the reader is made, so a wrong passphrase is
    known before anything is read. `read` returns at most one chunk's worth;
    `b""` only after the last chunk was authenticated and nothing followed it.

    Raises (from the constructor and `read`):
        WrongPassphraseError: the header's MAC fails (or the header is damaged).
        DamagedSealedFileError: not a sealed file, a format this code does not
            know, a chunk that fails authentication, truncation, or bytes after
            the last chunk.
    """

    def __init__(self, source: ByteSource, passphrase: str) -> None:
        self._source = source
        header = _read_exactly(source, HEADER_BYTES)
        if header[: len(MAGIC)] != MAGIC:
            raise DamagedSealedFileError("not a Fogline backup (no sealed-file header)")
        if len(header) > len(MAGIC) and header[len(MAGIC)] != FORMAT:
            raise DamagedSealedFileError(
                f"sealed-file format {header[len(MAGIC)]}; this Fogline reads format {FORMAT} "
                "(made by a newer Fogline?)"
            )
        if len(header) < HEADER_BYTES:
            raise DamagedSealedFileError("truncated: the file ends inside its header")
        _, _, kdf, log2_n, r, p, salt, chunk_bytes = _HEAD.unpack(header[: _HEAD.size])
        cost = ScryptCost(log2_n, r, p)
        if kdf != _KDF_SCRYPT or not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES:
            raise DamagedSealedFileError("damaged header: unknown key derivation or chunk size")
        cost.check()
        key, mac_key = _derive(passphrase, salt, cost)
        expected = hmac.new(mac_key, header[: _HEAD.size], hashlib.sha256).digest()
        if not hmac.compare_digest(expected, header[_HEAD.size :]):
            raise WrongPassphraseError("wrong passphrase (or the file's header is damaged)")
        self._header = header
        self._aead = AESGCM(key)
        self._chunk_bytes = chunk_bytes
        self._index = 0
        self._offset = HEADER_BYTES
        self._plain = memoryview(b"")
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        while not self._plain and not self._ended:
            self._plain = memoryview(self._next_chunk())
        if size < 0 or size >= len(self._plain):
            out, self._plain = bytes(self._plain), memoryview(b"")
        else:
            out, self._plain = bytes(self._plain[:size]), self._plain[size:]
        return out

    def drain(self) -> int:
        """Read and authenticate everything left, up to the last chunk; returns
        how many plaintext bytes were left unread."""
        left = 0
        while chunk := self.read(self._chunk_bytes):
            left += len(chunk)
        return left

    def _next_chunk(self) -> bytes:
        at = self._offset
        frame = _read_exactly(self._source, _FRAME.size)
        if len(frame) < _FRAME.size:
            raise DamagedSealedFileError(
                f"truncated: the file ends after {at} bytes, before its last chunk"
            )
        (word,) = _FRAME.unpack(frame)
        last, length = bool(word & _LAST), word & ~_LAST
        if not _TAG_BYTES <= length <= self._chunk_bytes + _TAG_BYTES:
            raise DamagedSealedFileError(f"damaged: chunk {self._index} at byte {at}: bad frame")
        sealed = _read_exactly(self._source, length)
        if len(sealed) < length:
            raise DamagedSealedFileError(
                f"truncated: the file ends inside chunk {self._index} (at byte {at})"
            )
        try:
            plain = self._aead.decrypt(_nonce(self._index, last), sealed, self._header)
        except InvalidTag:
            raise DamagedSealedFileError(
                f"damaged: chunk {self._index} at byte {at} fails authentication "
                "(the file was changed or corrupted)"
            ) from None
        self._index += 1
        self._offset += _FRAME.size + length
        if last:
            if self._source.read(1):
                raise DamagedSealedFileError(
                    f"damaged: bytes follow the last chunk (at byte {self._offset})"
                )
            self._ended = True
        return plain


def _read_exactly(source: ByteSource, size: int) -> bytes:
    """Up to `size` bytes: fewer only at the end of `source`."""
    parts, got = [], 0
    while got < size:
        part = source.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)
