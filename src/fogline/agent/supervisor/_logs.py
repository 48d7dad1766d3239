"""Bounded, rotating capture of module stdout/stderr, and readers for it.

Layout: `<logs_dir>/<module>/<stream>.log` is being written; `.log.1` is the
previous file, up to `.log.<keep-1>`. Each file holds at most `max_bytes`, so
one stream never uses more than `keep * max_bytes` of disk, however fast the
module prints: the supervisor, not the module, writes the files.
"""

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Literal

from ._spec import check_module_name

Stream = Literal["stdout", "stderr"]
STREAMS: Final[tuple[Stream, ...]] = ("stdout", "stderr")
# A tail is for a status report or a terminal; more than this is a mistake.
MAX_TAIL_BYTES: Final = 16 * 1024 * 1024
_READ_CHUNK: Final = 64 * 1024

_log = logging.getLogger("fogline.agent.supervisor")


def log_path(logs_dir: Path, module: str, stream: Stream) -> Path:
    """Where `module`'s `stream` is being written.

    Raises:
        ValueError: a bad module name or stream (the name becomes a directory).
    """
    check_module_name(module)
    if stream not in STREAMS:
        raise ValueError(f"stream: expected stdout or stderr, got {stream!r:.40}")
    return logs_dir / module / f"{stream}.log"


def _rotated(path: Path, index: int) -> Path:
    return path if index == 0 else path.with_name(f"{path.name}.{index}")


class RotatingLog:
    """An append-only log file that rotates by size and keeps `keep` files.

    Writes continue an existing file, so a restarted module's output follows
    its previous run's. A failing disk drops output (counted in `dropped_bytes`)
    rather than raising: the pipe must keep draining or the module would block.
    """

    def __init__(self, path: Path, *, max_bytes: int, keep: int) -> None:
        """Raises:
        ValueError: max_bytes or keep is not a positive int.
        OSError: the directory cannot be created.
        """
        for name, value in (("max_bytes", max_bytes), ("keep", keep)):
            if type(value) is not int or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self._path, self._max_bytes, self._keep = path, max_bytes, keep
        self.dropped_bytes = 0
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._fd: int | None = None
        self._size = 0

    def _open(self) -> int:
        if self._fd is None:
            # 0640: module output may hold data its operators should see and others not.
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _rotate(self) -> None:
        self.close()
        # Oldest first, so each rename lands on a name already moved away.
        for index in range(self._keep - 1, 0, -1):
            source = _rotated(self._path, index - 1)
            if source.exists():
                os.replace(source, _rotated(self._path, index))
        if self._keep == 1:
            self._path.unlink(missing_ok=True)

    def write(self, data: bytes) -> None:
        """Append `data`, rotating whenever the current file is full."""
        view = memoryview(data)
        while view:
            try:
                fd = self._open()
                if self._size >= self._max_bytes:
                    self._rotate()
                    continue
                room = self._max_bytes - self._size
                written = os.write(fd, view[:room])
            except OSError as exc:
                if self.dropped_bytes == 0:
                    _log.warning("cannot write %s: %s; dropping output", self._path, exc)
                self.dropped_bytes += len(view)
                self.close()
                return
            self._size += written
            view = view[written:]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_tail(paths: list[Path], max_bytes: int, first_limit: int | None = None) -> bytes:
    """The last max_bytes of the concatenation of `paths` (newest first)."""
    parts: list[bytes] = []
    wanted = max_bytes
    for index, path in enumerate(paths):
        if wanted <= 0:
            break
        try:
            with path.open("rb") as file:
                size = os.fstat(file.fileno()).st_size
                if index == 0 and first_limit is not None:
                    size = min(size, first_limit)
                start = max(0, size - wanted)
                file.seek(start)
                chunk = file.read(size - start)
        except FileNotFoundError:  # rotated away meanwhile, or never written
            continue
        parts.append(chunk)
        wanted -= len(chunk)
    return b"".join(reversed(parts))


def _all_files(path: Path) -> list[Path]:
    files = [path]
    index = 1
    while (candidate := _rotated(path, index)).exists():
        files.append(candidate)
        index += 1
    return files


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_ino, stat.st_dev


def _newer_file(path: Path, mine: os.stat_result) -> tuple[Path, tuple[int, int]] | None:
    """The file written right after ours, or None while ours is still current.

    Ours may have been rotated several times while the reader slept; the
    next one to read is the file one step newer, not the current one. When
    ours is gone altogether, the oldest file left is the next best.
    """
    chain: list[tuple[Path, tuple[int, int]]] = []  # newest first
    for candidate in _all_files(path):
        try:
            chain.append((candidate, _identity(os.stat(candidate))))
        except FileNotFoundError:
            continue
    identities = [identity for _, identity in chain]
    if _identity(mine) in identities:
        index = identities.index(_identity(mine))
        return None if index == 0 else chain[index - 1]
    return chain[-1] if chain else (path, (-1, -1))


