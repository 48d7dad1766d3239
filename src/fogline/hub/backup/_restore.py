"""`fogline hub restore`: rebuild a hub from a backup, all of it or nothing.

Nothing is used before it is authenticated, and nothing is put in place
before the whole file is: the files are written to a staging directory
inside the (new or empty) target, the sealed file is read to its last chunk,
the database is restored (pg_restore in one transaction), and only then do
the files move up into the data directory. Any failure before that removes
the staging directory and leaves the target as it was: empty.
"""

import contextlib
import datetime as dt
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, cast

from pydantic import ValidationError

from fogline._durable import fsync_dir
from fogline.artifact import delete_tree
from fogline.security import SealedFileError, SealedReader

from .._audit import record_local_action
from ._database import (
    Database,
    check_postgres_empty,
    check_sqlite_file,
    is_known_revision,
    parse_database,
    restore_postgres,
)
from ._errors import BackupFileError, RestoreTargetError
from ._layout import (
    DATA_PREFIX,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    PGDUMP_MEMBER,
    SQLITE_MEMBER,
    BackupManifest,
    DatabaseKind,
    check_member_name,
    restored_mode,
)
from ._progress import CountingReader, NoProgress, Progress

STAGING_PREFIX: Final = ".fogline-restore-"
_DUMP_NAME: Final = ".hub.pgdump"  # in staging; deleted before the files move up
_WRITE_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    backup: Path
    data_dir: Path
    db_url: str | None = None


@dataclass(frozen=True, slots=True)
class RestoreSummary:
    data_dir: Path
    database: DatabaseKind
    database_shown: str
    files: int
    file_bytes: int
    created_at: dt.datetime
    fogline_version: str
    artifacts_included: bool
    # Why the restore's audit entry could not be written (None: it was).
    audit_problem: str | None = None


def restore_hub(
    request: RestoreRequest, passphrase: str, progress: Progress | None = None
) -> RestoreSummary:
    """Rebuild the hub saved in `request.backup` into the new or empty
    `request.data_dir` (and, for PostgreSQL, the empty database `db_url`).

    Raises:
        RestoreTargetError: the directory or database is not empty, does not
            match the backup's database kind, or refused the restore.
        BackupFileError: the file is missing, not a backup, damaged,
            truncated, made by a newer Fogline, or the passphrase is wrong.
    """
    progress = progress or NoProgress()
    target = request.data_dir
    _check_target_dir(target)
    try:
        database = parse_database(target, request.db_url)
    except ValueError as exc:
        raise RestoreTargetError(str(exc)) from None
    try:
        source = open(request.backup, "rb")  # noqa: SIM115 (closed in the finally below)
    except OSError as exc:
        raise BackupFileError(f"{request.backup}: cannot open: {exc.strerror}") from exc
    created_target = not target.exists()
    staging: Path | None = None
    restored = False
    try:
        size = os.fstat(source.fileno()).st_size
        with progress.step("read, check and unpack the backup", size) as advance:
            reader = _open_sealed(request.backup, CountingReader(source, advance), passphrase)
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target))
            manifest = _unpack(request, reader, staging, database)
        if database.kind == "sqlite":
            check_sqlite_file(staging / "hub.db")
        else:
            with progress.step(f"pg_restore into {database.shown}", None):
                restore_postgres(database, staging / _DUMP_NAME)
            (staging / _DUMP_NAME).unlink()
        try:
            _move_up(staging, target)
        except OSError as exc:
            # Renames within one directory: rare, and too late to undo all.
            raise RestoreTargetError(
                f"{target}: moving the restored files into place failed: {exc}; empty the "
                "directory (and the database) and restore again"
            ) from exc
        restored = True
        os.chmod(target, 0o700)
        # An older backup's schema has no chain yet: the hub adds it at its
        # next start, and this entry is then missing (the CLI says so).
        audit_problem = record_local_action(
            database.url,
            "hub.restore",
            request.backup.name,
            backup_created_at=manifest.created_at.isoformat(),
            fogline_version=manifest.fogline_version,
        )
        return RestoreSummary(
            data_dir=target,
            database=database.kind,
            database_shown=database.shown,
            files=manifest.files,
            file_bytes=manifest.file_bytes,
            created_at=manifest.created_at,
            fogline_version=manifest.fogline_version,
            artifacts_included=manifest.artifacts_included,
            audit_problem=audit_problem,
        )
    except OSError as exc:
        raise RestoreTargetError(f"{target}: restore failed: {exc}; nothing was restored") from exc
    finally:
        source.close()
        if not restored:
            if staging is not None:
                delete_tree(staging)
            if created_target:
                with contextlib.suppress(OSError):
                    target.rmdir()  # only if empty: it was made here


