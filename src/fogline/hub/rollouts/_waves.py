"""The database steps every rollout path shares: the rollout lock, a state
transition with its audit record, and starting a wave.

Every mutation of rollouts takes one database lock (`lock_rollouts`), so an
apply, an operator action and the ticks of several hub replicas never
interleave: PostgreSQL advisory transaction locks, and on SQLite the write
lock of the single database file.
"""

from collections.abc import Sequence
from typing import Final

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from fogline.manifest import DesiredState

from .._audit import record_audit
from .._clock import utcnow
from .._desired import (
    ID_CHUNK,
    served_revisions,
    store_desired_many,
)
from .._schema import (
    DeviceRow,
    FleetGenerationRow,
    RolloutDeviceRow,
    RolloutRow,
)
from ._machine import (
    ACTIVE,
    DeviceState,
    Event,
    State,
    next_state,
)

# Any constant works; it only has to be the same in every hub replica.
ROLLOUT_LOCK_ID: Final = 0x666F6C52
# Why a member is not watched for its target: something outside the rollout
# (a label change, a quarantine, a later rollout) changed what its device is
# served, so the target compiled at the rollout's start is stale.
CHANGED_OUTSIDE: Final = "desired state changed outside the rollout"


def lock_rollouts(session: Session, *, wait: bool) -> bool:
    """Take the rollout lock until the transaction ends; False if busy (wait=False).

    PostgreSQL: an advisory transaction lock. SQLite: a no-op write takes the
    database's write lock, which holds until commit (one writer at a time).
    """
    if session.get_bind().dialect.name == "postgresql":
        if wait:
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ROLLOUT_LOCK_ID})
            return True
        got = session.scalar(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": ROLLOUT_LOCK_ID})
        return bool(got)
    session.execute(
        update(FleetGenerationRow)
        .where(FleetGenerationRow.id == 1)
        .values(generation=FleetGenerationRow.generation)
    )
    return True


def transition(
    session: Session, rollout: RolloutRow, event: Event, actor: str, reason: str | None = None
) -> State:
    state = State(rollout.state)
    new = next_state(state, event)  # the callers fire only what applies: see operate()
    now = utcnow()
    rollout.state, rollout.updated_at = new.value, now
    if reason:
        rollout.reason = reason[:1024]
    if new not in ACTIVE:
        rollout.ended_at = now
    record_audit(
        session,
        actor,
        f"rollout.{event.value}",
        rollout.id,
        deployments=rollout.deployments,
        state=new.value,
        previous_state=state.value,
        reason=reason,
    )
    return new


def enrolled_device_ids(
    session: Session, ids: Sequence[str], *, include_revoked: bool = True
) -> set[str]:
    """Which of `ids` are enrolled (revoked ones too unless `include_revoked` is False)."""
    found: set[str] = set()
    for start in range(0, len(ids), ID_CHUNK):
        query = select(DeviceRow.id).where(DeviceRow.id.in_(ids[start : start + ID_CHUNK]))
        if not include_revoked:
            query = query.where(DeviceRow.revoked_at.is_(None))
        found.update(session.scalars(query))
    return found


def start_wave(
    session: Session,
    rollout: RolloutRow,
    wave: int,
    members: Sequence[RolloutDeviceRow],
    actor: str,
) -> int:
    """Serve the wave's devices their target documents; returns how many changed.

    A device served neither what the rollout started from nor its target
    was recompiled outside it (a label change moved it out of the selector):
    its target was compiled for what it was then, so it is not served, and
    the member is skipped with `CHANGED_OUTSIDE`. One already served its
    target (recompiled early) is judged as the others are.
    """
    now = utcnow()
    rollout.current_wave, rollout.wave_started_at, rollout.updated_at = wave, now, now
    starting = [m for m in members if m.wave == wave and m.state == DeviceState.PENDING]
    ids = [m.device_id for m in starting]
    live = enrolled_device_ids(session, ids, include_revoked=False)
    now_served = served_revisions(session, ids)
    moved = {
        m.device_id
        for m in starting
        if now_served.get(m.device_id) not in (m.previous_revision, m.target_revision)
    }
    states = [
        (m.device_id, DesiredState(m.target_revision, m.target_document))
        for m in starting
        if m.device_id in live and m.device_id not in moved
    ]
    started = store_desired_many(session, states)
    for member in starting:
        member.state, member.started_at = DeviceState.UPDATING.value, now
        if member.device_id in moved and member.device_id in live:
            member.state, member.reason = DeviceState.SKIPPED.value, CHANGED_OUTSIDE
    record_audit(
        session,
        actor,
        "rollout.wave-start",
        rollout.id,
        wave=wave + 1,
        waves=len(rollout.wave_bounds),
        devices=sum(1 for m in members if m.wave == wave),
    )
    return started
