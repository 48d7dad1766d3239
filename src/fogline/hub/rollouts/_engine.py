"""Rollouts on the hub: start one per change, advance it wave by wave, act on it.

An apply no longer writes every changed device's desired state at once. It
stores each changed device's target document in `rollout_devices` and starts
the first wave; a device's served document (DesiredStateRow) changes only
when its wave starts. The scheduler (`tick`, about once a second) judges the
devices of running rollouts, then passes the wave gate, starts the next
wave, completes, pauses or rolls back, per `_machine`.

Every mutation of rollouts takes one database lock (`lock_rollouts`), so an
apply, an operator action and the ticks of several hub replicas never
interleave: PostgreSQL advisory transaction locks, and on SQLite the write
lock of the single database file.
"""

import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple
from uuid import uuid4

from sqlalchemy import and_, false, func, insert, or_, select, text, true, update
from sqlalchemy.orm import Session, defer

from fogline.manifest import Deployment, DesiredState, revision_of
from fogline.protocol import RollbackMarker

from .._audit import HUB_ACTOR, record_audit
from .._clock import utcnow
from .._desired import (
    ID_CHUNK,
    DesiredCompiler,
    TrustedKey,
    active_devices,
    bump_generation,
    plain,
    served_documents,
    served_revisions,
    store_desired_many,
    stored_document,
)
from .._device_labels import effective_labels
from .._devices import seen_recently
from .._errors import ConflictError
from .._schema import (
    DeploymentRow,
    DesiredStateRow,
    DeviceLabelRow,
    DeviceRow,
    FleetGenerationRow,
    RolloutDeviceRow,
    RolloutRow,
)
from .._self_healing import QUARANTINE_LABEL
from ..releases import module_downgrades
from ._canaries import canary_order, stratum_keys
from ._canary_gate import analyse_wave
from ._machine import (
    ACTIVE,
    WATCHED,
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
    next_state,
)
from ._policy import DEFAULT_POLICY, RolloutPolicy, parse_rollout_policy, wave_bounds
from ._views import FRESH, OPERATOR_EVENTS, find_rollout, rollout_members

# Any constant works; it only has to be the same in every hub replica.
ROLLOUT_LOCK_ID: Final = 0x666F6C52


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


def snapshot_deployments(session: Session, names: Sequence[str]) -> dict[str, Any]:
    """The stored documents of `names` (None: absent), taken before a change."""
    out: dict[str, Any] = {}
    for name in names:
        row = session.get(DeploymentRow, name)
        out[name] = plain(row.document) if row is not None else None
    return out


def choose_policy(deployments: Sequence[Deployment], changed: Sequence[str]) -> RolloutPolicy:
    """The policy of the changed deployment that declares one, highest priority
    first (then by name); DEFAULT_POLICY when none does."""
    candidates = sorted(
        (d for d in deployments if d.name in changed and d.rollout),
        key=lambda d: (-d.priority, d.name),
    )
    return parse_rollout_policy(candidates[0].rollout) if candidates else DEFAULT_POLICY


