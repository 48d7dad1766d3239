"""Agent soak in fast time: RSS and open file descriptors stay flat.

A real hub, a real agent with three modules (the bench_node modules: small
Python HTTP servers) and, when Mosquitto is installed, a pipeline fed by an
MQTT publisher. Time is compressed: the hub tells the agent to report every
`--report-interval` (0.1 s) instead of the default 10 s, 100 times faster,
and the drift check runs every `--drift-interval` (1 s, not 30 s). At 0.1 s
the 8,640 reports of a day at the default interval take 14.4 minutes; each
report waits for the hub's answer, so on a loaded 2-core machine the agent
made about 7 a second, and the default 25-minute run is about 29 hours of
reports (the table says how many it made). On top, on a bounded schedule:

    module restart   SIGKILL one module process (round robin); the
                     supervisor restarts it (`restart: always`)
    config change    `fogline apply` of the deployment with a new config for
                     every module; wait until the hub shows the node in sync
    hub outage       stop the hub, wait `--outage-s`, start it on the same
                     port and data; wait until the agent reaches it again
    data plane       `--publish-rate` MQTT readings/s into a 1 s window
                     pipeline whose summaries go up the uplink (its outbox
                     fills during outages and drains after)

Every `--sample-s` a thread reads the agent's VmRSS, its open descriptors
(/proc/PID/fd, counted by kind), its threads, and its module processes' RSS
(summed, reported apart: modules restart, so theirs is no trend). After the
warm-up, a Theil-Sen line (scipy.stats.theilslopes, 95 % interval) through
each series gives its slope per hour of the run; a series is flat when the
interval contains zero or the slope is within the noise bound
(`--rss-bound-mb-h`, `--fd-bound-h`). It prints an ASCII plot of both and a
markdown section for BENCHMARKS.md.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_soak --minutes 25
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks._common import git_revision, machine, table
from benchmarks.bench_node import MODULES, push
from tests.support.processes import AgentProcess, HubProcess, free_port, start_hub, wait_until

DEFAULT_REPORT_S = 10.0  # the hub's default report interval, the unit of "fast time"
MAX_MINUTES = 24 * 60
HOUR_S = 3600.0


# -- what is sampled --------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    t_s: float  # since the start of the soak
    rss_mb: float
    fds: int
    fd_kinds: dict[str, int]
    threads: int
    modules_rss_mb: float
    modules: int


def _status(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def rss_mb(pid: int) -> float:
    return int(_status(pid)["VmRSS"].split()[0]) / 1024


def fd_kinds(pid: int) -> Counter[str]:
    """Open descriptors of `pid` by kind: socket, pipe, anon_inode:[eventfd],
    /dev/..., or file (a path); a descriptor closed while read is skipped."""
    kinds: Counter[str] = Counter()
    directory = Path(f"/proc/{pid}/fd")
    for entry in directory.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith(("socket:", "pipe:")):
            kinds[target.split(":", 1)[0]] += 1
        elif target.startswith(("anon_inode:", "/dev/")):
            kinds[target] += 1
        else:
            kinds["file"] += 1
    return kinds


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, theirs, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(") ", 1)[1].split()[1])
    found: list[int] = []
    frontier = [pid]
    for _depth in range(16):  # module trees are shallow; bounded all the same
        frontier = [child for child, parent in parents.items() if parent in frontier]
        if not frontier:
            break
        found += frontier
    return found


def module_pids(agent_pid: int) -> dict[str, int]:
    """The agent's module processes by module name (FOGLINE_MODULE in their
    environment; the supervisor sets it)."""
    modules: dict[str, int] = {}
    for pid in descendants(agent_pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"FOGLINE_MODULE="):
                modules.setdefault(item.split(b"=", 1)[1].decode(), pid)
    return modules


def sample(agent_pid: int, t0: float) -> Sample:
    modules_rss = 0.0
    modules = module_pids(agent_pid)
    for pid in modules.values():
        with contextlib.suppress(OSError, KeyError):  # restarted between listing and read
            modules_rss += rss_mb(pid)
    kinds = fd_kinds(agent_pid)
    return Sample(
        t_s=time.monotonic() - t0,
        rss_mb=rss_mb(agent_pid),
        fds=sum(kinds.values()),
        fd_kinds=dict(kinds),
        threads=int(_status(agent_pid)["Threads"]),
        modules_rss_mb=modules_rss,
        modules=len(modules),
    )


# -- the verdict ------------------------------------------------------------------------


@dataclass(frozen=True)
class Slope:
    """A Theil-Sen slope per hour with its 95 % interval, and the verdict."""

    per_h: float
    low_per_h: float
    high_per_h: float
    points: int
    bound_per_h: float

    @property
    def flat(self) -> bool:
        """Flat: zero is inside the interval, or the slope is within the
        noise bound (a real but negligible drift)."""
        return self.low_per_h <= 0 <= self.high_per_h or abs(self.per_h) <= self.bound_per_h


def fit_slope(ts_s: Sequence[float], values: Sequence[float], bound_per_h: float) -> Slope:
    """The Theil-Sen line through (t, value); needs three points at least."""
    from scipy.stats import theilslopes

    if len(ts_s) < 3 or len(ts_s) != len(values):
        raise ValueError(f"fit_slope: expected 3 or more (t, value) pairs, got {len(ts_s)}")
    # theilslopes is O(n²): thin to at most 400 evenly spaced points.
    step = max(1, math.ceil(len(ts_s) / 400))
    xs = [t / HOUR_S for t in ts_s[::step]]
    ys = list(values[::step])
    result = theilslopes(ys, xs, alpha=0.95)
    return Slope(
        per_h=float(result.slope),
        low_per_h=float(result.low_slope),
        high_per_h=float(result.high_slope),
        points=len(xs),
        bound_per_h=bound_per_h,
    )


def ascii_plot(
    ts_s: Sequence[float], values: Sequence[float], *, width: int = 64, height: int = 8
) -> list[str]:
    """A scatter plot in plain characters: `height` rows of `width` columns
    (each column the mean of its samples), the value axis on the left, the
    time axis (minutes) below."""
    if not values:
        return ["(no samples)"]
    span = max(ts_s[-1] - ts_s[0], 1e-9)
    columns: list[list[float]] = [[] for _ in range(width)]
    for t, v in zip(ts_s, values, strict=True):
        columns[min(width - 1, int((t - ts_s[0]) / span * width))].append(v)
    means = [statistics.fmean(c) if c else None for c in columns]
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    rows = [[" "] * width for _ in range(height)]
    for x, mean in enumerate(means):
        if mean is not None:
            y = round((mean - low) / (high - low) * (height - 1))
            rows[height - 1 - y][x] = "*"
    label_width = max(len(f"{high:.1f}"), len(f"{low:.1f}"))
    lines = []
    for i, row in enumerate(rows):
        label = f"{high:.1f}" if i == 0 else f"{low:.1f}" if i == height - 1 else ""
        lines.append(f"{label:>{label_width}} |{''.join(row)}")
    end = f"{ts_s[-1] / 60:.1f} min"
    lines.append(" " * label_width + " +" + "-" * width)
    lines.append(" " * label_width + f"  {ts_s[0] / 60:.1f} min" + end.rjust(width - 6))
    return lines


# -- the soak ---------------------------------------------------------------------------


def deployment(revision: int, *, pipeline: bool, modules: Sequence[str] = MODULES) -> str:
    modules = "\n".join(
        f"    - {{name: {m}, release: {m}@1.0.0, config: {{soak: {revision}, who: {m}}}}}"
        for m in modules
    )
    text = (
        textwrap.dedent("""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {name: soak}
        spec:
          selector: {}
          modules:
        """)
        + modules
        + "\n"
    )
    if pipeline:
        text += textwrap.indent(
            textwrap.dedent("""\
                pipelines:
                  - name: soak
                    source: {mqtt: "sensors/{device}/{metric}"}
                    steps:
                      - id: per-second
                        window: {type: tumbling, size: 1s, time: processing, key: [device],
                                 aggregate: {n: "count()", mean: "mean(value)"}}
                    outputs:
                      - {uplink: {stream: soak-1s, priority: 5, ttl: 1d}}
                """),
            "  ",
        )
    return text


def in_sync_with(hub: HubProcess, name: str, modules: Sequence[str]) -> bool:
    device = hub.device(name)
    reported = ((device.get("reported") or {}).get("modules") or {}).get("modules") or {}
    return (device.get("sync") or {}).get("status") == "in-sync" and all(
        (reported.get(m) or {}).get("state") == "healthy" for m in modules
    )


@dataclass
class Events:
    restarts: int = 0
    restart_failures: int = 0
    applies: int = 0
    apply_s: list[float] = field(default_factory=list)
    apply_failures: int = 0
    outages: int = 0
    outage_recovery_s: list[float] = field(default_factory=list)
    outage_failures: int = 0
    published: int = 0
    errors: list[str] = field(default_factory=list)


class Sampler(threading.Thread):
    """Samples the agent every `every_s` until stopped or `deadline` passes."""

    def __init__(self, agent_pid: int, t0: float, every_s: float, deadline: float) -> None:
        super().__init__(daemon=True, name="soak-sampler")
        self.agent_pid, self.t0, self.every_s, self.deadline = agent_pid, t0, every_s, deadline
        self.samples: list[Sample] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                self.samples.append(sample(self.agent_pid, self.t0))
            except (OSError, KeyError):
                return  # the agent is gone: the main loop notices and fails
            self.stop.wait(self.every_s)


class Publisher(threading.Thread):
    """`rate` MQTT readings/s from 20 devices until stopped or `deadline`."""

    def __init__(self, port: int, rate: float, deadline: float) -> None:
        super().__init__(daemon=True, name="soak-publisher")
        self.port, self.rate, self.deadline = port, rate, deadline
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        try:
            start = time.monotonic()
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                due = int((time.monotonic() - start) * self.rate)
                for _ in range(min(due - self.sent, 1000)):
                    client.publish(f"sensors/dev{self.sent % 20}/temp", f"{20 + self.sent % 7}")
                    self.sent += 1
                self.stop.wait(0.05)
        finally:
            client.loop_stop()
            client.disconnect()


def restart_module(agent: AgentProcess, name: str, events: Events) -> None:
    assert agent.proc is not None
    before = module_pids(agent.proc.pid).get(name)
    if before is None:
        events.restart_failures += 1
        events.errors.append(f"module {name}: no process to kill")
        return
    os.kill(before, signal.SIGKILL)
    try:
        wait_until(
            lambda: module_pids(agent.proc.pid).get(name) not in (None, before),  # type: ignore[union-attr]
            30,
            f"module {name} restarted",
            interval_s=0.1,
        )
        events.restarts += 1
    except AssertionError as exc:
        events.restart_failures += 1
        events.errors.append(str(exc)[:200])


def change_config(
    hub: HubProcess,
    manifest: Path,
    revision: int,
    pipeline: bool,
    modules: Sequence[str],
    events: Events,
) -> None:
    manifest.write_text(deployment(revision, pipeline=pipeline, modules=modules))
    started = time.monotonic()
    try:
        hub.cli("apply", "-f", str(manifest))
        wait_until(
            lambda: in_sync_with(hub, "soak", modules), 60, f"revision {revision} in sync", 0.2
        )
        events.applies += 1
        events.apply_s.append(time.monotonic() - started)
    except (AssertionError, OSError, httpx.HTTPError) as exc:
        events.apply_failures += 1
        events.errors.append(str(exc)[:200])


def reports_ok(agent: AgentProcess) -> float:
    """The agent's count of reports the hub took; -1 when its endpoint does
    not answer (a loaded machine), so a wait on it just goes on."""
    try:
        return agent.metric("fogline_agent_reports_total", result="ok")
    except (httpx.HTTPError, OSError, ValueError):
        return -1.0


def outage(hub: HubProcess, agent: AgentProcess, down_s: float, events: Events) -> None:
    # Read before the stop: nothing succeeds while the hub is down, and the
    # agent may report in the instant after the start. (+1: "no answer", -1, is falsy.)
    ok_before = wait_until(lambda: reports_ok(agent) + 1, 30, "the agent's metrics") - 1
    hub.stop()
    time.sleep(down_s)  # the outage itself: a fixed time down, not a wait for a condition
    hub.start()
    started = time.monotonic()
    try:
        wait_until(
            lambda: reports_ok(agent) > ok_before,
            120,
            "the agent reporting to the restarted hub",
            0.1,
        )
        events.outages += 1
        events.outage_recovery_s.append(time.monotonic() - started)
    except AssertionError as exc:
        events.outage_failures += 1
        events.errors.append(str(exc)[:200])


@dataclass(frozen=True)
class Schedule:
    minutes: float
    sample_s: float
    warmup_s: float
    restart_every_s: float
    apply_every_s: float
    outage_every_s: float
    outage_s: float


def soak(
    root: Path,
    schedule: Schedule,
    *,
    report_interval_s: float,
    drift_interval_s: float,
    publish_rate: float,
    modules: Sequence[str] = MODULES,
    log: Callable[[str], None] = print,
) -> tuple[list[Sample], Events, dict[str, float]]:
    """Run the soak; returns the samples, what happened, and the agent's counters."""
    from tests.support.broker import Broker, mosquitto_binary, start_broker

    events = Events()
    broker: Broker | None = None
    if publish_rate > 0:
        try:
            mosquitto_binary()
            broker = start_broker(root / "mqtt")
        except BaseException as exc:  # pytest.fail's exception when missing
            log(f"no data plane: {exc}")
    hub = start_hub(root / "hub", extra_args=["--report-interval", str(report_interval_s)])
    agent: AgentProcess | None = None
    publisher: Publisher | None = None
    sampler: Sampler | None = None
    counters: dict[str, float] = {}
    try:
        keys = root / "keys"
        hub.cli(
            "apply", "-f", "-", input_text=hub.cli("keys", "create", "k", "--dir", str(keys)).stdout
        )
        ports = {m: free_port() for m in modules}
        for module in modules:
            push(hub, root, keys / "k.key", module, "1.0.0", ports[module])
        extra = ["--drift-interval", str(drift_interval_s)]
        if broker is not None:
            extra += ["--mqtt", broker.url]
        agent = AgentProcess(root / "node", hub, "soak", hub.create_claim(), extra_args=extra)
        agent.start()
        agent.wait_enrolled(60)
        manifest = root / "soak.yaml"
        revision = 0
        change_config(hub, manifest, revision, broker is not None, modules, events)
        if events.apply_failures:
            raise AssertionError(f"the first apply failed: {events.errors}")
        assert agent.proc is not None
        t0 = time.monotonic()
        duration_s = schedule.minutes * 60
        deadline = t0 + duration_s
        sampler = Sampler(agent.proc.pid, t0, schedule.sample_s, deadline + 5)
        sampler.start()
        if broker is not None:
            publisher = Publisher(broker.port, publish_rate, deadline + 5)
            publisher.start()
        due = {
            "restart": t0 + schedule.restart_every_s,
            "apply": t0 + schedule.apply_every_s,
            "outage": t0 + schedule.outage_every_s,
        }
        every = {
            "restart": schedule.restart_every_s,
            "apply": schedule.apply_every_s,
            "outage": schedule.outage_every_s,
        }
        # Bounded twice: by the deadline, and by a count no schedule can exceed.
        for _step in range(int(duration_s / min(every.values())) * 3 + 10):
            now = time.monotonic()
            if now >= deadline:
                break
            if agent.proc.poll() is not None:
                raise AssertionError(f"the agent exited: {agent.log_text()}")
            kind = min(due, key=due.__getitem__)
            if due[kind] > now:
                time.sleep(min(due[kind], deadline) - now)  # idle until the next event
                continue
            if kind == "restart":
                restart_module(agent, modules[events.restarts % len(modules)], events)
            elif kind == "apply":
                revision += 1
                change_config(hub, manifest, revision, broker is not None, modules, events)
            else:
                outage(hub, agent, schedule.outage_s, events)
            due[kind] = max(due[kind] + every[kind], time.monotonic())
            log(
                f"[{(time.monotonic() - t0) / 60:5.1f} min] {kind}: restarts {events.restarts}, "
                f"applies {events.applies}, outages {events.outages}, "
                f"RSS {sampler.samples[-1].rss_mb if sampler.samples else float('nan'):.1f} MB"
            )
        sampler.stop.set()
        sampler.join(10)
        for result in ("ok", "unreachable", "refused"):
            try:
                counters[f"reports {result}"] = agent.metric(
                    "fogline_agent_reports_total", result=result
                )
            except (AssertionError, httpx.HTTPError):
                counters[f"reports {result}"] = 0.0
        counters["run s"] = time.monotonic() - t0
    finally:
        if sampler is not None:
            sampler.stop.set()
        if publisher is not None:
            publisher.stop.set()
            publisher.join(10)
            events.published = publisher.sent
        if agent is not None:
            agent.stop()
        hub.stop()
        if broker is not None:
            broker.stop()
    return (sampler.samples if sampler else []), events, counters


