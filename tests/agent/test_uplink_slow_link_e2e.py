"""A batch that cannot cross a slow link within the send timeout must not
be sent again whole, forever: the uplink sends fewer records per batch until
they arrive (real hub, real outbox, a throttling TCP relay; mTLS end to end).

Found by review: before, every retry read the same batch (highest priority,
then oldest), timed out at the same point, and nothing ever arrived while
the link was slower than the batch's size over the send timeout (60 s: 1 MB
of payloads that compress badly, over a link of tens of kbit/s).
"""

import asyncio
import contextlib
import random
import socket
import string
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from fogline.agent.outbox import Outbox
from fogline.agent.uplink import Backoff, HttpHubTransport, Uplink
from tests.support.device import TestDevice, enroll_device
from tests.support.processes import HubProcess, start_hub, tls

RATE_BYTES_S = 200_000  # upstream, device to hub


class SlowRelay:
    """A TCP relay to the hub whose upstream carries RATE_BYTES_S at most."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._start(self._accept)

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self._start(self._pump, client, upstream, True)
            self._start(self._pump, upstream, client, False)

    def _pump(self, src: socket.socket, dst: socket.socket, throttle: bool) -> None:
        try:
            while chunk := src.recv(8192):
                if throttle:
                    time.sleep(len(chunk) / RATE_BYTES_S)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[HubProcess, TestDevice]]:
    hub = start_hub(tmp_path / "hub")
    try:
        yield hub, enroll_device(hub, hub.create_claim(), "slow", tmp_path)
    finally:
        hub.stop()


def test_a_batch_too_big_for_the_link_arrives_in_smaller_ones(
    node: tuple[HubProcess, TestDevice], tmp_path: Path
) -> None:
    hub, device = node
    rng = random.Random(18)
    alphabet = string.ascii_letters + string.digits + "+/"
    # About 45 kB each once compressed (0.23 s over the relay); six of them
    # take about 1.4 s, longer than the 1 s send timeout; three take 0.7 s.
    payloads = [orjson.dumps({"blob": "".join(rng.choices(alphabet, k=60_000))}) for _ in range(6)]
    relay = SlowRelay(int(hub.url.rsplit(":", 1)[1]))

    async def run() -> tuple[int, int]:
        url = f"https://127.0.0.1:{relay.port}"
        verify = tls(hub.ca, device.cert_path, device.key_path)
        async with httpx.AsyncClient(base_url=url, verify=verify, timeout=30) as client:
            with Outbox.open(tmp_path / "outbox.db", max_bytes=10**7) as box:
                for payload in payloads:
                    box.put("blobs", payload, priority=1, ttl_s=3600)
                uplink = Uplink(
                    box,
                    HttpHubTransport(client, url),
                    backoff=Backoff(initial_s=0.05, max_s=0.05),
                    send_timeout_s=1.0,
                )
                task = asyncio.create_task(uplink.run())
                deadline = time.monotonic() + 12
                while box.stats().depth and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return box.stats().depth, uplink.counters.failures

    try:
        depth, failures = asyncio.run(run())
    finally:
        relay.close()
    assert depth == 0, f"{depth} records still queued after {failures} timed-out sends"
    with hub.client() as client:
        rows = client.get("/v1/telemetry", params={"stream": "blobs", "since": "1h"}).json()
    assert sorted(row["seq"] for row in rows) == [1, 2, 3, 4, 5, 6]
