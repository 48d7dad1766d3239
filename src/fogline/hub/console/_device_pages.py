"""The device pages: the device list, a device's page (facts, labels form,
health charts, logs with a live tail) and its labels form."""

import datetime as dt
from typing import Annotated, Any, Final

from fastapi import Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline.protocol import LabelChange, ModulesReport
from fogline.security import Permission

from .._alerts import alert_view, list_alerts
from .._audit_trail import audited
from .._auth import StateDep
from .._clock import utcnow
from .._desired import SYNC_COLUMNS, sync_report
from .._devices import device_view, find_device
from .._errors import ApiError, ForbiddenError
from .._health import HealthRetention, SeriesQuery, epoch_ms, read_series, series_query
from .._inventory import device_page, parse_device_query
from .._permissions import LOG_READING
from .._schema import DesiredStateRow
from .._scopes import check_device_in_scope
from .._telemetry import query as telemetry_query
from ..routes._operator import relabel_device
from ._deps import RefPath, SessionDep, Text, console_router
from ._live import live_section, still_signed_in
from ._render import render, render_text
from ._session import ConsoleRefusal, ConsoleUserDep, FormDep
from ._svg import line_chart

router = console_router()
HEALTH_CHARTS: Final = (
    ("cpu_percent", "CPU", "%", 0.0, 100.0),
    ("mem_used_percent", "Memory used", "%", 0.0, 100.0),
    ("disk_free_percent", "Disk free", "%", 0.0, 100.0),
    ("temperature_c", "Temperature", "°C", None, None),
)
# The device page's Logs: the newest lines of one stream within a day, each
# cut to a size a page can hold; the live tail reads the same query once per
# SSE_INTERVAL_S for at most SSE_MAX_S (then the browser reconnects).
LOG_LINES: Final = 200
LOG_LINE_BYTES: Final = 2048
LOG_WINDOW: Final = dt.timedelta(days=1)
AGENT_LOG: Final = "_agent"  # the stream logs/_agent: no module has that name
LogName = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")]


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
            if not still_signed_in(session, user.token):
                return None
            device_id = find_device(session, ref).id
            html = render_text("_device_logs.html", **_log_context(session, device_id, source))
        return html, False  # a log goes on: the stream ends at SSE_MAX_S

    return await live_section(request, tick)


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
