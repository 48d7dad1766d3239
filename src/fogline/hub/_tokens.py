"""Operator tokens: the bootstrap admin token, its rotation, and the token check."""

from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fogline.security import NewToken, TokenError, new_token, parse_token, secret_matches

from ._clock import utcnow
from ._schema import TokenRow

ADMIN_ROLE: Final = "admin"
# The name of the admin token the hub creates at first start (DATA_DIR/admin-token).
BOOTSTRAP_ADMIN: Final = "admin"


def ensure_admin_token(session: Session, prefix: str) -> NewToken | None:
    """Create the first admin token; None when one exists already (even revoked:
    a rotated token is replaced by `rotate_admin_token`, not here)."""
    if session.scalar(select(TokenRow.id).where(TokenRow.role == ADMIN_ROLE).limit(1)):
        return None
    return _add_bootstrap_admin(session, prefix)


def rotate_admin_token(session: Session, prefix: str) -> NewToken | None:
    """Revoke the bootstrap admin token and create its successor; None when the
    hub never created one (it has not started on this database yet).

    Tokens are checked against the database on every request, so a running
    hub refuses the old token as soon as this commits.
    """
    current = select(TokenRow.id).where(
        TokenRow.name == BOOTSTRAP_ADMIN, TokenRow.role == ADMIN_ROLE
    )
    if session.scalar(current.limit(1)) is None:
        return None
    session.execute(
        update(TokenRow)
        .where(
            TokenRow.name == BOOTSTRAP_ADMIN,
            TokenRow.role == ADMIN_ROLE,
            TokenRow.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return _add_bootstrap_admin(session, prefix)


def _add_bootstrap_admin(session: Session, prefix: str) -> NewToken:
    token = new_token(prefix)
    session.add(
        TokenRow(
            id=token.token_id,
            name=BOOTSTRAP_ADMIN,
            role=ADMIN_ROLE,
            secret_hash=token.secret_hash,
            created_at=utcnow(),
        )
    )
    return token


def operator_for_token(session: Session, token: str) -> TokenRow | None:
    try:
        parsed = parse_token(token)
    except TokenError:
        return None
    row = session.get(TokenRow, parsed.token_id)
    if row is None or row.revoked_at is not None:
        return None
    return row if secret_matches(parsed.secret, row.secret_hash) else None
