"""Hub capacity: simulated devices reporting every 10 s over mTLS, SQLite and PostgreSQL.

For each database and fleet size the script enrolls the devices for real (an
EC P-256 key and a CSR per device, `POST /v1/enroll` with a claim), then
drives `POST /v1/report` from load-generator processes on 127.0.0.1:

* paced: every device reports once per `--interval` s with a random phase,
  one request in flight per device, its own client certificate and its own
  TLS connection (reused while the hub keeps it open) -- the real fleet shape.
  Every device opens its connection in a ramp before the window (32
  handshakes in flight per generator), as a fleet is connected before it
  reports, and reports from then on (uncounted before the window, so no
  connection sits idle past the hub's idle timeout); the ramp's rate is
  reported too;
* saturation (closed loop): `--conns` connections sending back to back, for
  `GET /healthz` (no database: the HTTP + TLS floor), `POST /v1/report` on
  kept-alive connections, and `POST /v1/report` with a new mTLS connection
  per request (what a device pays when the hub closed its idle connection),
  once with a full handshake each and once resuming the device's last TLS
  session (the share of handshakes that resumed is in the row's label).

It reports achieved vs offered requests/s, client-side p50/p99 latency, the
hub process's CPU (utime+stime from /proc over the window) and RSS, the
PostgreSQL server's CPU over the same window (postmaster and backends, reaped
ones included), and the load generators' CPU. The per-core figure divides by
hub and database cores together: a database server is part of what a hub
costs. The load generators share the machine with the hub.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_hub_scale \\
        --devices 1000,10000 --db sqlite,postgresql --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
import uvloop
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from benchmarks._common import git_revision, machine, percentile, table
from fogline.hubclient import resuming_client_context
from fogline.security import make_csr, write_private_key, write_public_file
from tests.support.device import FACTS
from tests.support.postgres import create_database, throwaway_postgres
from tests.support.processes import HubProcess, free_port, start_hub, tls

# The hub's own request histogram (fogline_hub_request_seconds), read from its /metrics
# around the window: the same reports timed inside the hub, from the ASGI call to the
# answer's send, without the generator's scheduling.
HUB_LATENCY = "fogline_hub_request_seconds_bucket"

CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECT_CONCURRENCY = 32  # handshakes in flight per generator process during the ramp
MAX_RESPONSE_BYTES = 1 << 20  # a report ack or healthz answer is tiny; refuse anything huge

# -- PostgreSQL: a throwaway cluster, as tests/conftest.py starts it ------------------


# -- Device identities: keys and CSRs made in a process pool --------------------------


def _make_keys(args: tuple[Path, int, int]) -> list[tuple[str, str]]:
    """Keys for devices [start, stop): writes KEY files (0600), returns (name, csr)."""
    directory, start, stop = args
    out = []
    for i in range(start, stop):
        name = f"d{i:05d}"
        key = ec.generate_private_key(ec.SECP256R1())
        write_private_key(directory / f"{name}-key.pem", key)
        out.append((name, make_csr(key, name).decode()))
    return out


def make_identities(
    directory: Path, count: int, pool: ProcessPoolExecutor
) -> list[tuple[str, str]]:
    directory.mkdir(parents=True, exist_ok=True)
    step = 500
    chunks = [(directory, s, min(count, s + step)) for s in range(0, count, step)]
    return [item for chunk in pool.map(_make_keys, chunks) for item in chunk]


async def _enroll_all(
    hub: HubProcess, claim: str, items: Sequence[tuple[str, str]], cert_dir: Path
) -> None:
    semaphore = asyncio.Semaphore(16)
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(
        base_url=hub.url, verify=tls(hub.ca), timeout=60, limits=limits
    ) as client:

        async def one(name: str, csr: str) -> None:
            body = {"claim": claim, "csr": csr, "name": name, "facts": FACTS}
            # A busy hub answers 503 (its database's write lock, other jobs on
            # the machine): retried a bounded number of times, as a node would.
            for attempt in range(5):
                async with semaphore:
                    response = await client.post("/v1/enroll", json=body)
                if response.status_code != 503:
                    break
                await asyncio.sleep(0.5 * (attempt + 1))
            if response.status_code != 200:
                raise SystemExit(f"enroll {name}: {response.status_code} {response.text[:300]}")
            write_public_file(
                cert_dir / f"{name}-cert.pem", response.json()["certificate"].encode()
            )

        await asyncio.gather(*(one(name, csr) for name, csr in items))


# -- Load generator (runs in worker processes) ---------------------------------------


@dataclass
class Job:
    """What one load-generator process does."""

    host: str
    port: int
    ca_pem: str
    creds: list[tuple[str, str]]  # (cert path, key path), one per simulated device
    method: str
    path: str
    body: bytes
    start_at: float  # time.time() when the load starts
    warmup_s: float
    duration_s: float
    mode: str  # "paced" | "closed"
    interval_s: float = 10.0
    new_conn_each: bool = False
    seed: int = 0
    resume_sessions: bool = False  # each device offers its last TLS session (hubclient)


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # requests sent inside the window
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    handshakes: int = 0
    resumed: int = 0  # handshakes that resumed a session
    connect_s: float = 0.0  # paced: time to open every device's connection (the ramp)
    connect_errors: int = 0
    ramp_handshakes: int = 0
    late: int = 0  # paced sends that left more than 1 s after their slot (device fell behind)
    cpu_s: float = 0.0
    setup_s: float = 0.0


class RawClient:
    """A minimal HTTP/1.1 client over one TLS connection.

    httpx costs several times more CPU per request than this, and the load
    generators share two cores with the hub, so the generator must be cheap.
    """

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.host, self.port, self.context = host, port, context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self, stats: Stats) -> None:
        await self.close()
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.context
        )
        stats.handshakes += 1
        ssl_object = self.writer.get_extra_info("ssl_object")
        stats.resumed += bool(ssl_object is not None and ssl_object.session_reused)

    async def close(self) -> None:
        if self.writer is not None:
            # abort, not a TLS close_notify exchange: under overload thousands of
            # graceful shutdowns can each wait out asyncio's 30 s shutdown timeout.
            self.writer.transport.abort()
        self.reader = self.writer = None

    async def request(self, raw: bytes, stats: Stats, new_conn: bool) -> int:
        reused = not new_conn and self.reader is not None and not self.reader.at_eof()
        if not reused:
            await self.connect(stats)
        try:
            return await self._exchange(raw)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            if not reused:
                raise
            # The hub closed the idle connection while we were sending: reconnect once.
            await self.connect(stats)
            return await self._exchange(raw)

    async def _exchange(self, raw: bytes) -> int:
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if not 0 <= length <= MAX_RESPONSE_BYTES:
            raise OSError(f"response of {length} bytes")
        await self.reader.readexactly(length)
        if close:
            await self.close()
        return status


def _context(ca_pem: str, cert: str, key: str, resume: bool = False) -> ssl.SSLContext:
    if resume:  # the agent's own context, offering the device's last session
        context: ssl.SSLContext = resuming_client_context(cadata=ca_pem)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=ca_pem)
    context.load_cert_chain(cert, key)
    return context


def _raw_request(job: Job) -> bytes:
    head = f"{job.method} {job.path} HTTP/1.1\r\nhost: {job.host}:{job.port}\r\n"
    if job.method == "POST":
        head += f"content-type: application/json\r\ncontent-length: {len(job.body)}\r\n"
    return (head + "\r\n").encode() + (job.body if job.method == "POST" else b"")


def _quiet_connection_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A failed handshake (counted where it failed) also leaves uvloop a future
    nobody reads: its "exception was never retrieved" is not news, the rest is."""
    if not isinstance(context.get("exception"), (OSError, ssl.SSLError)):
        loop.default_exception_handler(context)


