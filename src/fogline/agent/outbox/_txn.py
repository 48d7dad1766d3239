"""The mutations of one outbox transaction: insert, quota eviction, expiry, delete.

A `Txn` reads the small derived state (next_seq, per-priority totals) at the
start of a write transaction and writes it back at the end, so every change
to `records` and to the totals commits or rolls back together.
"""

import sqlite3
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Final

from ._models import MAX_PRIORITY, MIN_PRIORITY, DropReason, OutboxItem

_LEVELS: Final = range(MIN_PRIORITY, MAX_PRIORITY + 1)
# Deletes by seq bind at most this many values (well under SQLite's
# host-parameter limit), padded to a power of two: see `_padded`.
_CHUNK: Final = 512
_EVICT_PAGE: Final = 128


def _padded(seqs: list[int]) -> list[int]:
    """`seqs` (not empty) with its last value repeated up to a power of two.

    Why: each list length is its own SQL text, and sqlite3 keeps a prepared
    statement per text, up to 128 per connection; 128 of these lists, 1 to
    500 values long, held about 6 MB of C memory. Acks come in every size, so
    the cache filled over hours and evicted the outbox's other statements:
    the agent's RSS grew in the soak (BENCHMARKS.md, "Agent soak"). Ten
    lengths, 1 to 512, bound it; a repeated seq matches its row once.
    """
    size = 1 << (len(seqs) - 1).bit_length()
    return seqs + seqs[-1:] * (size - len(seqs))


