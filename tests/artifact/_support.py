"""Helpers shared by the artifact tests: example modules and hand-made archives."""

import io
import tarfile
from collections.abc import Iterable
from pathlib import Path

import zstandard

EXAMPLE_SPEC = """\
name: thermo-filter
version: 1.2.0
kind: service            # service | model | config  (model/config bundles have no command)
command: [python3, server.py]
env: {PORT: "8081"}
health: {http: "http://127.0.0.1:8081/healthz", timeout: 10s, interval: 1s}
startGrace: 5s
restart: {policy: always, backoff: {initial: 1s, max: 60s}}    # always | on-failure | never
stopGrace: 10s
resources: {memoryMB: 256, cpuSeconds: null, openFiles: 1024}
architectures: [x86_64, aarch64]
"""

SMALL_SPEC = b"name: demo\nversion: 1.0.0\nkind: config\narchitectures: [any]\n"


def make_module(root: Path, spec: str = EXAMPLE_SPEC) -> Path:
    """A module directory with a spec, a script, a nested tree and a relative symlink."""
    root.mkdir(parents=True)
    (root / "fogline-module.yaml").write_text(spec)
    (root / "server.py").write_text("print('serving')\n")
    (root / "bin").mkdir()
    (root / "bin" / "run.sh").write_text("#!/bin/sh\nexec python3 server.py\n")
    (root / "bin" / "run.sh").chmod(0o700)
    (root / "data" / "empty").mkdir(parents=True)
    (root / "data" / "model.onnx").write_bytes(bytes(range(256)) * 64)
    (root / "current").symlink_to("bin/run.sh")
    return root


class Zeros(io.RawIOBase):
    """`size` zero bytes, produced on demand (a bomb without holding it in memory)."""

    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self._left)
        buffer[:count] = bytes(count)
        self._left -= count
        return count


def member(
    name: str,
    data: bytes = b"",
    *,
    type: bytes = tarfile.REGTYPE,
    linkname: str = "",
    mode: int = 0o644,
    size: int | None = None,
) -> tuple[tarfile.TarInfo, io.RawIOBase | io.BytesIO | None]:
    """A tar member built by hand, as an attacker would."""
    info = tarfile.TarInfo(name)
    info.type = type
    info.linkname = linkname
    info.mode = mode
    if type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data) if size is None else size
        return info, io.BytesIO(data)
    return info, None


def spec_member(spec: bytes = SMALL_SPEC) -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    info, body = member("fogline-module.yaml", spec)
    assert isinstance(body, io.BytesIO)
    return info, body


def write_archive(
    path: Path,
    members: Iterable[tuple[tarfile.TarInfo, io.RawIOBase | io.BytesIO | None]],
    *,
    fmt: int = tarfile.PAX_FORMAT,
    level: int = 3,
) -> Path:
    """Write `members` with tarfile, through zstd, exactly as given (no checks)."""
    with (
        path.open("wb") as raw,
        zstandard.ZstdCompressor(level=level).stream_writer(raw, closefd=False) as out,
        tarfile.open(fileobj=out, mode="w|", format=fmt) as tar,
    ):
        for info, body in members:
            tar.addfile(info, body)
    return path


def tree(root: Path) -> dict[str, str]:
    """Every path under `root` -> what it is (link target, 'dir', or mode and content)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + str(path.readlink())
        elif path.is_dir():
            found[rel] = "dir"
        else:
            found[rel] = f"{oct(path.stat().st_mode & 0o777)} {path.read_bytes()[:40]!r}"
    return found
