"""Users and their API tokens, and who a bearer token is (its `Principal`).

A user has one role, maybe scoped to labels; a token belongs to a user and
acts with that user's role and scope as they are at each request, so a role
change or a removal takes effect on the next request. The bootstrap admin
token (DATA_DIR/admin-token) belongs to no user and is always `admin`.

Tokens are `fgt_<id>.<secret>`: only a SHA-256 of the 256-bit secret is
stored (a slow hash buys nothing against a secret that long), looked up by
id and compared in constant time.
"""

import datetime as dt
import functools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fogline.protocol import (
    SignIn,
    TokenCreate,
    TokenStatus,
    TokenView,
    UserChange,
    UserCreate,
    UserView,
)
from fogline.security import (
    ADMIN_PREFIX,
    USER_TOKEN_PREFIX,
    Role,
    TokenError,
    hash_password,
    new_token,
    parse_token,
    password_matches,
    secret_matches,
)

from ._audit import record_audit
from ._clock import utcnow
from ._errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
)
from ._schema import TokenRow, UserRow

# TokenRow.role of a user's token: the role is the user's, read at each request.
USER_TOKEN_ROLE: Final = "user"  # noqa: S105 - a marker, not a secret
# How stale `last_used_at` may be: a write per request would put every read
# behind the database's write lock.
LAST_USE_RESOLUTION: Final = dt.timedelta(seconds=60)
MAX_TOKENS_LISTED: Final = 1000
# A console sign-in's token: short-lived, named so `tokens ls` tells it apart.
SESSION_LIFETIME: Final = dt.timedelta(hours=12)
SESSION_TOKEN_NAME: Final = "console-session"  # noqa: S105 - a name, not a secret
MAX_SIGN_INS: Final = 2
_SIGN_INS: Final = threading.BoundedSemaphore(MAX_SIGN_INS)


@functools.cache
def _dummy_hash() -> str:
    """Verified for a user who does not exist or has no password, so the
    answer takes as long as for one who does. Made once, on first use."""
    return hash_password("fogline: no such user, no such password")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling with a bearer token."""

    name: str  # the actor in the audit log: "admin" (bootstrap) or "user:alice"
    role: Role
    scope: Mapping[str, str] | None  # None: the whole fleet
    token_id: str
    user: str | None  # None: the bootstrap admin token


def principal_name(user: str | None, token_name: str) -> str:
    return f"user:{user}" if user is not None else token_name


def authenticate(session: Session, token: str, now: dt.datetime) -> Principal:
    """The principal `token` stands for; records its use (at most once a
    minute) and ends the session's transaction (the caller's own changes
    commit with it: call it first).

    Raises:
        UnauthorizedError: malformed, unknown, wrong secret, revoked, expired,
            or its user was removed. A wrong secret and an unknown id answer
            the same, so the answer tells a guesser nothing.
    """
    try:
        parsed = parse_token(token)
    except TokenError:
        raise UnauthorizedError("invalid token") from None
    row = session.get(TokenRow, parsed.token_id)
    if (
        row is None
        # The prefix is part of the token: a claim token's shape (fgc_) or
        # another kind's never stands for a bearer token with the same id.
        or parsed.prefix != (ADMIN_PREFIX if row.user_name is None else USER_TOKEN_PREFIX)
        or not secret_matches(parsed.secret, row.secret_hash)
    ):
        raise UnauthorizedError("invalid token")
    # The secret matched: from here on the holder may learn why it fails.
    if row.revoked_at is not None:
        raise UnauthorizedError(f"token {row.name!r} was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        expired = f"{row.expires_at:%Y-%m-%dT%H:%M:%SZ}"
        raise UnauthorizedError(f"token {row.name!r} expired at {expired}")
    if row.user_name is None:
        role, scope = Role(row.role), None
    else:
        user = session.get(UserRow, row.user_name)
        if user is None:
            raise UnauthorizedError(f"token {row.name!r}: its user was removed")
        role, scope = Role(user.role), (dict(user.scope) if user.scope else None)
    if row.last_used_at is None or now - row.last_used_at >= LAST_USE_RESOLUTION:
        # Its own statement, committed below: a read-only request commits nothing else.
        session.execute(update(TokenRow).where(TokenRow.id == row.id).values(last_used_at=now))
    # The transaction ends here, written or not, and its connection goes back
    # to the pool: the auth dependencies call this, and the route after them
    # waits for a worker thread of its own, which a burst of requests waiting
    # for connections on every worker thread would never give it
    # (tests/hub/test_request_connections.py).
    session.commit()
    return Principal(principal_name(row.user_name, row.name), role, scope, row.id, row.user_name)


def token_view(row: TokenRow, now: dt.datetime) -> TokenView:
    status: TokenStatus
    if row.revoked_at is not None:
        status = "revoked"
    elif row.expires_at is not None and row.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    return TokenView(
        id=row.id,
        name=row.name,
        user=row.user_name,
        status=status,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _active_tokens(session: Session, now: dt.datetime, user: str | None = None) -> dict[str, int]:
    """Active (not revoked, not expired) tokens per user; only `user`'s if given."""
    query = (
        select(TokenRow.user_name, func.count())
        .where(
            TokenRow.user_name.is_not(None),
            TokenRow.revoked_at.is_(None),
            (TokenRow.expires_at.is_(None)) | (TokenRow.expires_at > now),
        )
        .group_by(TokenRow.user_name)
    )
    if user is not None:
        query = query.where(TokenRow.user_name == user)
    return {str(name): int(count) for name, count in session.execute(query)}


