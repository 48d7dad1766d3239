"""The operator API for rollouts and the audit log."""

import datetime as dt
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.orm import Session

from fogline._log import event
from fogline.manifest import parse_duration, parse_timestamp
from fogline.protocol import API_PREFIX

from .._audit import MAX_AUDIT_ROWS, AuditQuery, audit_head, audit_view, list_audit
from .._audit_trail import audited
from .._auth import StateDep, actor_of, db_session, require_operator
from .._clock import utcnow
from .._errors import BadRequestError
from .._people import Principal
from .._schema import RolloutRow
from .._scopes import check_rollout_in_scope
from .._state import HubState
from ..releases import check_rollout_resume
from ..rollouts import find_rollout, list_rollouts, operate, rollout_view

log = logging.getLogger("fogline.hub.rollout")
router = APIRouter(prefix=API_PREFIX, tags=["rollouts"])

SessionDep = Annotated[Session, Depends(db_session)]
OperatorDep = Annotated[Principal, Depends(require_operator)]
RefPath = Annotated[str, Path(min_length=1, max_length=128)]


@router.get("/rollouts")
def rollouts_list(
    _op: OperatorDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """Recent rollouts, newest first, with their device counts."""
    return [rollout_view(session, row, devices=False) for row in list_rollouts(session, limit)]


@router.get("/rollouts/{ref}")
def rollouts_show(ref: RefPath, _op: OperatorDep, session: SessionDep) -> dict[str, Any]:
    """One rollout by id, or a deployment's latest: waves and devices."""
    return rollout_view(session, find_rollout(session, ref), devices=True)


@router.post("/rollouts/{ref}/{action}", openapi_extra=audited("rollout.{action}", target="{ref}"))
def rollouts_act(
    ref: RefPath,
    action: Literal["pause", "resume", "abort", "rollback"],
    op: OperatorDep,
    session: SessionDep,
    state: StateDep,
) -> dict[str, Any]:
    """Pause, resume, abort or roll back a rollout (409 if it cannot). Audited."""
    return rollout_view(session, act_on_rollout(session, state, op, ref, action), devices=False)


def act_on_rollout(
    session: Session, state: HubState, op: Principal, ref: str, action: str
) -> RolloutRow:
    """Pause, resume, abort or roll back, audited and committed: the API
    route's and the console's one way to do it.

    Raises:
        NotFoundError: no such rollout. ForbiddenError: outside `op`'s scope.
        ConflictError: the action does not apply in the rollout's state.
    """
    rollout = find_rollout(session, ref)
    check_rollout_in_scope(op, session, rollout)
    if action == "resume":  # the vulnerability gate: data may have changed since apply
        check_rollout_resume(session, rollout.deployments, utcnow())
    row, changed = operate(session, ref, action, actor_of(op))
    session.commit()
    if changed:
        state.notifier.poke()
    event(log, f"rollout.{action}", rollout=row.id, by=op.name, state=row.state)
    return row


def since_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return utcnow() - dt.timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        return parse_timestamp(text)
    except ValueError:
        raise BadRequestError(
            f"since: expected a duration like 1h or an ISO 8601 timestamp (got {text[:40]!r})",
            field="since",
        ) from None


@router.get("/audit")
def audit_list(
    _op: OperatorDep,
    session: SessionDep,
    since: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_ROWS)] = MAX_AUDIT_ROWS,
) -> list[dict[str, Any]]:
    """Audit entries, oldest first: `since` is a duration (1h) or a timestamp;
    `action` is exact or a prefix ending in `*`. With `after` (a seq), the
    first `limit` entries past it, to page through the whole chain; else the
    newest `limit`."""
    query = AuditQuery(
        since=since_time(since), after=after, actor=actor, action=action, limit=limit
    )
    return [dict(audit_view(row)) for row in list_audit(session, query)]


@router.get("/audit/head")
def audit_head_show(_op: OperatorDep, session: SessionDep) -> dict[str, Any]:
    """The audit chain's head: the last entry's seq and hash. Kept outside the
    hub, it anchors the chain (docs/security.md)."""
    return dict(audit_head(session))
