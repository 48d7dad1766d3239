"""The durable outbox: a SQLite (WAL) queue of records waiting for the hub."""

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

from fogline._durable import make_dirs

from ._errors import OutboxStorageError
from ._models import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    DropCount,
    DropReason,
    OutboxItem,
    OutboxRecord,
    OutboxStats,
    PriorityStats,
    check_item,
)
from ._schema import CorruptDatabase, close_quietly, connect, init_schema, quarantine
from ._seqfloor import SeqReservation
from ._txn import Txn

_log = logging.getLogger("fogline.agent.outbox")


class Outbox:
    """A bounded, prioritised, crash-safe queue of records for the hub.

    Thread-safe: one lock serialises the operations of this object, so the
    uplink may call it from a worker thread while the agent puts.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        max_bytes: int,
        clock: Callable[[], float],
        reservation: SeqReservation,
        corrupt_file: Path | None,
    ) -> None:
        """Use `Outbox.open`."""
        self._conn: sqlite3.Connection | None = conn
        self._path, self._max_bytes, self._clock = path, max_bytes, clock
        self._reservation, self._corrupt_file = reservation, corrupt_file
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, path: Path, *, max_bytes: int, clock: Callable[[], float] = time.time
    ) -> "Outbox":
        """Open (or create) the outbox database at `path`.

        A damaged database is moved aside as `<name>.corrupt-<UTC time>` (with
        its -wal/-shm) and a new, empty one is started: the agent keeps working
        and `stats().was_reset_after_corruption` says what happened. New seqs
        then start above the reservation in `<name>.seq`, so the hub never
        mistakes new records for old ones.

        Raises:
            ValueError: max_bytes is not a positive int.
            OutboxStorageError: the file cannot be opened, created or moved aside,
                or was written by a newer schema.
        """
        if type(max_bytes) is not int or max_bytes <= 0:
            raise ValueError(f"max_bytes: expected a positive int, got {max_bytes!r}")
        path = Path(path)
        try:
            # Durably: SQLite fsyncs the database's directory, not its parent.
            make_dirs(path.parent)
        except OSError as exc:
            raise OutboxStorageError(f"{path.parent}: cannot create the data dir: {exc}") from exc
        reservation = SeqReservation(path.with_name(path.name + ".seq"))
        corrupt_file: Path | None = None
        try:
            conn, is_new = _connect_and_init(path, first_seq=_first_seq(reservation, None, clock))
        except CorruptDatabase as exc:
            corrupt_file = quarantine(path, clock())
            _log.error("%s; moved it to %s and started an empty outbox", exc, corrupt_file)
            try:
                conn, is_new = _connect_and_init(
                    path, first_seq=_first_seq(reservation, corrupt_file, clock)
                )
            except CorruptDatabase as again:
                # Do not loop: a disk that corrupts a fresh file needs a human.
                raise OutboxStorageError(
                    f"{path}: a fresh database is unusable: {again}"
                ) from again
        if is_new:
            _log.info("%s: new outbox", path)
        return cls(
            conn,
            path,
            max_bytes=max_bytes,
            clock=clock,
            reservation=reservation,
            corrupt_file=corrupt_file,
        )

    @property
    def path(self) -> Path:
        return self._path

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def close(self) -> None:
        """Close the database; later calls raise OutboxStorageError. Idempotent."""
        with self._lock:
            if self._conn is not None:
                close_quietly(self._conn)
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def put(self, stream: str, payload: bytes, *, priority: int, ttl_s: float) -> int:
        """Queue one record durably; return its seq. See `put_many`."""
        return self.put_many([OutboxItem(stream, payload, priority, ttl_s)])[0]

    def put_many(self, items: Sequence[OutboxItem]) -> list[int]:
        """Queue records in one transaction (one fsync); return their seqs in order.

        When the new payload bytes would exceed `max_bytes`, expired records go
        first, then the lowest-priority oldest ones, but never a record of
        higher priority than the one arriving. If no such eviction can make
        room, the arriving record is refused instead and nothing is evicted.
        Refused records still get a seq (never stored) and, like evicted ones,
        are counted in `stats().dropped_quota` under their stream and priority.

        Raises:
            RecordRejectedError: an item is invalid (stream, priority, ttl_s,
                payload size or not JSON); nothing of the batch was written.
            OutboxStorageError: SQLite or the disk failed; nothing was written.
        """
        items = list(items)
        for item in items:
            check_item(item, max_bytes=self._max_bytes)
        if not items:
            return []
        with self._transaction() as txn:
            seqs = txn.insert(items, max_bytes=self._max_bytes)
            try:
                self._reservation.ensure(txn.next_seq - 1)
            except OSError as exc:
                raise OutboxStorageError(f"{self._path}: cannot reserve seqs: {exc}") from exc
        return seqs

    def next_batch(self, *, max_records: int, max_bytes: int) -> list[OutboxRecord]:
        """The records to send next: highest priority first, then lowest seq.

        Records stop at `max_records` or before the payload bytes would pass
        `max_bytes`, but a single record larger than `max_bytes` is still
        returned alone so it cannot block the queue. Expired records are
        deleted and counted, never returned. Returned records stay queued
        until `ack` or `dead_letter`.

        Raises:
            ValueError: a limit is not a positive int.
            OutboxStorageError: SQLite or the disk failed.
        """
        _check_limit("max_records", max_records)
        _check_limit("max_bytes", max_bytes)
        with self._transaction() as txn:
            txn.purge_expired()
            cursor = txn.conn.execute(
                "SELECT seq, stream, priority, created, expires, payload FROM records"
                " ORDER BY priority DESC, seq LIMIT ?",
                (max_records,),
            )
            batch: list[OutboxRecord] = []
            used = 0
            for seq, stream, priority, created, expires, payload in cursor:
                if batch and used + len(payload) > max_bytes:
                    break
                batch.append(OutboxRecord(seq, stream, priority, created, expires, payload))
                used += len(payload)
            cursor.close()
        return batch

    def ack(self, seqs: Iterable[int]) -> int:
        """Delete exactly these records, which the hub has stored; return how many existed.

        Idempotent: unknown or already acknowledged seqs are ignored.

        Raises:
            OutboxStorageError: SQLite or the disk failed; nothing was deleted.
        """
        return self._delete(seqs, reason=None)

    def dead_letter(self, seqs: Iterable[int]) -> int:
        """Delete records the hub refuses for good, counting them; return how many existed.

        Raises:
            OutboxStorageError: SQLite or the disk failed; nothing was deleted.
        """
        return self._delete(seqs, reason=DropReason.DEAD_LETTER)

    def stats(self) -> OutboxStats:
        """A consistent snapshot of depth, bytes, age and drop counters.

        Raises:
            OutboxStorageError: SQLite or the disk failed.
        """
        with self._lock:
            conn = self._require_open()
            try:
                conn.execute("BEGIN")  # one read snapshot for all the queries
                try:
                    now = self._clock()
                    levels = conn.execute("SELECT priority, records, bytes FROM levels").fetchall()
                    counter_rows = conn.execute(
                        "SELECT reason, stream, priority, count FROM counters"
                        " ORDER BY reason, stream, priority"
                    ).fetchall()
                    oldest = conn.execute(
                        "SELECT created FROM records ORDER BY seq LIMIT 1"
                    ).fetchone()
                    (next_seq,) = conn.execute("SELECT next_seq FROM meta WHERE id = 1").fetchone()
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise OutboxStorageError(f"{self._path}: {exc}") from exc
        return _build_stats(
            levels,
            counter_rows,
            # Clamp: after the wall clock steps back, "created" may be ahead.
            oldest_age_s=None if oldest is None else max(0.0, now - oldest[0]),
            next_seq=next_seq,
            max_bytes=self._max_bytes,
            corrupt_file=self._corrupt_file,
        )

    def _delete(self, seqs: Iterable[int], *, reason: DropReason | None) -> int:
        wanted = list(seqs)
        for seq in wanted:
            if type(seq) is not int:
                raise TypeError(f"seq: expected int, got {seq!r}")
        if not wanted:
            return 0
        with self._transaction() as txn:
            return txn.delete(wanted, reason=reason)

    @contextmanager
    def _transaction(self) -> Iterator[Txn]:
        with self._lock:
            conn = self._require_open()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    txn = Txn(conn, self._clock())
                    yield txn
                    txn.flush()
                    conn.execute("COMMIT")
                except BaseException:
                    # Also on KeyboardInterrupt/cancellation: leave nothing half-done.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise OutboxStorageError(f"{self._path}: {exc}") from exc

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxStorageError(f"{self._path}: the outbox is closed")
        return self._conn


def _connect_and_init(path: Path, *, first_seq: int) -> tuple[sqlite3.Connection, bool]:
    conn = connect(path)
    try:
        return conn, init_schema(conn, path, first_seq=first_seq)
    except BaseException:
        close_quietly(conn)
        raise


def _first_seq(
    reservation: SeqReservation, corrupt_file: Path | None, clock: Callable[[], float]
) -> int:
    # Used only when the database is created. Start above every seq that may
    # have been committed before, so the hub's (stream, seq) dedupe cannot eat
    # new records.
    if reservation.reserved is not None:
        return reservation.reserved + 1
    if corrupt_file is not None:
        # The database and the reservation are both gone: fall back to the
        # clock in microseconds, which no counter of at most one record per
        # microsecond can have passed (if the node's clock is right).
        return max(1, int(clock() * 1_000_000))
    return 1


def _check_limit(name: str, value: int) -> None:
    if type(value) is not int or value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


def _build_stats(
    levels: list[tuple[int, int, int]],
    counter_rows: list[tuple[str, str, int, int]],
    *,
    oldest_age_s: float | None,
    next_seq: int,
    max_bytes: int,
    corrupt_file: Path | None,
) -> OutboxStats:
    drops = tuple(DropCount(DropReason(r), s, p, n) for r, s, p, n in counter_rows)
    per_level: dict[tuple[DropReason, int], int] = {}
    for d in drops:
        per_level[(d.reason, d.priority)] = per_level.get((d.reason, d.priority), 0) + d.count
    depth = {p: (r, b) for p, r, b in levels}
    by_priority = tuple(
        PriorityStats(
            priority=p,
            depth=depth.get(p, (0, 0))[0],
            bytes=depth.get(p, (0, 0))[1],
            dropped_quota=per_level.get((DropReason.QUOTA, p), 0),
            expired=per_level.get((DropReason.EXPIRED, p), 0),
            dead_lettered=per_level.get((DropReason.DEAD_LETTER, p), 0),
        )
        for p in range(MIN_PRIORITY, MAX_PRIORITY + 1)
    )
    return OutboxStats(
        depth=sum(level.depth for level in by_priority),
        bytes=sum(level.bytes for level in by_priority),
        max_bytes=max_bytes,
        oldest_age_s=oldest_age_s,
        dropped_quota=sum(level.dropped_quota for level in by_priority),
        expired=sum(level.expired for level in by_priority),
        dead_lettered=sum(level.dead_lettered for level in by_priority),
        by_priority=by_priority,
        drops=drops,
        next_seq=next_seq,
        was_reset_after_corruption=corrupt_file is not None,
        corrupt_file=corrupt_file,
    )
