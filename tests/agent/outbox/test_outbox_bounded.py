"""The outbox's memory stays bounded however the acks come (issue #18's soak).

sqlite3 keeps a prepared statement (C memory) per distinct SQL text; a delete
whose text changes with the number of seqs filled that cache over hours of
acks of every size and grew the agent's RSS. SQLite's page cache is the
outbox's own size, not SQLite's default.
"""

import _sqlite3
import ctypes
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from fogline.agent.outbox import DropReason, Outbox, OutboxItem, _schema


class RecordingConnection:
    """A sqlite3 connection that remembers every SQL text it was given."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.texts: set[str] = set()

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.texts.add(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.texts.add(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_acks_of_every_size_use_a_bounded_set_of_statements(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path / "outbox.db", max_bytes=10_000_000)
    try:
        items = [OutboxItem("s", orjson.dumps({"i": i}), 5, 3600.0) for i in range(1400)]
        seqs = box.put_many(items)
        recording = RecordingConnection(box._conn)  # type: ignore[arg-type]
        box._conn = recording  # type: ignore[assignment]
        # Acks of 1, 2, ..., 52 records (1,378 in all), then one of 600 (two chunks).
        start = 0
        for size in range(1, 53):
            assert box.ack(seqs[start : start + size]) == size
            start += size
        assert box.ack(seqs[start:] + seqs[:start]) == len(seqs) - start  # old ones: ignored
        statements = {t for t in recording.texts if " IN (" in t}
        # A SELECT and a DELETE per length, lengths the powers of two to 512.
        # Before: a pair per size, 108 texts, and the sqlite3 cache (128)
        # evicted the outbox's own statements.
        assert len(statements) <= 2 * 10, sorted(len(t) for t in statements)
        assert box.stats().depth == 0
    finally:
        box._conn = getattr(box._conn, "_conn", box._conn)
        box.close()


def test_a_padded_delete_counts_each_record_once(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path / "outbox.db", max_bytes=10_000_000)
    try:
        seqs = box.put_many([OutboxItem("s", b'{"i": 1}', 5, 3600.0) for _ in range(5)])
        # 3 seqs bind as 4 (the last repeated): still 3 records, counted once each.
        assert box.dead_letter(seqs[:3]) == 3
        drops = {(d.reason, d.stream): d.count for d in box.stats().drops}
        assert drops[(DropReason.DEAD_LETTER, "s")] == 3
        assert box.stats().depth == 2
    finally:
        box.close()


def _sqlite_memory_used() -> int:
    """SQLite's own count of the bytes it holds in this process (every connection)."""
    # dlsym on the extension's handle finds SQLite's symbols whether it is
    # linked in or a library of its own; the same copy sqlite3 uses.
    lib = ctypes.PyDLL(_sqlite3.__file__)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


def _through_a_backlog(path: Path) -> int:
    """SQLite's memory once a 5 MB backlog has been queued and drained."""
    before = _sqlite_memory_used()
    box = Outbox.open(path, max_bytes=100_000_000)
    try:
        payload = orjson.dumps({"reading": "x" * 1000})
        for _ in range(5):
            box.put_many([OutboxItem("s", payload, 5, 3600.0) for _ in range(1000)])
        drained = 0
        while batch := box.next_batch(max_records=500, max_bytes=1_000_000):
            drained += box.ack([r.seq for r in batch])
        assert drained == 5000
        assert path.stat().st_size > 5_000_000
        return _sqlite_memory_used() - before
    finally:
        box.close()


def test_the_page_cache_is_bounded_below_sqlites_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite keeps the cache it filled until the connection closes: the
    # agent's, for good. Its default (2,000 KiB) is what the soak saw grow.
    assert _schema.CACHE_KIB == 512
    used = _through_a_backlog(tmp_path / "ours.db")
    assert used < 1_200_000, used  # the cache, the schema and the prepared statements
    monkeypatch.setattr(_schema, "CACHE_KIB", 2000)  # SQLite's default: the same backlog
    assert _through_a_backlog(tmp_path / "default.db") > used + 1_000_000
