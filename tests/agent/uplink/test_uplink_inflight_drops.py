"""A record evicted or expired while the uplink's send of it is in flight:
the hub stores it, yet the outbox counts it dropped. Found by review; not
fixed (the outbox would have to know which records are in flight, or keep
a tombstone per drop to take back when the ack comes).

Both counters feed the node's report, whose `outbox-dropping` health warning
tells the operator records were lost. With a quota at its limit (the state
that evicts) every eviction races the uplink's batch in flight.
"""

import asyncio
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from fogline.agent.outbox import Outbox, OutboxRecord
from fogline.agent.uplink import Backoff, MemoryHubTransport, Uplink

PAYLOAD = orjson.dumps({"v": "x" * 100})


class PutWhileSending(MemoryHubTransport):
    """The agent keeps putting while a batch is on its way to the hub."""

    def __init__(self, box: Outbox, priority: int) -> None:
        super().__init__()
        self.box, self.priority = box, priority

    async def send_batch(self, records: Sequence[OutboxRecord]) -> None:
        if self.calls == 0:
            self.box.put("s", PAYLOAD, priority=self.priority, ttl_s=3600)
        await super().send_batch(records)


@pytest.mark.xfail(
    strict=True,
    reason="a record evicted by the quota while its send is in flight is stored by the "
    "hub and still counted in dropped_quota (design decision, see the docstring)",
)
def test_a_record_evicted_in_flight_and_stored_is_not_counted_dropped(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "outbox.db", max_bytes=len(PAYLOAD)) as box:
        box.put("s", PAYLOAD, priority=0, ttl_s=3600)
        hub = PutWhileSending(box, priority=5)  # evicts the priority-0 record in flight
        uplink = Uplink(box, hub, backoff=Backoff(initial_s=0.01))
        asyncio.run(uplink.drain())
        stored = sorted(seq for _, seq in hub.stored)
        stats = box.stats()
    assert stored == [1, 2]  # both records reached the hub, once
    assert (stats.depth, stats.dropped_quota) == (0, 0)  # got dropped_quota 1


@pytest.mark.xfail(
    strict=True,
    reason="a record that expires while its send is in flight is stored by the hub and "
    "still counted in expired (design decision, see the docstring)",
)
def test_a_record_expired_in_flight_and_stored_is_not_counted_expired(tmp_path: Path) -> None:
    now = [1000.0]
    with Outbox.open(tmp_path / "outbox.db", max_bytes=len(PAYLOAD), clock=lambda: now[0]) as box:
        box.put("s", PAYLOAD, priority=0, ttl_s=10)

        class LateAnswer(PutWhileSending):
            async def send_batch(self, records: Sequence[OutboxRecord]) -> None:
                now[0] += 30  # a slow upload: the TTL runs out before the answer
                await super().send_batch(records)

        hub = LateAnswer(box, priority=5)  # the put purges the expired record in flight
        asyncio.run(Uplink(box, hub, backoff=Backoff(initial_s=0.01)).drain())
        stored = sorted(seq for _, seq in hub.stored)
        stats = box.stats()
    assert stored == [1, 2]
    assert (stats.depth, stats.expired) == (0, 0)  # got expired 1
