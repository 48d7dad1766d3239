"""The disk quota: which records are dropped when the outbox is full, and the counts."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from fogline.agent.outbox import (
    DropCount,
    DropReason,
    Outbox,
    OutboxItem,
    OutboxStorageError,
    RecordRejectedError,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def sized(n: int) -> bytes:
    """A JSON payload of exactly n bytes."""
    return b'"' + b"x" * (n - 2) + b'"'


def queued(ob: Outbox) -> list[tuple[int, int]]:
    return sorted((r.priority, r.seq) for r in ob.next_batch(max_records=10_000, max_bytes=10**9))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def box(tmp_path: Path, clock: FakeClock) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "outbox.db", max_bytes=1000, clock=clock) as ob:
        yield ob


def test_filling_past_the_quota_drops_lowest_priority_oldest_first(box: Outbox) -> None:
    box.put_many([OutboxItem("bulk", sized(100), 5 if i % 2 == 0 else 1, 60) for i in range(10)])
    # p5: 1 3 5 7 9, p1: 2 4 6 8 10; exactly full.
    assert box.put("alerts", sized(100), priority=5, ttl_s=60) == 11  # evicts 2
    assert box.put("alerts", sized(250), priority=5, ttl_s=60) == 12  # evicts 4 6 8
    # Nothing at or below priority 0 to evict: the new record is refused, not stored.
    assert box.put("debug", sized(100), priority=0, ttl_s=60) == 13
    assert box.put("bulk", sized(100), priority=1, ttl_s=60) == 14  # evicts 10 (older p1)
    # All of p<=1 (100 bytes) cannot free 150: refuse it and keep seq 14.
    assert box.put("bulk", sized(200), priority=1, ttl_s=60) == 15
    assert queued(box) == [(1, 14), (5, 1), (5, 3), (5, 5), (5, 7), (5, 9), (5, 11), (5, 12)]
    assert box.put("alarm", sized(150), priority=9, ttl_s=60) == 16  # evicts 14

    assert queued(box) == [(5, 1), (5, 3), (5, 5), (5, 7), (5, 9), (5, 11), (5, 12), (9, 16)]
    stats = box.stats()
    assert stats.bytes == 1000
    assert stats.dropped_quota == 8
    assert [p.dropped_quota for p in stats.by_priority] == [1, 7, 0, 0, 0, 0, 0, 0, 0, 0]
    assert stats.drops == (
        DropCount(DropReason.QUOTA, "bulk", 1, 7),
        DropCount(DropReason.QUOTA, "debug", 0, 1),
    )


def test_a_batch_larger_than_the_quota_keeps_its_newest_records(box: Outbox) -> None:
    seqs = box.put_many([OutboxItem("s", sized(100), 3, 60) for _ in range(13)])
    assert seqs == list(range(1, 14))
    assert [seq for _, seq in queued(box)] == list(range(4, 14))
    assert box.stats().dropped_quota == 3


def test_expired_records_make_room_before_any_quota_drop(box: Outbox, clock: FakeClock) -> None:
    box.put_many([OutboxItem("old", sized(100), 9, 10) for _ in range(10)])
    clock.now += 10
    box.put("new", sized(100), priority=0, ttl_s=10)
    stats = box.stats()
    assert (stats.depth, stats.expired, stats.dropped_quota) == (1, 10, 0)


def test_a_record_larger_than_the_quota_is_rejected(box: Outbox) -> None:
    with pytest.raises(RecordRejectedError, match="at most 1000 bytes"):
        box.put("s", sized(1001), priority=9, ttl_s=60)
    assert box.stats().dropped_quota == 0


def test_drop_counts_persist_and_a_smaller_quota_applies_on_the_next_put(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "outbox.db"
    with Outbox.open(path, max_bytes=1000, clock=clock) as ob:
        ob.put_many([OutboxItem("s", sized(100), 2, 60) for _ in range(11)])
    with Outbox.open(path, max_bytes=500, clock=clock) as ob:
        assert ob.stats().dropped_quota == 1
        ob.put("s", sized(100), priority=2, ttl_s=60)
        stats = ob.stats()
        assert (stats.bytes, stats.dropped_quota) == (500, 7)
        assert [seq for _, seq in queued(ob)] == [8, 9, 10, 11, 12]


def test_a_full_disk_fails_the_put_and_keeps_everything_else(
    tmp_path: Path, clock: FakeClock
) -> None:
    with Outbox.open(tmp_path / "outbox.db", max_bytes=10**8, clock=clock) as ob:
        conn = ob._conn
        assert conn is not None
        # Cap the file so SQLite itself reports SQLITE_FULL, as a full disk does.
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages + 8}")
        stored: list[int] = []
        with pytest.raises(OutboxStorageError, match="full"):
            for _ in range(100):
                stored += ob.put_many([OutboxItem("s", sized(3000), 9, 60) for _ in range(2)])
        assert stored  # some puts fitted before the disk filled
        assert [seq for _, seq in queued(ob)] == stored
        assert ob.stats().depth == len(stored)
        conn.execute("PRAGMA max_page_count = 1000000")
        assert ob.put("s", sized(10), priority=1, ttl_s=60) == stored[-1] + 1
