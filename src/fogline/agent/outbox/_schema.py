"""Opening the SQLite file: pragmas, schema, integrity check, quarantine."""

import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Final

from fogline._durable import fsync_dir

from ._errors import OutboxStorageError
from ._models import MAX_PRIORITY, MIN_PRIORITY

SCHEMA_VERSION: Final = 1
# Another process (a diagnostic CLI) may hold the lock for a moment.
BUSY_TIMEOUT_S: Final = 5.0
# SQLite's page cache for the outbox's connection (its default is 2,000 KiB).
# It fills as pages are touched and is never given back: a node whose outbox
# once held a backlog keeps it resident for good (BENCHMARKS.md, "Agent idle
# RSS"). The pages it would hold are in the kernel's page cache anyway.
CACHE_KIB: int = 512
_log = logging.getLogger("fogline.agent.outbox")

# seq is assigned from meta.next_seq, never by SQLite: a rowid alias without
# AUTOINCREMENT would reuse the highest seq after it is deleted.
_DDL: Final = (
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        next_seq INTEGER NOT NULL CHECK (next_seq >= 1))""",
    f"""CREATE TABLE IF NOT EXISTS records (
        seq INTEGER PRIMARY KEY,
        stream TEXT NOT NULL,
        priority INTEGER NOT NULL CHECK (priority BETWEEN {MIN_PRIORITY} AND {MAX_PRIORITY}),
        created REAL NOT NULL,
        expires REAL NOT NULL,
        size INTEGER NOT NULL,
        payload BLOB NOT NULL)""",
    # next_batch order; the quota walks it per priority in seq order.
    "CREATE INDEX IF NOT EXISTS records_by_priority ON records (priority DESC, seq)",
    "CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires)",
    # Per-priority depth and bytes, so the quota decision is O(levels), not a
    # scan. Rebuilt from records on every open (see heal()).
    """CREATE TABLE IF NOT EXISTS levels (
        priority INTEGER PRIMARY KEY,
        records INTEGER NOT NULL,
        bytes INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS counters (
        reason TEXT NOT NULL,
        stream TEXT NOT NULL,
        priority INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (reason, stream, priority)) WITHOUT ROWID""",
)
_PROBES: Final = (
    "SELECT next_seq FROM meta LIMIT 0",
    "SELECT seq, stream, priority, created, expires, size, payload FROM records LIMIT 0",
    "SELECT priority, records, bytes FROM levels LIMIT 0",
    "SELECT reason, stream, priority, count FROM counters LIMIT 0",
)
_CORRUPT_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


class CorruptDatabase(Exception):  # internal signal, caught by Outbox.open
    """The file is not a usable outbox database; it must be moved aside."""


def is_corruption(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file itself is damaged (not busy, not full)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _CORRUPT_CODES


def connect(path: Path) -> sqlite3.Connection:
    """Open and configure the database and prove it readable.

    Raises:
        CorruptDatabase: the file is damaged or not an outbox database.
        OutboxStorageError: anything else (permissions, locked, newer schema).
    """
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
    except sqlite3.Error as exc:
        raise _translate(path, exc) from exc
    try:
        _configure(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def init_schema(conn: sqlite3.Connection, path: Path, *, first_seq: int) -> bool:
    """Create what is missing and heal the derived tables; True if the DB is new.

    Raises:
        CorruptDatabase: the tables exist in a shape this code does not know.
        OutboxStorageError: SQLite failed otherwise.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _DDL:
                conn.execute(stmt)
            is_new = (
                conn.execute(
                    "INSERT OR IGNORE INTO meta (id, next_seq) VALUES (1, ?)", (first_seq,)
                ).rowcount
                == 1
            )
            conn.executemany(
                "INSERT OR IGNORE INTO levels (priority, records, bytes) VALUES (?, 0, 0)",
                [(p,) for p in range(MIN_PRIORITY, MAX_PRIORITY + 1)],
            )
            for probe in _PROBES:
                conn.execute(probe)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            _heal(conn, path)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        if exc.sqlite_errorcode == sqlite3.SQLITE_ERROR:
            # "no such column" and friends: a damaged or foreign schema.
            raise CorruptDatabase(f"{path}: unexpected schema: {exc}") from exc
        raise _translate(path, exc) from exc
    return is_new


def quarantine(path: Path, now: float) -> Path:
    """Move the database and its WAL/SHM aside; return the new database path.

    Raises:
        OutboxStorageError: the files could not be moved.
    """
    try:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    except (OverflowError, OSError, ValueError):
        stamp = "unknown-time"
    base = f"{path.name}.corrupt-{stamp}"
    target, n = path.with_name(base), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{base}-{n}")
    try:
        if path.exists():
            os.replace(path, target)
        # A stale WAL must never meet the new database. Whatever SQLite left
        # (it may delete a WAL it cannot use) moves with the copy, renamed the
        # way SQLite pairs "<db>-wal" with "<db>", so it can still be examined.
        for suffix in ("-wal", "-shm", "-journal"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, target.with_name(target.name + suffix))
        fsync_dir(path.parent)
    except OSError as exc:
        raise OutboxStorageError(f"{path}: cannot move the corrupt database aside: {exc}") from exc
    return target


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxStorageError(
                f"{path}: expected journal_mode wal, got {mode} (network filesystem?)"
            )
        # FULL: a commit is on disk when put() returns, even across a power cut.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA cache_size=-{int(CACHE_KIB)}")  # negative: KiB, not pages
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise CorruptDatabase(f"{path}: quick_check: {'; '.join(map(str, problems))}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise _translate(path, exc) from exc
    if version > SCHEMA_VERSION:
        # Written by a newer agent (a rollback?): never destroy its data.
        raise OutboxStorageError(
            f"{path}: schema version {version} is newer than this agent's {SCHEMA_VERSION}"
        )


def _heal(conn: sqlite3.Connection, path: Path) -> None:
    # The levels table and next_seq are derived from records; rebuild them so
    # a bug or a hand edit can never leave the quota counting phantom bytes.
    actual = {p: (0, 0) for p in range(MIN_PRIORITY, MAX_PRIORITY + 1)}
    for priority, count, nbytes in conn.execute(
        "SELECT priority, count(*), coalesce(sum(size), 0) FROM records GROUP BY priority"
    ):
        actual[priority] = (count, nbytes)
    stored = {p: (r, b) for p, r, b in conn.execute("SELECT priority, records, bytes FROM levels")}
    if stored != actual:
        _log.warning("%s: rebuilt the per-priority totals (were %s)", path, stored)
        conn.execute("DELETE FROM levels")
        conn.executemany(
            "INSERT INTO levels (priority, records, bytes) VALUES (?, ?, ?)",
            [(p, r, b) for p, (r, b) in actual.items()],
        )
    (max_seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()
    conn.execute("UPDATE meta SET next_seq = max(next_seq, ?) WHERE id = 1", (max_seq + 1,))


def _translate(path: Path, exc: sqlite3.Error) -> Exception:
    if is_corruption(exc):
        return CorruptDatabase(f"{path}: {exc}")
    return OutboxStorageError(f"{path}: {exc}")


def close_quietly(conn: sqlite3.Connection) -> None:
    """Close a connection that may already be broken."""
    with contextlib.suppress(sqlite3.Error):
        conn.close()
