"""A small, strict, bounded reader for release archives (zstd + PAX tar).

Why not `tarfile`: it reads PAX, GNU long-name and sparse headers of any
claimed size into memory before the caller sees a member, so a few KiB of
compressed zeros claiming a 1 GiB PAX header exhaust a node's memory. Here
every read is bounded: metadata headers by MAX_PAX_BYTES, member data by
the caller, and all decompressed input by `max_read_bytes`.

Only what the builder writes is accepted: ustar/PAX headers (GNU magic
tolerated), PAX per-file records, and regular file, directory and symlink
entries. Everything else is refused by name, not skipped.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

import zstandard

from ._errors import UnsafeArchiveError
from ._members import ZSTD_MAX_WINDOW

BLOCK: Final = 512
_ZERO_BLOCK: Final = bytes(BLOCK)
# PAX records we use are a path, a link target and a size; 64 KiB is plenty.
MAX_PAX_BYTES: Final = 64 * 1024
_REFUSED_TYPES: Final = {
    b"1": "hard link",
    b"3": "character device",
    b"4": "block device",
    b"6": "FIFO",
    b"7": "contiguous file",
    b"g": "global PAX header",
    b"L": "GNU long-name header (write PAX instead)",
    b"K": "GNU long-link header (write PAX instead)",
    b"S": "GNU sparse file",
    b"M": "GNU multi-volume entry",
    b"V": "GNU volume label",
}
_UTF8_CHARSET: Final = "ISO-IR 10646 2000 UTF-8"

EntryKind = Literal["file", "dir", "symlink"]


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class TarEntry:
    """One member header; its data (files only) is read through the reader."""

    name: str
    kind: EntryKind
    size: int
    mode: int
    linkname: str


class TarReader:
    """Iterate the entries of a tar stream, never reading more than `max_read_bytes`."""

    def __init__(self, source: _Readable, label: str, *, max_read_bytes: int) -> None:
        self._source = source
        self._label = label
        self._limit = max_read_bytes
        self._read_total = 0
        self._remaining = 0  # data bytes of the current entry not yet read
        self._padding = 0
        self._done = False

    def next(self) -> TarEntry | None:
        """Return the next entry header, or None at the end-of-archive marker.

        Raises:
            UnsafeArchiveError: corrupt, truncated, refused entry type, or over the limit.
        """
        if self._done:
            return None
        self._skip(self._remaining + self._padding)
        self._remaining = self._padding = 0
        pax: dict[str, str] | None = None
        while True:
            block = self._read_exact(BLOCK)
            if block == _ZERO_BLOCK:
                # The first zero block ends the archive; whatever follows is
                # never decompressed (zstd bombs hiding after the end stay inert).
                self._done = True
                if pax is not None:
                    raise self._error("PAX header without a following entry")
                return None
            header = _parse_header(block, self._label)
            if header.type != b"x":
                break
            if pax is not None:
                raise self._error("two PAX headers in a row", header.name)
            if header.size > MAX_PAX_BYTES:
                raise self._error(f"PAX header of {header.size} bytes (limit {MAX_PAX_BYTES})")
            data = self._read_exact(header.size)
            self._skip(-header.size % BLOCK)
            pax = _parse_pax(data, self._label)
        return self._entry(header, pax or {})

    def read_data(self, max_chunk: int) -> bytes:
        """Read up to `max_chunk` bytes of the current entry's data; b"" when all read."""
        count = min(self._remaining, max_chunk)
        if count <= 0:
            return b""
        data = self._read_exact(count)
        self._remaining -= count
        return data

    def _entry(self, header: "_Header", pax: dict[str, str]) -> TarEntry:
        name = pax.get("path", header.name)
        linkname = pax.get("linkpath", header.linkname)
        size = header.size
        if "size" in pax:
            if not pax["size"].isdigit() or len(pax["size"]) > 20:
                raise self._error(f"bad PAX size {pax['size'][:40]!r}", name)
            size = int(pax["size"])
        kind: EntryKind
        if header.type in (b"0", b"\x00"):
            kind = "file"
        elif header.type == b"5":
            kind = "dir"
        elif header.type == b"2":
            kind = "symlink"
        else:
            what = _REFUSED_TYPES.get(header.type, f"unknown entry type {header.type!r}")
            raise self._error(f"{what} entries are not allowed", name)
        if kind == "dir" and name.endswith("/"):
            name = name[:-1]
        if kind != "file" and size != 0:
            # Readers disagree on whether such data follows; refuse the ambiguity.
            raise self._error(f"{kind} entry with {size} bytes of data", name)
        self._remaining = size
        self._padding = -size % BLOCK
        return TarEntry(name=name, kind=kind, size=size, mode=header.mode, linkname=linkname)

    def _skip(self, count: int) -> None:
        while count > 0:
            step = min(count, 1 << 16)
            self._read_exact(step)
            count -= step

    def _read_exact(self, count: int) -> bytes:
        if self._read_total + count > self._limit:
            raise self._error(f"more than {self._limit} bytes of decompressed data")
        chunks: list[bytes] = []
        got = 0
        while got < count:
            try:
                chunk = self._source.read(count - got)
            except zstandard.ZstdError as exc:
                raise self._error(f"corrupt zstd data ({exc})") from exc
            if not chunk:
                raise self._error("truncated archive")
            chunks.append(chunk)
            got += len(chunk)
        self._read_total += count
        return b"".join(chunks)

    def _error(self, reason: str, member: str | None = None) -> UnsafeArchiveError:
        return UnsafeArchiveError(self._label, reason, member)


