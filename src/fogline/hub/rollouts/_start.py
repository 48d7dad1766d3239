"""Starting a rollout: one per change, from what each device is served now.

An apply does not write every changed device's desired state at once. It
stores each changed device's target document in `rollout_devices` and starts
the first wave; a device's served document (DesiredStateRow) changes only
when its wave starts (`_waves.start_wave`).
"""

import secrets
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import uuid4

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from fogline.manifest import Deployment, DesiredState

from .._audit import record_audit
from .._clock import utcnow
from .._desired import (
    DesiredCompiler,
    TrustedKey,
    active_devices,
    plain,
    served_documents,
    served_revisions,
)
from .._device_labels import effective_labels
from .._schema import (
    DeploymentRow,
    DeviceLabelRow,
    DeviceRow,
    RolloutDeviceRow,
    RolloutRow,
)
from .._self_healing import QUARANTINE_LABEL
from ._canaries import canary_order, stratum_keys
from ._machine import (
    ACTIVE,
    DeviceState,
    Event,
    State,
)
from ._policy import DEFAULT_POLICY, RolloutPolicy, parse_rollout_policy, wave_bounds
from ._views import FRESH
from ._waves import lock_rollouts, start_wave, transition


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
            transition(session, other, Event.SUPERSEDE, actor, f"superseded by {rollout_id}")
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
    start_wave(session, rollout, 0, first, actor)
    return rollout
