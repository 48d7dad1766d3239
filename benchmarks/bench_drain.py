"""Outbox drain after an outage: records/s into the hub's store until the outbox is empty.

A real hub and one real agent on 127.0.0.1. The agent runs an HTTP-ingest
pipeline that uplinks what it gets (anomalies priority 9, summaries
priority 5). With the hub stopped, the agent is fed the records the factory
scenario of bench_bandwidth queues in a 10-minute outage: 1,000 sensors x
one 10 s summary each = 60,000 summaries, plus 0.1 % of 6,000,000 readings
= 6,000 anomalies (66,000 records; `--minutes` scales it). Then the hub is
started again on the same port and data, and the telemetry row count in
its SQLite is polled every 0.05 s until every record is there.

The hub stays down --down-s seconds (default 40: the uplink's backoff has
reached its 30 s cap by then, as after any real outage of a minute or more).
Reported per repetition: the time from the hub being healthy to its first
row (the uplink's reconnect backoff: full jitter, capped at 30 s), the drain
rate (records / time from first row to last; and the 10 %..90 % slope), and
when the last priority-9 record landed (they go first).

Baseline in the same run, same records, same disk: the outbox alone
(`next_batch(500, 1 MB)` + `ack` until empty, as bench_outbox) and the
uplink's whole loop with an in-memory hub (`Uplink.drain` over
`MemoryHubTransport`, which also encodes and decodes every batch).

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_drain --minutes 10 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import orjson

from benchmarks._common import git_revision, machine, median, table
from benchmarks.bench_ingest import AgentMetrics, apply_manifest, crossing_time, load_average
from fogline.agent.outbox import Outbox, OutboxItem
from fogline.agent.uplink import Backoff, MemoryHubTransport, Uplink
from tests.support.processes import AgentProcess, HubProcess, start_hub, wait_until

SEED = 20240612
SENSORS = 1000
WINDOW_S = 10
READINGS_PER_S = 10_000
ANOMALY_RATE = 0.001
CHUNK = 5000  # records per POST /ingest (its limit is 10,000 and 4 MiB)
PIPELINE = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: bench-drain}
    spec:
      selector: {}
      pipelines:
        - name: backlog
          source: {http: {}}
          outputs:
            - {when: "anomaly", uplink: {stream: anomalies, priority: 9, ttl: 1d}}
            - {when: "not anomaly", uplink: {stream: summaries, priority: 5, ttl: 1d}}
    """)


def outage_records(minutes: float, t0: float) -> list[dict[str, object]]:
    """The factory's outputs over `minutes`: summaries and anomalies, in time order."""
    rng = random.Random(SEED)
    windows = round(minutes * 60 / WINDOW_S)
    anomalies = round(minutes * 60 * READINGS_PER_S * ANOMALY_RATE)
    records: list[tuple[float, dict[str, object]]] = []
    for w in range(windows):
        start = t0 + w * WINDOW_S
        for s in range(SENSORS):
            mean = round(rng.gauss(50.0, 1.0), 3)
            records.append(
                (
                    start + WINDOW_S,
                    {
                        "sensor": f"s{s:04d}",
                        "window_start": start,
                        "window_end": start + WINDOW_S,
                        "mean": mean,
                        "min": round(mean - rng.random() * 15, 2),
                        "max": round(mean + rng.random() * 15, 2),
                        "count": 100,
                        "anomaly": False,
                    },
                )
            )
    for _ in range(anomalies):
        ts = round(t0 + rng.random() * windows * WINDOW_S, 1)
        value = round(500 + rng.random() * 100, 2)
        records.append(
            (
                ts,
                {
                    "value": value,
                    "ts": ts,
                    "sensor": f"s{rng.randrange(SENSORS):04d}",
                    "metric": "temp",
                    "anomaly": True,
                    "score": round(value - 100, 2),
                },
            )
        )
    records.sort(key=lambda pair: pair[0])
    return [record for _, record in records]


def as_items(records: list[dict[str, object]]) -> list[OutboxItem]:
    """The outbox items the pipeline makes of these records."""
    return [
        OutboxItem(
            "anomalies" if r["anomaly"] else "summaries",
            orjson.dumps(r),
            9 if r["anomaly"] else 5,
            86400.0,
        )
        for r in records
    ]


