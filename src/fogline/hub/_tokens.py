"""The bootstrap admin token and its rotation (users' tokens: _people.py)."""

from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fogline.security import NewToken, new_token

from ._clock import utcnow
from ._schema import TokenRow

ADMIN_ROLE: Final = "admin"
# The name of the admin token the hub creates at first start (DATA_DIR/admin-token).
BOOTSTRAP_ADMIN: Final = "admin"


def ensure_admin_token(session: Session, prefix: str) -> NewToken | None:
    """Create the first admin token; None when one exists already (even revoked:
    a rotated token is replaced by `rotate_admin_token`, not here)."""
    bootstrap = select(TokenRow.id).where(TokenRow.role == ADMIN_ROLE, TokenRow.user_name.is_(None))
    if session.scalar(bootstrap.limit(1)):
        return None
    return _add_bootstrap_admin(session, prefix)


def rotate_admin_token(session: Session, prefix: str) -> NewToken | None:
    """Revoke the bootstrap admin token and create its successor; None when the
    hub never created one (it has not started on this database yet).

    Tokens are checked against the database on every request, so a running
    hub refuses the old token as soon as this commits.
    """
    # user_name IS NULL: a user's token that happens to be named "admin" is
    # not the bootstrap token, and rotation must not revoke it.
    current = select(TokenRow.id).where(
        TokenRow.name == BOOTSTRAP_ADMIN,
        TokenRow.role == ADMIN_ROLE,
        TokenRow.user_name.is_(None),
    )
    if session.scalar(current.limit(1)) is None:
        return None
    session.execute(
        update(TokenRow)
        .where(
            TokenRow.name == BOOTSTRAP_ADMIN,
            TokenRow.role == ADMIN_ROLE,
            TokenRow.user_name.is_(None),
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
