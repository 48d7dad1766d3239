"""The console's way in: sign-in and sign-out, its static files, and the
overview page with its Acknowledge buttons."""

import hmac
from typing import Annotated, Final

from fastapi import Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from fogline._log import event
from fogline.protocol import SignIn

from .._alerts import alert_view, count_active_by_kind, list_alerts
from .._audit import note_actor, record_audit
from .._audit_trail import audited
from .._auth import StateDep, actor_of
from .._clock import utcnow
from .._devices import count_devices_by_status, count_devices_by_version
from .._errors import ApiError, UnauthorizedError
from .._insights import insights
from .._inventory import count_devices_by_sync
from .._people import SESSION_LIFETIME, SESSION_TOKEN_NAME, authenticate, sign_in
from .._schema import TokenRow
from ..rollouts import list_rollouts, rollout_view
from ..routes._alerts import acknowledge_alert
from ._deps import ROLLOUT_ACTIVE, RefPath, SessionDep, console_router, log
from ._render import STATIC_DIR, render
from ._session import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SIGN_IN_PATH,
    ConsoleRefusal,
    ConsoleUserDep,
    FormDep,
    cookie_flags,
    new_sign_in_nonce,
    read_form,
)

router = console_router()
STATIC_TYPES: Final = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}

# -- sign-in -------------------------------------------------------------------


@router.get("/sign-in")
def sign_in_page(request: Request, problem: str = "") -> Response:
    """The sign-in form, with a fresh double-submit nonce against login CSRF."""
    nonce = new_sign_in_nonce()
    response = render("sign_in.html", problem=problem[:200], csrf=nonce, user=None)
    response.set_cookie(SIGN_IN_COOKIE, nonce, **cookie_flags(600))  # type: ignore[arg-type]
    return response


@router.post("/sign-in", openapi_extra=audited("session.create"))
async def sign_in_submit(request: Request, state: StateDep) -> Response:
    """Sign in with a user and password (`sign_in`) or with a token; the
    session's token goes into the cookie, never into a URL."""
    form = await read_form(request)
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    if not nonce or not hmac.compare_digest(form.get(CSRF_FIELD, "").encode(), nonce.encode()):
        raise ConsoleRefusal(403, "the sign-in form expired; load it again")
    user, password = form.get("user", ""), form.get("password", "")
    pasted = form.get("token", "").strip()

    def by_password() -> str:
        note_actor(f"user:{user[:64]}")
        try:
            body = SignIn(user=user, password=password)
        except ValidationError:
            raise UnauthorizedError("wrong user or password") from None
        with state.sessions() as session:
            row, token = sign_in(session, body)
            session.commit()
            event(log, "console.signed_in", token_id=row.id, user=row.user_name)
        return token

    def by_token() -> str:
        with state.sessions() as session:
            principal = authenticate(session, pasted[:512], utcnow())
            note_actor(actor_of(principal))
            record_audit(
                session, actor_of(principal), "session.create", f"token:{principal.token_id}",
                via="console-token",
            )  # fmt: skip
            session.commit()
            event(log, "console.signed_in", token_id=principal.token_id, user=principal.user)
        return pasted

    try:
        token = await run_in_threadpool(by_token if pasted else by_password)
    except ApiError as exc:
        return render("sign_in.html", status=exc.status, problem=exc.message,
                      csrf=nonce, user=None)  # fmt: skip
    response = RedirectResponse("/console", status_code=303)
    lifetime = int(SESSION_LIFETIME.total_seconds())
    response.set_cookie(SESSION_COOKIE, token, **cookie_flags(lifetime))  # type: ignore[arg-type]
    response.delete_cookie(SIGN_IN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/sign-out", openapi_extra=audited("session.end"))
def sign_out(user: ConsoleUserDep, _form: FormDep, session: SessionDep) -> Response:
    """End the session: a sign-in's session token is revoked; a pasted token
    is only forgotten by this browser (it may be used elsewhere)."""
    row = session.get(TokenRow, user.principal.token_id)
    revoked = row is not None and row.name == SESSION_TOKEN_NAME and row.user_name is not None
    if row is not None and revoked and row.revoked_at is None:
        row.revoked_at = utcnow()
    record_audit(
        session, actor_of(user.principal), "session.end", f"token:{user.principal.token_id}",
        revoked=revoked,
    )  # fmt: skip
    session.commit()
    response = RedirectResponse(SIGN_IN_PATH, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.get("/static/{name}")
def static_file(name: Annotated[str, Path(max_length=64)]) -> Response:
    """The console's own CSS and script: a fixed list, nothing else on disk."""
    media = STATIC_TYPES.get(name)
    if media is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(
        (STATIC_DIR / name).read_bytes(),
        media_type=media,
        headers={"cache-control": "max-age=300", "x-content-type-options": "nosniff"},
    )


# -- pages ---------------------------------------------------------------------


@router.get("")
def overview(user: ConsoleUserDep, session: SessionDep, state: StateDep) -> Response:
    """Counts by status, sync, version and active alert; alerts; insights
    (the same function as GET /v1/insights); live rollouts."""
    now = utcnow()
    alerts = [alert_view(row) for row in list_alerts(session, active=True, limit=50)]
    rollouts = [
        rollout_view(session, row, devices=False)
        for row in list_rollouts(session, 20)
        if row.state in ROLLOUT_ACTIVE
    ]
    return render(
        "overview.html",
        user=user,
        page="overview",
        by_status=count_devices_by_status(session, now, state.settings.offline_after_s),
        by_sync=count_devices_by_sync(session),
        by_version=count_devices_by_version(session),
        by_alert=count_active_by_kind(session),
        alerts=alerts,
        insights=insights(session, now),
        rollouts=rollouts,
    )


@router.post("/alerts/{ref}/ack", openapi_extra=audited("alert.ack", target="{ref}"))
def alert_ack(ref: RefPath, user: ConsoleUserDep, _form: FormDep, session: SessionDep) -> Response:
    """The overview's Acknowledge button, through `acknowledge_alert` (the
    API's POST /v1/alerts/{ref}/ack), audited there."""
    acknowledge_alert(session, user.principal, ref)
    return RedirectResponse("/console", status_code=303)
