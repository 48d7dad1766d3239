"""Uplink against the in-memory hub: exactly-once storage through outages, lost acks and rejections."""

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import orjson
import pytest

from fogline.agent.outbox import Outbox, OutboxItem, OutboxRecord
from fogline.agent.uplink import (
    Backoff,
    BatchRejectedError,
    HubRefusedError,
    HubUnreachableError,
    MemoryHubTransport,
    Uplink,
)
from tests.support.processes import wait_until_async


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "outbox.db", max_bytes=10**8) as ob:
        yield ob


def count_empty_reads(box: Outbox) -> list[int]:
    """Watch the uplink read the outbox: once a read found it empty, the uplink
    is idle (or about to wait), and records put after that are new to it."""
    empty: list[int] = []
    read = box.next_batch

    def next_batch(**limits: int) -> list[OutboxRecord]:
        batch = read(**limits)
        if not batch:
            empty.append(1)
        return batch

    box.next_batch = next_batch  # type: ignore[method-assign]
    return empty


def fill(box: Outbox, n: int, *, priority: int = 5, stream: str = "s") -> list[int]:
    return box.put_many(
        [OutboxItem(stream, orjson.dumps({"n": i}), priority, 3600) for i in range(n)]
    )


class FakeSleep:
    """Records backoff delays instead of sleeping; runs a hook after each."""

    def __init__(self, hook: Callable[[int], None] = lambda n: None) -> None:
        self.delays: list[float] = []
        self.hook = hook

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.hook(len(self.delays))
        await asyncio.sleep(0)


def make_uplink(box: Outbox, hub: object, sleep: FakeSleep | None = None, **kw: object) -> Uplink:
    return Uplink(
        box,
        hub,  # type: ignore[arg-type]
        backoff=Backoff(initial_s=0.5, max_s=8.0, rand=lambda: 1.0),
        sleep=sleep or FakeSleep(),
        **kw,  # type: ignore[arg-type]
    )


async def run_until(uplink: Uplink, done: Callable[[], bool], timeout_s: float = 10) -> None:
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until_async(lambda: done() or task.done(), timeout_s, "the uplink done", 0.001)
        if task.done():
            await task  # surface its exception
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_drain_delivers_everything_and_empties_the_outbox(box: Outbox) -> None:
    seqs = fill(box, 1234)
    hub = MemoryHubTransport()
    uplink = make_uplink(box, hub, batch_records=500)
    asyncio.run(uplink.drain())
    assert sorted(seq for _, seq in hub.stored) == seqs
    assert [len(b) for b in hub.applied] == [500, 500, 234]
    assert box.stats().depth == 0
    counters = uplink.counters
    assert (counters.sent, counters.batches, counters.failures) == (1234, 3, 0)
    assert counters.last_success_at is not None
    assert hub.stored[("s", seqs[7])].payload == {"n": 7}


def test_batches_respect_the_byte_limit(box: Outbox) -> None:
    box.put_many([OutboxItem("s", orjson.dumps("x" * 998), 1, 60) for _ in range(10)])
    hub = MemoryHubTransport()
    asyncio.run(make_uplink(box, hub, batch_bytes=3000).drain())
    assert [len(b) for b in hub.applied] == [3, 3, 3, 1]


def test_outage_with_lost_acks_stores_everything_exactly_once(box: Outbox) -> None:
    seqs = fill(box, 300)
    hub = MemoryHubTransport()
    hub.go_down()

    def link_events(failures: int) -> None:
        if failures == 4:
            hub.come_up()
            # The hub stores the next two batches but the answers are lost.
            hub.fail_next(2, after_apply=True)

    sleep = FakeSleep(link_events)
    uplink = make_uplink(box, hub, sleep, batch_records=100)
    # acked (depth 0) and counted: the counter moves just after the ack returns
    asyncio.run(run_until(uplink, lambda: box.stats().depth == 0 and uplink.counters.sent == 300))
    assert sorted(seq for _, seq in hub.stored) == seqs  # every record, once
    assert hub.duplicates == 200  # the two resent batches
    assert uplink.counters.failures == 6
    assert uplink.counters.sent == 300


def test_high_priority_is_drained_first_when_the_link_returns(box: Outbox) -> None:
    low = fill(box, 250, priority=1, stream="bulk")
    hub = MemoryHubTransport()
    hub.go_down()
    queued: list[int] = []
    # The link returns after three failed attempts, once the alarms are queued:
    # under load the uplink could fail three times before the test queued them.
    sleep = FakeSleep(lambda n: hub.come_up() if n >= 3 and queued else None)
    uplink = make_uplink(box, hub, sleep, batch_records=100)

    async def scenario() -> None:
        task = asyncio.create_task(uplink.run())
        try:
            await wait_until_async(lambda: sleep.delays, 10, "the outage begun", 0.001)
            high = fill(box, 150, priority=9, stream="alarm")  # queued during the outage
            queued.extend(high)
            uplink.notify()
            await wait_until_async(lambda: not box.stats().depth, 10, "the outbox drained", 0.001)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        delivered = [seq for batch in hub.applied for seq in batch]
        assert delivered == high + low

    asyncio.run(scenario())


