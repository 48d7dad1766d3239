"""The console's routes under `/console`: sign-in, pages, forms, live updates.

Every route is in the permission table (hub/_permissions.py) like an API
route, and every POST declares its audit action; they are left out of the
OpenAPI document (HTML, not API) and walked by tests/console/test_console_routes.py.
A page reads through the same functions as the API (hub/_inventory.py,
_health.py, _alerts.py, rollouts, releases, _audit.py, _telemetry.py), and
a form changes state through the very function its API route calls
(`relabel_device`, `act_on_rollout`), which audits it.
"""

import asyncio
import datetime as dt
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Final, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fogline._log import event
from fogline.protocol import LabelChange, ModulesReport, SignIn
from fogline.security import Permission

from .._alerts import alert_view, count_active_by_kind, list_alerts
from .._audit import AuditQuery, audit_view, list_audit, note_actor, record_audit
from .._audit_trail import audited
from .._auth import StateDep, actor_of, db_session
from .._clock import utcnow
from .._desired import SYNC_COLUMNS, parse_deployments, sync_report
from .._devices import count_devices_by_status, count_devices_by_version, device_view, find_device
from .._errors import ApiError, ForbiddenError, UnauthorizedError
from .._health import HealthRetention, SeriesQuery, epoch_ms, read_series, series_query
from .._insights import insights
from .._inventory import DeviceQuery, count_devices_by_sync, device_page, parse_device_query
from .._people import SESSION_LIFETIME, SESSION_TOKEN_NAME, authenticate, sign_in
from .._permissions import LOG_READING
from .._schema import DeploymentRow, DesiredStateRow, TokenRow
from .._scopes import check_device_in_scope, check_rollout_in_scope
from .._state import HubState
from .._telemetry import query as telemetry_query
from ..releases import list_releases, release_view
from ..rollouts import available_actions, find_rollout, list_rollouts, rollout_view
from ..routes._alerts import acknowledge_alert
from ..routes._operator import relabel_device
from ..routes._rollout import act_on_rollout, since_time
from ._render import STATIC_DIR, render, render_text
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
from ._svg import line_chart

log = logging.getLogger("fogline.hub.console")
router = APIRouter(prefix="/console", include_in_schema=False)
SessionDep = Annotated[Session, Depends(db_session)]
RefPath = Annotated[str, Path(min_length=1, max_length=128)]
Text = Annotated[str | None, Query(max_length=256)]

ROLLOUT_ACTIVE: Final = frozenset({"running", "paused"})
# Live updates: one event a second, a stream at most this long (the browser
# reconnects by itself), at most this many streams at once per hub process.
SSE_INTERVAL_S: Final = 1.0
SSE_MAX_S: Final = 300.0
MAX_STREAMS: Final = 64
_STREAMS: Final = asyncio.Semaphore(MAX_STREAMS)
STATIC_TYPES: Final = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
HEALTH_CHARTS: Final = (
    ("cpu_percent", "CPU", "%", 0.0, 100.0),
    ("mem_used_percent", "Memory used", "%", 0.0, 100.0),
    ("disk_free_percent", "Disk free", "%", 0.0, 100.0),
    ("temperature_c", "Temperature", "°C", None, None),
)
MAX_TABLE_ROWS: Final = 200
# The device page's Logs: the newest lines of one stream within a day, each
# cut to a size a page can hold; the live tail reads the same query once per
# SSE_INTERVAL_S for at most SSE_MAX_S (then the browser reconnects).
LOG_LINES: Final = 200
LOG_LINE_BYTES: Final = 2048
LOG_WINDOW: Final = dt.timedelta(days=1)
AGENT_LOG: Final = "_agent"  # the stream logs/_agent: no module has that name
LogName = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")]


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


