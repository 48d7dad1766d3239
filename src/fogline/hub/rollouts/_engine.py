"""Rollouts on the hub after their start: advance them wave by wave, act on them.

The scheduler (`tick`, about once a second) judges the devices of running
rollouts, then passes the wave gate, starts the next wave, completes, pauses
or rolls back, per `_machine`. `_start` starts a rollout; `_waves` holds the
lock and the steps both share; `_reads` holds what a tick reads.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline.manifest import DesiredState, revision_of
from fogline.protocol import RollbackMarker

from .._audit import HUB_ACTOR, record_audit
from .._clock import utcnow
from .._desired import (
    COMPILE_COLUMNS,
    ID_CHUNK,
    DesiredCompiler,
    applied_deployments,
    bump_generation,
    release_keys,
    served_revisions,
    store_desired_many,
    stored_document,
)
from .._devices import seen_recently
from .._errors import ConflictError
from .._schema import (
    DeploymentRow,
    DesiredStateRow,
    DeviceRow,
    RolloutDeviceRow,
    RolloutRow,
)
from ..releases import module_downgrades
from ._canary_gate import analyse_wave
from ._machine import (
    Decision,
    DeviceState,
    Event,
    Observation,
    State,
    Step,
    Tally,
    can_fire,
    decide,
    health_problem,
    judge_device,
)
from ._policy import RolloutPolicy
from ._reads import (
    last_reports,
    some_members,
    target_modules,
    watched_members,
    wave_tallies,
)
from ._views import FRESH, OPERATOR_EVENTS, find_rollout, rollout_members
from ._waves import (
    CHANGED_OUTSIDE,
    enrolled_device_ids,
    lock_rollouts,
    start_wave,
    transition,
)


def _revert(
    session: Session, rollout: RolloutRow, members: Sequence[RolloutDeviceRow], actor: str
) -> int:
    """Serve every started device its previous document and restore the
    deployments as they were before the change; returns devices changed.

    A started device no longer served its target was changed outside the
    rollout since (a label change, a later rollout of another deployment):
    its previous document would undo that too, so it is compiled afresh
    from the restored deployments instead.

    A document that takes a module below the version the device was served
    is marked `rollback: {rollout: ID}`, which lets the node downgrade (it
    refuses an unmarked downgrade), and the rollback's downgrades are
    audited.
    """
    downgraded: dict[str, tuple[str, str]] = {}
    devices_downgraded = 0
    started = [m for m in members if m.state not in (DeviceState.PENDING, DeviceState.REVERTED)]
    ids = [m.device_id for m in started]
    enrolled = enrolled_device_ids(session, ids)
    now_served = served_revisions(session, ids)
    _restore_deployments(session, rollout)
    moved = [
        m.device_id
        for m in started
        if m.device_id in enrolled and now_served.get(m.device_id) != m.target_revision
    ]
    recompiled = _recompile(session, moved)
    states: list[tuple[str, DesiredState]] = []
    for member in started:
        state: DesiredState | None = None
        before: Any = member.target_document
        if member.device_id in recompiled:
            state = recompiled[member.device_id]
            row = session.get(DesiredStateRow, member.device_id)
            before = row.document if row is not None else None
        elif member.device_id in enrolled and member.previous_document is not None:
            state = DesiredState(member.previous_revision or "", member.previous_document)
        if state is not None:
            going_down = module_downgrades(before, state.document)
            parsed = stored_document(state.document)
            if going_down and parsed is not None:
                marked = parsed.model_copy(update={"rollback": RollbackMarker(rollout=rollout.id)})
                document = marked.to_dict()
                state = DesiredState(revision_of(document), document)
                downgraded.update(going_down)
                devices_downgraded += 1
            states.append((member.device_id, state))
        member.state = DeviceState.REVERTED.value
    changed = store_desired_many(session, states)
    if downgraded:
        record_audit(
            session,
            actor,
            "rollout.downgrade",
            rollout.id,
            modules={name: f"{old} -> {new}" for name, (old, new) in sorted(downgraded.items())},
            devices=devices_downgraded,
        )
    return changed


def _restore_deployments(session: Session, rollout: RolloutRow) -> None:
    """The deployments the rollout's change touched, as they were before it."""
    now = utcnow()
    for name, document in rollout.previous_deployments.items():
        row = session.get(DeploymentRow, name)
        if document is None:
            if row is not None:
                session.delete(row)
            continue
        priority = int(document.get("spec", {}).get("priority", 0))
        if row is None:
            session.add(
                DeploymentRow(
                    name=name,
                    priority=priority,
                    document=document,
                    applied_at=now,
                    applied_by=f"rollback {rollout.id}"[:64],
                )
            )
        else:
            row.priority, row.document = priority, document
            row.applied_at, row.applied_by = now, f"rollback {rollout.id}"[:64]
    bump_generation(session)
    session.flush()