def test_backoff_grows_during_an_outage_and_resets_after_a_success(box: Outbox) -> None:
    fill(box, 1)
    hub = MemoryHubTransport()
    hub.go_down()

    def events(n: int) -> None:
        if n == 6:
            hub.come_up()

    sleep = FakeSleep(events)
    uplink = make_uplink(box, hub, sleep)
    asyncio.run(run_until(uplink, lambda: box.stats().depth == 0))
    assert sleep.delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]  # capped at max_s

    fill(box, 1)
    hub.fail_next(2)
    asyncio.run(run_until(uplink, lambda: box.stats().depth == 0))
    assert sleep.delays[6:] == [0.5, 1.0]  # reset by the success
    assert uplink.counters.last_error == "hub unreachable: injected failure"


def test_a_rejected_record_is_dead_lettered_and_its_neighbours_delivered(box: Outbox) -> None:
    seqs = fill(box, 10)
    poison = seqs[6]
    hub = MemoryHubTransport()
    hub.reject_if = lambda r: r.seq == poison
    uplink = make_uplink(box, hub)
    asyncio.run(uplink.drain())
    assert sorted(seq for _, seq in hub.stored) == [s for s in seqs if s != poison]
    stats = box.stats()
    assert (stats.depth, stats.dead_lettered, stats.by_priority[5].dead_lettered) == (0, 1, 1)
    counters = uplink.counters
    assert (counters.dead_lettered, counters.sent) == (1, 9)
    assert counters.rejections == 4  # 10 -> 5 -> 3 -> 2 -> 1
    assert "HTTP 422" in (counters.last_error or "")


def test_a_batch_the_hub_refuses_entirely_is_dead_lettered_not_retried(box: Outbox) -> None:
    fill(box, 4)
    hub = MemoryHubTransport()
    hub.reject_if = lambda r: True
    uplink = make_uplink(box, hub)
    asyncio.run(uplink.drain())
    assert hub.stored == {}
    assert box.stats().dead_lettered == 4
    assert hub.calls == 7  # 4 + 2 + 1: bounded, never forever


