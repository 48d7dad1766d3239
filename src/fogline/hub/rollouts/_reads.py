"""What a rollout tick reads: a few columns of the members whose verdict can
change, stored reports and member rows by chunks of ids, and each wave's
tally counted by the database, never every member's whole row."""

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any, Final, NamedTuple

from sqlalchemy import and_, false, func, or_, select, true
from sqlalchemy.orm import Session, defer

from .._schema import DesiredStateRow, DeviceRow, RolloutDeviceRow, RolloutRow
from ._machine import WATCHED, DeviceState, Tally, document_modules
from ._views import FRESH


class Watched(NamedTuple):
    """What a tick reads of one watched member and its device: a few columns."""

    device_id: str
    state: str
    target_revision: str
    started_at: dt.datetime | None
    healthy_since: dt.datetime | None
    reason: str | None
    name: str | None  # None: the device row is gone
    revoked: bool
    last_seen: dt.datetime | None
    has_desired: bool
    served_revision: str | None  # what the device is served now
    applied_revision: str | None
    applied_ok: bool
    applied_error: str | None


def watched_members(
    session: Session, rollout: RolloutRow, timeout_s: float, now: dt.datetime
) -> list[Watched]:
    """The rollout's watched members whose verdict can change now, with what
    is known of their devices: one query of the columns the judgement needs.

    Left out: the members judge_device would leave exactly as they are, an
    updating device not on its target, with no bake or reason recorded,
    inside its wave timeout (most of a large wave, on most ticks). Whole rows
    of every member and device were loaded before, each second, which cost a
    hub process about a quarter of its CPU while a rollout of 2,000 devices
    ran, under the scheduler's lock.
    """
    cutoff = now - dt.timedelta(seconds=timeout_s)
    wave_timed_out = (rollout.wave_started_at or now) <= cutoff
    may_change = or_(
        RolloutDeviceRow.state != DeviceState.UPDATING.value,
        DeviceRow.id.is_(None),
        DeviceRow.revoked_at.is_not(None),
        DesiredStateRow.device_id.is_(None),
        DesiredStateRow.revision != RolloutDeviceRow.target_revision,
        DesiredStateRow.applied_revision == RolloutDeviceRow.target_revision,
        RolloutDeviceRow.healthy_since.is_not(None),
        RolloutDeviceRow.reason.is_not(None),
        RolloutDeviceRow.started_at <= cutoff,
        and_(RolloutDeviceRow.started_at.is_(None), true() if wave_timed_out else false()),
    )
    query = (
        select(
            RolloutDeviceRow.device_id,
            RolloutDeviceRow.state,
            RolloutDeviceRow.target_revision,
            RolloutDeviceRow.started_at,
            RolloutDeviceRow.healthy_since,
            RolloutDeviceRow.reason,
            DeviceRow.name,
            DeviceRow.revoked_at,
            DeviceRow.last_seen,
            DesiredStateRow.device_id,
            DesiredStateRow.revision,
            DesiredStateRow.applied_revision,
            DesiredStateRow.applied_ok,
            DesiredStateRow.applied_error,
        )
        .outerjoin(DeviceRow, DeviceRow.id == RolloutDeviceRow.device_id)
        .outerjoin(DesiredStateRow, DesiredStateRow.device_id == RolloutDeviceRow.device_id)
        .where(
            RolloutDeviceRow.rollout_id == rollout.id,
            RolloutDeviceRow.state.in_([s.value for s in WATCHED]),
            may_change,
        )
    )
    return [
        Watched(
            device_id=device_id,
            state=state,
            target_revision=target,
            started_at=started_at,
            healthy_since=healthy_since,
            reason=reason,
            name=name,
            revoked=revoked_at is not None,
            last_seen=last_seen,
            has_desired=desired_id is not None,
            served_revision=served_revision,
            applied_revision=applied_revision,
            applied_ok=bool(applied_ok) if applied_ok is not None else True,
            applied_error=applied_error,
        )
        for (
            device_id,
            state,
            target,
            started_at,
            healthy_since,
            reason,
            name,
            revoked_at,
            last_seen,
            desired_id,
            served_revision,
            applied_revision,
            applied_ok,
            applied_error,
        ) in session.execute(query)
    ]


IN_CHUNK: Final = 2000  # ids per IN (...): well under SQLite's bound-parameter limit


def last_reports(session: Session, device_ids: Sequence[str]) -> dict[str, Any]:
    """The stored last report of each of `device_ids`, `IN_CHUNK` per query."""
    found: dict[str, Any] = {}
    for start in range(0, len(device_ids), IN_CHUNK):
        chunk = device_ids[start : start + IN_CHUNK]
        query = select(DeviceRow.id, DeviceRow.reported).where(DeviceRow.id.in_(chunk))
        found.update({device_id: reported for device_id, reported in session.execute(query)})
    return found


def some_members(
    session: Session, rollout_id: str, device_ids: Sequence[str]
) -> list[RolloutDeviceRow]:
    """The rollout's rows of `device_ids`, fresh, without their documents."""
    rows: list[RolloutDeviceRow] = []
    for start in range(0, len(device_ids), IN_CHUNK):
        query = (
            select(RolloutDeviceRow)
            .where(
                RolloutDeviceRow.rollout_id == rollout_id,
                RolloutDeviceRow.device_id.in_(device_ids[start : start + IN_CHUNK]),
            )
            .options(
                defer(RolloutDeviceRow.target_document), defer(RolloutDeviceRow.previous_document)
            )
            .execution_options(**FRESH)
        )
        rows.extend(session.scalars(query))
    return rows


def wave_tallies(session: Session, rollout_id: str) -> tuple[dict[int, Tally], int, int]:
    """Each wave's tally, the devices failed now, and all devices: counted by
    the database, not by loading every member."""
    counts: dict[int, dict[str, int]] = {}
    failed = total = 0
    query = (
        select(RolloutDeviceRow.wave, RolloutDeviceRow.state, func.count())
        .where(RolloutDeviceRow.rollout_id == rollout_id)
        .group_by(RolloutDeviceRow.wave, RolloutDeviceRow.state)
    )
    for wave, state, n in session.execute(query):
        counts.setdefault(wave, {})[DeviceState(state).value] = n
        total += n
        if state == DeviceState.FAILED:
            failed += n
    return {wave: Tally(**by_state) for wave, by_state in counts.items()}, failed, total


def target_modules(
    session: Session, rollout_id: str, revisions: Collection[str]
) -> dict[str, frozenset[str]]:
    """Target revision -> the modules its document runs: one member's
    document per revision (thousands of members share a few revisions)."""
    found: dict[str, frozenset[str]] = {}
    for revision in sorted(revisions):
        document = session.scalar(
            select(RolloutDeviceRow.target_document)
            .where(
                RolloutDeviceRow.rollout_id == rollout_id,
                RolloutDeviceRow.target_revision == revision,
            )
            .limit(1)
        )
        found[revision] = document_modules(document)
    return found
