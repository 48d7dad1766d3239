"""The node's sense of time and chance, injected so a simulator can drive it.

Every retry loop of a node (enrollment, certificate renewal, reports, sync,
the updater's downloads) sleeps and draws its jitter through one `Clock`:
the agent uses the real one, a virtual node a seeded random source, so a
fleet run is reproducible from its seed.
"""

import asyncio
import datetime as dt
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Clock:
    """`monotonic` for ages (uptime), `sleep` for backoff waits, `rand` in [0, 1) for jitter,
    `now` for the wall-clock time certificate lifetimes are counted in (renewal, expiry).

    Waits on an event with a deadline (the report interval, the long poll)
    use the event loop's own clock through `asyncio.timeout`.
    """

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rand: Callable[[], float] = field(default=random.random)
    now: Callable[[], dt.datetime] = field(default=_utcnow)
