"""The outbox's memory stays bounded however the acks come (issue #18's soak).

sqlite3 keeps a prepared statement (C memory) per distinct SQL text; a delete
whose text changes with the number of seqs filled that cache over hours of
acks of every size and grew the agent's RSS.
"""

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from fogline.agent.outbox import DropReason, Outbox, OutboxItem


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