async def _run_job(job: Job) -> Stats:
    asyncio.get_running_loop().set_exception_handler(_quiet_connection_errors)
    stats = Stats()
    t_setup = time.monotonic()
    clients = [
        RawClient(job.host, job.port, _context(job.ca_pem, c, k, job.resume_sessions))
        for c, k in job.creds
    ]
    stats.setup_s = time.monotonic() - t_setup
    raw = _raw_request(job)
    rng = random.Random(job.seed)
    # Convert the shared wall-clock start into this process's monotonic clock.
    start = time.monotonic() + (job.start_at - time.time())
    window_start = start + job.warmup_s
    end = window_start + job.duration_s

    def record(t0: float, status: int | None, kind: str = "") -> None:
        if not window_start <= t0 < end:
            return
        if status == 200:
            stats.ok += 1
            stats.latencies.append(time.monotonic() - t0)
        else:
            stats.errors += 1
            label = kind or f"http {status}"
            stats.error_kinds[label] = stats.error_kinds.get(label, 0) + 1

    async def one(client: RawClient, t0: float) -> None:
        try:
            status = await asyncio.wait_for(client.request(raw, stats, job.new_conn_each), 30)
        except Exception as exc:  # every failure is counted, by type
            record(t0, None, type(exc).__name__)
            await client.close()
            return
        record(t0, status)

    async def paced(client: RawClient) -> None:
        # From the end of the ramp, not the window: a connected device keeps
        # reporting (uncounted before the window), as a fleet does. Left idle
        # until the window, every connection outlived the hub's idle timeout
        # (30 s) and all devices reconnected at once in the window's first
        # seconds: that herd of handshakes, not steady state, was the p99.
        slot = min(start, ramp_done) + rng.uniform(0, job.interval_s)
        while slot < end:
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1 and slot >= window_start:
                stats.late += 1
            # Latency counts from the slot: a device that had to wait pays for it.
            await one(client, slot)
            slot += job.interval_s
        await client.close()

    async def closed(client: RawClient) -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        while (t0 := time.monotonic()) < end:
            await one(client, t0)
        await client.close()

    ramp_done = start
    if job.mode == "paced":
        # A fleet is connected before it reports: open every device's connection
        # first (a bounded number of handshakes at a time, as devices that come
        # online with backoff and jitter do), so the window measures steady state.
        # A device whose connection failed here connects at its first slot.
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect(client: RawClient) -> None:
            async with gate:
                try:
                    await asyncio.wait_for(client.connect(stats), 30)
                except Exception:  # counted; the device retries at its first report
                    stats.connect_errors += 1
                    await client.close()

        t_connect = time.monotonic()
        await asyncio.gather(*(connect(c) for c in clients))
        ramp_done = time.monotonic()
        stats.connect_s = ramp_done - t_connect
        stats.ramp_handshakes, stats.handshakes = stats.handshakes, 0
    # No garbage collection while the load runs: with thousands of
    # connections a full collection in this process took 0.3-1 s of wall
    # time on 2 busy cores (200 ms of CPU), in which no answer was read, and
    # latency measured here counted those pauses against the hub. What the
    # generator holds for the run (contexts, clients, connections) is frozen
    # out of the collector first; what cycles the run leaves (a few MB at
    # most: the run is bounded below) wait for the end.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        cpu0 = sum(os.times()[:2])
        runner = paced if job.mode == "paced" else closed
        tasks = [asyncio.create_task(runner(c)) for c in clients]
        # Bounded: requests still in flight 35 s after the window are abandoned.
        _, pending = await asyncio.wait(tasks, timeout=end + 35 - time.monotonic())
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        gc.enable()
        gc.unfreeze()  # the pool's process runs the next job with a collector that sees it all
    for client in clients:
        await client.close()
    stats.cpu_s = sum(os.times()[:2]) - cpu0
    return stats


