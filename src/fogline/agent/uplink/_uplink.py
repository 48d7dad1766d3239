"""The loop that drains the outbox to the hub: next_batch -> send -> ack."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from fogline.agent._backoff import Backoff
from fogline.agent.outbox import Outbox, OutboxRecord
from fogline.hubclient import HubRefusedError, HubUnreachableError

from ._errors import BatchRejectedError
from ._transport import HubTransport

_log = logging.getLogger("fogline.agent.uplink")
URGENT_PRIORITY: Final = 8


@dataclass(frozen=True, slots=True)
class UplinkCounters:
    """A snapshot of the uplink's progress, for metrics and reports."""

    sent: int  # records the hub stored and the outbox then deleted
    batches: int  # successful sends
    failures: int  # sends that failed and will be retried (unreachable, timeout, bug)
    rejections: int  # BatchRejectedError answers, including those of split batches
    dead_lettered: int  # records the hub refused alone, removed from the outbox
    last_error: str | None
    last_success_at: float | None  # clock() of the last successful send


class Uplink:
    """Sends the outbox to the hub, highest priority first, deleting only what it stored.

    A send that fails with HubUnreachableError or HubRefusedError (or a
    timeout, or an unexpected transport error) leaves the batch queued and
    waits a full-jitter backoff, at least as long as the hub's Retry-After
    asks; after a timeout the next batches hold half as many records, so a
    batch too big for a slow link never blocks the queue. The hub dedupes on
    (stream, seq), so resending what it may already hold is safe. A rejected
    batch is split in halves and resent until each refused record stands
    alone; that record is dead-lettered (deleted from the outbox and counted
    there), so one bad record cannot block the queue nor take its neighbours
    with it.
    """

    def __init__(
        self,
        outbox: Outbox,
        transport: HubTransport,
        *,
        batch_records: int = 500,
        batch_bytes: int = 1_000_000,
        backoff: Backoff,
        idle_poll_s: float = 30.0,
        send_timeout_s: float = 60.0,
        linger_s: float = 0.0,
        urgent_priority: int = URGENT_PRIORITY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Raises:
        ValueError: a limit or a duration is not positive.
        """
        for name, value in (("batch_records", batch_records), ("batch_bytes", batch_bytes)):
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        for name, seconds in (("idle_poll_s", idle_poll_s), ("send_timeout_s", send_timeout_s)):
            if not seconds > 0:
                raise ValueError(f"{name}: expected a positive number, got {seconds!r}")
        self._outbox, self._transport, self._backoff = outbox, transport, backoff
        self._batch_records, self._batch_bytes = batch_records, batch_bytes
        self._idle_poll_s, self._send_timeout_s = idle_poll_s, send_timeout_s
        self._sleep, self._clock = sleep, clock
        # After a wake-up, wait this long before sending: records that trickle
        # in (one anomaly at a time) then share a batch, a request and its
        # compression, at the cost of that much delay to the cloud.
        self._linger_s = max(0.0, linger_s)
        self._urgent_priority = urgent_priority
        # Records per batch now: halved when a send times out (the batch is
        # too big for the link: sent whole again it would time out forever),
        # doubled back after a send that took under a quarter of the timeout.
        self._max_records = batch_records
        self._wake = asyncio.Event()
        self._sent = self._batches = self._failures = 0
        self._rejections = self._dead_lettered = self._consecutive_failures = 0
        self._last_error: str | None = None
        self._last_success_at: float | None = None

    @property
    def counters(self) -> UplinkCounters:
        return UplinkCounters(
            sent=self._sent,
            batches=self._batches,
            failures=self._failures,
            rejections=self._rejections,
            dead_lettered=self._dead_lettered,
            last_error=self._last_error,
            last_success_at=self._last_success_at,
        )

    def notify(self) -> None:
        """Wake an idle `run` because records were put. Call from the event loop."""
        self._wake.set()

    async def run(self) -> None:
        """Drain the outbox forever; stop by cancelling the task.

        Raises:
            OutboxStorageError: the outbox failed (the agent should restart).
        """
        # An Event belongs to the loop that first waits on it: make this run's
        # own, so an Uplink can be run again under a new loop. Nothing is lost:
        # the loop below drains before its first wait.
        self._wake = asyncio.Event()
        while True:
            try:
                await self.drain()
            except (HubUnreachableError, HubRefusedError) as exc:
                await self._sleep(self._backoff.next_delay(exc.retry_after_s))
                continue
            try:
                # Poll even without notify(): TTLs run out, and a missed notify
                # must not strand records until the next put.
                async with asyncio.timeout(self._idle_poll_s):
                    await self._wake.wait()
            except TimeoutError:
                continue
            if self._linger_s:
                await asyncio.sleep(self._linger_s)

    async def drain(self) -> None:
        """Send batches until the outbox is empty (e.g. once, before shutdown).

        Raises:
            HubUnreachableError, HubRefusedError: a send failed; its batch stays queued.
            OutboxStorageError: the outbox failed.
        """
        while True:
            # Clear before reading: a notify() that lands after an empty read
            # then wakes run() at once instead of being lost.
            self._wake.clear()
            batch = await asyncio.to_thread(
                self._outbox.next_batch,
                max_records=self._max_records,
                max_bytes=self._batch_bytes,
            )
            if not batch:
                return
            # Urgent records (priority >= urgent_priority: alarms, anomalies)
            # go in a request of their own, never behind the encoding and
            # upload of a batch of 2,000 summaries; the rest follows at once.
            cut = next(
                (i for i, r in enumerate(batch) if r.priority < self._urgent_priority), len(batch)
            )
            await self._deliver(batch[:cut] if cut else batch)

    async def _deliver(self, batch: list[OutboxRecord]) -> None:
        pending = [batch]
        while pending:
            part = pending.pop()
            try:
                await self._send(part)
            except BatchRejectedError as exc:
                self._rejections += 1
                self._last_error = str(exc)
                if len(part) > 1:
                    # Bisect to find the refused records; first half first,
                    # to keep priority order.
                    middle = len(part) // 2
                    pending += [part[middle:], part[:middle]]
                    continue
                [record] = part
                await asyncio.to_thread(self._outbox.dead_letter, [record.seq])
                self._dead_lettered += 1
                _log.warning(
                    "dead-lettered record seq %d of stream %s (priority %d): %s",
                    record.seq,
                    record.stream,
                    record.priority,
                    exc,
                )
                continue
            await asyncio.to_thread(self._outbox.ack, [r.seq for r in part])
            self._sent += len(part)

    async def _send(self, part: Sequence[OutboxRecord]) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await self._transport.send_batch(part)
        except BatchRejectedError:
            raise
        except (HubUnreachableError, HubRefusedError) as exc:
            self._fail(exc)
            raise
        except TimeoutError as exc:
            error = HubUnreachableError(f"hub unreachable: no answer in {self._send_timeout_s} s")
            self._fail(error)
            if len(part) > 1:
                self._max_records = min(self._max_records, len(part) // 2)
                _log.info("next batches hold at most %d records", self._max_records)
            raise error from exc
        except Exception as exc:
            # A transport bug must not stop the data plane: log it loudly and
            # retry with backoff like an outage. (CancelledError is not an
            # Exception and passes through.)
            _log.exception("unexpected error from %r", self._transport)
            error = HubUnreachableError(f"unexpected transport error: {exc!r}")
            self._fail(error)
            raise error from exc
        self._batches += 1
        self._last_success_at = self._clock()
        if time.monotonic() - started < self._send_timeout_s / 4:
            self._max_records = min(self._batch_records, self._max_records * 2)
        if self._consecutive_failures:
            _log.info("hub reachable again after %d failed send(s)", self._consecutive_failures)
        self._consecutive_failures = 0
        self._backoff.reset()

    def _fail(self, exc: HubUnreachableError | HubRefusedError) -> None:
        self._failures += 1
        self._last_error = str(exc)
        if not self._consecutive_failures:
            _log.warning("%s; retrying with backoff", exc)
        self._consecutive_failures += 1