def outbox_rate(items: list[OutboxItem], directory: Path) -> float:
    """next_batch(500, 1 MB) + ack until empty, records/s."""
    with Outbox.open(directory / "alone.db", max_bytes=10**10) as box:
        for i in range(0, len(items), 1000):
            box.put_many(items[i : i + 1000])
        start = time.perf_counter()
        drained = 0
        while batch := box.next_batch(max_records=500, max_bytes=1_000_000):
            drained += box.ack([r.seq for r in batch])
        elapsed = time.perf_counter() - start
    assert drained == len(items)
    return drained / elapsed


def memory_uplink_rate(items: list[OutboxItem], directory: Path) -> float:
    """`Uplink.drain` into MemoryHubTransport (encode + decode + store in a dict), records/s."""
    with Outbox.open(directory / "uplink.db", max_bytes=10**10) as box:
        for i in range(0, len(items), 1000):
            box.put_many(items[i : i + 1000])
        transport = MemoryHubTransport()
        uplink = Uplink(box, transport, backoff=Backoff(initial_s=0.5, max_s=30.0))
        start = time.perf_counter()
        asyncio.run(uplink.drain())
        elapsed = time.perf_counter() - start
    assert len(transport.stored) == len(items)
    return len(items) / elapsed


def hub_rows(hub: HubProcess) -> tuple[int, int]:
    """(telemetry rows, priority-9 rows) in the hub's SQLite."""
    path = hub.data_dir / "hub.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        total, high = db.execute(
            "SELECT count(*), coalesce(sum(priority = 9), 0) FROM telemetry"
        ).fetchone()
    return int(total), int(high)


def feed(agent: AgentProcess, records: list[dict[str, object]]) -> float:
    """POST the records as NDJSON to the agent's ingest; returns records/s."""
    port = int((agent.data_dir / "local-port").read_text())
    start = time.perf_counter()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        for i in range(0, len(records), CHUNK):
            body = b"\n".join(orjson.dumps(r) for r in records[i : i + CHUNK])
            response = http.post(
                "/ingest", content=body, headers={"content-type": "application/x-ndjson"}
            )
            if response.status_code != 202:
                raise RuntimeError(f"ingest answered {response.status_code}: {response.text}")
    return len(records) / (time.perf_counter() - start)