def run_job(job: Job) -> Stats:
    # uvloop, as the hub: its TLS transport is C, asyncio's is Python (and
    # costs the generator, which shares the cores with the hub, several
    # times the CPU per request).
    return uvloop.run(_run_job(job))


# -- Measurement ----------------------------------------------------------------------


def _hub_pids(pid: int) -> list[int]:
    """The hub process and its worker processes (`--workers`)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(child) for child in children)]


def proc_cpu_s(pid: int) -> float:
    """utime + stime of the hub and its workers."""
    total = 0.0
    for one in _hub_pids(pid):
        with contextlib.suppress(OSError):
            fields = _stat_fields(one)
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def postmaster_pid(db_url: str) -> int | None:
    """The PostgreSQL server listening on the port of `db_url` (its
    command line carries `-p PORT`, see tests/support/postgres.py)."""
    port = db_url.rsplit(":", 1)[1].split("/", 1)[0]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            is_server = Path(argv[0].decode()).name == "postgres" and b"-p" in argv
            if is_server and argv[argv.index(b"-p") + 1].decode() == port:
                return int(entry.name)
    return None


def server_cpu_s(pid: int | None) -> float:
    """utime + stime of a forking server: the parent, its live children, and
    (cutime + cstime) the children it already reaped (PostgreSQL backends
    end with their connection)."""
    if pid is None:
        return 0.0
    total = 0.0
    for one in _hub_pids(pid):
        with contextlib.suppress(OSError):
            fields = _stat_fields(one)
            total += sum(int(v) for v in fields[11:15]) / CLK_TCK
    return total


def hub_latency_buckets(hub: HubProcess, path: str) -> dict[float, float]:
    """Cumulative counts by upper bound (seconds) of the hub's latency histogram
    for `path`, from one hub process (with several workers, the one that
    answered); empty if the hub did not answer."""
    try:
        with hub.client() as client:
            response = client.get("/metrics")
            response.raise_for_status()
    except httpx.HTTPError as exc:  # an overloaded hub: the run goes on without it
        print(f"  warning: the hub's /metrics: {exc!r}", file=sys.stderr)
        return {}
    counts: dict[float, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == HUB_LATENCY and sample.labels.get("route") == path:
                counts[float(sample.labels["le"])] = sample.value
    return counts


@dataclass
class HubSide:
    """The hub's own view of the window's requests (a histogram: bounds, not values)."""

    count: int
    p99_bound_ms: float  # the histogram bound at or under which 99 % of them finished
    over_200ms: float  # share of them over 200 ms

    def __str__(self) -> str:
        if not self.count:
            return "n/a"
        return f"p99 <= {self.p99_bound_ms:g} ms, {self.over_200ms:.2%} > 200 ms"


def hub_side(before: dict[float, float], after: dict[float, float]) -> HubSide:
    """What the hub's histogram counted between two reads."""
    delta = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    if not before:  # the first read failed: not the window's counts
        delta = {}
    total = delta.get(math.inf, 0.0)
    if total <= 0:
        return HubSide(0, math.nan, math.nan)
    p99 = next(bound for bound, count in delta.items() if count >= 0.99 * total)
    over = (total - delta[0.2]) / total if 0.2 in delta else math.nan
    return HubSide(int(total), p99 * 1000, over)


