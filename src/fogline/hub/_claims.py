"""Provisioning claims as operators manage them: create, list, view, revoke.

Whether a claim may enroll a device is decided at enrollment (`_enrollment`).
"""

import datetime as dt
from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline.protocol import ClaimCreate, ClaimStatus, ClaimView
from fogline.security import CLAIM_PREFIX, new_token

from ._clock import utcnow
from ._errors import ConflictError, NotFoundError
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
        name=row.name,
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
    """A new claim and its token (shown once).

    Raises:
        ConflictError: `spec.name` is taken by another claim.
    """
    if spec.name is not None and find_claim_by_name(session, spec.name) is not None:
        raise ConflictError(f"a claim named {spec.name!r} exists; choose another name")
    now = utcnow()
    return add_claim(
        session,
        name=spec.name,
        labels=spec.labels,
        names=spec.names,
        max_uses=spec.max_uses,
        now=now,
        expires_at=now + dt.timedelta(seconds=spec.expires_in_s),
    )


def add_claim(
    session: Session,
    *,
    name: str | None,
    labels: Mapping[str, str],
    names: Sequence[str],
    max_uses: int,
    now: dt.datetime,
    expires_at: dt.datetime,
) -> tuple[ClaimRow, str]:
    """Add a claim row with a fresh token (by `create_claim` and by an
    apply's ProvisioningClaim); returns it and the token, shown once."""
    token = new_token(CLAIM_PREFIX)
    row = ClaimRow(
        id=token.token_id,
        name=name,
        secret_hash=token.secret_hash,
        labels=dict(labels),
        names=list(names),
        max_uses=max_uses,
        uses=0,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    return row, token.token


def list_claims(session: Session) -> Sequence[ClaimRow]:
    return session.scalars(select(ClaimRow).order_by(ClaimRow.created_at)).all()


def find_claim_by_name(session: Session, name: str) -> ClaimRow | None:
    return session.scalar(select(ClaimRow).where(ClaimRow.name == name))


def find_claim(session: Session, ref: str) -> ClaimRow:
    """A claim by id or by name.

    Raises:
        NotFoundError: neither matches.
    """
    row = session.get(ClaimRow, ref) or find_claim_by_name(session, ref)
    if row is None:
        raise NotFoundError(f"no claim with id or name {ref[:80]!r}")
    return row


def revoke_claim(session: Session, ref: str) -> ClaimRow:
    """Revoke the claim with this id or name (again: a no-op).

    Raises:
        NotFoundError: no such claim.
    """
    row = find_claim(session, ref)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
