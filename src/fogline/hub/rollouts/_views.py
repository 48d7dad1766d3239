"""What operators read of rollouts: a rollout by id or deployment, its
members, its JSON view, the actions its state allows, the latest ones.

Nothing here writes; `_engine` starts, advances and operates rollouts and
reads its members through `rollout_members`.
"""

from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from .._errors import NotFoundError
from .._schema import DeviceRow, RolloutDeviceRow, RolloutRow
from ._machine import DeviceState, Event, State, Tally, can_fire
from ._policy import RolloutPolicy

OPERATOR_EVENTS: Final = {
    "pause": Event.PAUSE,
    "resume": Event.RESUME,
    "abort": Event.ABORT,
    "rollback": Event.ROLLBACK,
}
# Re-read rows the session already holds: another replica may have moved them.
FRESH: Final = {"populate_existing": True}


def rollout_members(
    session: Session, rollout_id: str, *, documents: bool = True
) -> list[RolloutDeviceRow]:
    """The rollout's device rows, fresh. `documents=False` leaves out the
    target and previous documents (loaded one row at a time if touched):
    a tick judges thousands of members and needs them only to start a wave
    or revert, and decoding them each second was most of a tick's cost."""
    query = select(RolloutDeviceRow).where(RolloutDeviceRow.rollout_id == rollout_id)
    if not documents:
        query = query.options(
            defer(RolloutDeviceRow.target_document), defer(RolloutDeviceRow.previous_document)
        )
    return list(session.scalars(query.execution_options(**FRESH)).all())


def find_rollout(session: Session, ref: str) -> RolloutRow:
    """A rollout by id, or the latest rollout of the deployment named `ref`.

    Raises:
        NotFoundError: neither matches.
    """
    row = session.get(RolloutRow, ref)
    if row is not None:
        return row
    recent = session.scalars(
        select(RolloutRow).order_by(RolloutRow.created_at.desc(), RolloutRow.id).limit(1000)
    ).all()
    for row in recent:
        if ref in row.deployments:
            return row
    raise NotFoundError(f"no rollout with id {ref!r} and none of a deployment named {ref!r}")


def available_actions(state: str) -> list[str]:
    """The operator actions the rollout's state allows now (buttons to offer)."""
    return [action for action, event in OPERATOR_EVENTS.items() if can_fire(State(state), event)]


def rollout_view(session: Session, row: RolloutRow, *, devices: bool) -> dict[str, Any]:
    """The JSON shape of a rollout: counts per wave, and its devices if asked."""
    # Without the documents: the view shows none of them. A script watching a
    # 1,000-device rollout 4 times a second was a third of the hub's busy
    # samples (py-spy), and decoding the members' documents 27 % of that.
    members = rollout_members(session, row.id, documents=False)
    policy = RolloutPolicy.from_json(row.policy)
    waves = []
    for index, bound in enumerate(row.wave_bounds):
        tally = Tally.of(DeviceState(m.state) for m in members if m.wave == index)
        waves.append(
            {
                "wave": index + 1,
                "devices": tally.total,
                "cumulative": bound,
                "started": index <= row.current_wave and row.wave_started_at is not None,
                **{s.value: getattr(tally, s.value) for s in DeviceState},
            }
        )
    totals = Tally.of(DeviceState(m.state) for m in members)
    view: dict[str, Any] = {
        "id": row.id,
        "deployments": row.deployments,
        "state": row.state,
        "policy": policy.summary(),
        "current_wave": row.current_wave + 1,
        "waves_total": len(row.wave_bounds),
        "devices": totals.total,
        **{s.value: getattr(totals, s.value) for s in DeviceState},
        # Devices that failed, those since reverted included: `failed` counts
        # only the devices failed now (each device is in one state column).
        "failed_total": sum(1 for m in members if _has_failed(m)),
        "gated": policy.gated,
        "reason": row.reason,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
        "updated_at": row.updated_at.isoformat(),
        "ended_at": row.ended_at.isoformat() if row.ended_at else None,
        "waves": waves,
        # Canary analysis: the seed and strata of the canary order, and each
        # analysed wave's metrics (canary and control medians, p, effect size).
        "analysis": row.analysis,
    }
    if devices:
        found = session.execute(
            select(DeviceRow.id, DeviceRow.name).where(
                DeviceRow.id.in_([m.device_id for m in members])
            )
        ).all()
        names: dict[str, str] = {device_id: name for device_id, name in found}
        view["device_states"] = [
            {
                "device_id": m.device_id,
                "name": names.get(m.device_id, m.device_id),
                "wave": m.wave + 1,
                "state": m.state,
                "failed": _has_failed(m),
                "reason": m.reason,
                "target_revision": m.target_revision,
                "previous_revision": m.previous_revision,
            }
            for m in sorted(members, key=lambda m: (m.wave, names.get(m.device_id, "")))
        ]
    return view


def _has_failed(member: RolloutDeviceRow) -> bool:
    return member.failed_at is not None or member.state == DeviceState.FAILED


def list_rollouts(session: Session, limit: int = 50) -> list[RolloutRow]:
    query = select(RolloutRow).order_by(RolloutRow.created_at.desc()).limit(max(1, min(limit, 500)))
    return list(session.scalars(query).all())
