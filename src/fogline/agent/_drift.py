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

import orjson

from ._files import write_atomic


@dataclass(frozen=True, slots=True)
class Drift:
    module: str
    kind: str  # files | process | config
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"module": self.module, "kind": self.kind, "detail": self.detail}


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every regular file under `root`, by relative path (symlinks by target)."""
    digests: dict[str, str] = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for filename in filenames:
            path = Path(dirpath) / filename
            relative = str(path.relative_to(root))
            if path.is_symlink():
                digests[relative] = "link:" + os.readlink(path)
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            digests[relative] = digest.hexdigest()
    return digests


class FileBaselines:
    """The file digests of each committed release, kept in DATA/state/drift/."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, module: str) -> Path:
        return self.directory / f"{module}.json"

    def record(self, module: str, release_digest: str, install_dir: Path) -> None:
        body = {"release": release_digest, "files": file_digests(install_dir)}
        write_atomic(self._path(module), orjson.dumps(body), 0o600)

    def check(self, module: str, release_digest: str, install_dir: Path) -> str | None:
        """What differs, or None. Records a baseline first if there is none for
        this release (the files were just installed and verified)."""
        try:
            baseline = orjson.loads(self._path(module).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            baseline = None
        if not baseline or baseline.get("release") != release_digest:
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
