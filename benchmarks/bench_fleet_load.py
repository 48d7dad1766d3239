"""A large fleet against one hub on PostgreSQL (fsync on): reports, long-polls, a change.

Every device is a real mTLS identity (key and certificate from the hub's CA,
made in bulk and cached: benchmarks/_fleet_identities.py) on its own
connection from a light load generator (benchmarks/_fleet_loadgen.py: many
devices per process, several processes). The hub runs `--workers` processes
over a throwaway PostgreSQL with `fsync=on`. Phases:

1. connect: every device opens its connection (a bounded number of
   handshakes in flight per generator), gets its desired state and reports
   it; then it long-polls (`wait` up to 30 s, ending at its report slot) and
   reports every `--interval` s at a random phase;
2. window: `--window` s of that steady load. Client-side report latency
   (from the device's slot to the hub's 200) p50/p99, the hub's CPU (all its
   processes) and the PostgreSQL server's (postmaster and backends, reaped
   ones included), reports/s per core of hub + database, hub RSS;
3. changes: `--changes` config changes selecting every device, one after
   another (bench_rollout_scale's `propagate`); per device, the time from the
   apply request to the device getting the new revision and to the hub's 200
   for its report carrying it: p50/p99/max.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_fleet_load \\
        --devices 100000 --hub-workers 8 --window 120 --changes 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import git_revision, machine, percentile, table
from benchmarks._fleet_identities import device_rows, install_ca, make_identities
from benchmarks._fleet_loadgen import GenJob, GenStats, raise_open_files_limit, run_generator
from benchmarks.bench_hub_scale import postmaster_pid, proc_cpu_s, proc_rss_mb, server_cpu_s
from benchmarks.bench_rollout_scale import Change, deployment, propagate
from fogline.hub._clock import utcnow
from fogline.hub._db import make_engine, sqlite_url, upgrade_schema
from tests.support.inventory import insert_devices
from tests.support.postgres import create_database, throwaway_postgres
from tests.support.processes import HubProcess, free_port, start_hub

MAX_DEVICES = 100_000
FD_MARGIN = 200  # descriptors a generator keeps for itself
GENERATOR_END_S = 60  # after the stop file: a status poll, then up to 30 s of cancelling


@dataclass(frozen=True)
class Window:
    """The steady-state window's server-side figures."""

    start: float  # time.time()
    end: float
    hub_cpu_s: float
    db_cpu_s: float
    hub_rss_mb: float
    gen_cpu_s: float
    load: str