@router.get("/devices")
def devices(
    user: ConsoleUserDep,
    session: SessionDep,
    state: StateDep,
    name: Text = None,
    selector: Text = None,
    status: Text = None,
    sort: Text = None,
    order: Text = None,
    cursor: Annotated[str | None, Query(max_length=600)] = None,
) -> Response:
    """A page of devices through hub/_inventory.py: name prefix, selector,
    status, sort, and a cursor to the next page."""
    filters = {
        "name": name or "",
        "selector": selector or "",
        "status": status or "",
        "sort": sort or "name",
        "order": order or "asc",
    }
    try:
        query = parse_device_query(
            name=name or None,
            selector=selector or None,
            status=status or None,
            sort=sort or None,
            order=order or None,
            limit="50",
            cursor=cursor or None,
        )
    except ApiError as exc:
        return render("devices.html", status=exc.status, user=user, page="devices",
                      problem=exc.message, rows=[], filters=filters, next_url=None)  # fmt: skip
    now = utcnow()
    rows, next_cursor = device_page(session, query, now, state.settings.offline_after_s)
    ids = [row.id for row in rows]
    # Only the columns sync_report reads, as GET /v1/devices: not the documents.
    desired = {
        d.device_id: d
        for d in session.execute(select(*SYNC_COLUMNS).where(DesiredStateRow.device_id.in_(ids)))
    }
    views = [
        device_view(row, now, state.settings.offline_after_s).model_copy(
            update={"sync": sync_report(desired.get(row.id))}
        )
        for row in rows
    ]
    next_url = None
    if next_cursor is not None:
        params = {k: v for k, v in filters.items() if v} | {"cursor": next_cursor}
        next_url = "/console/devices?" + _query_string(params)
    return render("devices.html", user=user, page="devices", problem="", rows=views,
                  filters=filters, next_url=next_url)  # fmt: skip


def _query_string(params: dict[str, str]) -> str:
    import urllib.parse

    return urllib.parse.urlencode(params)


def _health_charts(points: list[dict[str, Any]]) -> list[Any]:
    series: dict[str, list[tuple[float, float | None]]] = {key: [] for key, *_ in HEALTH_CHARTS}
    for point in points:
        at = point["at"].timestamp()
        used, available = point.get("mem_used_bytes"), point.get("mem_available_bytes")
        free, total = point.get("disk_free_bytes"), point.get("disk_total_bytes")
        figures = {
            "cpu_percent": point.get("cpu_percent"),
            "mem_used_percent": (
                used * 100.0 / (used + available) if used is not None and available else None
            ),
            "disk_free_percent": free * 100.0 / total if free is not None and total else None,
            "temperature_c": point.get("temperature_c"),
        }
        for key, value in figures.items():
            series[key].append((at, None if value is None else float(value)))
    return [
        line_chart(series[key], title=title, unit=unit, y_min=low, y_max=high)
        for key, title, unit, low, high in HEALTH_CHARTS
    ]


def health_points(
    session: Session, device_id: str, window_s: float, now_ms: int, settings: HealthRetention
) -> list[dict[str, Any]]:
    """A device's health over `window_s` for the charts, both reads through
    `read_series`: beyond an hour, the 5-minute rollups and then the raw
    samples after the last rollup (a day is ~300 rows, not 8,640, and the
    newest minutes are there); an hour or less, or no rollup yet, what
    `GET /v1/devices/{ref}/health` would answer."""
    since_ms = now_ms - int(window_s * 1000)
    step_ms = int(settings.rollup_step_s * 1000)
    if window_s > 3600:
        rolled = read_series(
            session, device_id, SeriesQuery(since_ms, settings.rollup_step_s, True), settings
        )
        if rolled:
            after_ms = int(rolled[-1]["at"].timestamp() * 1000) + step_ms
            raw = read_series(session, device_id, SeriesQuery(after_ms, 0.0, False), settings)
            return rolled + raw
    query = series_query(window_s, None, now_ms, settings)
    return read_series(session, device_id, query, settings)


def _log_sources(modules: ModulesReport | None) -> list[str]:
    """The logs a device page offers: the agent's, then its modules' by name."""
    return [AGENT_LOG, *sorted(modules.modules if modules is not None else ())]


def _cut(line: str) -> str:
    encoded = line.encode("utf-8", "replace")
    if len(encoded) <= LOG_LINE_BYTES:
        return line
    return encoded[:LOG_LINE_BYTES].decode("utf-8", "ignore") + " [cut]"


def recent_log_lines(session: Session, device_id: str, source: str) -> list[dict[str, str]]:
    """The newest LOG_LINES lines of `logs/<source>` (oldest first), through
    the API's telemetry query, each cut to LOG_LINE_BYTES. The template
    escapes them: a line is text, never markup."""
    rows = telemetry_query(
        session, device_id=device_id, stream=f"logs/{source}", since=utcnow() - LOG_WINDOW,
        limit=LOG_LINES, newest=True,
    )  # fmt: skip
    lines = []
    for row in rows:
        payload = row["payload"] if isinstance(row["payload"], dict) else {}
        lines.append(
            {
                "at": row["created"],
                "stream": "stderr" if payload.get("stream") == "stderr" else "stdout",
                "text": _cut(str(payload.get("line", ""))),
            }
        )
    return lines


def _log_context(session: Session, device_id: str, source: str) -> dict[str, Any]:
    return {"lines": recent_log_lines(session, device_id, source), "source": source}


