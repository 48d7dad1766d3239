"""An idle hub connection holds no request's state (hub/_http_guard.py).

A fleet keeps one connection open per device, so what each idle connection
holds is most of the hub's memory at scale (BENCHMARKS.md, hub memory per
open device connection). These drive the hub's HTTP protocol in process
over a recording transport and look at what it keeps between requests; the
last test checks the same requests against a real hub over TLS.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from fogline.hub._connections import ConnectionLimits, ConnectionTable
from fogline.hub._http_guard import GuardedHttpToolsProtocol, LeanFlowControl
from tests.support.processes import start_hub, tls, wait_until_async


class FakeTransport:
    """What uvicorn's protocol calls on a transport; records what it sends."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.closing = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.sent += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.sent += data

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8443)}.get(
            name, default
        )


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes the path; reads the body only when the path says so."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/read-body":
        while (await receive()).get("more_body"):
            pass
    body = scope["path"].encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def _protocol() -> tuple[GuardedHttpToolsProtocol, FakeTransport]:
    loop = asyncio.get_running_loop()
    config = uvicorn.Config(_app, lifespan="off", log_config=None)
    config.load()
    protocol = GuardedHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=loop
    )
    limits = ConnectionLimits()
    slot = ConnectionTable(limits, lambda _reason: None).admit("127.0.0.1", lambda: None)
    assert slot is not None
    protocol.guard(slot, limits, loop.time())
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


async def _until(predicate: Callable[[], bool]) -> None:
    await wait_until_async(predicate, 5, "the protocol")


def _answers(transport: FakeTransport) -> int:
    return bytes(transport.sent).count(b"HTTP/1.1 200 OK")


def test_after_a_complete_exchange_the_connection_holds_no_request() -> None:
    async def scenario() -> None:
        protocol, transport = _protocol()
        assert isinstance(protocol.flow, LeanFlowControl) and protocol.flow._writable is None
        protocol.data_received(b"GET /one HTTP/1.1\r\nhost: hub\r\n\r\n")
        await _until(lambda: _answers(transport) == 1)
        await _until(lambda: protocol.cycle is None)
        assert protocol.scope is None and protocol.headers is None
        assert protocol.flow._writable is None  # never paused: never made
        protocol.data_received(b"GET /two HTTP/1.1\r\nhost: hub\r\n\r\n")  # the next request
        await _until(lambda: _answers(transport) == 2)
        assert bytes(transport.sent).endswith(b"/two") and not transport.closing
        await _until(lambda: protocol.cycle is None)
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_pipelined_requests_and_early_responses_are_answered_as_before() -> None:
    async def scenario() -> None:
        protocol, transport = _protocol()
        # Two requests in one read: the second waits for the first's answer.
        protocol.data_received(
            b"GET /a HTTP/1.1\r\nhost: hub\r\n\r\nGET /b HTTP/1.1\r\nhost: hub\r\n\r\n"
        )
        await _until(lambda: _answers(transport) == 2)
        sent = bytes(transport.sent)
        assert sent.index(b"/a") < sent.index(b"/b")
        await _until(lambda: protocol.cycle is None)
        # Answered before its body is all in: the request's state stays
        # until the body's last byte, then goes.
        protocol.data_received(b"POST /early HTTP/1.1\r\nhost: hub\r\ncontent-length: 6\r\n\r\nabc")
        await _until(lambda: _answers(transport) == 3)
        assert protocol.cycle is not None  # the message is not complete yet
        protocol.data_received(b"def")
        assert protocol.cycle is None
        protocol.data_received(b"GET /after HTTP/1.1\r\nhost: hub\r\n\r\n")
        await _until(lambda: _answers(transport) == 4)
        assert bytes(transport.sent).endswith(b"/after") and not transport.closing
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_a_paused_writer_waits_until_resumed() -> None:
    async def scenario() -> None:
        protocol, _transport = _protocol()
        flow = protocol.flow
        await flow.drain()  # not paused: returns at once
        flow.pause_writing()
        waiter = asyncio.ensure_future(flow.drain())
        await asyncio.sleep(0)
        assert not waiter.done()
        flow.resume_writing()
        await asyncio.wait_for(waiter, 5)
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_a_real_hub_answers_sequential_and_pipelined_requests_on_one_connection(
    tmp_path: Path,
) -> None:
    hub = start_hub(tmp_path / "hub")
    try:
        context = tls(hub.ca)
        with (
            socket.create_connection(("127.0.0.1", hub.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
        ):
            request = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
            got = b""
            for expected, sending in ((1, request), (2, request), (4, request * 2)):
                conn.sendall(sending)
                while got.count(b"HTTP/1.1 200") < expected:
                    chunk = conn.recv(65536)
                    assert chunk, f"the hub closed the connection: {got!r}"
                    got += chunk
            assert got.count(b"HTTP/1.1 ") == 4
    finally:
        hub.stop()
