"""The agent's local HTTP endpoint (127.0.0.1 by default): /healthz, /metrics.

A bare ASGI app served by `LocalServer`: HTTP/1.1 parsed by h11 (which the
agent already holds for httpx), no web framework and no uvicorn in the
node's memory budget (uvicorn imports Click and multiprocessing: 2.9 MB
resident, BENCHMARKS.md "Agent idle RSS"). The device-facing HTTP ingest
(POST /ingest) is added by the data plane.
"""

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

import h11
import orjson

from fogline._log import event

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("fogline.agent.local")

# ASGI's three, as the ingest handlers use them.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
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

    def __init__(
        self, registry: "Callable[[], CollectorRegistry]", health: Callable[[], dict[str, Any]]
    ) -> None:
        # Called at each /metrics: prometheus_client is imported at the first
        # (see fogline.agent._metrics), not by an agent no one scrapes.
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
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            await send_response(send, 200, generate_latest(self._registry()), CONTENT_TYPE_LATEST)
        else:
            await send_json(send, 404, {"error": "not_found", "message": f"no route {path}"})


# How long a stopping agent waits for the local endpoint's open requests.
_SHUTDOWN_S: Final = 2.0
# A request's head (request line and headers), as uvicorn's h11 limit.
_MAX_HEAD: Final = 16 * 1024
_READ_CHUNK: Final = 64 * 1024


class LocalServer:
    """HTTP/1.1 with keep-alive for `app`, on h11 (parsing) and asyncio (sockets).

    One task per connection, one request at a time on it. A malformed or
    oversized request head is answered with h11's status for it (400, 431)
    and the connection closed; a request not read to its end (an app that
    answered early, e.g. 401 before the body) closes the connection after
    the answer; an app that fails gets a 500 (logged) and the connection
    closed. Deadlines: see `__init__`.
    """

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        keep_alive_s: float = 5.0,
        head_s: float = 10.0,
        read_s: float = 30.0,
    ) -> None:
        """`keep_alive_s`: an idle connection is closed after it (uvicorn's
        default); `head_s`: a request's head must be complete within it
        (a head dripped a byte at a time is closed); `read_s`: each read of
        a body must come within it."""
        self._app = app
        self._keep_alive_s = keep_alive_s
        self._head_s = head_s
        self._read_s = read_s
        self._stopped = asyncio.Event()
        self._connections: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        """`serve` returns (closing the listener and the connections)."""
        self._stopped.set()

    async def serve(self, sock: socket.socket) -> None:
        """Serve on `sock` until `stop` or cancellation, then close it all (bounded)."""
        server = await asyncio.start_server(self._connection, sock=sock)
        try:
            await self._stopped.wait()
        finally:
            server.close()
            for task in self._connections:
                task.cancel()
            if self._connections:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_SHUTDOWN_S):
                        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # start_server runs each connection in its own task
        self._connections.add(task)
        if self._stopped.is_set():  # accepted as the server stopped: not cancelled with the rest
            self._connections.discard(task)
            writer.close()
            return
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        try:
            while True:
                async with asyncio.timeout(self._head_s):
                    request = await _next_event(conn, reader, self._keep_alive_s)
                if not isinstance(request, h11.Request):
                    return  # closed by the client (or idle too long)
                await self._exchange(conn, request, reader, writer)
                while conn.their_state is h11.SEND_BODY:  # what is already here of the request
                    if conn.next_event() is h11.NEED_DATA:  # (a GET's end): never waited for
                        break
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return  # not reusable: Connection: close, or a body left unread
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
                    message = f"malformed HTTP/1.1 request ({exc.error_status_hint})"
                    body = orjson.dumps({"error": "bad_request", "message": message})
                    writer.write(conn.send(_response(exc.error_status_hint, body)))
                    writer.write(conn.send(h11.Data(data=body)))
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
        except (TimeoutError, ConnectionError, h11.LocalProtocolError):
            pass  # closed below: nothing more can be said on this connection
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(_SHUTDOWN_S):
                    await writer.wait_closed()

    async def _exchange(
        self,
        conn: h11.Connection,
        request: h11.Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        target = bytes(request.target)
        raw_path, _, query = target.partition(b"?")
        client = writer.get_extra_info("peername")
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": unquote(raw_path.decode("ascii", "replace")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(bytes(name), bytes(value)) for name, value in request.headers],
            "client": tuple(client[:2]) if client else None,
            "server": tuple(writer.get_extra_info("sockname")[:2]),
        }
        started = False

        async def receive() -> Message:
            if conn.their_state is not h11.SEND_BODY:
                return {"type": "http.disconnect"}
            if conn.they_are_waiting_for_100_continue:
                writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            got = await _next_event(conn, reader, self._read_s)
            if isinstance(got, h11.Data):
                return {"type": "http.request", "body": bytes(got.data), "more_body": True}
            if isinstance(got, h11.EndOfMessage):
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
                writer.write(
                    conn.send(
                        h11.Response(
                            status_code=message["status"],
                            headers=headers,
                            reason=_reason(message["status"]),
                        )
                    )
                )
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body:
                    writer.write(conn.send(h11.Data(data=body)))
                if not message.get("more_body", False):
                    writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()

        try:
            await self._app(scope, receive, send)
        except (TimeoutError, ConnectionError, h11.RemoteProtocolError):
            raise
        except Exception as exc:  # the app failed: a 500, then close
            event(log, "local.request_failed", logging.ERROR, path=scope["path"], error=repr(exc))
            if not started:
                body = orjson.dumps({"error": "internal", "message": "the agent failed"})
                writer.write(conn.send(_response(500, body, close=True)))
                writer.write(conn.send(h11.Data(data=body)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
            raise ConnectionError("closed after a failed request") from None


def _response(status: int, body: bytes, *, close: bool = True) -> h11.Response:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if close:
        headers.append((b"connection", b"close"))
    return h11.Response(status_code=status, headers=headers, reason=_reason(status))


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader, within_s: float) -> Any:
    """h11's next event, reading from `reader` as needed (each read within `within_s` seconds).

    Raises:
        TimeoutError: nothing came in time.
        h11.RemoteProtocolError: the client broke HTTP/1.1.
    """
    while True:
        got = conn.next_event()
        if got is not h11.NEED_DATA:
            return got
        async with asyncio.timeout(within_s):
            data = await reader.read(_READ_CHUNK)
        conn.receive_data(data)  # b"": the client closed


def make_local_server(app: LocalApp) -> LocalServer:
    """A server for sockets the agent binds itself (so a taken port is a clean error)."""
    return LocalServer(app)


async def serve_local(server: LocalServer, sock: socket.socket) -> None:
    """Serve on `sock` until stopped or cancelled; on cancellation the
    listener and the open connections are closed (bounded) before it
    passes on."""
    await server.serve(sock)