def _recompile(session: Session, ids: Sequence[str]) -> dict[str, DesiredState]:
    """The unrevoked devices of `ids` compiled from the deployments applied now."""
    if not ids:
        return {}
    compile_for = DesiredCompiler(applied_deployments(session), release_keys(session))
    found: dict[str, DesiredState] = {}
    for start in range(0, len(ids), ID_CHUNK):
        query = select(*COMPILE_COLUMNS).where(
            DeviceRow.id.in_(ids[start : start + ID_CHUNK]), DeviceRow.revoked_at.is_(None)
        )
        found.update((device.id, compile_for(device)) for device in session.execute(query))
    return found


def _advance(
    session: Session,
    rollout: RolloutRow,
    now: dt.datetime,
    offline_after_s: float,
    watching_since: dt.datetime | None,
) -> int:
    """One scheduler step for one running rollout; returns desired states changed.

    Time before `watching_since` (when this hub began ticking) is no
    evidence: a hub that was down saw no device report. A wave's timeout
    counts from `offline_after_s` after it at the earliest, the time a
    device has to reach the hub again before it is offline.

    Only the members whose verdict can change are loaded and judged (see
    `watched_members`); the wave gate counts states in the database. Whole
    members, with their documents, are loaded only to start a wave, revert,
    complete or analyse, which happens once per wave, not once per tick.
    """
    policy = RolloutPolicy.from_json(rollout.policy)
    started_at = rollout.wave_started_at or now
    watched = watched_members(session, rollout, policy.wave_timeout_s, now)
    judged = {seen.device_id: seen for seen in watched}
    # The earliest a wave's timeout may count from in this process.
    judged_from = (
        None if watching_since is None else watching_since + dt.timedelta(seconds=offline_after_s)
    )
    # Judged only once the target is applied (see judge_device).
    on_target = [s.device_id for s in judged.values() if s.applied_revision == s.target_revision]
    reports = last_reports(session, on_target) if on_target else {}
    runs = target_modules(session, rollout.id, {judged[d].target_revision for d in on_target})
    for member in some_members(session, rollout.id, list(judged)):
        device = judged[member.device_id]
        if device.name is None or not device.has_desired or device.revoked:
            if (member.state, member.reason) != (DeviceState.SKIPPED.value, "device revoked"):
                member.state, member.reason = DeviceState.SKIPPED.value, "device revoked"
            continue
        if device.served_revision != member.target_revision:
            # Recompiled outside the rollout (see start_wave): the target is
            # stale, and not reaching it is no failure of the release.
            if (member.state, member.reason) != (DeviceState.SKIPPED.value, CHANGED_OUTSIDE):
                member.state, member.reason = DeviceState.SKIPPED.value, CHANGED_OUTSIDE
            continue
        member_started = member.started_at or started_at
        if judged_from is not None:
            member_started = max(member_started, judged_from)
        seen = Observation(
            applied_revision=device.applied_revision,
            applied_ok=device.applied_ok,
            applied_error=device.applied_error,
            problem=health_problem(reports.get(member.device_id), runs.get(member.target_revision))
            if device.applied_revision == member.target_revision
            else None,
            online=seen_recently(device.last_seen, now, offline_after_s),
        )
        verdict = judge_device(
            DeviceState(member.state),
            member.target_revision,
            member_started,
            member.healthy_since,
            seen,
            policy,
            now,
        )
        if verdict.state != member.state and verdict.state is DeviceState.FAILED:
            member.failed_at = member.failed_at or now
            record_audit(
                session,
                HUB_ACTOR,
                "rollout.device-failed",
                rollout.id,
                device=device.name,
                reason=verdict.reason,
            )
        reason = verdict.reason[:512] if verdict.reason else None
        # Assigned only when changed: each assignment makes the flush at
        # commit look at the row.
        if (member.state, member.healthy_since, member.reason) != (
            verdict.state.value,
            verdict.healthy_since,
            reason,
        ):
            member.state, member.healthy_since = verdict.state.value, verdict.healthy_since
            member.reason = reason
    session.flush()
    tallies, failed_total, devices_total = wave_tallies(session, rollout.id)
    wave = rollout.current_wave
    current = tallies.get(wave, Tally())
    bounds = rollout.wave_bounds
    planned = bounds[wave] - (bounds[wave - 1] if wave else 0)
    if current.total < planned:
        # Removed devices take their members with them: no evidence either,
        # so they count as skipped (a wave of removed canaries must not pass).
        current = replace(current, skipped=current.skipped + planned - current.total)
    decision = decide(
        policy,
        wave=wave,
        last_wave=len(rollout.wave_bounds) - 1,
        current=current,
        failed_total=failed_total,
        accepted_failures=rollout.accepted_failures,
        devices_total=devices_total,
        gate_accepted=rollout.accepted_wave >= wave,
    )
    if decision.step is Step.WAIT:
        return 0
    force_pause = False
    # An operator's resume after a failed analysis accepts it, as it does the gate.
    if (
        decision.step is Step.NEXT_WAVE
        and policy.analysis is not None
        and rollout.accepted_wave < wave
    ):
        members = rollout_members(session, rollout.id, documents=False)
        decision, force_pause = _canary_decision(session, rollout, policy, members, now)
    if decision.step is Step.NEXT_WAVE:
        # Now the documents: the wave's devices are served their targets.
        return start_wave(
            session, rollout, wave + 1, rollout_members(session, rollout.id), HUB_ACTOR
        )
    members = rollout_members(session, rollout.id)
    if decision.step is Step.COMPLETE:
        if policy.gated:
            transition(session, rollout, Event.LAST_WAVE_PASSED, HUB_ACTOR)
        else:
            transition(session, rollout, Event.LAST_WAVE_ENDED, HUB_ACTOR, _ungated_end(members))
    elif decision.step is Step.FAIL:
        if policy.on_failure == "rollback" and not force_pause:
            transition(session, rollout, Event.GATE_FAILED_ROLLBACK, HUB_ACTOR, decision.reason)
            return _revert(session, rollout, members, HUB_ACTOR)
        transition(session, rollout, Event.GATE_FAILED_PAUSE, HUB_ACTOR, decision.reason)
    return 0


