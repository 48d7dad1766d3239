"""The device hot path: `POST /v1/report` answered before FastAPI sees it.

At the goal of 20,000 devices per hub core, reports arrive 2,000 times a
second. FastAPI's middleware stack, router and endpoint plumbing cost about
three times what recording a report does (py-spy profile in BENCHMARKS.md),
so a served hub wraps the FastAPI app in `DeviceHotPath`, which answers the
report route itself with the same pieces FastAPI's route uses: the client
certificate from the TLS layer, the body limit, `answer_report`, the same
error bodies and the same request metrics. Every other request, and every
lifespan event, goes to FastAPI unchanged.
"""

import time
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from fogline.protocol import API_PREFIX, MAX_BODY_BYTES

from ._auth import scope_peer
from ._bodies import read_body
from ._error_responses import error_response
from ._metrics import RouteMetrics
from ._routes_device import answer_report
from ._state import HubState

REPORT_PATH: Final = f"{API_PREFIX}/report"
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]


class DeviceHotPath:
    """ASGI: answers device reports itself and passes everything else to `app`."""

    def __init__(self, app: ASGIApp, state: HubState) -> None:
        self.app = app
        self.state = state
        self._report_metrics = RouteMetrics(state.metrics, "POST", REPORT_PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == REPORT_PATH and scope["method"] == "POST":
            await self._report(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _report(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # if the request is cancelled midway (client gone, shutdown)
        try:
            try:
                peer = scope_peer(scope)  # before the body: strangers' bodies go unread
                raw = await read_body(scope, receive, MAX_BODY_BYTES)
                ack = await answer_report(self.state, peer, raw)
            except Exception as exc:
                response = error_response(exc, REPORT_PATH)
                status = response.status_code
                await response(scope, receive, send)
                return
            status = 200
            headers = [*_JSON_HEADERS, (b"content-length", str(len(ack)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": ack})
        finally:
            self._report_metrics.observe(status, time.perf_counter() - started)
