"""CPU per record to encode and decode batch format 2 (columns), against format 1.

Batches of 2,000 records (the uplink's largest), fixed seeds:

  summaries  the factory scenario's (bench_bandwidth): 1,000 sensors, two
             10 s windows, mean/min/max/count per sensor, priority 5
  anomalies  readings far out of range, one every few ms, priority 9
  mixed      1,990 summaries and 10 anomalies (a factory batch)
  tricky     the codec tests' payloads (random bits, subnormals, -0.0,
             huge ints, strings, nested values, two key orders)

Each figure is process CPU time (time.process_time) per record, the median
of --repeats repetitions, every repetition printed. Format 1
(encode_batch/decode_batch) is measured in the same process, so its figures
are the baseline under the same load. With --base SRC (another checkout's
`src`, e.g. from `git archive integ10b src`), each repetition runs twice, in
a fresh interpreter per tree, alternating, so both trees see the same load;
the machine's load average is printed with every repetition.

Run:  PYTHONPATH=src .venv/bin/python -m benchmarks.bench_columns [--repeats 5] [--base DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.support.exact import tricky_payload

BATCH = 2_000
LIMIT = 1 << 26
T0 = 1_796_598_690.0


class _Record:
    """What the encoders read (an OutboxRecord's fields), without the agent package."""

    __slots__ = ("created", "expires", "payload", "priority", "seq", "stream")

    def __init__(self, seq: int, stream: str, priority: int, created: float, payload: Any) -> None:
        self.seq, self.stream, self.priority = seq, stream, priority
        self.created, self.expires = created, created + 86_400.0
        self.payload = orjson.dumps(payload)


def _summary(rng: random.Random, sensor: int, window_start: float) -> dict[str, Any]:
    readings = [round(min(90.0, max(10.0, rng.gauss(50.0, 5.0))), 2) for _ in range(100)]
    return {
        "sensor": f"s{sensor:04d}",
        "window_start": window_start,
        "window_end": window_start + 10.0,
        "count": 100,
        "max": max(readings),
        "mean": sum(readings) / len(readings),
        "min": min(readings),
    }


def _anomaly(rng: random.Random, at: float) -> dict[str, Any]:
    value = 500.0 + rng.random() * 100
    return {
        "value": round(value, 2),
        "ts": round(at, 1),
        "sensor": f"s{rng.randrange(1000):04d}",
        "metric": "temp",
        "anomaly": True,
        "score": value / 100,
    }


def batches() -> dict[str, list[_Record]]:
    rng = random.Random(18)
    summaries = [
        _Record(
            1 + w * 1000 + s,
            "summaries",
            5,
            T0 + 10 * w + 0.000123 * s + 10.5,
            _summary(rng, s, T0 + 10 * w),
        )
        for w in range(BATCH // 1000)
        for s in range(1000)
    ]
    anomalies = [
        _Record(10_000 + k, "anomalies", 9, T0 + k * 0.0137, _anomaly(rng, T0 + k * 0.0137))
        for k in range(BATCH)
    ]
    mixed = summaries[: BATCH - 10] + anomalies[:10]
    tricky = [
        _Record(20_000 + i, "tricky", 5, T0 + i * 0.123456789, tricky_payload(rng, i))
        for i in range(BATCH)
    ]
    return {"summaries": summaries, "anomalies": anomalies, "mixed": mixed, "tricky": tricky}


def _cpu_per_record(run: Callable[[], object], records: int, rounds: int) -> float:
    start = time.process_time()
    for _ in range(rounds):
        run()
    return (time.process_time() - start) / rounds / records * 1e6


def measure(rounds: int) -> dict[str, dict[str, float]]:
    """µs of CPU per record for each batch: encode/decode, formats 1 and 2."""
    from fogline.protocol import decode_batch, decode_columns, encode_batch, encode_columns

    out: dict[str, dict[str, float]] = {}
    for name, records in batches().items():
        v1, v2 = encode_batch(records), encode_columns(records)
        n = len(records)
        out[name] = {
            "encode1": _cpu_per_record(lambda r=records: encode_batch(r), n, rounds),
            "encode2": _cpu_per_record(lambda r=records: encode_columns(r), n, rounds),
            "decode1": _cpu_per_record(
                lambda v=v1: decode_batch(v, max_decompressed=LIMIT), n, rounds
            ),
            "decode2": _cpu_per_record(
                lambda v=v2: decode_columns(v, max_decompressed=LIMIT), n, rounds
            ),
            "bytes1": len(v1),
            "bytes2": len(v2),
        }
    return out


def _worker(src: str, rounds: int) -> dict[str, dict[str, float]]:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{root}"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_columns", "--worker", "--rounds", str(rounds)],
        cwd=root,
        env=env,
        capture_output=True,
        check=True,
        timeout=300,
    )
    result: dict[str, dict[str, float]] = orjson.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="batches timed per repetition")
    parser.add_argument("--base", help="another tree's src directory, measured alternately")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.stdout.buffer.write(orjson.dumps(measure(args.rounds)))
        return
    src = str(Path(__file__).resolve().parent.parent / "src")
    trees = {"this": src, **({"base": args.base} if args.base else {})}
    runs: dict[str, list[dict[str, dict[str, float]]]] = {t: [] for t in trees}
    for rep in range(args.repeats):
        for tree, path in trees.items():
            load = os.getloadavg()[0]
            result = _worker(path, args.rounds)
            runs[tree].append(result)
            cells = "  ".join(
                f"{b}: dec {r['decode2']:.1f}/{r['decode1']:.1f} enc {r['encode2']:.1f}/"
                f"{r['encode1']:.1f}"
                for b, r in result.items()
            )
            print(f"rep {rep + 1} {tree:4} load {load:4.1f}  µs/record (2/1)  {cells}", flush=True)
    print(f"\nmedian of {args.repeats}, µs of CPU per record (batches of {BATCH})")
    print(
        "| tree | batch | decode 2 | decode 1 | ratio | encode 2 | encode 1 | ratio | bytes 2 / 1 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for tree, results in runs.items():
        for name in results[0]:
            med = {
                k: statistics.median(r[name][k] for r in results)
                for k in ("decode1", "decode2", "encode1", "encode2")
            }
            sizes = results[0][name]
            print(
                f"| {tree} | {name} | {med['decode2']:.1f} | {med['decode1']:.1f} | "
                f"{med['decode2'] / med['decode1']:.2f}x | {med['encode2']:.1f} | "
                f"{med['encode1']:.1f} | {med['encode2'] / med['encode1']:.2f}x | "
                f"{sizes['bytes2']:,.0f} / {sizes['bytes1']:,.0f} |"
            )


if __name__ == "__main__":
    main()
