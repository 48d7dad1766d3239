"""Hub memory per open, idle device connection (issue #18, bulk downloads).

Starts a real hub (`--hub-workers` processes, SQLite) on 127.0.0.1, enrolls
`--devices` devices for real, and for each N in `--connections`, on a fresh
start of the same hub: samples the hub's memory with no device connected
(after a few requests, so lazily built state exists), opens N mTLS
connections from `--procs` light asyncio client processes (spread over the
devices' certificates, as `bench_downloads` opens them), and samples again
with all N open. Each connection is either

* `idle`: it sent `GET /healthz` and stays open (a device between reports
  on a kept-alive connection), or
* `poll`: a desired-state long-poll (`GET /v1/desired?wait=30` with the
  device's ETag) is in flight on it, renewed when it answers, as an agent's
  sync loop keeps one.

Then the clients close every connection and the hub is sampled a third time:
what the connections left behind (freed, but kept by the allocator).

Memory is the RSS of the hub process and its workers, summed (the figure the
#18 goal names), and their PSS (each page shared after the fork counted
once), from /proc/PID/smaps_rollup. The per-connection figure is the growth
divided by N, against the same start's empty sample.

`--variant NAME:VAR=VALUE,...` (repeatable) runs each N again on a hub started
with those environment variables (e.g. `arena2:MALLOC_ARENA_MAX=2`), for
trying allocator settings without a code change; `current` is the hub as it is (its PYTHONPATH).

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_idle_connections --connections 500,2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import orjson

from benchmarks._common import git_revision, machine, table
from benchmarks.bench_downloads import (
    ClientJob,
    Download,
    _read_head,
    count_error,
    enroll,
    open_connections,
)
from benchmarks.bench_hub_scale import _hub_pids, make_identities
from tests.support.processes import HubProcess, start_hub

POLL_WAIT_S = 30  # the hub's longest long-poll (MAX_DESIRED_WAIT_S)


# -- The clients (run in worker processes) ----------------------------------------------


@dataclass
class IdleJob:
    port: int
    ca_pem: str
    creds: list[tuple[str, str]]  # (cert path, key path): one connection each
    kind: str  # "idle" or "poll"
    ready_file: str  # written once every connection is open
    go_file: str  # created by the parent: close them all
    deadline: float  # time.time(): the hard bound


@dataclass
class IdleStats:
    connected: int = 0
    errors: dict[str, int] = field(default_factory=dict)


async def _poll_forever(d: Download, stop: Path, deadline: float) -> None:
    """Keep a long-poll in flight on `d` until `stop` exists, with the ETag
    of the last desired state it got (none: the hub holds the poll until the
    device has one)."""
    assert d.reader is not None and d.writer is not None
    etag = ""
    while not stop.exists() and time.time() < deadline:
        known = f'if-none-match: "{etag}"\r\n' if etag else ""
        d.writer.write(
            f"GET /v1/desired?wait={POLL_WAIT_S} HTTP/1.1\r\nhost: 127.0.0.1\r\n{known}\r\n".encode()
        )
        status, length, _ = await _read_head(d.reader)
        body = await d.reader.readexactly(length)
        if status == 200:
            etag = orjson.loads(body)["revision"]
        elif status != 304:
            raise OSError(f"desired {status}")


async def _hold(job: IdleJob) -> IdleStats:
    stats = IdleStats()
    # Download opens a connection and sends GET /healthz; its download fields go unused.
    as_download = ClientJob(job.port, job.ca_pem, job.creds, [False] * len(job.creds), 1.0, "",
                            job.ready_file, job.go_file, job.deadline)  # fmt: skip
    conns = [Download(as_download, i) for i in range(len(job.creds))]
    opened = await open_connections(conns, stats.errors)
    stats.connected = sum(opened)
    go = Path(job.go_file)
    polls: list[asyncio.Task[None]] = []
    if job.kind == "poll":
        polls = [
            asyncio.create_task(_poll_forever(d, go, job.deadline))
            for d, ok in zip(conns, opened, strict=True)
            if ok
        ]
        await asyncio.sleep(1.0)  # the polls' requests sent and waiting at the hub
    Path(job.ready_file).write_text(str(stats.connected))
    while not go.exists() and time.time() < job.deadline:
        await asyncio.sleep(0.05)
    for task in polls:
        task.cancel()
    for result in await asyncio.gather(*polls, return_exceptions=True):
        if isinstance(result, Exception):
            count_error(stats.errors, result)
    for d in conns:
        d.close()
    return stats


def hold(job: IdleJob) -> IdleStats:
    return asyncio.run(_hold(job))


# -- The parent: hub, devices, measurement -----------------------------------------------


def memory_mb(pid: int) -> tuple[float, float, list[float]]:
    """(RSS summed, PSS summed, RSS of each process) of the hub and its workers."""
    rss = pss = 0.0
    each = []
    for one in _hub_pids(pid):
        values = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/smaps_rollup").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in ("Rss", "Pss"):
                    values[name] = int(rest.split()[0]) / 1024
        rss += values.get("Rss", 0.0)
        pss += values.get("Pss", 0.0)
        each.append(values.get("Rss", 0.0))
    return rss, pss, each


def sample(pid: int, times: int = 5) -> tuple[float, float, list[float]]:
    """The largest of a few samples 0.2 s apart."""
    best = memory_mb(pid)
    for _ in range(times - 1):
        time.sleep(0.2)
        now = memory_mb(pid)
        if now[0] > best[0]:
            best = now
    return best


@dataclass
class Row:
    variant: str
    kind: str
    n: int
    connected: int
    empty: tuple[float, float, list[float]]
    open: tuple[float, float, list[float]]
    closed: tuple[float, float, list[float]]
    errors: dict[str, int]
    load: tuple[float, float]

    @property
    def rss_kb(self) -> float:
        return (self.open[0] - self.empty[0]) * 1024 / max(1, self.connected)

    @property
    def pss_kb(self) -> float:
        return (self.open[1] - self.empty[1]) * 1024 / max(1, self.connected)


def measure(
    hub: HubProcess,
    pool: Executor,
    creds: list[tuple[str, str]],
    root: Path,
    variant: str,
    kind: str,
    n: int,
    args: argparse.Namespace,
) -> Row:
    assert hub.proc is not None
    pid = hub.proc.pid
    run_dir = Path(tempfile.mkdtemp(prefix=f"idle-{n}-", dir=root))
    go = run_dir / "go"
    deadline = time.time() + args.timeout
    every = [creds[i % len(creds)] for i in range(n)]
    jobs = [
        IdleJob(hub.port, hub.ca.read_text(), every[w :: args.procs], kind,
                str(run_dir / f"ready-{w}"), str(go), deadline)
        for w in range(args.procs)
    ]  # fmt: skip
    load0 = os.getloadavg()[0]
    empty = sample(pid)
    futures = [pool.submit(hold, job) for job in jobs]
    ready = [Path(j.ready_file) for j in jobs]
    while not all(p.exists() for p in ready) and time.time() < deadline:
        if any(f.done() for f in futures):
            break  # a client process failed: its result says why
        time.sleep(0.2)
    connected = sum(int(p.read_text() or 0) for p in ready if p.exists())
    opened = sample(pid, 10)
    go.touch()
    stats = [f.result(timeout=args.timeout) for f in futures]
    time.sleep(1.0)  # the hub sees the closes (connection_lost) within a turn of its loop
    closed = sample(pid)
    errors: dict[str, int] = {}
    for s in stats:
        for k, v in s.errors.items():
            errors[k] = errors.get(k, 0) + v
    row = Row(variant, kind, n, connected, empty, opened, closed, errors,
              (load0, os.getloadavg()[0]))  # fmt: skip
    print(
        f"  {variant} {kind} {n}: {connected} open; RSS {empty[0]:.0f} -> {opened[0]:.0f} "
        f"-> {closed[0]:.0f} MB ({row.rss_kb:.1f} KB each, PSS {row.pss_kb:.1f}); "
        f"errors {errors or 'none'}; load {row.load[0]:.1f}-{row.load[1]:.1f}",
        file=sys.stderr,
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    return row


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition(":")
    env = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: expected NAME:VAR=VALUE,...")
        env[key] = value
    return name, env


def render(rows: list[Row], args: argparse.Namespace, command: str) -> str:
    out = [f"\n## Hub memory per open device connection (git {git_revision()})\n"]
    out.append(f"Machine: {machine()}  ")
    out.append(f"Command: `{command}`\n")
    body = [
        (r.variant, r.kind, r.n, r.connected,
         f"{r.empty[0]:.0f} / {r.empty[1]:.0f}", f"{r.open[0]:.0f} / {r.open[1]:.0f}",
         f"**{r.rss_kb:.1f}** / {r.pss_kb:.1f}", f"{r.closed[0]:.0f} / {r.closed[1]:.0f}",
         " + ".join(f"{m:.0f}" for m in r.open[2]),
         ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "none",
         f"{r.load[0]:.1f} to {r.load[1]:.1f}")
        for r in rows
    ]  # fmt: skip
    out.append(
        table(
            [
                "variant",
                "connections",
                "N",
                "open",
                "hub RSS / PSS, none open (MB)",
                "N open (MB)",
                "per connection RSS / PSS (KB)",
                "after closing them (MB)",
                "RSS per process, N open (MB)",
                "errors",
                "load (1-min)",
            ],
            body,
        )
    )
    out.append(
        f"\nHub on SQLite with {args.hub_workers} worker process(es) (RSS and PSS summed over "
        f"the hub and its workers); {args.devices} device certificates, the connections "
        f"spread over them; {args.procs} client processes on the same cores."
    )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", default="500,2000", help="N, comma-separated")
    parser.add_argument("--kinds", default="idle,poll", help="idle, poll or idle,poll")
    parser.add_argument("--devices", type=int, default=200, help="device certificates to use")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--hub-workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--variant", action="append", default=[], help="NAME:VAR=VALUE,...")
    parser.add_argument("--timeout", type=float, default=300, help="bound on each round, s")
    args = parser.parse_args()
    sizes = [int(s) for s in args.connections.split(",")]
    kinds = args.kinds.split(",")
    if not all(1 <= s <= 20_000 for s in sizes) or not set(kinds) <= {"idle", "poll"}:
        raise SystemExit("--connections 1..20000 each; --kinds idle, poll")
    if not 1 <= args.procs <= 16 or not 1 <= args.devices <= 5000 or not 1 <= args.repeats <= 9:
        raise SystemExit("--procs 1..16, --devices 1..5000, --repeats 1..9")
    variants = [("current", {})] + [parse_variant(v) for v in args.variant]
    command = "PYTHONPATH=. .venv/bin/python -m benchmarks.bench_idle_connections " + " ".join(
        sys.argv[1:]
    )
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-idle-"))
    rows: list[Row] = []
    hub_args = [
        *("--workers", str(args.hub_workers), "--max-connections-per-address", "0"),
        *("--idle-timeout", "900"),  # the connections wait idle while the others open
    ]
    try:
        with ProcessPoolExecutor(args.procs, mp_context=get_context("spawn")) as pool:
            identities = make_identities(root / "keys", args.devices, pool)
            hub = start_hub(root / "hub", extra_args=hub_args)
            try:
                claim = hub.create_claim(max_uses=len(identities), expires="6h")
                certs = root / "certs"
                certs.mkdir()
                asyncio.run(enroll(hub, claim, identities, certs))
            finally:
                hub.stop()
            creds = [
                (str(certs / f"{name}-cert.pem"), str(root / "keys" / f"{name}-key.pem"))
                for name, _ in identities
            ]
            # Alternating variants, so that the machine's load falls on each alike.
            for _ in range(args.repeats):
                for n in sizes:
                    for kind in kinds:
                        for name, env in variants:
                            hub = start_hub(root / "hub", extra_args=hub_args, env=env)
                            try:
                                rows.append(measure(hub, pool, creds, root, name, kind, n, args))
                            finally:
                                hub.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(render(rows, args, command))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
