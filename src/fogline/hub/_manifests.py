"""`fogline plan` and `fogline apply`: validate manifests, preview, apply all or nothing.

Both run the same computation. Plan stops there; apply writes deployments,
claims and release keys and starts a rollout of the changed devices' desired
states (see `rollouts`) in one transaction, so a failure leaves the fleet
exactly as it was.
"""

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline.manifest import (
    BlockError,
    BlockValidators,
    Deployment,
    DesiredState,
    ManifestError,
    ManifestSet,
    ManifestSource,
    Problem,
    canonical_json,
    diff_documents,
    load_manifests,
    selectors_overlap,
)
from fogline.protocol import (
    DeploymentChange,
    DeviceChange,
    ManifestRequest,
    PlanResult,
)

from ._audit import record_audit
from ._clock import utcnow
from ._desired import (
    DeploymentCache,
    DesiredCompiler,
    TrustedKey,
    active_devices,
    bump_generation,
    parse_deployments,
    plain,
    release_keys,
    served_documents,
    served_revisions,
)
from ._manifest_kinds import apply_claims, apply_policies, apply_release_keys
from ._schema import (
    DeploymentRow,
)
from .releases import (
    archive_kind,
    check_agent_refs,
    check_deployments,
    check_model_refs,
    downgrade_allowances,
    effective_policies,
    remove_release_key,
    resolve_module_refs,
)
from .rollouts import (
    DEFAULT_POLICY,
    choose_policy,
    lock_rollouts,
    parse_rollout_policy,
    snapshot_deployments,
    start_rollout,
)


@dataclass(slots=True)
class PreparedChange:
    manifests: ManifestSet
    deployments: list[Deployment]  # the request's, module releases resolved
    final: list[Deployment]  # every deployment after the change
    keys: dict[str, TrustedKey]  # release keys after the change
    plan: PlanResult
    pruned: list[str] = field(default_factory=list)
    # Every enrolled, unrevoked device's compiled state after the change, in
    # name order: the plan computed it, the rollout reuses it.
    targets: dict[str, DesiredState] = field(default_factory=dict)


def _resolve_modules(
    session: Session, deployments: Sequence[Deployment], artifacts_dir: Path | None = None
) -> list[Deployment]:
    """Pin each module's `release:` to the pushed release (version, digest, signature),
    and check that every infer step's model release is one of them (`check_model_refs`)
    and that the agent's own release carries no config or env (`check_agent_refs`).

    Raises:
        ManifestError: an unknown release or one of another module, located
            at `spec.modules[i].release` in the operator's file; a model the
            deployment does not deliver, at `spec.pipelines[i].steps[j].infer.model.release`;
            config or env on the agent's own release, at `spec.modules[i].config|env`.
    """
    resolved: list[Deployment] = []
    problems: list[Problem] = []
    release_kind = archive_kind(artifacts_dir)
    for deployment in deployments:
        if not deployment.modules:
            try:
                check_model_refs(
                    deployment.to_document(), origin=deployment.origin, release_kind=release_kind
                )
            except ManifestError as exc:
                problems += exc.problems
            resolved.append(deployment)
            continue
        try:
            document = resolve_module_refs(
                session, deployment.to_document(), origin=deployment.origin
            )
            check_model_refs(document, origin=deployment.origin, release_kind=release_kind)
            check_agent_refs(document, origin=deployment.origin, release_kind=release_kind)
        except ManifestError as exc:
            problems += exc.problems
            continue
        source = ManifestSource(str(deployment.origin or deployment.name), json.dumps(document))
        resolved.append(load_manifests([source]).deployments[0])
    if problems:
        raise ManifestError(problems)
    return resolved


def _check_layering(new: Sequence[Deployment], kept: Sequence[Deployment]) -> None:
    """Equal priorities that can select the same device are ambiguous, also
    against deployments applied earlier and not part of this request."""
    problems = []
    for deployment in new:
        for other in kept:
            if other.priority == deployment.priority and selectors_overlap(
                deployment.selector, other.selector
            ):
                origin = deployment.origin
                problems.append(
                    Problem(
                        origin.file if origin else "<request>",
                        origin.line if origin else 1,
                        origin.column if origin else 1,
                        "spec.priority",
                        f"deployment {deployment.name!r} has the same priority "
                        f"{deployment.priority} as applied deployment {other.name!r} and their "
                        "selectors can match the same device; give one a different priority",
                    )
                )
                break
    if problems:
        raise ManifestError(problems)


