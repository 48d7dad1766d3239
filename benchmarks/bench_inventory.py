"""Device inventory at scale: the first page of `GET /v1/devices` filtered by a
label selector, with 100,000 devices, on SQLite and PostgreSQL.

The devices are written straight into the hub's database (Core INSERTs in
batches, their `device_labels` rows beside them, as hub/_label_index.py
would write them), then a real hub answers `--requests` requests per query
over one kept-alive TLS connection. It reports the time each answer took as
the client saw it on 127.0.0.1 (p50/p99: the hub's time plus a loopback
round trip), the hub's CPU per request, and the PostgreSQL server's CPU per
request (postmaster and backends: bench_hub_scale.server_cpu_s).

Labels: `site` one of 100 sites, `tier` gold/silver/bronze, `env` prod (9 in
10) or lab; every device runs module `app` at one of 4 versions and agent
0.0.0 to 0.4.0. Health is what the hub's own alert pass writes (measured
after its first pass): the devices last seen over 5 minutes ago are offline,
so critical.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_inventory \\
        --devices 100000 --db sqlite,postgresql --requests 200
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import each_database, git_revision, machine, percentile, table
from benchmarks.bench_hub_scale import postmaster_pid, proc_cpu_s, server_cpu_s
from tests.support.inventory import fleet_devices, hub_db_url, insert_devices
from tests.support.postgres import create_database
from tests.support.processes import HubProcess, free_port, start_hub, tls, wait_until

QUERIES: Sequence[tuple[str, dict[str, str]]] = (
    ("selector site=site-7,tier in (gold,silver) (~670 match)",
     {"selector": "site=site-7,tier in (gold,silver)"}),
    ("selector tier=gold (~33,000 match)", {"selector": "tier=gold"}),
    ("selector env!=lab,site in (site-1,site-2) (~1,800)",
     {"selector": "env!=lab,site in (site-1,site-2)"}),
    ("selector site=nowhere (0 match)", {"selector": "site=nowhere"}),
    ("no filter, sort=last_seen desc", {"sort": "last_seen", "order": "desc"}),
    ("module=app@1.3 and status=offline (~24,500)", {"module": "app@1.3", "status": "offline"}),
    ("health=critical (~91,000: offline)", {"health": "critical"}),
    ("health=ok (~9,000)", {"health": "ok"}),
    ("health=warning,critical (~91,000)", {"health": "warning,critical"}),
    ("health=warning (0 match)", {"health": "warning"}),
    ("version=0.3.0 (~20,000)", {"version": "0.3.0"}),
    ("version=9.9.9 (0 match)", {"version": "9.9.9"}),
    ("health=critical,selector site=site-7,tier in (gold,silver)",
     {"health": "critical", "selector": "site=site-7,tier in (gold,silver)"}),
)  # fmt: skip


def fill(db_url: str, count: int) -> float:
    """Insert `count` devices; returns the seconds it took."""
    started = time.monotonic()
    insert_devices(db_url, fleet_devices(count, dt.datetime.now(dt.UTC)), analyze=True)
    return time.monotonic() - started


def measure(
    hub: HubProcess, db_pid: int | None, params: dict[str, str], requests: int
) -> dict[str, float]:
    assert hub.proc is not None
    with httpx.Client(
        base_url=hub.url, verify=tls(hub.ca), headers={"authorization": f"Bearer {hub.token}"}
    ) as client:
        for _ in range(5):  # warm-up: connection, caches, the planner
            client.get("/v1/devices", params=params).raise_for_status()
        times: list[float] = []
        cpu0, db0 = proc_cpu_s(hub.proc.pid), server_cpu_s(db_pid)
        found = 0
        for _ in range(requests):
            t0 = time.perf_counter()
            response = client.get("/v1/devices", params=params)
            times.append(time.perf_counter() - t0)
            response.raise_for_status()
            found = len(response.json()["devices"])
        cpu1, db1 = proc_cpu_s(hub.proc.pid), server_cpu_s(db_pid)
    return {
        "p50_ms": percentile(times, 50) * 1000,
        "p99_ms": percentile(times, 99) * 1000,
        "hub_cpu_ms": (cpu1 - cpu0) / requests * 1000,
        "db_cpu_ms": (db1 - db0) / requests * 1000,
        "page": found,
    }


def bench(db: str, pg_base: str | None, root: Path, args: argparse.Namespace) -> list[list[Any]]:
    db_url = create_database(pg_base, f"inv_{free_port()}") if db == "postgresql" else None
    hub = start_hub(root / f"hub-{db}", db_url=db_url)
    rows: list[list[Any]] = []
    try:
        filled_s = fill(hub_db_url(hub), args.devices)
        print(f"{db}: inserted {args.devices} devices in {filled_s:.1f}s", file=sys.stderr)
        db_pid = postmaster_pid(db_url) if db_url else None
        # The alert pass judges the new fleet first (offline: ~91,000 alerts
        # and devices' health written once), as a running hub has long done.
        with hub.client() as client:
            wait_until(
                lambda: client.get(
                    "/v1/devices", params={"health": "critical", "limit": "1"}
                ).json()["devices"],
                600,
                "the first alert pass over the fleet",
                interval_s=1,
            )
        for label, params in QUERIES:
            result = measure(hub, db_pid, params, args.requests)
            db_cpu = f"{result['db_cpu_ms']:.1f}" if db_url else "—"
            rows.append([
                db, label, result["page"], f"{result['p50_ms']:.1f}", f"{result['p99_ms']:.1f}",
                f"{result['hub_cpu_ms']:.1f}", db_cpu,
            ])  # fmt: skip
            print(f"{db}: {label}: {result}", file=sys.stderr)
    finally:
        hub.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    if not 1 <= args.devices <= 1_000_000 or not 1 <= args.requests <= 100_000:
        raise SystemExit("--devices takes 1..1,000,000 and --requests 1..100,000")
    dbs = args.db.split(",")
    rows, load = each_database(dbs, "bench-inv-", lambda db, pg, root: bench(db, pg, root, args))
    print(
        f"## Device inventory: first page of {args.devices:,} devices ({args.requests} requests each)\n"
    )
    print(f"commit {git_revision()}, {machine()}, load {load}\n")
    headers = ["db", "query", "page", "p50 ms", "p99 ms", "hub CPU ms/req", "PostgreSQL CPU ms/req"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
