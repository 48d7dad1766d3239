"""The outbox against a plain in-memory model: puts, batches, acks, quota, TTL, restarts."""

import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fogline.agent.outbox import DropReason, Outbox, OutboxItem

MAX_BYTES = 600


@dataclass(frozen=True)
class Rec:
    seq: int
    stream: str
    priority: int
    created: float
    expires: float
    payload: bytes


class Model:
    """The spec, written the obvious way: lists and sorts, no SQL."""

    def __init__(self) -> None:
        self.records: dict[int, Rec] = {}
        self.next_seq = 1
        self.drops: Counter[tuple[str, str, int]] = Counter()
        self.acked = 0

    @property
    def bytes(self) -> int:
        return sum(len(r.payload) for r in self.records.values())

    def purge(self, now: float) -> None:
        for r in [r for r in self.records.values() if r.expires <= now]:
            del self.records[r.seq]
            self.drops[("expired", r.stream, r.priority)] += 1

    def put(self, item: OutboxItem, now: float) -> int:
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        size = len(item.payload)
        if self.bytes + size > MAX_BYTES:
            self.purge(now)
        over = self.bytes + size - MAX_BYTES
        if over > 0:
            victims = sorted(
                (r for r in self.records.values() if r.priority <= item.priority),
                key=lambda r: (r.priority, r.seq),
            )
            if sum(len(r.payload) for r in victims) < over:
                self.drops[("quota", item.stream, item.priority)] += 1
                return seq
            for r in victims:
                if over <= 0:
                    break
                del self.records[r.seq]
                self.drops[("quota", r.stream, r.priority)] += 1
                over -= len(r.payload)
        self.records[seq] = Rec(
            seq, item.stream, item.priority, now, now + item.ttl_s, item.payload
        )
        return seq

    def next_batch(self, max_records: int, max_bytes: int, now: float) -> list[Rec]:
        self.purge(now)
        out: list[Rec] = []
        used = 0
        for r in sorted(self.records.values(), key=lambda r: (-r.priority, r.seq)):
            if len(out) == max_records or (out and used + len(r.payload) > max_bytes):
                break
            out.append(r)
            used += len(r.payload)
        return out

    def delete(self, seqs: list[int], reason: str | None) -> int:
        gone = [self.records.pop(s) for s in set(seqs) if s in self.records]
        for r in gone:
            if reason is None:
                self.acked += 1
            else:
                self.drops[(reason, r.stream, r.priority)] += 1
        return len(gone)


def sized(n: int) -> bytes:
    return b'"' + b"x" * (n - 2) + b'"'


items = st.builds(
    OutboxItem,
    stream=st.sampled_from(["temp", "alarm/line-1"]),
    payload=st.integers(2, 160).map(sized),
    priority=st.integers(0, 9),
    ttl_s=st.sampled_from([3.0, 10.0, 1000.0]),
)


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-model-"))
        self.now = 1_000.0
        self.model = Model()
        self.box = self._open()
        self.last_batch: list[int] = []

    def _open(self) -> Outbox:
        return Outbox.open(self.dir / "outbox.db", max_bytes=MAX_BYTES, clock=lambda: self.now)

    @rule(item=items)
    def put(self, item: OutboxItem) -> None:
        seq = self.box.put(item.stream, item.payload, priority=item.priority, ttl_s=item.ttl_s)
        assert seq == self.model.put(item, self.now)

    @rule(batch=st.lists(items, max_size=8))
    def put_many(self, batch: list[OutboxItem]) -> None:
        assert self.box.put_many(batch) == [self.model.put(i, self.now) for i in batch]

    @rule(seconds=st.sampled_from([0.5, 2.0, 3.0, 7.0, 20.0]))
    def advance_clock(self, seconds: float) -> None:
        self.now += seconds

    @rule(max_records=st.integers(1, 12), max_bytes=st.integers(1, 500))
    def next_batch(self, max_records: int, max_bytes: int) -> None:
        got = self.box.next_batch(max_records=max_records, max_bytes=max_bytes)
        want = self.model.next_batch(max_records, max_bytes, self.now)
        assert [
            Rec(r.seq, r.stream, r.priority, r.created, r.expires, r.payload) for r in got
        ] == want
        keys = [(-r.priority, r.seq) for r in got]
        assert keys == sorted(keys)
        self.last_batch = [r.seq for r in got]

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        chosen = data.draw(st.lists(st.sampled_from([*self.last_batch, 0, 10_000])))
        assert self.box.ack(chosen) == self.model.delete(chosen, None)

    @precondition(lambda self: self.last_batch)
    @rule(data=st.data())
    def dead_letter(self, data: st.DataObject) -> None:
        chosen = data.draw(st.lists(st.sampled_from(self.last_batch), max_size=2))
        assert self.box.dead_letter(chosen) == self.model.delete(chosen, "dead_letter")

    @rule()
    def restart(self) -> None:
        self.box.close()
        self.box = self._open()

    @invariant()
    def rows_match_the_model(self) -> None:
        conn = self.box._conn
        assert conn is not None
        rows = conn.execute(
            "SELECT seq, stream, priority, created, expires, payload FROM records ORDER BY seq"
        ).fetchall()
        assert [Rec(*row) for row in rows] == sorted(
            self.model.records.values(), key=lambda r: r.seq
        )

    @invariant()
    def stats_and_counts_add_up(self) -> None:
        stats = self.box.stats()
        model = self.model
        assert (stats.depth, stats.bytes, stats.next_seq) == (
            len(model.records),
            model.bytes,
            model.next_seq,
        )
        assert stats.bytes <= MAX_BYTES
        assert {(str(d.reason), d.stream, d.priority): d.count for d in stats.drops} == dict(
            +model.drops
        )
        # Every seq ever issued is queued, acked, or counted under exactly one reason.
        assert (
            stats.depth + model.acked + stats.dropped_quota + stats.expired + stats.dead_lettered
            == stats.next_seq - 1
        )
        assert stats.dropped_quota == sum(
            n for (reason, _, _), n in model.drops.items() if reason == DropReason.QUOTA
        )

    def teardown(self) -> None:
        self.box.close()
        shutil.rmtree(self.dir, ignore_errors=True)


OutboxMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
test_outbox_matches_the_model = OutboxMachine.TestCase
