"""Module logs to the hub, through the outbox (store-and-forward like any data).

Each line of a module's stdout/stderr becomes a record of stream
`logs/<module>` at priority 1, so logs never crowd out data when the disk
quota bites, and a node that was offline still delivers its logs later.
`fogline logs DEVICE MODULE [--follow]` reads them back from the hub.

After an agent restart the follower starts at the end of files written
before the restart, so logs are not shipped twice; lines a module wrote
while the agent was down are not shipped.
"""

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

import orjson

from .outbox import Outbox, OutboxItem
from .supervisor import Stream, follow_log, log_path

LOG_PRIORITY: Final = 1
LOG_TTL_S: Final = 86400.0
MAX_LINE_BYTES: Final = 8192
FLUSH_S: Final = 0.5
NEW_OUTPUT_TAIL_BYTES: Final = 256 * 1024


class LogShipper:
    def __init__(
        self,
        logs_dir: Path,
        outbox: Outbox,
        modules: Callable[[], Iterable[str]],
        notify: Callable[[], None],
    ) -> None:
        self.logs_dir = logs_dir
        self.outbox = outbox
        self.modules = modules
        self.notify = notify
        self.pending: list[OutboxItem] = []
        self.started_at = time.time()
        self.shipped = 0

    def _line(self, module: str, stream: str, raw: bytes) -> None:
        line = raw[:MAX_LINE_BYTES].decode("utf-8", "replace").rstrip("\r")
        payload = orjson.dumps(
            {"module": module, "stream": stream, "line": line, "ts": round(time.time(), 3)}
        )
        self.pending.append(OutboxItem(f"logs/{module}", payload, LOG_PRIORITY, LOG_TTL_S))

    async def _follow(self, module: str, stream: Stream) -> None:
        # Output from before this agent started was shipped by the previous
        # run; output since (a module just started) is shipped from its start.
        path = log_path(self.logs_dir, module, stream)
        shipped_before = path.exists() and path.stat().st_mtime < self.started_at
        tail = 0 if shipped_before else NEW_OUTPUT_TAIL_BYTES
        buffer = b""
        async for chunk in follow_log(self.logs_dir, module, stream, tail_bytes=tail, poll_s=0.25):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                self._line(module, stream, raw)
            if len(buffer) > MAX_LINE_BYTES:  # a line without end: ship what we have
                self._line(module, stream, buffer)
                buffer = b""

    async def _flush(self) -> None:
        if not self.pending:
            return
        items, self.pending = self.pending, []
        await asyncio.to_thread(self.outbox.put_many, items)
        self.shipped += len(items)
        self.notify()

    async def run(self) -> None:
        followed: set[str] = set()
        async with asyncio.TaskGroup() as tg:
            try:
                while True:
                    for module in set(self.modules()) - followed:
                        followed.add(module)
                        streams: tuple[Stream, Stream] = ("stdout", "stderr")
                        for stream in streams:
                            tg.create_task(self._follow(module, stream), name=f"logs:{module}")
                    await asyncio.sleep(FLUSH_S)
                    await self._flush()
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._flush())
