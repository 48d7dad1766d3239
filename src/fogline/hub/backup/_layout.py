"""What a backup holds and where: a tar stream (PAX) inside a sealed file.

    fogline-backup.json     the manifest, always first (BackupManifest)
    database/hub.db         SQLite: a copy made with SQLite's online backup
    database/hub.pgdump     PostgreSQL: pg_dump's custom format
    data/...                the data directory's files: CA cert and key, TLS
                            cert and key, admin token, the artifact store
                            (unless left out), and whatever else lives there

Left out of data/: the live SQLite files (hub.db and its -wal/-shm/-journal:
the copy above stands for them), the artifact store's tmp/ (uploads in
progress), `.NAME.tmp` files of atomic writes in progress, and anything
that is not a regular file or a directory (symlinks are not followed).
"""

import datetime as dt
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from fogline.artifact import walk_tree

from ._errors import BackupFileError

FORMAT: Final = 1
MANIFEST_NAME: Final = "fogline-backup.json"
MAX_MANIFEST_BYTES: Final = 64 * 1024
SQLITE_MEMBER: Final = "database/hub.db"
PGDUMP_MEMBER: Final = "database/hub.pgdump"
DATA_PREFIX: Final = "data/"
SQLITE_FILES: Final = frozenset({"hub.db", "hub.db-wal", "hub.db-shm", "hub.db-journal"})
ARTIFACTS_DIR: Final = "artifacts"
# A hub's data directory is a few levels deep (artifacts/sha256/ab/...);
# a restore refuses member names deeper or longer than this.
MAX_DEPTH: Final = 16
MAX_NAME_CHARS: Final = 1024

DatabaseKind = Literal["sqlite", "postgresql"]


class BackupManifest(BaseModel):
    """The first member of every backup: what it holds and who made it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1]
    fogline_version: str
    created_at: dt.datetime
    database: DatabaseKind
    # Alembic's revision of the database in the backup: a restore refuses a
    # schema newer than the Fogline doing it knows.
    schema_revision: str | None
    artifacts_included: bool
    files: int
    file_bytes: int


@dataclass(frozen=True, slots=True)
class DataFile:
    """A file of the data directory to back up: `parts` below the root."""

    parts: tuple[str, ...]
    size: int
    mode: int

    @property
    def member(self) -> str:
        return DATA_PREFIX + "/".join(self.parts)


@dataclass(frozen=True, slots=True)
class DataListing:
    files: tuple[DataFile, ...]
    skipped: tuple[str, ...]  # not regular files: named in the summary, not backed up

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def _left_out(parts: tuple[str, ...], include_artifacts: bool) -> bool:
    if len(parts) == 1 and parts[0] in SQLITE_FILES:
        return True
    if parts[0] == ARTIFACTS_DIR and (
        not include_artifacts or parts[1:2] in (("tmp",), ("deltas",))  # deltas: a cache
    ):
        return True
    name = parts[-1]
    return name.startswith(".") and name.endswith(".tmp")


def list_data_dir(root: Path, *, include_artifacts: bool) -> DataListing:
    """The files of the hub data directory `root` that go into a backup.

    Raises:
        OSError: the directory cannot be read.
    """
    files: list[DataFile] = []
    skipped: list[str] = []
    for entry in walk_tree(root):
        if _left_out(entry.parts, include_artifacts):
            continue
        if entry.kind == "file":
            info = os.stat(entry.name, dir_fd=entry.dir_fd, follow_symlinks=False)
            files.append(DataFile(entry.parts, info.st_size, stat.S_IMODE(info.st_mode)))
        elif entry.kind != "dir":
            skipped.append("/".join(entry.parts))
    return DataListing(tuple(files), tuple(skipped))


def restored_mode(mode: int) -> int:
    """The mode a restored file gets: as backed up, but never executable or
    writable by others; keys and the token were 0600 and stay so."""
    return mode & 0o644


def check_member_name(name: str) -> tuple[str, ...]:
    """The path parts of a `data/` member, checked to stay inside the data directory.

    The file is authenticated, so only a holder of the passphrase could have
    made such a name; a restore still never writes outside its target.

    Raises:
        BackupFileError: absolute, `..`, empty parts, too deep or too long.
    """
    path = PurePosixPath(name)
    parts = path.parts[1:] if name.startswith(DATA_PREFIX) else ()
    bad = (
        not parts
        or len(name) > MAX_NAME_CHARS
        or len(parts) > MAX_DEPTH
        or path.is_absolute()
        or any(part in ("", ".", "..") or "\x00" in part for part in parts)
        or "/".join(path.parts) != name
    )
    if bad:
        raise BackupFileError(
            f"refused member {name[:120]!r}: not a path inside the data directory"
        )
    return tuple(parts)
