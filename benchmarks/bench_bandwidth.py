"""Bytes to the hub: windowed summaries + anomalies against forwarding every raw reading.

A factory: SENSORS sensors at HZ readings a second for SECONDS of simulated
time (1,000 x 10 Hz x 60 s = 600,000 readings), published to a real
Mosquitto as `factory/{sensor}/temp` with `{"value": v, "ts": t}`; 0.1 % of
the readings (chosen by a fixed seed) are anomalies far outside the normal
range. A real agent runs:

    detect (threshold, 0..100) -> window (tumbling 10 s, event time `ts`,
    per sensor: mean/min/max/count) -> uplink `summaries` (priority 5)
    and, tapped after the detector: `when: anomaly` -> uplink `anomalies` (priority 9)

By default the readings go out at HZ x SENSORS a second, i.e. in real time
(10,000 msg/s). `--rate 0` compresses time (flat out); windows run on the
readings' own `ts`, so their content does not depend on the pace.

What is counted:

* agent: the compressed batch bodies the uplink sent during the run, as the
  agent counts them (`fogline_agent_uplink_body_bytes_total`, by batch
  format: the agent starts in format 1 and switches to format 2 once the
  hub names it). Beside it, the bytes a counting TCP proxy between agent
  and hub saw (TLS, HTTP and the control plane: reports, long-polls),
  and that proxy's idle rate before the run.
* baseline: every raw reading as the agent would forward it (the record
  with its topic fields: value, ts, sensor, metric), in format 1 in full
  uplink batches (UPLINK_BATCH_RECORDS; the best case for compression).
* candidates, each on the same stored records: the hub stamps every row of
  one batch with one `received_at`, so the stored rows grouped by it are the
  batches; they are encoded again in format 1 (expires = created + ttl,
  which the hub does not keep), in format 2 with and without its fixed
  dictionary, with a dictionary trained per stream on the first third of
  the batches (its bytes counted once, as if shipped to the hub), and with
  the summaries held into longer batches. Stored times have the hub's
  microsecond precision; the agent's own are finer, so its format-2 bytes
  come out a little above the re-encoded ones.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_bandwidth --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import zstandard

from benchmarks._common import git_revision, machine, table
from benchmarks.bench_ingest import (
    AgentMetrics,
    apply_manifest,
    free_port,
    load_average,
    publish_paced,
    start_mosquitto,
    wait_pipeline_running,
)
from fogline.agent.dataplane._node import UPLINK_BATCH_RECORDS
from fogline.protocol import _columns as columns
from fogline.protocol import _columns_encode as columns_encode
from fogline.protocol import encode_batch, encode_columns
from tests.support.processes import AgentProcess, HubProcess, wait_until

SEED = 20240611
ANOMALY_RATE = 0.001
TTL_S = 86400.0
# The baseline batches raw readings as the agent's uplink would: as many per
# batch as it sends (2,000 since issue #18; 500 before, which zstd packed
# about 1 % worse).
BATCH_RECORDS = UPLINK_BATCH_RECORDS
GOAL_SAVING = 0.99
PIPELINE = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {{name: bench-factory}}
    spec:
      selector: {{}}
      pipelines:
        - name: factory
          source: {{mqtt: "factory/{{sensor}}/{{metric}}"}}
          timestamp: ts
          steps:
            - {{id: temps, filter: "metric == 'temp'"}}
            - id: range
              detect: {{type: threshold, field: value, min: 0, max: 100}}
            - id: per-10s
              window: {{type: tumbling, size: {window}s, key: [sensor], idleTimeout: 2s,
                       aggregate: {{mean: "mean(value)", min: "min(value)", max: "max(value)",
                                   count: "count()"}}}}
          outputs:
            - {{from: range, when: "anomaly", uplink: {{stream: anomalies, priority: 9, ttl: 1d}}}}
            - {{from: per-10s, uplink: {{stream: summaries, priority: 5, ttl: 1d}}}}
    """)


@dataclass(frozen=True)
class Reading:
    sensor: str
    ts: float
    value: float
    is_anomaly: bool

    @property
    def topic(self) -> str:
        return f"factory/{self.sensor}/temp"

    @property
    def payload(self) -> bytes:
        return b'{"value":%.2f,"ts":%.1f}' % (self.value, self.ts)


