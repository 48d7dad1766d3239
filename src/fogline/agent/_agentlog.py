"""The agent's own log to the hub, as module logs go (`_logship.py`): through
the outbox, stream `logs/_agent` (no module can be named so: module names
have no `_`), read back with `fogline logs NODE --agent [--follow]`.

Bounded: lines of MAX_LINE_BYTES at most, AGENT_LOG_RATE lines a second
with a burst of AGENT_LOG_BURST (a node retrying a dead link must not fill
its outbox with its own complaints), at most MAX_PENDING lines waiting for
the next flush, and the outbox's priority 1 and TTL like module logs (data
wins when the disk quota bites). Lines dropped for the rate are counted and
said in the next line shipped. Each line is formatted by the agent's log
formatter, which writes `[redacted]` for every field named like a secret
(`fogline._log`), so a claim or token never leaves the node in the log.
"""

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import orjson

from fogline._log import HumanFormatter

from ._logship import FLUSH_S, LOG_PRIORITY, LOG_TTL_S, MAX_LINE_BYTES
from .outbox import Outbox, OutboxItem

AGENT_LOG_STREAM: Final = "logs/_agent"
AGENT_LOG_RATE: Final = 20.0  # lines a second, sustained
AGENT_LOG_BURST: Final = 200
MAX_PENDING: Final = 1000


class AgentLogHandler(logging.Handler):
    """Keeps the agent's log records as outbox items, rate-limited; the
    `AgentLogShipper` moves them into the outbox.

    `emit` only formats and appends (no I/O, no logging of its own): it is
    called from the event loop and from worker threads alike.
    """

    def __init__(
        self,
        *,
        rate: float = AGENT_LOG_RATE,
        burst: int = AGENT_LOG_BURST,
    ) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(HumanFormatter())
        self._rate, self._burst = rate, float(burst)
        self._tokens = float(burst)
        self._clock = time.monotonic
        self._last = self._clock()
        self._lock = threading.Lock()
        self.pending: deque[OutboxItem] = deque(maxlen=MAX_PENDING)
        self.dropped = 0  # lines not shipped (rate), since the last line shipped
        self.dropped_total = 0

    def _take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            with self._lock:
                if not self._take():
                    self.dropped += 1
                    self.dropped_total += 1
                    return
                dropped, self.dropped = self.dropped, 0
            line = self.format(record)
            if dropped:
                line = f"[{dropped} agent log lines not shipped: over {self._rate:g}/s] {line}"
            raw = line.encode("utf-8", "replace")[:MAX_LINE_BYTES]
            payload = {
                "module": "_agent",
                # As module output: warnings and errors on stderr, which
                # `fogline logs` marks.
                "stream": "stderr" if record.levelno >= logging.WARNING else "stdout",
                "level": record.levelname.lower(),
                "line": raw.decode("utf-8", "ignore"),
                "ts": round(record.created, 3),
            }
            self.pending.append(
                OutboxItem(AGENT_LOG_STREAM, orjson.dumps(payload), LOG_PRIORITY, LOG_TTL_S)
            )
        except Exception:  # a log line must never break the code that logs
            self.handleError(record)

    def take_pending(self) -> list[OutboxItem]:
        items: list[OutboxItem] = []
        with contextlib.suppress(IndexError):
            for _ in range(MAX_PENDING):
                items.append(self.pending.popleft())
        return items


class AgentLogShipper:
    """Installs an `AgentLogHandler` on the `fogline` logger for its run,
    and moves what it kept into the outbox every FLUSH_S."""

    def __init__(
        self,
        outbox: Outbox,
        notify: Callable[[], None],
        handler: AgentLogHandler | None = None,
    ) -> None:
        self.outbox, self.notify = outbox, notify
        self.handler = handler or AgentLogHandler()
        self.shipped = 0

    async def _flush(self) -> None:
        items = self.handler.take_pending()
        if not items:
            return
        await asyncio.to_thread(self.outbox.put_many, items)
        self.shipped += len(items)
        self.notify()

    async def run(self) -> None:
        logger = logging.getLogger("fogline")
        logger.addHandler(self.handler)
        try:
            while True:
                await asyncio.sleep(FLUSH_S)
                await self._flush()
        finally:
            logger.removeHandler(self.handler)  # process-wide: never left behind
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flush())
