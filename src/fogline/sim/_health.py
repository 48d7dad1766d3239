"""The health a virtual node reports: plausible levels, noise, and metric faults.

A virtual node runs no module processes, so its `NodeHealth` is drawn: each
node has its own memory and CPU levels and each module its own RSS and CPU
(kept across versions, so a release is compared with the same node's
previous one), with noise on every sample. A release named by a metric
fault (`--faults mem-leak:web@2.0.0=30MB/h,cpu:web@2.0.0=+40%,
restarts:web@2.0.0=1/h`) leaks, burns more CPU or restarts from the moment
the node first runs it. The node's memory is its base plus its modules'.
Every node reports pipeline error and drop counters, zero but for the
releases a `pipeline-errors:` or `pipeline-drops:` fault names, which add
their rate while the node runs them.

Time is the node's monotonic clock: what the hub sees is the node's real
pace, as it would judge a real fleet.
"""

import math
import random
import time
from collections.abc import Callable
from typing import Any, Final

from fogline.protocol import MAX_HEALTH_MODULES, ModuleHealth, ModulesReport, NodeHealth

from ._faults import Faults

MB: Final = 1_000_000
# Sample noise: what a real RSS or CPU reading wobbles by between reports.
RSS_NOISE_BYTES: Final = 1 * MB
CPU_NOISE_POINTS: Final = 0.5
_HOUR_S: Final = 3600.0


class SimHealth:
    """A node's health source (`sample(modules)`), seeded from the node's random source."""

    def __init__(
        self,
        faults: Faults,
        rand: random.Random,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._faults, self._rand, self._clock = faults, rand, clock
        self._mem_bytes = rand.uniform(300, 600) * MB
        self._cpu = rand.uniform(2, 6)
        self._module_base: dict[str, tuple[float, float]] = {}  # name -> (rss, cpu)
        self._started: dict[str, tuple[float, float]] = {}  # name@version -> (time, phase)

    def _base(self, name: str) -> tuple[float, float]:
        base = self._module_base.get(name)
        if base is None:
            base = (self._rand.uniform(40, 80) * MB, self._rand.uniform(4, 6))
            self._module_base[name] = base
        return base

    def _age_h(self, key: str) -> tuple[float, float]:
        started = self._started.get(key)
        if started is None:
            started = (self._clock(), self._rand.random())
            self._started[key] = started
        return max(self._clock() - started[0], 0.0) / _HOUR_S, started[1]

    def figures(
        self, modules: ModulesReport | None
    ) -> tuple[float, int, dict[str, dict[str, Any]]]:
        """(node CPU, node memory used, module name -> ModuleHealth fields) now;
        `sample` wraps them in the wire model (benchmarks take them raw)."""
        statuses = modules.modules if modules is not None else {}
        found: dict[str, dict[str, Any]] = {}
        gauss = self._rand.gauss
        for name, status in list(statuses.items())[:MAX_HEALTH_MODULES]:
            version = status.version or ""
            if status.state == "installed":  # a bundle: nothing runs
                found[name] = {"state": str(status.state)}
                continue
            age_h, phase = self._age_h(f"{name}@{version}")
            rss, cpu = self._base(name)
            rss += self._faults.metric_fault("mem-leak", name, version) * age_h
            cpu *= 1 + self._faults.metric_fault("cpu", name, version)
            # Restarts at the fault's rate, the first after a drawn share of the period.
            extra = math.floor(self._faults.metric_fault("restarts", name, version) * age_h + phase)
            found[name] = {
                "state": str(status.state),
                "restarts": min(status.restarts + max(extra, 0), 10**9),
                "cpu_percent": round(min(max(cpu + gauss(0, CPU_NOISE_POINTS), 0.0), 100.0), 2),
                "rss_bytes": max(int(rss + gauss(0, RSS_NOISE_BYTES)), 0),
            }
        module_rss = sum(m.get("rss_bytes", 0) for m in found.values())
        module_cpu = sum(m.get("cpu_percent", 0.0) for m in found.values())
        node_cpu = self._cpu + module_cpu + gauss(0, CPU_NOISE_POINTS)
        mem_used = max(int(self._mem_bytes + module_rss + gauss(0, RSS_NOISE_BYTES)), 0)
        return round(min(max(node_cpu, 0.0), 100.0), 2), mem_used, found

    def pipeline_counters(self, modules: ModulesReport | None) -> tuple[int, int]:
        """(errors, dropped): what the faults of the releases running add up to."""
        statuses = modules.modules if modules is not None else {}
        errors = dropped = 0.0
        for name, status in list(statuses.items())[:MAX_HEALTH_MODULES]:
            version = status.version or ""
            age_h, _ = self._age_h(f"{name}@{version}")
            errors += self._faults.metric_fault("pipeline-errors", name, version) * age_h
            dropped += self._faults.metric_fault("pipeline-drops", name, version) * age_h
        return math.floor(errors), math.floor(dropped)

    def sample(self, modules: ModulesReport | None) -> NodeHealth:
        cpu, mem_used, found = self.figures(modules)
        errors, dropped = self.pipeline_counters(modules)
        return NodeHealth(
            cpu_percent=cpu,
            mem_used_bytes=mem_used,
            pipeline_errors=errors,
            pipeline_dropped=dropped,
            modules={name: ModuleHealth(**fields) for name, fields in found.items()},
        )
