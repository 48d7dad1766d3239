"""The hub's database in a backup: SQLite's online backup, or pg_dump and pg_restore.

Both copies are consistent while the hub writes: SQLite's backup copies all
pages in one step inside one read transaction (in WAL mode the hub's writes
go on meanwhile; a stepwise backup would restart on every write of a busy
hub), and pg_dump reads one snapshot. The PostgreSQL tools get the URL
without its password, which goes in PGPASSWORD: a command line is readable
by every user of the machine.
"""

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from .._db import MIGRATIONS_DIR
from ._errors import BackupSourceError, RestoreTargetError
from ._layout import DatabaseKind

PG_SERVER_BINS: Final = Path("/usr/lib/postgresql")
_CONNECT_TIMEOUT_S: Final = "10"
_SQLITE_BUSY_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Database:
    kind: DatabaseKind
    url: str
    sqlite_path: Path | None = None

    @property
    def shown(self) -> str:
        """The database for messages: a path, or the URL without its password."""
        if self.sqlite_path is not None:
            return str(self.sqlite_path)
        return make_url(self.url).render_as_string(hide_password=True)


def parse_database(data_dir: Path, db_url: str | None) -> Database:
    """The database that `--data-dir` and `--db` name, as `hub serve` reads them.

    Raises:
        ValueError: a URL that is neither SQLite nor PostgreSQL, or unreadable.
    """
    if db_url is None:
        path = data_dir / "hub.db"
        return Database("sqlite", f"sqlite:///{path}", path)
    try:
        url = make_url(db_url)
    except ArgumentError as exc:
        raise ValueError(f"--db: not a database URL ({exc})") from None
    if url.get_backend_name() == "sqlite" and url.database:
        return Database("sqlite", db_url, Path(url.database))
    if url.get_backend_name() == "postgresql":
        return Database("postgresql", db_url)
    raise ValueError(f"--db: expected sqlite:///PATH or postgresql+psycopg://... (got {url!r})")


def pg_tool(name: str) -> str:
    """`pg_dump` or `pg_restore`: on PATH, else the newest next to the server binaries.

    Raises:
        BackupSourceError: not installed.
    """
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        PG_SERVER_BINS.glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else -1,
    )
    if candidates:
        return str(candidates[-1])
    raise BackupSourceError(
        f"{name} not found on PATH or in {PG_SERVER_BINS}/*/bin: install the PostgreSQL "
        "client of the server's major version (e.g. apt-get install postgresql-client)"
    )


def libpq_target(db_url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and the environment that carries it."""
    url = make_url(db_url)
    env = {"PGCONNECT_TIMEOUT": _CONNECT_TIMEOUT_S}
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    plain = URL.create(
        "postgresql", url.username, None, url.host, url.port, url.database, url.query
    )
    return plain.render_as_string(hide_password=False), env


def _run_pg(args: list[str], extra_env: Mapping[str, str], what: str) -> None:
    env = {**os.environ, **extra_env}
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines
        reason = errors[0].strip() if errors else f"exit code {result.returncode}"
        raise BackupSourceError(f"{what} failed: {reason[:300]}")


def snapshot_sqlite(source: Path, target: Path) -> str | None:
    """Copy the live SQLite database `source` to `target` (0600); returns its
    schema revision.

    Raises:
        BackupSourceError: `source` is missing or not a database.
    """
    if not source.is_file():
        raise BackupSourceError(
            f"{source}: no hub database here; pass --db for PostgreSQL, or the hub's --data-dir"
        )
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        # mode=rw: never create a database where the hub's was expected.
        src = sqlite3.connect(f"file:{source}?mode=rw", uri=True, timeout=_SQLITE_BUSY_S)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)  # pages=-1: one step, one consistent read
                return _sqlite_revision(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupSourceError(f"{source}: SQLite backup failed: {exc}") from exc


def _sqlite_revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return str(row[0]) if row else None


def check_sqlite_file(path: Path) -> None:
    """Raises: RestoreTargetError: the restored file is not a sound SQLite database."""
    try:
        # Read-write, so that closing the last connection removes the WAL
        # files a read-only one would leave behind.
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise RestoreTargetError(f"the backup's SQLite database does not open: {exc}") from exc
    if not verdict or verdict[0] != "ok":
        raise RestoreTargetError(f"the backup's SQLite database fails its check: {verdict}")


def dump_postgres(database: Database, target: Path) -> str | None:
    """pg_dump (custom format) of `database` to `target` (0600); returns its schema revision.

    Raises:
        BackupSourceError: pg_dump is missing or fails (unreachable, refused, version).
    """
    uri, env = libpq_target(database.url)
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    args = [pg_tool("pg_dump"), "--format=custom", f"--file={target}", f"--dbname={uri}"]
    _run_pg(args, env, f"pg_dump of {database.shown}")
    return _postgres_revision(database)


def _postgres_revision(database: Database) -> str | None:
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def check_postgres_empty(database: Database) -> None:
    """Raises: RestoreTargetError: unreachable, or it holds tables, views or sequences."""
    query = text(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
    )
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            count = conn.execute(query).scalar() or 0
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        first = (str(cause).splitlines() or [type(cause).__name__])[0]
        raise RestoreTargetError(f"{database.shown}: cannot connect: {first[:300]}") from exc
    finally:
        engine.dispose()
    if count:
        raise RestoreTargetError(
            f"{database.shown}: not empty ({count} tables, views or sequences); restore "
            "needs a new, empty database (createdb NAME)"
        )


def restore_postgres(database: Database, dump: Path) -> None:
    """pg_restore `dump` into the empty `database`, in one transaction: it
    holds all of the backup or, on any error, nothing.

    Raises:
        RestoreTargetError: pg_restore is missing or fails.
    """
    uri, env = libpq_target(database.url)
    args = [
        pg_tool("pg_restore"),
        "--single-transaction",
        "--exit-on-error",
        # The restoring role owns what it creates: the backup's roles may
        # not exist on the new server.
        "--no-owner",
        "--no-privileges",
        f"--dbname={uri}",
        str(dump),
    ]
    try:
        _run_pg(args, env, f"pg_restore into {database.shown}")
    except BackupSourceError as exc:
        raise RestoreTargetError(f"{exc}; the database was left empty") from exc


def is_known_revision(revision: str) -> bool:
    """Whether this Fogline's migrations know `revision` (a newer one's do not)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with contextlib.suppress(CommandError, KeyError, ValueError):
        return ScriptDirectory.from_config(config).get_revision(revision) is not None
    return False