def drain_once(
    hub: HubProcess,
    agent: AgentProcess,
    metrics: AgentMetrics,
    records: list[dict[str, object]],
    down_s: float,
) -> dict[str, float]:
    high_total = sum(1 for r in records if r["anomaly"])
    base_rows, base_high = hub_rows(hub)
    hub.stop()
    stopped = time.monotonic()
    ingest_rate = feed(agent, records)
    wait_until(lambda: metrics.outbox_depth() >= len(records), 60, "the backlog in the outbox")
    # Stay down long enough for the uplink's backoff to reach its cap, as after
    # any real outage of more than a minute.
    time.sleep(max(0.0, down_s - (time.monotonic() - stopped)))
    hub.start()  # same port, same data directory
    t_up = time.time()
    samples: list[tuple[float, int]] = [(t_up, 0)]
    high_done = float("nan")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        rows, high = hub_rows(hub)
        now = time.time()
        samples.append((now, rows - base_rows))
        if high - base_high >= high_total and high_done != high_done:
            high_done = now
        if rows - base_rows >= len(records):
            break
        time.sleep(0.05)
    total = samples[-1][1]
    if total < len(records):
        raise RuntimeError(f"only {total} of {len(records)} records reached the hub")
    first = crossing_time(samples, 1)
    last = crossing_time(samples, len(records))
    t10, t90 = crossing_time(samples, 0.1 * total), crossing_time(samples, 0.9 * total)
    return {
        "ingest_rate": ingest_rate,
        "reconnect_s": first - t_up,
        "rate": total / (last - first),
        "slope": 0.8 * total / (t90 - t10),
        "high_done_s": high_done - first,
        "drain_s": last - first,
        "depth_after": float(metrics.outbox_depth()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="outage length to queue")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--down-s",
        type=float,
        default=40.0,
        help="keep the hub down this long (the backoff cap is 30 s)",
    )
    args = parser.parse_args()
    minutes = max(0.5, min(args.minutes, 30.0))
    repeats = max(1, min(args.repeats, 10))
    down_s = max(0.0, min(args.down_s, 300.0))
    records = outage_records(minutes, (time.time() // 600) * 600 - 3600)
    items = as_items(records)
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-drain-"))
    hub: HubProcess | None = None
    agent: AgentProcess | None = None
    runs: list[dict[str, float]] = []
    loads: list[str] = []
    alone: list[float] = []
    memory: list[float] = []
    try:
        hub = start_hub(root / "hub")
        agent = AgentProcess(root / "edge", hub, "edge", hub.create_claim())
        agent.start()
        agent.wait_enrolled(60)
        apply_manifest(hub, root / "drain.yaml", PIPELINE)
        wait_until(lambda: "backlog" in agent.log_text(), 30, "the pipeline running")
        metrics = AgentMetrics(agent)
        for rep in range(1, repeats + 1):
            loads.append(load_average())
            with tempfile.TemporaryDirectory(dir=root) as scratch:
                alone.append(outbox_rate(items, Path(scratch)))
            with tempfile.TemporaryDirectory(dir=root) as scratch:
                memory.append(memory_uplink_rate(items, Path(scratch)))
            runs.append(drain_once(hub, agent, metrics, records, down_s))
            print(
                f"rep {rep}: hub {runs[-1]['rate']:,.0f} rec/s, outbox alone "
                f"{alone[-1]:,.0f}, memory uplink {memory[-1]:,.0f} (load {loads[-1]})",
                file=sys.stderr,
            )
        metrics.close()
    finally:
        if agent is not None:
            agent.stop()
        if hub is not None:
            hub.stop()
        shutil.rmtree(root, ignore_errors=True)

    high = sum(1 for r in records if r["anomaly"])
    print(
        f"\n## Outbox drain after a {minutes:g}-minute outage: {len(records):,} records "
        f"(git {git_revision()})\n"
    )
    print(f"Machine: {machine()}  ")
    print(
        f"Command: `PYTHONPATH=. .venv/bin/python -m benchmarks.bench_drain --minutes {minutes:g} "
        f"--repeats {repeats} --down-s {down_s:g}`  "
    )
    print(
        f"Backlog: {len(records) - high:,} summaries (priority 5) + {high:,} anomalies "
        f"(priority 9), ~{sum(len(i.payload) for i in items) // len(items)} payload bytes "
        f"each; uplink batches of 500 records / 1 MB, one in flight; hub on SQLite; hub kept "
        f"down {down_s:g} s per repetition.\n"
    )
    rows = [
        (
            i,
            f"{r['reconnect_s']:.1f}",
            f"{r['rate']:,.0f}",
            f"{r['slope']:,.0f}",
            f"{r['drain_s']:.1f}",
            f"{r['high_done_s']:.1f}",
            f"{alone[i - 1]:,.0f}",
            f"{memory[i - 1]:,.0f}",
            f"{r['rate'] / memory[i - 1]:.2f}",
            f"{r['ingest_rate']:,.0f}",
            loads[i - 1],
        )
        for i, r in enumerate(runs, 1)
    ]
    print(
        table(
            [
                "rep",
                "hub up -> first row (s)",
                "into the hub (rec/s)",
                "10..90 % slope (rec/s)",
                "drain time (s)",
                "all priority 9 in after (s)",
                "baseline: outbox alone (rec/s)",
                "baseline: uplink + memory hub (rec/s)",
                "hub / memory uplink",
                "feeding ingest (rec/s)",
                "load avg 1/5/15",
            ],
            rows,
        )
    )
    med = median([r["rate"] for r in runs])
    print(
        f"\nMedian: {med:,.0f} records/s into the hub's store; a {minutes:g}-minute backlog "
        f"drains in {len(records) / med:.1f} s once the uplink reconnects "
        f"({len(records) / med / (minutes * 60):.1%} of the outage). Baselines: outbox alone "
        f"{median(alone):,.0f} rec/s, uplink over an in-memory hub {median(memory):,.0f} rec/s; "
        f"the real path reaches {med / median(memory):.2f}x the in-memory uplink.  "
    )
    reconnects = ", ".join(f"{r['reconnect_s']:.1f}" for r in runs)
    print(
        f"Reconnect after the hub came back: {reconnects} s (backoff: full jitter, "
        f"initial 0.5 s, cap 30 s)."
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
