"""Build a reproducible release archive from a module directory.

Same directory contents -> same bytes, whoever builds it and whenever:
entries are sorted (the module file first), owners are root with no names,
mtimes are 0, modes are 0644/0755, and the zstd level and frame options
are fixed. Reproducible archives let anyone rebuild a release from source
and compare digests with the signed one.
"""

import errno
import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Literal, cast

import zstandard

from fogline._durable import atomic_output, write_atomic

from ._errors import ModuleSpecError, UnsafeArchiveError
from ._members import (
    DIR_MODE,
    FILE_MODE,
    LINK_MODE,
    ZSTD_LEVEL,
    canonical_mode,
    check_link_target,
    member_parts,
)
from ._sbom import (
    SBOM_FILE,
    HashedFile,
    SbomPackage,
    agent_dependencies,
    hash_file,
    is_manifest,
    recognise,
    render_sbom,
    sbom_path,
)
from ._semver import Version
from ._spec import MAX_MODULE_FILE_BYTES, MODULE_FILE, ModuleSpec, load_module_spec

_SPECIAL_KINDS: Final = {
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
}


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    """What `build_release` produced."""

    name: str
    version: Version
    digest: str  # sha256:<hex> of the archive file
    size: int  # bytes of the archive file
    path: Path
    sbom_path: Path | None = None  # the copy of the SBOM beside the archive


@dataclass(frozen=True, slots=True)
class _Source:
    parts: tuple[str, ...]
    kind: Literal["file", "dir", "symlink"]
    path: str
    link: str = ""
    data: bytes | None = None  # contents already read (the module file)


def build_release(src_dir: Path, out: Path) -> ReleaseInfo:
    """Pack `src_dir` (holding fogline-module.yaml) into the archive `out`.

    `out` is replaced atomically; it must not be inside `src_dir`. The
    archive's second entry is its CycloneDX SBOM (see `_sbom`), also written
    beside it as `out` + `.cdx.json`; a `fogline-sbom.cdx.json` in `src_dir`
    is ignored (an unpacked release rebuilds to the same bytes).

    Raises:
        ModuleSpecError: fogline-module.yaml is missing or invalid, or a
            kind 'agent' release has no fogline/__main__.py.
        UnsafeArchiveError: the directory holds something an archive may not
            (a device, FIFO or socket, a symlink leaving the directory, a
            non-UTF-8 name), the same things unpack refuses.
        OSError: reading the directory or writing `out` failed.
    """
    src, out = Path(src_dir), Path(out)
    module_file = src / MODULE_FILE
    # Validate and pack the very same bytes, read once.
    module_text = _read_module_file(module_file)
    spec = load_module_spec(module_text, name=os.fspath(module_file))
    real_src = os.path.realpath(src)
    real_out = os.path.realpath(out)
    if real_out.startswith(real_src + os.sep):
        raise UnsafeArchiveError(src, f"the output {out} must not be inside the module directory")
    sources = [_Source((MODULE_FILE,), "file", os.fspath(module_file), data=module_text)]
    sources += _collect(src, real_src)
    if spec.kind == "agent" and not (src / "fogline" / "__main__.py").is_file():
        # What the node's launcher runs: `python -m fogline` with this tree first on the path.
        raise ModuleSpecError(
            os.fspath(module_file),
            [("kind", "a kind 'agent' release holds the fogline package: fogline/__main__.py")],
        )

    sbom, hashes = _sbom_of(spec, sources)
    sources.insert(1, _Source((SBOM_FILE,), "file", SBOM_FILE, data=sbom))
    with atomic_output(out, mode=0o644) as fh:
        sink = _HashingSink(fh)
        _write_archive(sources, sink, hashes)
    beside = sbom_path(out)
    write_atomic(beside, sbom, mode=0o644, make_parents=False)
    return ReleaseInfo(
        name=spec.name,
        version=spec.version,
        digest="sha256:" + sink.sha256.hexdigest(),
        size=sink.size,
        path=out,
        sbom_path=beside,
    )


def _sbom_of(spec: ModuleSpec, sources: list[_Source]) -> tuple[bytes, dict[str, str]]:
    """The SBOM of the release, and each file's SHA-256 (hex) by its archive name.

    The files are hashed here, before the archive is written; writing checks
    each file against its hash, so the SBOM says what the archive holds even
    if a file changes during the build (the build then fails).
    """
    hashes: dict[str, str] = {}
    packages: list[SbomPackage] = []
    for source in sources:
        if source.kind != "file":
            continue
        name = "/".join(source.parts)
        if source.data is not None:
            hashes[name] = hashlib.sha256(source.data).hexdigest()
            continue
        hashes[name], data = hash_file(source.path, keep=is_manifest(source.parts))
        if data is not None:
            packages += recognise(name, data)
    if spec.kind == "agent":
        packages += agent_dependencies("fogline/__main__.py")
    files = [HashedFile(name, sha) for name, sha in hashes.items()]
    return render_sbom(spec, files, packages), hashes


