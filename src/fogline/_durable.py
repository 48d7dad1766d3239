"""Durable files: a power cut leaves the old file or the new one, never a torn one.

One way to do it, used by every package that keeps state on disk (the node's
journal and desired state, keys, certificates, signatures, archives, the
CLI's contexts): write a temporary file with a unique name in the same
directory, write all of it, fsync it, rename it over the target, fsync the
directory (the rename itself is only durable once the directory entry is on
disk), and remove the temporary file if anything fails on the way.

    write_atomic(path, data, mode=0o600)   replace a file
    write_new(path, data, mode=0o600)      create a file that must not exist yet
    atomic_output(path)                    replace a file, streaming into it
    publish(temp, path)                    fsync a finished file, rename it, fsync the dir
    fsync_dir(path)                        make a create, rename or unlink in `path` durable
    make_dirs(path)                        mkdir -p, each new directory's name made durable
    write_all(fd, data)                    os.write until every byte is written

Errors are the OS's own (OSError): callers translate them at their boundary.
"""

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

_CREATE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a create, rename or unlink inside the directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str | os.PathLike[str], *, mode: int = 0o777) -> None:
    """Create the directory `path` and its missing parents, durably.

    A new directory's name is an entry in its parent, durable only once the
    parent is fsynced: without that, a power cut after files were written
    (and fsynced) inside can take the whole directory away. `mode` is given
    to every directory made, masked by the umask like mkdir(2).

    Raises:
        FileExistsError: `path` or a parent exists and is not a directory.
        OSError: a parent is not writable, the disk is full, ...
    """
    missing: list[Path] = []
    current = Path(path)
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not directory.is_dir():
                raise
        # Also when another process made it: it may not have fsynced it.
        fsync_dir(directory.parent)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of `data` to `fd`: os.write may write fewer than asked
    (a signal, a full pipe, a quota), and a short write must not pass for a file."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _temp_path(path: Path) -> Path:
    # Unique, hidden and in the same directory: two writers never share a
    # temporary file, and the rename never crosses a file system.
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def _create_temp(path: Path, mode: int, group: int | None) -> tuple[int, Path]:
    """Open a new temporary file beside `path`: never an existing file, never a link."""
    temp = _temp_path(path)
    # Created with `mode` from the first byte (a key is never readable by
    # others, not even between create and chmod), masked by the umask like open(2).
    fd = os.open(temp, _CREATE_FLAGS, mode)
    try:
        if group is not None:
            os.fchown(fd, -1, group)
            os.fchmod(fd, mode)  # exactly `mode` for the group, whatever the umask
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    return fd, temp


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview,
    *,
    mode: int = 0o644,
    group: int | None = None,
    make_parents: bool = True,
) -> None:
    """Replace `path` with `data`, durably: readers see the old file or the new one.

    `mode` is applied like open(2), masked by the umask (0o600 for keys and
    tokens); with `group`, the file gets that group and exactly `mode` (for a
    file another user must read, such as a module's config), set before it
    takes its name.

    Raises:
        OSError: the directory is not writable, the disk is full, ...; the
            temporary file is gone and `path` is untouched.
    """
    target = Path(path)
    if make_parents:
        make_dirs(target.parent)
    fd, temp = _create_temp(target, mode, group)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_new(
    path: str | os.PathLike[str], data: bytes | bytearray | memoryview, *, mode: int = 0o644
) -> None:
    """Create `path` holding `data`, durably; never replace anything.

    The temporary file is linked to the final name: link(2) fails when the
    name exists, so this is an atomic create-if-absent, and the file appears
    complete or not at all.

    Raises:
        FileExistsError: `path` exists (or is a dangling link); nothing changed.
        OSError: the directory is not writable, the disk is full, ...
    """
    target = Path(path)
    fd, temp = _create_temp(target, mode, None)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temp, target, follow_symlinks=False)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file to stream into; on a clean exit it replaces `path` durably.

    On an exception nothing replaces `path` and the temporary file is removed.

    Raises:
        OSError: as write_atomic.
    """
    target = Path(path)
    fd, temp = _create_temp(target, mode, None)
    try:
        with os.fdopen(fd, "wb") as fh:  # buffered: write() writes all or raises
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def publish(temp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Give a finished file (a download, an upload) its final name, durably.

    The bytes are fsynced before the rename makes the name true, and the
    directory after it. On failure `temp` is left for the caller to resume
    or delete.

    Raises:
        OSError: the file is gone or the rename failed.
    """
    fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_dir(Path(path).parent)
