"""Sealed files: what comes out is what went in, or an error; never a changed byte."""

import functools
import io
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.security import (
    DamagedSealedFileError,
    ScryptCost,
    SealedFileError,
    SealedReader,
    SealedWriter,
    WrongPassphraseError,
    _sealed,
)
from fogline.security._sealed import HEADER_BYTES, MIN_CHUNK_BYTES

CHEAP = ScryptCost(log2_n=14, r=8, p=1)  # the floor a reader accepts: fast tests
CHUNK = MIN_CHUNK_BYTES
PASS = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _derive_once_per_salt(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The tests below open one file hundreds of times: scrypt once per (passphrase, salt)."""
    monkeypatch.setattr(_sealed, "_derive", functools.cache(_sealed._derive))
    yield


def seal(data: bytes, *, passphrase: str = PASS, chunk: int = CHUNK) -> bytes:
    sink = io.BytesIO()
    writer = SealedWriter(sink, passphrase, chunk_bytes=chunk, cost=CHEAP)
    view = memoryview(data)
    for start in range(0, len(data), 1000):  # writes that do not line up with chunks
        writer.write(view[start : start + 1000])
    writer.close()
    return sink.getvalue()


def unseal(blob: bytes, passphrase: str = PASS) -> bytes:
    reader = SealedReader(io.BytesIO(blob), passphrase)
    parts = []
    while part := reader.read(777):
        parts.append(part)
    return b"".join(parts)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5])
def test_what_is_sealed_reads_back_the_same_at_every_chunk_boundary(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    assert unseal(seal(data[:size])) == data[:size]


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=3 * CHUNK))
def test_any_bytes_round_trip(data: bytes) -> None:
    assert unseal(seal(data)) == data


def test_two_files_of_the_same_bytes_differ_and_hold_no_plaintext() -> None:
    secret = b"-----BEGIN PRIVATE KEY-----" * 200
    first, second = seal(secret), seal(secret)
    assert first != second  # a fresh salt, so a fresh key
    assert b"PRIVATE KEY" not in first


def test_a_wrong_passphrase_is_refused_before_anything_is_read() -> None:
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        SealedReader(io.BytesIO(seal(b"x" * 10_000)), "not the passphrase")


def test_every_flipped_byte_is_refused() -> None:
    blob = seal(bytes(3 * CHUNK + 100))
    # The header, the first frame, inside chunks, the tags, the last frame.
    offsets = [*range(0, HEADER_BYTES + 8), *range(HEADER_BYTES + 8, len(blob), 257)]
    offsets += list(range(len(blob) - 20, len(blob)))
    for offset in offsets:
        bad = bytearray(blob)
        bad[offset] ^= 0x01
        with pytest.raises(SealedFileError):
            unseal(bytes(bad))


def test_every_truncation_is_refused_as_truncated_or_not_a_backup() -> None:
    blob = seal(bytes(2 * CHUNK + 100))
    for length in [*range(0, HEADER_BYTES + 10), *range(HEADER_BYTES + 10, len(blob), 97)]:
        with pytest.raises(DamagedSealedFileError, match=r"truncated|not a Fogline backup"):
            unseal(blob[:length])


def test_a_file_cut_exactly_after_a_whole_chunk_is_truncated() -> None:
    blob = seal(bytes(2 * CHUNK + 100))
    first_chunk_end = HEADER_BYTES + 4 + CHUNK + 16
    with pytest.raises(DamagedSealedFileError, match="truncated"):
        unseal(blob[:first_chunk_end])


def test_bytes_after_the_last_chunk_are_refused() -> None:
    with pytest.raises(DamagedSealedFileError, match="follow the last chunk"):
        unseal(seal(b"hello") + b"\x00")


def test_chunks_cannot_be_swapped() -> None:
    blob = seal(bytes(range(256)) * (3 * CHUNK // 256))
    size = 4 + CHUNK + 16
    head, one, two, rest = (
        blob[:HEADER_BYTES],
        blob[HEADER_BYTES : HEADER_BYTES + size],
        blob[HEADER_BYTES + size : HEADER_BYTES + 2 * size],
        blob[HEADER_BYTES + 2 * size :],
    )
    with pytest.raises(DamagedSealedFileError, match=r"chunk 0 .* fails authentication"):
        unseal(head + two + one + rest)


def test_chunks_cannot_move_to_another_file_sealed_with_the_same_passphrase() -> None:
    first, second = seal(bytes(2 * CHUNK)), seal(bytes(2 * CHUNK))
    with pytest.raises(DamagedSealedFileError, match="fails authentication"):
        unseal(first[:HEADER_BYTES] + second[HEADER_BYTES:])


def test_not_a_sealed_file() -> None:
    with pytest.raises(DamagedSealedFileError, match="not a Fogline backup"):
        SealedReader(io.BytesIO(b"PK\x03\x04 a zip file"), PASS)


def test_a_header_asking_for_an_unbounded_kdf_is_refused_before_deriving() -> None:
    blob = bytearray(seal(b"x"))
    struct.pack_into(">B", blob, 10, 40)  # log2(n) = 40: 128 TiB of scrypt memory
    with pytest.raises(DamagedSealedFileError, match="scrypt cost out of bounds"):
        SealedReader(io.BytesIO(bytes(blob)), PASS)


def test_a_newer_format_says_so() -> None:
    blob = bytearray(seal(b"x"))
    blob[8] = 2
    with pytest.raises(DamagedSealedFileError, match=r"format 2.*newer"):
        SealedReader(io.BytesIO(bytes(blob)), PASS)


def test_drain_authenticates_the_rest() -> None:
    blob = bytearray(seal(bytes(3 * CHUNK)))
    blob[-5] ^= 1
    reader = SealedReader(io.BytesIO(bytes(blob)), PASS)
    assert len(reader.read(10)) == 10
    with pytest.raises(DamagedSealedFileError):
        reader.drain()