def _open_same(path: Path, identity: tuple[int, int]) -> BinaryIO | None:
    """Open `path` if it is still the file we looked at; None when it moved meanwhile."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return None
    if identity != (-1, -1) and _identity(os.fstat(file.fileno())) != identity:
        file.close()
        return None  # rotated again: the caller looks afresh
    return file


def _check_max_bytes(max_bytes: int) -> None:
    if type(max_bytes) is not int or not 0 <= max_bytes <= MAX_TAIL_BYTES:
        raise ValueError(f"max_bytes: expected 0-{MAX_TAIL_BYTES}, got {max_bytes!r}")


def read_log_tail(logs_dir: Path, module: str, stream: Stream, max_bytes: int) -> bytes:
    """The last `max_bytes` a module wrote to `stream`, across rotated files.

    Returns b"" when the module never wrote anything.

    Raises:
        ValueError: a bad module name, stream, or max_bytes (0 to 16 MiB).
    """
    _check_max_bytes(max_bytes)
    return _read_tail(_all_files(log_path(logs_dir, module, stream)), max_bytes)


@dataclass(frozen=True, slots=True)
class LogPosition:
    """How far a `LogFollower` read: which file (inode, device) and where in it.

    `before` holds the last bytes read (at most 64): inode numbers are
    reused once a file is deleted, so a new file under our old number is
    told apart by its content at that place.
    """

    inode: int
    device: int
    offset: int
    before: bytes


_FINGERPRINT_BYTES: Final = 64
# One read() crosses at most this many rotated or truncated files before it
# answers "nothing yet": a module rotating faster than we read cannot spin us.
_MAX_SWITCHES: Final = 8


def _fingerprint(file: BinaryIO, offset: int) -> bytes:
    start = max(0, offset - _FINGERPRINT_BYTES)
    return os.pread(file.fileno(), offset - start, start)


def _reopen(path: Path, position: LogPosition) -> BinaryIO | None:
    """The file `position` was read from, at its offset; None when it is gone,
    shorter (truncated) or another file under the same inode number."""
    for candidate in _all_files(path):  # it may have been rotated since
        try:
            file = candidate.open("rb")
        except FileNotFoundError:
            continue
        stat = os.fstat(file.fileno())
        if (stat.st_ino, stat.st_dev) != (position.inode, position.device):
            file.close()
            continue
        if stat.st_size >= position.offset and (
            _fingerprint(file, position.offset) == position.before
        ):
            file.seek(position.offset)
            return file
        file.close()
        return None
    return None


class LogFollower:
    """Reads a module's stream like `tail -F`, without waiting: `read()` gives
    what is new, b"" when nothing is; `position()` says how far it got, so a
    later follower can go on from there (`resume`).

    Starts with the last `tail_bytes` of the stream, or, given `resume`, right
    after what an earlier follower read, if that file is still there, whole
    (not truncated) and the same file; else as without `resume`. Follows
    rotation: the rest of the rotated file is read before the new one.
    """

    def __init__(
        self,
        logs_dir: Path,
        module: str,
        stream: Stream,
        *,
        tail_bytes: int = 4096,
        resume: LogPosition | None = None,
    ) -> None:
        """Raises:
        ValueError: a bad module name, stream, or tail_bytes.
        """
        _check_max_bytes(tail_bytes)
        self._path = log_path(logs_dir, module, stream)
        self._tail = b""
        self._file: BinaryIO | None = None
        if resume is not None:
            self._file = _reopen(self._path, resume)
            if self._file is not None:
                return
        try:
            self._file = self._path.open("rb")
            offset = os.fstat(self._file.fileno()).st_size
        except FileNotFoundError:
            offset = 0
        first_limit = offset if self._file else 0
        self._tail = _read_tail(_all_files(self._path), tail_bytes, first_limit=first_limit)
        if self._file is not None:
            self._file.seek(offset)

    def read(self) -> bytes:
        """The next bytes of the stream (up to 64 KiB), or b"" when there are none yet."""
        if self._tail:
            tail, self._tail = self._tail, b""
            return tail
        for _ in range(_MAX_SWITCHES):
            if self._file is None:
                try:
                    self._file = self._path.open("rb")
                except FileNotFoundError:
                    return b""
            chunk = self._file.read(_READ_CHUNK)
            if chunk:
                return chunk
            # At the end of our file: was it rotated (maybe several times) or truncated?
            newer = _newer_file(self._path, os.fstat(self._file.fileno()))
            if newer is not None:
                opened = _open_same(*newer)
                if opened is None:  # it moved meanwhile: keep our place, look again later
                    return b""
                self._file.close()
                self._file = opened
                continue
            if os.fstat(self._file.fileno()).st_size < self._file.tell():  # truncated by hand
                self._file.seek(0)
                continue
            return b""
        return b""

    def position(self) -> LogPosition | None:
        """Where the bytes read() returned end; None before the stream has a file."""
        if self._file is None:
            return None
        stat = os.fstat(self._file.fileno())
        offset = self._file.tell()
        before = _fingerprint(self._file, offset)
        return LogPosition(stat.st_ino, stat.st_dev, offset, before)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def follow_log(
    logs_dir: Path,
    module: str,
    stream: Stream,
    *,
    tail_bytes: int = 4096,
    poll_s: float = 0.25,
) -> AsyncIterator[bytes]:
    """Yield the last `tail_bytes` of a module's stream, then whatever it writes next.

    Follows rotation (like `tail -F`): the rest of the rotated file is read
    before the new one. Runs until the caller stops iterating or is cancelled.

    Raises:
        ValueError: a bad module name, stream, tail_bytes, or poll_s.
    """
    if not poll_s > 0:
        raise ValueError(f"poll_s: expected a positive number, got {poll_s!r}")
    follower = LogFollower(logs_dir, module, stream, tail_bytes=tail_bytes)
    try:
        while True:
            chunk = follower.read()
            if chunk:
                yield chunk
            else:
                await asyncio.sleep(poll_s)
    finally:
        follower.close()