def _canary_decision(
    session: Session,
    rollout: RolloutRow,
    policy: RolloutPolicy,
    members: Sequence[RolloutDeviceRow],
    now: dt.datetime,
) -> tuple[Decision, bool]:
    """The wave's canary analysis as a gate decision, and whether a failure
    must pause whatever onFailure says (`inconclusive: pause`). Recorded
    in the rollout (its view shows each metric) and, when it stops the
    rollout, in the audit trail through the transition's reason."""
    assert policy.analysis is not None
    wave = rollout.current_wave
    state = dict(rollout.analysis or {})
    found = analyse_wave(
        session, spec=policy.analysis, wave=wave, members=members, state=state, now=now
    )
    if found is None:  # nobody left on the old revision: the health gate alone
        return Decision(Step.NEXT_WAVE), False
    result, record = found
    # A new dict: the JSON column saves what is assigned, not what is mutated.
    rollout.analysis = {**state, "waves": [*state.get("waves", []), record]}
    record_audit(
        session,
        HUB_ACTOR,
        "rollout.analysis",
        rollout.id,
        wave=wave + 1,
        outcome=result.outcome,
        metrics={m["metric"]: m["outcome"] for m in record["metrics"]},
    )
    reason = f"wave {wave + 1}: {result.reason}"
    if result.outcome == "fail":
        return Decision(Step.FAIL, reason), False
    if result.outcome == "inconclusive" and policy.analysis.inconclusive != "pass":
        return Decision(Step.FAIL, reason), policy.analysis.inconclusive == "pause"
    return Decision(Step.NEXT_WAVE), False


def _ungated_end(members: Sequence[RolloutDeviceRow]) -> str:
    """Why a rollout without a gate ended, in words that cannot read as a pass."""
    failed = sum(1 for m in members if m.failed_at is not None)
    if failed:
        return (
            f"no health gate (no spec.rollout): {failed} of {len(members)} device(s) failed "
            "and the rollout went on"
        )
    return "no health gate (no spec.rollout): every wave was delivered"


def tick(
    session: Session, offline_after_s: float, watching_since: dt.datetime | None = None
) -> int | None:
    """Advance every running rollout once; None when another replica holds the lock.

    `watching_since`: when this hub process began ticking (see `_advance`).
    Returns how many devices' desired states changed (to wake long-polls).
    """
    running_query = select(RolloutRow.id).where(RolloutRow.state == State.RUNNING.value).limit(1)
    if session.get_bind().dialect.name != "postgresql" and session.scalar(running_query) is None:
        # On SQLite the rollout lock is a write (see lock_rollouts): each
        # hub process took the database's write lock every second for
        # nothing. A rollout started after this read waits for the next tick.
        return 0
    if not lock_rollouts(session, wait=False):
        return None
    now = utcnow()
    running = session.scalars(
        select(RolloutRow)
        .where(RolloutRow.state == State.RUNNING.value)
        .order_by(RolloutRow.created_at)
        .execution_options(**FRESH)
    ).all()
    return sum(
        _advance(session, rollout, now, offline_after_s, watching_since) for rollout in running
    )


def operate(session: Session, ref: str, action: str, actor: str) -> tuple[RolloutRow, int]:
    """An operator's pause, resume, abort or rollback; returns the rollout and
    how many devices' desired states changed.

    Raises:
        NotFoundError: no such rollout.
        ConflictError: the action does not apply in the rollout's state.
    """
    event = OPERATOR_EVENTS[action]
    lock_rollouts(session, wait=True)
    row = find_rollout(session, ref)
    session.refresh(row)
    state = State(row.state)
    if not can_fire(state, event):  # the operator's mistake, not a bug: say so
        raise ConflictError(f"rollout {row.id} is {state}: cannot {event}")
    members = rollout_members(session, row.id)
    if event is Event.RESUME:
        row.accepted_failures = sum(1 for m in members if m.state == DeviceState.FAILED)
        row.accepted_wave = row.current_wave
    transition(session, row, event, actor, f"{action} by {actor}")
    changed = _revert(session, row, members, actor) if event is Event.ROLLBACK else 0
    return row, changed
