"""The hub's FastAPI application: routers, error bodies, limits, metrics."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fogline import __version__
from fogline._log import event
from fogline.protocol import API_PREFIX, MAX_BODY_BYTES, Report
from fogline.vulns import MAX_IMPORT_BYTES

from ._alert_pass import AlertPass
from ._alerts import AlertWebhook, count_active_by_kind
from ._audit_trail import AuditTrail
from ._auth import require_operator
from ._bodies import BodyLimit, add_body_models
from ._clock import utcnow
from ._desired import desired_changes_since
from ._devices import count_devices_by_status, count_devices_by_version
from ._error_responses import install_error_handlers
from ._healing_actions import actions_taken
from ._health import epoch_ms, roll_up
from ._insights import device_names, failure_groups, forecast_pass, group_view
from ._metrics import RequestTiming
from ._people import Principal
from ._restart_healing import RestartPlanner, restart_pass, restart_policies
from ._self_healing import quarantine_pass
from ._state import HubState
from ._supervise import TaskFactory, TaskSupervisor, fault_file_from_env
from ._telemetry import apply_retention
from .console import install_console
from .releases import MAX_RELEASE_BYTES
from .rollouts import run_scheduler
from .routes import (
    alerts_router,
    device_router,
    manifest_router,
    operator_router,
    people_router,
    read_woken_desired,
    release_router,
    rollout_router,
    telemetry_router,
    tuf_router,
    vulns_router,
)

log = logging.getLogger("fogline.hub")
OperatorDep = Annotated[Principal, Depends(require_operator)]


async def retention_forever(state: HubState, interval_s: float = 60.0) -> None:
    """Delete telemetry past the retention period, once a minute.

    A failed pass (a locked or unreachable database) is logged and tried
    again next time: an exception here would end the app's lifespan task
    group and with it the report writer, the long-poll watcher and the
    rollout scheduler, while the server went on answering.
    """
    while True:
        try:
            deleted = await asyncio.to_thread(
                apply_retention, state.engine, state.settings.telemetry_retention_s
            )
        except Exception as exc:
            event(log, "telemetry.retention_failed", logging.WARNING, error=_describe(exc))
        else:
            if deleted:
                event(log, "telemetry.retention", deleted=deleted)
        await asyncio.sleep(interval_s)


async def health_rollups_forever(state: HubState) -> None:
    """Roll health samples up and apply their retention (see _health.py);
    a failed pass is logged and tried again, like telemetry retention."""
    retention = state.settings.health
    while True:
        try:
            written, deleted = await asyncio.to_thread(
                roll_up, state.engine, epoch_ms(utcnow()), retention
            )
        except Exception as exc:
            event(log, "health.rollup_failed", logging.WARNING, error=_describe(exc))
        else:
            if written or deleted:
                event(log, "health.rollup", written=written, deleted=deleted)
        await asyncio.sleep(retention.pass_interval_s)


def alert_webhook(state: HubState) -> AlertWebhook | None:
    """The webhook new alerts are sent to, if one is configured."""
    thresholds = state.settings.alerts
    if not thresholds.webhook_url:
        return None
    return AlertWebhook(thresholds.webhook_url, thresholds.webhook_timeout_s)


async def alerts_forever(state: HubState, webhook: AlertWebhook | None = None) -> None:
    """Raise and clear alerts (see _alerts.py), run the self-healing passes
    and the forecast pass when due (_insights.py), and hand the new alerts,
    the failure groups they join and the self-healing actions taken to the
    webhook (its own supervised task); a failed pass is logged and tried
    again."""
    thresholds = state.settings.alerts
    forecast = state.settings.forecast
    # Where the next forecast pass starts (a device id), and when it is due.
    cursor = ""
    forecast_due = 0.0
    # Groups sent, by id, with their size then: a group is sent again when it
    # has doubled, not once per device that joins it.
    groups_sent: dict[str, int] = {}
    # Kept across passes (and across restarts of this task by the hub's
    # supervisor: a restarted pass reads every device again).
    alert_pass = AlertPass(thresholds)

    def one_pass() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The alerts raised, and the self-healing actions taken, this pass."""
        nonlocal cursor, forecast_due
        started = utcnow()
        acted_on: set[str] = set()  # devices a self-healing action touched
        with state.transaction() as session:
            deployments = state.deployments.get(session)
            raised = alert_pass.run(session, utcnow(), deployments)
        # Its own transaction, after the alerts it counts are committed.
        with state.transaction() as session:
            quarantined = quarantine_pass(session, utcnow(), deployments, state.deployments)
        acted_on.update(quarantined)
        for name in quarantined:
            event(log, "devices.quarantined", logging.WARNING, device=name)
        if quarantined:
            state.notifier.poke()
        now_s = time.monotonic()
        if now_s >= forecast_due:
            forecast_due = now_s + forecast.interval_s
            # Its own try: the alerts just raised still go to the webhook.
            planner = RestartPlanner(restart_policies(deployments), forecast)
            visit = planner.visit if planner.policies else None
            try:
                with state.transaction() as session:
                    more, cursor = forecast_pass(session, utcnow(), forecast, cursor, visit)
            except Exception as exc:
                event(log, "alerts.forecast_failed", logging.WARNING, error=_describe(exc))
            else:
                raised += more
            if planner.candidates:
                # Its own transaction and try, after the forecasts are committed.
                try:
                    with state.transaction() as session:
                        asked = restart_pass(session, utcnow(), planner.candidates, forecast)
                except Exception as exc:
                    event(log, "modules.restart_failed", logging.WARNING, error=_describe(exc))
                else:
                    acted_on.update(name for name, _ in asked)
                    for name, module in asked:
                        event(
                            log,
                            "modules.restart_asked",
                            logging.WARNING,
                            device=name,
                            module=module,
                        )
                    if asked:
                        state.notifier.poke()
        if raised and webhook is not None:
            raised += _new_groups({a["kind"] for a in raised})
        actions: list[dict[str, Any]] = []
        if acted_on and webhook is not None:
            # Read back from the audit trail, committed above: each action
            # once, as the insights show it (_healing_actions.py). Its own
            # try: the alerts just raised still go to the webhook.
            try:
                with state.sessions() as session:
                    actions = actions_taken(session, started, acted_on)
            except Exception as exc:
                event(log, "alerts.actions_read_failed", logging.WARNING, error=_describe(exc))
        return raised, actions

    def _new_groups(kinds: set[str]) -> list[dict[str, Any]]:
        with state.sessions() as session:
            groups = failure_groups(session, kinds)
            names = device_names(session, {d for g in groups for d in g.device_ids[:20]})
        out = []
        if len(groups_sent) > 10_000:
            groups_sent.clear()  # bounded: at worst a group is sent once more
        for view in (group_view(g, names) for g in groups):
            before = groups_sent.get(view["id"], 0)
            if view["count"] >= 2 * before:
                groups_sent[view["id"]] = view["count"]
                out.append(
                    {**view, "id": f"group-{view['id']}", "group": True, "raised_at": utcnow()}
                )
        return out

    while True:
        try:
            raised, actions = await asyncio.to_thread(one_pass)
        except Exception as exc:
            event(log, "alerts.pass_failed", logging.WARNING, error=_describe(exc))
        else:
            for alert in raised:
                event(log, "alerts.raised", kind=alert["kind"], device=alert.get("device"))
            if webhook is not None:
                webhook.send(raised + actions)
        await asyncio.sleep(thresholds.interval_s)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def create_app(state: HubState, supervisor: TaskSupervisor | None = None) -> FastAPI:
    """The hub's app; its background tasks run under `supervisor` (by default
    one with the test-only fault file of FOGLINE_HUB_TEST_FAULT_FILE, if set)."""
    if supervisor is None:
        supervisor = TaskSupervisor(fault_file=fault_file_from_env())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.notifier.bind(asyncio.get_running_loop())

        def read_changes(since: int) -> list[tuple[str, int]]:
            with state.sessions() as session:
                return desired_changes_since(session, since)

        webhook = alert_webhook(state)
        tasks: dict[str, TaskFactory] = {
            "report-writer": state.reports.run,
            "desired-watch": lambda: state.notifier.watch(
                read_changes, lambda device_ids: read_woken_desired(state, device_ids)
            ),
            "rollout-scheduler": lambda: run_scheduler(state),
            "retention": lambda: retention_forever(state),
            "health-rollups": lambda: health_rollups_forever(state),
            "alerts": lambda: alerts_forever(state, webhook),
        }
        if webhook is not None:
            tasks["alert-webhook"] = webhook.run
        async with asyncio.TaskGroup() as tg:
            supervised = tg.create_task(supervisor.run(tasks), name="hub-tasks")
            yield
            supervised.cancel()

    # The schema, its docs page and the metrics tell an attacker the API, the
    # fleet's size and its errors: operators only (see docs/security.md).
    # Prometheus without a token: `--metrics-listen` on loopback (_serve.py).
    app = FastAPI(
        title="Fogline hub",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.hub = state
    add_body_models(app, [Report])  # parsed by hand in the device routes
    app.include_router(device_router)
    app.include_router(operator_router)
    app.include_router(manifest_router)
    app.include_router(release_router)
    app.include_router(telemetry_router)
    app.include_router(rollout_router)
    app.include_router(people_router)
    app.include_router(alerts_router)
    app.include_router(tuf_router)
    app.include_router(vulns_router)
    install_error_handlers(app)
    install_console(app, state)  # after: it defers to the API's error bodies
    app.add_middleware(RequestTiming, metrics=state.metrics)
    app.add_middleware(
        BodyLimit,
        max_bytes=MAX_BODY_BYTES,
        large_paths={
            f"{API_PREFIX}/releases": MAX_RELEASE_BYTES,
            f"{API_PREFIX}/vulndb/imports": MAX_IMPORT_BYTES,
        },
    )
    # Outermost: a request refused by any layer inside (the body limit too)
    # is recorded.
    app.add_middleware(AuditTrail, state=state)

    def count_devices() -> dict[str, int]:
        with state.sessions() as session:
            return count_devices_by_status(session, utcnow(), state.settings.offline_after_s)

    state.metrics.add_device_counter(count_devices)

    def fleet_aggregates() -> tuple[dict[str, int], dict[str, int]]:
        with state.sessions() as session:
            return count_devices_by_version(session), count_active_by_kind(session)

    state.metrics.add_fleet_aggregates(fleet_aggregates)

    @app.get("/metrics", include_in_schema=False)
    def metrics(_op: OperatorDep) -> PlainTextResponse:
        return PlainTextResponse(
            generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_op: OperatorDep) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs(_op: OperatorDep) -> HTMLResponse:
        # The schema inline: the browser's own fetch of /openapi.json would
        # carry no token.
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Fogline hub API",
            swagger_ui_parameters={"spec": app.openapi()},
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        # Names only: the errors are in the hub's log, not for anyone asking.
        down = sorted(supervisor.down())
        if down:
            body = {"status": "unhealthy", "version": __version__, "tasks_down": down}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "version": __version__})

    return app
