"""Stateful TLS 1.3 tickets (`fogline hub serve --tls-session-cache N`,
issue #18): the session stays in the hub process's own cache and the ticket
is its id. A device's next connection resumes, also after it aborted the
last one, and the cache holds at most N sessions,
the oldest dropped first."""

import asyncio
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fogline.hub._tickets import TicketKeys, _checked_ctx, keep_sessions
from fogline.hub._tls import ReloadingServerTls
from fogline.hubclient import ResumingContext, resuming_client_context
from tests.support.device import FACTS, enroll_device
from tests.support.processes import HubProcess, start_hub
from tests.support.tls_files import make_server_tls

CACHE = 64
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
_SSL_CTRL_GET_SESS_CACHE_SIZE = 43


@pytest.fixture(scope="module")
def cache_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = start_hub(
        tmp_path_factory.mktemp("session-cache") / "hub",
        extra_args=["--tls-session-cache", str(CACHE)],
    )
    try:
        yield hub
    finally:
        hub.stop()


def healthz(hub: HubProcess, context: ssl.SSLContext) -> None:
    """GET /healthz on a connection of its own, closed without a close_notify."""
    raw = socket.create_connection(("127.0.0.1", hub.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(HEALTHZ)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = tls.recv(4096)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer


async def healthz_then_abort(hub: HubProcess, context: ssl.SSLContext) -> None:
    """The same from asyncio, the connection then aborted (no close_notify,
    the socket closed at once), as bench_hub_scale's devices do."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", hub.port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        writer.write(HEALTHZ)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await asyncio.wait_for(reader.readexactly(length), 10)
    finally:
        writer.transport.abort()


def test_the_context_keeps_sessions_in_a_bounded_cache_and_issues_stateful_tickets(
    tmp_path: Path,
) -> None:
    files = make_server_tls(tmp_path)
    keys = TicketKeys(b"s" * 32, 60)
    context = ReloadingServerTls(
        files.cert, files.key, files.ca, tickets=keys, session_cache=123
    ).context()
    assert context.options & ssl.OP_NO_TICKET and context.num_tickets == 1
    checked = _checked_ctx(context)
    assert checked is not None
    lib, pointer = checked
    assert lib.ctrl(pointer, _SSL_CTRL_GET_SESS_CACHE_SIZE, 0, None) == 123
    stateless = ReloadingServerTls(files.cert, files.key, files.ca, tickets=keys).context()
    assert not stateless.options & ssl.OP_NO_TICKET
    with pytest.raises(ValueError, match="positive"):
        keep_sessions(stateless, max_sessions=0)


def test_a_device_reconnecting_resumes_its_session_from_the_hubs_cache(
    cache_hub: HubProcess, tmp_path: Path
) -> None:
    device = enroll_device(cache_hub, cache_hub.create_claim(max_uses=1), "cached", tmp_path)
    context = resuming_client_context(cache_hub.ca)
    context.load_cert_chain(str(device.cert_path), str(device.key_path))
    for _ in range(6):
        healthz(cache_hub, context)
    assert (context.connections, context.resumed) == (6, 5)  # the first is a full handshake


def test_a_device_that_aborts_its_connections_still_resumes(cache_hub: HubProcess) -> None:
    """OpenSSL drops from its cache the session of a connection that ends
    without the hub's close_notify: without the hub marking each lost
    connection's session closed, 1 of these 9 reconnections resumed."""
    context = resuming_client_context(cache_hub.ca)

    async def reconnect() -> None:
        for _ in range(10):
            await healthz_then_abort(cache_hub, context)

    asyncio.run(reconnect())
    assert (context.connections, context.resumed) == (10, 9)


def test_the_cache_holds_at_most_its_size_and_drops_the_oldest_session(
    tmp_path: Path,
) -> None:
    """Three clients' full handshakes in a cache of two: the first one's
    session is gone (a full handshake again, no error), the last one's
    resumes."""
    hub = start_hub(tmp_path / "hub", extra_args=["--tls-session-cache", "2"])
    try:
        first, second, third = (resuming_client_context(hub.ca) for _ in range(3))
        for context in (first, second, third):
            healthz(hub, context)
        healthz(hub, third)
        healthz(hub, first)
    finally:
        hub.stop()

    def counts(context: ResumingContext) -> tuple[int, int]:
        return context.connections, context.resumed

    assert counts(third) == (2, 1)
    assert counts(first) == (2, 0)


def test_a_revoked_device_resuming_a_cached_session_is_refused(
    cache_hub: HubProcess, tmp_path: Path
) -> None:
    """A session from the cache carries the device's certificate, and the
    device API checks it against the device table on every request."""
    device = enroll_device(cache_hub, cache_hub.create_claim(max_uses=1), "revoked", tmp_path)
    context = resuming_client_context(cache_hub.ca)
    context.load_cert_chain(str(device.cert_path), str(device.key_path))

    def report() -> httpx.Response:
        with httpx.Client(base_url=cache_hub.url, verify=context, timeout=10) as client:
            return client.post("/v1/report", json={"facts": FACTS, "labels": {}})

    assert report().status_code == 200
    assert report().status_code == 200
    cache_hub.cli("devices", "revoke", device.device_id)
    refused = report()
    assert context.resumed == 2, "the revoked device's session was not resumed: test proves nothing"
    assert refused.status_code == 403