class HangingHub:
    """A hub that accepts the connection and never answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def send_batch(self, records: Sequence[OutboxRecord]) -> None:
        self.calls += 1
        await asyncio.Event().wait()


def test_a_send_that_never_answers_times_out_and_keeps_the_batch(box: Outbox) -> None:
    fill(box, 3)
    hub = HangingHub()
    uplink = make_uplink(box, hub, send_timeout_s=0.01)
    with pytest.raises(HubUnreachableError, match="no answer"):
        asyncio.run(uplink.drain())
    assert box.stats().depth == 3
    assert uplink.counters.failures == 1


def test_cancelling_run_mid_send_propagates_and_acks_nothing(box: Outbox) -> None:
    fill(box, 3)
    hub = HangingHub()
    uplink = make_uplink(box, hub)

    async def scenario() -> None:
        task = asyncio.create_task(uplink.run())
        await wait_until_async(lambda: hub.calls, 5, "a send in flight", 0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert box.stats().depth == 3
    assert uplink.counters.failures == 0


class BuggyHub:
    def __init__(self) -> None:
        self.inner = MemoryHubTransport()
        self.calls = 0

    async def send_batch(self, records: Sequence[OutboxRecord]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise KeyError("bug in the transport")
        await self.inner.send_batch(records)


def test_an_unexpected_transport_error_is_retried_not_fatal(box: Outbox) -> None:
    seqs = fill(box, 5)
    hub = BuggyHub()
    sleep = FakeSleep()
    uplink = make_uplink(box, hub, sleep)
    asyncio.run(run_until(uplink, lambda: box.stats().depth == 0))
    assert sorted(seq for _, seq in hub.inner.stored) == seqs
    assert sleep.delays == [0.5]
    assert "KeyError" in (uplink.counters.last_error or "")


class RefusingThenThrottlingHub:
    """401 first (a certificate being renewed), then 429 with Retry-After, then stores."""

    def __init__(self) -> None:
        self.inner = MemoryHubTransport()
        self.calls = 0

    async def send_batch(self, records: Sequence[OutboxRecord]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise HubRefusedError(401, "unauthorized", "certificate not yet valid")
        if self.calls == 2:
            raise HubUnreachableError("HTTP 429", status=429, retry_after_s=5.0)
        await self.inner.send_batch(records)


def test_a_refused_identity_keeps_the_records_and_retry_after_is_honoured(box: Outbox) -> None:
    seqs = fill(box, 3)
    hub = RefusingThenThrottlingHub()
    sleep = FakeSleep()
    uplink = make_uplink(box, hub, sleep)
    asyncio.run(run_until(uplink, lambda: box.stats().depth == 0))
    assert sorted(seq for _, seq in hub.inner.stored) == seqs  # nothing dead-lettered
    assert uplink.counters.dead_lettered == 0 and uplink.counters.failures == 2
    # the 401 waits the usual backoff; the 429 at least its 5 s, plus the jittered draw
    assert sleep.delays == [0.5, 5.0 + 1.0]


def test_notify_wakes_an_idle_uplink_at_once(box: Outbox) -> None:
    hub = MemoryHubTransport()
    uplink = make_uplink(box, hub, idle_poll_s=3600)
    empty_reads = count_empty_reads(box)

    async def scenario() -> None:
        task = asyncio.create_task(uplink.run())
        try:
            await wait_until_async(lambda: empty_reads, 5, "idle, waiting up to an hour", 0.001)
            fill(box, 2)
            uplink.notify()
            # stored, then acked: wait for the ack, not just the store
            await wait_until_async(
                lambda: len(hub.stored) == 2 and not box.stats().depth, 5, "acked", 0.001
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert box.stats().depth == 0
    assert len(hub.stored) == 2


def test_without_notify_the_idle_poll_still_finds_records(box: Outbox) -> None:
    hub = MemoryHubTransport()
    uplink = make_uplink(box, hub, idle_poll_s=0.02)
    empty_reads = count_empty_reads(box)

    async def scenario() -> None:
        task = asyncio.create_task(uplink.run())
        try:
            await wait_until_async(lambda: empty_reads, 5, "idle", 0.001)
            fill(box, 2)
            await wait_until_async(lambda: len(hub.stored) == 2, 5, "stored", 0.005)
            # Stored at the hub, then acknowledged out of the outbox: the
            # second step may trail the first under load.
            await wait_until_async(lambda: box.stats().depth == 0, 5, "acknowledged", 0.005)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert len(hub.stored) == 2


def test_the_fake_hub_fails_on_command() -> None:
    hub = MemoryHubTransport()
    record = OutboxRecord(1, "s", 1, 1.0, 2.0, b"{}")
    hub.fail_next(1)
    with pytest.raises(HubUnreachableError):
        asyncio.run(hub.send_batch([record]))
    assert hub.stored == {}
    hub.fail_next(1, after_apply=True)
    with pytest.raises(HubUnreachableError):
        asyncio.run(hub.send_batch([record]))
    asyncio.run(hub.send_batch([record]))
    assert (len(hub.stored), hub.duplicates, hub.calls) == (1, 1, 3)
    hub.reject_if = lambda r: True
    with pytest.raises(BatchRejectedError):
        asyncio.run(hub.send_batch([record]))
    with pytest.raises(ValueError):
        hub.fail_next(-1)


@pytest.mark.parametrize(
    "kwargs",
    [{"batch_records": 0}, {"batch_bytes": -1}, {"idle_poll_s": 0}, {"send_timeout_s": -1.0}],
)
def test_nonsense_limits_are_refused(box: Outbox, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_uplink(box, MemoryHubTransport(), **kwargs)


def test_linger_lets_trickling_records_share_one_batch(box: Outbox) -> None:
    hub = MemoryHubTransport()
    uplink = make_uplink(box, hub, linger_s=0.3, idle_poll_s=3600)
    empty_reads = count_empty_reads(box)

    async def scenario() -> None:
        task = asyncio.create_task(uplink.run())
        try:
            await wait_until_async(lambda: empty_reads, 5, "idle", 0.001)
            for _ in range(3):  # three anomalies, 50 ms apart
                fill(box, 1, priority=9)
                uplink.notify()
                await asyncio.sleep(0.05)
            await wait_until_async(lambda: not box.stats().depth, 5, "the outbox drained", 0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert [len(batch) for batch in hub.applied] == [3]


def test_urgent_records_go_in_a_request_of_their_own_ahead_of_a_large_batch(box: Outbox) -> None:
    """Issue #18: batches grew to 2,000 records; an anomaly must not wait for
    the encoding and upload of a window's summaries queued beside it."""
    summaries = fill(box, 1000, priority=5, stream="summaries")
    anomalies = fill(box, 3, priority=9, stream="anomalies")
    hub = MemoryHubTransport()
    asyncio.run(make_uplink(box, hub, batch_records=2000).drain())
    assert hub.applied == [tuple(anomalies), tuple(summaries)]
