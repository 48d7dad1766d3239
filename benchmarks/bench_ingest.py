"""Sustained MQTT ingest through the real agent: Mosquitto -> MqttBridge -> pipeline -> outbox.

Starts a real hub, a real Mosquitto and one real `fogline agent run` on
127.0.0.1, applies a pipeline (filter -> tumbling 1 s window keyed by device
over DEVICES devices -> uplink of the summaries) and has a separate
publisher process send COUNT QoS 0 messages as fast as paho can write them.
The agent's rate comes from its `records_in` counter, polled every 0.1 s:
the sustained rate is the slope between 10 % and 90 % of the messages
(interpolated), so start-up and the tail do not count.

Baseline, measured in the same run and interleaved with it: a bare paho
subscriber process (`loop_forever`, a counter in `on_message`) on another
topic, fed by the same publisher. Also reported: loss (records_in against
published, Mosquitto's `$SYS/.../dropped`, which counts what its
max_queued_messages refused), the agent's CPU per thread (asyncio thread
against the others, mostly paho's), and the pure engine rate
(`DataPlane.on_mqtt_batch` in-process on the same messages, no broker).

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_ingest --count 200000 --repeats 3

The helpers above `main` (broker, hub + agent, metrics, CPU per thread,
publisher and subscriber child processes) are shared by the other data-plane
benchmarks (bench_action_latency, bench_bandwidth, bench_drain).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks._common import git_revision, machine, median, table
from tests.support.broker import mosquitto_binary
from tests.support.processes import AgentProcess, HubProcess, free_port, start_hub, wait_until

DEVICES = 1000
GOAL_MSG_S = 20_000
PIPELINE = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: bench-ingest}
    spec:
      selector: {}
      pipelines:
        - name: ingest
          source: {mqtt: "sensors/{device}/{metric}"}
          steps:
            - {id: temps, filter: "metric == 'temp'"}
            - id: per-second
              window: {type: tumbling, size: 1s, time: processing, key: [device],
                       aggregate: {n: "count()", mean: "mean(value)", max: "max(value)"}}
          outputs:
            - {uplink: {stream: temp-1s, priority: 5, ttl: 1d}}
    """)

# -- shared helpers -------------------------------------------------------------------


