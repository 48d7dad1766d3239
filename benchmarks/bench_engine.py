"""Throughput of the data-plane engine against a plain inline Python loop.

Workload (fixed seed, bounded size): EVENTS readings from 1,000 devices,
100,000 events per second of event time; 1 % are humidity readings the
filter drops. Measured in the same run, each REPEATS times, median reported:

  (a) baseline: one inline loop doing the same filter and a 1 s tumbling
      window mean per device (what the engine's overhead is measured against);
  (b) engine: filter -> tumbling window (1 s, mean per device, event time)
      -> zscore detect on the means, via Pipeline.process_many in batches;
  (c) the same engine pipeline fed one record at a time via Pipeline.process.

Run:  .venv/bin/python benchmarks/bench_engine.py [--events N] [--repeats R]
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from fogline.pipeline import build_pipeline, validate_pipeline

KEYS = 1_000
EVENTS_PER_S = 100_000
BATCH = 1_000
SEED = 20240601

PIPELINE: dict[str, Any] = {
    "name": "bench",
    "source": {"mqtt": "sensors/{device}/{metric}"},
    "timestamp": "ts",
    "steps": [
        {"id": "only-temp", "filter": "metric == 'temp' and value > -50"},
        {
            "id": "per-1s",
            "window": {
                "type": "tumbling",
                "size": "1s",
                "key": ["device"],
                "aggregate": {"mean": "mean(value)"},
            },
        },
        {
            "id": "spikes",
            "detect": {"type": "zscore", "field": "mean", "key": ["device"], "threshold": 4.0},
        },
    ],
    "outputs": [{"when": "anomaly", "uplink": {"stream": "anomalies", "priority": 9}}],
}


def make_events(count: int) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    devices = [f"dev-{i:04d}" for i in range(KEYS)]
    return [
        {
            "device": devices[rng.randrange(KEYS)],
            "metric": "humidity" if rng.random() < 0.01 else "temp",
            "value": rng.gauss(20.0, 2.0),
            "ts": 1_700_000_000.0 + i / EVENTS_PER_S,
        }
        for i in range(count)
    ]


def baseline(events: list[dict[str, Any]]) -> int:
    """Filter + 1 s tumbling window mean per device, written inline."""
    windows: dict[str, list[float]] = {}
    window_end = -1.0
    summaries = 0
    for event in events:
        value = event["value"]
        if event["metric"] != "temp" or not value > -50:
            continue
        t = event["ts"]
        if t >= window_end:
            summaries += sum(1 for acc in windows.values() if acc[1] / acc[0] is not None)
            windows = {}
            window_end = (t // 1.0 + 1) * 1.0
        acc = windows.get(event["device"])
        if acc is None:
            windows[event["device"]] = [1, value]
        else:
            acc[0] += 1
            acc[1] += value
    return summaries + len(windows)


def engine_batches(events: list[dict[str, Any]]) -> int:
    pipeline = build_pipeline(validate_pipeline(PIPELINE))
    emitted = 0
    for start in range(0, len(events), BATCH):
        batch = events[start : start + BATCH]
        emitted += len(pipeline.process_many(batch, now=batch[-1]["ts"]))
    emitted += len(pipeline.flush(events[-1]["ts"]))
    return pipeline.counters()["spikes"]["in"]


def engine_single(events: list[dict[str, Any]]) -> int:
    pipeline = build_pipeline(validate_pipeline(PIPELINE))
    process = pipeline.process
    for event in events:
        process(event, event["ts"])
    pipeline.flush(events[-1]["ts"])
    return pipeline.counters()["spikes"]["in"]


def measure(
    run: Callable[[list[dict[str, Any]]], int], events: list[dict[str, Any]], repeats: int
) -> tuple[float, int]:
    rates = []
    result = 0
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        result = run(events)
        rates.append(len(events) / (time.perf_counter() - started))
    return statistics.median(rates), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    events = make_events(min(args.events, 10_000_000))
    base_rate, base_windows = measure(baseline, events, args.repeats)
    batch_rate, batch_windows = measure(engine_batches, events, args.repeats)
    single_rate, single_windows = measure(engine_single, events, args.repeats)
    assert base_windows == batch_windows == single_windows, (
        base_windows,
        batch_windows,
        single_windows,
    )
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {len(events):,} events, "
        f"{KEYS:,} keys, median of {args.repeats} runs; {base_windows:,} window summaries\n"
    )
    print("| run | events/s | vs. inline loop |")
    print("| --- | ---: | ---: |")
    print(f"| (a) inline loop: filter + 1 s window mean | {base_rate:,.0f} | 1.00 |")
    print(
        f"| (b) engine, process_many({BATCH:,}): filter -> window -> zscore "
        f"| {batch_rate:,.0f} | {batch_rate / base_rate:.2f} |"
    )
    print(
        f"| (c) engine, process() per event | {single_rate:,.0f} | {single_rate / base_rate:.2f} |"
    )


if __name__ == "__main__":
    main()
