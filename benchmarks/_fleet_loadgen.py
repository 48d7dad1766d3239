"""The load generator of bench_fleet_load: thousands of light devices per process.

Each device is its own mTLS identity (its own key and certificate, so its
own `SSLContext`) on its own connection, over which it long-polls
`GET /v1/desired?wait=...` and sends `POST /v1/report` every `interval_s`:
the poll's wait ends just before the device's next report slot
(`POLL_MARGIN_S`), the report goes out on the same connection at its slot,
and polling resumes. A new revision is reported at
once (applied, as an agent reports after applying), on the same connection.
One connection per device, where the agent's HTTP pool holds two (the
long-poll, and another for its reports): a fleet of 100,000 agents would
hold 200,000 connections.

Light because:

* asyncio's own TLS transport gives every connection a 256 KiB read buffer
  (asyncio/sslproto.py), 25 GB for 100,000 devices; `TlsConn` runs OpenSSL
  through an `SSLObject` over two memory BIOs on a plain TCP transport
  (uvloop) and holds only the bytes of the answer being read;
* no pydantic, no httpx: a request is a byte string, an answer is a status,
  a content-length and a body; report bodies are made with orjson;
* per device one coroutine, one connection, one `SSLContext`.

Generator `w` connects from 127.0.0.(2 + w) (`IP_BIND_ADDRESS_NO_PORT`: the
port is chosen at connect, per source address), so no generator runs out of
the ~28,000 ephemeral ports one address has towards the hub's port.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import socket
import ssl
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast

import orjson
import uvloop

from benchmarks.bench_hub_scale import _context
from fogline.protocol import MAX_DESIRED_WAIT_S
from tests.support.device import FACTS

IP_BIND_ADDRESS_NO_PORT: Final = 24  # linux/in.h; not in Python's socket module
READ_CHUNK: Final = 16384
MAX_HEAD_BYTES: Final = 16384
MAX_BODY_BYTES: Final = 1 << 20  # a desired document or a report ack
REQUEST_TIMEOUT_S: Final = MAX_DESIRED_WAIT_S + 30
STATUS_EVERY_S: Final = 1.0
# A long-poll ends this long before the device's report slot, so that the
# report leaves at its slot even when the hub answers the poll a little late
# (an agent sends its report on another connection); a change in that gap
# waits for the poll after the report.
POLL_MARGIN_S: Final = 0.5


class TlsConn(asyncio.Protocol):
    """One HTTP/1.1 connection over TLS, one request at a time (no pipelining)."""

    __slots__ = ("_buf", "_close_after", "_in", "_out", "_ssl", "_transport", "_waiter", "closed")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._in, self._out, server_hostname="127.0.0.1")
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        # The handshake, then each request's answer: (status, body).
        self._waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._close_after = False
        self.closed = False

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._handshake()

    def data_received(self, data: bytes) -> None:
        self._in.write(data)
        if not self._waiter.done() and self._ssl.version() is None:
            self._handshake()
            return
        while True:
            try:
                chunk = self._ssl.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLError, ValueError) as exc:
                self._fail(exc)
                return
            if not chunk:
                self._fail(ConnectionError("the hub closed the TLS session"))
                return
            self._buf += chunk
        self._flush()
        self._answer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("connection closed"))

    # -- the device's side -------------------------------------------------------

    async def handshaken(self) -> None:
        await self._waiter

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request; its answer's (status, body).

        Raises:
            ConnectionError, ssl.SSLError, OSError: the connection failed.
        """
        if self.closed or self._transport is None:
            raise ConnectionError("connection closed")
        self._buf.clear()
        self._waiter = asyncio.get_running_loop().create_future()
        self._ssl.write(raw)
        self._flush()
        return await self._waiter

    def abort(self) -> None:
        # No close_notify exchange: 100,000 graceful shutdowns are not the test.
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    # -- inside ----------------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError) as exc:
            self._flush()
            self._fail(exc)
            return
        self._flush()
        if not self._waiter.done():
            self._waiter.set_result((0, b""))

    def _flush(self) -> None:
        data = self._out.read()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _answer(self) -> None:
        if self._waiter.done():
            return
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD_BYTES:
                self._fail(ConnectionError("response head too long"))
            return
        lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self._fail(ConnectionError(f"bad status line {lines[0][:80]!r}"))
            return
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value.strip().lower() == "close"
            elif name == "transfer-encoding":
                self._fail(ConnectionError("chunked answers are not expected here"))
                return
        if not 0 <= length <= MAX_BODY_BYTES:
            self._fail(ConnectionError(f"response of {length} bytes"))
            return
        if len(self._buf) < end + 4 + length:
            return
        body = bytes(self._buf[end + 4 : end + 4 + length])
        self._buf.clear()
        self._waiter.set_result((status, body))
        if close:
            self.abort()

    def _fail(self, exc: BaseException) -> None:
        if not self._waiter.done():
            self._waiter.set_exception(exc)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()
        self.closed = True


