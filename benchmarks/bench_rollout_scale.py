"""A staged rollout of a 5 MB release to a simulated fleet, with real downloads.

Starts a real hub (SQLite) on 127.0.0.1, makes a release key, builds, signs
and pushes a module whose payload is `--size-mb` of random bytes (with the
`fogline` CLI), enrolls `--devices` devices for real (key + CSR + claim) and
applies a Deployment with

    rollout: {waves: [10%, 50%, 100%], bake: 2s, successThreshold: 95%,
              maxFailures: 5%, onFailure: pause, waveTimeout: 60s}

Each simulated device (asyncio, in load-generator processes, its own client
certificate) long-polls `GET /v1/desired?wait=30` and reports every 10 s
over light raw connections, and applies each new revision with the agent's
real module stack (`fogline.agent.modules.node_module_manager`, with the
supervisor's in-memory runtime): the real updater downloads the archive over
mTLS with range requests, checks its digest, and its Ed25519 signature
against the release keys of the desired state, unpacks it into the device's
own data dir and commits it. With TUF on (the default; `--no-tuf` for
release keys only), each device pins the hub's TUF root and its updater asks
python-tuf's ngclient for the target before the download (the agent's path;
the signature check is then TUF's): per-device times include TUF's metadata
refresh. `--compare-tuf` runs the rollout twice in the same run, each on a
fresh hub (release keys only, then TUF) and prints the TUF cost per device
update as a same-run ratio. The device then reports the revision applied and the module
statuses the manager gives, so "succeeded" means verified and installed. The script measures wall time from `fogline apply` to the
rollout's `completed`, the time each wave started, the bytes served,
per-device update times and the hub's CPU and RSS. Disk: each device keeps
its installed copy and the archive kept as the base of its next delta
update, 2 x `--devices` x `--size-mb` in the temp dir (`--drop-bases`: the
archive is deleted once the update is applied).

`--offload` starts the hub with `--artifact-offload` and a real nginx
(tests/support/nginx.py, configured by `fogline hub nginx-config`): the hub
authorises each download and answers 307, nginx serves the bytes. After the
rollout, with the fleet stopped, one curl process downloads the archive 20
times on one connection from the same server (`--baseline-reps` times): the
loopback TLS throughput of this machine in the same run, against which the
rollout's throughput is printed as a ratio.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_rollout_scale --devices 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import git_revision, machine, percentile, table
from benchmarks.bench_hub_scale import (
    _context,
    _enroll_all,
    make_identities,
    proc_cpu_s,
    proc_rss_mb,
)
from fogline.agent.modules import ModuleManager, node_module_manager
from fogline.agent.supervisor import MemoryRuntime
from fogline.agent.updater import PINNED_ROOT_FILE, node_target_trust
from fogline.hubclient import ResumingContext
from fogline.protocol import (
    AppliedState,
    DesiredStateError,
    DeviceFacts,
    Report,
    parse_desired_state,
)
from tests.support.device import FACTS
from tests.support.nginx import Nginx, start_nginx
from tests.support.processes import HubProcess, free_port, list_devices, start_hub

MAX_SMALL_BODY = 1 << 20  # desired documents and acks
MAX_ARTIFACT = 64 << 20
MODULE = "payload"
VERSION = "1.0.0"


def policy(wave_timeout_s: int) -> str:
    return (
        "{waves: [10%, 50%, 100%], bake: 2s, successThreshold: 95%, maxFailures: 5%, "
        f"onFailure: pause, waveTimeout: {wave_timeout_s}s}}"
    )


def deployment(modules: bool, wave_timeout_s: int = 60) -> str:
    text = textwrap.dedent("""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {name: bench}
        spec:
          selector: {}
        """)
    if modules:
        text += f"  modules:\n    - {{name: {MODULE}, release: {MODULE}@{VERSION}}}\n"
        text += f"  rollout: {policy(wave_timeout_s)}\n"
    else:
        text += "  config: {round: 0}\n"
    return text


# -- The simulated device (runs in worker processes) ---------------------------------


class Conn:
    """One HTTP/1.1 connection over TLS; bodies streamed and bounded."""

    def __init__(
        self, port: int, context: ssl.SSLContext, handshakes: asyncio.Semaphore | None = None
    ) -> None:
        self.port, self.context = port, context
        # Connections being opened at once in this simulator process: without
        # a bound, 5,000 devices start 10,000 TLS handshakes together, and on
        # a loaded machine most outlast the hub's handshake timeout, are shed
        # and retried, and the fleet never settles.
        self.handshakes = handshakes or asyncio.Semaphore(1)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        # One request at a time per connection (HTTP/1.1 without pipelining).
        self.lock = asyncio.Lock()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, *, body: bytes = b"", headers: str = "", keep: bool = True
    ) -> tuple[int, bytes, int]:
        """(status, body if `keep` else b"", body length). Reconnects once on a
        connection the hub closed while idle."""
        async with self.lock:
            return await self._request(method, path, body, headers, keep)

    async def _request(
        self, method: str, path: str, body: bytes, headers: str, keep: bool
    ) -> tuple[int, bytes, int]:
        reused = self.reader is not None and not self.reader.at_eof()
        for attempt in (0, 1):
            if self.reader is None or self.reader.at_eof():
                await self.close()
                async with self.handshakes:
                    self.reader, self.writer = await asyncio.open_connection(
                        "127.0.0.1", self.port, ssl=self.context
                    )
            try:
                return await self._exchange(method, path, body, headers, keep)
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
                await self.close()
                if attempt or not reused:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(
        self, method: str, path: str, body: bytes, headers: str, keep: bool
    ) -> tuple[int, bytes, int]:
        assert self.reader is not None and self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n{headers}"
        if body:
            head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        self.writer.write((head + "\r\n").encode() + body)
        await self.writer.drain()
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "connection" and value.strip().lower() == "close":
                close = True
        if not 0 <= length <= (MAX_SMALL_BODY if keep else MAX_ARTIFACT):
            raise OSError(f"response of {length} bytes")
        data = b""
        if keep:
            data = await self.reader.readexactly(length)
        else:
            left = length
            while left:
                chunk = await self.reader.read(min(left, 1 << 18))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(chunk)
        if close:
            await self.close()
        return status, data, length


@dataclass
class FleetJob:
    port: int
    ca_pem: str
    creds: list[tuple[str, str]]
    stop_at: float  # time.time(): the hard bound
    stop_file: str  # created by the operator side to stop the fleet early
    seed: int
    data_dir: str  # each device's module stack lives in <data_dir>/<index>
    # The hub's TUF root (JSON), pinned by every device as at enrollment;
    # None: the release keys of the desired state decide (--no-tuf).
    tuf_root: str | None = None
    # TLS connections each simulator process opens at once (see Conn).
    max_handshakes: int = 32
    # With a path: this simulator's cProfile stats are written there at the end.
    profile: str | None = None
    # --drop-bases: delete the archive each device keeps for its next delta.
    drop_bases: bool = False
    # Worker threads of this simulator's event loop (see _run_fleet).
    threads: int = 64
    # Each device's TLS context resumes its last session, as the agent's.
    resume: bool = True


@dataclass
class FleetStats:
    bytes_downloaded: int = 0
    downloads: int = 0
    # per device and revision with modules: download, verify, install, health
    update_s: list[float] = field(default_factory=list)
    # (revision, time.time() the device saw it, time.time() it reported it applied)
    applied: list[tuple[str, float, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0
    # The updater's steps (its crash points, in order) -> seconds each took,
    # one entry per device update: where a device's update time goes.
    steps: dict[str, list[float]] = field(default_factory=dict)
    # The devices' TLS connections that read data, and those that resumed
    # a session (with --resume; see fogline.hubclient.ResumingContext).
    tls_connections: int = 0
    tls_resumed: int = 0


def _report_body(applied: AppliedState | None, manager: ModuleManager) -> bytes:
    """The report an agent would send: the applied revision and the module
    statuses its module manager gives (not a claim of health)."""
    report = Report(
        facts=DeviceFacts.model_validate(FACTS),
        labels={},
        applied=applied,
        modules=manager.statuses(),
    )
    return report.model_dump_json().encode()


def _hub_client(job: FleetJob, context: ssl.SSLContext) -> httpx.AsyncClient:
    """The updater's async client to the hub: its TUF metadata requests."""
    return httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{job.port}",
        verify=context,
        timeout=httpx.Timeout(60, connect=30),
    )


