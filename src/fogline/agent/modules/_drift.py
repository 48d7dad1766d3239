"""Drift: what runs on the node no longer matches its desired state.

Three kinds are checked against the desired state:
- files: an installed module's files differ from the release (a digest of
  every file is recorded when the release is committed);
- process: a module that should run is not running;
- config: a module's config file differs from its desired config.

With `drift: correct` the node repairs what it finds: it reinstalls the
release's files from the hub, rewrites the config, restarts the module.
With `drift: report` it only reports.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from fogline._durable import write_atomic
from fogline.artifact import walk_tree
from fogline.protocol import DriftKind

# 2: every symlink is recorded (os.walk left out links to directories) and
# the walk is iterative. A baseline of another format is recorded again
# rather than compared, so an upgrade reports no drift of its own.
BASELINE_FORMAT: Final = 2
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Drift:
    module: str
    kind: DriftKind
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"module": self.module, "kind": self.kind, "detail": self.detail}


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every regular file under `root`, by relative path (symlinks
    by target, anything else by its kind).

    The walk is iterative and reads each file relative to its directory: a
    module may make its install tree any depth (a recursive walk died of
    RecursionError at a few thousand levels, every drift interval), and
    never opens a FIFO or follows a link.

    Raises:
        OSError: the tree cannot be read.
    """
    digests: dict[str, str] = {}
    for entry in walk_tree(root):
        relative = "/".join(entry.parts)
        if entry.kind == "symlink":
            digests[relative] = "link:" + os.readlink(entry.name, dir_fd=entry.dir_fd)
        elif entry.kind == "file":
            digests[relative] = _file_digest(entry.name, entry.dir_fd)
        elif entry.kind == "other":
            digests[relative] = "special"
    return digests


def _file_digest(name: str, dir_fd: int) -> str:
    digest = hashlib.sha256()
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FileBaselines:
    """The file digests of each committed release, kept in DATA/state/drift/."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, module: str) -> Path:
        return self.directory / f"{module}.json"

    def record(self, module: str, release_digest: str, install_dir: Path) -> None:
        body = {
            "format": BASELINE_FORMAT,
            "release": release_digest,
            "files": file_digests(install_dir),
        }
        write_atomic(self._path(module), orjson.dumps(body), mode=0o600)

    def check(self, module: str, release_digest: str, install_dir: Path) -> str | None:
        """What differs, or None. Records a baseline first if there is none for
        this release (the files were just installed and verified).

        Raises:
            OSError: the install directory cannot be read.
        """
        try:
            baseline = orjson.loads(self._path(module).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            baseline = None
        if (
            not isinstance(baseline, dict)
            or baseline.get("format") != BASELINE_FORMAT
            or baseline.get("release") != release_digest
        ):
            self.record(module, release_digest, install_dir)
            return None
        expected: dict[str, str] = baseline["files"]
        actual = file_digests(install_dir)
        changed = sorted(p for p in expected.keys() & actual.keys() if expected[p] != actual[p])
        missing = sorted(expected.keys() - actual.keys())
        extra = sorted(actual.keys() - expected.keys())
        parts = [
            f"{label}: {', '.join(names[:10])}"
            for label, names in (("changed", changed), ("missing", missing), ("extra", extra))
            if names
        ]
        return "; ".join(parts) or None
