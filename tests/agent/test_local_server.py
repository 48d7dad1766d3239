"""The agent's local HTTP server (h11 on asyncio, in place of uvicorn: issue #18,
"Agent memory"), on real sockets on 127.0.0.1 with raw HTTP/1.1 from a client
that shows every byte: keep-alive, bodies left unread, malformed and stalled
requests, a failing app, and stopping."""

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator

from fogline.agent._local import LocalServer, Receive, Scope, Send, send_json
from fogline.agent.dataplane._ingest import read_body

from .supervisor._support import async_test


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"]
    if path == "/echo":  # reads the body
        body = await read_body(receive, 1024)
        await send_json(send, 200, {"len": len(body), "query": scope["query_string"].decode()})
    elif path == "/refuse":  # answers before the body, as the ingest's 401 does
        await send_json(send, 401, {"error": "unauthorized"})
    elif path == "/fail":
        raise RuntimeError("the app failed")
    else:
        await send_json(send, 200, {"path": path})


@contextlib.asynccontextmanager
async def _serving(**deadlines: float) -> AsyncIterator[tuple[LocalServer, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server = LocalServer(_app, **deadlines)
    task = asyncio.create_task(server.serve(sock))
    try:
        yield server, sock.getsockname()[1]
    finally:
        server.stop()
        await asyncio.wait_for(task, 5)


async def _exchange(port: int, data: bytes, wait_s: float = 3.0) -> tuple[bytes, bool, float]:
    """Send `data`; everything answered until the server closes (or `wait_s`):
    (bytes, closed by the server, seconds until then)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(data)
    await writer.drain()
    got = b""
    closed = False
    try:
        async with asyncio.timeout(wait_s):
            while chunk := await reader.read(65536):
                got += chunk
            closed = True
    except TimeoutError:
        pass
    finally:
        writer.close()
    return got, closed, time.monotonic() - started


def _statuses(answer: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)


@async_test
async def test_requests_on_one_kept_alive_connection_are_answered_in_order() -> None:
    async with _serving() as (_, port):
        answer, closed, _ = await _exchange(
            port,
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo?n=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /b%20c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    assert _statuses(answer) == [b"200", b"200", b"200"], answer
    assert b'{"path":"/a"}' in answer and b'{"len":3,"query":"n=1"}' in answer
    assert answer.endswith(b'{"path":"/b c"}') and closed


@async_test
async def test_a_body_left_unread_closes_the_connection_after_the_answer() -> None:
    async with _serving() as (_, port):
        answer, closed, _ = await _exchange(
            port,
            b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc"
            b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n",
        )
    assert _statuses(answer) == [b"401"] and closed, answer


@async_test
async def test_a_malformed_or_oversized_head_is_refused_and_closed() -> None:
    async with _serving() as (_, port):
        garbage, garbage_closed, _ = await _exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
        # 20 KiB of headers and no end: over the 16 KiB limit.
        big, big_closed, _ = await _exchange(
            port, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: " + b"a" * 20_000 + b"\r\n"
        )
    assert _statuses(garbage) == [b"400"] and garbage_closed, garbage
    assert b"malformed" in garbage and b"NOT HTTP" not in garbage
    assert _statuses(big) == [b"431"] and big_closed, big


@async_test
async def test_a_failing_app_answers_500_and_the_server_serves_on() -> None:
    async with _serving() as (_, port):
        failed, closed, _ = await _exchange(
            port, b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        after, _, _ = await _exchange(
            port, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert _statuses(failed) == [b"500"] and closed, failed
    assert _statuses(after) == [b"200"], after


@async_test
async def test_expect_100_continue_is_answered_when_the_body_is_read() -> None:
    async with _serving() as (_, port):
        answer, _, _ = await _exchange(
            port,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\nhi",
        )
    assert _statuses(answer) == [b"100", b"200"], answer


@async_test
async def test_idle_dripped_and_stalled_connections_are_closed_at_their_deadlines() -> None:
    async with _serving(keep_alive_s=0.3, head_s=0.8, read_s=0.3) as (_, port):
        _, idle_closed, idle_s = await _exchange(port, b"")
        stalled, stalled_closed, stalled_s = await _exchange(
            port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\n" * 10:  # a byte per 0.1 s, never done
                writer.write(bytes([byte]))
                await writer.drain()
                if reader.at_eof():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(1), 0.1)
        dripped_s = time.monotonic() - started
        writer.close()
    assert idle_closed and 0.2 < idle_s < 2, idle_s
    assert stalled == b"" and stalled_closed and 0.2 < stalled_s < 2, (stalled, stalled_s)
    assert 0.7 < dripped_s < 2.5, dripped_s


@async_test
async def test_stop_closes_the_listener_and_open_connections() -> None:
    async with _serving() as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive after its answer
        assert _statuses(await asyncio.wait_for(reader.readuntil(b"}"), 5)) == [b"200"]
        server.stop()
        assert await asyncio.wait_for(reader.read(), 1) == b""  # closed by the server
        writer.close()
        await asyncio.sleep(0.05)
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            pass
        else:
            raise AssertionError("still listening after stop")
