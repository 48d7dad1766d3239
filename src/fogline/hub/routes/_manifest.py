"""The operator API for fleet manifests: plan, apply, get, delete."""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline._log import event
from fogline.manifest import ManifestError
from fogline.protocol import (
    API_PREFIX,
    ApplyResult,
    DeploymentView,
    ErrorBody,
    ErrorDetail,
    ManifestRequest,
    PlanResult,
    ReleaseKeyView,
)
from fogline.security import Permission, role_allows

from .._audit_trail import audited, not_audited
from .._auth import SessionEndingRoute, StateDep, actor_of, db_session, require_operator
from .._desired import parse_deployments, stored_document
from .._errors import ForbiddenError, NotFoundError
from .._manifests import (
    PreparedChange,
    apply,
    delete_deployment,
    delete_release_key,
    prepare,
)
from .._people import Principal
from .._permissions import granted
from .._schema import DeploymentRow, DesiredStateRow, ReleaseKeyRow
from .._scopes import check_deployments_in_scope, check_unscoped
from ..releases import release_key_id

log = logging.getLogger("fogline.hub.manifest")
router = APIRouter(prefix=API_PREFIX, tags=["manifests"], route_class=SessionEndingRoute)

SessionDep = Annotated[Session, Depends(db_session)]
OperatorDep = Annotated[Principal, Depends(require_operator)]


def _check_kinds(op: Principal, prepared: PreparedChange) -> None:
    """ReleaseKeys, ProvisioningClaims and VulnerabilityPolicies need their own permission, and are
    fleet-wide: no scoped role applies them.

    Raises: ForbiddenError naming the document.
    """
    kinds = (
        (prepared.manifests.release_keys, "ReleaseKey", Permission.RELEASE_KEY),
        (prepared.manifests.claims, "ProvisioningClaim", Permission.CLAIM),
        # A policy and its exceptions decide what may reach the fleet: trust, like keys.
        (
            prepared.manifests.vulnerability_policies,
            "VulnerabilityPolicy",
            Permission.RELEASE_KEY,
        ),
    )
    for documents, kind, permission in kinds:
        for document in documents:
            if not role_allows(op.role, permission):
                raise ForbiddenError(
                    f"{op.name} has role {op.role}: applying {kind} {document.name!r} needs "
                    f"permission {permission.value!r}, which only {granted(permission)}",
                    field="kind",
                )
            check_unscoped(op, f"{kind} {document.name!r}")


def _check_scope(op: Principal, session: Session, prepared: PreparedChange) -> None:
    """A scoped role's apply creates, replaces and prunes only deployments whose
    selectors stay inside its scope.

    Raises: ForbiddenError naming the deployment and the selector.
    """
    if op.scope is None:
        return
    check_deployments_in_scope(op, prepared.deployments, "apply")
    replaced = [
        row
        for row in session.scalars(select(DeploymentRow))
        if row.name in prepared.pruned or any(d.name == row.name for d in prepared.deployments)
    ]
    # The stored selector too: replacing an out-of-scope deployment with an
    # in-scope one would take devices away from their owners.
    check_deployments_in_scope(op, parse_deployments(replaced), "replace or prune")


def manifest_error_response(exc: ManifestError) -> JSONResponse:
    """422 with one detail per problem: `file:line:column path` and the reason."""
    details = [
        ErrorDetail(field=f"{p.file}:{p.line}:{p.column} {p.path}".rstrip(), reason=p.reason)
        for p in exc.problems
    ]
    body = ErrorBody(error="invalid_manifest", message=str(exc), details=details)
    return JSONResponse(body.model_dump(), status_code=422)


@router.post(
    "/manifests/plan",
    response_model=PlanResult,
    openapi_extra=not_audited("computes what an apply would change; changes nothing"),
)
def plan(
    body: ManifestRequest, op: OperatorDep, session: SessionDep, state: StateDep
) -> PlanResult | JSONResponse:
    """What applying these manifests would change, per deployment and device."""
    try:
        prepared = prepare(session, body, state.validators, state.artifacts_dir)
    except ManifestError as exc:
        return manifest_error_response(exc)
    _check_scope(op, session, prepared)
    return prepared.plan


