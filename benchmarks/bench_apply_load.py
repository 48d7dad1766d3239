"""Applies to a large fleet while devices report: apply time and what the
devices saw, on SQLite and PostgreSQL.

The fleet is `--devices` devices written straight into the hub's database
(tests/support/inventory.py, as bench_inventory does) plus `--reporters`
devices enrolled for real that send `POST /v1/report` over their own kept-
alive mTLS connections, each every `--report-every` seconds, for the whole
run. Then `--applies` applies, one after the other, change the config of a
deployment that selects nine devices in ten (every apply starts a rollout
whose first wave is served at once). It reports each apply's time as the
operator saw it and, over the reports answered while an apply ran, how many
there were, their p50/p99/max latency and how many got a 5xx (the goal:
none).

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_apply_load \\
        --devices 10000 --db sqlite,postgresql --applies 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import each_database, git_revision, machine, median, percentile, table
from tests.support.device import TestDevice, enroll_device
from tests.support.inventory import fleet_devices, hub_db_url, insert_devices
from tests.support.postgres import create_database
from tests.support.processes import HubProcess, free_port, start_hub

DEPLOYMENT = """\
apiVersion: fogline.dev/v1
kind: Deployment
metadata: {name: everyone}
spec:
  selector: {matchLabels: {env: prod}}
  config: {greeting: GREETING}
  rollout: {waves: ["10%", "100%"], bake: 1h}
"""
MAX_RUN_S = 1800  # every loop below also ends by this


@dataclass
class Answer:
    at: float  # time.monotonic() when the request was sent
    took_s: float
    status: int  # 0: no answer (transport error)


@dataclass
class Reporters:
    devices: list[TestDevice]
    every_s: float
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, device: TestDevice) -> None:
        deadline = time.monotonic() + MAX_RUN_S
        with device.client() as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    status = client.post("/v1/report", json={"labels": {}}).status_code
                except httpx.HTTPError:  # a timeout or a reset: counted as no answer
                    status = 0
                with self.lock:
                    self.answers.append(Answer(sent, time.monotonic() - sent, status))
                self.stop.wait(self.every_s)


def apply(hub: HubProcess, greeting: str) -> float:
    text = DEPLOYMENT.replace("GREETING", greeting)
    started = time.monotonic()
    with hub.client() as client:
        response = client.post(
            "/v1/manifests/apply",
            json={"files": [{"name": "everyone.yaml", "text": text}]},
            timeout=600,
        )
    if response.status_code != 200:
        raise SystemExit(f"apply: {response.status_code} {response.text[:300]}")
    return time.monotonic() - started


def bench(db: str, pg_base: str | None, root: Path, args: argparse.Namespace) -> list[list[Any]]:
    db_url = create_database(pg_base, f"apply_{free_port()}") if db == "postgresql" else None
    extra = ["--workers", str(args.workers)] if args.workers > 1 else None
    hub = start_hub(root / f"hub-{db}", db_url=db_url, extra_args=extra)
    try:
        now = dt.datetime.now(dt.UTC)
        insert_devices(hub_db_url(hub), fleet_devices(args.devices, now), analyze=True)
        claim = hub.create_claim(labels="env=prod", max_uses=args.reporters)
        devices = [
            enroll_device(hub, claim, f"reporter-{i:03d}", root) for i in range(args.reporters)
        ]
        reporters = Reporters(devices, args.report_every)
        threads = [threading.Thread(target=reporters.run, args=(d,)) for d in devices]
        for thread in threads:
            thread.start()
        windows: list[tuple[float, float]] = []
        try:
            time.sleep(2)  # every reporter connected and reporting
            for i in range(args.applies):
                started = time.monotonic()
                took = apply(hub, f"hello {i}")
                windows.append((started, started + took))
                print(f"{db}: apply {i + 1}: {took:.2f}s", file=sys.stderr)
                time.sleep(1)
        finally:
            reporters.stop.set()
            for thread in threads:
                thread.join(30)
    finally:
        hub.stop()
    during = [a for a in reporters.answers if any(s <= a.at <= e for s, e in windows)]
    latencies = [a.took_s * 1000 for a in during]
    failed = sum(1 for a in during if a.status == 0 or a.status >= 500)
    total_failed = sum(1 for a in reporters.answers if a.status == 0 or a.status >= 500)
    apply_s = [e - s for s, e in windows]
    return [[
        db, args.devices + args.reporters, args.workers,
        f"{median(apply_s):.2f}", f"{max(apply_s):.2f}",
        " ".join(f"{s:.2f}" for s in apply_s),
        len(during),
        f"{percentile(latencies, 50):.0f}" if latencies else "—",
        f"{percentile(latencies, 99):.0f}" if latencies else "—",
        f"{max(latencies):.0f}" if latencies else "—",
        f"{failed} ({total_failed} in the whole run)",
    ]]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--reporters", type=int, default=20)
    parser.add_argument("--report-every", type=float, default=0.2, help="seconds")
    parser.add_argument("--applies", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="hub worker processes")
    parser.add_argument("--db", default="sqlite,postgresql")
    args = parser.parse_args()
    if not 1 <= args.devices <= 200_000 or not 1 <= args.reporters <= 200:
        raise SystemExit("--devices takes 1..200,000 and --reporters 1..200")
    if not 1 <= args.applies <= 50 or not 0.01 <= args.report_every <= 60:
        raise SystemExit("--applies takes 1..50 and --report-every 0.01..60")
    dbs = args.db.split(",")
    rows, load = each_database(dbs, "bench-apply-", lambda db, pg, root: bench(db, pg, root, args))
    print(f"## Applies to {args.devices:,} devices while {args.reporters} devices report\n")
    print(f"commit {git_revision()}, {machine()}, load {load}\n")
    headers = [
        "db", "devices", "hub workers", "apply s (median)", "apply s (max)", "every apply (s)",
        "reports during applies", "p50 ms", "p99 ms", "max ms", "5xx or no answer",
    ]  # fmt: skip
    print(table(headers, rows))


if __name__ == "__main__":
    main()
