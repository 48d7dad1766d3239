"""Who is looking at the console: the session cookie, its CSRF token, the role.

The cookie `__Host-fogline-session` holds a bearer token: the session token
`POST /console/sign-in` got from `sign_in` (hub/_people.py) for a user's
password, or the operator token pasted there. It is `HttpOnly` (no script
reads it), `Secure` (TLS only), `SameSite=Strict` (no other site's page
sends it) and, by its `__Host-` prefix, bound to this host and path `/`.
Each request authenticates it again (`authenticate`), so a revoked token, a
removed user or a changed role takes effect at once, and a forged or edited
cookie is refused like a wrong bearer token.

CSRF: every state-changing form carries `csrf`, an HMAC of a fixed label
keyed by the session's token. Only the holder of the cookie can compute it,
and a page of another origin can read neither; it changes with each session.
The sign-in form, before any session, uses a double-submit cookie.

ConsoleRefusal
  (status, message, and where to send a browser that has no session)
"""

import hashlib
import hmac
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from fogline.security import Permission, role_allows, scope_text

from .._audit import note_actor
from .._auth import actor_of, db_session
from .._clock import utcnow
from .._errors import UnauthorizedError
from .._people import Principal, authenticate
from .._permissions import granted, route_need

SESSION_COOKIE: Final = "__Host-fogline-session"
SIGN_IN_COOKIE: Final = "__Host-fogline-sign-in"
CSRF_FIELD: Final = "csrf"
SIGN_IN_PATH: Final = "/console/sign-in"
# A form is a few fields; more is refused before parsing.
MAX_FORM_BYTES: Final = 16 * 1024
MAX_FORM_FIELDS: Final = 32
_CSRF_LABEL: Final = b"fogline console csrf v1"


class ConsoleRefusal(Exception):
    """A console request refused: `status` and `message` for the page, and
    `sign_in` when the browser should be sent to sign in instead."""

    def __init__(self, status: int, message: str, *, sign_in: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.sign_in = status, message, sign_in


def csrf_token(session_token: str) -> str:
    """The CSRF token of the session holding `session_token`."""
    mac = hmac.new(session_token.encode(), _CSRF_LABEL, hashlib.sha256)
    return mac.hexdigest()


def new_sign_in_nonce() -> str:
    return secrets.token_urlsafe(32)


def cookie_flags(max_age_s: int | None) -> dict[str, object]:
    """The attributes of both console cookies (see the module docstring)."""
    flags: dict[str, object] = {
        "httponly": True,
        "secure": True,
        "samesite": "strict",
        "path": "/",
    }
    if max_age_s is not None:
        flags["max_age"] = max_age_s
    return flags


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The signed-in principal, what the role may do, and the form token."""

    principal: Principal
    token: str  # the cookie's token: never rendered, never logged
    csrf: str

    @property
    def scope_text(self) -> str | None:
        scope = self.principal.scope
        return scope_text(scope) if scope is not None else None

    def may(self, permission: Permission) -> bool:
        return role_allows(self.principal.role, permission)


def _route_need(request: Request) -> Permission:
    route = getattr(request.scope.get("route"), "path", None)
    need = route_need(request.method, route) if isinstance(route, str) else None
    if not isinstance(need, Permission):
        raise ConsoleRefusal(403, f"{request.method} {route} is not in the permission table")
    return need


def console_user(request: Request, session: Annotated[Session, Depends(db_session)]) -> ConsoleUser:
    """The principal behind the session cookie, allowed this page.

    Raises:
        ConsoleRefusal: no cookie or a token that does not authenticate
            (sign in; 401 for a POST), or a role without the route's permission (403).
    """
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token or len(token) > 512:
        raise ConsoleRefusal(401, "sign in to use the console", sign_in=True)
    try:
        principal = authenticate(session, token, utcnow())
    except UnauthorizedError as exc:
        raise ConsoleRefusal(401, f"sign in again: {exc.message}", sign_in=True) from None
    note_actor(actor_of(principal))
    need = _route_need(request)
    if not role_allows(principal.role, need):
        raise ConsoleRefusal(
            403,
            f"{principal.name} has role {principal.role}, and this needs permission "
            f"{need.value!r}, which only {granted(need)}",
        )
    return ConsoleUser(principal, token, csrf_token(token))


ConsoleUserDep = Annotated[ConsoleUser, Depends(console_user)]


async def read_form(request: Request) -> dict[str, str]:
    """The url-encoded form of a POST, each field once (the first value).

    Raises:
        ConsoleRefusal: not a form, too large, or too many fields (400).
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ConsoleRefusal(400, "expected a form (application/x-www-form-urlencoded)")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ConsoleRefusal(413, f"a console form is at most {MAX_FORM_BYTES} bytes")
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise ConsoleRefusal(400, "the form is not valid UTF-8 or has too many fields") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


async def checked_form(request: Request, user: ConsoleUserDep) -> dict[str, str]:
    """The form of a state-changing request whose CSRF token is the session's.

    Raises:
        ConsoleRefusal: 403 when the token is missing or wrong (see read_form too).
    """
    fields = await read_form(request)
    if not hmac.compare_digest(fields.get(CSRF_FIELD, "").encode(), user.csrf.encode()):
        raise ConsoleRefusal(403, "the form's CSRF token is missing or wrong; reload the page")
    return fields


FormDep = Annotated[dict[str, str], Depends(checked_form)]
