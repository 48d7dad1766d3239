"""The audit log: who (operator token name, or "scheduler") did what, and when."""

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from ._clock import utcnow
from ._desired import plain
from ._schema import AuditRow

SCHEDULER: Final = "scheduler"
MAX_AUDIT_ROWS: Final = 1000


def record_audit(session: Session, actor: str, action: str, target: str, **detail: Any) -> AuditRow:
    """Add one entry to the caller's transaction: it commits with the change it
    describes, or not at all."""
    row = AuditRow(
        at=utcnow(),
        actor=actor[:64],
        action=action[:64],
        target=target[:128],
        detail=plain(detail),
    )
    session.add(row)
    return row


def list_audit(
    session: Session, since: dt.datetime | None = None, limit: int = MAX_AUDIT_ROWS
) -> Sequence[AuditRow]:
    """Entries oldest first, from `since` on, at most `limit` (the newest ones)."""
    query = select(AuditRow).order_by(AuditRow.id.desc()).limit(max(1, min(limit, MAX_AUDIT_ROWS)))
    if since is not None:
        query = query.where(AuditRow.at >= since)
    return list(reversed(session.scalars(query).all()))


def audit_view(row: AuditRow) -> Mapping[str, Any]:
    return {
        "id": row.id,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "detail": row.detail,
    }