def _download_client(
    job: FleetJob, context: ssl.SSLContext, stats: FleetStats
) -> Callable[[], httpx.Client]:
    """The updater's blocking client for its downloads (in a worker thread,
    as the agent's: HubLink.blocking_client); counts the artifact bytes."""

    lock = threading.Lock()  # the hook runs in the downloads' worker threads

    def count(response: httpx.Response) -> None:
        if response.status_code in (200, 206):
            with lock:
                stats.bytes_downloaded += int(response.headers.get("content-length", 0))
                stats.downloads += 1

    def make() -> httpx.Client:
        return httpx.Client(
            base_url=f"https://127.0.0.1:{job.port}",
            verify=context,
            timeout=httpx.Timeout(60, connect=30),
            event_hooks={"response": [count]},
        )

    return make


async def _device(
    job: FleetJob,
    cert: str,
    key: str,
    stats: FleetStats,
    rng: random.Random,
    data_dir: Path,
    handshakes: asyncio.Semaphore,
) -> None:
    # One TLS context per device, as the agent's (fogline.agent._hublink):
    # it offers the device's last session with the hub, so the update's new
    # connection (its long-poll and report connections are the simulator's
    # own, not the updater's) resumes instead of a full mTLS handshake.
    context = _context(job.ca_pem, cert, key, resume=job.resume)
    poll, work = Conn(job.port, context, handshakes), Conn(job.port, context, handshakes)
    stop = time.monotonic() + (job.stop_at - time.time())
    applied: list[AppliedState | None] = [None]
    http = _hub_client(job, context)
    # The agent's own module stack: release keys come with the desired state,
    # or, with a TUF root pinned, TUF metadata through ngclient decides.
    tuf = None
    if job.tuf_root is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / PINNED_ROOT_FILE).write_text(job.tuf_root)
        tuf = node_target_trust(data_dir, data_dir / "updater", http)
    last_point: list[tuple[str, float] | None] = [None]

    def step(point: str) -> None:
        # The updater calls its crash hook at each step: the time since the
        # one before is that step's. Chunks are not steps.
        if point == "download:chunk":
            return
        now, before = time.monotonic(), last_point[0]
        if before is not None:
            stats.steps.setdefault(before[0], []).append(now - before[1])
        last_point[0] = None if point == "enter:DONE" else (point, now)

    manager = node_module_manager(
        data_dir,
        MemoryRuntime(),
        http,
        {},
        lambda: None,
        crash_hook=step,
        tuf=tuf,
        download_client=_download_client(job, context, stats),
    )

    def error(kind: str) -> None:
        stats.errors[kind] = stats.errors.get(kind, 0) + 1

    # The revision applied but not yet in a report the hub accepted, and when
    # the device saw it: `applied` gets its entry when the hub answers 200 to a
    # report carrying it (the sync loop's own, or a periodic one after that
    # failed), so a report the hub refused is not counted as delivered.
    unconfirmed: list[tuple[str, float] | None] = [None]

    async def report() -> None:
        sent = applied[0]
        status, _, _ = await work.request("POST", "/v1/report", body=_report_body(sent, manager))
        if status != 200:
            error(f"report {status}")
            return
        pending = unconfirmed[0]
        if sent is not None and pending is not None and pending[0] == sent.revision:
            stats.applied.append((sent.revision, pending[1], time.time()))
            unconfirmed[0] = None

    async def periodic() -> None:
        await asyncio.sleep(rng.uniform(0, 10))
        while time.monotonic() < stop:
            try:
                await report()
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
                error(f"report {type(exc).__name__}")
            await asyncio.sleep(10)

    async def sync() -> None:
        while time.monotonic() < stop:
            known = applied[0].revision if applied[0] is not None else None
            etag = f'if-none-match: "{known}"\r\n' if known else ""
            wait = max(0, min(30, int(stop - time.monotonic())))
            try:
                status, data, _ = await poll.request(
                    "GET", f"/v1/desired?wait={wait}", headers=etag
                )
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
                error(f"desired {type(exc).__name__}")
                await asyncio.sleep(1)
                continue
            if status == 304:
                continue
            if status != 200:
                error(f"desired {status}")
                await asyncio.sleep(1)
                continue
            try:
                doc = parse_desired_state(data)
            except DesiredStateError as exc:
                error(f"desired unusable: {str(exc)[:80]}")
                await asyncio.sleep(1)
                continue
            seen, t0 = time.time(), time.monotonic()
            last_point[0] = ("desired state to the updater", t0) if doc.document.modules else None
            # As the agent's SyncLoop: a failed apply is reported, and the
            # node waits for the next revision rather than trying again.
            try:
                await manager.apply(doc)
                applied[0] = AppliedState(revision=doc.revision, ok=True)
                if job.drop_bases:
                    # Written and fsynced like a real node's; then deleted so
                    # that 10,000 nodes' disks fit on this one.
                    await asyncio.to_thread(
                        shutil.rmtree, data_dir / "updater" / "bases", ignore_errors=True
                    )
            except RuntimeError as exc:
                applied[0] = AppliedState(revision=doc.revision, ok=False, error=str(exc)[:4000])
                text = str(exc)
                # The start names the release, the end the cause.
                error(f"refused: {text if len(text) <= 200 else text[:80] + ' … ' + text[-120:]}")
            if doc.document.modules:
                stats.update_s.append(time.monotonic() - t0)
            if applied[0].ok:
                unconfirmed[0] = (doc.revision, seen)
            try:
                await report()
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
                error(f"report {type(exc).__name__}")  # the periodic report tells it later

    try:
        async with asyncio.TaskGroup() as tg:
            supervisor = tg.create_task(manager.supervisor.run())
            await manager.recover()
            await asyncio.gather(sync(), periodic())
            supervisor.cancel()
    finally:
        await poll.close()
        await work.close()
        await http.aclose()
        if isinstance(context, ResumingContext):
            stats.tls_connections += context.connections
            stats.tls_resumed += context.resumed