@dataclass
class Mosquitto:
    """A Mosquitto child process with $SYS published every second (for its drop counter)."""

    port: int
    proc: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def sys_value(self, topic: str, timeout_s: float = 3.0) -> str | None:
        """The retained value of a `$SYS/...` topic, or None if the broker has none."""
        got: list[str] = []
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.on_connect = lambda c, *_: c.subscribe(topic, 0)
        client.on_message = lambda _c, _u, m: got.append(m.payload.decode())
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        try:
            deadline = time.monotonic() + timeout_s
            while not got and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            client.loop_stop()
            client.disconnect()
        return got[-1] if got else None

    def dropped(self) -> int:
        """Messages Mosquitto dropped because a client's queue was full."""
        value = self.sys_value("$SYS/broker/publish/messages/dropped")
        return int(value) if value and value.isdigit() else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_mosquitto(
    directory: Path, *, max_queued: int = 100_000, nodelay: bool = False
) -> Mosquitto:
    """Mosquitto on 127.0.0.1 like tests/support/broker.py, plus `sys_interval 1`
    (and `set_tcp_nodelay true` when asked: Mosquitto's default is Nagle on)."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"max_queued_messages {max_queued}\nsys_interval 1\n"
        + ("set_tcp_nodelay true\n" if nodelay else "")
    )
    log = open(directory / "mosquitto.log", "wb")  # noqa: SIM115 - the broker's lifetime
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=log)
    broker = Mosquitto(port, proc, directory)

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {(directory / 'mosquitto.log').read_text()}")
        try:
            probe = mqtt.Client(CallbackAPIVersion.VERSION2)
            probe.connect("127.0.0.1", port)
            probe.disconnect()
            return True
        except OSError:
            return False

    wait_until(listening, 10, "mosquitto listening")
    return broker


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def start_edge(
    root: Path,
    *,
    broker: Mosquitto | None,
    name: str = "edge",
    hub_url: str | None = None,
    report_interval_s: float | None = None,
) -> tuple[HubProcess, AgentProcess]:
    """A real hub and one enrolled agent (talking to `broker` when given).
    `report_interval_s`: the hub's --report-interval (the test hub's 1 s if None)."""
    interval = [] if report_interval_s is None else ["--report-interval", f"{report_interval_s:g}"]
    hub = start_hub(root / "hub", extra_args=interval)
    extra = ["--mqtt", broker.url] if broker is not None else []
    agent = AgentProcess(
        root / name, hub, name, hub.create_claim(), extra_args=extra, hub_url=hub_url
    )
    try:
        agent.start()
        agent.wait_enrolled(60)
    except BaseException:
        agent.stop()
        hub.stop()
        raise
    return hub, agent


def apply_manifest(hub: HubProcess, path: Path, text: str) -> None:
    path.write_text(text)
    hub.cli("apply", "-f", str(path))


def pipelines_of(manifest: str) -> list[dict[str, Any]]:
    """The pipeline specs of a one-document manifest, as the agent receives them."""
    return list(yaml.safe_load(manifest)["spec"]["pipelines"])


class AgentMetrics:
    """Reads the agent's Prometheus text from its local port."""

    _LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) ([-+0-9.eE]+|NaN|[+-]Inf)$")

    def __init__(self, agent: AgentProcess) -> None:
        port = int((agent.data_dir / "local-port").read_text())
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)

    def scrape(self) -> dict[str, float]:
        text = self._http.get("/metrics").text
        values: dict[str, float] = {}
        for line in text.splitlines():
            match = self._LINE.match(line)
            if match:
                values[match.group(1)] = float(match.group(2))
        return values

    def dataplane(self, kind: str) -> int:
        return int(self.scrape().get(f'fogline_agent_dataplane_total{{kind="{kind}"}}', 0))

    def outbox_depth(self) -> int:
        return int(self.scrape().get("fogline_agent_outbox_depth", 0))

    def close(self) -> None:
        self._http.close()


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of `pid`, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_split(pid: int, before: dict[int, float], after: dict[int, float]) -> tuple[float, float]:
    """(main thread, other threads) CPU seconds between two `thread_cpu_s` snapshots.

    In the agent the main thread runs asyncio (pipelines, outbox puts are
    in to_thread workers); the busiest other thread is paho's network loop.
    """
    main = after.get(pid, 0.0) - before.get(pid, 0.0)
    other = sum(v - before.get(t, 0.0) for t, v in after.items() if t != pid)
    return main, other


def crossing_time(samples: Sequence[tuple[float, int]], level: float) -> float:
    """The interpolated time at which a non-decreasing counter reached `level`."""
    previous = samples[0]
    for sample in samples:
        if sample[1] >= level:
            (t0, c0), (t1, c1) = previous, sample
            return t1 if c1 == c0 else t0 + (t1 - t0) * (level - c0) / (c1 - c0)
        previous = sample
    return float("nan")


def child(role: str, *args: str) -> list[str]:
    """The command line of a publisher or subscriber child of this module."""
    return [sys.executable, "-m", "benchmarks.bench_ingest", role, *args]


def sensor_payloads(count: int, devices: int, prefix: str) -> list[tuple[str, bytes]]:
    """Deterministic readings: device i % devices, a value that varies, a sequence number."""
    topics = [f"{prefix}/d{d:04d}/temp" for d in range(devices)]
    return [
        (topics[i % devices], b'{"value":%.2f,"seq":%d}' % (20.0 + (i * 7919 % 1000) / 100, i))
        for i in range(count)
    ]


def set_nodelay(client: mqtt.Client) -> None:
    """Disable Nagle on a connected paho client (paho leaves it on): a small
    publish then leaves at once instead of waiting for the previous one's ACK."""
    sock = client.socket()
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _connect_unthreaded(port: int, *, nodelay: bool = False) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port, keepalive=120)
    if nodelay:
        set_nodelay(client)
    deadline = time.monotonic() + 10
    while not client.is_connected():
        if time.monotonic() > deadline:
            raise RuntimeError("publisher did not connect")
        client.loop(0.05)
    return client