@dataclass(frozen=True)
class Ramp:
    seconds: float
    connected: int
    synced: int
    rss_kb: int  # generators' RSS summed, all connected
    hub_cpu_s: float  # over the ramp
    db_cpu_s: float
    gen_cpu_s: float
    limited_by: str  # why the connect phase ended before every device synced; "" if it did not


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--hub-workers", type=int, default=4, help="hub processes")
    parser.add_argument(
        "--generators",
        type=int,
        default=0,
        help="generator processes (0: one per 14,000 devices, at least 2)",
    )
    parser.add_argument("--interval", type=float, default=60, help="report interval, s")
    parser.add_argument("--window", type=float, default=120, help="steady-state window, s")
    parser.add_argument(
        "--idle-s", type=float, default=10, help="the idle hub's baseline before any device, s"
    )
    parser.add_argument(
        "--min-available-mb",
        type=float,
        default=3000,
        help="end the connect phase when the machine's available memory falls below this",
    )
    parser.add_argument("--changes", type=int, default=1, help="config changes to time")
    parser.add_argument("--change-timeout", type=float, default=180, help="bound per change, s")
    parser.add_argument("--ramp-timeout", type=float, default=900, help="bound on phase 1, s")
    parser.add_argument(
        "--connect-concurrency", type=int, default=32, help="handshakes in flight per generator"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "fogline-fleet-identities",
        help="identity cache (CA, device keys and certificates); kept between runs",
    )
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if not 1 <= args.devices <= MAX_DEVICES or not 1 <= args.hub_workers <= 16:
        raise SystemExit(f"--devices 1..{MAX_DEVICES}, --hub-workers 1..16")
    if not 1 <= args.interval <= 600 or not 1 <= args.window <= 1800:
        raise SystemExit("--interval 1..600, --window 1..1800")
    if not 0 <= args.changes <= 20:
        raise SystemExit("--changes 0..20")
    nofile = raise_open_files_limit()  # the hub inherits it
    generators = args.generators or max(2, math.ceil(args.devices / 14_000))
    if math.ceil(args.devices / generators) > nofile - FD_MARGIN or generators > 200:
        raise SystemExit(f"--generators: each holds at most {nofile - FD_MARGIN} devices")
    command = "PYTHONPATH=. .venv/bin/python -m benchmarks.bench_fleet_load " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-fleet-"))
    try:
        with ExitStack() as stack:
            pool = stack.enter_context(
                ProcessPoolExecutor(generators, mp_context=get_context("spawn"))
            )
            t0 = time.monotonic()
            identities, made = make_identities(args.cache, args.devices, pool)
            provision_s = time.monotonic() - t0
            _log(f"{len(identities)} identities ({made} made now) in {provision_s:.1f}s")
            pg = (
                stack.enter_context(
                    throwaway_postgres(max_connections=60 * args.hub_workers + 20, fsync=True)
                )
                if args.db == "postgresql"
                else None
            )
            db_url = create_database(pg, f"fleet_{free_port()}") if pg else None
            data_dir = root / "hub"
            install_ca(args.cache, data_dir)
            url = db_url or sqlite_url(data_dir)
            engine = make_engine(url)
            upgrade_schema(engine)
            engine.dispose()
            t0 = time.monotonic()
            insert_devices(url, device_rows(identities, utcnow()), analyze=True)
            rows_s = time.monotonic() - t0
            _log(f"{args.devices} device rows in {rows_s:.1f}s")
            hub = start_hub(
                data_dir,
                db_url=db_url,
                extra_args=[
                    *(
                        "--report-interval",
                        f"{args.interval:g}",
                        "--workers",
                        str(args.hub_workers),
                    ),
                    *("--max-connections-per-address", "0"),
                ],
            )
            stack.callback(hub.stop)
            stop_file = root / "stop"
            stack.callback(stop_file.touch)  # first on the way out: generators end
            result = run(args, hub, pool, identities, generators, root, stop_file, db_url)
            result.update(
                command=command, nofile=nofile, generators=generators, provision_s=provision_s,
                identities_made=made, rows_s=rows_s,
            )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(render(args, result))
    return result


def run(
    args: argparse.Namespace,
    hub: HubProcess,
    pool: ProcessPoolExecutor,
    identities: list[Any],
    generators: int,
    root: Path,
    stop_file: Path,
    db_url: str | None,
) -> dict[str, Any]:
    assert hub.proc is not None
    pid = hub.proc.pid
    db_pid = postmaster_pid(db_url) if db_url else None
    with hub.client() as client:
        client.timeout = httpx.Timeout(600)
        body = {"files": [{"name": "base.yaml", "text": deployment(False)}], "prune": False}
        t0 = time.monotonic()
        client.post("/v1/manifests/apply", json=body).raise_for_status()
        _log(f"base deployment applied in {time.monotonic() - t0:.1f}s")
        bound_s = args.ramp_timeout + 10 + args.window + args.changes * (args.change_timeout + 5)
        stop_at = time.time() + bound_s + 30
        pems = [identity.pem for identity in identities]
        jobs = [
            GenJob(w, "127.0.0.1", hub.port, f"127.0.0.{2 + w}", hub.ca.read_text(),
                   pems[w::generators], args.interval, stop_at, str(stop_file),
                   str(root / "ramp-over"), str(root / f"gen-{w}.json"),
                   args.connect_concurrency, seed=w)
            for w in range(generators)
        ]  # fmt: skip
        idle = _idle(args, pid, db_pid)
        futures = [pool.submit(run_generator, job) for job in jobs]
        ramp = _wait_connected(args, futures, jobs, pid, db_pid, root / "ramp-over")
        (root / "ramp-over").touch()  # reconnects only from now on
        # Warm-up: a few seconds of steady load before the window.
        time.sleep(5)
        window = _window(args, pid, db_pid, jobs)
        db0 = server_cpu_s(db_pid)
        changes = propagate(client, pid, args.changes, args.change_timeout)
        change_db_cores = [
            (server_cpu_s(db_pid) - db0) / max(1e-9, sum(_change_span(c) for c in changes))
        ]
        stop_file.touch()
        parts = _results(futures, GENERATOR_END_S)
        _, peak = proc_rss_mb(pid)
    return {
        "ramp": ramp, "idle": idle, "window": window, "changes": changes, "parts": parts,
        "change_db_cores": change_db_cores[0], "hub_peak_mb": peak, "devices": args.devices,
    }  # fmt: skip