async def open_conn(host: str, port: int, source: str, context: ssl.SSLContext) -> TlsConn:
    """A TLS connection from `source` to host:port, handshake done.

    Raises:
        OSError, ssl.SSLError, ConnectionError: it could not be made.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    conn = TlsConn(context)
    await loop.create_connection(lambda: conn, sock=sock)
    await conn.handshaken()
    return conn


@dataclass
class GenJob:
    """What one generator process does."""

    index: int
    host: str
    port: int
    source: str  # the source address of this generator's connections
    ca_pem: str
    pems: list[str]  # one PEM file (key + certificate) per device
    interval_s: float
    stop_at: float  # time.time(): the hard bound
    stop_file: str  # created by the operator side to stop early
    # Created by the operator side when the connect phase is over: a device
    # not connected by then gives up, so the window measures a fixed fleet.
    ramp_over_file: str
    status_file: str  # JSON written every second: what the operator side watches
    connect_concurrency: int  # handshakes in flight at once in this process
    seed: int


@dataclass
class GenStats:
    """What one generator process returns (arrays: 16 bytes per report)."""

    report_slots: array[float] = field(default_factory=lambda: array("d"))  # time.time()
    report_latency: array[float] = field(default_factory=lambda: array("d"))  # s from the slot
    # (revision, time.time() the device got it, time.time() the hub answered 200
    # to the report carrying it): the shape bench_rollout_scale reads.
    applied: list[tuple[str, float, float]] = field(default_factory=list)
    # Long-polls answered (304 or 200), by the wall-clock second they ended in.
    polls: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    connects: int = 0
    reconnects: int = 0
    cpu_s: float = 0.0
    rss_base_kb: int = 0  # after start-up, before any device
    rss_connected_kb: int = 0  # when every device had connected and synced once
    rss_peak_kb: int = 0
    nofile_limit: int = 0


def _rss_kb(name: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def _report_body(revision: str | None) -> bytes:
    applied = {"revision": revision, "ok": True} if revision else None
    return orjson.dumps({"facts": FACTS, "labels": {}, "applied": applied})


class Generator:
    """The devices of one process and their shared counters."""

    def __init__(self, job: GenJob) -> None:
        self.job = job
        self.stats = GenStats()
        self.rng = random.Random(job.seed)
        self.gate = asyncio.Semaphore(job.connect_concurrency)
        self.stop = time.monotonic() + (job.stop_at - time.time())
        self.ramp_over = False  # see GenJob.ramp_over_file
        self.connected = 0  # devices with a connection now
        self.synced = 0  # devices that got their first desired state
        self.gave_up = 0  # devices not connected when the connect phase ended
        self.bodies: dict[str | None, bytes] = {}  # report body per revision (shared)
        self.report_head = (
            f"POST /v1/report HTTP/1.1\r\nhost: {job.host}:{job.port}\r\n"
            "content-type: application/json\r\n"
        ).encode()

    def error(self, kind: str) -> None:
        self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1

    def report_request(self, revision: str | None) -> bytes:
        body = self.bodies.get(revision)
        if body is None:
            body = self.bodies[revision] = _report_body(revision)
        return self.report_head + b"content-length: %d\r\n\r\n" % len(body) + body

    def poll_request(self, revision: str | None, wait_s: float) -> bytes:
        etag = f'if-none-match: "{revision}"\r\n' if revision else ""
        return (
            f"GET /v1/desired?wait={wait_s:.3f} HTTP/1.1\r\nhost: {self.job.host}:"
            f"{self.job.port}\r\n{etag}\r\n"
        ).encode()

    async def connect(self, pem: str, first: bool) -> TlsConn | None:
        """The device's connection, retried with jitter until the stop time
        (a first connection: until the connect phase is over)."""
        job = self.job
        for attempt in range(1000):
            if time.monotonic() >= self.stop or (first and self.ramp_over):
                return None
            async with self.gate:
                if first and self.ramp_over:
                    return None
                try:
                    conn = await asyncio.wait_for(
                        open_conn(job.host, job.port, job.source, _context(job.ca_pem, pem, pem)),
                        30,
                    )
                except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
                    self.error(f"connect {type(exc).__name__}")
                    conn = None
            if conn is not None:
                if first:
                    self.stats.connects += 1
                else:
                    self.stats.reconnects += 1
                return conn
            await asyncio.sleep(self.rng.uniform(1, 2 + min(attempt, 5)))
        return None

    async def device(self, pem: str) -> None:
        """One device until the stop time; a failure is counted, never fatal
        to the other devices of the process."""
        try:
            await self._device(pem)
        except Exception as exc:
            self.error(f"device {type(exc).__name__}: {str(exc)[:80]}")

    async def _device(self, pem: str) -> None:
        conn = await self.connect(pem, first=True)
        if conn is None:
            self.gave_up += 1
        revision: str | None = None
        synced = False
        slot = time.monotonic() + self.rng.uniform(0, self.job.interval_s)
        while conn is not None and time.monotonic() < self.stop:
            self.connected += 1
            try:
                revision, synced, slot = await self._session(conn, revision, synced, slot)
            finally:
                self.connected -= 1
                conn.abort()
            if time.monotonic() < self.stop:
                conn = await self.connect(pem, first=False)

    async def _session(
        self, conn: TlsConn, revision: str | None, synced: bool, slot: float
    ) -> tuple[str | None, bool, float]:
        """Poll and report on one connection until it breaks or the stop time;
        returns the device's state for the next connection."""
        while not conn.closed and time.monotonic() < self.stop:
            now = time.monotonic()
            try:
                if synced and now >= slot - POLL_MARGIN_S:
                    await asyncio.sleep(slot - now)
                    await self.report(conn, revision, slot)
                    slot += self.job.interval_s
                    continue
                wait_s = 0.0 if not synced else min(MAX_DESIRED_WAIT_S, slot - POLL_MARGIN_S - now)
                status, body = await asyncio.wait_for(
                    conn.request(self.poll_request(revision, wait_s)), REQUEST_TIMEOUT_S
                )
            except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
                self.error(type(exc).__name__)
                break
            second = int(time.time())
            self.stats.polls[second] = self.stats.polls.get(second, 0) + 1
            if status == 304:
                continue
            if status != 200:
                self.error(f"desired {status}")
                await asyncio.sleep(1)
                continue
            got = time.time()
            revision = str(orjson.loads(body)["revision"])
            if not synced:
                synced = True
                self.synced += 1
            # Reported at once, as an agent reports a revision it applied.
            try:
                status, _ = await asyncio.wait_for(
                    conn.request(self.report_request(revision)), REQUEST_TIMEOUT_S
                )
            except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
                self.error(f"report {type(exc).__name__}")
                break  # the next periodic report carries it
            if status == 200:
                self.stats.applied.append((revision, got, time.time()))
            else:
                self.error(f"report {status}")
        return revision, synced, slot

    async def report(self, conn: TlsConn, revision: str | None, slot: float) -> None:
        """The periodic report; its latency counts from the slot (a device that
        had to wait pays for it).

        Raises:
            OSError, ssl.SSLError, ConnectionError, TimeoutError: see TlsConn.request.
        """
        slot_wall = time.time() - (time.monotonic() - slot)
        status, _ = await asyncio.wait_for(
            conn.request(self.report_request(revision)), REQUEST_TIMEOUT_S
        )
        if status != 200:
            self.error(f"report {status}")
            return
        self.stats.report_slots.append(slot_wall)
        self.stats.report_latency.append(time.monotonic() - slot)

    def write_status(self, cpu0: float) -> None:
        status = {
            "devices": len(self.job.pems),
            "connected": self.connected,
            "synced": self.synced,
            "gave_up": self.gave_up,
            "cpu_s": sum(os.times()[:2]) - cpu0,
            "rss_kb": _rss_kb(),
            "errors": self.stats.errors,
        }
        partial = self.job.status_file + ".partial"
        Path(partial).write_text(json.dumps(status))
        os.replace(partial, self.job.status_file)

    async def _end(self, tasks: list[asyncio.Task[None]]) -> None:
        """Ends every device now. Python 3.11's wait_for can swallow a cancel
        that lands as its request completes, and such a device would run on to
        the hard stop time (minutes): moving the stop time to now ends its loop
        at its next check, and the cancel is repeated for the ones still waiting."""
        self.stop = time.monotonic()
        for _ in range(30):
            pending = [task for task in tasks if not task.done()]
            if not pending:
                return
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1)

    async def run(self) -> GenStats:
        cpu0 = sum(os.times()[:2])
        self.stats.rss_base_kb = _rss_kb()
        stop_file = Path(self.job.stop_file)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self.device(pem)) for pem in self.job.pems]
            ramp_over = Path(self.job.ramp_over_file)
            while time.monotonic() < self.stop and not stop_file.exists():
                self.ramp_over = self.ramp_over or ramp_over.exists()
                self.write_status(cpu0)
                if not self.stats.rss_connected_kb and self.synced + self.gave_up >= len(
                    self.job.pems
                ):
                    self.stats.rss_connected_kb = _rss_kb()
                await asyncio.sleep(STATUS_EVERY_S)
            await self._end(tasks)
        self.stats.cpu_s = sum(os.times()[:2]) - cpu0
        self.stats.rss_peak_kb = _rss_kb("VmHWM")
        self.write_status(cpu0)
        return self.stats


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one; returns it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run_generator(job: GenJob) -> GenStats:
    """A generator process's entry point (a spawned pool process)."""
    limit = raise_open_files_limit()
    stats = uvloop.run(Generator(job).run())
    stats.nofile_limit = limit
    return stats
