"""Users, their API tokens, `whoami` (any role) and the console's sign-in
(`POST /v1/sessions`, by password). The rest is admin only.

Every change is audited with the acting principal; no token or password is
ever in an answer but the one that creates the token, nor in the log.
"""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.orm import Session

from fogline._log import event
from fogline.protocol import (
    API_PREFIX,
    PRINCIPAL_NAME_PATTERN,
    SignIn,
    TokenCreate,
    TokenCreated,
    TokenView,
    UserChange,
    UserCreate,
    UserView,
    WhoAmI,
)
from fogline.security import ROLE_PERMISSIONS

from .._audit import note_actor
from .._audit_trail import audited
from .._auth import db_session, require_operator
from .._clock import utcnow
from .._errors import NotFoundError, UnauthorizedError
from .._people import (
    Principal,
    add_user,
    change_user,
    counted_user_view,
    create_token,
    list_tokens,
    list_users,
    remove_user,
    revoke_token,
    sign_in,
    token_view,
    user_view,
)
from .._schema import TokenRow

log = logging.getLogger("fogline.hub.people")
router = APIRouter(prefix=API_PREFIX, tags=["people"])

SessionDep = Annotated[Session, Depends(db_session)]
OperatorDep = Annotated[Principal, Depends(require_operator)]
NamePath = Annotated[str, Path(pattern=PRINCIPAL_NAME_PATTERN)]
TokenIdPath = Annotated[str, Path(min_length=1, max_length=32)]


@router.get("/whoami", response_model=WhoAmI)
def whoami(op: OperatorDep, session: SessionDep) -> WhoAmI:
    """The caller: its name in the audit log, role, scope, permissions and token."""
    row = session.get(TokenRow, op.token_id)
    if row is None:  # removed between the check and here
        raise NotFoundError("this token no longer exists")
    return WhoAmI(
        name=op.name,
        user=op.user,
        role=op.role,
        scope=dict(op.scope) if op.scope is not None else None,
        permissions=sorted(ROLE_PERMISSIONS[op.role]),
        token=token_view(row, utcnow()),
    )


@router.post(
    "/sessions",
    response_model=TokenCreated,
    status_code=201,
    openapi_extra=audited("session.create"),
)
def sessions_create(body: SignIn, session: SessionDep) -> TokenCreated:
    """Sign in with a user's password (set with `users add --password-stdin`):
    a token for 12 hours, shown once, acting with the user's role. 401 for a
    wrong user or password alike."""
    note_actor(f"user:{body.user}")  # who tried, refusals included
    try:
        row, token = sign_in(session, body)
    except UnauthorizedError:
        event(log, "session.refused", logging.WARNING, user=body.user)
        raise
    session.commit()
    event(log, "session.created", token_id=row.id, user=row.user_name)
    return TokenCreated(token=token, view=token_view(row, utcnow()))


@router.post("/users", response_model=UserView, status_code=201, openapi_extra=audited("user.add"))
def users_add(body: UserCreate, op: OperatorDep, session: SessionDep) -> UserView:
    """Add a user with a role, optionally scoped to labels. Audited."""
    row = add_user(session, body, op)
    session.commit()
    event(log, "user.added", user=row.name, role=row.role, by=op.name)
    return user_view(row)


@router.get("/users", response_model=list[UserView])
def users_list(_op: OperatorDep, session: SessionDep) -> list[UserView]:
    return list_users(session)


@router.patch(
    "/users/{name}",
    response_model=UserView,
    openapi_extra=audited("user.set-role", target="user:{name}"),
)
def users_change(
    name: NamePath, body: UserChange, op: OperatorDep, session: SessionDep
) -> UserView:
    """Replace a user's role and scope; its tokens carry them from the next request."""
    row = change_user(session, name, body, op)
    session.commit()
    event(log, "user.changed", user=row.name, role=row.role, by=op.name)
    return counted_user_view(session, row)


@router.delete(
    "/users/{name}",
    response_model=UserView,
    openapi_extra=audited("user.rm", target="user:{name}"),
)
def users_remove(name: NamePath, op: OperatorDep, session: SessionDep) -> UserView:
    """Remove a user; its tokens are revoked. Answers the user as it was."""
    row = remove_user(session, name, op)
    view = user_view(row)
    session.commit()
    event(log, "user.removed", user=view.name, by=op.name)
    return view


@router.post(
    "/tokens", response_model=TokenCreated, status_code=201, openapi_extra=audited("token.create")
)
def tokens_create(body: TokenCreate, op: OperatorDep, session: SessionDep) -> TokenCreated:
    """A new token for a user, with a name and a lifetime. The answer holds the
    token, once: the hub keeps a hash of it."""
    row, token = create_token(session, body, op)
    session.commit()
    event(log, "token.created", token_id=row.id, user=row.user_name, name=row.name, by=op.name)
    return TokenCreated(token=token, view=token_view(row, utcnow()))


@router.get("/tokens", response_model=list[TokenView])
def tokens_list(
    _op: OperatorDep,
    session: SessionDep,
    user: Annotated[str | None, Query(pattern=PRINCIPAL_NAME_PATTERN)] = None,
) -> list[TokenView]:
    """Tokens, newest first (the bootstrap admin token too): never the token itself."""
    now = utcnow()
    return [token_view(row, now) for row in list_tokens(session, user)]


@router.post(
    "/tokens/{token_id}/revoke",
    response_model=TokenView,
    openapi_extra=audited("token.revoke", target="token:{token_id}"),
)
def tokens_revoke(token_id: TokenIdPath, op: OperatorDep, session: SessionDep) -> TokenView:
    """Revoke a token: refused from its next request on."""
    row = revoke_token(session, token_id, op)
    session.commit()
    event(log, "token.revoked", token_id=row.id, by=op.name)
    return token_view(row, utcnow())