def _results(futures: list[Future[GenStats]], within_s: float) -> list[GenStats]:
    """Every generator's stats once the stop file is there; a generator that
    does not end within `within_s` is an error, not a wait until its hard stop."""
    deadline = time.monotonic() + within_s
    try:
        return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
    except TimeoutError:
        raise SystemExit(f"a generator did not end within {within_s:.0f} s of the stop") from None


def _change_span(change: Change) -> float:
    return (change.converged_s or 0.0) or (change.committed - change.started)


def _statuses(jobs: list[GenJob]) -> list[dict[str, Any]]:
    out = []
    for job in jobs:
        try:
            out.append(json.loads(Path(job.status_file).read_text()))
        except (OSError, ValueError):
            out.append({})
    return out


def _wait_connected(
    args: argparse.Namespace,
    futures: list[Future[GenStats]],
    jobs: list[GenJob],
    pid: int,
    db_pid: int | None,
    ramp_over: Path,
) -> Ramp:
    """Phase 1, bounded by --ramp-timeout: every device connected and synced.
    Timed from when every generator process is up (spawned, imports done)."""
    # Spawning the generators and their imports do not count.
    deadline = time.monotonic() + 120
    t0 = cpu0 = db0 = gen0 = 0.0
    statuses: list[dict[str, Any]] = []
    limited_by: list[str] = []
    while time.monotonic() < deadline:
        for future in futures:
            if future.done():
                future.result()  # a generator that died: its exception, now
                raise SystemExit("a generator ended before the window")
        statuses = _statuses(jobs)
        if not t0 and all(statuses):
            t0, cpu0, db0 = time.monotonic(), proc_cpu_s(pid), server_cpu_s(db_pid)
            gen0 = sum(s["cpu_s"] for s in statuses)
            deadline = t0 + args.ramp_timeout
        if sum(s.get("synced", 0) for s in statuses) >= args.devices:
            break
        if t0 and _available_mb() < args.min_available_mb:
            # The machine is shared: stop growing the fleet before the
            # kernel's OOM killer picks a process, perhaps someone else's.
            _log(f"ramp: memory available below {args.min_available_mb} MB: connect phase ended")
            limited_by.append("memory")
            break
        time.sleep(0.2 if args.devices <= 2000 else 1.0)
    else:
        limited_by.append("time (--ramp-timeout)")
    if not t0:
        raise SystemExit("the generators did not start within 120 s")
    if sum(s.get("synced", 0) for s in statuses) < args.devices:
        # The connect phase ran out: devices not connected give up, those
        # in a handshake finish it; the fleet is what synced.
        ramp_over.touch()
        settle = time.monotonic() + 60
        while time.monotonic() < settle:
            statuses = _statuses(jobs)
            if sum(s.get("synced", 0) + s.get("gave_up", 0) for s in statuses) >= args.devices:
                break
            time.sleep(1)
    seconds = time.monotonic() - t0
    connected = sum(s.get("connected", 0) for s in statuses)
    synced = sum(s.get("synced", 0) for s in statuses)
    _log(f"ramp: {synced}/{args.devices} synced, {connected} connected in {seconds:.1f}s")
    return Ramp(
        seconds,
        connected,
        synced,
        sum(s.get("rss_kb", 0) for s in statuses),
        proc_cpu_s(pid) - cpu0,
        server_cpu_s(db_pid) - db0,
        sum(s.get("cpu_s", 0.0) for s in statuses) - gen0,
        ", ".join(limited_by) if synced < args.devices else "",
    )


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return math.inf


def _idle(args: argparse.Namespace, pid: int, db_pid: int | None) -> tuple[float, float]:
    """The same-run baseline: hub and PostgreSQL cores with every device row
    in the database and no device connected (the hub's own passes)."""
    t0, cpu0, db0 = time.monotonic(), proc_cpu_s(pid), server_cpu_s(db_pid)
    time.sleep(args.idle_s)
    seconds = time.monotonic() - t0
    idle = ((proc_cpu_s(pid) - cpu0) / seconds, (server_cpu_s(db_pid) - db0) / seconds)
    _log(f"idle: hub {idle[0]:.2f} cores, db {idle[1]:.2f}")
    return idle