class Txn:
    """State and mutations of one write transaction (the caller holds BEGIN IMMEDIATE)."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.conn, self.now = conn, now
        (self.next_seq,) = conn.execute("SELECT next_seq FROM meta WHERE id = 1").fetchone()
        self._first_seq = self.next_seq
        self.depth = [0 for _ in _LEVELS]
        self.bytes = [0 for _ in _LEVELS]
        for priority, records, nbytes in conn.execute(
            "SELECT priority, records, bytes FROM levels"
        ):
            self.depth[priority], self.bytes[priority] = records, nbytes
        self._levels_before = (tuple(self.depth), tuple(self.bytes))
        self.drops: Counter[tuple[DropReason, str, int]] = Counter()
        self._purged = False
        # Quota eviction state (see _next_victim); victims are deleted in bulk.
        self._candidates: dict[int, deque[tuple[int, str, int]]] = {}
        self._fetched_up_to: dict[int, int] = {}
        self._victims: list[tuple[int]] = []

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes)

    def insert(self, items: Sequence[OutboxItem], *, max_bytes: int) -> list[int]:
        """Queue validated items in order, applying the quota; return their seqs.

        Every item gets a seq, even one the quota refuses (it is counted as a
        quota drop, exactly as if it had been evicted the moment it arrived).
        """
        seqs: list[int] = []
        rows: list[tuple[int, str, int, float, float, int, bytes]] = []
        total = self.total_bytes
        for item in items:
            seq = self.next_seq
            self.next_seq += 1
            seqs.append(seq)
            size = len(item.payload)
            if total + size > max_bytes:
                self._insert_rows(rows)  # eviction must see earlier items of this batch
                rows = []
                if not self._make_room(size, item.priority, max_bytes=max_bytes):
                    self.drops[(DropReason.QUOTA, item.stream, item.priority)] += 1
                    continue
                total = self.total_bytes
            expires = self.now + item.ttl_s
            rows.append((seq, item.stream, item.priority, self.now, expires, size, item.payload))
            self.depth[item.priority] += 1
            self.bytes[item.priority] += size
            total += size
        self._insert_rows(rows)
        return seqs

    def purge_expired(self) -> None:
        """Delete every record whose TTL has run out, counting it per stream and priority."""
        self._purged = True
        self._forget_candidates()
        groups = self.conn.execute(
            "SELECT stream, priority, count(*), sum(size) FROM records"
            " WHERE expires <= ? GROUP BY stream, priority",
            (self.now,),
        ).fetchall()
        if not groups:
            return
        self.conn.execute("DELETE FROM records WHERE expires <= ?", (self.now,))
        for stream, priority, count, nbytes in groups:
            self.depth[priority] -= count
            self.bytes[priority] -= nbytes
            self.drops[(DropReason.EXPIRED, stream, priority)] += count

    def delete(self, seqs: Iterable[int], *, reason: DropReason | None) -> int:
        """Delete exactly these seqs (unknown ones are ignored); count them under reason."""
        self._forget_candidates()
        unique = sorted(set(seqs))
        deleted = 0
        for start in range(0, len(unique), _CHUNK):
            chunk = _padded(unique[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            # Only "?" placeholders are interpolated; the values are bound.
            rows = self.conn.execute(
                f"SELECT stream, priority, size FROM records WHERE seq IN ({marks})",  # noqa: S608
                chunk,
            ).fetchall()
            if not rows:
                continue
            self.conn.execute(f"DELETE FROM records WHERE seq IN ({marks})", chunk)  # noqa: S608
            for stream, priority, size in rows:
                self.depth[priority] -= 1
                self.bytes[priority] -= size
                if reason is not None:
                    self.drops[(reason, stream, priority)] += 1
            deleted += len(rows)
        return deleted

    def flush(self) -> None:
        """Write the derived state back; call just before COMMIT."""
        self._delete_victims()
        if self.next_seq != self._first_seq:
            self.conn.execute("UPDATE meta SET next_seq = ? WHERE id = 1", (self.next_seq,))
        if (tuple(self.depth), tuple(self.bytes)) != self._levels_before:
            self.conn.executemany(
                "UPDATE levels SET records = ?, bytes = ? WHERE priority = ?",
                [(self.depth[p], self.bytes[p], p) for p in _LEVELS],
            )
        if self.drops:
            self.conn.executemany(
                "INSERT INTO counters (reason, stream, priority, count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (reason, stream, priority) DO UPDATE"
                " SET count = count + excluded.count",
                [(str(r), s, p, n) for (r, s, p), n in self.drops.items()],
            )

    def _forget_candidates(self) -> None:
        # Other deletions would leave stale rows in the eviction pages.
        self._delete_victims()
        self._candidates.clear()
        self._fetched_up_to.clear()

    def _insert_rows(self, rows: list[tuple[int, str, int, float, float, int, bytes]]) -> None:
        if rows:
            self.conn.executemany(
                "INSERT INTO records (seq, stream, priority, created, expires, size, payload)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _make_room(self, size: int, priority: int, *, max_bytes: int) -> bool:
        """Free space for a record of `priority`; False if that would take a higher one.

        Victims are the lowest-priority, then oldest records, never one above
        `priority`. If even all eligible records would not make room, nothing
        is evicted (losing them would not save the new record) and the caller
        refuses the new record instead.
        """
        if not self._purged:
            self.purge_expired()  # expired records are free space, not quota drops
        need = self.total_bytes + size - max_bytes
        if need <= 0:
            return True
        if sum(self.bytes[p] for p in range(MIN_PRIORITY, priority + 1)) < need:
            return False
        for level in range(MIN_PRIORITY, priority + 1):
            while need > 0 and self.depth[level] > 0:
                victim = self._next_victim(level)
                if victim is None:
                    break
                seq, stream, nbytes = victim
                self._victims.append((seq,))
                self.depth[level] -= 1
                self.bytes[level] -= nbytes
                self.drops[(DropReason.QUOTA, stream, level)] += 1
                need -= nbytes
            if need <= 0:
                return True
        return need <= 0

    def _next_victim(self, level: int) -> tuple[int, str, int] | None:
        # The oldest rows of a level are read a page at a time and kept for the
        # rest of the transaction: at the quota every put evicts about one
        # record, and a query per eviction would dominate. The page stays valid
        # because rows inserted later in the transaction have higher seqs.
        queue = self._candidates.setdefault(level, deque())
        if not queue:
            page = self.conn.execute(
                "SELECT seq, stream, size FROM records WHERE priority = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (level, self._fetched_up_to.get(level, 0), _EVICT_PAGE),
            ).fetchall()
            if not page:
                return None
            queue.extend(page)
            self._fetched_up_to[level] = page[-1][0]
        return queue.popleft()

    def _delete_victims(self) -> None:
        if self._victims:
            self.conn.executemany("DELETE FROM records WHERE seq = ?", self._victims)
            self._victims = []
