"""The rollout scheduler: one tick about every second in each hub replica.

Every replica runs it; the rollout lock lets one tick at a time do the work,
so replicas need no coordination of their own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING

from fogline._log import event

from .._clock import utcnow
from ._engine import tick

if TYPE_CHECKING:
    # Only a type here: the hub's state holds the validators, which import
    # this package's policy checks.
    from .._state import HubState

log = logging.getLogger("fogline.hub.rollout")


def scheduler_tick(state: HubState, watching_since: dt.datetime | None = None) -> int | None:
    """One tick in its own transaction; None when another replica ticks now."""
    with state.transaction() as session:
        return tick(session, state.settings.offline_after_s, watching_since)


async def run_scheduler(state: HubState) -> None:
    """Tick forever; a failed tick is logged and retried on the next one.

    Waves are judged only on what this process saw since it started ticking:
    after a hub outage longer than a wave's timeout, the devices get their
    time to reconnect before any is counted offline or timed out.
    """
    watching_since = utcnow()
    while True:
        await asyncio.sleep(state.settings.rollout_tick_s)
        try:
            changed = await asyncio.to_thread(scheduler_tick, state, watching_since)
        except Exception as exc:  # the database may blip; ticks must go on
            event(log, "rollout.tick_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}")
            continue
        if changed:
            state.notifier.poke()
