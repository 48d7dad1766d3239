"""Unpack a release archive into a new directory, refusing anything hostile.

The release is written into a private temporary sibling of `dest` and
renamed into place only once complete and fsynced, so a crash or a refusal
at any point leaves no `dest` at all: the updater sees "not installed", never
"half installed". Every member is validated here, by us: path shape,
duplicates, writes through links, link targets, entry types, entry count and
the bytes actually written.

`check_release` runs the very same checks without writing file contents
(the hub refuses a hostile archive at push with them), so the hub and the
node cannot disagree on what an acceptable archive is.
"""

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from fogline._durable import fsync_dir, write_all

from ._errors import UnsafeArchiveError
from ._members import DIR_MODE, FILE_MODE, canonical_mode, check_link_target, member_parts
from ._spec import MAX_MODULE_FILE_BYTES, MODULE_FILE, ModuleSpec, load_module_spec
from ._tarread import BLOCK, MAX_PAX_BYTES, TarEntry, TarReader, open_release
from ._tree import delete_tree

_CHUNK: Final = 1 << 20
# Headers and padding an entry may add to the decompressed stream on top of
# its data; with max_files this bounds the whole decompression.
_ENTRY_OVERHEAD: Final = MAX_PAX_BYTES + 4 * BLOCK
TEMP_PREFIX_FORMAT: Final = ".{name}.unpack-"
CHECK_PREFIX: Final = ".check.unpack-"


def unpack_release(archive: Path, dest: Path, *, max_bytes: int, max_files: int) -> ModuleSpec:
    """Unpack `archive` into `dest` (which must not exist) and return its module spec.

    `max_bytes` bounds the file bytes actually written, `max_files` the
    entries created (files, directories, symlinks, implied parents). Verify
    the archive's signature before calling this: unpacking is safe against
    hostile archives, but it does not make an unsigned release trusted.

    Raises:
        UnsafeArchiveError: a hostile, malformed or oversized archive; nothing is left behind.
        ModuleSpecError: the archive's fogline-module.yaml is invalid.
        FileExistsError: `dest` already exists.
        OSError: the archive cannot be read or the disk cannot be written.
    """
    _check_limits(max_bytes, max_files)
    archive, dest = Path(archive), Path(dest)
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, "unpack destination already exists", os.fspath(dest))
    # A crash (power cut) mid-unpack leaves this directory behind, never
    # `dest`; find_unpack_leftovers() lists such directories for a sweep.
    temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX_FORMAT.format(name=dest.name), dir=dest.parent))
    try:
        tree = _Tree(temp, os.fspath(archive), max_files=max_files, max_bytes=max_bytes)
        spec = _extract(archive, tree)
        tree.sync()
        os.chmod(temp, DIR_MODE)
        if os.path.lexists(dest):  # appeared while we unpacked
            raise FileExistsError(
                errno.EEXIST, "unpack destination already exists", os.fspath(dest)
            )
        os.rename(temp, dest)
    except BaseException:
        _discard(temp)
        raise
    fsync_dir(dest.parent)
    return spec


def check_release(
    archive: Path, scratch_dir: Path, *, max_bytes: int, max_files: int, max_seconds: float
) -> ModuleSpec:
    """Run every check `unpack_release` makes, without keeping anything.

    Directories and symlinks are made in a temporary directory under
    `scratch_dir`, so links resolve on disk exactly as on a node; files are
    not made: their bytes are decompressed and counted against `max_bytes`,
    never written. The check costs at most `max_files` inodes, no disk
    space, and stops after `max_seconds`. The temporary directory is always
    deleted.

    Raises:
        UnsafeArchiveError: what unpack_release would refuse, or too slow to check.
        ModuleSpecError: the archive's fogline-module.yaml is invalid.
        OSError: the archive cannot be read or `scratch_dir` cannot be written.
    """
    _check_limits(max_bytes, max_files)
    archive = Path(archive)
    temp = Path(tempfile.mkdtemp(prefix=CHECK_PREFIX, dir=scratch_dir))
    try:
        tree = _Tree(
            temp,
            os.fspath(archive),
            max_files=max_files,
            max_bytes=max_bytes,
            write_data=False,
            deadline=(time.monotonic() + max_seconds, max_seconds),
        )
        return _extract(archive, tree)
    finally:
        _discard(temp)