def factory_readings(sensors: int, hz: int, seconds: int, t0: float) -> Iterator[Reading]:
    """The same readings for the same arguments: time-major, sensor-minor."""
    total = sensors * hz * seconds
    rng = random.Random(SEED)
    anomalies = set(rng.sample(range(total), round(total * ANOMALY_RATE)))
    names = [f"s{i:04d}" for i in range(sensors)]
    i = 0
    for tick in range(hz * seconds):
        ts = t0 + tick / hz
        for name in names:
            if i in anomalies:
                value = 500.0 + rng.random() * 100
            else:
                value = min(90.0, max(10.0, rng.gauss(50.0, 5.0)))
            yield Reading(name, round(ts, 1), value, i in anomalies)
            i += 1


def run_factory_publisher(
    port: int, sensors: int, hz: int, seconds: int, t0: float, rate: float
) -> None:
    """Child: publish the factory's readings, QoS 0, paced at `rate`/s (0: flat out)."""
    messages = [(r.topic, r.payload) for r in factory_readings(sensors, hz, seconds, t0)]
    elapsed = publish_paced(port, messages, rate)
    print(json.dumps({"published": len(messages), "seconds": elapsed}), flush=True)


class CountingProxy:
    """A TCP forwarder on 127.0.0.1 counting the bytes each way (agent -> hub is `up`)."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.up = 0
        self.down = 0
        self._target = target_port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._serve(),), daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.get_running_loop().create_task(self._connect(reader, writer))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        server = await asyncio.start_server(accept, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer, True),
            self._pipe(up_reader, writer, False),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if up:
                    self.up += len(data)
                else:
                    self.down += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


@dataclass(frozen=True)
class Row:
    """What `encode_batch` reads, rebuilt from a stored telemetry row."""

    seq: int
    stream: str
    priority: int
    created: float
    expires: float
    payload: bytes


def stored_rows(hub: HubProcess) -> list[tuple[str, Row]]:
    """(received_at, row) of every stored record, in seq order."""
    with sqlite3.connect(f"file:{hub.data_dir / 'hub.db'}?mode=ro", uri=True) as db:
        raw = db.execute(
            "SELECT received_at, seq, stream, priority, created_at, payload FROM telemetry "
            "ORDER BY seq"
        ).fetchall()
    out = []
    for received, seq, stream, priority, created_at, payload in raw:
        created = _epoch(created_at)
        text = orjson.dumps(orjson.loads(payload))  # as the agent queued it (orjson, compact)
        out.append((str(received), Row(seq, stream, priority, created, created + TTL_S, text)))
    return out


def _epoch(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    stamp = dt.datetime.fromisoformat(str(value))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def actual_batch_bytes(rows: list[tuple[str, Row]]) -> tuple[int, int]:
    """(compressed bytes, batches) of the uplink's batches, grouped by `received_at`."""
    batches: dict[str, list[Row]] = {}
    for received, row in rows:
        batches.setdefault(received, []).append(row)
    return sum(len(encode_batch(b)) for b in batches.values()), len(batches)


def summaries_of(rows: list[tuple[str, Row]]) -> Iterator[Row]:
    return (r for _, r in rows if r.stream == "summaries")


def batch_split(rows: list[tuple[str, Row]]) -> tuple[int, int]:
    """(batches, compressed bytes) of the uplink's batches that held anomalies only."""
    batches: dict[str, list[Row]] = {}
    for received, row in rows:
        batches.setdefault(received, []).append(row)
    lone = [b for b in batches.values() if all(r.stream == "anomalies" for r in b)]
    return len(lone), sum(len(encode_batch(b)) for b in lone)