def _write_archive(sources: list[_Source], sink: "_HashingSink", hashes: dict[str, str]) -> None:
    # Fixed frame options: no content size (unknown when streaming anyway),
    # a checksum so unpack detects corruption, single-threaded so the output
    # does not depend on the machine.
    compressor = zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, write_checksum=True, write_content_size=False, threads=0
    )
    with (
        compressor.stream_writer(cast(IO[bytes], sink), closefd=False) as zstd_out,
        tarfile.open(
            fileobj=zstd_out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8"
        ) as tar,
    ):
        for source in sources:
            info = tarfile.TarInfo("/".join(source.parts))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if source.kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, DIR_MODE
                tar.addfile(info)
            elif source.kind == "symlink":
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, LINK_MODE, source.link
                tar.addfile(info)
            elif source.data is not None:
                info.type, info.mode, info.size = tarfile.REGTYPE, FILE_MODE, len(source.data)
                tar.addfile(info, io.BytesIO(source.data))
            else:
                _add_file(tar, info, source, hashes["/".join(source.parts)])


def _add_file(tar: tarfile.TarFile, info: tarfile.TarInfo, source: _Source, sha256: str) -> None:
    # O_NOFOLLOW | O_NONBLOCK: if the path was swapped for a link or a FIFO
    # since the walk, fail (or fstat tells us) instead of following or hanging.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(source.path, flags)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeArchiveError(source.path, "changed into a non-regular file while building")
        info.type, info.size, info.mode = tarfile.REGTYPE, st.st_size, canonical_mode(st.st_mode)
        reader = _HashingReader(fh)
        tar.addfile(info, cast(IO[bytes], reader))
    if reader.sha256.hexdigest() != sha256:
        raise UnsafeArchiveError(source.path, "changed while the release was built: build again")


def _read_module_file(path: Path) -> bytes:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeArchiveError(
                path.parent, "must be a regular file, not a symlink", MODULE_FILE
            ) from None
        raise ModuleSpecError(
            os.fspath(path), [("", f"cannot read: {exc.strerror or exc}")]
        ) from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise UnsafeArchiveError(path.parent, "must be a regular file", MODULE_FILE)
        # One byte over the limit is enough for load_module_spec to refuse it.
        return fh.read(MAX_MODULE_FILE_BYTES + 1)


def _collect(src: Path, real_src: str) -> list[_Source]:
    """Every entry under `src` except the module file, without following links."""
    found: list[_Source] = []
    pending: list[tuple[str, tuple[str, ...]]] = [(os.fspath(src), ())]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as scan:
            for entry in scan:
                if not prefix and entry.name in (MODULE_FILE, SBOM_FILE):
                    continue  # already first in the archive; the SBOM is made anew
                source = _describe(entry, (*prefix, entry.name), real_src)
                found.append(source)
                if source.kind == "dir":
                    pending.append((entry.path, source.parts))
    # Sorting by components puts every directory before its contents and
    # does not depend on the order the file system lists entries in.
    found.sort(key=lambda s: s.parts)
    return found


def _describe(entry: "os.DirEntry[str]", parts: tuple[str, ...], real_src: str) -> _Source:
    name = "/".join(parts)
    try:
        member_parts(name)
    except ValueError as exc:
        raise UnsafeArchiveError(
            real_src, str(exc), name.encode(errors="replace").decode()
        ) from None
    mode = entry.stat(follow_symlinks=False).st_mode
    if stat.S_ISDIR(mode):
        return _Source(parts, "dir", entry.path)
    if stat.S_ISREG(mode):
        return _Source(parts, "file", entry.path)
    if stat.S_ISLNK(mode):
        target = os.readlink(entry.path)
        try:
            check_link_target(parts, target)
        except ValueError as exc:
            raise UnsafeArchiveError(real_src, str(exc), name) from None
        resolved = os.path.realpath(entry.path)
        if resolved != real_src and not resolved.startswith(real_src + os.sep):
            raise UnsafeArchiveError(real_src, "symlink resolves outside the directory", name)
        return _Source(parts, "symlink", entry.path, target)
    what = _SPECIAL_KINDS.get(stat.S_IFMT(mode), "special file")
    raise UnsafeArchiveError(real_src, f"a {what} cannot go into a release", name)


class _HashingReader:
    """A read-only file object that hashes what is read through it."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.sha256.update(data)
        return data


class _HashingSink:
    """A write-only file object that hashes and counts what passes through."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()
