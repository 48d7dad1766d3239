"""An httpx transport that injects the fleet's network faults and counts bytes.

It wraps the real transport (TLS, connection pool), so every byte a virtual
node exchanges with the hub really crosses the loopback: only the failures
are made up. A dropped request raises httpx.ConnectError, which the agent
code sees exactly as it would see a dead link.
"""

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from ._faults import Faults

ARTIFACT_PREFIX = "/v1/artifacts/"


@dataclass(slots=True)
class Traffic:
    """Bytes and requests seen by one or more transports (mutable counters)."""

    requests: int = 0
    failed_requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    artifact_bytes: int = 0

    def add(self, other: "Traffic") -> None:
        self.requests += other.requests
        self.failed_requests += other.failed_requests
        self.bytes_sent += other.bytes_sent
        self.bytes_received += other.bytes_received
        self.artifact_bytes += other.artifact_bytes

    @property
    def http_bytes(self) -> int:
        return self.bytes_sent + self.bytes_received


class _CountingStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, count: Callable[[int], None]) -> None:
        self._inner, self._count = inner, count

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._count(len(chunk))
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _head_size(headers: httpx.Headers) -> int:
    # Approximate wire size of a header block: "name: value\r\n" per line.
    return sum(len(k) + len(v) + 4 for k, v in headers.raw)


class FaultyTransport(httpx.AsyncBaseTransport):
    """Loss, latency and link flaps on top of `inner`; counts into `traffic`.

    `phase_s` shifts this node's flap window, so a fleet does not lose its
    link in lockstep. `rand` is the node's seeded random source.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        faults: Faults,
        traffic: Traffic,
        *,
        rand: random.Random,
        phase_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner, self._faults, self.traffic = inner, faults, traffic
        self._rand, self._phase_s, self._clock = rand, phase_s, clock

    def link_down(self) -> bool:
        """True while this node's link is in the down part of its flap cycle."""
        flap = self._faults.flap
        if flap is None:
            return False
        return (self._clock() + self._phase_s) % flap.period_s < flap.down_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        traffic = self.traffic
        traffic.requests += 1
        if self._faults.latency_s > 0:
            await asyncio.sleep(self._faults.latency_s)
        if self.link_down():
            traffic.failed_requests += 1
            raise httpx.ConnectError("link down (simulated flap)", request=request)
        if self._faults.loss > 0 and self._rand.random() < self._faults.loss:
            traffic.failed_requests += 1
            raise httpx.ConnectError("request lost (simulated)", request=request)
        body = request.content if isinstance(request.stream, httpx.ByteStream) else b""
        traffic.bytes_sent += len(request.method) + len(request.url.raw_path) + len(body)
        traffic.bytes_sent += _head_size(request.headers)
        response = await self._inner.handle_async_request(request)
        traffic.bytes_received += _head_size(response.headers) + 12
        is_artifact = request.url.path.startswith(ARTIFACT_PREFIX)

        def count(size: int) -> None:
            traffic.bytes_received += size
            if is_artifact:
                traffic.artifact_bytes += size

        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_CountingStream(response.stream, count),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()
