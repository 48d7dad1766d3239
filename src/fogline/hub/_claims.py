"""Provisioning claims as operators manage them: create, list, view, revoke.

Whether a claim may enroll a device is decided at enrollment (`_enrollment`).
"""

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline.protocol import ClaimCreate, ClaimStatus, ClaimView
from fogline.security import CLAIM_PREFIX, new_token

from ._clock import utcnow
from ._errors import NotFoundError
from ._schema import ClaimRow


def claim_view(row: ClaimRow, now: dt.datetime) -> ClaimView:
    status: ClaimStatus
    if row.revoked_at is not None:
        status = "revoked"
    elif row.expires_at <= now:
        status = "expired"
    elif row.uses >= row.max_uses:
        status = "used-up"
    else:
        status = "active"
    return ClaimView(
        id=row.id,
        labels=row.labels,
        names=list(row.names or ()),
        max_uses=row.max_uses,
        uses=row.uses,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        status=status,
    )


def create_claim(session: Session, spec: ClaimCreate) -> tuple[ClaimRow, str]:
    token = new_token(CLAIM_PREFIX)
    now = utcnow()
    row = ClaimRow(
        id=token.token_id,
        secret_hash=token.secret_hash,
        labels=dict(spec.labels),
        names=list(spec.names),
        max_uses=spec.max_uses,
        uses=0,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=spec.expires_in_s),
    )
    session.add(row)
    return row, token.token


def list_claims(session: Session) -> Sequence[ClaimRow]:
    return session.scalars(select(ClaimRow).order_by(ClaimRow.created_at)).all()


def revoke_claim(session: Session, claim_id: str) -> ClaimRow:
    row = session.get(ClaimRow, claim_id)
    if row is None:
        raise NotFoundError(f"no claim {claim_id!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
