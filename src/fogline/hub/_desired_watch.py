"""Wake a device's long-poll when its desired state changes, on any replica.

Split from _desired.py: that module writes desired state and stamps each
change with the next `fleet_generation.desired_seq`; this one watches those
numbers and answers the polls.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fogline._log import event

log = logging.getLogger("fogline.hub.desired")


@dataclass(frozen=True, slots=True)
class Woken:
    """How a long-poll's wait ended: `changed` (or the hub is stopping), and
    what the watcher read for the device, if anything."""

    changed: bool
    payload: Any = None


class DesiredNotifier:
    """Wakes a long-polling device when its desired state changes, whichever
    hub replica made the change.

    Each replica keeps the last change number of every device and one task
    asks the database for the devices changed since the last look (one
    indexed query per tick, answered from memory when nothing changed). Only
    the long-polls of those devices wake: a rollout wave that changes 100
    devices costs 100 reads, not one per device in the fleet. A change made
    in this process (`poke`) is looked up at once instead of at the next tick.

    With `read_woken`, the watcher also reads what the woken devices are to
    be answered, in one batch, and hands each poll its part: a change to a
    thousand devices cost a thousand threads each reading the database
    again, all at the same moment.
    """

    def __init__(self, tick_s: float = 0.5) -> None:
        self.tick_s = tick_s
        self.closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poked = asyncio.Event()
        self._last_seq = -1  # nothing read yet: the first look loads every device
        self._seqs: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def close(self) -> None:
        """Thread-safe. The hub is stopping: answer every long-poll now, so
        shutdown is quick."""
        self.closing = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_all)

    def poke(self) -> None:
        """Thread-safe: called after committing a desired-state change."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._poked.set)

    async def wait(self, device_id: str, seen_seq: int, timeout_s: float) -> bool:
        """Wait until the device's desired state changes after `seen_seq`
        (the `seq` of the row the caller read). True when it did or the hub
        is stopping; False on timeout."""
        return (await self.wait_for(device_id, seen_seq, timeout_s)).changed

    async def wait_for(self, device_id: str, seen_seq: int, timeout_s: float) -> "Woken":
        """`wait`, with what the watcher read for the device when it woke the
        poll (`read_woken`; None when it read nothing for it)."""
        if self.closing or self._seqs.get(device_id, -1) > seen_seq:
            return Woken(changed=True)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = (seen_seq, future)
        waiters = self._waiters.setdefault(device_id, [])
        waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                payload = await future
        except TimeoutError:
            return Woken(changed=False)
        finally:
            waiters.remove(entry)
            if not waiters:
                del self._waiters[device_id]
        return Woken(changed=True, payload=payload)

    async def watch(
        self,
        read_changes: Callable[[int], list[tuple[str, int]]],
        read_woken: Callable[[list[str]], Mapping[str, Any]] | None = None,
    ) -> None:
        """The replica's watcher: runs for the app's lifetime.

        A failed read (a locked or unreachable database) is logged and
        retried at the next tick; polls still end at their timeout meanwhile.
        A failed `read_woken` wakes the polls without their part: each reads
        its own.
        """
        while True:
            try:
                changes = await asyncio.to_thread(read_changes, self._last_seq)
            except Exception as exc:
                event(log, "desired.watch_failed", logging.WARNING, error=f"{type(exc).__name__}")
            else:
                await self._wake(self._apply(changes), read_woken)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_s):
                    await self._poked.wait()
            self._poked.clear()

    def _apply(self, changes: list[tuple[str, int]]) -> dict[str, list[asyncio.Future[Any]]]:
        """Record the changes; the polls they wake, by device."""
        woken: dict[str, list[asyncio.Future[Any]]] = {}
        for device_id, seq in changes:
            if seq <= self._seqs.get(device_id, -1):
                continue
            self._seqs[device_id] = seq
            self._last_seq = max(self._last_seq, seq)
            for seen_seq, future in self._waiters.get(device_id, ()):
                if seq > seen_seq and not future.done():
                    woken.setdefault(device_id, []).append(future)
        return woken

    async def _wake(
        self,
        woken: dict[str, list[asyncio.Future[Any]]],
        read_woken: Callable[[list[str]], Mapping[str, Any]] | None,
    ) -> None:
        payloads: Mapping[str, Any] = {}
        if woken and read_woken is not None:
            try:
                payloads = await asyncio.to_thread(read_woken, list(woken))
            except Exception as exc:  # each poll reads its own instead
                event(log, "desired.prefetch_failed", logging.WARNING, error=type(exc).__name__)
        for device_id, futures in woken.items():
            for future in futures:
                if not future.done():  # a poll may have timed out meanwhile
                    future.set_result(payloads.get(device_id))

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for _seen, future in waiters:
                if not future.done():
                    future.set_result(None)
