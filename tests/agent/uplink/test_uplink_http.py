"""HttpHubTransport: the hub's answers to POST /v1/telemetry, through the one mapping."""

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest

from fogline.agent.outbox import OutboxRecord
from fogline.agent.uplink import (
    BatchRejectedError,
    HttpHubTransport,
    HubRefusedError,
    HubUnreachableError,
)
from fogline.protocol import COLUMNS_MEDIA_TYPE, decode_batch, decode_columns

RECORDS = [
    OutboxRecord(
        seq=1, stream="s", priority=5, created=1.0, expires=3601.0, payload=orjson.dumps({"v": 1})
    )
]


class Answers:
    def __init__(self) -> None:
        self.next: tuple[int, dict[str, str], bytes] = (200, {}, b'{"stored": 1}')
        self.queue: list[tuple[int, dict[str, str], bytes]] = []  # answered first, in order
        self.bodies: list[bytes] = []
        self.types: list[str] = []


@pytest.fixture
def hub() -> Iterator[tuple[str, Answers]]:
    answers = Answers()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            answers.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            answers.types.append(self.headers["Content-Type"])
            status, headers, body = answers.queue.pop(0) if answers.queue else answers.next
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", answers
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


async def _send(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        await HttpHubTransport(client, url).send_batch(RECORDS)


def test_a_stored_batch_returns(hub: tuple[str, Answers]) -> None:
    url, answers = hub
    asyncio.run(_send(url))
    assert len(answers.bodies) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_identity_is_not_the_datas_fault(hub: tuple[str, Answers], status: int) -> None:
    url, answers = hub
    answers.next = (status, {}, b'{"error": "forbidden", "message": "device revoked"}')
    with pytest.raises(HubRefusedError, match="device revoked"):
        asyncio.run(_send(url))


@pytest.mark.parametrize("status", [400, 413, 422])
def test_another_4xx_rejects_the_batch_for_dead_lettering(
    hub: tuple[str, Answers], status: int
) -> None:
    url, answers = hub
    answers.next = (status, {}, b'{"error": "invalid", "message": "records[0].stream: bad"}')
    with pytest.raises(BatchRejectedError) as caught:
        asyncio.run(_send(url))
    assert caught.value.status == status and caught.value.reason == "records[0].stream: bad"


@pytest.mark.parametrize("status", [408, 429, 502, 503])
def test_a_transient_answer_waits_as_long_as_retry_after_says(
    hub: tuple[str, Answers], status: int
) -> None:
    url, answers = hub
    answers.next = (status, {"Retry-After": "3"}, b"busy")
    with pytest.raises(HubUnreachableError) as caught:
        asyncio.run(_send(url))
    assert (caught.value.status, caught.value.retry_after_s) == (status, 3.0)


def test_no_answer_at_all_is_unreachable() -> None:
    with pytest.raises(HubUnreachableError, match="cannot reach the hub"):
        asyncio.run(_send("http://127.0.0.1:1"))  # nothing listens on port 1


NAMES_FORMAT_2 = {"Accept-Post": f"application/json, {COLUMNS_MEDIA_TYPE}"}


async def _send_each(url: str, times: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        transport = HttpHubTransport(client, url)
        for _ in range(times):
            await transport.send_batch(RECORDS)


def test_format_2_goes_only_to_a_hub_that_named_it(hub: tuple[str, Answers]) -> None:
    url, answers = hub
    answers.next = (200, NAMES_FORMAT_2, b'{"received": 1}')
    asyncio.run(_send_each(url, 2))
    assert answers.types == ["application/json", COLUMNS_MEDIA_TYPE]
    [record] = decode_columns(answers.bodies[1], max_decompressed=1 << 20)
    assert (record.seq, record.stream, record.payload) == (1, "s", {"v": 1})


def test_an_older_hub_that_names_no_format_always_gets_format_1(
    hub: tuple[str, Answers],
) -> None:
    url, answers = hub
    asyncio.run(_send_each(url, 3))
    assert answers.types == ["application/json"] * 3


def test_a_format_2_batch_the_hub_refuses_goes_again_at_once_in_format_1(
    hub: tuple[str, Answers],
) -> None:
    """A hub rolled back to a version without format 2 answers 400 to it: the
    records are sent again in format 1, not dead-lettered."""
    url, answers = hub
    answers.queue = [
        (200, NAMES_FORMAT_2, b'{"received": 1}'),
        (400, {}, b'{"error": "invalid", "message": "batch: not zstd"}'),
    ]
    asyncio.run(_send_each(url, 3))
    assert answers.types == [
        "application/json",
        COLUMNS_MEDIA_TYPE,
        "application/json",
        "application/json",
    ]
    [record] = decode_batch(answers.bodies[2], max_decompressed=1 << 20)
    assert record.payload == {"v": 1}
