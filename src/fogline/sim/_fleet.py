"""A virtual fleet: many `VirtualNode`s in one asyncio loop, or spread over processes."""

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any, Final, Protocol

from fogline._log import configure_logging

from ._errors import SimError
from ._node import FleetConfig, NodeStats, VirtualNode
from ._transport import Traffic

MAX_DEVICES: Final = 100_000
_JOIN_TIMEOUT_S: Final = 60.0


@dataclass(slots=True)
class FleetStats:
    """Totals over a fleet's nodes."""

    nodes: int = 0
    enrolled: int = 0
    reports_ok: int = 0
    reports_failed: int = 0
    crashes: int = 0
    powerlosses: int = 0
    renewals: int = 0
    tuf_pinned: int = 0  # nodes that pinned a TUF root at enrollment
    tuf_verified: int = 0  # nodes whose updater verified TUF metadata
    applied: dict[str, int] = field(default_factory=dict)  # revision -> nodes
    errors: list[str] = field(default_factory=list)  # the first few refusals
    traffic: Traffic = field(default_factory=Traffic)

    def add_node(self, stats: NodeStats) -> None:
        self.nodes += 1
        self.enrolled += stats.enrolled
        self.reports_ok += stats.reports_ok
        self.reports_failed += stats.reports_failed
        self.crashes += stats.crashes
        self.powerlosses += stats.powerlosses
        self.renewals += stats.renewals
        self.tuf_pinned += stats.tuf_root is not None
        self.tuf_verified += stats.tuf_verified
        if stats.applied_revision is not None:
            key = stats.applied_revision
            self.applied[key] = self.applied.get(key, 0) + 1
        if stats.error is not None and len(self.errors) < 10:
            self.errors.append(stats.error)
        self.traffic.add(stats.traffic)

    def merge(self, other: "FleetStats") -> None:
        counters = (
            "nodes",
            "enrolled",
            "reports_ok",
            "reports_failed",
            "crashes",
            "powerlosses",
            "renewals",
            "tuf_pinned",
            "tuf_verified",
        )
        for name in counters:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for revision, count in other.applied.items():
            self.applied[revision] = self.applied.get(revision, 0) + count
        self.errors = (self.errors + other.errors)[:10]
        self.traffic.add(other.traffic)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["traffic"]["http_bytes"] = self.traffic.http_bytes
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FleetStats":
        traffic = dict(data["traffic"])
        traffic.pop("http_bytes", None)
        return cls(**{**data, "traffic": Traffic(**traffic)})


def check_config(config: FleetConfig, processes: int = 1) -> None:
    """Raises:
    SimError: a device or process count out of range.
    """
    if not 1 <= config.devices <= MAX_DEVICES:
        raise SimError(f"--devices: expected 1 to {MAX_DEVICES}, got {config.devices}")
    if not 1 <= processes <= max(1, config.devices):
        raise SimError(f"--processes: expected 1 to --devices ({config.devices}), got {processes}")


class VirtualFleet:
    """Nodes `indices` (default: all) of a fleet, run in the current event loop."""

    def __init__(self, config: FleetConfig, indices: Sequence[int] | None = None) -> None:
        check_config(config)
        chosen = range(config.devices) if indices is None else indices
        self.config = config
        self.nodes = [VirtualNode(config, i) for i in chosen]

    def stats(self) -> FleetStats:
        total = FleetStats()
        for node in self.nodes:
            node.observe_tuf()
            total.add_node(node.stats)
        return total

    async def run(
        self, *, duration_s: float | None = None, stop: asyncio.Event | None = None
    ) -> FleetStats:
        """Run every node until `duration_s` passed or `stop` is set; return the totals."""
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(node.run(), name=node.name) for node in self.nodes]
            try:
                async with asyncio.timeout(duration_s):
                    await (stop or asyncio.Event()).wait()
            except TimeoutError:
                pass
            finally:
                # Cancel until every node has stopped: a node caught between a
                # simulated crash and the stop must not keep the fleet alive.
                pending = set(tasks)
                for _ in range(STOP_ATTEMPTS):
                    for task in pending:
                        task.cancel()
                    _done, pending = await asyncio.wait(pending, timeout=STOP_WAIT_S)
                    if not pending:
                        break
        return self.stats()


STOP_ATTEMPTS = 10
STOP_WAIT_S = 2.0


def _quiet_agent_logs() -> None:
    # Thousands of nodes retrying a flapping link would drown the terminal;
    # the fleet's totals tell the story instead.
    logging.getLogger("fogline.agent").setLevel(logging.CRITICAL)


# Signals that stop a fleet: Ctrl-C (SIGINT, sent by a terminal to the whole
# job, workers included) and SIGTERM (`kill`, a service manager).
STOP_SIGNALS: Final = frozenset({signal.SIGINT, signal.SIGTERM})


def _worker(
    config: FleetConfig,
    indices: list[int],
    duration_s: float | None,
    stop_event: ProcessEvent,
    results: "multiprocessing.Queue[dict[str, Any]]",
) -> None:
    # Warnings and errors in the format the fleet's command chose: a spawned
    # worker inherits the environment (FOGLINE_LOG_FORMAT), not the parent's
    # logging set-up.
    configure_logging("warning")
    _quiet_agent_logs()

    async def main() -> FleetStats:
        fleet = VirtualFleet(config, indices)
        stop = asyncio.Event()
        # The worker started with the stop signals blocked (FleetProcesses.start):
        # a Ctrl-C during its imports would have killed it without a report.
        # From here on they stop the nodes, which then report their totals.
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        parent = multiprocessing.parent_process()

        async def watch() -> None:
            # A multiprocessing Event cannot be awaited: wait for it in a thread.
            # A parent that died (SIGKILL) cannot ask: then stop by ourselves.
            while not await asyncio.to_thread(stop_event.wait, 0.5):
                if parent is not None and not parent.is_alive():
                    break
            stop.set()

        watcher = asyncio.create_task(watch())
        try:
            return await fleet.run(duration_s=duration_s, stop=stop)
        finally:
            watcher.cancel()

    try:
        stats = asyncio.run(main())
    except KeyboardInterrupt:
        stats = FleetStats()  # the parent gets what the other workers saw
    results.put(stats.to_dict())