# -- the report -------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdicts:
    rss: Slope
    fds: Slope
    threads: Slope

    @property
    def flat(self) -> bool:
        return self.rss.flat and self.fds.flat and self.threads.flat


def judge(
    samples: Sequence[Sample], warmup_s: float, rss_bound: float, fd_bound: float
) -> Verdicts:
    after = [s for s in samples if s.t_s >= warmup_s]
    ts = [s.t_s for s in after]
    return Verdicts(
        rss=fit_slope(ts, [s.rss_mb for s in after], rss_bound),
        fds=fit_slope(ts, [float(s.fds) for s in after], fd_bound),
        threads=fit_slope(ts, [float(s.threads) for s in after], fd_bound),
    )


def _slope_text(slope: Slope, unit: str) -> str:
    return (
        f"{slope.per_h:+.2f} {unit}/h (95 % {slope.low_per_h:+.2f} to {slope.high_per_h:+.2f}; "
        f"bound ±{slope.bound_per_h:g}): {'flat' if slope.flat else 'GROWING' if slope.per_h > 0 else 'falling'}"
    )


def report(
    args: argparse.Namespace,
    samples: Sequence[Sample],
    events: Events,
    counters: dict[str, float],
    verdicts: Verdicts,
    load: str,
    command: str,
) -> str:
    ts = [s.t_s for s in samples]
    after = [s for s in samples if s.t_s >= args.warmup_s] or list(samples)
    first, last = after[0], after[-1]
    run_s = counters.get("run s", ts[-1] if ts else 0.0)
    ok = counters.get("reports ok", 0.0)
    compression = DEFAULT_REPORT_S / args.report_interval
    device_h = ok * DEFAULT_REPORT_S / HOUR_S
    kinds_first = ", ".join(f"{k} {v}" for k, v in sorted(first.fd_kinds.items()))
    kinds_last = ", ".join(f"{k} {v}" for k, v in sorted(last.fd_kinds.items()))
    per_device_h = lambda n: f"{n} ({n / device_h:.2f} per device-hour)" if device_h else str(n)  # noqa: E731
    rows = [
        (
            "run",
            f"{run_s / 60:.1f} min, {len(samples)} samples every {args.sample_s:g} s, warm-up {args.warmup_s:g} s",
        ),
        (
            "fast time",
            f"reports every {args.report_interval:g} s ({compression:g}x the default {DEFAULT_REPORT_S:g} s); "
            f"drift check every {args.drift_interval:g} s",
        ),
        (
            "reports sent",
            f"{ok:,.0f} ok, {counters.get('reports unreachable', 0):,.0f} unreachable, "
            f"{counters.get('reports refused', 0):,.0f} refused = "
            f"{device_h:.1f} h of reports at {DEFAULT_REPORT_S:g} s",
        ),
        (
            "module restarts (SIGKILL)",
            f"{per_device_h(events.restarts)}, {events.restart_failures} not restarted in 30 s",
        ),
        (
            "config changes (`fogline apply`)",
            f"{per_device_h(events.applies)}, {events.apply_failures} not in sync in 60 s; "
            f"apply → in sync median {statistics.median(events.apply_s) if events.apply_s else float('nan'):.2f} s",
        ),
        (
            f"hub outages ({args.outage_s:g} s down)",
            f"{per_device_h(events.outages)}, {events.outage_failures} not recovered in 120 s; "
            f"hub up → agent reports median "
            f"{statistics.median(events.outage_recovery_s) if events.outage_recovery_s else float('nan'):.2f} s",
        ),
        (
            "MQTT readings published",
            f"{events.published:,} at {args.publish_rate:g}/s"
            if events.published
            else "none (no data plane)",
        ),
        ("agent RSS after warm-up: first → last", f"{first.rss_mb:.1f} → {last.rss_mb:.1f} MB"),
        ("agent RSS slope", _slope_text(verdicts.rss, "MB")),
        (
            "agent open fds: first → last",
            f"{first.fds} → {last.fds} ({kinds_first} → {kinds_last})",
        ),
        ("agent open fds slope", _slope_text(verdicts.fds, "fds")),
        (
            "agent threads: first → last",
            f"{first.threads} → {last.threads}; slope {_slope_text(verdicts.threads, 'threads')}",
        ),
        (
            "module processes' RSS (sum; restarted, no trend judged)",
            f"{first.modules_rss_mb:.1f} → {last.modules_rss_mb:.1f} MB, "
            f"{first.modules} → {last.modules} processes",
        ),
        ("verdict", "flat" if verdicts.flat else "NOT flat"),
    ]
    plot_rss = ascii_plot(ts, [s.rss_mb for s in samples])
    plot_fds = ascii_plot(ts, [float(s.fds) for s in samples])
    lines = [
        f"\n## Agent soak, fast time (git {args.revision})\n",
        f"Machine: {machine()}; load {load} (1-minute average, before→after)  ",
        f"Command: `{command}`\n",
        table(["measure", "value"], rows),
        "",
        "```",
        "agent RSS (MB) over the run",
        *plot_rss,
        "",
        "agent open file descriptors over the run",
        *plot_fds,
        "```",
    ]
    if events.errors:
        lines += ["", "Failures (first 5): " + "; ".join(events.errors[:5])]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, default=25.0, help=f"run length, at most {MAX_MINUTES}"
    )
    parser.add_argument("--report-interval", type=float, default=0.1)
    parser.add_argument("--drift-interval", type=float, default=1.0)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument(
        "--warmup-s", type=float, default=None, help="default: 20 %% of the run, at most 300 s"
    )
    parser.add_argument("--restart-every-s", type=float, default=20.0)
    parser.add_argument("--apply-every-s", type=float, default=60.0)
    parser.add_argument("--outage-every-s", type=float, default=120.0)
    parser.add_argument("--outage-s", type=float, default=5.0)
    parser.add_argument(
        "--publish-rate", type=float, default=100.0, help="MQTT readings/s (0: none)"
    )
    parser.add_argument("--rss-bound-mb-h", type=float, default=1.0)
    parser.add_argument("--fd-bound-h", type=float, default=1.0)
    parser.add_argument("--dump", type=Path, help="write every sample here (JSON lines)")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes: expected 0 < N <= {MAX_MINUTES}, got {args.minutes:g}")
    for name in (
        "report_interval",
        "drift_interval",
        "sample_s",
        "restart_every_s",
        "apply_every_s",
        "outage_every_s",
    ):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')}: expected > 0")
    if args.drift_interval < 0.5:
        parser.error("--drift-interval: the agent takes 0.5 s at least")
    if args.warmup_s is None:
        args.warmup_s = min(300.0, args.minutes * 60 * 0.2)
    schedule = Schedule(
        minutes=args.minutes,
        sample_s=args.sample_s,
        warmup_s=args.warmup_s,
        restart_every_s=args.restart_every_s,
        apply_every_s=args.apply_every_s,
        outage_every_s=args.outage_every_s,
        outage_s=args.outage_s,
    )
    args.revision = git_revision()  # at the start: the tree may move during a long run
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-soak-"))
    load0 = os.getloadavg()[0]
    try:
        samples, events, counters = soak(
            root,
            schedule,
            report_interval_s=args.report_interval,
            drift_interval_s=args.drift_interval,
            publish_rate=args.publish_rate,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.dump is not None:
        args.dump.write_text("".join(json.dumps(dataclasses.asdict(s)) + "\n" for s in samples))
    load = f"{load0:.1f}→{os.getloadavg()[0]:.1f}"
    verdicts = judge(samples, args.warmup_s, args.rss_bound_mb_h, args.fd_bound_h)
    command = "PYTHONPATH=. .venv/bin/python -m benchmarks.bench_soak " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    print(report(args, samples, events, counters, verdicts, load, command.strip()))
    return 0 if verdicts.flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