def run_publisher(port: int, prefix: str, count: int, devices: int, rate: float) -> None:
    """Child: publish `count` QoS 0 readings, paced at `rate`/s (0: as fast as paho writes).

    No network thread: with `loop_start` paho wakes its thread through a
    socket pair for every message; without it `publish` writes straight to
    the socket, which is the fastest paho publisher there is.
    """
    messages = sensor_payloads(count, devices, prefix)
    elapsed = publish_paced(port, messages, rate)
    print(json.dumps({"published": count, "seconds": elapsed}), flush=True)


def publish_paced(port: int, messages: Sequence[tuple[str, bytes]], rate: float) -> float:
    """Publish `messages` at QoS 0, paced at `rate`/s (0: flat out); returns the seconds taken."""
    client = _connect_unthreaded(port)
    publish = client.publish
    start = time.perf_counter()
    for i, (topic, payload) in enumerate(messages):
        if rate and i % 100 == 0:
            ahead = start + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        publish(topic, payload, 0)
    while client.want_write():
        client.loop_write()
        time.sleep(0.001)
    elapsed = time.perf_counter() - start
    client.disconnect()
    return elapsed


def run_subscriber(port: int, topic: str, count: int, timeout_s: float) -> None:
    """Child: count messages on `topic`; print the counter's timeline as JSON."""
    state = {"n": 0, "first": 0.0, "last": 0.0}
    marks: list[tuple[float, int]] = []
    step = max(1, count // 100)

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        n = state["n"] = state["n"] + 1
        if n % step == 0 or n == 1:
            marks.append((time.time(), n))
        state["last"] = time.time()

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.on_subscribe = lambda *_: print("ready", flush=True)
    client.on_connect = lambda c, *_: c.subscribe(topic, 0)
    client.connect("127.0.0.1", port, keepalive=120)
    deadline = time.monotonic() + timeout_s
    while state["n"] < count and time.monotonic() < deadline:
        client.loop(0.1)
        if state["n"] and time.time() - state["last"] > 5:
            break  # the rest is not coming
    client.disconnect()
    marks.append((state["last"], int(state["n"])))
    print(json.dumps({"received": state["n"], "marks": marks}), flush=True)


# -- this benchmark ---------------------------------------------------------------


@dataclass
class Run:
    rate: float  # sustained msg/s, 10 %..90 %
    received: int
    published: int
    publisher_s: float
    broker_dropped: int
    cpu_main: float = 0.0  # agent only: cores used by the asyncio thread
    cpu_other: float = 0.0  # agent only: cores used by other threads (paho)
    cpu_us_per_msg: float = 0.0  # agent only: CPU time per message, all threads


def sustained(samples: Sequence[tuple[float, int]], total: int) -> float:
    t10, t90 = crossing_time(samples, 0.1 * total), crossing_time(samples, 0.9 * total)
    return 0.8 * total / (t90 - t10) if t90 > t10 else float("nan")


def publish(broker: Mosquitto, prefix: str, count: int, rate: float) -> subprocess.Popen[str]:
    args = ["--port", str(broker.port), "--prefix", prefix, "--count", str(count)]
    args += ["--devices", str(DEVICES), "--rate", str(rate)]
    return subprocess.Popen(child("_publish", *args), stdout=subprocess.PIPE, text=True)


def finish_publisher(proc: subprocess.Popen[str]) -> float:
    out, _ = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"publisher exited {proc.returncode}")
    return float(json.loads(out.splitlines()[-1])["seconds"])