def _check_target_dir(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise RestoreTargetError(f"{target}: not a directory")
    if not target.exists():
        return
    entries = sorted(p.name for p in target.iterdir())
    if entries and all(name.startswith(STAGING_PREFIX) for name in entries):
        raise RestoreTargetError(
            f"{target}: holds {entries[0]}, left by an interrupted restore; remove it and retry"
        )
    if entries:
        raise RestoreTargetError(
            f"{target}: not empty; restore needs a new or empty directory "
            "(it never overwrites a hub)"
        )


def _open_sealed(path: Path, source: CountingReader, passphrase: str) -> SealedReader:
    try:
        return SealedReader(source, passphrase)
    except SealedFileError as exc:
        raise BackupFileError(f"{path}: {exc}; nothing was restored") from exc


def _unpack(
    request: RestoreRequest, reader: SealedReader, staging: Path, database: Database
) -> BackupManifest:
    """Write the backup's members under `staging`; returns its manifest once
    the whole file is authenticated and its contents match the manifest."""
    path = request.backup
    try:
        with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|") as tar:
            members = _members(tar)
            manifest = _read_manifest(tar, next(members, None))
            _check_compatible(manifest, request, database)
            db_member = SQLITE_MEMBER if manifest.database == "sqlite" else PGDUMP_MEMBER
            db_name = "hub.db" if manifest.database == "sqlite" else _DUMP_NAME
            files = file_bytes = 0
            seen_db = False
            for member in members:
                if not member.isreg():
                    raise BackupFileError(f"refused member {member.name[:120]!r}: not a file")
                if member.name == db_member and not seen_db:
                    seen_db = True
                    _write_member(tar, member, staging / db_name, 0o600)
                    continue
                if not member.name.startswith(DATA_PREFIX):
                    raise BackupFileError(f"unexpected member {member.name[:120]!r}")
                parts = check_member_name(member.name)
                _write_member(tar, member, staging.joinpath(*parts), restored_mode(member.mode))
                files, file_bytes = files + 1, file_bytes + member.size
        reader.drain()  # the tar ended: the rest must still authenticate, to the last chunk
    except SealedFileError as exc:
        raise BackupFileError(f"{path}: {exc}; nothing was restored") from exc
    except tarfile.TarError as exc:
        raise BackupFileError(
            f"{path}: not a Fogline hub backup ({exc}); nothing was restored"
        ) from exc
    except BackupFileError as exc:
        raise BackupFileError(f"{path}: {exc}; nothing was restored") from exc
    if not seen_db or (files, file_bytes) != (manifest.files, manifest.file_bytes):
        raise BackupFileError(
            f"{path}: incomplete: the manifest lists {manifest.files} files "
            f"({manifest.file_bytes} bytes) and a database, the backup holds {files} files "
            f"({file_bytes} bytes){'' if seen_db else ' and no database'}; nothing was restored"
        )
    return manifest


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := tar.next()) is not None:
        yield member


def _read_manifest(tar: tarfile.TarFile, first: tarfile.TarInfo | None) -> BackupManifest:
    if first is None or first.name != MANIFEST_NAME or not first.isreg():
        raise BackupFileError("not a Fogline hub backup (no manifest first)")
    if first.size > MAX_MANIFEST_BYTES:
        raise BackupFileError(f"manifest larger than {MAX_MANIFEST_BYTES} bytes")
    data = tar.extractfile(first)
    assert data is not None  # a regular file
    raw = data.read()
    try:
        return BackupManifest.model_validate_json(raw)
    except ValidationError as exc:
        first_error = exc.errors()[0]
        where = ".".join(str(p) for p in first_error["loc"])
        if where == "format":
            raise BackupFileError(
                "made by a newer Fogline (unknown backup format); restore it with that version"
            ) from None
        raise BackupFileError(f"manifest: {where}: {first_error['msg']}") from None


def _check_compatible(manifest: BackupManifest, request: RestoreRequest, db: Database) -> None:
    revision = manifest.schema_revision
    if revision is not None and not is_known_revision(revision):
        raise RestoreTargetError(
            f"the backup's database schema ({revision}) is newer than this Fogline knows: "
            f"restore it with Fogline {manifest.fogline_version} or later"
        )
    if manifest.database == "sqlite" and request.db_url is not None:
        raise RestoreTargetError(
            "this backup holds a SQLite database: restore it without --db or FOGLINE_DB "
            "(it becomes DATA_DIR/hub.db)"
        )
    if manifest.database == "postgresql" and db.kind != "postgresql":
        raise RestoreTargetError(
            "this backup holds a PostgreSQL database: pass --db with the URL of a new, "
            "empty database"
        )
    if db.kind == "postgresql":
        check_postgres_empty(db)


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, mode: int) -> None:
    data = tar.extractfile(member)
    assert data is not None  # a regular file
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: a name twice in one backup is refused, never overwritten.
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        while chunk := data.read(_WRITE_BYTES):
            _write_all(fd, chunk)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _move_up(staging: Path, target: Path) -> None:
    """Move staging's entries into `target`, then remove staging."""
    for entry in sorted(staging.iterdir()):
        os.rename(entry, target / entry.name)
    staging.rmdir()
    fsync_dir(target)