async def _run_fleet(job: FleetJob) -> FleetStats:
    # Each node runs its updater's blocking work (TUF refreshes that wait on
    # the hub, hashing, unpacking, fsynced state files) in its own loop's
    # worker threads. Here thousands of nodes share one loop, and its default
    # pool (6 threads on this machine) queued every device's TUF refresh and
    # journal save behind a few others: the fleet waited, the cores idled.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(job.threads, thread_name_prefix="node")
    )
    stats = FleetStats()
    rng = random.Random(job.seed)
    cpu0 = sum(os.times()[:2])
    handshakes = asyncio.Semaphore(job.max_handshakes)

    async def guarded(index: int, cert: str, key: str) -> None:
        try:
            await _device(job, cert, key, stats, rng, Path(job.data_dir) / str(index), handshakes)
        except Exception as exc:  # one broken device must not stop the fleet
            kind = f"device {type(exc).__name__}: {str(exc)[:80]}"
            stats.errors[kind] = stats.errors.get(kind, 0) + 1

    tasks = [asyncio.create_task(guarded(i, c, k)) for i, (c, k) in enumerate(job.creds)]
    stop = Path(job.stop_file)
    while time.time() < job.stop_at and not stop.exists():
        await asyncio.sleep(0.5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stats.cpu_s = sum(os.times()[:2]) - cpu0
    return stats


def run_fleet(job: FleetJob) -> FleetStats:
    if job.profile is None:
        return asyncio.run(_run_fleet(job))
    import cProfile  # only when profiling

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(asyncio.run, _run_fleet(job))
    finally:
        profiler.dump_stats(job.profile)


# -- The operator side ----------------------------------------------------------------


def make_release(hub: HubProcess, root: Path, size_mb: int, *, tuf: bool = False) -> str:
    """Push the release (with `tuf`, after the TUF ceremony, its module role
    signed too); returns its digest."""
    keys = root / "release-keys"
    keys.mkdir()
    manifest = hub.cli("keys", "create", "bench-release", "--dir", str(keys)).stdout
    hub.cli("apply", "-f", "-", input_text=manifest)
    if tuf:
        online = root / "tuf-online.json"
        online.write_text(hub.cli("tuf", "online-key").stdout)
        offline = root / "tuf-offline"
        hub.cli("tuf", "init", "--dir", str(offline), "--online-key", str(online))
        pub = str(keys / "bench-release.pub")
        hub.cli("tuf", "delegate", "--dir", str(offline), "--module", MODULE, "--key", pub)
        hub.cli("tuf", "push", "--dir", str(offline))
    module = root / "module"
    module.mkdir()
    (module / "fogline-module.yaml").write_text(
        f"name: {MODULE}\nversion: {VERSION}\nkind: model\narchitectures: [any]\n"
    )
    (module / "payload.bin").write_bytes(os.urandom(size_mb << 20))
    archive = root / f"{MODULE}-{VERSION}.tar.zst"
    hub.cli("release", "build", str(module), "-o", str(archive))
    sign_tuf = ["--tuf"] if tuf else []
    hub.cli("release", "sign", str(archive), "--key", str(keys / "bench-release.key"), *sign_tuf)
    return hub.cli("release", "push", str(archive), timeout_s=120).stdout.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--size-mb", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="device-simulator processes")
    parser.add_argument("--timeout", type=float, default=600, help="bound on the rollout, s")
    parser.add_argument(
        "--wave-timeout",
        type=int,
        default=60,
        help="the policy's waveTimeout, s: a device still downloading after it counts as failed",
    )
    parser.add_argument(
        "--tuf",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TUF on (the hub's repository initialised, each device pins its root and "
        "asks ngclient before each download); --no-tuf: release keys only",
    )
    parser.add_argument(
        "--compare-tuf",
        action="store_true",
        help="two rollouts in the same run, each on a fresh hub: release keys only, then "
        "TUF; prints both and the TUF cost per device update (ignores --tuf)",
    )
    parser.add_argument(
        "--hub-workers", type=int, default=1, help="hub processes (fogline hub serve --workers)"
    )
    parser.add_argument(
        "--propagation",
        type=int,
        default=0,
        metavar="CHANGES",
        help="instead of the rollout: CHANGES config changes one after another, each "
        "selecting every device; per device, the time from the apply request to the hub's "
        "200 for the report carrying the new revision (no release, no TUF)",
    )
    parser.add_argument(
        "--idle-s", type=float, default=10, help="how long the idle hub's CPU is measured, s"
    )
    parser.add_argument(
        "--offload",
        action="store_true",
        help="the hub runs with --artifact-offload and a real nginx (configured by "
        "`fogline hub nginx-config`) serves the bytes; the hub still authorises each download",
    )
    parser.add_argument("--nginx-workers", type=int, default=1, help="with --offload")
    parser.add_argument(
        "--threads",
        type=int,
        default=64,
        help="worker threads per simulator process, shared by its devices' updaters",
    )
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each device's TLS context offers its last session, as the agent's does "
        "(--no-resume: a full mTLS handshake on every new connection, as before 2026-12-07)",
    )
    parser.add_argument(
        "--drop-bases",
        action="store_true",
        help="each device deletes the archive its updater keeps as the next delta's base "
        "once the update is applied (disk: --devices x --size-mb instead of twice that)",
    )
    parser.add_argument(
        "--baseline-reps",
        type=int,
        default=3,
        help="repetitions of the same-run TLS baseline (one curl, 20 downloads of the archive)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="write each simulator process's cProfile stats to DIR/sim-<n>.prof "
        "(read them with `python -m pstats`); the event loop's thread only: the "
        "downloads, hashing and unpacking in worker threads are not in it",
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if not 1 <= args.devices <= 20_000 or not 1 <= args.size_mb <= 64:
        raise SystemExit("--devices 1..20000, --size-mb 1..64")
    if not 0 <= args.propagation <= 50 or not 1 <= args.idle_s <= 600:
        raise SystemExit("--propagation 0..50, --idle-s 1..600")
    if not 0 <= args.baseline_reps <= 20 or not 1 <= args.nginx_workers <= 8:
        raise SystemExit("--baseline-reps 0..20, --nginx-workers 1..8")
    command = "PYTHONPATH=. .venv/bin/python -m benchmarks.bench_rollout_scale " + " ".join(
        sys.argv[1:]
    )
    if args.propagation:
        run(argparse.Namespace(**{**vars(args), "tuf": False}), command)
        return
    if not args.compare_tuf:
        run(args, command)
        return
    without = run(argparse.Namespace(**{**vars(args), "tuf": False}), command)
    with_tuf = run(argparse.Namespace(**{**vars(args), "tuf": True}), command)
    render_tuf_cost(without, with_tuf)


def run(args: argparse.Namespace, command: str) -> list[FleetStats]:
    """One rollout on a fresh hub (TUF as `args.tuf` says); prints its section."""
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-rollout-"))
    nginx_port = free_port() if args.offload else None
    offload = ["--artifact-offload", f"https://127.0.0.1:{nginx_port}"] if nginx_port else []
    hub = start_hub(
        root / "hub",
        # Every simulated device connects from 127.0.0.1: no per-address cap.
        extra_args=[
            *("--report-interval", "10", "--workers", str(args.hub_workers)),
            *("--max-connections-per-address", "0"),
            *offload,
        ],
    )
    assert hub.proc is not None
    pid = hub.proc.pid
    stop_file = root / "stop-fleet"
    nginx: Nginx | None = None
    baseline: list[Transfer] = []
    try:
        if nginx_port is not None:
            nginx = start_nginx(
                hub.data_dir, root / "nginx", nginx_port, workers=args.nginx_workers
            )
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(
                ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"))
            )
            # Runs first on the way out, error or SIGTERM included: the
            # simulators stop, so the pool's exit need not wait out stop_at.
            stack.callback(stop_file.touch)
            tuf_root, digest = None, ""
            if not args.propagation:
                digest = make_release(hub, root, args.size_mb, tuf=args.tuf)
                tuf_root = (root / "tuf-offline" / "root.json").read_text() if args.tuf else None
                print(f"pushed {digest}", file=sys.stderr)
            (root / "v0.yaml").write_text(deployment(False))
            hub.cli("apply", "-f", str(root / "v0.yaml"))
            identities = make_identities(root / "keys", args.devices, pool)
            claim = hub.create_claim(max_uses=args.devices, expires="6h")
            certs = root / "certs"
            certs.mkdir()
            t0 = time.monotonic()
            asyncio.run(_enroll_all(hub, claim, identities, certs))
            print(f"enrolled {args.devices} in {time.monotonic() - t0:.1f}s", file=sys.stderr)
            creds = [
                (str(certs / f"{n}-cert.pem"), str(root / "keys" / f"{n}-key.pem"))
                for n, _ in identities
            ]
            ca_pem = hub.ca.read_text()
            settle_s = 30 + args.devices / 20
            stop_at = time.time() + settle_s + args.timeout + 30
            futures = [
                pool.submit(run_fleet, FleetJob(hub.port, ca_pem, creds[w :: args.workers], stop_at, str(stop_file), w, str(root / "nodes" / f"w{w}"), tuf_root, profile=_profile_path(args, w), drop_bases=args.drop_bases, threads=args.threads, resume=args.resume))
                for w in range(args.workers)
            ]  # fmt: skip
            # The simulator processes (the pool starts them on submit).
            sim_pids = list(getattr(pool, "_processes", {}) or {})
            with hub.client() as client:
                client.timeout = httpx.Timeout(60)

                def get(path: str) -> Any:
                    """Operator GETs, retried: the hub may be slow under the fleet's load."""
                    for _ in range(5):
                        try:
                            return client.get(path).json()
                        except httpx.TimeoutException:
                            print(f"  GET {path} timed out; retrying", file=sys.stderr)
                    raise SystemExit(f"GET {path} kept timing out")

                # Settle: every device synced to v0 and online.
                def synced() -> int:
                    for _ in range(5):
                        try:
                            return len(list_devices(client, status="online", sync="in-sync"))
                        except httpx.TimeoutException:
                            print("  GET /v1/devices timed out; retrying", file=sys.stderr)
                    raise SystemExit("GET /v1/devices kept timing out")

                deadline = time.monotonic() + settle_s
                while (count := synced()) < args.devices and time.monotonic() < deadline:
                    time.sleep(5)  # listing 10,000 devices is work for the hub too
                print(f"{count}/{args.devices} online and in sync", file=sys.stderr)
                # Idle cost: the fleet only long-polls and reports every 10 s.
                cpu0, i0 = proc_cpu_s(pid), time.monotonic()
                time.sleep(args.idle_s)
                idle_cores = (proc_cpu_s(pid) - cpu0) / (time.monotonic() - i0)
                print(f"idle hub: {idle_cores:.2f} cores", file=sys.stderr)
                if args.propagation:
                    rounds = propagate(client, pid, args.propagation, args.timeout)
                    stop_file.touch()
                    parts = _stop_fleet(futures, max(0.0, stop_at - time.time()))
                    section = render_propagation(
                        args, command, count, idle_cores, rounds, parts, proc_rss_mb(pid)
                    )
                    print(section)
                    return parts

                (root / "v1.yaml").write_text(deployment(True, args.wave_timeout))
                cpu0 = proc_cpu_s(pid)
                costs0 = _cpu_now(sim_pids, nginx)
                load_at_apply = os.getloadavg()[0]
                t_apply_wall, t_apply = time.time(), time.monotonic()
                hub.cli("apply", "-f", str(root / "v1.yaml"))
                applied_s = time.monotonic() - t_apply
                wave_started: dict[int, float] = {}
                view: dict[str, Any] = {}
                end = t_apply + args.timeout
                while time.monotonic() < end:
                    view = get("/v1/rollouts/bench")
                    now = time.monotonic() - t_apply
                    wave_started.setdefault(view["current_wave"], now)
                    if view["state"] != "running":
                        break
                    time.sleep(0.25 if args.devices <= 1000 else 1.0)
                total_s = time.monotonic() - t_apply
                rollout_cores = (proc_cpu_s(pid) - cpu0) / total_s
                costs = _cpu_now(sim_pids, nginx).minus(costs0, proc_cpu_s(pid) - cpu0)
                rss, peak = proc_rss_mb(pid)
                load = (load_at_apply, os.getloadavg()[0])
            print(f"rollout {view.get('state')} after {total_s:.1f}s", file=sys.stderr)
            stop_file.touch()
            parts = _stop_fleet(futures, max(0.0, stop_at - time.time()))
            # The same run's floor: with the fleet stopped, one process
            # downloads the same archive from the same server, over TLS.
            baseline = tls_baseline(hub, digest, creds[0], args.baseline_reps)
    finally:
        if nginx is not None:
            nginx.stop()
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)
    render(args, command, view, wave_started, applied_s, total_s, parts, t_apply_wall,
           idle_cores, rollout_cores, rss, peak, load)  # fmt: skip
    render_costs(args, parts, total_s, costs, baseline)
    return parts


@dataclass(frozen=True)
class Transfer:
    """One repetition of the TLS baseline: `count` downloads of the archive."""

    count: int
    seconds: float  # the transfers' own time (curl's time_total), summed
    bytes: int

    @property
    def mb_s(self) -> float:
        return self.bytes / 1e6 / max(self.seconds, 1e-9)


def tls_baseline(
    hub: HubProcess, digest: str, cred: tuple[str, str], reps: int, count: int = 20
) -> list[Transfer]:
    """`reps` times: one curl process fetches the archive `count` times on
    one kept-alive connection, as a device (its certificate), following the
    hub's redirect with --offload. Nothing else runs then but the hub (idle)
    and nginx."""
    url = f"{hub.url}/v1/artifacts/{digest}"
    cert, key = cred
    command = ["curl", "-sS", "-L", "--fail", "--cacert", str(hub.ca), "--cert", cert,
               "--key", key, "-w", "%{time_total} %{size_download}\\n"]  # fmt: skip
    for _ in range(count):
        command += ["-o", "/dev/null", url]
    done = []
    for _ in range(reps):
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            print(f"TLS baseline: curl failed: {result.stderr[:300]}", file=sys.stderr)
            continue
        rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
        done.append(Transfer(len(rows), sum(float(t) for t, _ in rows),
                             sum(int(b) for _, b in rows)))  # fmt: skip
    return done


@dataclass(frozen=True)
class Cpu:
    """CPU-seconds (user + system) of what ran the rollout, and of the whole machine."""

    simulators: float
    nginx: float
    machine: float  # every process on the machine, ours and others'
    hub: float = 0.0

    def minus(self, before: Cpu, hub: float) -> Cpu:
        return Cpu(self.simulators - before.simulators, self.nginx - before.nginx,
                   self.machine - before.machine, hub)  # fmt: skip


def _cpu_now(sim_pids: list[int], nginx: Nginx | None) -> Cpu:
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    sims = sum(proc_cpu_s(p) for p in sim_pids)
    return Cpu(sims, proc_cpu_s(nginx.proc.pid) if nginx is not None else 0.0, busy)


@dataclass
class Change:
    """One config change of `--propagation`, as the operator side saw it."""

    number: int
    started: float  # time.time() just before the apply request
    committed: float  # time.time() when the hub answered it (after its commit)
    revisions: dict[str, str]  # device id -> the revision the apply compiled for it
    converged_s: float | None  # when the hub first listed no device pending; None: timed out
    hub_cores: float  # hub CPU from the apply until converged (or the timeout)
    load: tuple[float, float]  # 1-minute load average at the apply and at the end
    failed: str | None = None  # the apply's HTTP status when it failed, or "timed out"


def propagate(client: httpx.Client, pid: int, changes: int, timeout_s: float) -> list[Change]:
    """Apply `changes` config changes selecting every device, one after
    another, each once the hub lists no device pending for the one before."""
    done: list[Change] = []
    for number in range(1, changes + 1):
        text = deployment(False).replace("round: 0", f"round: {number}")
        body = {"files": [{"name": f"round-{number}.yaml", "text": text}], "prune": False}
        load0, cpu0 = os.getloadavg()[0], proc_cpu_s(pid)
        started, t0 = time.time(), time.monotonic()
        response = None
        # Applying the same manifest again changes nothing, so a connection
        # the hub reset (at its connection cap, say) is retried once.
        for _attempt in range(2):
            try:
                response = client.post("/v1/manifests/apply", json=body)
                break
            except httpx.TimeoutException:
                break
            except httpx.TransportError as exc:
                print(f"change {number}: apply request: {exc!r}; retrying", file=sys.stderr)
        committed = time.time()
        if response is None or response.status_code != 200:
            # A hub that fails the apply under the fleet's load is a result,
            # not a reason to lose the changes measured before it.
            status = "timed out" if response is None else str(response.status_code)
            print(f"change {number}: the apply failed ({status})", file=sys.stderr)
            failed = Change(number, started, committed, {}, None, 0.0, (load0, load0), status)
            done.append(failed)
            time.sleep(10)
            continue
        plan = response.json()["plan"]["devices"]
        revisions = {d["device_id"]: d["to_revision"] for d in plan}
        converged: float | None = None
        # A query for one pending device is a single indexed SQL count's
        # worth of work, so polling it twice a second barely loads the hub;
        # the per-device times come from the devices, not from this poll.
        while time.monotonic() - t0 < timeout_s:
            time.sleep(0.5)
            try:
                page = client.get("/v1/devices", params={"sync": "pending", "limit": "1"})
            except httpx.TimeoutException:
                continue
            if page.status_code == 200 and not page.json()["devices"]:
                converged = time.monotonic() - t0
                break
        hub_cores = (proc_cpu_s(pid) - cpu0) / (time.monotonic() - t0)
        done.append(Change(number, started, committed, revisions, converged, hub_cores,
                           (load0, os.getloadavg()[0])))  # fmt: skip
        print(
            f"change {number}: {len(revisions)} devices, applied in "
            f"{committed - started:.2f}s, converged "
            f"{f'{converged:.1f}s' if converged is not None else 'never'}",
            file=sys.stderr,
        )
        time.sleep(2)  # the periodic reports that converged devices send drain before the next
    return done


def propagation_latencies(change: Change, parts: list[FleetStats]) -> list[float]:
    """Per device, seconds from the apply request to the hub's 200 for the
    first report carrying the revision this change compiled for it."""
    # A device reports each revision it applied once (the sync loop waits
    # for the next one), so one entry is one device.
    wanted = set(change.revisions.values())
    return sorted(
        reported - change.started
        for part in parts
        for revision, seen, reported in part.applied
        if revision in wanted and seen >= change.started
    )


def render_propagation(
    args: argparse.Namespace,
    command: str,
    online: int,
    idle_cores: float,
    changes: list[Change],
    parts: list[FleetStats],
    rss: tuple[float, float],
) -> str:
    """The markdown section of a `--propagation` run."""
    errors: dict[str, int] = {}
    for p in parts:
        for k, v in p.errors.items():
            errors[k] = errors.get(k, 0) + v
    rows, every = [], []
    for change in changes:
        values = propagation_latencies(change, parts)
        expected = len(change.revisions)
        # A device that never reported this change counts as slower than
        # any that did: the percentiles are over every device it selected.
        values += [math.inf] * max(0, expected - len(values))
        every += values
        if change.failed is not None:
            rows.append((change.number, f"apply failed ({change.failed})", f"{change.committed - change.started:.3f}", "-", "-", "-", "-", "-", "-"))  # fmt: skip
            continue
        if values:
            figures = [_seconds(percentile(values, q)) for q in (50, 99)] + [_seconds(max(values))]
        else:
            figures = ["-", "-", "-"]
        rows.append((change.number, f"{sum(v < math.inf for v in values)}/{expected}",
                     f"{change.committed - change.started:.3f}", *figures,
                     f"{change.converged_s:.1f}" if change.converged_s is not None else "timed out",
                     f"{change.hub_cores:.2f}", f"{change.load[0]:.2f} to {change.load[1]:.2f}"))  # fmt: skip
    lines = [
        f"\n## Desired-state propagation, {args.devices} simulated devices (git {git_revision()})\n",
        f"Machine: {machine()}  ",
        f"Command: `{command}`\n",
        f"Hub on SQLite with {args.hub_workers} process(es); {args.workers} simulator "
        f"processes on the same cores; {online}/{args.devices} devices online and in sync "
        "before the first change. Each device long-polls `GET /v1/desired?wait=30` and, on a "
        "new revision, applies it and reports it at once; its time is from just before the "
        "apply request (`POST /v1/manifests/apply`, the API `fogline apply` calls) to the "
        "hub's 200 for the first report carrying the new revision, both read from the same "
        "clock (microseconds).\n",
        table(
            [
                "change",
                "devices reported",
                "apply request (s)",
                "p50",
                "p99",
                "max",
                "hub lists none pending (s)",
                "hub cores",
                "load (1-min)",
            ],
            rows,
        ),
    ]
    if every:
        lines.append(
            f"\n* All changes: p50 **{_seconds(percentile(every, 50))}**, p99 "
            f"**{_seconds(percentile(every, 99))}**, max {_seconds(max(every))} over "
            f"{len(every)} device updates ({sum(v == math.inf for v in every)} never "
            f"reported: counted as slowest)."
        )
    lines.append(
        f"* Hub CPU idle: {idle_cores:.2f} cores; RSS {rss[0]:.0f} MB (peak {rss[1]:.0f} MB). "
        f"Simulator CPU over the whole run: {sum(p.cpu_s for p in parts):.1f} CPU-s. "
        f"Errors: {errors or 'none'}."
    )
    return "\n".join(lines)


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if value < math.inf else "never"


def render_tuf_cost(without: list[FleetStats], with_tuf: list[FleetStats]) -> None:
    """The same-run comparison: per-device update time with and without TUF."""
    a = [v for p in without for v in p.update_s]
    b = [v for p in with_tuf for v in p.update_s]
    if not a or not b:
        print("\n* TUF cost per device update: not measured (a run had no update).")
        return
    rows = [
        (name, len(v), f"{percentile(v, 50):.3f}", f"{percentile(v, 99):.3f}", f"{max(v):.3f}")
        for name, v in (("release keys only", a), ("TUF (ngclient refresh + target)", b))
    ]
    print("\n## TUF cost per device update (same run)\n")
    print(table(["path", "updates", "p50 (s)", "p99 (s)", "max (s)"], rows))
    p50a, p50b = percentile(a, 50), percentile(b, 50)
    print(
        f"\n* TUF / release keys only, p50: **{p50b / max(p50a, 1e-9):.2f}x** "
        f"({(p50b - p50a) * 1000:+.0f} ms per device update)."
    )


def _profile_path(args: argparse.Namespace, worker: int) -> str | None:
    if not args.profile:
        return None
    Path(args.profile).mkdir(parents=True, exist_ok=True)
    return str(Path(args.profile).resolve() / f"sim-{worker}.prof")


def _stop_fleet(futures: list[Any], remaining: float) -> list[FleetStats]:
    """Wait for the simulators (bounded by their own stop time)."""
    return [f.result(timeout=remaining + 60) for f in futures]


def render(
    args: argparse.Namespace,
    command: str,
    view: dict[str, Any],
    wave_started: dict[int, float],
    applied_s: float,
    total_s: float,
    parts: list[FleetStats],
    t_apply_wall: float,
    idle_cores: float,
    rollout_cores: float,
    rss: float,
    peak: float,
    load: tuple[float, float],
) -> None:
    total_bytes = sum(p.bytes_downloaded for p in parts)
    downloads = sum(p.downloads for p in parts)
    dl = [v for p in parts for v in p.update_s]
    after = [(seen, done) for p in parts for _, seen, done in p.applied if seen >= t_apply_wall]
    errors: dict[str, int] = {}
    for p in parts:
        for k, v in p.errors.items():
            errors[k] = errors.get(k, 0) + v
    first_dl = min((s for s, _ in after), default=t_apply_wall) - t_apply_wall
    last_done = max((d for _, d in after), default=t_apply_wall) - t_apply_wall
    print(
        f"\n## Rollout of a {args.size_mb} MB release to {args.devices} devices (git {git_revision()})\n"
    )
    print(
        f"Machine: {machine()}; load (1-min) {load[0]:.2f} at the apply, {load[1]:.2f} at the end  "
    )
    print(f"Command: `{command}`\n")
    print(
        f"Policy: `{policy(args.wave_timeout)}`; hub on SQLite with {args.hub_workers} "
        f"process(es); {args.workers} simulator processes on the same cores; TUF "
        f"{'on' if args.tuf else 'off (release keys only)'}.\n"
    )
    rows = []
    waves = view.get("waves", [])
    starts = sorted(wave_started.items())
    for wave in waves:
        start = wave_started.get(wave["wave"])
        following = [t for w, t in starts if w > wave["wave"]]
        stop = (
            following[0] if following else (total_s if view.get("state") == "completed" else None)
        )
        rows.append(
            (
                wave["wave"],
                wave["devices"],
                f"{start:.1f}" if start is not None else "-",
                f"{stop - start:.1f}" if start is not None and stop is not None else "-",
                wave.get("succeeded", 0),
                wave.get("failed", 0),
                wave.get("skipped", 0),
            )
        )
    print(table(["wave", "devices", "started at (s after apply)", "duration (s)", "succeeded",
                 "failed", "skipped"], rows))  # fmt: skip
    gb = total_bytes / 1e9
    print(
        f"\n* Rollout state **{view.get('state')}** {total_s:.1f} s after the start of "
        f"`fogline apply` (the apply itself took {applied_s:.1f} s); reason: {view.get('reason')}."
    )
    print(
        f"* Bytes served: {gb:.2f} GB in {downloads} downloads (expected "
        f"{args.devices} x {args.size_mb} MiB); first device saw the revision at "
        f"{first_dl:.1f} s, last device reported applied at {last_done:.1f} s "
        f"({gb * 1000 / max(last_done - first_dl, 1e-9):.0f} MB/s over that span)."
    )
    if dl:
        print(
            f"* Per-device update time (download, digest and signature check, unpack, "
            f"commit): p50 {percentile(dl, 50):.2f} s, p99 "
            f"{percentile(dl, 99):.2f} s, max {max(dl):.2f} s."
        )
    render_steps(parts)
    print(
        f"* Hub CPU: {idle_cores:.2f} cores idle (fleet long-polling and reporting every 10 s), "
        f"{rollout_cores:.2f} cores during the rollout; RSS {rss:.0f} MB (peak {peak:.0f} MB)."
    )
    gen = sum(p.cpu_s for p in parts)
    print(f"* Simulator CPU over the whole run: {gen:.1f} CPU-s. Errors: {errors or 'none'}.")
    connections = sum(p.tls_connections for p in parts)
    resumed = sum(p.tls_resumed for p in parts)
    if connections:
        print(
            f"* Devices' TLS connections over the whole run (hub and nginx): {connections}, "
            f"{resumed} of them resumed ({100 * resumed / connections:.0f} %)."
        )


def render_costs(
    args: argparse.Namespace,
    parts: list[FleetStats],
    total_s: float,
    cpu: Cpu,
    baseline: list[Transfer],
) -> None:
    """The rollout against the same run's TLS baseline, and CPU per device update."""
    total_bytes = sum(p.bytes_downloaded for p in parts)
    updates = max(1, sum(len(p.update_s) for p in parts))
    ours = cpu.simulators + cpu.hub + cpu.nginx
    print(
        f"* CPU during the rollout ({total_s:.1f} s): simulators {cpu.simulators:.1f}, hub "
        f"{cpu.hub:.1f}, nginx {cpu.nginx:.1f} CPU-s: **{ours / updates * 1000:.0f} ms per "
        f"device update** ({updates} updates, the fleet's reports and long-polls included). "
        f"The whole machine was busy {cpu.machine / total_s:.2f} of its {os.cpu_count()} "
        f"cores, {max(0.0, cpu.machine - ours) / total_s:.2f} of them other processes."
    )
    if not baseline:
        print("* TLS baseline: not measured.")
        return
    rates = sorted(t.mb_s for t in baseline)
    median = rates[len(rates) // 2]
    rollout = total_bytes / 1e6 / max(total_s, 1e-9)
    served = "nginx, after the hub's 307" if args.offload else "the hub"
    print(
        f"* Loopback TLS baseline, same run (fleet stopped; one curl process, "
        f"{baseline[0].count} downloads of the archive on one kept-alive connection from "
        f"{served}): {', '.join(f'{r:.0f}' for r in rates)} MB/s ({len(rates)} repetitions; "
        f"median {median:.0f}). The rollout moved {total_bytes / 1e9:.2f} GB in {total_s:.1f} s: "
        f"**{rollout:.0f} MB/s = {rollout / median:.2f}x the baseline's median**; at the "
        f"baseline's median the same bytes take {total_bytes / 1e6 / median:.1f} s."
    )


def render_steps(parts: list[FleetStats]) -> None:
    """Per-device time in each of the updater's steps (wall time, every
    device's update included, so waits for the cores count)."""
    steps: dict[str, list[float]] = {}
    for p in parts:
        for name, values in p.steps.items():
            steps.setdefault(name, []).extend(values)
    if not steps:
        return
    rows = [
        (f"from `{name}`", len(v), f"{percentile(v, 50) * 1000:.1f}",
         f"{percentile(v, 99) * 1000:.1f}", f"{sum(v):.1f}")
        for name, v in sorted(steps.items(), key=lambda kv: -sum(kv[1]))
    ]  # fmt: skip
    print("\nPer-device update steps (from one crash point of the updater to the next):\n")
    print(table(["step", "updates", "p50 (ms)", "p99 (ms)", "total (s)"], rows))
    print()


def _exit_on_sigterm(_signum: int, _frame: Any) -> None:
    raise SystemExit(1)  # so `finally` stops the hub and the simulators


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