def full_batch_bytes(rows: list[tuple[str, Row]], *, digits: int | None = None) -> int:
    """The same records in full batches per stream; summaries' floats rounded to
    `digits` when given (what a `map: {mean: "round(mean, 2)"}` step would send)."""
    by_stream: dict[str, list[Row]] = {}
    for _, row in rows:
        if digits is not None and row.stream == "summaries":
            record = orjson.loads(row.payload)
            for name in ("mean", "min", "max"):
                if isinstance(record.get(name), float):
                    record[name] = round(record[name], digits)
            row = Row(
                row.seq, row.stream, row.priority, row.created, row.expires, orjson.dumps(record)
            )
        by_stream.setdefault(row.stream, []).append(row)
    return sum(
        len(encode_batch(part[i : i + BATCH_RECORDS]))
        for part in by_stream.values()
        for i in range(0, len(part), BATCH_RECORDS)
    )


def sent_body_bytes(metrics: AgentMetrics) -> dict[str, int]:
    """The agent's count of compressed batch bytes it sent, by batch format."""
    values = metrics.scrape()
    return {
        version: int(values.get(f'fogline_agent_uplink_body_bytes_total{{format="{version}"}}', 0))
        for version in ("1", "2")
    }


def by_batch(rows: list[tuple[str, Row]]) -> list[list[Row]]:
    """The uplink's batches (rows sharing a `received_at`), in the order they arrived."""
    batches: dict[str, list[Row]] = {}
    for received, row in sorted(rows, key=lambda item: item[0]):
        batches.setdefault(received, []).append(row)
    return list(batches.values())


def _lifted_text(records: list[Row]) -> bytes:
    """Format 2's text before compression (what `encode_columns` compresses)."""
    groups: dict[str, list[Row]] = {}
    for r in records:
        groups.setdefault(r.stream, []).append(r)
    body: dict[str, object] = {
        "v": columns.COLUMNS_VERSION,
        "groups": [columns_encode._encode_group(s, g) for s, g in groups.items()],
    }
    tail = bytearray()
    columns_encode._lift(body, tail)
    return orjson.dumps(body) + (b"\x00" + tail if tail else b"")


def _compress(text: bytes, dictionary: zstandard.ZstdCompressionDict | None) -> int:
    params = zstandard.ZstdCompressionParameters.from_level(
        columns.COLUMNS_ZSTD_LEVEL,
        source_size=len(text),
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_checksum=0,
        write_dict_id=0,
        write_content_size=0,
    )
    return len(
        zstandard.ZstdCompressor(compression_params=params, dict_data=dictionary).compress(text)
    )


def columns_bytes(batches: list[list[Row]]) -> tuple[int, int]:
    """(format 2 with its fixed dictionary, format 2 without any dictionary)."""
    return (
        sum(len(encode_columns(b)) for b in batches),
        sum(_compress(_lifted_text(b), None) for b in batches),
    )