def run_baseline(broker: Mosquitto, count: int, rate: float) -> Run:
    dropped_before = broker.dropped()
    sub = subprocess.Popen(
        child(
            "_subscribe", "--port", str(broker.port), "--topic", "bare/+/+", "--count", str(count)
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sub.stdout is not None
        if sub.stdout.readline().strip() != "ready":
            raise RuntimeError("subscriber did not subscribe")
        pub = publish(broker, "bare", count, rate)
        publisher_s = finish_publisher(pub)
        out, _ = sub.communicate(timeout=300)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    result = json.loads(out.splitlines()[-1])
    marks = [(float(t), int(n)) for t, n in result["marks"]]
    return Run(
        sustained(marks, count),
        int(result["received"]),
        count,
        publisher_s,
        broker.dropped() - dropped_before,
    )


def run_agent(
    broker: Mosquitto, agent: AgentProcess, metrics: AgentMetrics, count: int, rate: float
) -> Run:
    assert agent.proc is not None
    pid = agent.proc.pid
    dropped_before = broker.dropped()
    base = metrics.dataplane("records_in")
    cpu_before, t_before = thread_cpu_s(pid), time.monotonic()
    pub = publish(broker, "sensors", count, rate)
    samples: list[tuple[float, int]] = [(time.time(), 0)]
    deadline = time.monotonic() + 300
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        n = metrics.dataplane("records_in") - base
        if n != samples[-1][1]:
            last_change = time.monotonic()
        samples.append((time.time(), n))
        if n >= count or (pub.poll() is not None and time.monotonic() - last_change > 5):
            break
    cpu_after, wall = thread_cpu_s(pid), time.monotonic() - t_before
    publisher_s = finish_publisher(pub)
    main_s, other_s = cpu_split(pid, cpu_before, cpu_after)
    received = samples[-1][1]
    return Run(
        sustained(samples, count),
        received,
        count,
        publisher_s,
        broker.dropped() - dropped_before,
        main_s / wall,
        other_s / wall,
        (main_s + other_s) / max(1, received) * 1e6,
    )


def engine_rate(count: int) -> float:
    """`DataPlane.on_mqtt_batch` alone, in this process, batches of MAX_BATCH, no I/O."""
    from fogline.agent.dataplane import DataPlane, MemoryPublisher, MemoryRecordSink
    from fogline.agent.dataplane._mqtt import MAX_BATCH

    clock = [1_700_000_000.0]
    engine = DataPlane(MemoryPublisher(), MemoryRecordSink(), None, clock=lambda: clock[0])  # type: ignore[arg-type]
    engine.configure(pipelines_of(PIPELINE))
    messages = sensor_payloads(count, DEVICES, "sensors")

    async def feed() -> float:
        start = time.perf_counter()
        for i in range(0, count, MAX_BATCH):
            clock[0] += MAX_BATCH / 20_000  # time passes as at 20k msg/s: windows close
            await engine.on_mqtt_batch(messages[i : i + MAX_BATCH])
        return count / (time.perf_counter() - start)

    return asyncio.run(feed())


def wait_pipeline_running(
    broker: Mosquitto, metrics: AgentMetrics, topic: str, payload: bytes = b'{"value": 0}'
) -> None:
    """Publish probes to `topic` until the agent counts one: subscribed and configured."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        base = metrics.dataplane("records_in")

        def counted() -> bool:
            client.publish(topic, payload, 0)
            time.sleep(0.2)
            return metrics.dataplane("records_in") > base

        wait_until(counted, 30, f"the agent to take messages on {topic}", interval_s=0.05)
    finally:
        client.loop_stop()
        client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=200_000, help="messages per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0, help="pace the publisher (0: flat out)")
    parser.add_argument(
        "--broker-queue", type=int, default=100_000, help="Mosquitto max_queued_messages"
    )
    args = parser.parse_args()
    count = max(1000, min(args.count, 1_000_000))
    repeats = max(1, min(args.repeats, 10))
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-ingest-"))
    broker = start_mosquitto(root / "broker", max_queued=args.broker_queue)
    hub: HubProcess | None = None
    agent: AgentProcess | None = None
    metrics: AgentMetrics | None = None
    try:
        hub, agent = start_edge(root, broker=broker)
        apply_manifest(hub, root / "ingest.yaml", PIPELINE)
        metrics = AgentMetrics(agent)
        wait_pipeline_running(broker, metrics, "sensors/probe/ping")
        loads: list[str] = []
        pairs: list[tuple[Run, Run]] = []
        for rep in range(repeats):
            loads.append(load_average())
            base = run_baseline(broker, count, args.rate)
            time.sleep(1)
            got = run_agent(broker, agent, metrics, count, args.rate)
            pairs.append((base, got))
            print(
                f"rep {rep + 1}: bare paho {base.rate:,.0f} msg/s, agent {got.rate:,.0f} msg/s "
                f"(load {loads[-1]})",
                file=sys.stderr,
            )
            time.sleep(2)  # let the last windows close and the outbox settle
        uplinked = metrics.dataplane("uplinked")
        depth = metrics.outbox_depth()
        engine = [engine_rate(min(count, 100_000)) for _ in range(repeats)]
    finally:
        if metrics is not None:
            metrics.close()
        if agent is not None:
            agent.stop()
        if hub is not None:
            hub.stop()
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)

    rows = []
    for i, (b, a) in enumerate(pairs, 1):
        rows.append(
            (
                i,
                f"{b.rate:,.0f}",
                f"{a.rate:,.0f}",
                f"{a.rate / b.rate:.2f}",
                f"{b.published - b.received:,} / {b.broker_dropped:,}",
                f"{a.published - a.received:,} / {a.broker_dropped:,}",
                f"{count / b.publisher_s:,.0f}",
                f"{a.cpu_main:.2f} + {a.cpu_other:.2f}",
                f"{a.cpu_us_per_msg:.1f}",
                loads[i - 1],
            )
        )
    med_base = median([b.rate for b, _ in pairs])
    med_agent = median([a.rate for _, a in pairs])
    lost = sum(a.published - a.received for _, a in pairs)
    cpu_us = median([a.cpu_us_per_msg for _, a in pairs])
    rate_note = f"paced at {args.rate:,.0f} msg/s" if args.rate else "flat out"
    print(
        f"\n## MQTT ingest through the agent, {count:,} QoS 0 messages x {repeats} "
        f"(git {git_revision()})\n"
    )
    print(f"Machine: {machine()}  ")
    print(
        f"Command: `PYTHONPATH=. .venv/bin/python -m benchmarks.bench_ingest --count {count} "
        f"--repeats {repeats} --rate {args.rate:g} --broker-queue {args.broker_queue}`  "
    )
    print(
        f"Pipeline: filter -> tumbling 1 s window by device ({DEVICES:,} devices) -> uplink; "
        f"publisher: one paho process, {rate_note}; Mosquitto max_queued_messages "
        f"{args.broker_queue:,}.\n"
    )
    print(
        table(
            [
                "rep",
                "bare paho sub (msg/s)",
                "agent (msg/s)",
                "agent / paho",
                "paho lost / broker dropped",
                "agent lost / broker dropped",
                "publisher (msg/s)",
                "agent CPU: asyncio + other threads (cores)",
                "agent CPU (µs/msg)",
                "load avg 1/5/15",
            ],
            rows,
        )
    )
    print(
        f"\nMedian sustained rate (10 %..90 % of the messages): bare paho {med_base:,.0f} msg/s, "
        f"agent {med_agent:,.0f} msg/s = {med_agent / med_base:.2f}x paho. "
        f"Goal >= {GOAL_MSG_S:,} msg/s with nothing lost: "
        f"{'MET' if med_agent >= GOAL_MSG_S and lost == 0 else 'NOT MET'} "
        f"(lost {lost:,} in all runs).  "
    )
    print(
        f"Pure engine (DataPlane.on_mqtt_batch in-process, no broker, no paho): "
        f"{median(engine):,.0f} msg/s median of {repeats} "
        f"({1e6 / median(engine):.1f} µs/msg), against {cpu_us:.1f} µs of agent CPU per message "
        f"on the real path (median): the rest is paho, the thread hand-off and the outbox.  "
    )
    print(f"After the runs: {uplinked:,} summaries uplinked, outbox depth {depth:,}.")


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["_publish", "_subscribe"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="sensors")
    parser.add_argument("--topic", default="")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--devices", type=int, default=DEVICES)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    if args.role == "_publish":
        run_publisher(args.port, args.prefix, args.count, args.devices, args.rate)
    else:
        run_subscriber(args.port, args.topic, args.count, args.timeout)


def dispatch(entry: Callable[[], None]) -> None:
    """Run a child role when asked for one, else the benchmark's `entry`."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if len(sys.argv) > 1 and sys.argv[1] in ("_publish", "_subscribe"):
        child_main(sys.argv[1:])
    else:
        entry()


if __name__ == "__main__":
    dispatch(main)