def prepare(
    session: Session,
    request: ManifestRequest,
    validators: BlockValidators | None = None,
    artifacts_dir: Path | None = None,
) -> PreparedChange:
    """Validate and compute what applying `request` would change.

    `artifacts_dir` (the release store) lets the check of infer steps read a
    release's kind; without it only the node checks that.

    Raises:
        ManifestError: any document is invalid, with file:line:column and path.
    """
    sources = [ManifestSource(f.name, f.text) for f in request.files]
    manifests = load_manifests(sources, validators=validators)
    if request.prune and not manifests.deployments:
        raise ManifestError(
            [
                Problem(
                    sources[0].name,
                    1,
                    1,
                    "",
                    "--prune with no Deployment would delete every deployment; refusing",
                )
            ]
        )
    rows = {row.name: row for row in session.scalars(select(DeploymentRow)).all()}
    incoming = {d.name: d for d in manifests.deployments}
    kept_rows = [row for name, row in rows.items() if name not in incoming and not request.prune]
    kept = parse_deployments(kept_rows)
    _check_layering(manifests.deployments, kept)
    deployments = _resolve_modules(session, manifests.deployments, artifacts_dir)
    incoming = {d.name: d for d in deployments}
    final = sorted([*kept, *deployments], key=lambda d: d.name)
    keys = release_keys(session)
    keys.update(
        {
            k.name: TrustedKey(base64.b64encode(k.public_key).decode(), k.modules)
            for k in manifests.release_keys
        }
    )

    changes: list[DeploymentChange] = []
    for name, deployment in sorted(incoming.items()):
        row = rows.get(name)
        if row is None:
            changes.append(DeploymentChange(name=name, action="create"))
        elif canonical_json(row.document) != canonical_json(deployment.to_document()):
            changes.append(DeploymentChange(name=name, action="update"))
        else:
            changes.append(DeploymentChange(name=name, action="unchanged"))
    pruned = sorted(name for name in rows if request.prune and name not in incoming)
    changes += [DeploymentChange(name=name, action="delete") for name in pruned]
    # The vulnerability gate: a created or changed deployment may not roll
    # out a release a VulnerabilityPolicy (applied, or in this request) blocks.
    rolling = {c.name for c in changes if c.action in ("create", "update")}
    check_deployments(
        session,
        [d for d in deployments if d.name in rolling],
        effective_policies(session, manifests.vulnerability_policies, utcnow()),
        utcnow(),
        written={d.name: d for d in manifests.deployments},
    )

    devices: list[DeviceChange] = []
    served = served_revisions(session)
    targets: dict[str, DesiredState] = {}
    compile_for = DesiredCompiler(final, keys)
    moving: list[tuple[str, str, str | None, DesiredState]] = []
    for device in active_devices(session):
        state = targets[device.id] = compile_for(device)
        before = served.get(device.id)
        if before != state.revision:
            moving.append((device.id, device.name, before, state))
    # A revision is the hash of its document: each document moved from is
    # read once, and the changes between two revisions are computed once,
    # however many devices make that move.
    previous = served_documents(session, {r: d for d, _n, r, _s in moving if r is not None})
    moves: dict[tuple[str | None, str], list[dict[str, Any]]] = {}
    for device_id, name, before, state in moving:
        move = (before, state.revision)
        moved = moves.get(move)
        if moved is None:
            diff = diff_documents(previous.get(before) if before else None, state.document)
            moved = moves[move] = [
                {"path": c.path, "op": c.op, "old": plain(c.old), "new": plain(c.new)} for c in diff
            ]
        devices.append(
            DeviceChange(
                device_id=device_id,
                name=name,
                from_revision=before,
                to_revision=state.revision,
                changes=moved,
            )
        )
    plan = PlanResult(
        deployments=changes,
        devices=devices,
        claims=[c.name for c in manifests.claims],
        release_keys=[k.name for k in manifests.release_keys],
    )
    return PreparedChange(manifests, deployments, final, keys, plan, pruned, targets)


@dataclass(frozen=True, slots=True)
class Applied:
    """What an apply did beyond its plan: claim tokens (shown once) and the rollout it started."""

    claim_tokens: dict[str, str]
    rollouts: list[str]


