"""The fleet pages: rollouts (live progress, buttons), releases,
deployments, the audit trail and telemetry."""

import datetime as dt
from typing import Annotated, Any, Literal

import orjson
from fastapi import Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline.security import Permission

from .._audit import AuditQuery, audit_view, list_audit
from .._audit_trail import audited
from .._auth import StateDep
from .._clock import utcnow
from .._desired import parse_deployments
from .._devices import device_view, find_device
from .._errors import ApiError, ForbiddenError
from .._inventory import DeviceQuery, device_page
from .._schema import DeploymentRow
from .._scopes import check_rollout_in_scope
from .._telemetry import query as telemetry_query
from ..releases import list_releases, release_view
from ..rollouts import available_actions, find_rollout, list_rollouts, rollout_view
from ..routes._rollout import act_on_rollout, since_time
from ._deps import MAX_TABLE_ROWS, ROLLOUT_ACTIVE, RefPath, SessionDep, Text, console_router
from ._live import live_section, still_signed_in
from ._render import render, render_text
from ._session import ConsoleUserDep, FormDep
from ._svg import line_chart

router = console_router()


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
            if not still_signed_in(session, user.token):
                return None
            context = _rollout_context(session, user, ref)
        html = render_text("_rollout_progress.html", **context)
        return html, context["rollout"]["state"] not in ROLLOUT_ACTIVE

    return await live_section(request, tick)


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