def _window(args: argparse.Namespace, pid: int, db_pid: int | None, jobs: list[GenJob]) -> Window:
    gen0 = sum(s.get("cpu_s", 0.0) for s in _statuses(jobs))
    start, cpu0, db0 = time.time(), proc_cpu_s(pid), server_cpu_s(db_pid)
    time.sleep(args.window)
    end, cpu1, db1 = time.time(), proc_cpu_s(pid), server_cpu_s(db_pid)
    gen1 = sum(s.get("cpu_s", 0.0) for s in _statuses(jobs))
    rss, _ = proc_rss_mb(pid)
    load = "/".join(f"{v:.1f}" for v in os.getloadavg())
    _log(
        f"window: hub {(cpu1 - cpu0) / args.window:.2f} cores, db {(db1 - db0) / args.window:.2f}, load {load}"
    )
    return Window(start, end, cpu1 - cpu0, db1 - db0, rss, gen1 - gen0, load)


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """The figures of a run, from its parts (also what the test checks)."""
    parts: list[GenStats] = result["parts"]
    window: Window = result["window"]
    latencies = [
        lat
        for p in parts
        for slot, lat in zip(p.report_slots, p.report_latency, strict=True)
        if window.start <= slot < window.end
    ]
    seconds = window.end - window.start
    cores = (window.hub_cpu_s + window.db_cpu_s) / seconds
    idle_cores = sum(result["idle"])
    changes = []
    for change in result["changes"]:
        wanted = set(change.revisions.values())
        got, reported = [], []
        for part in parts:
            for revision, seen, done in part.applied:
                if revision in wanted and seen >= change.started:
                    got.append(seen - change.started)
                    reported.append(done - change.started)
        # Every device of the fleet that connected; one that never connected
        # (the connect phase ran out) is not in the test.
        expected = min(len(change.revisions), result["ramp"].synced)
        missing = max(0, expected - len(reported))
        got += [math.inf] * missing
        reported += [math.inf] * missing
        changes.append(
            {
                "change": change,
                "got": got,
                "reported": reported,
                "missing": missing,
                "expected": expected,
            }
        )
    errors: dict[str, int] = {}
    for p in parts:
        for k, v in p.errors.items():
            errors[k] = errors.get(k, 0) + v
    return {
        "reports": len(latencies),
        "reports_per_s": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "hub_cores": window.hub_cpu_s / seconds,
        "db_cores": window.db_cpu_s / seconds,
        "per_core": len(latencies) / seconds / cores if cores else math.nan,
        "gen_cores": window.gen_cpu_s / seconds,
        # What the fleet adds to the idle hub and database (same run).
        "fleet_cores": cores - idle_cores,
        "per_fleet_core": len(latencies) / seconds / (cores - idle_cores)
        if cores > idle_cores
        else math.nan,
        "changes": changes,
        "errors": errors,
        # Reports that left more than 1 s after their slot: the device fell behind.
        "late": sum(lat > 1.0 for lat in latencies),
        "polls_per_s": sum(
            n for p in parts for second, n in p.polls.items() if window.start <= second < window.end
        )
        / seconds,
        "reconnects": sum(p.reconnects for p in parts),
    }


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < math.inf else "never"