def apply(
    session: Session, prepared: PreparedChange, applied_by: str, cache: DeploymentCache
) -> Applied:
    """Write a prepared change: tokens of newly declared claims, and the rollout started.

    The caller commits; an exception anywhere leaves nothing applied.
    """
    # The rollout lock before any write, as a tick and an operator action
    # take it: after writing the rows a tick writes too (the fleet counters,
    # deployments), waiting for it deadlocked with a tick (PostgreSQL).
    lock_rollouts(session, wait=True)
    now = utcnow()
    changed = sorted(c.name for c in prepared.plan.deployments if c.action != "unchanged")
    previous = snapshot_deployments(session, changed)
    for deployment in prepared.deployments:
        document = deployment.to_document()
        row = session.get(DeploymentRow, deployment.name)
        if row is None:
            session.add(
                DeploymentRow(
                    name=deployment.name,
                    priority=deployment.priority,
                    document=document,
                    applied_at=now,
                    applied_by=applied_by,
                )
            )
        elif canonical_json(row.document) != canonical_json(document):
            row.priority, row.document = deployment.priority, document
            row.applied_at, row.applied_by = now, applied_by
    for name in prepared.pruned:
        row = session.get(DeploymentRow, name)
        if row is not None:
            session.delete(row)
    key_actions = apply_release_keys(session, prepared.manifests)
    policy_actions = apply_policies(session, prepared.manifests, applied_by)
    tokens, claim_actions = apply_claims(session, prepared.manifests)
    bump_generation(session)
    session.flush()
    # The target names everything the apply changed, by kind for keys and
    # claims; the details say what happened to each document it held.
    targets = [
        *changed,
        *(f"releasekey/{name}" for name, action in key_actions.items() if action != "unchanged"),
        *(f"claim/{name}" for name, action in claim_actions.items() if action != "unchanged"),
        *(
            f"vulnerabilitypolicy/{name}"
            for name, action in policy_actions.items()
            if action != "unchanged"
        ),
    ]
    record_audit(
        session,
        applied_by,
        "apply",
        ",".join(targets) or "-",
        deployments={c.name: c.action for c in prepared.plan.deployments},
        release_keys=key_actions,
        claims=claim_actions,
        vulnerability_policies=policy_actions,
        devices_changed=len(prepared.plan.devices),
        # The deployments the apply changed, as they were and as they are.
        before=previous,
        after=snapshot_deployments(session, changed),
    )
    for deployment in prepared.deployments:
        allowed = downgrade_allowances(deployment.to_document())
        if allowed and deployment.name in changed:
            # Going back to an older (maybe vulnerable) release is a decision
            # someone made: the log says who, for which modules and releases.
            record_audit(
                session, applied_by, "deployment.allow-downgrade", deployment.name, modules=allowed
            )
    rollout = start_rollout(
        session,
        actor=applied_by,
        deployments=changed,
        final=prepared.final,
        keys=prepared.keys,
        policy=choose_policy(prepared.deployments, changed),
        previous=previous,
        targets=prepared.targets,
    )
    cache.invalidate()
    return Applied(tokens, [rollout.id] if rollout is not None else [])


def delete_deployment(session: Session, name: str, cache: DeploymentCache, deleted_by: str) -> bool:
    """Delete a deployment; its devices move off it through a rollout that
    follows the deleted deployment's own rollout policy."""
    lock_rollouts(session, wait=True)  # before any write: see apply
    row = session.get(DeploymentRow, name)
    if row is None:
        return False
    previous = snapshot_deployments(session, [name])
    try:
        policy = parse_rollout_policy(row.document.get("spec", {}).get("rollout") or {})
    except BlockError:  # stored before rollout policies were checked
        policy = DEFAULT_POLICY
    session.delete(row)
    bump_generation(session)
    session.flush()
    cache.invalidate()
    final = cache.get(session)
    keys = release_keys(session)
    record_audit(
        session, deleted_by, "deployment.delete", name, before=previous, after={name: None}
    )
    start_rollout(
        session,
        actor=deleted_by,
        deployments=[name],
        final=final,
        keys=keys,
        policy=policy,
        previous=previous,
    )
    return True


def delete_release_key(
    session: Session, name: str, cache: DeploymentCache, deleted_by: str
) -> str | None:
    """Delete an applied ReleaseKey; returns the rollout that moves the devices
    whose documents list the key onto documents without it (None: no device
    changes). Audited.

    Raises:
        NotFoundError: no such key.
        ConflictError: a deployment pins a release the key signed.
    """
    lock_rollouts(session, wait=True)  # before any write: see apply
    row = remove_release_key(session, name)
    session.flush()
    record_audit(
        session, deleted_by, "releasekey.delete", f"releasekey/{name}", modules=row.modules
    )
    rollout = start_rollout(
        session,
        actor=deleted_by,
        deployments=[],
        final=cache.get(session),
        keys=release_keys(session),
        policy=DEFAULT_POLICY,
        previous={},
    )
    return rollout.id if rollout is not None else None