def proc_rss_mb(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) of the hub and its workers, summed."""
    rss = peak = 0.0
    for one in _hub_pids(pid):
        values = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    values[name] = int(rest.split()[0]) / 1024
        rss += values.get("VmRSS", 0.0)
        peak += values.get("VmHWM", 0.0)
    return rss, peak


@dataclass
class Result:
    label: str
    offered: float | None
    achieved: float
    p50_ms: float
    p99_ms: float
    hub_cores: float
    db_cores: float  # the PostgreSQL server's; 0 for SQLite (inside the hub process)
    hub_rss_mb: float
    hub_side: HubSide
    gen_cores: float
    errors: int
    error_kinds: dict[str, int]
    handshakes_per_s: float
    late: int
    load: str
    ramp: str = ""  # paced: how the fleet's connections were opened before the window

    @property
    def per_core(self) -> float:
        cores = self.hub_cores + self.db_cores
        return self.achieved / cores if cores > 0 else float("nan")


def drive(
    hub: HubProcess,
    pool: ProcessPoolExecutor,
    creds: Sequence[tuple[str, str]],
    workers: int,
    *,
    label: str,
    mode: str,
    method: str,
    path: str,
    body: bytes,
    warmup_s: float,
    duration_s: float,
    interval_s: float = 10.0,
    new_conn_each: bool = False,
    resume_sessions: bool = False,
    db_pid: int | None = None,
    margin_s: float | None = None,
) -> Result:
    assert hub.proc is not None
    pid = hub.proc.pid
    ca_pem = hub.ca.read_text()
    setup_margin = 2 + len(creds) / 1500  # building SSL contexts takes ~1 ms each
    # paced: room for the connection ramp (~200 handshakes/s is what one hub core takes)
    ramp_margin = len(creds) / 200 if mode == "paced" else 0.0
    if margin_s is not None:  # --start-margin
        setup_margin, ramp_margin = margin_s, 0.0
    start_at = time.time() + setup_margin + ramp_margin
    jobs = [
        Job(
            "127.0.0.1",
            hub.port,
            ca_pem,
            list(creds[w::workers]),
            method,
            path,
            body,
            start_at,
            warmup_s,
            duration_s,
            mode,
            interval_s,
            new_conn_each,
            seed=w,
            resume_sessions=resume_sessions,
        )
        for w in range(workers)
    ]
    futures = [pool.submit(run_job, job) for job in jobs]
    time.sleep(max(0.0, start_at + warmup_s - time.time()))
    cpu0, db0, t0 = proc_cpu_s(pid), server_cpu_s(db_pid), time.monotonic()
    latency0 = hub_latency_buckets(hub, path)
    time.sleep(max(0.0, t0 + duration_s - time.monotonic()))
    latency1 = hub_latency_buckets(hub, path) if latency0 else {}
    cpu1, db1, t1 = proc_cpu_s(pid), server_cpu_s(db_pid), time.monotonic()
    rss, _ = proc_rss_mb(pid)
    load = "/".join(f"{v:.1f}" for v in os.getloadavg())
    parts = [f.result(timeout=duration_s + 120) for f in futures]
    latencies = [v for p in parts for v in p.latencies]
    kinds: dict[str, int] = {}
    for p in parts:
        for k, v in p.error_kinds.items():
            kinds[k] = kinds.get(k, 0) + v
    setup = max(p.setup_s for p in parts)
    if setup > setup_margin:
        print(
            f"  warning: generator setup took {setup:.1f}s > {setup_margin:.1f}s", file=sys.stderr
        )
    total_s = warmup_s + duration_s
    if new_conn_each:  # how many of the new connections resumed a session
        handshakes = sum(p.handshakes for p in parts)
        label += f" ({sum(p.resumed for p in parts) / max(1, handshakes):.0%} resumed)"
    result = Result(
        label=label,
        offered=len(creds) / interval_s if mode == "paced" else None,
        achieved=sum(p.ok for p in parts) / duration_s,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        hub_cores=(cpu1 - cpu0) / (t1 - t0),
        db_cores=(db1 - db0) / (t1 - t0),
        hub_rss_mb=rss,
        hub_side=hub_side(latency0, latency1),
        gen_cores=sum(p.cpu_s for p in parts) / total_s,
        errors=sum(p.errors for p in parts),
        error_kinds=kinds,
        handshakes_per_s=sum(p.handshakes for p in parts) / total_s,
        late=sum(p.late for p in parts),
        load=load,
        ramp=_ramp(parts) if mode == "paced" else "",
    )
    if result.ramp:
        print(f"  {label}: ramp {result.ramp}", file=sys.stderr)
    print(
        f"  {label}: {result.achieved:.0f}/s (offered {result.offered}), p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms (hub-side {result.hub_side}), hub {result.hub_cores:.2f} cores, db {result.db_cores:.2f} cores, rss {rss:.0f} MB, "
        f"gen {result.gen_cores:.2f} cores, errors {result.errors} {kinds}, late {result.late}",
        file=sys.stderr,
    )
    return result


def _ramp(parts: Sequence[Stats]) -> str:
    connected = sum(p.ramp_handshakes for p in parts)
    seconds = max(p.connect_s for p in parts)
    failed = sum(p.connect_errors for p in parts)
    rate = connected / seconds if seconds > 0 else float("nan")
    return f"{connected} connections in {seconds:.1f} s ({rate:.0f}/s), {failed} failed"


REPORT_BODY = json.dumps(
    {
        "facts": FACTS,
        "labels": {},
        "outbox": None,
        "modules": {"modules": {"app": {"state": "healthy", "version": "1.0.0"}}},
    }
).encode()


def bench_database(
    db: str,
    pg_base: str | None,
    root: Path,
    sizes: Sequence[int],
    identities: list[tuple[str, str]],
    pool: ProcessPoolExecutor,
    args: argparse.Namespace,
) -> list[tuple[str, int, Result]]:
    db_url = create_database(pg_base, f"bench_{free_port()}") if db == "postgresql" else None
    hub = start_hub(
        root / f"hub-{db}",
        db_url=db_url,
        # Every simulated device connects from 127.0.0.1: no per-address cap.
        extra_args=[
            *("--report-interval", "10", "--workers", str(args.hub_workers)),
            *("--max-connections-per-address", "0"),
            *("--tls-session-cache", str(args.tls_session_cache)),
        ],
    )
    results: list[tuple[str, int, Result]] = []
    db_pid = postmaster_pid(db_url) if db_url else None
    if db_url and db_pid is None:
        print("  warning: PostgreSQL server not found: its CPU is not counted", file=sys.stderr)
    try:
        claim = hub.create_claim(max_uses=max(sizes), expires="6h")
        cert_dir = root / f"certs-{db}"
        cert_dir.mkdir()
        enrolled = 0
        for size in sizes:
            t0 = time.monotonic()
            asyncio.run(_enroll_all(hub, claim, identities[enrolled:size], cert_dir))
            elapsed = time.monotonic() - t0
            print(
                f"{db}: enrolled {size - enrolled} devices in {elapsed:.1f}s "
                f"({(size - enrolled) / elapsed:.0f}/s)",
                file=sys.stderr,
            )
            enrolled = size
            creds = [
                (str(cert_dir / f"{name}-cert.pem"), str(root / "keys" / f"{name}-key.pem"))
                for name, _ in identities[:size]
            ]
            common = {
                "warmup_s": 3.0,
                "duration_s": args.saturation_s,
                "db_pid": db_pid,
                "margin_s": args.start_margin,
            }
            conns = creds[: args.conns]
            closed: dict[str, Any] = {
                "mode": "closed",
                "method": "POST",
                "path": "/v1/report",
                "body": REPORT_BODY,
                **common,
            }
            kinds: dict[str, tuple[list[tuple[str, str]], dict[str, Any]]] = {
                "healthz": (conns, {**closed, "label": "healthz, keep-alive", "method": "GET",
                                    "path": "/healthz", "body": b""}),
                "keepalive": (conns, {**closed, "label": "report, keep-alive"}),
                "newconn": (conns, {**closed, "label": "report, new mTLS conn each",
                                    "new_conn_each": True}),
                # The same, each device offering its last session (issue #18):
                # the hub's workers share ticket keys, so any worker resumes it.
                "resumed": (conns, {**closed, "new_conn_each": True, "resume_sessions": True,
                                    "label": "report, new mTLS conn each, session resumed"}),
                "paced": (creds, {"label": f"report, paced {size} devices / {args.interval:g} s",
                                  "mode": "paced", "method": "POST", "path": "/v1/report",
                                  "body": REPORT_BODY, "warmup_s": 5.0, "duration_s": args.duration,
                                  "interval_s": args.interval, "db_pid": db_pid,
                                  "margin_s": args.start_margin}),
            }  # fmt: skip
            runs = [
                drive(hub, pool, devices, args.workers, **kwargs)
                for devices, kwargs in (kinds[kind] for kind in args.runs)
            ]
            results += [(db, size, r) for r in runs]
        _, peak = proc_rss_mb(hub.proc.pid) if hub.proc else (0.0, 0.0)
        print(f"{db}: hub peak RSS {peak:.0f} MB", file=sys.stderr)
    finally:
        hub.stop()
    return results


# What --runs can name: saturation runs, then the paced fleet.
RUN_KINDS = ("healthz", "keepalive", "newconn", "resumed", "paced")


def render(results: list[tuple[str, int, Result]], args: argparse.Namespace, command: str) -> str:
    out = [f"\n## Hub capacity: reports over mTLS (git {git_revision()})\n"]
    out.append(f"Machine: {machine()}  ")
    out.append(f"Command: `{command}`\n")
    rows = []
    for db, size, r in results:
        rows.append(
            (
                db,
                size,
                r.label,
                f"{r.offered:.0f}" if r.offered is not None else "max",
                f"{r.achieved:.0f}",
                f"{r.p50_ms:.1f}",
                f"{r.p99_ms:.1f}",
                str(r.hub_side),
                f"{r.hub_cores:.2f}",
                f"{r.db_cores:.2f}",
                f"{r.per_core:.0f}",
                f"{r.hub_rss_mb:.0f}",
                f"{r.gen_cores:.2f}",
                f"{r.handshakes_per_s:.0f}",
                f"{r.errors}" + (f" ({', '.join(f'{k}: {v}' for k, v in r.error_kinds.items())})" if r.errors else ""),
                r.load,
            )
        )  # fmt: skip
    out.append(
        table(
            [
                "db",
                "devices",
                "load",
                "offered/s",
                "achieved/s",
                "p50 ms",
                "p99 ms",
                "hub-side",
                "hub cores",
                "db server cores",
                "req/s per core (hub + db)",
                "hub RSS MB",
                "generator cores",
                "TLS handshakes/s",
                "errors",
                "load avg 1/5/15",
            ],
            rows,
        )
    )
    out.append(
        f"\nPaced: each device sends one report per {args.interval:g} s at a random phase, one request in "
        f"flight, its own certificate and connection; {args.duration:.0f} s window after 5 s "
        f"warm-up; latency counts from the device's slot. `hub-side`: the same window in the "
        f"hub's own request histogram (`{HUB_LATENCY}`, from the ASGI call to the answer's "
        f"send; a bound, not a value; one worker's), without the generators' scheduling. "
        f"Saturation rows: {args.conns} "
        f"connections back to back, {args.saturation_s:.0f} s window. `req/s per core` = "
        f"achieved / (hub CPU + PostgreSQL server CPU, in cores; SQLite runs inside the hub), "
        f"hub CPU and RSS summed over its {args.hub_workers} worker "
        f"process(es). {args.workers} load-generator processes on the same 2 cores."
    )
    ramps = [f"{db} {size}: {r.ramp}" for db, size, r in results if r.ramp]
    if ramps:
        out.append(
            "\nRamp before each paced window (every device opens its mTLS connection, "
            f"{CONNECT_CONCURRENCY} handshakes in flight per generator process): "
            + "; ".join(ramps)
            + "."
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", default="1000,10000", help="comma-separated fleet sizes")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--duration", type=float, default=60.0, help="paced window, seconds")
    parser.add_argument("--saturation-s", type=float, default=10.0)
    parser.add_argument("--conns", type=int, default=64, help="connections for saturation runs")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--hub-workers",
        type=int,
        default=1,
        help="hub worker processes (fogline hub serve --workers)",
    )
    parser.add_argument(
        "--tls-session-cache",
        type=int,
        default=0,
        help="fogline hub serve --tls-session-cache: stateful tickets, this many sessions "
        "per worker (0: the default stateless tickets)",
    )
    parser.add_argument(
        "--interval", type=float, default=10.0, help="paced: seconds between a device's reports"
    )
    parser.add_argument(
        "--start-margin",
        type=float,
        default=None,
        help="seconds from submitting a run to its load (generator setup and the paced "
        "ramp); default: estimated from the fleet size, too short on a busy machine",
    )
    parser.add_argument(
        "--runs",
        default=",".join(RUN_KINDS),
        help=f"comma-separated runs per database and size, in this order: {', '.join(RUN_KINDS)}",
    )
    args = parser.parse_args()
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not args.runs or not set(args.runs) <= set(RUN_KINDS):
        raise SystemExit(f"--runs takes {', '.join(RUN_KINDS)}")
    if not 0.1 <= args.interval <= 600:
        raise SystemExit("--interval: 0.1..600 s")
    sizes = sorted({int(s) for s in args.devices.split(",")})
    dbs = [d.strip() for d in args.db.split(",")]
    if not set(dbs) <= {"sqlite", "postgresql"}:
        raise SystemExit("--db takes sqlite and/or postgresql")
    if not 1 <= max(sizes) <= 50_000:
        raise SystemExit("--devices: 1..50000")
    command = "PYTHONPATH=. .venv/bin/python -m benchmarks.bench_hub_scale " + " ".join(
        sys.argv[1:]
    )
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-hub-"))
    results: list[tuple[str, int, Result]] = []
    try:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            t0 = time.monotonic()
            identities = make_identities(root / "keys", max(sizes), pool)
            print(f"{len(identities)} keys + CSRs in {time.monotonic() - t0:.1f}s", file=sys.stderr)
            pg_context = (
                throwaway_postgres(max_connections=200)
                if "postgresql" in dbs
                else nullcontext(None)
            )
            with pg_context as pg:
                for db in dbs:
                    results += bench_database(db, pg, root, sizes, identities, pool, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(render(results, args, command))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
