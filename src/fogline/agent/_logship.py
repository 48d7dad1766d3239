"""Module logs to the hub, through the outbox (store-and-forward like any data).

Each line of a module's stdout/stderr becomes a record of stream
`logs/<module>` at priority 1, so logs never crowd out data when the disk
quota bites, and a node that was offline still delivers its logs later.
`fogline logs DEVICE MODULE [--follow]` reads them back from the hub.

After an agent restart the follower starts at the end of files written
before the restart, so logs are not shipped twice; lines a module wrote
while the agent was down are not shipped.

A module that leaves the set (removed from the deployment, and stopped) is
followed until its log has been at its end for `DRAIN_QUIET_S`, at most
`DRAIN_MAX_S`, so its last lines are shipped; then its followers end and
close their files. Where each of its streams ended is remembered (the last
`MAX_POSITIONS` streams), so when a module of that name comes back, only
what it wrote since is shipped; a log truncated or replaced meanwhile is
followed afresh.
"""

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from .outbox import Outbox, OutboxItem
from .supervisor import LogFollower, LogPosition, Stream, log_path

LOG_PRIORITY: Final = 1
LOG_TTL_S: Final = 86400.0
MAX_LINE_BYTES: Final = 8192
FLUSH_S: Final = 0.5
POLL_S: Final = 0.25
NEW_OUTPUT_TAIL_BYTES: Final = 256 * 1024
# A removed module is done writing once its log has been still this long
# (the supervisor has already read its pipes into the file by then)...
DRAIN_QUIET_S: Final = 0.5
# ...and is followed no longer than this, however much it still writes.
DRAIN_MAX_S: Final = 5.0
# Streams whose position is kept for a module that may come back: about
# 200 bytes each; beyond this the oldest is forgotten (and that module, if
# it returns, is followed as a new one: up to NEW_OUTPUT_TAIL_BYTES again).
MAX_POSITIONS: Final = 1024
_STREAMS: Final[tuple[Stream, Stream]] = ("stdout", "stderr")


@dataclass(slots=True)
class _Followers:
    """The followers of one module's streams, and the flag that ends them."""

    leaving: asyncio.Event
    tasks: dict[Stream, "asyncio.Task[None]"]

    def are_done(self) -> bool:
        return all(task.done() for task in self.tasks.values())


class LogShipper:
    def __init__(
        self,
        logs_dir: Path,
        outbox: Outbox,
        modules: Callable[[], Iterable[str]],
        notify: Callable[[], None],
        *,
        drain_max_s: float = DRAIN_MAX_S,
        max_positions: int = MAX_POSITIONS,
    ) -> None:
        """`modules` names the modules to follow now: it is asked every FLUSH_S."""
        self.drain_max_s, self.max_positions = drain_max_s, max_positions
        self.logs_dir = logs_dir
        self.outbox = outbox
        self.modules = modules
        self.notify = notify
        self.pending: list[OutboxItem] = []
        self.started_at = time.time()
        self.shipped = 0
        self.positions: OrderedDict[tuple[str, Stream], LogPosition] = OrderedDict()

    def _line(self, module: str, stream: str, raw: bytes) -> None:
        line = raw[:MAX_LINE_BYTES].decode("utf-8", "replace").rstrip("\r")
        payload = orjson.dumps(
            {"module": module, "stream": stream, "line": line, "ts": round(time.time(), 3)}
        )
        self.pending.append(OutboxItem(f"logs/{module}", payload, LOG_PRIORITY, LOG_TTL_S))

    def _lines(self, module: str, stream: str, data: bytes) -> bytes:
        """Ship the whole lines of `data`; return the unfinished rest."""
        *lines, rest = data.split(b"\n")
        for raw in lines:
            self._line(module, stream, raw)
        if len(rest) > MAX_LINE_BYTES:  # a line without end: ship what we have
            self._line(module, stream, rest)
            rest = b""
        return rest

    def _remember(self, key: tuple[str, Stream], position: LogPosition | None) -> None:
        if position is None:  # never written: nothing was shipped, nothing to skip
            return
        self.positions[key] = position
        self.positions.move_to_end(key)
        while len(self.positions) > self.max_positions:
            self.positions.popitem(last=False)

    def _open(self, module: str, stream: Stream) -> LogFollower:
        resume = self.positions.pop((module, stream), None)
        # Output from before this agent started was shipped by the previous
        # run; output since (a module just started) is shipped from its start.
        # A module that was here before goes on where its follower stopped.
        path = log_path(self.logs_dir, module, stream)
        shipped_before = path.exists() and path.stat().st_mtime < self.started_at
        tail = 0 if shipped_before else NEW_OUTPUT_TAIL_BYTES
        return LogFollower(self.logs_dir, module, stream, tail_bytes=tail, resume=resume)

    async def _follow(self, module: str, stream: Stream, leaving: asyncio.Event) -> None:
        follower = self._open(module, stream)
        buffer = b""
        try:
            left_at: float | None = None  # when `leaving` was first seen set
            quiet_since: float | None = None  # at the end of the log since
            while True:
                now = time.monotonic()
                if not leaving.is_set():
                    left_at = None  # (back before its drain ended)
                elif left_at is None:
                    left_at, quiet_since = now, None
                elif now - left_at >= self.drain_max_s:
                    break
                chunk = follower.read()
                if chunk:
                    buffer = self._lines(module, stream, buffer + chunk)
                    quiet_since = None
                    await asyncio.sleep(0)  # a long backlog must not hold the loop
                    continue
                if left_at is not None:
                    if quiet_since is None:
                        quiet_since = now
                    elif now - quiet_since >= DRAIN_QUIET_S:
                        break
                await asyncio.sleep(POLL_S)
            # The module is gone: its last line may lack its newline.
            if buffer:
                self._line(module, stream, buffer)
            self._remember((module, stream), follower.position())
        finally:
            follower.close()

    async def _flush(self) -> None:
        if not self.pending:
            return
        items, self.pending = self.pending, []
        await asyncio.to_thread(self.outbox.put_many, items)
        self.shipped += len(items)
        self.notify()

    async def run(self) -> None:
        followed: dict[str, _Followers] = {}
        async with asyncio.TaskGroup() as tg:
            try:
                while True:
                    present = set(self.modules())
                    for module in present:
                        current = followed.get(module)
                        if current is None:
                            current = followed[module] = _Followers(asyncio.Event(), {})
                        current.leaving.clear()  # back before its drain ended, if leaving
                        for stream in _STREAMS:
                            # A stream done draining while the other was not
                            # is followed again, from where it stopped.
                            task = current.tasks.get(stream)
                            if task is None or task.done():
                                current.tasks[stream] = tg.create_task(
                                    self._follow(module, stream, current.leaving),
                                    name=f"logs:{module}:{stream}",
                                )
                    for module, current in list(followed.items()):
                        if module in present:
                            continue
                        if current.are_done():
                            del followed[module]
                        else:
                            current.leaving.set()
                    await asyncio.sleep(FLUSH_S)
                    await self._flush()
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._flush())