class FleetProcesses:
    """A fleet spread over `processes` worker processes, each one asyncio loop."""

    def __init__(
        self, config: FleetConfig, processes: int, duration_s: float | None = None
    ) -> None:
        check_config(config, processes)
        self.config, self.duration_s = config, duration_s
        context = multiprocessing.get_context("spawn")  # no inherited loop or threads
        self._stop = context.Event()
        self._results: multiprocessing.Queue[dict[str, Any]] = context.Queue()
        shares = [list(range(config.devices))[i::processes] for i in range(processes)]
        self._procs = [
            context.Process(
                target=_worker,
                args=(config, share, duration_s, self._stop, self._results),
                name=f"fogline-sim-{i}",
                daemon=True,
            )
            for i, share in enumerate(shares)
        ]

    @property
    def processes(self) -> int:
        return len(self._procs)

    def start(self) -> None:
        # Each worker inherits this thread's signal mask through fork and exec:
        # blocked, a stop signal waits in the worker until its loop can handle it.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            for proc in self._procs:
                proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the workers to end by themselves (after `duration_s`); True once they have."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for proc in self._procs:
            proc.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(proc.is_alive() for proc in self._procs)

    def stop(self) -> FleetStats:
        """Stop every worker and return the fleet's totals.

        Raises:
            SimError: a worker died without reporting.
        """
        self._stop.set()
        total, received = FleetStats(), 0
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        while received < len(self._procs) and time.monotonic() < deadline:
            try:
                data = self._results.get(timeout=0.5)
            except queue.Empty:
                if any(proc.is_alive() for proc in self._procs):
                    continue
                try:  # every worker has exited: anything written is in the pipe now
                    data = self._results.get(timeout=1.0)
                except queue.Empty:
                    break
            total.merge(FleetStats.from_dict(data))
            received += 1
        missing = len(self._procs) - received
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if missing:
            raise SimError(f"{missing} of {len(self._procs)} fleet workers died without a report")
        return total


def boot_spread_s(devices: int) -> float:
    """How long a fleet takes to boot: 50 nodes a second, at most a minute.

    A fleet booting at once is a thundering herd of enrollments (a CSR
    signature and a database write each) that a real fleet never produces.
    """
    return min(60.0, devices * 0.02)


def default_processes(devices: int) -> int:
    return max(1, min(os.cpu_count() or 1, devices))


class FleetThread:
    """A fleet in a thread of this process, one asyncio loop: nothing to spawn.

    Starts in milliseconds where a worker process takes a second or two to
    import; for small fleets and rehearsals with `--processes 1`.
    """

    processes: Final = 1

    def __init__(self, config: FleetConfig, duration_s: float | None = None) -> None:
        check_config(config)
        self._fleet = VirtualFleet(config)
        self._duration_s = duration_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        # Set when the loop has ended. Waited on instead of Thread.join(): a
        # join interrupted by KeyboardInterrupt marks the thread stopped while
        # it runs on (CPython 3.11, bpo-45274), and later joins return at once.
        self._done = threading.Event()
        self._result: FleetStats | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fogline-sim", daemon=True)

    def _main(self) -> None:
        async def main() -> FleetStats:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            return await self._fleet.run(duration_s=self._duration_s, stop=self._stop)

        try:
            self._result = asyncio.run(main())
        except BaseException as exc:  # handed to stop(), which raises it as a SimError
            self._error = exc
        finally:
            self._ready.set()
            self._done.set()

    def start(self) -> None:
        _quiet_agent_logs()
        self._thread.start()
        self._ready.wait()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the fleet to end by itself (after `duration_s`); True once it has."""
        return self._done.wait(timeout_s)

    def stop(self) -> FleetStats:
        """Stop every node and return the fleet's totals.

        Raises:
            SimError: the fleet's loop failed, or did not stop in time.
        """
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not self._done.is_set():
            with contextlib.suppress(RuntimeError):  # the loop has just ended (and closed)
                loop.call_soon_threadsafe(stop.set)
        self._done.wait(_JOIN_TIMEOUT_S)
        if self._result is not None:
            return self._result
        if self._error is not None:
            raise SimError(f"the virtual fleet failed: {type(self._error).__name__}: {self._error}")
        raise SimError(f"the virtual fleet did not stop within {_JOIN_TIMEOUT_S:g}s")


class FleetRunner(Protocol):
    @property
    def processes(self) -> int: ...

    def start(self) -> None: ...

    def wait(self, timeout_s: float | None = None) -> bool: ...

    def stop(self) -> FleetStats: ...


def start_fleet(
    config: FleetConfig, processes: int, duration_s: float | None = None
) -> FleetRunner:
    """Start a fleet: in a thread for one process, else in worker processes.

    Raises:
        SimError: a device or process count out of range.
    """
    runner: FleetRunner
    if processes == 1:
        runner = FleetThread(config, duration_s)
    else:
        runner = FleetProcesses(config, processes, duration_s)
    runner.start()
    return runner
