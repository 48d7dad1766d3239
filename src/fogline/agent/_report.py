"""The report loop: tell the hub what the node is, at the hub's pace or sooner.

A refusal (say, a revoked device) is logged loudly but does not stop the
node: its local workloads keep running, and it keeps trying.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fogline._log import event
from fogline.hubclient import HubError, HubUnreachableError
from fogline.protocol import Report, ReportAck

from ._backoff import Backoff
from ._clock import Clock
from ._hublink import HubLink

log = logging.getLogger("fogline.agent")

REPORT_BACKOFF_INITIAL_S = 1.0
REPORT_BACKOFF_MAX_S = 60.0


class Reporter:
    """Sends `build()` to the hub every `interval_s` (the hub's ack sets it),
    or as soon as `poke()` says something worth reporting happened.

    `on_sent` is awaited after each report the hub accepted, before the
    wait: the node acts on the ack there (the renewer learns which CA the
    hub issues from; an agent on trial after its own update confirms it).
    `on_failed` is told each failure.
    """

    def __init__(
        self,
        build: Callable[[], Awaitable[Report]],
        *,
        interval_s: float,
        clock: Clock | None = None,
        on_sent: Callable[[ReportAck], Awaitable[None]] | None = None,
        on_failed: Callable[[HubError], None] | None = None,
    ) -> None:
        self._build = build
        self.interval_s = interval_s
        self._clock = clock or Clock()
        self._on_sent, self._on_failed = on_sent, on_failed
        self._now = asyncio.Event()

    def poke(self) -> None:
        """Report now rather than at the end of the interval."""
        self._now.set()

    async def run(self, link: HubLink) -> None:
        """Report until cancelled; never raises for the hub's answers."""
        backoff = Backoff(
            initial_s=REPORT_BACKOFF_INITIAL_S, max_s=REPORT_BACKOFF_MAX_S, rand=self._clock.rand
        )
        while True:
            try:
                ack = await link.call("POST", "/v1/report", await self._build(), ReportAck)
            except HubError as exc:
                result = "unreachable" if isinstance(exc, HubUnreachableError) else "refused"
                if self._on_failed is not None:
                    self._on_failed(exc)
                delay = backoff.next_delay(exc.retry_after_s)
                event(
                    log,
                    f"agent.report_{result}",
                    logging.WARNING,
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                )
                await self._clock.sleep(delay)
                continue
            backoff.reset()
            self.interval_s = ack.report_interval_s
            if self._on_sent is not None:
                await self._on_sent(ack)
            await self._wait_for_next()

    async def _wait_for_next(self) -> None:
        """Sleep one interval, or less when something worth reporting happened."""
        try:
            async with asyncio.timeout(self.interval_s):
                await self._now.wait()
        except TimeoutError:
            pass
        self._now.clear()
