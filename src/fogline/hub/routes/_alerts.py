"""Alerts the hub raised (see hub/_alerts.py): list them, acknowledge one;
and the insights drawn from them (hub/_insights.py)."""

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from fogline.protocol import API_PREFIX

from .._alerts import alert_view, list_alerts
from .._audit import record_audit
from .._audit_trail import audited
from .._auth import SessionEndingRoute, actor_of, db_session, require_operator
from .._clock import utcnow
from .._errors import NotFoundError
from .._insights import insights
from .._people import Principal
from .._schema import AlertRow

router = APIRouter(prefix=API_PREFIX, tags=["alerts"], route_class=SessionEndingRoute)
SessionDep = Annotated[Session, Depends(db_session)]
OperatorDep = Annotated[Principal, Depends(require_operator)]
# The newest first; an answer never holds more.
MAX_ALERTS: Final = 1000


@router.get("/alerts")
def alerts_list(
    _op: OperatorDep, session: SessionDep, active: bool = False
) -> list[dict[str, Any]]:
    """Alerts, newest first (at most 1000); `active=true`: those not cleared."""
    return [alert_view(row) for row in list_alerts(session, active=active, limit=MAX_ALERTS)]


@router.post("/alerts/{ref}/ack", openapi_extra=audited("alert.ack", target="{ref}"))
def alerts_ack(ref: str, op: OperatorDep, session: SessionDep) -> dict[str, Any]:
    """Acknowledge an alert: someone is on it. It stays active until what
    raised it clears. Audited."""
    return alert_view(acknowledge_alert(session, op, ref))


def acknowledge_alert(session: Session, op: Principal, ref: str) -> AlertRow:
    """Acknowledge, audited and committed (idempotent): the API route's and
    the console's one way to do it. Raises: NotFoundError."""
    row = session.get(AlertRow, ref[:64])
    if row is None:
        raise NotFoundError(f"no alert {ref[:64]!r}")
    if row.acked_at is None:
        row.acked_at = utcnow()
        row.acked_by = actor_of(op)[:128]
    record_audit(session, actor_of(op), "alert.ack", row.id, kind=row.kind, device=row.device_name)
    session.commit()
    return row


@router.get("/insights")
def insights_list(_op: OperatorDep, session: SessionDep) -> dict[str, Any]:
    """Forecasts (disk full, memory leaks), devices far from their peers, the
    active alerts grouped by what their devices share, largest group first
    (each list at most 1000), and the self-healing actions the hub took in
    the last 24 h, newest first (at most 100; from the audit trail)."""
    return insights(session, utcnow())
