"""The node's health for its report, read from /proc and /sys.

No library: a handful of small text files gives everything the report
carries, in about a millisecond (bench in BENCHMARKS.md, "Device health"),
and psutil would add a compiled dependency to every node for the same reads.

CPU shares need two readings: a sampler keeps the previous counters (the
node's and each module process's) and reports the share busy since then;
the first sample has none. Whatever a file does not give (no thermal zone in
a container, a module that exited between the status and the read, a
kernel without MemAvailable) is left out of the report, never guessed and
never an error: health must not stop a report.
"""

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fogline.protocol import (
    MAX_HEALTH_MODULES,
    MAX_MODULE_SERIES,
    ModuleHealth,
    ModulesReport,
    NodeHealth,
)

_PROC: Final = Path("/proc")
_THERMAL: Final = Path("/sys/class/thermal")
# A board has a few zones; bounding the scan bounds a sample's cost.
_MAX_THERMAL_ZONES: Final = 32
_PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class PipelineTotals:
    """The edge data plane's counters since the agent started, over every
    pipeline: step and output errors; records dropped, late or rate-limited."""

    errors: int
    dropped: int


@dataclass(frozen=True, slots=True)
class _CpuTicks:
    busy: int
    total: int


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _node_cpu(proc: Path) -> _CpuTicks | None:
    text = _read(proc / "stat")
    if not text or not text.startswith("cpu "):
        return None
    # user nice system idle iowait irq softirq steal (guest time is in user)
    ticks = [int(v) for v in text.split("\n", 1)[0].split()[1:9]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return _CpuTicks(busy=sum(ticks) - idle, total=sum(ticks))


def _process_ticks(proc: Path, pid: int) -> int | None:
    text = _read(proc / str(pid) / "stat")
    if not text:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text.rsplit(")", 1)[-1].split()
    try:
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    except (IndexError, ValueError):
        return None


def _rss_bytes(proc: Path, pid: int | str) -> int | None:
    text = _read(proc / str(pid) / "statm")
    try:
        return int(text.split()[1]) * _PAGE_BYTES if text else None
    except (IndexError, ValueError):
        return None


def _meminfo(proc: Path) -> tuple[int | None, int | None]:
    """(used, available) bytes; used is total minus available."""
    text = _read(proc / "meminfo") or ""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            values[key] = int(rest.split()[0]) * 1024
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    if total is None or available is None:
        return None, None
    return max(total - available, 0), available


def _load(proc: Path) -> tuple[float, float, float] | None:
    parts = (_read(proc / "loadavg") or "").split()
    try:
        return float(parts[0]), float(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        return None


def _net_bytes(proc: Path) -> tuple[int, int] | None:
    text = _read(proc / "net" / "dev")
    if not text:
        return None
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = counters.split()
        if len(fields) >= 9:
            rx += int(fields[0])
            tx += int(fields[8])
    return rx, tx


def _temperature_c(thermal: Path) -> float | None:
    hottest: float | None = None
    for index in range(_MAX_THERMAL_ZONES):
        text = _read(thermal / f"thermal_zone{index}" / "temp")
        if text is None:
            if not (thermal / f"thermal_zone{index}").exists():
                break
            continue
        try:
            celsius = int(text.strip()) / 1000  # millidegrees
        except ValueError:
            continue
        # A sensor that is not wired reads absurd values (-273, 255000):
        # drop them rather than have the hub refuse the whole report.
        if -100 <= celsius <= 250 and (hottest is None or celsius > hottest):
            hottest = celsius
    return hottest


def _disk(path: Path) -> tuple[int, int] | None:
    try:
        info = os.statvfs(path)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize


def _share(busy_ticks: int, total_ticks: int) -> float | None:
    if total_ticks <= 0:
        return None
    return round(min(max(busy_ticks / total_ticks, 0.0), 1.0) * 100, 1)


class HealthSampler:
    """Reads the node's health; keeps the counters CPU shares are taken against.

    `proc` and `thermal` are the roots read and `disk` gives (free, total)
    bytes of a path (tests point them at a fake tree).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        proc: Path = _PROC,
        thermal: Path = _THERMAL,
        disk: Callable[[Path], tuple[int, int] | None] = _disk,
    ) -> None:
        self._data_dir = data_dir
        self._proc = proc
        self._thermal = thermal
        self._disk = disk
        self._node_before: _CpuTicks | None = None
        # pid -> its ticks at the previous sample; a pid not seen again is forgotten.
        self._pids_before: dict[int, int] = {}

    async def sample_for_report(
        self,
        modules: ModulesReport | None,
        *,
        module_metrics: Mapping[str, Mapping[str, float]] | None = None,
        pipeline: PipelineTotals | None = None,
    ) -> NodeHealth:
        """`sample()` in a worker thread: file reads stay off the event loop."""
        return await asyncio.to_thread(
            self.sample, modules, module_metrics=module_metrics, pipeline=pipeline
        )

    def sample(
        self,
        modules: ModulesReport | None,
        *,
        module_metrics: Mapping[str, Mapping[str, float]] | None = None,
        pipeline: PipelineTotals | None = None,
    ) -> NodeHealth:
        """The node's health now. `module_metrics` are the series scraped
        from the modules' endpoints (agent/_module_metrics.py), `pipeline`
        the data plane's counters; both are passed in, read elsewhere."""
        proc = self._proc
        node = _node_cpu(proc)
        before, self._node_before = self._node_before, node
        cpu = None
        elapsed_ticks = 0
        if node is not None and before is not None:
            elapsed_ticks = node.total - before.total
            cpu = _share(node.busy - before.busy, elapsed_ticks)
        used, available = _meminfo(proc)
        load = _load(proc)
        net = _net_bytes(proc)
        disk = self._disk(self._data_dir)
        return NodeHealth(
            cpu_percent=cpu,
            load1=load[0] if load else None,
            load5=load[1] if load else None,
            load15=load[2] if load else None,
            mem_used_bytes=used,
            mem_available_bytes=available,
            disk_free_bytes=disk[0] if disk else None,
            disk_total_bytes=disk[1] if disk else None,
            temperature_c=_temperature_c(self._thermal),
            net_rx_bytes=net[0] if net else None,
            net_tx_bytes=net[1] if net else None,
            agent_rss_bytes=_rss_bytes(proc, "self"),
            pipeline_errors=pipeline.errors if pipeline else None,
            pipeline_dropped=pipeline.dropped if pipeline else None,
            modules=self._modules(modules, elapsed_ticks, module_metrics or {}),
        )

    def _modules(
        self,
        modules: ModulesReport | None,
        node_elapsed_ticks: int,
        module_metrics: Mapping[str, Mapping[str, float]],
    ) -> dict[str, ModuleHealth]:
        statuses = modules.modules if modules is not None else {}
        seen: dict[int, int] = {}
        found: dict[str, ModuleHealth] = {}
        for name, status in list(statuses.items())[:MAX_HEALTH_MODULES]:
            cpu = rss = None
            if status.pid is not None:
                ticks = _process_ticks(self._proc, status.pid)
                rss = _rss_bytes(self._proc, status.pid)
                if ticks is not None:
                    seen[status.pid] = ticks
                    previous = self._pids_before.get(status.pid)
                    if previous is not None and node_elapsed_ticks > 0:
                        # /proc/stat's total counts every CPU's ticks; a
                        # process's ticks are of one CPU at a time.
                        cpu = _share(ticks - previous, node_elapsed_ticks)
            found[name[:128]] = ModuleHealth(
                state=status.state,
                restarts=min(status.restarts, 10**9),
                cpu_percent=cpu,
                rss_bytes=rss,
                metrics=dict(list(module_metrics.get(name, {}).items())[:MAX_MODULE_SERIES]),
            )
        self._pids_before = seen
        return found
