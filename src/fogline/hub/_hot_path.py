"""The device hot path: reports and desired-state polls answered before FastAPI.

At the goal of 20,000 devices per hub core, reports arrive 2,000 times a
second and long-polls renew 700 times. FastAPI's middleware stack, router
and endpoint plumbing cost about three times what recording a report does
(py-spy profile in BENCHMARKS.md), so a served hub wraps the FastAPI app in
`DeviceHotPath`, which answers `POST /v1/report` and `GET /v1/desired` itself
with the same pieces FastAPI's routes use: the client certificate from the
TLS layer, the body limit, `answer_report` / `answer_desired`, the same
error bodies and the same request metrics. Every other request, and every
lifespan event, goes to FastAPI unchanged.

A device's `GET /v1/tuf/metadata/{filename}` is answered here too: every
update of every device refreshes its TUF metadata (ngclient: the next root,
timestamp, snapshot, targets, the module's role), five requests per update
that went through FastAPI's dependencies, three worker-thread hops and a
device row with its JSON columns decoded. Here it is one thread hop, the
device checked on three columns and the metadata read through the hub's
cache of stored versions (`answer_tuf_metadata`). A request with an
`authorization` header (an operator) or without a client certificate goes
to FastAPI, which answers it as before.

So is a device's `GET /v1/artifacts/{digest}` when the hub offloads
downloads: the answer is a 307 to a URL signed for nginx, after the same
checks in one session (`answer_offloaded_artifact`). Without offload the
hub streams the file, and FastAPI's route does.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Final
from urllib.parse import parse_qsl

from pydantic import Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from fogline.protocol import API_PREFIX, MAX_BODY_BYTES, MAX_DESIRED_WAIT_S

from ._auth import scope_peer
from ._bodies import read_body, request_validation_error
from ._error_responses import error_response
from ._metrics import RouteMetrics
from ._state import HubState
from ._tls import PEER_SCOPE_KEY, PeerCertificate
from .routes import (
    answer_desired,
    answer_offloaded_artifact,
    answer_report,
    answer_tuf_metadata,
)

REPORT_PATH: Final = f"{API_PREFIX}/report"
DESIRED_PATH: Final = f"{API_PREFIX}/desired"
TUF_METADATA_PREFIX: Final = f"{API_PREFIX}/tuf/metadata/"
ARTIFACT_PREFIX: Final = f"{API_PREFIX}/artifacts/"
# The route's template, as FastAPI's metrics name it.
_TUF_METADATA_ROUTE: Final = f"{TUF_METADATA_PREFIX}{{filename}}"

# (status, headers, body)
_Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
_Handler = Callable[[Scope, Receive], Awaitable[_Answer]]

# The `wait` query parameter, validated as FastAPI's route declares it.
_WAIT: Final = TypeAdapter(Annotated[float, Field(ge=0, le=MAX_DESIRED_WAIT_S)])
_JSON: Final = (b"content-type", b"application/json")
_NO_STORE: Final = (b"cache-control", b"no-store")


class DeviceHotPath:
    """ASGI: answers the device hot routes itself and passes everything else to `app`."""

    def __init__(self, app: ASGIApp, state: HubState) -> None:
        self.app = app
        self.state = state
        self._routes: dict[tuple[str, str], tuple[_Handler, RouteMetrics]] = {
            (method, path): (handler, RouteMetrics(state.metrics, method, path))
            for method, path, handler in (
                ("POST", REPORT_PATH, self._report),
                ("GET", DESIRED_PATH, self._desired),
            )
        }
        self._tuf_route: tuple[_Handler, RouteMetrics] = (
            self._tuf_metadata,
            RouteMetrics(state.metrics, "GET", _TUF_METADATA_ROUTE),
        )
        self._artifact_route: tuple[_Handler, RouteMetrics] = (
            self._offloaded_artifact,
            RouteMetrics(state.metrics, "GET", f"{ARTIFACT_PREFIX}{{digest}}"),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":
            route = self._routes.get((scope["method"], scope["path"]))
            if route is None and _is_device_get(scope, TUF_METADATA_PREFIX):
                route = self._tuf_route
            elif (
                route is None
                and self.state.settings.offload is not None
                and _is_device_get(scope, ARTIFACT_PREFIX)
            ):
                route = self._artifact_route
        if route is None:
            await self.app(scope, receive, send)
            return
        handler, metrics = route
        started = time.perf_counter()
        status = 500  # if the request is cancelled midway (client gone, shutdown)
        try:
            try:
                status, headers, body = await handler(scope, receive)
            except Exception as exc:
                response = error_response(exc, scope["path"])
                status = response.status_code
                await response(scope, receive, send)
                return
            if body:
                headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            metrics.observe(status, time.perf_counter() - started)

    async def _report(self, scope: Scope, receive: Receive) -> _Answer:
        peer = scope_peer(scope)  # before the body: strangers' bodies go unread
        raw = await read_body(scope, receive, MAX_BODY_BYTES)
        return 200, [_JSON], await answer_report(self.state, peer, raw)

    async def _desired(self, scope: Scope, _receive: Receive) -> _Answer:
        peer = scope_peer(scope)
        answer = await answer_desired(
            self.state, peer, _header(scope, b"if-none-match"), _wait_s(scope)
        )
        headers = [(b"etag", answer.etag.encode())] if answer.etag else []
        if answer.status == 200:
            headers.append(_JSON)
        return answer.status, headers, answer.body

    async def _tuf_metadata(self, scope: Scope, _receive: Receive) -> _Answer:
        peer = scope_peer(scope)
        filename = scope["path"][len(TUF_METADATA_PREFIX) :]
        body = await run_in_threadpool(answer_tuf_metadata, self.state, peer, filename)
        return 200, [_JSON, _NO_STORE], body

    async def _offloaded_artifact(self, scope: Scope, _receive: Receive) -> _Answer:
        peer = scope_peer(scope)
        digest = scope["path"][len(ARTIFACT_PREFIX) :]
        url = await run_in_threadpool(answer_offloaded_artifact, self.state, peer, digest)
        headers = [(b"location", url.encode()), _NO_STORE, (b"content-length", b"0")]
        return 307, headers, b""


def _is_device_get(scope: Scope, prefix: str) -> bool:
    """A GET of `prefix<one path segment>` on a connection with a client
    certificate and without a bearer token: a device's, answered here."""
    path: str = scope["path"]
    if scope["method"] != "GET" or not path.startswith(prefix):
        return False
    name = path[len(prefix) :]
    if not name or "/" in name:
        return False  # another route (…/delta), or FastAPI's 404
    if not isinstance(scope.get(PEER_SCOPE_KEY), PeerCertificate):
        return False  # FastAPI's 401
    return _header(scope, b"authorization") is None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _wait_s(scope: Scope) -> float:
    """The `wait` query parameter (the last one, as FastAPI reads it).

    Raises:
        RequestValidationError: not a number in 0..MAX_DESIRED_WAIT_S (422
            naming `query.wait`, as FastAPI answers).
    """
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    values = [value for key, value in parse_qsl(query, keep_blank_values=True) if key == "wait"]
    if not values:
        return 0.0
    try:
        return _WAIT.validate_python(values[-1])
    except ValidationError as exc:
        raise request_validation_error(exc, "query", "wait") from None
