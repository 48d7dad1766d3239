"""The console's pages for a 10,000-device fleet: server time and bytes.

The devices are written straight into the hub's database (as
bench_inventory does), one of them with 24 hours of raw health samples every
10 s (8,640 rows, what a real node leaves), rolled up as the hub's pass
does, and an enrollment two days old, so its page draws four charts from a
full day. A real hub then answers
`--requests` requests per page over one kept-alive TLS connection holding a
console session cookie. It reports the time each answer took as the client
saw it on 127.0.0.1 (p50/p99: the hub's time plus a loopback round trip),
the hub's CPU per request, and the bytes of each page.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_console \\
        --devices 10000 --db sqlite,postgresql --requests 100
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
from sqlalchemy import update

from benchmarks._common import each_database, git_revision, machine, percentile, table
from benchmarks.bench_hub_scale import postmaster_pid, proc_cpu_s, server_cpu_s
from fogline.hub._db import make_engine
from fogline.hub._health import HealthRetention, epoch_ms, health_row, insert_samples, roll_up
from fogline.hub._schema import DeviceRow
from fogline.protocol import NodeHealth
from tests.support.console import SESSION_COOKIE
from tests.support.inventory import fleet_device, fleet_devices, hub_db_url, insert_devices
from tests.support.postgres import create_database
from tests.support.processes import HubProcess, free_port, start_hub, tls

SAMPLE_EVERY_S = 10
DAY_S = 86400


def pages(device_id: str) -> Sequence[tuple[str, str, dict[str, str]]]:
    return (
        ("overview", "/console", {}),
        ("device list, first page", "/console/devices", {}),
        ("device list, selector tier=gold", "/console/devices", {"selector": "tier=gold"}),
        ("device page, 24 h of health", f"/console/devices/{device_id}", {}),
    )


def fill(db_url: str, count: int) -> tuple[float, str]:
    """Insert `count` devices and a day of health for the first one; returns
    the seconds it took and that device's id."""
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC)
    insert_devices(db_url, fleet_devices(count, now), analyze=True)
    device_id = str(fleet_device(1, now)["id"])
    now_ms = epoch_ms(now)
    rows = [
        health_row(
            device_id,
            NodeHealth(
                cpu_percent=20.0 + (i % 60),
                mem_used_bytes=(400 + i % 100) * 2**20,
                mem_available_bytes=600 * 2**20,
                disk_free_bytes=(30 - (i % 5)) * 2**30,
                disk_total_bytes=64 * 2**30,
                temperature_c=45.0 + (i % 20) / 2,
            ),
            now_ms - i * SAMPLE_EVERY_S * 1000,
        )
        for i in range(DAY_S // SAMPLE_EVERY_S)
    ]
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            insert_samples(connection, rows)
            connection.execute(
                update(DeviceRow)
                .where(DeviceRow.id == device_id)
                .values(enrolled_at=now - dt.timedelta(days=2))
            )
        # What the hub's rollup pass does within a minute, done now.
        roll_up(engine, now_ms, HealthRetention())
    finally:
        engine.dispose()
    return time.monotonic() - started, device_id


def measure(
    hub: HubProcess, db_pid: int | None, path: str, params: dict[str, str], requests: int
) -> dict[str, float]:
    assert hub.proc is not None
    with httpx.Client(base_url=hub.url, verify=tls(hub.ca)) as client:
        client.cookies.set(SESSION_COOKIE, hub.token, domain="127.0.0.1", path="/")
        for _ in range(5):  # warm-up: connection, templates, caches, the planner
            client.get(path, params=params).raise_for_status()
        times: list[float] = []
        size = 0
        cpu0, db0 = proc_cpu_s(hub.proc.pid), server_cpu_s(db_pid)
        for _ in range(requests):
            t0 = time.perf_counter()
            response = client.get(path, params=params)
            times.append(time.perf_counter() - t0)
            if response.status_code != 200:
                raise SystemExit(f"{path}: {response.status_code} {response.text[:200]}")
            size = len(response.content)
        cpu1, db1 = proc_cpu_s(hub.proc.pid), server_cpu_s(db_pid)
    return {
        "p50_ms": percentile(times, 50) * 1000,
        "p99_ms": percentile(times, 99) * 1000,
        "hub_cpu_ms": (cpu1 - cpu0) / requests * 1000,
        "db_cpu_ms": (db1 - db0) / requests * 1000,
        "bytes": size,
    }


def bench(db: str, pg_base: str | None, root: Path, args: argparse.Namespace) -> list[list[Any]]:
    db_url = create_database(pg_base, f"console_{free_port()}") if db == "postgresql" else None
    hub = start_hub(root / f"hub-{db}", db_url=db_url)
    rows: list[list[Any]] = []
    try:
        filled_s, device_id = fill(hub_db_url(hub), args.devices)
        print(f"{db}: inserted {args.devices} devices in {filled_s:.1f}s", file=sys.stderr)
        db_pid = postmaster_pid(db_url) if db_url else None
        for label, path, params in pages(device_id):
            result = measure(hub, db_pid, path, params, args.requests)
            db_cpu = f"{result['db_cpu_ms']:.1f}" if db_url else "—"
            rows.append([
                db, label, f"{result['bytes']:,}", f"{result['p50_ms']:.1f}",
                f"{result['p99_ms']:.1f}", f"{result['hub_cpu_ms']:.1f}", db_cpu,
            ])  # fmt: skip
            print(f"{db}: {label}: {result}", file=sys.stderr)
    finally:
        hub.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    if not 2 <= args.devices <= 1_000_000 or not 1 <= args.requests <= 100_000:
        raise SystemExit("--devices takes 2..1,000,000 and --requests 1..100,000")
    dbs = args.db.split(",")
    rows, load = each_database(
        dbs, "bench-console-", lambda db, pg, root: bench(db, pg, root, args)
    )
    print(f"## Console pages, {args.devices:,} devices ({args.requests} requests each)\n")
    print(f"commit {git_revision()}, {machine()}, load {load}\n")
    headers = ["db", "page", "bytes", "p50 ms", "p99 ms", "hub CPU ms/req", "PostgreSQL CPU ms/req"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
