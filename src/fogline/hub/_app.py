"""The hub's FastAPI application: routers, error bodies, limits, metrics."""

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fogline import __version__
from fogline._log import event
from fogline.protocol import API_PREFIX, MAX_BODY_BYTES, ErrorBody, ErrorDetail, Report

from ._bodies import add_body_models
from ._desired import desired_changes_since
from ._errors import ApiError
from ._metrics import RequestTiming
from ._releases import MAX_RELEASE_BYTES
from ._rollout_scheduler import run_scheduler
from ._routes_device import router as device_router
from ._routes_manifest import router as manifest_router
from ._routes_operator import router as operator_router
from ._routes_release import router as release_router
from ._routes_rollout import router as rollout_router
from ._routes_telemetry import router as telemetry_router
from ._state import HubState
from ._store import count_devices_by_status, utcnow
from ._telemetry import apply_retention

log = logging.getLogger("fogline.hub")


def _error(
    status: int,
    code: str,
    message: str,
    details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=code, message=message, details=details or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = []
    for problem in exc.errors():
        if problem.get("type") == "json_invalid":
            return _error(400, "malformed_json", "request body is not valid JSON")
        details.append(
            ErrorDetail(field=_field_path(problem.get("loc", ())), reason=problem["msg"])
        )
    first = details[0] if details else ErrorDetail(reason="invalid request")
    return _error(422, "invalid", f"{first.field}: {first.reason}", details)


async def _on_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    details = [ErrorDetail(field=exc.field, reason=exc.message)] if exc.field else []
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
    return _error(exc.status, exc.code, exc.message, details, headers)


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return _error(exc.status_code, "http_error", str(exc.detail))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log, never to the client.
    event(
        log,
        "request.failed",
        logging.ERROR,
        path=request.url.path,
        error=f"{type(exc).__name__}: {exc}",
    )
    return _error(500, "internal", "internal error; see the hub log")


async def _retention_forever(state: HubState) -> None:
    """Delete telemetry past the retention period, once a minute."""
    while True:
        deleted = await asyncio.to_thread(
            apply_retention, state.engine, state.settings.telemetry_retention_s
        )
        if deleted:
            event(log, "telemetry.retention", deleted=deleted)
        await asyncio.sleep(60)


class BodyTooLargeError(ApiError):
    status = 413
    code = "too_large"


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413, before any handler.

    Checks Content-Length up front and also counts streamed bytes, so a
    chunked upload cannot slip past the limit. `large_paths` maps a path
    (and everything below it) to a larger limit; those bodies are not
    buffered here but passed through, still counted, for the handler to
    stream to disk (release uploads).
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, large_paths: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.large_paths = dict(large_paths or {})

    def _limit_for(self, path: str) -> int:
        for prefix, limit in self.large_paths.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await self._refuse(scope, receive, send, limit)
                return
        if limit > self.max_bytes:
            await self.app(scope, self._counted(receive, limit), send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, self.max_bytes)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _counted(receive: Receive, limit: int) -> Receive:
        size = 0

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    # Raised inside the handler's read; answered as a 413.
                    raise BodyTooLargeError(f"request body is over {limit} bytes")
            return message

        return counted

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = _error(413, "too_large", f"request body is over {limit} bytes")
        await response(scope, receive, send)


def create_app(state: HubState) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.notifier.bind(asyncio.get_running_loop())

        def read_changes(since: int) -> list[tuple[str, int]]:
            with state.sessions() as session:
                return desired_changes_since(session, since)

        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(state.notifier.watch(read_changes), name="desired-watch")
            retention = tg.create_task(_retention_forever(state), name="retention")
            rollouts = tg.create_task(run_scheduler(state), name="rollout-scheduler")
            reports = tg.create_task(state.reports.run(), name="report-writer")
            yield
            reports.cancel()
            watcher.cancel()
            retention.cancel()
            rollouts.cancel()

    app = FastAPI(
        title="Fogline hub",
        version=__version__,
        docs_url="/docs",
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
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_middleware(RequestTiming, metrics=state.metrics)
    app.add_middleware(
        BodyLimit,
        max_bytes=MAX_BODY_BYTES,
        large_paths={f"{API_PREFIX}/releases": MAX_RELEASE_BYTES},
    )

    def count_devices() -> dict[str, int]:
        with state.sessions() as session:
            return count_devices_by_status(session, utcnow(), state.settings.offline_after_s)

    state.metrics.add_device_counter(count_devices)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
