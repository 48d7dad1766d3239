"""The agent's local HTTP endpoint (127.0.0.1 by default): /healthz, /metrics.

A bare ASGI app on uvicorn: no web framework in the node's memory budget.
The device-facing HTTP ingest (POST /ingest) is added by the data plane.
"""

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import Receive, Scope, Send

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, data: Any, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await send_response(send, status, orjson.dumps(data), "application/json", headers)


class LocalApp:
    """Routes by exact path; extra routes (ingest) are added by their owners."""

    def __init__(self, registry: CollectorRegistry, health: Callable[[], dict[str, Any]]) -> None:
        self._registry = registry
        self._health = health
        self.routes: dict[tuple[str, str], Handler] = {}
        # Awaited before each /metrics collection: collectors are synchronous,
        # so what needs SQLite or files is read here, off the event loop.
        self.before_metrics: list[Callable[[], Awaitable[object]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan: the server runs with lifespan="off"
            return
        method, path = scope["method"], scope["path"]
        if (method, path) in self.routes:
            await self.routes[(method, path)](scope, receive, send)
        elif path == "/healthz" and method == "GET":
            await send_json(send, 200, self._health())
        elif path == "/metrics" and method == "GET":
            for refresh in self.before_metrics:
                await refresh()
            await send_response(send, 200, generate_latest(self._registry), CONTENT_TYPE_LATEST)
        else:
            await send_json(send, 404, {"error": "not_found", "message": f"no route {path}"})


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside the agent's own loop; the agent owns signal handling."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


# How long a stopping agent waits for the local endpoint's open requests.
_SHUTDOWN_S = 2.0


def make_local_server(app: LocalApp) -> EmbeddedServer:
    """A server for sockets the agent binds itself (so a taken port is a clean error).

    No lifespan: the app needs no start-up, and uvicorn's lifespan task, left
    running when the agent's task group is cancelled, logged an error-level
    CancelledError on every clean stop.
    """
    config = uvicorn.Config(
        app, log_config=None, access_log=False, server_header=False, lifespan="off"
    )
    return EmbeddedServer(config)


async def serve_local(server: EmbeddedServer, sock: socket.socket) -> None:
    """Serve on `sock` until cancelled, then shut the server down as uvicorn would.

    The agent stops by cancelling its task group; uvicorn expects
    `should_exit`. On cancellation this closes the listener and the open
    connections (bounded) before passing the cancellation on.
    """
    try:
        await server.serve(sockets=[sock])
    except asyncio.CancelledError:
        server.should_exit = True
        if getattr(server, "servers", None):  # started: there is something to close
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_SHUTDOWN_S):
                    await server.shutdown(sockets=[sock])
        raise