def _check_limits(max_bytes: int, max_files: int) -> None:
    if max_bytes < 0 or max_files < 1:
        raise ValueError(f"need max_bytes >= 0 and max_files >= 1, got {max_bytes}, {max_files}")


def _extract(archive: Path, tree: "_Tree") -> ModuleSpec:
    read_limit = tree.max_bytes + (tree.max_files + 2) * _ENTRY_OVERHEAD
    with open_release(archive, max_read_bytes=read_limit) as reader:
        spec = tree.extract(reader)
    tree.check_links_resolve_inside()
    return spec


def _discard(temp: Path) -> None:
    # Iterative and never following symlinks: hostile links cannot steer it
    # and no depth can make it recurse. A failure leaves a leftover that
    # find_unpack_leftovers() reports; it must not hide the real error.
    with contextlib.suppress(OSError):
        delete_tree(temp)


def read_module_spec_from_archive(archive: Path) -> ModuleSpec:
    """Read only the archive's first entry, `fogline-module.yaml`, and parse it.

    Raises:
        UnsafeArchiveError: the archive is malformed or does not start with the module file.
        ModuleSpecError: the module file is invalid.
        OSError: the archive cannot be read.
    """
    archive = Path(archive)
    with open_release(archive, max_read_bytes=MAX_MODULE_FILE_BYTES + 2 * _ENTRY_OVERHEAD) as r:
        return _read_module_file(r, os.fspath(archive))[0]


def _read_module_file(reader: TarReader, label: str) -> tuple[ModuleSpec, bytes]:
    entry = reader.next()
    if entry is None or entry.name != MODULE_FILE or entry.kind != "file":
        found = "nothing" if entry is None else f"{entry.kind} {entry.name[:100]!r}"
        raise UnsafeArchiveError(
            label, f"not a Fogline release: the first entry must be file {MODULE_FILE}, got {found}"
        )
    if entry.size > MAX_MODULE_FILE_BYTES:
        raise UnsafeArchiveError(
            label, f"larger than {MAX_MODULE_FILE_BYTES} bytes ({entry.size})", MODULE_FILE
        )
    data = reader.read_data(entry.size)
    return load_module_spec(data, name=f"{label}:{MODULE_FILE}"), data