@router.post("/manifests/apply", response_model=ApplyResult, openapi_extra=audited("apply"))
def apply_manifests(
    body: ManifestRequest, op: OperatorDep, session: SessionDep, state: StateDep
) -> ApplyResult | JSONResponse:
    """Apply all documents or none."""
    try:
        prepared = prepare(session, body, state.validators, state.artifacts_dir)
    except ManifestError as exc:
        return manifest_error_response(exc)
    _check_kinds(op, prepared)
    _check_scope(op, session, prepared)
    applied = apply(session, prepared, actor_of(op), state.deployments)
    session.commit()
    state.notifier.poke()
    event(
        log,
        "manifests.applied",
        by=op.name,
        deployments=[d.name for d in prepared.plan.deployments if d.action != "unchanged"],
        devices_changed=len(prepared.plan.devices),
        rollouts=applied.rollouts,
        prune=body.prune,
    )
    return ApplyResult(
        plan=prepared.plan, new_claim_tokens=applied.claim_tokens, rollouts=applied.rollouts
    )


def _view(row: DeploymentRow, devices: int) -> DeploymentView:
    return DeploymentView(
        name=row.name,
        priority=row.priority,
        document=row.document,
        applied_at=row.applied_at,
        applied_by=row.applied_by,
        devices=devices,
    )


def _count_selected(session: Session) -> dict[str, int]:
    counts: dict[str, int] = {}
    for document in session.scalars(select(DesiredStateRow.document)):
        parsed = stored_document(document)
        for layer in parsed.deployments if parsed is not None else ():
            counts[layer.name] = counts.get(layer.name, 0) + 1
    return counts


@router.get("/deployments", response_model=list[DeploymentView])
def deployments_list(_op: OperatorDep, session: SessionDep) -> list[DeploymentView]:
    counts = _count_selected(session)
    rows = session.scalars(select(DeploymentRow).order_by(DeploymentRow.name)).all()
    return [_view(row, counts.get(row.name, 0)) for row in rows]


@router.get("/deployments/{name}", response_model=DeploymentView)
def deployments_show(name: str, _op: OperatorDep, session: SessionDep) -> DeploymentView:
    row = session.get(DeploymentRow, name)
    if row is None:
        raise NotFoundError(f"no deployment {name!r}")
    return _view(row, _count_selected(session).get(name, 0))


@router.delete(
    "/deployments/{name}",
    status_code=204,
    openapi_extra=audited("deployment.delete", target="{name}"),
)
def deployments_delete(name: str, op: OperatorDep, session: SessionDep, state: StateDep) -> None:
    """Delete a deployment; its devices move off it through a rollout. Audited."""
    row = session.get(DeploymentRow, name)
    if row is not None:
        check_deployments_in_scope(op, parse_deployments([row]), "delete")
    if not delete_deployment(session, name, state.deployments, actor_of(op)):
        raise NotFoundError(f"no deployment {name!r}")
    session.commit()
    state.notifier.poke()
    event(log, "deployment.deleted", name=name, by=op.name)


@router.get("/releasekeys", response_model=list[ReleaseKeyView])
def release_keys_list(_op: OperatorDep, session: SessionDep) -> list[ReleaseKeyView]:
    """Every applied ReleaseKey: name, key id, the modules it may sign."""
    rows = session.scalars(select(ReleaseKeyRow).order_by(ReleaseKeyRow.name)).all()
    return [
        ReleaseKeyView(
            name=row.name,
            key_id=release_key_id(row.public_key),
            public_key=row.public_key,
            modules=row.modules,
            applied_at=row.applied_at,
        )
        for row in rows
    ]


@router.delete(
    "/releasekeys/{name}", openapi_extra=audited("releasekey.delete", target="releasekey/{name}")
)
def release_keys_delete(
    name: str, op: OperatorDep, session: SessionDep, state: StateDep
) -> dict[str, list[str]]:
    """Delete a ReleaseKey: pushes signed by it are refused from now on, and
    devices' desired states stop listing it (through a rollout, named in the
    answer). 409 while a deployment pins a release it signed."""
    check_unscoped(op, f"ReleaseKey {name!r}")
    rollout = delete_release_key(session, name, state.deployments, actor_of(op))
    session.commit()
    state.notifier.poke()
    event(log, "releasekey.deleted", name=name, by=op.name, rollout=rollout)
    return {"rollouts": [rollout] if rollout else []}