def render(args: argparse.Namespace, result: dict[str, Any]) -> str:
    f = figures(result)
    ramp: Ramp = result["ramp"]
    window: Window = result["window"]
    parts: list[GenStats] = result["parts"]
    devices = result["devices"]
    # Each generator's RSS when all its devices had synced, less its RSS
    # before it made any device.
    grown_kb = sum(p.rss_connected_kb - p.rss_base_kb for p in parts if p.rss_connected_kb)
    per_device_kb = grown_kb / max(1, ramp.synced)
    out = [
        f"\n## {devices:,} devices against one hub (git {git_revision()})\n",
        f"Machine: {machine()}  ",
        f"Command: `{result['command']}`\n",
        f"Hub: {args.hub_workers} processes on {args.db}"
        + (" (`fsync=on`)" if args.db == "postgresql" else "")
        + f"; {result['generators']} generator processes on the same cores; RLIMIT_NOFILE "
        f"{result['nofile']} (the hard limit; it binds the devices per generator and the "
        f"connections per hub worker).\n",
        f"* Provisioning: {devices:,} identities in {result['provision_s']:.1f} s "
        f"({result['identities_made']:,} made now, the rest from the cache); rows inserted in "
        f"{result['rows_s']:.1f} s.",
        f"* Connect: {ramp.synced:,}/{devices:,} devices connected and synced in "
        f"{ramp.seconds:.1f} s ({ramp.synced / max(ramp.seconds, 1e-9):.0f}/s)"
        + (
            f", then the connect phase ended: limited by {ramp.limited_by}"
            if ramp.limited_by
            else ""
        )
        + f"; each a TLS "
        f"handshake, a desired-state read and a report: {ramp.hub_cpu_s:.1f} CPU-s of hub, "
        f"{ramp.db_cpu_s:.1f} of PostgreSQL, {ramp.gen_cpu_s:.1f} of generators "
        f"({1000 * ramp.hub_cpu_s / max(1, ramp.synced):.2f} ms of hub CPU per device). "
        "Generator memory: "
        f"{per_device_kb:.1f} KB per device ({ramp.rss_kb / 1024:.0f} MB in all, "
        f"{sum(p.rss_base_kb for p in parts) / 1024:.0f} MB before any device).",
        f"* Idle baseline, every row in the database and no device connected: hub "
        f"{result['idle'][0]:.2f} cores, PostgreSQL {result['idle'][1]:.2f} cores.",
        f"* Window: {window.end - window.start:.0f} s, {ramp.synced:,} devices each reporting every "
        f"{args.interval:g} s (offered {ramp.synced / args.interval:.0f}/s) and long-polling "
        "(`wait` up to 30 s, ending 0.5 s before its report slot). Latency from the "
        "device's slot to the hub's 200. Per core: reports/s over the hub's CPU and "
        "PostgreSQL's together (the long-polls' cost is in that CPU too); over the fleet's "
        f"share, above the idle baseline: {f['per_fleet_core']:.0f} reports/s per core "
        f"({f['fleet_cores']:.2f} cores).\n",
        table(
            [
                "reports/s",
                "long-polls answered/s",
                "p50 ms",
                "p99 ms",
                "hub cores",
                "PostgreSQL cores",
                "reports/s per core (hub + db)",
                "hub RSS MB",
                "generator cores",
                "reports > 1 s late",
                "load 1/5/15",
            ],
            [
                (
                    f"{f['reports_per_s']:.0f}",
                    f"{f['polls_per_s']:.0f}",
                    f"{f['p50_ms']:.1f}",
                    f"{f['p99_ms']:.1f}",
                    f"{f['hub_cores']:.2f}",
                    f"{f['db_cores']:.2f}",
                    f"{f['per_core']:.0f}",
                    f"{window.hub_rss_mb:.0f}",
                    f"{f['gen_cores']:.2f}",
                    f["late"],
                    window.load,
                )
            ],
        ),
        "",
    ]
    rows = []
    for c in f["changes"]:
        change: Change = c["change"]
        got, reported = c["got"], c["reported"]
        if change.failed is not None or not reported:
            rows.append((change.number, f"apply failed ({change.failed})", "-", "-", "-", "-", "-"))
            continue
        rows.append((change.number, f"{len(reported) - c['missing']}/{c['expected']}",
                     f"{change.committed - change.started:.2f}",
                     f"{_seconds(percentile(got, 50))} / {_seconds(percentile(got, 99))} / {_seconds(max(got))}",
                     f"{_seconds(percentile(reported, 50))} / {_seconds(percentile(reported, 99))} / {_seconds(max(reported))}",
                     f"{change.hub_cores:.2f}", f"{change.load[0]:.1f} to {change.load[1]:.1f}"))  # fmt: skip
    if rows:
        out.append(
            table(
                [
                    "change",
                    "devices reported",
                    "apply request (s)",
                    "got new revision p50 / p99 / max",
                    "hub's 200 for its report p50 / p99 / max",
                    "hub cores",
                    "load",
                ],
                rows,
            )
        )
        out.append(
            f"\nTimes from just before the apply request. PostgreSQL during the changes: "
            f"{result['change_db_cores']:.2f} cores."
        )
    gen_cpu = sum(p.cpu_s for p in parts)
    out.append(
        f"\n* Hub peak RSS {result['hub_peak_mb']:.0f} MB (all workers). Generators: "
        f"{gen_cpu:.0f} CPU-s in all, peak RSS {sum(p.rss_peak_kb for p in parts) / 1024:.0f} MB; "
        f"{sum(p.connects for p in parts):,} connections, {f['reconnects']:,} reconnects. "
        f"Errors: {f['errors'] or 'none'}."
    )
    return "\n".join(out)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