def _transition(
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


def _enrolled_device_ids(
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


def _start_wave(
    session: Session,
    rollout: RolloutRow,
    wave: int,
    members: Sequence[RolloutDeviceRow],
    actor: str,
) -> int:
    """Serve the wave's devices their target documents; returns how many changed."""
    now = utcnow()
    rollout.current_wave, rollout.wave_started_at, rollout.updated_at = wave, now, now
    starting = [m for m in members if m.wave == wave and m.state == DeviceState.PENDING]
    live = _enrolled_device_ids(session, [m.device_id for m in starting], include_revoked=False)
    states = [
        (m.device_id, DesiredState(m.target_revision, m.target_document))
        for m in starting
        if m.device_id in live
    ]
    started = store_desired_many(session, states)
    for member in starting:
        member.state, member.started_at = DeviceState.UPDATING.value, now
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


def start_rollout(
    session: Session,
    *,
    actor: str,
    deployments: Sequence[str],
    final: Sequence[Deployment],
    keys: Mapping[str, TrustedKey],
    policy: RolloutPolicy,
    previous: Mapping[str, Any],
    targets: Mapping[str, DesiredState] | None = None,
) -> RolloutRow | None:
    """Start a rollout of `final` to every device whose desired state it changes.

    Active rollouts of the same deployments, or whose undelivered devices now
    get another document, end as superseded; the new rollout starts from what
    each device is served now. Returns None when nothing changes.

    `targets`: every enrolled, unrevoked device's state under `final`, in
    name order, when the caller compiled them already (an apply's plan did).
    """
    lock_rollouts(session, wait=True)
    # Revisions only: a revision is the hash of its document, so the
    # documents the new members move from are read once per revision below,
    # not once per device (decoding 10,000 documents was a tenth of an apply).
    served = served_revisions(session)
    if targets is None:
        compile_for = DesiredCompiler(final, keys)
        targets = {device.id: compile_for(device) for device in active_devices(session)}
    rollout_id = f"ro-{uuid4().hex[:10]}"
    # Quarantined devices keep what they run: a rollout skips them until an
    # operator lifts the quarantine (hub/_self_healing.py).
    held: set[str] = set(
        session.scalars(
            select(DeviceLabelRow.device_id).where(
                DeviceLabelRow.key == QUARANTINE_LABEL, DeviceLabelRow.value == "true"
            )
        )
    )
    # Also held: pending in a rollout that goes on and delivers the same.
    active = session.scalars(
        select(RolloutRow)
        .where(RolloutRow.state.in_([s.value for s in ACTIVE]))
        .execution_options(**FRESH)
    ).all()
    for other in active:
        # Three columns, not ORM rows: only states and revisions are read here.
        unfinished = session.execute(
            select(
                RolloutDeviceRow.device_id,
                RolloutDeviceRow.state,
                RolloutDeviceRow.target_revision,
            ).where(
                RolloutDeviceRow.rollout_id == other.id,
                RolloutDeviceRow.state.in_([DeviceState.PENDING.value, DeviceState.UPDATING.value]),
            )
        ).all()
        clash = bool(set(other.deployments) & set(deployments)) or any(
            m.device_id in targets and targets[m.device_id].revision != m.target_revision
            for m in unfinished
        )
        if clash:
            _transition(session, other, Event.SUPERSEDE, actor, f"superseded by {rollout_id}")
        else:
            held |= {m.device_id for m in unfinished if m.state == DeviceState.PENDING}
    changed = [
        device_id
        for device_id, target in targets.items()
        if device_id not in held and served.get(device_id) != target.revision
    ]
    if not changed and not deployments:
        return None
    now = utcnow()
    analysis_state: dict[str, Any] | None = None
    strata = 1
    if policy.analysis is not None:
        # Canaries are a stratified random sample, not the first names: see _canaries.
        seed = secrets.randbits(32)
        strata_keys = stratum_keys(d for d in final if d.name in deployments)
        # The plan (or the compile above) loaded these rows: no query each.
        rows = [session.get(DeviceRow, device_id) for device_id in changed]
        labels = [effective_labels(row) if row is not None else {} for row in rows]
        order, strata = canary_order(labels, strata_keys, seed)
        changed = [changed[i] for i in order]
        analysis_state = {
            "seed": seed,
            "strata_keys": list(strata_keys),
            "strata": strata,
            "waves": [],
        }
    bounds = wave_bounds(policy, len(changed), min_first=strata)
    rollout = RolloutRow(
        id=rollout_id,
        deployments=sorted(deployments),
        state=State.RUNNING.value,
        policy=plain(policy.to_json()),
        wave_bounds=bounds,
        current_wave=0,
        wave_started_at=None,
        accepted_failures=0,
        accepted_wave=-1,
        previous_deployments=dict(previous),
        reason=None,
        created_at=now,
        created_by=actor[:64],
        updated_at=now,
        ended_at=None,
        analysis=analysis_state,
    )
    session.add(rollout)
    session.flush()  # no ORM relationship orders the inserts: the parent goes first
    # A revision is the hash of its document, and thousands of devices share
    # a few of them: each document is copied once, and the rows that hold
    # it share the copy (nothing changes a stored document in place).
    copies: dict[str, Any] = {}

    def copy(revision: str, document: Any) -> Any:
        if revision not in copies:
            copies[revision] = plain(document)
        return copies[revision]

    # One executemany of plain rows, not an ORM object each: building and
    # flushing 10,000 objects was a second of an apply's CPU. Only the first
    # wave's rows come back as objects, to be started below.
    previous_documents = served_documents(session, {served[d]: d for d in changed if d in served})
    members: list[dict[str, Any]] = []
    for index, device_id in enumerate(changed):
        before = served.get(device_id)
        target = targets[device_id]
        members.append(
            {
                "rollout_id": rollout_id,
                "device_id": device_id,
                "wave": next(k for k, bound in enumerate(bounds) if index < bound),
                "state": DeviceState.PENDING.value,
                "target_revision": target.revision,
                "target_document": copy(target.revision, target.document),
                "previous_revision": before,
                "previous_document": (
                    copy(before, previous_documents[before]) if before is not None else None
                ),
                "started_at": None,
                "healthy_since": None,
                "reason": None,
                "failed_at": None,
            }
        )
    if members:
        session.execute(insert(RolloutDeviceRow), members)
    record_audit(
        session,
        actor,
        "rollout.start",
        rollout_id,
        deployments=sorted(deployments),
        devices=len(changed),
        policy=policy.summary(),
        waves=bounds,
        # The canary order is reproducible from these (see _canaries).
        **(
            {
                "canary_seed": analysis_state["seed"],
                "strata_keys": analysis_state["strata_keys"],
                "strata": strata,
            }
            if analysis_state is not None
            else {}
        ),
    )
    first = session.scalars(
        select(RolloutDeviceRow)
        .where(RolloutDeviceRow.rollout_id == rollout_id, RolloutDeviceRow.wave == 0)
        .order_by(RolloutDeviceRow.device_id)
    ).all()
    _start_wave(session, rollout, 0, first, actor)
    return rollout


def _revert(
    session: Session, rollout: RolloutRow, members: Sequence[RolloutDeviceRow], actor: str
) -> int:
    """Serve every started device its previous document and restore the
    deployments as they were before the change; returns devices changed.

    A previous document that takes a module below the version the rollout
    delivered is marked `rollback: {rollout: ID}`, which lets the node
    downgrade (it refuses an unmarked downgrade), and the rollback's
    downgrades are audited.
    """
    downgraded: dict[str, tuple[str, str]] = {}
    devices_downgraded = 0
    started = [m for m in members if m.state not in (DeviceState.PENDING, DeviceState.REVERTED)]
    enrolled = _enrolled_device_ids(session, [m.device_id for m in started])
    states: list[tuple[str, DesiredState]] = []
    for member in started:
        if member.device_id in enrolled and member.previous_document is not None:
            state = DesiredState(member.previous_revision or "", member.previous_document)
            going_down = module_downgrades(member.target_document, member.previous_document)
            previous = stored_document(member.previous_document)
            if going_down and previous is not None:
                marked = previous.model_copy(
                    update={"rollback": RollbackMarker(rollout=rollout.id)}
                )
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
    return changed


class _Watched(NamedTuple):
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
    applied_revision: str | None
    applied_ok: bool
    applied_error: str | None


def _watched(
    session: Session, rollout: RolloutRow, timeout_s: float, now: dt.datetime
) -> list[_Watched]:
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
        _Watched(
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
            applied_revision,
            applied_ok,
            applied_error,
        ) in session.execute(query)
    ]


_IN_CHUNK: Final = 2000  # ids per IN (...): well under SQLite's bound-parameter limit


def _reports(session: Session, device_ids: Sequence[str]) -> dict[str, Any]:
    """The stored last report of each of `device_ids`, `_IN_CHUNK` per query."""
    found: dict[str, Any] = {}
    for start in range(0, len(device_ids), _IN_CHUNK):
        chunk = device_ids[start : start + _IN_CHUNK]
        query = select(DeviceRow.id, DeviceRow.reported).where(DeviceRow.id.in_(chunk))
        found.update({device_id: reported for device_id, reported in session.execute(query)})
    return found


def _some_members(
    session: Session, rollout_id: str, device_ids: Sequence[str]
) -> list[RolloutDeviceRow]:
    """The rollout's rows of `device_ids`, fresh, without their documents."""
    rows: list[RolloutDeviceRow] = []
    for start in range(0, len(device_ids), _IN_CHUNK):
        query = (
            select(RolloutDeviceRow)
            .where(
                RolloutDeviceRow.rollout_id == rollout_id,
                RolloutDeviceRow.device_id.in_(device_ids[start : start + _IN_CHUNK]),
            )
            .options(
                defer(RolloutDeviceRow.target_document), defer(RolloutDeviceRow.previous_document)
            )
            .execution_options(**FRESH)
        )
        rows.extend(session.scalars(query))
    return rows


def _tallies(session: Session, rollout_id: str) -> tuple[dict[int, Tally], int, int]:
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


def _advance(
    session: Session, rollout: RolloutRow, now: dt.datetime, offline_after_s: float
) -> int:
    """One scheduler step for one running rollout; returns desired states changed.

    Only the members whose verdict can change are loaded and judged (see
    `_watched`); the wave gate counts states in the database. Whole
    members, with their documents, are loaded only to start a wave, revert,
    complete or analyse, which happens once per wave, not once per tick.
    """
    policy = RolloutPolicy.from_json(rollout.policy)
    started_at = rollout.wave_started_at or now
    judged = {
        seen.device_id: seen for seen in _watched(session, rollout, policy.wave_timeout_s, now)
    }
    # Judged only once the target is applied (see judge_device).
    on_target = [s.device_id for s in judged.values() if s.applied_revision == s.target_revision]
    reports = _reports(session, on_target) if on_target else {}
    for member in _some_members(session, rollout.id, list(judged)):
        device = judged[member.device_id]
        if device.name is None or not device.has_desired or device.revoked:
            if (member.state, member.reason) != (DeviceState.SKIPPED.value, "device revoked"):
                member.state, member.reason = DeviceState.SKIPPED.value, "device revoked"
            continue
        seen = Observation(
            applied_revision=device.applied_revision,
            applied_ok=device.applied_ok,
            applied_error=device.applied_error,
            problem=health_problem(reports.get(member.device_id))
            if device.applied_revision == member.target_revision
            else None,
            online=seen_recently(device.last_seen, now, offline_after_s),
        )
        verdict = judge_device(
            DeviceState(member.state),
            member.target_revision,
            member.started_at or started_at,
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
    tallies, failed_total, devices_total = _tallies(session, rollout.id)
    wave = rollout.current_wave
    decision = decide(
        policy,
        wave=wave,
        last_wave=len(rollout.wave_bounds) - 1,
        current=tallies.get(wave, Tally()),
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
        return _start_wave(
            session, rollout, wave + 1, rollout_members(session, rollout.id), HUB_ACTOR
        )
    members = rollout_members(session, rollout.id)
    if decision.step is Step.COMPLETE:
        if policy.gated:
            _transition(session, rollout, Event.LAST_WAVE_PASSED, HUB_ACTOR)
        else:
            _transition(session, rollout, Event.LAST_WAVE_ENDED, HUB_ACTOR, _ungated_end(members))
    elif decision.step is Step.FAIL:
        if policy.on_failure == "rollback" and not force_pause:
            _transition(session, rollout, Event.GATE_FAILED_ROLLBACK, HUB_ACTOR, decision.reason)
            return _revert(session, rollout, members, HUB_ACTOR)
        _transition(session, rollout, Event.GATE_FAILED_PAUSE, HUB_ACTOR, decision.reason)
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


def tick(session: Session, offline_after_s: float) -> int | None:
    """Advance every running rollout once; None when another replica holds the lock.

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
    return sum(_advance(session, rollout, now, offline_after_s) for rollout in running)


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
    _transition(session, row, event, actor, f"{action} by {actor}")
    changed = _revert(session, row, members, actor) if event is Event.ROLLBACK else 0
    return row, changed
