"""Hub memory while many devices download a release at once (issue #18).

Starts a real hub (`--hub-workers` processes, SQLite) on 127.0.0.1, builds,
signs and pushes a module whose payload is `--size-mb` of random bytes (as
`bench_rollout_scale` does), enrolls `--devices` devices for real and
applies a Deployment naming the release for all of them, so each device may
fetch it. Then, from `--procs` light asyncio client processes:

1. baseline: `--downloads` mTLS connections (spread over the devices'
   certificates, round robin), each sends `GET /healthz` and stays open,
   idle. The hub's RSS (every worker process summed) is sampled: the same
   hub, with as many connections open, before any download.
2. downloads: on the same connections, every client sends
   `GET /v1/artifacts/{digest}` at once and reads the body, hashing it.
   `--slow` of them (a fraction) are cellular-like slow readers: a 16 KiB
   socket receive buffer, a 16 KiB TLS read buffer, and a paced read rate
   of `--slow-kib-s` KiB/s; the others read as fast as they can. The hub's
   RSS is sampled every 0.2 s until every download ended.

It prints the peak RSS during the downloads against the idle baseline of the
same run, per download in flight, the throughput, and how many downloads
ended with the digest of the release (every one must).

`--modes in-hub,offload` runs each size twice, on a fresh hub each time:
`in-hub`, the hub streams the bytes; `offload`, the hub is started with
`--artifact-offload` and a real nginx (tests/support/nginx.py, configured by
`fogline hub nginx-config`, `--nginx-workers` processes) serves them: each client follows the
hub's 307 on a new connection to nginx, its hub connection left open and
idle as a device's is. nginx's RSS (master and worker) is reported beside
the hub's, never inside it.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_downloads --downloads 1000,5000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from benchmarks._common import git_revision, machine, percentile, table
from benchmarks.bench_hub_scale import (
    _context,
    make_identities,
    proc_cpu_s,
    proc_rss_mb,
)
from benchmarks.bench_rollout_scale import MODULE, VERSION, make_release
from fogline.security import write_public_file
from tests.support.device import FACTS
from tests.support.nginx import Nginx, start_nginx
from tests.support.processes import HubProcess, free_port, start_hub, tls

SLOW_RCVBUF = 16 * 1024  # a cellular modem's socket buffer, roughly
READ_CHUNK = 16 * 1024
MAX_HEAD = 16 * 1024
CONNECT_CONCURRENCY = 32  # handshakes in flight per client process


def deployment() -> str:
    """Every device desires the release: the hub lets each fetch it."""
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: bench-downloads}}
        spec:
          selector: {{}}
          modules:
            - {{name: {MODULE}, release: {MODULE}@{VERSION}}}
        """)


# -- The download clients (run in worker processes) -----------------------------------


@dataclass
class ClientJob:
    port: int
    ca_pem: str
    creds: list[tuple[str, str]]  # (cert path, key path): one connection each
    slow: list[bool]  # per connection: a slow reader
    slow_rate: float  # bytes/s of a slow reader
    digest: str  # sha256:<hex>
    ready_file: str  # written once every connection is open and idle
    go_file: str  # created by the parent: start the downloads
    deadline: float  # time.time(): the hard bound