@contextmanager
def open_release(path: Path, *, max_read_bytes: int) -> Iterator[TarReader]:
    """Open a release archive for streaming; the file is closed on exit.

    Raises:
        OSError: the archive file cannot be opened.
    """
    with path.open("rb") as raw:
        # Refuse hostile frame parameters up front rather than allocate for them.
        decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        # Across frames: multi-threaded zstd tools may split a stream in frames.
        with decompressor.stream_reader(
            raw, read_size=1 << 16, read_across_frames=True, closefd=False
        ) as stream:
            yield TarReader(stream, os.fspath(path), max_read_bytes=max_read_bytes)


@dataclass(frozen=True, slots=True)
class _Header:
    name: str
    mode: int
    size: int
    type: bytes
    linkname: str


def _parse_header(block: bytes, label: str) -> _Header:
    stored = _number(block[148:156], label, "checksum")
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b & 0x80)
    if stored not in (unsigned, signed):
        raise UnsafeArchiveError(label, "tar header checksum mismatch (corrupt or not a tar)")
    magic = block[257:265]
    if magic not in (b"ustar\x0000", b"ustar  \x00"):
        raise UnsafeArchiveError(label, "not a ustar/PAX tar header")
    name = _text(block[0:100], label)
    prefix = _text(block[345:500], label) if magic == b"ustar\x0000" else ""
    return _Header(
        name=f"{prefix}/{name}" if prefix else name,
        mode=_number(block[100:108], label, "mode"),
        size=_number(block[124:136], label, "size"),
        type=block[156:157],
        linkname=_text(block[157:257], label),
    )


def _number(field: bytes, label: str, what: str) -> int:
    if field[:1] == b"\x80":  # GNU base-256, used for sizes over 8 GiB
        return int.from_bytes(field[1:], "big")
    digits = field.split(b"\x00", 1)[0].strip(b" ")
    if not digits:
        return 0
    if digits.strip(b"01234567"):
        raise UnsafeArchiveError(label, f"bad {what} field {field!r} in a tar header")
    return int(digits, 8)


def _text(field: bytes, label: str) -> str:
    try:
        return field.split(b"\x00", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeArchiveError(label, "a name in a tar header is not UTF-8") from None


def _parse_pax(data: bytes, label: str) -> dict[str, str]:
    """Parse `<len> <key>=<value>\\n` records, refusing anything ambiguous."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 21)
        length_text = data[pos:space] if space > pos else b""
        if not length_text.isdigit():
            raise UnsafeArchiveError(label, "malformed PAX record length")
        end = pos + int(length_text)
        if end > len(data) or end <= space + 1 or data[end - 1 : end] != b"\n":
            raise UnsafeArchiveError(label, "malformed PAX record")
        key_bytes, equals, value_bytes = data[space + 1 : end - 1].partition(b"=")
        try:
            key, value = key_bytes.decode("utf-8"), value_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafeArchiveError(label, "PAX record is not UTF-8") from None
        if not equals or key in records:
            raise UnsafeArchiveError(label, f"malformed or repeated PAX record {key[:40]!r}")
        if key.startswith("GNU.sparse"):
            raise UnsafeArchiveError(label, "sparse files are not allowed")
        if key == "hdrcharset" and value != _UTF8_CHARSET:
            raise UnsafeArchiveError(label, "PAX names in a binary charset are not allowed")
        records[key] = value
        pos = end
    return records
