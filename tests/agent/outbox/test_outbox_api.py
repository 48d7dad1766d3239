"""Outbox basics: ordering, ack, TTL, validation, stats, persistence across reopen."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from fogline import FoglineError
from fogline.agent.outbox import (
    MAX_RECORD_BYTES,
    DropCount,
    DropReason,
    Outbox,
    OutboxError,
    OutboxItem,
    OutboxStorageError,
    RecordRejectedError,
)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def payload(i: int, pad: int = 0) -> bytes:
    return orjson.dumps({"i": i, "pad": "x" * pad})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def box(tmp_path: Path, clock: FakeClock) -> Iterator[Outbox]:
    ob = Outbox.open(tmp_path / "outbox.db", max_bytes=10_000_000, clock=clock)
    yield ob
    ob.close()


def test_errors_hang_under_fogline_error() -> None:
    assert issubclass(OutboxError, FoglineError)
    assert issubclass(RecordRejectedError, OutboxError)
    assert issubclass(OutboxStorageError, OutboxError)


def test_database_is_wal_with_full_sync(box: Outbox) -> None:
    conn = box._conn
    assert conn is not None
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_batches_come_highest_priority_first_then_oldest(box: Outbox) -> None:
    seqs = box.put_many([OutboxItem("s", payload(i), i % 3, 60) for i in range(9)])
    assert seqs == list(range(1, 10))
    batch = box.next_batch(max_records=100, max_bytes=1_000_000)
    assert [(r.priority, r.seq) for r in batch] == [
        (2, 3), (2, 6), (2, 9), (1, 2), (1, 5), (1, 8), (0, 1), (0, 4), (0, 7),
    ]  # fmt: skip
    assert orjson.loads(batch[0].payload) == {"i": 2, "pad": ""}


def test_next_batch_respects_record_and_byte_limits(box: Outbox) -> None:
    box.put_many([OutboxItem("s", payload(i, pad=90), 5, 60) for i in range(10)])
    size = len(payload(0, pad=90))
    assert len(box.next_batch(max_records=3, max_bytes=1_000_000)) == 3
    assert len(box.next_batch(max_records=100, max_bytes=size * 4 + 1)) == 4
    # One record over the byte limit still comes alone, or it would block the queue.
    assert len(box.next_batch(max_records=100, max_bytes=1)) == 1


def test_next_batch_does_not_remove_records(box: Outbox) -> None:
    box.put("s", payload(1), priority=1, ttl_s=60)
    first = box.next_batch(max_records=10, max_bytes=10_000)
    assert box.next_batch(max_records=10, max_bytes=10_000) == first


def test_ack_deletes_exactly_those_and_is_idempotent(box: Outbox) -> None:
    seqs = box.put_many([OutboxItem("s", payload(i), 1, 60) for i in range(5)])
    assert box.ack([seqs[1], seqs[3], 999]) == 2
    assert box.ack([seqs[1], seqs[3]]) == 0
    assert box.ack([]) == 0
    assert [r.seq for r in box.next_batch(max_records=10, max_bytes=10_000)] == [
        seqs[0], seqs[2], seqs[4],
    ]  # fmt: skip
    assert box.stats().depth == 3


def test_ack_of_many_seqs_spans_chunks(box: Outbox) -> None:
    seqs = box.put_many([OutboxItem("s", payload(i), 1, 60) for i in range(1500)])
    assert box.ack(seqs[:1200]) == 1200
    assert box.stats().depth == 300


def test_expired_records_are_counted_not_returned(box: Outbox, clock: FakeClock) -> None:
    box.put("short", payload(1), priority=9, ttl_s=10)
    keep = box.put("long", payload(2), priority=0, ttl_s=100)
    clock.now += 10  # expires exactly now: expired
    assert [r.seq for r in box.next_batch(max_records=10, max_bytes=10_000)] == [keep]
    stats = box.stats()
    assert stats.expired == 1
    assert stats.by_priority[9].expired == 1
    assert DropCount(DropReason.EXPIRED, "short", 9, 1) in stats.drops


def test_seq_is_never_reused_after_delete_and_reopen(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "outbox.db"
    with Outbox.open(path, max_bytes=1_000_000, clock=clock) as ob:
        seqs = ob.put_many([OutboxItem("s", payload(i), 1, 60) for i in range(3)])
        ob.ack(seqs)
    with Outbox.open(path, max_bytes=1_000_000, clock=clock) as ob:
        assert ob.put("s", payload(9), priority=1, ttl_s=60) == seqs[-1] + 1


def test_counters_and_records_survive_reopen(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "outbox.db"
    with Outbox.open(path, max_bytes=1_000_000, clock=clock) as ob:
        a, _expiring, _also_expiring = ob.put_many(
            [OutboxItem("s", payload(i), 2, 10) for i in range(3)]
        )
        ob.dead_letter([a])
        clock.now += 5
        d = ob.put("t", payload(4), priority=7, ttl_s=60)
        clock.now += 5
        ob.next_batch(max_records=1, max_bytes=10_000)  # purges the two expiring ones
    with Outbox.open(path, max_bytes=1_000_000, clock=clock) as ob:
        stats = ob.stats()
        assert (stats.depth, stats.dead_lettered, stats.expired) == (1, 1, 2)
        assert stats.oldest_age_s == 5.0
        assert [r.seq for r in ob.next_batch(max_records=9, max_bytes=10_000)] == [d]
        assert not stats.was_reset_after_corruption


def test_stats_of_an_empty_outbox(box: Outbox) -> None:
    stats = box.stats()
    assert (stats.depth, stats.bytes, stats.oldest_age_s, stats.next_seq) == (0, 0, None, 1)
    assert [p.priority for p in stats.by_priority] == list(range(10))


def test_oldest_age_is_never_negative_after_the_clock_steps_back(
    box: Outbox, clock: FakeClock
) -> None:
    box.put("s", payload(1), priority=1, ttl_s=600)
    clock.now -= 100
    assert box.stats().oldest_age_s == 0.0


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (OutboxItem("", b"{}", 1, 60), "stream"),
        (OutboxItem("a b", b"{}", 1, 60), "stream"),
        (OutboxItem("x" * 129, b"{}", 1, 60), "stream"),
        (OutboxItem("s", b"{}", 10, 60), "priority"),
        (OutboxItem("s", b"{}", -1, 60), "priority"),
        (OutboxItem("s", b"{}", True, 60), "priority"),
        (OutboxItem("s", b"{}", 1, 0), "ttl_s"),
        (OutboxItem("s", b"{}", 1, float("inf")), "ttl_s"),
        (OutboxItem("s", b"{}", 1, float("nan")), "ttl_s"),
        (OutboxItem("s", "{}", 1, 60), "payload"),  # type: ignore[arg-type]
        (OutboxItem("s", b"not json", 1, 60), "payload"),
        (OutboxItem("s", b"\xff\xfe", 1, 60), "payload"),
        (OutboxItem("s", b'"' + b"x" * MAX_RECORD_BYTES + b'"', 1, 60), "payload"),
    ],
)
def test_invalid_records_are_rejected_and_nothing_of_the_batch_is_written(
    box: Outbox, item: OutboxItem, field: str
) -> None:
    good = OutboxItem("s", payload(1), 1, 60)
    with pytest.raises(RecordRejectedError) as info:
        box.put_many([good, item])
    assert info.value.field == field
    assert box.stats().depth == 0
    assert box.stats().next_seq == 1


def test_bad_limits_and_seqs_are_programming_errors(box: Outbox) -> None:
    with pytest.raises(ValueError, match="max_records"):
        box.next_batch(max_records=0, max_bytes=10)
    with pytest.raises(ValueError, match="max_bytes"):
        box.next_batch(max_records=1, max_bytes=-1)
    with pytest.raises(TypeError):
        box.ack(["1"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_bytes"):
        Outbox.open(box.path.with_name("other.db"), max_bytes=0)


def test_a_closed_outbox_raises_storage_error(box: Outbox) -> None:
    box.close()
    box.close()  # idempotent
    with pytest.raises(OutboxStorageError, match="closed"):
        box.put("s", b"{}", priority=1, ttl_s=1)
    with pytest.raises(OutboxStorageError, match="closed"):
        box.stats()


def test_a_failed_transaction_leaves_nothing_behind(box: Outbox) -> None:
    box.put("s", payload(0), priority=1, ttl_s=60)
    conn = box._conn
    assert conn is not None
    # Make the next insert fail inside SQLite, as a full disk would.
    conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON records WHEN NEW.stream = 'boom'"
        " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(OutboxStorageError, match="disk full") as info:
        box.put_many([OutboxItem("s", payload(1), 1, 60), OutboxItem("boom", payload(2), 1, 60)])
    assert isinstance(info.value.__cause__, sqlite3.Error)
    stats = box.stats()
    assert (stats.depth, stats.next_seq) == (1, 2)
    assert box.put("s", payload(3), priority=1, ttl_s=60) == 2