@dataclass
class ClientStats:
    connected: int = 0
    ok: int = 0  # complete, and the digest matched
    bad_digest: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    seconds: list[float] = field(default_factory=list)  # per completed download
    slow_seconds: list[float] = field(default_factory=list)
    cpu_s: float = 0.0


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int, str]:
    """(status, content-length, location) of a response head."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD:
        raise OSError("response head too large")
    lines = head.decode("latin-1").split("\r\n")
    status, length, location = int(lines[0].split(" ", 2)[1]), 0, ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
        elif name.strip().lower() == "location":
            location = value.strip()
    return status, length, location


class Download:
    """One device connection: opened (and idle) first, then one download."""

    def __init__(self, job: ClientJob, index: int) -> None:
        self.job, self.slow = job, job.slow[index]
        self.context = _context(job.ca_pem, *job.creds[index])
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.offload_writer: asyncio.StreamWriter | None = None

    async def _connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TLS connection to 127.0.0.1:`port`; a slow reader's has a small
        receive buffer and TLS read-ahead."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.slow:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=self.context, server_hostname="127.0.0.1", limit=READ_CHUNK
        )
        if self.slow:
            # asyncio's TLS layer would otherwise read ahead up to 256 KiB.
            writer.transport.set_read_buffer_limits(high=READ_CHUNK)  # type: ignore[attr-defined]
        return reader, writer

    async def open(self) -> None:
        """Connect and send one small request, so the connection is as a
        device's idle one."""
        self.reader, self.writer = await self._connect(self.job.port)
        self.writer.write(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        await self.writer.drain()
        status, length, _ = await _read_head(self.reader)
        await self.reader.readexactly(length)
        if status != 200:
            raise OSError(f"healthz {status}")

    async def download(self, stats: ClientStats) -> None:
        assert self.reader is not None and self.writer is not None
        t0 = time.monotonic()
        request = f"GET /v1/artifacts/{self.job.digest} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
        self.writer.write(request.encode())
        await self.writer.drain()
        reader = self.reader
        status, length, location = await _read_head(reader)
        if status == 307:  # offload: the bytes come from nginx; the hub's connection idles
            await reader.readexactly(length)
            target = urlsplit(location)
            reader, self.offload_writer = await self._connect(target.port or 443)
            request = f"GET {target.path}?{target.query} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
            self.offload_writer.write(request.encode())
            await self.offload_writer.drain()
            status, length, _ = await _read_head(reader)
        if status != 200:
            raise OSError(f"artifact {status}")
        digest, left, got = hashlib.sha256(), length, 0
        while left:
            chunk = await reader.read(min(left, READ_CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", left)
            digest.update(chunk)
            left -= len(chunk)
            got += len(chunk)
            stats.bytes += len(chunk)
            if self.slow:  # paced: never ahead of slow_rate
                ahead = t0 + got / self.job.slow_rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        elapsed = time.monotonic() - t0
        if f"sha256:{digest.hexdigest()}" != self.job.digest:
            stats.bad_digest += 1
            return
        stats.ok += 1
        (stats.slow_seconds if self.slow else stats.seconds).append(elapsed)

    def close(self) -> None:
        for writer in (self.writer, self.offload_writer):
            if writer is not None:
                writer.transport.abort()


def count_error(errors: dict[str, int], exc: BaseException) -> None:
    """Count a failure by its kind (an OSError with the start of its message)."""
    kind = type(exc).__name__ + (f" {exc}"[:60] if isinstance(exc, OSError) else "")
    errors[kind] = errors.get(kind, 0) + 1


async def open_connections(conns: Sequence[Download], errors: dict[str, int]) -> list[bool]:
    """Open every connection, CONNECT_CONCURRENCY handshakes at a time; which
    opened. A failure is counted in `errors` and its connection closed."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one(d: Download) -> bool:
        async with gate:
            try:
                await asyncio.wait_for(d.open(), 60)
                return True
            except Exception as exc:  # counted: the row shows connections that failed
                count_error(errors, exc)
                d.close()
                return False

    return list(await asyncio.gather(*(open_one(d) for d in conns)))


async def _run_clients(job: ClientJob) -> ClientStats:
    stats = ClientStats()
    cpu0 = sum(os.times()[:2])
    downloads = [Download(job, i) for i in range(len(job.creds))]
    opened = await open_connections(downloads, stats.errors)
    stats.connected = sum(opened)
    Path(job.ready_file).write_text(str(stats.connected))
    go = Path(job.go_file)
    while not go.exists() and time.time() < job.deadline:
        await asyncio.sleep(0.05)

    async def fetch(d: Download) -> None:
        try:
            await d.download(stats)
        except Exception as exc:  # counted by kind
            count_error(stats.errors, exc)
        finally:
            d.close()

    tasks = [asyncio.create_task(fetch(d)) for d, ok in zip(downloads, opened, strict=True) if ok]
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(1.0, job.deadline - time.time()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if pending:
            stats.errors["timed out"] = len(pending)
    stats.cpu_s = sum(os.times()[:2]) - cpu0
    return stats


def run_clients(job: ClientJob) -> ClientStats:
    return asyncio.run(_run_clients(job))


# -- The parent: hub, release, devices, measurement -----------------------------------


def hub_rss_mb(pid: int) -> float:
    return proc_rss_mb(pid)[0]


@dataclass
class Result:
    mode: str  # "in-hub" or "offload"
    downloads: int
    connected: int
    baseline_mb: float
    peak_mb: float
    ok: int
    bad_digest: int
    errors: dict[str, int]
    seconds: float
    bytes: int
    fast_s: list[float]
    slow_s: list[float]
    client_cpu_s: float
    hub_cpu_s: float
    load: tuple[float, float]
    nginx_idle_mb: float = 0.0  # offload: nginx (master and workers) before the downloads
    nginx_peak_mb: float = 0.0
    nginx_cpu_s: float = 0.0

    @property
    def per_download_kb(self) -> float:
        return (self.peak_mb - self.baseline_mb) * 1024 / max(1, self.connected)


def measure(
    hub: HubProcess,
    pool: Executor,
    creds: Sequence[tuple[str, str]],
    digest: str,
    root: Path,
    n: int,
    args: argparse.Namespace,
    nginx: Nginx | None = None,
) -> Result:
    """One round: n connections idle (the baseline), then n downloads;
    `args` gives procs, slow, slow_kib_s and timeout (see main). The
    clients run in `pool` (tests/hub/test_download_memory.py: threads).
    With `nginx` (the hub offloads to it), its RSS is sampled too."""
    assert hub.proc is not None
    pid = hub.proc.pid
    ca_pem = hub.ca.read_text()
    run_dir = Path(tempfile.mkdtemp(prefix=f"round-{n}-", dir=root))
    go = run_dir / "go"
    deadline = time.time() + args.timeout
    every = [creds[i % len(creds)] for i in range(n)]
    slow_every = max(1, round(1 / args.slow)) if args.slow > 0 else 0
    slow = [bool(slow_every) and i % slow_every == 0 for i in range(n)]
    jobs = [
        ClientJob(hub.port, ca_pem, every[w :: args.procs], slow[w :: args.procs],
                  args.slow_kib_s * 1024, digest, str(run_dir / f"ready-{w}"), str(go), deadline)
        for w in range(args.procs)
    ]  # fmt: skip
    load0 = os.getloadavg()[0]
    futures = [pool.submit(run_clients, job) for job in jobs]
    ready = [Path(j.ready_file) for j in jobs]
    while not all(p.exists() for p in ready) and time.time() < deadline:
        if any(f.done() for f in futures):
            break  # a client process failed: its result says why
        time.sleep(0.2)
    connected = sum(int(p.read_text() or 0) for p in ready if p.exists())
    # The baseline: the same hub with every connection open and idle.
    npid = nginx.proc.pid if nginx is not None else None
    samples, nginx_samples = [], [0.0]
    for _ in range(10):
        samples.append(hub_rss_mb(pid))
        if npid is not None:
            nginx_samples.append(hub_rss_mb(npid))
        time.sleep(0.2)
    baseline, nginx_idle = max(samples), max(nginx_samples)
    print(f"  {n}: {connected} connected, idle hub RSS {baseline:.0f} MB", file=sys.stderr)
    t0, cpu0 = time.monotonic(), proc_cpu_s(pid)
    nginx_cpu0 = proc_cpu_s(npid) if npid is not None else 0.0
    go.touch()
    peak, nginx_peak = baseline, nginx_idle
    while not all(f.done() for f in futures) and time.time() < deadline + 30:
        peak = max(peak, hub_rss_mb(pid))
        if npid is not None:
            nginx_peak = max(nginx_peak, hub_rss_mb(npid))
        time.sleep(0.2)
    elapsed, hub_cpu_s = time.monotonic() - t0, proc_cpu_s(pid) - cpu0
    nginx_cpu_s = proc_cpu_s(npid) - nginx_cpu0 if npid is not None else 0.0
    parts = [f.result(timeout=60) for f in futures]
    errors: dict[str, int] = {}
    for p in parts:
        for k, v in p.errors.items():
            errors[k] = errors.get(k, 0) + v
    result = Result(
        mode="offload" if nginx is not None else "in-hub",
        downloads=n,
        connected=connected,
        baseline_mb=baseline,
        peak_mb=peak,
        ok=sum(p.ok for p in parts),
        bad_digest=sum(p.bad_digest for p in parts),
        errors=errors,
        seconds=elapsed,
        bytes=sum(p.bytes for p in parts),
        fast_s=[v for p in parts for v in p.seconds],
        slow_s=[v for p in parts for v in p.slow_seconds],
        client_cpu_s=sum(p.cpu_s for p in parts),
        hub_cpu_s=hub_cpu_s,
        load=(load0, os.getloadavg()[0]),
        nginx_idle_mb=nginx_idle,
        nginx_peak_mb=nginx_peak,
        nginx_cpu_s=nginx_cpu_s,
    )
    print(
        f"  {n} {result.mode}: nginx {nginx_idle:.0f} to {nginx_peak:.0f} MB; "
        f"hub peak {peak:.0f} MB (+{result.per_download_kb:.0f} KB per download), "
        f"{result.ok} ok, {result.bad_digest} bad digest, errors {errors or 'none'}, "
        f"{elapsed:.1f} s, {result.bytes / elapsed / 1e6:.0f} MB/s, hub {hub_cpu_s:.0f} CPU-s",
        file=sys.stderr,
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def render(results: list[Result], args: argparse.Namespace, command: str) -> str:
    out = [f"\n## Hub memory while devices download (git {git_revision()})\n"]
    out.append(f"Machine: {machine()}  ")
    out.append(f"Command: `{command}`\n")
    rows = []
    for r in results:

        def p(values: list[float], q: float) -> str:
            return f"{percentile(values, q):.1f}" if values else "-"

        gb = max(r.bytes / 1e9, 1e-9)
        nginx_mb = (
            f"{r.nginx_idle_mb:.0f} / **{r.nginx_peak_mb:.0f}**" if r.mode == "offload" else "-"
        )
        rows.append((
            r.mode, r.downloads, r.connected, f"{r.baseline_mb:.0f}", f"**{r.peak_mb:.0f}**",
            f"{r.peak_mb - r.baseline_mb:+.0f}", f"{r.per_download_kb:.0f}",
            f"{r.ok}/{r.downloads}", r.bad_digest,
            ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "none",
            f"{r.seconds:.1f}", f"{r.bytes / r.seconds / 1e6:.0f}",
            nginx_mb, f"{p(r.fast_s, 50)} / {p(r.slow_s, 50)}",
            f"{r.hub_cpu_s / gb:.1f} / {r.nginx_cpu_s / gb:.1f}", f"{r.client_cpu_s:.0f}",
            f"{r.load[0]:.1f} to {r.load[1]:.1f}",
        ))  # fmt: skip
    out.append(
        table(
            [
                "bytes served by",
                "downloads",
                "connections open",
                "hub RSS idle, same connections (MB)",
                "hub RSS peak while downloading (MB)",
                "growth (MB)",
                "growth per download (KB)",
                "digest matched",
                "bad digest",
                "errors",
                "wall (s)",
                "MB/s",
                "nginx RSS idle / peak (MB)",
                "p50 s fast / slow reader",
                "hub / nginx CPU-s per GB",
                "client CPU-s",
                "load (1-min)",
            ],
            rows,
        )
    )
    out.append(
        f"\nA {args.size_mb} MiB release; hub on SQLite with {args.hub_workers} process(es), "
        f"RSS summed over them, sampled every 0.2 s; {args.devices} device certificates, the "
        f"connections spread over them; {args.procs} client processes on the same cores. "
        f"{args.slow:.0%} of the readers are slow: a {SLOW_RCVBUF // 1024} KiB receive buffer "
        f"and {args.slow_kib_s} KiB/s. offload: the hub answers 307, nginx ({args.nginx_workers} "
        "worker(s)) serves "
        "the bytes; the clients' hub connections stay open, idle, during their download."
    )
    return "\n".join(out)


async def enroll(
    hub: HubProcess, claim: str, items: Sequence[tuple[str, str]], cert_dir: Path
) -> None:
    """Enroll the devices (as bench_hub_scale does), retrying the 503 a
    busy SQLite answers when two hub workers write at once."""
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=hub.url, verify=tls(hub.ca), timeout=60) as client:

        async def one(name: str, csr: str) -> None:
            body = {"claim": claim, "csr": csr, "name": name, "facts": FACTS}
            for attempt in range(10):
                async with gate:
                    response = await client.post("/v1/enroll", json=body)
                if response.status_code != 503:
                    break
                await asyncio.sleep(0.2 * (attempt + 1))
            if response.status_code != 200:
                raise SystemExit(f"enroll {name}: {response.status_code} {response.text[:300]}")
            write_public_file(
                cert_dir / f"{name}-cert.pem", response.json()["certificate"].encode()
            )

        await asyncio.gather(*(one(name, csr) for name, csr in items))


def round_on_fresh_hub(
    root: Path,
    identities: Sequence[tuple[str, str]],
    pool: ProcessPoolExecutor,
    n: int,
    args: argparse.Namespace,
    mode: str,
) -> Result:
    nginx_port = free_port()
    offload = ["--artifact-offload", f"https://127.0.0.1:{nginx_port}"] if mode == "offload" else []
    hub = start_hub(
        root / "hub",
        extra_args=[
            *("--workers", str(args.hub_workers), "--max-connections-per-address", "0"),
            # The baseline's connections wait idle while the others open.
            *("--idle-timeout", "900"),
            *offload,
        ],
    )
    nginx = (
        start_nginx(hub.data_dir, root / "nginx", nginx_port, workers=args.nginx_workers)
        if offload
        else None
    )
    try:
        digest = make_release(hub, root, args.size_mb)
        (root / "deployment.yaml").write_text(deployment())
        hub.cli("apply", "-f", str(root / "deployment.yaml"))
        devices = identities[: min(len(identities), n)]
        claim = hub.create_claim(max_uses=len(devices), expires="6h")
        certs = root / "certs"
        certs.mkdir()
        asyncio.run(enroll(hub, claim, devices, certs))
        keys = root.parent / "keys"
        creds = [
            (str(certs / f"{name}-cert.pem"), str(keys / f"{name}-key.pem")) for name, _ in devices
        ]
        print(f"{n}: pushed {digest}, enrolled {len(devices)}", file=sys.stderr)
        return measure(hub, pool, creds, digest, root, n, args, nginx)
    finally:
        if nginx is not None:
            nginx.stop()
        hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--downloads", default="1000,5000", help="concurrent downloads, comma-separated"
    )
    parser.add_argument("--size-mb", type=int, default=5)
    parser.add_argument("--devices", type=int, default=500, help="device certificates to use")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--hub-workers", type=int, default=2)
    parser.add_argument("--slow", type=float, default=0.5, help="fraction of slow readers")
    parser.add_argument("--slow-kib-s", type=int, default=256, help="a slow reader's rate")
    parser.add_argument("--timeout", type=float, default=900, help="bound on each round, s")
    parser.add_argument("--nginx-workers", type=int, default=2, help="offload: nginx's workers")
    parser.add_argument(
        "--modes", default="in-hub,offload", help="who serves the bytes: in-hub, offload or both"
    )
    args = parser.parse_args()
    modes = args.modes.split(",")
    if not modes or not set(modes) <= {"in-hub", "offload"}:
        raise SystemExit("--modes: in-hub, offload or in-hub,offload")
    sizes = [int(s) for s in args.downloads.split(",")]
    if not all(1 <= s <= 20_000 for s in sizes) or not 1 <= args.size_mb <= 64:
        raise SystemExit("--downloads 1..20000 each, --size-mb 1..64")
    if not 0 <= args.slow <= 1 or not 1 <= args.procs <= 16 or not 1 <= args.devices <= 5000:
        raise SystemExit("--slow 0..1, --procs 1..16, --devices 1..5000")
    if not 1 <= args.nginx_workers <= 16:
        raise SystemExit("--nginx-workers 1..16")
    command = "PYTHONPATH=. .venv/bin/python -m benchmarks.bench_downloads " + " ".join(
        sys.argv[1:]
    )
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-downloads-"))
    results: list[Result] = []
    try:
        with ProcessPoolExecutor(args.procs, mp_context=get_context("spawn")) as pool:
            devices = min(args.devices, max(sizes))
            identities = make_identities(root / "keys", devices, pool)
            for n in sizes:
                for mode in modes:
                    # A fresh hub each round: memory a round leaves behind (freed
                    # but kept by the allocator) would inflate the next baseline.
                    where = root / f"n{n}-{mode}"
                    results.append(round_on_fresh_hub(where, identities, pool, n, args, mode))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(render(results, args, command))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