class _Tree:
    """The entries created so far under the temporary root, by relative path."""

    def __init__(
        self,
        root: Path,
        label: str,
        *,
        max_files: int,
        max_bytes: int,
        write_data: bool = True,
        deadline: tuple[float, float] | None = None,
    ) -> None:
        self._root = root
        self._label = label
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._write_data = write_data
        self._deadline = deadline  # (monotonic time, the seconds it stands for)
        self._written = 0
        # Relative path -> kind. Only directories listed here may be walked
        # into: the temp root is ours and fresh, so nothing else exists.
        self._kinds: dict[tuple[str, ...], str] = {}
        self._explicit_dirs: set[tuple[str, ...]] = set()
        self._links: list[tuple[str, ...]] = []

    def extract(self, reader: TarReader) -> ModuleSpec:
        spec, data = _read_module_file(reader, self._label)
        self._add_file((MODULE_FILE,), FILE_MODE, [data])
        while (entry := reader.next()) is not None:
            self._check_time(entry.name)
            self._add(entry, reader)
        return spec

    def _check_time(self, name: str) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline[0]:
            raise self._refuse(f"checking took longer than {self._deadline[1]:g} s", name)

    def _add(self, entry: TarEntry, reader: TarReader) -> None:
        try:
            parts = member_parts(entry.name)
        except ValueError as exc:
            raise self._refuse(str(exc), entry.name) from None
        if entry.kind == "dir" and self._kinds.get(parts) == "dir":
            if parts in self._explicit_dirs:
                raise self._refuse("duplicate entry", entry.name)
            self._explicit_dirs.add(parts)  # made earlier as an implied parent
            return
        if parts in self._kinds:
            raise self._refuse("duplicate entry", entry.name)
        self._make_parents(parts, entry.name)
        if entry.kind == "dir":
            self._count(parts, "dir", entry.name)
            self._explicit_dirs.add(parts)
            self._mkdir(parts)
        elif entry.kind == "symlink":
            try:
                check_link_target(parts, entry.linkname)
            except ValueError as exc:
                raise self._refuse(str(exc), entry.name) from None
            self._count(parts, "symlink", entry.name)
            os.symlink(entry.linkname, self._path(parts))
            self._links.append(parts)
        else:
            if self._written + entry.size > self.max_bytes:
                raise self._refuse(
                    f"unpacking would write more than {self.max_bytes} bytes", entry.name
                )
            self._add_file(parts, entry.mode, _chunks(reader))

    def _add_file(self, parts: tuple[str, ...], mode: int, chunks: Iterable[bytes]) -> None:
        name = "/".join(parts)
        self._count(parts, "file", name)
        if not self._write_data:
            # A check makes no file at all: only directories and links shape
            # where a link resolves (realpath treats a missing component and
            # a regular file alike), and creating 100,000 files costs minutes.
            for chunk in chunks:
                self._count_bytes(len(chunk), name)
            return
        # O_EXCL + O_NOFOLLOW: never open an existing path or follow a link,
        # whatever the checks above missed.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self._path(parts), flags, 0o600)
        try:
            for chunk in chunks:
                self._count_bytes(len(chunk), name)
                write_all(fd, chunk)
            os.fchmod(fd, canonical_mode(mode))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _count_bytes(self, size: int, name: str) -> None:
        # Count what is written (or would be), not what the header claimed.
        self._written += size
        if self._written > self.max_bytes:
            raise self._refuse(f"unpacking would write more than {self.max_bytes} bytes", name)
        self._check_time(name)

    def _make_parents(self, parts: tuple[str, ...], name: str) -> None:
        for depth in range(1, len(parts)):
            parent = parts[:depth]
            kind = self._kinds.get(parent)
            if kind is None:
                self._count(parent, "dir", name)
                self._mkdir(parent)
            elif kind != "dir":
                # e.g. `lib -> /etc` then `lib/passwd`: never write through a link.
                raise self._refuse(f"path goes through a {kind} entry", name)

    def _mkdir(self, parts: tuple[str, ...]) -> None:
        path = self._path(parts)
        os.mkdir(path, DIR_MODE)
        os.chmod(path, DIR_MODE)  # exact, whatever the umask

    def _count(self, parts: tuple[str, ...], kind: str, name: str) -> None:
        if len(self._kinds) >= self.max_files:
            raise self._refuse(f"more than {self.max_files} entries", name)
        self._kinds[parts] = kind

    def check_links_resolve_inside(self) -> None:
        """Resolve every symlink on disk now that the whole tree exists."""
        # Each target passed the textual check, but links compose: `a -> .`
        # then `b -> a/..` each look inside, yet `b` resolves to the parent.
        root = os.path.realpath(self._root)
        for parts in self._links:
            resolved = os.path.realpath(self._path(parts))
            if resolved != root and not resolved.startswith(root + os.sep):
                raise self._refuse("symlink resolves outside the release", "/".join(parts))

    def sync(self) -> None:
        """fsync every directory, so the rename publishes durable contents."""
        dirs = [parts for parts, kind in self._kinds.items() if kind == "dir"]
        for parts in [*dirs, ()]:
            fsync_dir(self._path(parts))

    def _path(self, parts: tuple[str, ...]) -> str:
        return os.path.join(self._root, *parts)

    def _refuse(self, reason: str, member: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(self._label, reason, member)


def _chunks(reader: TarReader) -> Iterable[bytes]:
    while chunk := reader.read_data(_CHUNK):
        yield chunk