@router.get("/devices/{ref}")
def device_page_view(
    ref: RefPath,
    user: ConsoleUserDep,
    session: SessionDep,
    state: StateDep,
    log: LogName = None,
) -> Response:
    """Facts, labels (a form when the role and scope allow), desired vs
    reported revision, modules, drift, outbox, 24 h of health as charts, and
    the newest lines of one log (`log`: `_agent` or a module) with a live
    tail, when the role may read logs (LOG_READING, as GET /v1/telemetry)."""
    row = find_device(session, ref)
    desired = session.get(DesiredStateRow, row.id)
    view = device_view(row, utcnow(), state.settings.offline_after_s).model_copy(
        update={"sync": sync_report(desired)}
    )
    settings = state.settings.health
    # 24 h, or the device's life when shorter (at least 10 minutes): a
    # device enrolled a minute ago gets a line, not one 3-minute bucket.
    window_s = min(max((utcnow() - row.enrolled_at).total_seconds(), 600.0), 86400.0)
    charts = _health_charts(health_points(session, row.id, window_s, epoch_ms(utcnow()), settings))
    may_label = user.may(Permission.LABEL)
    if may_label:
        try:
            check_device_in_scope(user.principal, row)
        except ForbiddenError:
            may_label = False
    alerts = [
        alert_view(a) for a in list_alerts(session, active=True, limit=200) if a.device_id == row.id
    ]
    return render(
        "device.html",
        user=user,
        page="devices",
        device=view,
        desired_revision=desired.revision if desired is not None else None,
        applied_revision=desired.applied_revision if desired is not None else None,
        charts=charts,
        window=f"{window_s / 3600:.0f} h" if window_s >= 3600 else f"{window_s / 60:.0f} min",
        may_label=may_label,
        alerts=alerts,
        **_device_logs(session, user, row.id, view.reported.modules, log),
    )


def _device_logs(
    session: Session, user: Any, device_id: str, modules: ModulesReport | None, log: str | None
) -> dict[str, Any]:
    if not user.may(LOG_READING):
        return {"may_read_logs": False}
    sources = _log_sources(modules)
    source = log or AGENT_LOG
    return {
        "may_read_logs": True,
        "log_sources": sources if source in sources else [*sources, source],
        **_log_context(session, device_id, source),
    }


@router.get("/devices/{ref}/logs/events")
async def device_log_events(
    ref: RefPath, user: ConsoleUserDep, request: Request, state: StateDep, log: LogName = None
) -> Response:
    """Server-sent events: the device page's log lines as HTML, whenever
    they change, polled once per SSE_INTERVAL_S, for at most SSE_MAX_S; each
    tick authenticates the session again (a revoked one ends the stream)."""
    source = log or AGENT_LOG

    def tick() -> tuple[str, bool] | None:
        with state.sessions() as session:
            try:
                authenticate(session, user.token, utcnow())
            except UnauthorizedError:
                return None
            device_id = find_device(session, ref).id
            html = render_text("_device_logs.html", **_log_context(session, device_id, source))
        return html, False  # a log goes on: the stream ends at SSE_MAX_S

    return await _live(request, tick)


