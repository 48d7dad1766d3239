"""Walk and delete directory trees whatever their depth: iteratively, one
directory descriptor open at a time, every name relative to its parent.

Why not `shutil.rmtree`, `os.walk` or `Path.rglob`: on Python 3.11 they
recurse once per level, so a tree a few thousand directories deep (an
archive's, or one a module process builds in its own install directory)
raises RecursionError, which `ignore_errors` does not catch; rmtree's safe
variant also holds one descriptor per level, and any full path of such a
tree is longer than PATH_MAX. Here the depth costs a list of names, not
stack frames or descriptors, and a path is never longer than one name.

Symlinks are never followed: a link is an entry like a file (deleted, or
reported as a link). Climbing back up goes through `..` and checks that it
is the directory we came from (device and inode), so a tree moved while it
is walked stops the walk with an OSError instead of steering it elsewhere.
"""

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
EntryKind = Literal["file", "dir", "symlink", "other"]


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One entry met by `walk_tree`.

    `parts` is the path below the root. `dir_fd` is the open directory the
    entry is in, valid only until the walk moves on: open the entry with
    `os.open(entry.name, flags, dir_fd=entry.dir_fd)`.
    """

    parts: tuple[str, ...]
    kind: EntryKind
    dir_fd: int

    @property
    def name(self) -> str:
        return self.parts[-1]


@dataclass(slots=True)
class _Level:
    name: str
    identity: tuple[int, int]  # (st_dev, st_ino) of this directory
    pending: list[str] = field(default_factory=list)  # subdirectories still to visit


class _Cursor:
    """The one open directory of a walk and the levels above it (names only)."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.levels = [_Level(name, _identity(fd))]

    def enter(self, name: str) -> bool:
        """Move into subdirectory `name`; False when it is gone or no longer a directory."""
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # replaced by a symlink: never followed
                return False
            raise
        os.close(self.fd)
        self.fd = child
        self.levels.append(_Level(name, _identity(child)))
        return True

    def climb(self) -> _Level:
        """Move up to the parent, checked to be the directory we came from;
        returns the level left."""
        parent = os.open("..", _DIR_FLAGS, dir_fd=self.fd)
        os.close(self.fd)
        self.fd = parent
        left = self.levels.pop()
        if _identity(parent) != self.levels[-1].identity:
            raise OSError(errno.ESTALE, "directory tree moved while it was walked")
        return left

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def walk_tree(root: Path) -> Iterator[TreeEntry]:
    """Every entry below `root` (not `root` itself), each directory before its contents.

    Directories are entered, never symlinks. Entries of one directory come
    in name order, so the walk is deterministic.

    Raises:
        OSError: `root` is not a directory, a directory cannot be read, or
            the tree was moved while it was walked.
    """
    cursor = _Cursor(os.open(root, _DIR_FLAGS), "")
    try:
        while True:
            level = cursor.levels[-1]
            prefix = tuple(lv.name for lv in cursor.levels[1:])
            for name, kind in _list(cursor.fd):
                yield TreeEntry((*prefix, name), kind, cursor.fd)
                if kind == "dir":
                    level.pending.append(name)
            level.pending.reverse()  # pop() then visits subdirectories in name order
            if not _next_pending(cursor):
                return
    finally:
        cursor.close()


def _next_pending(cursor: _Cursor) -> bool:
    """Enter the next directory still to visit, climbing as levels run out;
    False when the whole tree is done."""
    while True:
        level = cursor.levels[-1]
        while level.pending:
            if cursor.enter(level.pending.pop()):
                return True
        if len(cursor.levels) == 1:
            return False
        cursor.climb()


def delete_tree(path: Path) -> None:
    """Delete `path` and everything below it; a missing `path` is not an error.

    A symlink or file at `path` is unlinked (a link's target is untouched).

    Raises:
        OSError: something cannot be deleted, or the tree was moved while
            being deleted (whatever was already deleted stays deleted).
    """
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        path.unlink(missing_ok=True)
        return
    parent_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        cursor = _Cursor(os.open(path.name, _DIR_FLAGS, dir_fd=parent_fd), path.name)
        try:
            root = cursor.levels[0]
            root.pending = _unlink_all_but_dirs(cursor.fd)
            while True:
                level = cursor.levels[-1]
                if level.pending:
                    name = level.pending.pop()
                    if cursor.enter(name):
                        cursor.levels[-1].pending = _unlink_all_but_dirs(cursor.fd)
                    else:  # replaced by a link or a file since the listing
                        _unlink_quietly(name, cursor.fd)
                    continue
                if len(cursor.levels) == 1:
                    break
                left = cursor.climb()
                os.rmdir(left.name, dir_fd=cursor.fd)
        finally:
            cursor.close()
        if _identity_at(parent_fd, path.name) != root.identity:
            raise OSError(errno.ESTALE, "directory replaced while it was deleted", str(path))
        os.rmdir(path.name, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)


def _list(fd: int) -> list[tuple[str, EntryKind]]:
    """The entries of the directory `fd`, by name, with what each is (links not followed)."""
    found: list[tuple[str, EntryKind]] = []
    # scandir on a descriptor duplicates nothing we must close: it dups internally.
    with os.scandir(fd) as scan:
        for entry in scan:
            found.append((entry.name, _kind(entry)))
    found.sort()
    return found


def _unlink_all_but_dirs(fd: int) -> list[str]:
    """Unlink every non-directory in `fd`; return the subdirectories' names."""
    subdirs = []
    for name, kind in _list(fd):
        if kind == "dir":
            subdirs.append(name)
        else:
            _unlink_quietly(name, fd)
    return subdirs


def _unlink_quietly(name: str, dir_fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _kind(entry: "os.DirEntry[str]") -> EntryKind:
    if entry.is_symlink():
        return "symlink"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    if entry.is_file(follow_symlinks=False):
        return "file"
    return "other"


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _identity_at(dir_fd: int, name: str) -> tuple[int, int]:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    return st.st_dev, st.st_ino


def find_unpack_leftovers(directory: Path) -> list[Path]:
    """The temporary directories crashed unpacks left in `directory`, for removal.

    Call it only while no unpack into `directory` is running (at agent start).
    Here, not beside `unpack_release`: the agent sweeps at every start and
    must not import the unpacking code for it (see fogline/_lazy.py).
    """
    found = []
    for entry in os.scandir(directory):
        if (
            entry.name.startswith(".")
            and ".unpack-" in entry.name
            and entry.is_dir(follow_symlinks=False)
        ):
            found.append(Path(entry.path))
    return sorted(found)