def counted_user_view(session: Session, row: UserRow) -> UserView:
    """The user with its count of active tokens."""
    return user_view(row, _active_tokens(session, utcnow(), row.name).get(row.name, 0))


def user_view(row: UserRow, tokens: int = 0) -> UserView:
    return UserView(
        name=row.name,
        role=row.role,
        scope=dict(row.scope) if row.scope else None,
        has_password=row.password_hash is not None,
        tokens=tokens,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _check_scope(role: str, scope: Mapping[str, str] | None) -> dict[str, str] | None:
    if not scope:
        return None
    if role == Role.ADMIN:
        # An admin creates users and tokens: a scope would be one it can lift.
        raise BadRequestError("an admin cannot be scoped; give admin no scope", field="scope")
    return dict(scope)


def add_user(session: Session, body: UserCreate, by: Principal) -> UserRow:
    """Raises: ConflictError: the name is taken. BadRequestError: an admin with a scope."""
    if session.get(UserRow, body.name) is not None:
        raise ConflictError(f"user {body.name!r} exists", field="name")
    row = UserRow(
        name=body.name,
        role=body.role,
        scope=_check_scope(body.role, body.scope),
        password_hash=hash_password(body.password) if body.password is not None else None,
        created_at=utcnow(),
        created_by=by.name,
    )
    session.add(row)
    record_audit(
        session,
        by.name,
        "user.add",
        f"user:{row.name}",
        role=row.role,
        scope=row.scope,
        password=row.password_hash is not None,
    )
    return row


def find_user(session: Session, name: str) -> UserRow:
    """Raises: NotFoundError."""
    row = session.get(UserRow, name[:64])
    if row is None:
        raise NotFoundError(f"no user {name[:64]!r}")
    return row


def list_users(session: Session) -> list[UserView]:
    counts = _active_tokens(session, utcnow())
    rows = session.scalars(select(UserRow).order_by(UserRow.name)).all()
    return [user_view(row, counts.get(row.name, 0)) for row in rows]


def change_user(session: Session, name: str, body: UserChange, by: Principal) -> UserRow:
    """Replace a user's role and scope; its tokens act with them from the next request.

    Raises: NotFoundError; BadRequestError: an admin with a scope.
    """
    row = find_user(session, name)
    before = {"role": row.role, "scope": row.scope}
    row.role, row.scope = body.role, _check_scope(body.role, body.scope)
    record_audit(
        session,
        by.name,
        "user.set-role",
        f"user:{row.name}",
        before=before,
        after={"role": row.role, "scope": row.scope},
    )
    return row


def remove_user(session: Session, name: str, by: Principal) -> UserRow:
    """Remove a user and revoke its tokens. Raises: NotFoundError."""
    row = find_user(session, name)
    now = utcnow()
    active = (TokenRow.user_name == row.name, TokenRow.revoked_at.is_(None))
    revoked = session.scalar(select(func.count()).select_from(TokenRow).where(*active)) or 0
    session.execute(update(TokenRow).where(*active).values(revoked_at=now))
    session.delete(row)
    record_audit(session, by.name, "user.rm", f"user:{row.name}", tokens_revoked=revoked)
    return row


def create_token(session: Session, body: TokenCreate, by: Principal) -> tuple[TokenRow, str]:
    """A new token for an existing user; returns its row and the token (shown once).

    Raises: NotFoundError: no such user. ConflictError: the user has an
    active token of that name.
    """
    user = find_user(session, body.user)
    now = utcnow()
    taken = session.scalar(
        select(TokenRow.id).where(
            TokenRow.user_name == user.name,
            TokenRow.name == body.name,
            TokenRow.revoked_at.is_(None),
            (TokenRow.expires_at.is_(None)) | (TokenRow.expires_at > now),
        )
    )
    if taken is not None:
        raise ConflictError(
            f"user {user.name!r} has an active token {body.name!r} ({taken}); revoke it first",
            field="name",
        )
    token = new_token(USER_TOKEN_PREFIX)
    row = TokenRow(
        id=token.token_id,
        name=body.name,
        role=USER_TOKEN_ROLE,
        secret_hash=token.secret_hash,
        created_at=now,
        user_name=user.name,
        expires_at=now + dt.timedelta(seconds=body.expires_in_s),
        created_by=by.name,
    )
    session.add(row)
    record_audit(
        session,
        by.name,
        "token.create",
        f"token:{row.id}",
        user=user.name,
        name=row.name,
        expires_at=row.expires_at,
    )
    return row, token.token


def sign_in(session: Session, body: SignIn) -> tuple[TokenRow, str]:
    """A session token (`SESSION_LIFETIME`) for a user whose password matches.

    An unknown user, a user without a password and a wrong password answer
    alike, and take alike: a hash is verified in every case, so the answer's
    time does not tell which users exist. At most `MAX_SIGN_INS` hashes are
    verified at once (each costs 64 MiB); more answer 503 at once.

    Raises:
        UnauthorizedError: the user or the password is wrong.
        UnavailableError: too many sign-ins in flight.
    """
    if not _SIGN_INS.acquire(blocking=False):
        raise UnavailableError("too many sign-ins at once; try again in a moment")
    try:
        user = session.get(UserRow, body.user)
        stored = user.password_hash if user is not None else None
        matched = password_matches(body.password, stored or _dummy_hash())
    finally:
        _SIGN_INS.release()
    if user is None or stored is None or not matched:
        raise UnauthorizedError("wrong user or password")
    now = utcnow()
    token = new_token(USER_TOKEN_PREFIX)
    row = TokenRow(
        id=token.token_id,
        name=SESSION_TOKEN_NAME,
        role=USER_TOKEN_ROLE,
        secret_hash=token.secret_hash,
        created_at=now,
        user_name=user.name,
        expires_at=now + SESSION_LIFETIME,
        created_by=principal_name(user.name, SESSION_TOKEN_NAME),
    )
    session.add(row)
    record_audit(session, row.created_by or "", "session.create", f"token:{row.id}", user=user.name)
    return row, token.token


def list_tokens(session: Session, user: str | None = None) -> Sequence[TokenRow]:
    query = select(TokenRow).order_by(TokenRow.created_at.desc()).limit(MAX_TOKENS_LISTED)
    if user is not None:
        query = query.where(TokenRow.user_name == user)
    return session.scalars(query).all()


def revoke_token(session: Session, token_id: str, by: Principal) -> TokenRow:
    """Revoke a token by id, from its next request on (idempotent).

    The bootstrap admin token is not revoked here: it is replaced with
    `fogline hub rotate-admin-token`, which writes its successor.

    Raises: NotFoundError; BadRequestError: the bootstrap admin token.
    """
    row = session.get(TokenRow, token_id[:32])
    if row is None:
        raise NotFoundError(f"no token {token_id[:32]!r}")
    if row.user_name is None:
        raise BadRequestError(
            "the bootstrap admin token is replaced with `fogline hub rotate-admin-token`",
            field="id",
        )
    already = row.revoked_at is not None
    if not already:
        row.revoked_at = utcnow()
    record_audit(
        session,
        by.name,
        "token.revoke",
        f"token:{row.id}",
        user=row.user_name,
        name=row.name,
        already_revoked=already,
    )
    return row