def trained_dictionary_bytes(batches: list[list[Row]], size: int = 4096) -> tuple[int, int, str]:
    """Format 2 with a zstd dictionary trained per stream on the first third of the
    batches and shared with the hub: (bytes of every batch, one frame per stream
    and batch, plus each dictionary compressed once; of which dictionaries;
    streams that had too little to train on and kept the fixed dictionary)."""
    first = batches[: max(1, len(batches) // 3)]
    samples: dict[str, list[bytes]] = {}
    for batch in first:
        for stream in {r.stream for r in batch}:
            text = _lifted_text([r for r in batch if r.stream == stream])
            # Chunks of 1 KiB, so that a few large batches still make samples.
            samples.setdefault(stream, []).extend(
                text[i : i + 1024] for i in range(0, len(text), 1024)
            )
    trained: dict[str, zstandard.ZstdCompressionDict] = {}
    untrained: list[str] = []
    dictionary_cost = 0
    for stream, texts in samples.items():
        try:
            trained[stream] = zstandard.train_dictionary(size, texts, level=19)
        except zstandard.ZstdError:
            untrained.append(stream)
            continue
        dictionary_cost += len(
            zstandard.ZstdCompressor(level=19).compress(trained[stream].as_bytes())
        )
    fixed = columns.zstd_dictionary()
    total = dictionary_cost
    for batch in batches:
        for stream in {r.stream for r in batch}:
            text = _lifted_text([r for r in batch if r.stream == stream])
            total += _compress(text, trained.get(stream, fixed))
    return total, dictionary_cost, ", ".join(sorted(untrained)) or "none"


def longer_summary_batches(batches: list[list[Row]], size: int) -> int:
    """Format 2 with the anomalies batched as sent and the summaries held into
    batches of `size` (what batching summaries longer would send)."""
    anomalies = [
        [r for r in b if r.stream != "summaries"]
        for b in batches
        if any(r.stream != "summaries" for r in b)
    ]
    summaries = [r for b in batches for r in b if r.stream == "summaries"]
    held = [summaries[i : i + size] for i in range(0, len(summaries), size)]
    return sum(len(encode_columns(b)) for b in anomalies + held)


def raw_forward_bytes(sensors: int, hz: int, seconds: int, t0: float) -> tuple[int, int, int]:
    """(compressed bytes, batches, uncompressed payload bytes) of forwarding every reading."""
    created = time.time()
    total = batches = payload_bytes = 0
    batch: list[Row] = []
    for seq, r in enumerate(factory_readings(sensors, hz, seconds, t0), 1):
        record = {"value": round(r.value, 2), "ts": r.ts, "sensor": r.sensor, "metric": "temp"}
        payload = orjson.dumps(record)
        payload_bytes += len(payload)
        batch.append(Row(seq, "raw", 5, created + seq / 10_000, created + TTL_S, payload))
        if len(batch) == BATCH_RECORDS:
            total += len(encode_batch(batch))
            batches += 1
            batch = []
    if batch:
        total += len(encode_batch(batch))
        batches += 1
    return total, batches, payload_bytes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--hz", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=60, help="simulated time")
    parser.add_argument("--window", type=int, default=10, help="window size in seconds")
    parser.add_argument(
        "--rate",
        type=float,
        default=-1,
        help="msg/s to publish at; default sensors*hz (real time); 0: flat out",
    )
    parser.add_argument("--save-rows", type=Path, help="write the stored records here (JSON)")
    args = parser.parse_args()
    sensors = max(1, min(args.sensors, 10_000))
    hz = max(1, min(args.hz, 100))
    seconds = max(args.window, min(args.seconds, 600))
    rate = float(sensors * hz) if args.rate < 0 else args.rate
    readings = list(factory_readings(sensors, hz, seconds, 0.0))
    if len(readings) > 2_000_000:
        raise SystemExit("at most 2,000,000 readings")
    # The simulated span lies in the past: event time ahead of the node's clock
    # is refused (maxClockSkew), behind it is fine.
    t0 = (time.time() // 600) * 600 - 1200
    anomalies_sent = sum(r.is_anomaly for r in readings)
    expected_summaries = sensors * (seconds // args.window)

    root = Path(tempfile.mkdtemp(prefix="fogline-bench-bandwidth-"))
    broker = start_mosquitto(root / "broker", max_queued=1_000_000)
    hub: HubProcess | None = None
    agent: AgentProcess | None = None
    proxy: CountingProxy | None = None
    try:
        from tests.support.processes import start_hub

        hub = start_hub(root / "hub")
        proxy = CountingProxy(hub.port)
        proxy.start()
        agent = AgentProcess(
            root / "edge",
            hub,
            "edge",
            hub.create_claim(),
            extra_args=["--mqtt", broker.url],
            hub_url=f"https://127.0.0.1:{proxy.port}",
        )
        agent.start()
        agent.wait_enrolled(60)
        apply_manifest(hub, root / "factory.yaml", PIPELINE.format(window=args.window))
        metrics = AgentMetrics(agent)
        wait_pipeline_running(broker, metrics, "factory/probe/ping", b'{"value":0,"ts":0}')
        time.sleep(2)
        idle_up0, idle_t0 = proxy.up, time.monotonic()
        time.sleep(10)
        idle_rate = (proxy.up - idle_up0) / (time.monotonic() - idle_t0)
        load = load_average()
        up0, down0, t_start = proxy.up, proxy.down, time.monotonic()
        records_in0 = metrics.dataplane("records_in")
        sent0 = sent_body_bytes(metrics)
        pub = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_bandwidth",
                "_factory",
                str(broker.port),
                str(sensors),
                str(hz),
                str(seconds),
                repr(t0),
                repr(rate),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = pub.communicate(timeout=900)
        if pub.returncode != 0:
            raise RuntimeError(f"publisher exited {pub.returncode}")
        publisher_s = float(json.loads(out.splitlines()[-1])["seconds"])

        def delivered() -> bool:
            with sqlite3.connect(f"file:{hub.data_dir / 'hub.db'}?mode=ro", uri=True) as db:
                n = db.execute("SELECT count(*) FROM telemetry").fetchone()[0]
            return n >= expected_summaries + anomalies_sent and metrics.outbox_depth() == 0

        settled = True
        try:
            wait_until(delivered, 120, "every summary and anomaly at the hub", interval_s=0.5)
        except AssertionError:
            settled = False
        time.sleep(1)
        elapsed = time.monotonic() - t_start
        wire_up, wire_down = proxy.up - up0, proxy.down - down0
        records_in = metrics.dataplane("records_in") - records_in0
        sent1 = sent_body_bytes(metrics)
        sent = {version: sent1[version] - sent0[version] for version in sent1}
        broker_dropped = broker.dropped()
        metrics.close()
        rows = stored_rows(hub)
    finally:
        if agent is not None:
            agent.stop()
        if hub is not None:
            hub.stop()
        if proxy is not None:
            proxy.stop()
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)

    if args.save_rows is not None:
        args.save_rows.write_bytes(
            orjson.dumps(
                [
                    [
                        received,
                        r.seq,
                        r.stream,
                        r.priority,
                        r.created,
                        r.expires,
                        r.payload.decode(),
                    ]
                    for received, r in rows
                ]
            )
        )
    format1_bytes, agent_batches = actual_batch_bytes(rows)
    agent_bytes = sent["1"] + sent["2"]
    batches = by_batch(rows)
    columns_fixed, columns_plain = columns_bytes(batches)
    trained_bytes, trained_cost, untrained = trained_dictionary_bytes(batches)
    longer = {size: longer_summary_batches(batches, size) for size in (1000, 2000)}
    raw_bytes, raw_batches, raw_payload = raw_forward_bytes(sensors, hz, seconds, t0)
    summaries = [r for _, r in rows if r.stream == "summaries"]
    stored_anomalies = [r for _, r in rows if r.stream == "anomalies"]
    counted = sum(orjson.loads(r.payload).get("count", 0) for r in summaries)
    sent_keys = {
        (r.sensor, r.ts) for r in factory_readings(sensors, hz, seconds, t0) if r.is_anomaly
    }
    got_keys = {(p["sensor"], p["ts"]) for p in (orjson.loads(r.payload) for r in stored_anomalies)}
    anomaly_priorities = {r.priority for r in stored_anomalies}
    saving = 1 - agent_bytes / raw_bytes
    lone_batches, lone_bytes = batch_split(rows)
    lone_columns = sum(
        len(encode_columns(b)) for b in batches if all(r.stream == "anomalies" for r in b)
    )
    full_bytes = full_batch_bytes(rows)
    rounded_bytes = full_batch_bytes(rows, digits=2)
    sample = next((r.payload.decode() for r in summaries_of(rows)), "")
    wire_net = wire_up - idle_rate * elapsed
    pace = (
        "real time" if rate == sensors * hz else ("flat out" if rate == 0 else f"{rate:,.0f} msg/s")
    )

    print(
        f"\n## Bandwidth to the hub: {sensors:,} sensors x {hz} Hz x {seconds} s "
        f"(git {git_revision()})\n"
    )
    print(f"Machine: {machine()}  ")
    print(
        f"Command: `PYTHONPATH=. .venv/bin/python -m benchmarks.bench_bandwidth "
        f"--sensors {sensors} --hz {hz} --seconds {seconds} --window {args.window} "
        f"--rate {rate:g}`  "
    )
    print(f"Load average (1/5/15 min) at the start: {load}  ")
    print(
        f"Published {len(readings):,} readings in {publisher_s:.1f} s ({pace}, "
        f"{len(readings) / publisher_s:,.0f} msg/s); agent records_in {records_in:,}; "
        f"Mosquitto dropped {broker_dropped:,}; {anomalies_sent:,} anomalies "
        f"({ANOMALY_RATE:.1%}).\n"
    )
    print(
        table(
            ["what goes to the hub", "records", "batches", "zstd bytes", "bytes/reading"],
            [
                (
                    f"every raw reading (baseline: format 1, batches of {BATCH_RECORDS:,})",
                    f"{len(readings):,}",
                    f"{raw_batches:,}",
                    f"{raw_bytes:,}",
                    f"{raw_bytes / len(readings):.2f}",
                ),
                (
                    f"agent: summaries + anomalies as sent (the agent's count: "
                    f"{sent['2']:,} in format 2, {sent['1']:,} in format 1)",
                    f"{len(rows):,}",
                    f"{agent_batches:,}",
                    f"{agent_bytes:,}",
                    f"{agent_bytes / len(readings):.4f}",
                ),
            ],
        )
    )
    print(
        f"\nSaving: **{saving:.2%}** fewer bytes than forwarding every reading "
        f"({raw_bytes / max(1, agent_bytes):,.0f}x less); goal >= {GOAL_SAVING:.0%}: "
        f"{'MET' if saving >= GOAL_SAVING else 'NOT MET'}.  "
    )
    print(
        f"\nEach candidate on the same stored records, encoded again ({agent_batches:,} "
        f"batches as the uplink sent them, {lone_batches:,} of them anomalies only):\n"
    )

    def row(name: str, size: int) -> tuple[str, str, str]:
        return (name, f"{size:,}", f"{1 - size / raw_bytes:.2%}")

    print(
        table(
            ["variant", "zstd bytes", "saving vs raw"],
            [
                row(
                    f"format 1 (JSON records), as batched; anomaly-only batches {lone_bytes:,}",
                    format1_bytes,
                ),
                row(
                    f"format 1, the same records in full batches of {BATCH_RECORDS:,} per stream",
                    full_bytes,
                ),
                row(
                    "format 1, full batches, summary mean/min/max rounded to 2 decimals "
                    "(a loss the pipeline did not ask for)",
                    rounded_bytes,
                ),
                row("format 2 (columns per stream), no dictionary", columns_plain),
                row(
                    f"format 2 with its fixed dictionary (what the agent sends); "
                    f"anomaly-only batches {lone_columns:,}",
                    columns_fixed,
                ),
                row(
                    f"format 2 with a dictionary trained per stream on the first third "
                    f"of the batches, shared with the hub (its {trained_cost:,} bytes counted "
                    f"once; kept the fixed one: {untrained})",
                    trained_bytes,
                ),
                *(
                    row(
                        f"format 2, summaries held into batches of {size:,} (anomalies as sent)",
                        longer[size],
                    )
                    for size in (1000, 2000)
                ),
            ],
        )
    )
    print(f"\nA summary as stored: `{sample}`\n")
    print(
        f"Raw readings uncompressed: {raw_payload:,} payload bytes "
        f"(zstd in batches of {BATCH_RECORDS:,} takes them to {raw_bytes / raw_payload:.1%}).  "
    )
    print(
        f"On the wire (counting proxy, agent -> hub, TLS + HTTP + control plane): "
        f"{wire_up:,} bytes up, {wire_down:,} down in {elapsed:.0f} s; the idle control "
        f"plane before the run was {idle_rate:,.0f} B/s, so about {max(0, wire_net):,.0f} "
        f"bytes up were the data.  "
    )
    print(
        f"Summaries: {len(summaries):,} stored (expected {expected_summaries:,}), their "
        f"counts add up to {counted:,} of {len(readings):,} readings.  "
    )
    print(
        f"Anomalies: {anomalies_sent:,} sent, {len(stored_anomalies):,} at the hub, "
        f"{len(sent_keys - got_keys):,} missing, priorities {sorted(anomaly_priorities)}; "
        f"every anomaly delivered: "
        f"{'YES' if sent_keys <= got_keys and settled else 'NO'}."
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if len(sys.argv) > 1 and sys.argv[1] == "_factory":
        port, sensors, hz, seconds, t0, rate = sys.argv[2:8]
        run_factory_publisher(
            int(port), int(sensors), int(hz), int(seconds), float(t0), float(rate)
        )
    else:
        main()
