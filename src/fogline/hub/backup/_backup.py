"""`fogline hub backup`: a consistent, encrypted snapshot of a running hub.

Order matters for consistency: the database first, then the files. The
artifact store only grows, and an artifact is on disk (fsynced) before the
row that names it commits, so every release in the database copy finds its
archive in the files copied after it. The CA and TLS files change only
under `fogline ca rotate` and `fogline ca retire-old`: do not run those
during a backup.

The backup is written to `.NAME.partial` (0600 from its first byte) and
linked to NAME only once complete: a failed or interrupted backup never
leaves a file that looks like a backup.
"""

import contextlib
import datetime as dt
import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from fogline import __version__
from fogline._durable import fsync_dir
from fogline.artifact import delete_tree
from fogline.security import CertificateAuthority, ScryptCost, SealedWriter

from .._audit import record_local_action
from ._database import Database, dump_postgres, parse_database, snapshot_sqlite
from ._errors import BackupError, BackupSourceError
from ._layout import (
    FORMAT,
    MANIFEST_NAME,
    PGDUMP_MEMBER,
    SQLITE_MEMBER,
    BackupManifest,
    DatabaseKind,
    DataFile,
    list_data_dir,
)
from ._passphrase import check_new_passphrase
from ._progress import Advance, CountingReader, NoProgress, Progress


@dataclass(frozen=True, slots=True)
class BackupRequest:
    data_dir: Path
    output: Path
    db_url: str | None = None
    # The artifact store can be large, and every archive in it can be pushed
    # again from where it was built; leaving it out makes a small backup.
    include_artifacts: bool = True
    scrypt_cost: ScryptCost | None = None


@dataclass(frozen=True, slots=True)
class BackupSummary:
    output: Path
    database: DatabaseKind
    schema_revision: str | None
    files: int
    file_bytes: int
    database_bytes: int
    backup_bytes: int
    artifacts_included: bool
    skipped: tuple[str, ...]  # entries that are not regular files (symlinks...)
    # Why the backup's audit entry could not be written (None: it was).
    audit_problem: str | None = None


def backup_hub(
    request: BackupRequest, passphrase: str, progress: Progress | None = None
) -> BackupSummary:
    """Write an encrypted backup of the hub in `request.data_dir` (and its
    database) to `request.output`, while the hub runs.

    Raises:
        PassphraseError: the passphrase is too short.
        BackupSourceError: not a hub data directory, no database, pg_dump
            missing or failing, a file unreadable.
        BackupError: the output exists, is inside the data directory, or
            cannot be written.
    """
    progress = progress or NoProgress()
    check_new_passphrase(passphrase)
    data_dir, output = request.data_dir, request.output
    _check_hub_dir(data_dir)
    try:
        database = parse_database(data_dir, request.db_url)
    except ValueError as exc:
        raise BackupSourceError(str(exc)) from None
    _check_output(output, data_dir)
    partial = output.with_name(f".{output.name}.partial")
    work: Path | None = None
    try:
        work = Path(tempfile.mkdtemp(prefix=".fogline-backup-", dir=output.parent))
        db_file, revision = _snapshot_database(database, work, progress)
        try:
            listing = list_data_dir(data_dir, include_artifacts=request.include_artifacts)
        except OSError as exc:
            raise BackupSourceError(f"{data_dir}: cannot read: {exc}") from exc
        manifest = BackupManifest(
            format=FORMAT,
            fogline_version=__version__,
            created_at=dt.datetime.now(dt.UTC),
            database=database.kind,
            schema_revision=revision,
            artifacts_included=request.include_artifacts,
            files=len(listing.files),
            file_bytes=listing.total_bytes,
        )
        partial.unlink(missing_ok=True)  # left by a backup that was killed
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as sink:
            sealed = SealedWriter(sink, passphrase, cost=request.scrypt_cost)
            with tarfile.open(
                fileobj=cast(IO[bytes], sealed), mode="w|", format=tarfile.PAX_FORMAT
            ) as tar:
                _add_bytes(tar, MANIFEST_NAME, manifest.model_dump_json(indent=2).encode())
                member = SQLITE_MEMBER if database.kind == "sqlite" else PGDUMP_MEMBER
                with progress.step("database into the backup", db_file.stat().st_size) as advance:
                    _add_file(tar, member, db_file, advance)
                with progress.step("data directory files", listing.total_bytes) as advance:
                    for data_file in listing.files:
                        _add_data_file(tar, data_dir, data_file, advance)
            sealed.close()
            sink.flush()
            os.fsync(sink.fileno())
        # A hard link never replaces: a file made at NAME meanwhile is kept.
        os.link(partial, output)
        partial.unlink()
        fsync_dir(output.parent)
        audit_problem = record_local_action(
            database.url,
            "hub.backup",
            output.name,
            database=database.kind,
            schema_revision=revision,
            artifacts_included=request.include_artifacts,
            backup_bytes=output.stat().st_size,
        )
        return BackupSummary(
            output=output,
            database=database.kind,
            schema_revision=revision,
            files=len(listing.files),
            file_bytes=listing.total_bytes,
            database_bytes=db_file.stat().st_size,
            backup_bytes=output.stat().st_size,
            artifacts_included=request.include_artifacts,
            skipped=listing.skipped,
            audit_problem=audit_problem,
        )
    except OSError as exc:
        raise BackupError(f"{output}: cannot write the backup: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        if work is not None:
            delete_tree(work)


def _check_hub_dir(data_dir: Path) -> None:
    for name in (CertificateAuthority.KEY_FILE, CertificateAuthority.CERT_FILE):
        if not (data_dir / name).is_file():
            raise BackupSourceError(f"{data_dir}: not a hub data directory (no {name})")


def _check_output(output: Path, data_dir: Path) -> None:
    if output.exists() or output.is_symlink():
        raise BackupError(f"{output}: exists; a backup never overwrites a file")
    if not output.parent.is_dir():
        raise BackupError(f"{output.parent}: no such directory")
    if output.parent.resolve().is_relative_to(data_dir.resolve()):
        raise BackupError(f"{output}: inside the data directory; write the backup elsewhere")


def _snapshot_database(
    database: Database, work: Path, progress: Progress
) -> tuple[Path, str | None]:
    if database.kind == "sqlite":
        assert database.sqlite_path is not None
        target = work / "hub.db"
        with progress.step("database snapshot (SQLite online backup)", None):
            return target, snapshot_sqlite(database.sqlite_path, target)
    target = work / "hub.pgdump"
    with progress.step("database snapshot (pg_dump)", None):
        return target, dump_postgres(database, target)


def _tarinfo(name: str, size: int, mode: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, int(mtime)
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tarinfo(name, len(data), 0o600, dt.datetime.now().timestamp()), io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path, advance: Advance) -> None:
    with open(path, "rb") as source:
        info = os.fstat(source.fileno())
        tar.addfile(
            _tarinfo(name, info.st_size, 0o600, info.st_mtime), CountingReader(source, advance)
        )


def _add_data_file(
    tar: tarfile.TarFile, data_dir: Path, data_file: DataFile, advance: Advance
) -> None:
    path = data_dir.joinpath(*data_file.parts)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise BackupSourceError(f"{path}: cannot read: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as source:
        # Sized from the open file: a file replaced since it was listed
        # (os.replace) is read whole, old or new, never half of each.
        info = os.fstat(fd)
        tar.addfile(
            _tarinfo(data_file.member, info.st_size, data_file.mode, info.st_mtime),
            CountingReader(source, advance),
        )
