"""Throughput of the agent's outbox: group-committed puts and the uplink's drain.

Workload (fixed seed, bounded size): summary-like JSON payloads of about
200 bytes, priorities 0..9, two streams. Measured in the same run, each
REPEATS times on a fresh database, median reported (min and max beside it):

  (a) put_many in batches of 100 and of 1,000 (one transaction, one fsync
      each), PUTS records per run, with synchronous=FULL (what the outbox
      uses) and synchronous=NORMAL (set behind its back, for comparison);
  (b) put() of one record per transaction, SINGLE_PUTS records: why the
      agent group-commits;
  (c) put_many of 1,000 into an outbox already at its byte quota, so every
      record evicts one (steady state of a long outage);
  (d) drain: DRAIN records queued, then next_batch(500 records, 1 MB) + ack
      until empty (the uplink's loop minus the network), FULL and NORMAL.

The target from the design: ingest >= 20,000 records/s.

Run:  .venv/bin/python benchmarks/bench_outbox.py [--repeats R] [--dir PATH]
(--dir: put the databases on the disk you care about; default: a temp dir.)
"""

from __future__ import annotations

import argparse
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from fogline.agent.outbox import Outbox, OutboxItem

PUTS = 50_000
SINGLE_PUTS = 2_000
DRAIN = 100_000
SEED = 20240601
TARGET_PER_S = 20_000


def make_items(count: int) -> list[OutboxItem]:
    rng = random.Random(SEED)
    items = []
    for i in range(count):
        summary = {
            "device": f"dev-{rng.randrange(1000):04d}",
            "window_end": 1_700_000_000 + i,
            "metric": "temp",
            "count": 60,
            "mean": round(rng.gauss(21.5, 2.0), 3),
            "min": round(rng.gauss(18.0, 1.0), 3),
            "max": round(rng.gauss(25.0, 1.0), 3),
            "anomaly": rng.random() < 0.01,
            "labels": {"site": "plant-7", "line": f"line-{rng.randrange(4)}"},
        }
        stream = "anomalies" if summary["anomaly"] else "summaries"
        items.append(OutboxItem(stream, orjson.dumps(summary), rng.randrange(10), 3600.0))
    return items


def open_box(path: Path, sync: str, max_bytes: int = 10**10) -> Outbox:
    box = Outbox.open(path, max_bytes=max_bytes)
    if sync != "FULL":
        conn: sqlite3.Connection | None = box._conn  # benchmark only: override FULL
        assert conn is not None
        conn.execute(f"PRAGMA synchronous={sync}")
    return box


def bench_put_many(root: Path, items: list[OutboxItem], batch: int, sync: str) -> float:
    with open_box(root / "put.db", sync) as box:
        start = time.perf_counter()
        for i in range(0, len(items), batch):
            box.put_many(items[i : i + batch])
        return len(items) / (time.perf_counter() - start)


def bench_single_put(root: Path, items: list[OutboxItem], sync: str) -> float:
    with open_box(root / "single.db", sync) as box:
        start = time.perf_counter()
        for it in items[:SINGLE_PUTS]:
            box.put(it.stream, it.payload, priority=it.priority, ttl_s=it.ttl_s)
        return SINGLE_PUTS / (time.perf_counter() - start)


def bench_at_quota(root: Path, items: list[OutboxItem], sync: str) -> float:
    quota = sum(len(it.payload) for it in items[: len(items) // 5])
    with open_box(root / "quota.db", sync, max_bytes=quota) as box:
        for i in range(0, len(items), 1000):  # fill to the quota first
            box.put_many(items[i : i + 1000])
        assert box.stats().dropped_quota > 0
        start = time.perf_counter()
        for i in range(0, len(items), 1000):
            box.put_many(items[i : i + 1000])
        return len(items) / (time.perf_counter() - start)


def bench_drain(root: Path, items: list[OutboxItem], sync: str) -> float:
    with open_box(root / "drain.db", sync) as box:
        for i in range(0, len(items), 1000):
            box.put_many(items[i : i + 1000])
        start = time.perf_counter()
        drained = 0
        while batch := box.next_batch(max_records=500, max_bytes=1_000_000):
            drained += box.ack([r.seq for r in batch])
        elapsed = time.perf_counter() - start
        assert drained == len(items)
        return drained / elapsed


def measure(fn: Callable[[Path], float], repeats: int, base: Path | None) -> list[float]:
    rates = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(dir=base) as root:
            rates.append(fn(Path(root)))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    repeats = max(1, min(args.repeats, 50))
    puts = make_items(PUTS)
    drain = make_items(DRAIN)

    cases: list[tuple[str, str, Callable[[Path], float]]] = []
    for sync in ("FULL", "NORMAL"):
        cases += [
            (f"put_many x100 ({PUTS:,})", sync, lambda r, s=sync: bench_put_many(r, puts, 100, s)),
            (
                f"put_many x1000 ({PUTS:,})",
                sync,
                lambda r, s=sync: bench_put_many(r, puts, 1000, s),
            ),
            (f"put x1 ({SINGLE_PUTS:,})", sync, lambda r, s=sync: bench_single_put(r, puts, s)),
            (
                f"put_many x1000 at quota ({PUTS:,})",
                sync,
                lambda r, s=sync: bench_at_quota(r, puts, s),
            ),
            (
                f"drain next_batch(500)+ack ({DRAIN:,})",
                sync,
                lambda r, s=sync: bench_drain(r, drain, s),
            ),
        ]
    results = {(name, sync): measure(fn, repeats, args.dir) for name, sync, fn in cases}

    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, {repeats} runs each, median (min..max)\n"
    )
    print("| workload | synchronous | records/s | vs FULL |")
    print("| --- | --- | ---: | ---: |")
    for name, sync, _ in sorted(cases, key=lambda c: (c[0], c[1])):
        rates = results[(name, sync)]
        med = statistics.median(rates)
        full = statistics.median(results[(name, "FULL")])
        print(
            f"| {name} | {sync} | {med:,.0f} ({min(rates):,.0f}..{max(rates):,.0f}) "
            f"| {med / full:.2f}x |"
        )
    best = statistics.median(results[(f"put_many x100 ({PUTS:,})", "FULL")])
    verdict = "meets" if best >= TARGET_PER_S else "MISSES"
    print(f"\nput_many x100 with FULL {verdict} the {TARGET_PER_S:,} records/s target.")


if __name__ == "__main__":
    main()