async def _live(request: Request, tick: Callable[[], tuple[str, bool] | None]) -> Response:
    """A live section for console.js: `progress` events carrying the HTML
    `tick` renders (in a worker thread), sent when it changed, once per
    SSE_INTERVAL_S for at most SSE_MAX_S or until `tick` says it ended;
    `tick` answers None when the session no longer authenticates, which
    ends the stream. The first tick
    runs before the response starts, so an unknown thing is a 404 page."""
    if _STREAMS.locked():
        raise ConsoleRefusal(503, "too many live views open; reload in a moment")
    first = await run_in_threadpool(tick)
    if first is None:
        raise ConsoleRefusal(401, "sign in again", sign_in=True)

    async def stream() -> AsyncIterator[bytes]:
        async with _STREAMS:
            yield b"retry: 2000\n\n"
            last = ""
            deadline = asyncio.get_running_loop().time() + SSE_MAX_S
            while asyncio.get_running_loop().time() < deadline:
                if await request.is_disconnected():
                    return
                ticked = await run_in_threadpool(tick)
                if ticked is None:
                    yield b"event: end\ndata: signed out\n\n"
                    return
                html, ended = ticked
                if html != last:
                    last = html
                    data = "".join(f"data: {line}\n" for line in html.splitlines())
                    yield f"event: progress\n{data}\n".encode()
                if ended:
                    yield b"event: end\ndata: ended\n\n"
                    return
                await asyncio.sleep(SSE_INTERVAL_S)

    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _labels_of(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise ConsoleRefusal(422, f"set: expected key=value, got {part.strip()[:80]!r}")
        pairs[key.strip()] = value.strip()
    return pairs


@router.post(
    "/devices/{ref}/labels", openapi_extra=audited("device.label", target="{ref}")
)  # fmt: skip
def device_labels(
    ref: RefPath, user: ConsoleUserDep, form: FormDep, session: SessionDep, state: StateDep
) -> Response:
    """Set and remove labels from the device page, through `relabel_device`
    (the API's PATCH /v1/devices/{ref}/labels), audited there."""
    removed = [k.strip() for k in form.get("remove", "").split(",") if k.strip()]
    try:
        change = LabelChange(set=_labels_of(form.get("set", "")), remove=removed)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        raise ConsoleRefusal(422, f"{field}: {first['msg']}") from None
    row = relabel_device(session, state, user.principal, ref, change)
    return RedirectResponse(f"/console/devices/{row.id}", status_code=303)


@router.get("/rollouts")
def rollouts(user: ConsoleUserDep, session: SessionDep) -> Response:
    views = [rollout_view(session, row, devices=False) for row in list_rollouts(session, 100)]
    return render("rollouts.html", user=user, page="rollouts", rollouts=views)


def _rollout_context(session: Session, user: Any, ref: str) -> dict[str, Any]:
    row = find_rollout(session, ref)
    view = rollout_view(session, row, devices=True)
    actions: list[str] = []
    if user.may(Permission.ROLLOUT):
        try:
            check_rollout_in_scope(user.principal, session, row)
            actions = available_actions(row.state)
        except ForbiddenError:
            actions = []
    return {"rollout": view, "actions": actions, "user": user}


@router.get("/rollouts/{ref}")
def rollout_page(ref: RefPath, user: ConsoleUserDep, session: SessionDep) -> Response:
    """A rollout's waves, live (see `rollout_events`), and its buttons."""
    return render("rollout.html", page="rollouts", **_rollout_context(session, user, ref))


@router.get("/rollouts/{ref}/events")
async def rollout_events(
    ref: RefPath, user: ConsoleUserDep, request: Request, state: StateDep
) -> Response:
    """Server-sent events: the rollout's progress section as HTML, once a
    second while it changes, until it ends or SSE_MAX_S passes; each tick
    authenticates the session again (a revoked one ends the stream)."""

    def tick() -> tuple[str, bool] | None:
        with state.sessions() as session:
            try:
                authenticate(session, user.token, utcnow())
            except UnauthorizedError:
                return None
            context = _rollout_context(session, user, ref)
        html = render_text("_rollout_progress.html", **context)
        return html, context["rollout"]["state"] not in ROLLOUT_ACTIVE

    return await _live(request, tick)


@router.post(
    "/rollouts/{ref}/{action}", openapi_extra=audited("rollout.{action}", target="{ref}")
)  # fmt: skip
def rollout_act(
    ref: RefPath,
    action: Literal["pause", "resume", "abort", "rollback"],
    user: ConsoleUserDep,
    _form: FormDep,
    session: SessionDep,
    state: StateDep,
) -> Response:
    """The buttons: through `act_on_rollout` (the API's POST
    /v1/rollouts/{ref}/{action}), audited there."""
    row = act_on_rollout(session, state, user.principal, ref, action)
    return RedirectResponse(f"/console/rollouts/{row.id}", status_code=303)


def _deployed_in(rows: list[DeploymentRow]) -> dict[str, list[str]]:
    """Release digest -> the deployments whose (resolved) document names it."""
    found: dict[str, list[str]] = {}
    for row in rows:
        text = orjson.dumps(row.document).decode()
        start = 0
        for _ in range(10_000):  # bounded: a document names a few releases
            at = text.find("sha256:", start)
            if at < 0:
                break
            digest = text[at : at + 71]
            names = found.setdefault(digest, [])
            if row.name not in names:
                names.append(row.name)
            start = at + 71
    return found


@router.get("/releases")
def releases(user: ConsoleUserDep, session: SessionDep) -> Response:
    deployments = list(session.scalars(select(DeploymentRow).order_by(DeploymentRow.name)))
    return render(
        "releases.html",
        user=user,
        page="releases",
        releases=[release_view(row) for row in list_releases(session)],
        deployed=_deployed_in(deployments),
    )


@router.get("/deployments")
def deployments(
    user: ConsoleUserDep, session: SessionDep, state: StateDep, name: Text = None
) -> Response:
    """The applied manifests, read-only; with `name`, its document as YAML-ish
    JSON and the first devices its selector picks (through hub/_inventory)."""
    rows = list(session.scalars(select(DeploymentRow).order_by(DeploymentRow.name)))
    chosen = next((row for row in rows if row.name == name), None)
    selected: list[Any] = []
    document = ""
    selector_text = ""
    if chosen is not None:
        document = orjson.dumps(chosen.document, option=orjson.OPT_INDENT_2).decode()
        selector = parse_deployments([chosen])[0].selector
        shown = selector.to_document()
        selector_text = orjson.dumps(shown).decode() if shown else "every device"
        query = DeviceQuery(selector=selector, limit=100)
        now = utcnow()
        page, _next = device_page(session, query, now, state.settings.offline_after_s)
        selected = [device_view(r, now, state.settings.offline_after_s) for r in page]
    return render("deployments.html", user=user, page="deployments", rows=rows,
                  chosen=chosen, document=document, selected=selected,
                  selector_text=selector_text)  # fmt: skip


@router.get("/audit")
def audit(
    user: ConsoleUserDep,
    session: SessionDep,
    actor: Text = None,
    action: Text = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    filters = {"actor": actor or "", "action": action or "", "since": since or "1d"}
    try:
        query = AuditQuery(
            since=since_time(filters["since"]),
            actor=actor or None,
            action=action or None,
            limit=MAX_TABLE_ROWS,
        )
    except ApiError as exc:
        return render("audit.html", status=exc.status, user=user, page="audit", entries=[],
                      filters=filters, problem=exc.message)  # fmt: skip
    entries = [audit_view(row) for row in reversed(list_audit(session, query))]
    return render("audit.html", user=user, page="audit", entries=entries, filters=filters,
                  problem="")  # fmt: skip


def _numbers(payload: Any) -> dict[str, float]:
    if not isinstance(payload, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in payload.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


@router.get("/telemetry")
def telemetry(
    user: ConsoleUserDep,
    session: SessionDep,
    device: Text = None,
    stream: Text = None,
    field: Text = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """A stream of a device: a chart of one numeric field and the records."""
    filters = {
        "device": device or "",
        "stream": stream or "",
        "field": field or "",
        "since": since or "1h",
    }
    records: list[dict[str, Any]] = []
    chart = None
    problem = ""
    fields: list[str] = []
    if device:
        try:
            row = find_device(session, device)
            start = since_time(filters["since"]) or utcnow() - dt.timedelta(hours=1)
            records = telemetry_query(
                session, device_id=row.id, stream=stream or None, since=start,
                limit=MAX_TABLE_ROWS * 5, newest=True,
            )  # fmt: skip
        except ApiError as exc:
            problem = exc.message
        numeric = [(r, _numbers(r["payload"])) for r in records]
        fields = sorted({k for _r, n in numeric for k in n})
        chosen = field if field in fields else (fields[0] if fields else None)
        if chosen is not None:
            filters["field"] = chosen
            points = [
                (dt.datetime.fromisoformat(r["created"]).timestamp(), n.get(chosen))
                for r, n in numeric
            ]
            chart = line_chart(points, title=f"{stream or 'all streams'}: {chosen}", unit="")
    return render("telemetry.html", user=user, page="telemetry", filters=filters,
                  records=records[-MAX_TABLE_ROWS:][::-1], chart=chart, fields=fields,
                  problem=problem)  # fmt: skip


# -- wiring --------------------------------------------------------------------


def _refused(request: Request, exc: Exception) -> Response:
    """A console refusal as a page; a browser without a session goes to sign in."""
    if isinstance(exc, ConsoleRefusal):
        status, message, to_sign_in = exc.status, exc.message, exc.sign_in
    elif isinstance(exc, ApiError):
        status, message, to_sign_in = exc.status, exc.message, False
    else:  # pragma: no cover - registered for the two above only
        raise exc
    if to_sign_in and request.method == "GET":
        response: Response = RedirectResponse(SIGN_IN_PATH, status_code=303)
    else:
        response = render("error.html", status=status, message=message, user=None)
    if to_sign_in:
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict"
        )
    return response


def install_console(app: FastAPI, state: HubState) -> None:
    """Serve the console at /console on `app` (the hub's TLS port)."""
    del state  # the routes read it from the app, like the API's
    app.include_router(router)
    previous = app.exception_handlers.get(ApiError)

    async def api_error(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/console") and not request.url.path.startswith(
            "/console/static"
        ):
            return _refused(request, exc)
        assert previous is not None
        result = previous(request, exc)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, Response)
        return result

    async def console_refusal(request: Request, exc: Exception) -> Response:
        return _refused(request, exc)

    app.add_exception_handler(ConsoleRefusal, console_refusal)
    if previous is not None:
        app.add_exception_handler(ApiError, api_error)


__all__ = ["install_console"]
