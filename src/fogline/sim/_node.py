"""One virtual node: the agent's own enrollment, sync, report and updater code,
with only the module processes faked (the supervisor's `MemoryRuntime`).

The node is built from `fogline.agent.NodeParts`, as `fogline agent run`
is: the same Enroller, Renewer, Reporter, SyncLoop and ModuleManager (the
real updater: download, digest and signature verification, unpacking into
the node's data directory), with the transport wrapped by `FaultyTransport`
and a clock whose jitter is drawn from the node's seeded random source.

A simulated crash unwinds the node's tasks (`SimulatedCrash` is a
BaseException, so no `except Exception` in the agent code swallows it) and
the node starts again from its data directory, as a rebooted machine would:
identity, last desired state and the update journal are read back from disk.
"""

import asyncio
import json
import platform
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

from fogline import __version__
from fogline.agent import Clock, NodeParts, Renewer, Reporter
from fogline.agent.modules import ModuleManager
from fogline.agent.supervisor import MemoryBehaviour, MemoryRuntime, RunSpec
from fogline.agent.updater import PINNED_ROOT_FILE, SUCCESS_PATH_POINTS
from fogline.hubclient import HubError, HubStatusError
from fogline.protocol import AppliedState, DeviceFacts, Report, ReportAck

from ._faults import Faults
from ._health import SimHealth
from ._transport import FaultyTransport, Traffic

# The points one successful update passes, after DOWNLOAD starts: a power
# cut is drawn among them (filtered, so a renamed point cannot go stale).
# Where a power cut may strike an update: anywhere on its path but the ends.
_UPDATE_POINTS: Final = tuple(
    p for p in SUCCESS_PATH_POINTS if p not in ("enter:DOWNLOAD", "enter:DONE")
)
# Until the hub's first acknowledgement says otherwise (as the agent's default).
_REPORT_INTERVAL_S: Final = 10.0


class SimulatedCrash(BaseException):
    """A crash or power cut of one virtual node.

    A BaseException on purpose: the agent code catches `Exception` to report
    failures, and a power cut must not be reported, only survived.
    """


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """What every virtual node of a fleet shares."""

    hub_url: str
    ca_path: Path
    claim: str
    devices: int
    data_dir: Path
    # Labels every node asks for (with sim=true). The hub shows them as
    # requested labels and never selects on them: targeting labels come from
    # the claim (`fogline claim create --labels`) and operators.
    labels: Mapping[str, str] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    prefix: str = "fleet"
    seed: int = 0
    start_spread_s: float = 0.0  # nodes boot at random times within this window
    restart_delay_s: float = 0.2  # how long a crashed node stays down


@dataclass(slots=True)
class NodeStats:
    enrolled: bool = False
    reports_ok: int = 0
    reports_failed: int = 0
    crashes: int = 0
    powerlosses: int = 0
    powerloss_points: list[str] = field(default_factory=list)
    applied_revision: str | None = None
    applied_ok: bool | None = None
    error: str | None = None
    renewals: int = 0  # certificates renewed (agent/_renew.py)
    traffic: Traffic = field(default_factory=Traffic)
    # TUF, as read from the node's disk (`observe_tuf`): the version of the
    # root it pinned at enrollment (None: release keys decide), and whether
    # its updater holds metadata ngclient verified (it asked before a download).
    tuf_root: int | None = None
    tuf_verified: bool = False


class _TransportWrapper:
    def __init__(self, faults: Faults, traffic: Traffic, rand: random.Random, phase_s: float):
        self.faults, self.traffic, self.rand, self.phase_s = faults, traffic, rand, phase_s

    def __call__(self, inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        return FaultyTransport(
            inner, self.faults, self.traffic, rand=self.rand, phase_s=self.phase_s
        )


class _SimRuntime(MemoryRuntime):
    """MemoryRuntime whose release health is drawn once per node and release.

    `health-fail=0.2` makes a release unhealthy on about a fifth of the nodes
    (every probe fails there), which is what a rollout gate is meant to catch;
    the draw is kept across restarts, so a bad release stays bad on that node.
    """

    def __init__(self, faults: Faults, rand: random.Random, drawn: dict[str, MemoryBehaviour]):
        super().__init__(seed=rand.randrange(2**32))
        self._faults, self._rand, self._drawn = faults, rand, drawn

    def behaviour_for(self, spec: RunSpec) -> MemoryBehaviour:
        key = f"{spec.name}@{spec.version}"
        behaviour = self._drawn.get(key)
        if behaviour is None:
            p = self._faults.health_fail_for(spec.name, spec.version)
            bad = p > 0 and self._rand.random() < p
            behaviour = MemoryBehaviour(fail_health_probability=1.0 if bad else 0.0)
            self._drawn[key] = behaviour
        return behaviour


class VirtualNode:
    """One simulated edge node; `run()` until cancelled."""

    def __init__(self, config: FleetConfig, index: int) -> None:
        self.config = config
        self.index = index
        self.name = f"sim-{config.prefix}-{index}"
        self.data_dir = config.data_dir / self.name
        self.labels = {**config.labels, "sim": "true"}
        self.stats = NodeStats()
        self.rand = random.Random(f"{config.seed}:{index}")
        flap = config.faults.flap
        phase_s = self.rand.uniform(0, flap.period_s) if flap is not None else 0.0
        self.parts = NodeParts(
            config.hub_url,
            config.ca_path,
            self.data_dir,
            clock=Clock(rand=self.rand.random),
            wrap_transport=_TransportWrapper(config.faults, self.stats.traffic, self.rand, phase_s),
        )
        self._health: dict[str, MemoryBehaviour] = {}
        # What the node's reports carry as health (no module processes run).
        self.health_source = SimHealth(
            config.faults, random.Random(f"{config.seed}:{index}:health")
        )
        self.modules: ModuleManager | None = None
        self.renewer: Renewer | None = None
        self.runtime: MemoryRuntime | None = None
        self.applied: AppliedState | None = None
        self._reporter: Reporter | None = None
        self._started_at = time.monotonic()
        self._armed_point: str | None = None
        self._powerloss_pending = False

    # -- lifecycle -----------------------------------------------------------------

    async def run(self) -> None:
        """Run the node, restarting it from disk after every simulated crash.

        Returns only when the hub refused the enrollment (see `stats.error`).
        """
        if self.config.start_spread_s > 0:
            await asyncio.sleep(self.rand.uniform(0, self.config.start_spread_s))
        while self.stats.error is None:
            try:
                await self._run_once()
            except* SimulatedCrash:
                self.stats.crashes += 1
            except* HubStatusError as group:
                # A refused enrollment (bad claim, name taken) will not heal.
                self.stats.error = str(group.exceptions[0])
            if self.stats.error is not None:
                break
            self._armed_point = None
            self.modules = None
            await asyncio.sleep(self.config.restart_delay_s)

    async def _run_once(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        parts = self.parts
        identity = await parts.enroller().ensure(
            claim=lambda: self.config.claim, name=self.name, labels=self.labels, facts=self.facts
        )
        self.stats.enrolled = True
        # As the agent: one TLS identity for every link, renewed by the
        # agent's own Renewer (its links inject the fleet's faults too).
        tls = parts.tls(identity)
        link = parts.link(tls)
        self.renewer = parts.renewer(identity, tls, on_renewed=self._renewed)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.renewer.run(), name=f"{self.name}:renew")
                reporter = parts.reporter(
                    self._build_report,
                    interval_s=_REPORT_INTERVAL_S,
                    on_sent=self._on_report_sent,
                    on_failed=self._on_report_failed,
                )
                self._reporter = reporter
                self.runtime = _SimRuntime(self.config.faults, self.rand, self._health)
                modules = parts.module_manager(
                    self.runtime,
                    link,
                    reporter.poke,
                    crash_hook=self._powerloss_hook if self.config.faults.powerloss > 0 else None,
                )
                self.modules = modules
                tg.create_task(modules.supervisor.run(), name=f"{self.name}:supervisor")
                sync = parts.sync_loop(self._on_applied)
                if self.config.faults.crash_per_s > 0:
                    tg.create_task(self._crash_randomly(), name=f"{self.name}:crash")
                await parts.start_modules(modules, sync)
                tg.create_task(reporter.run(link), name=f"{self.name}:report")
                tg.create_task(sync.run(link), name=f"{self.name}:sync")
        finally:
            await link.aclose()

    async def _crash_randomly(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.rand.random() < self.config.faults.crash_per_s:
                raise SimulatedCrash(f"{self.name}: crash")

    def _renewed(self) -> None:
        self.stats.renewals += 1

    def _powerloss_hook(self, point: str) -> None:
        if point == "enter:DOWNLOAD" and not self._powerloss_pending:
            draw = self.rand.random() < self.config.faults.powerloss
            self._armed_point = self.rand.choice(_UPDATE_POINTS) if draw else None
        if point == self._armed_point:
            self._armed_point = None
            self._powerloss_pending = True
            self.stats.powerlosses += 1
            self.stats.powerloss_points.append(point)
            raise SimulatedCrash(f"{self.name}: power loss at {point}")
        if point == "enter:CLEANUP":
            # The interrupted update is over: the next one may lose power again.
            self._powerloss_pending = False

    def observe_tuf(self) -> None:
        """Read from disk how this node trusts updates (see NodeStats.tuf_root)."""
        pinned = self.parts.identity_store.root / PINNED_ROOT_FILE
        try:
            self.stats.tuf_root = int(json.loads(pinned.read_bytes())["signed"]["version"])
        except (OSError, ValueError, KeyError, TypeError):
            self.stats.tuf_root = None
        # ngclient writes a timestamp here only once it verified one.
        verified = self.data_dir / "updater" / "tuf" / "metadata" / "timestamp.json"
        self.stats.tuf_verified = verified.is_file()

    # -- enrollment ----------------------------------------------------------------

    def facts(self) -> DeviceFacts:
        return DeviceFacts(
            agent_version=__version__,
            hostname=self.name,
            os="linux",
            arch=platform.machine() or "unknown",
            uptime_s=round(time.monotonic() - self._started_at, 1),
        )

    def _on_applied(self, applied: AppliedState) -> None:
        self.applied = applied
        self.stats.applied_revision, self.stats.applied_ok = applied.revision, applied.ok
        if self._reporter is not None:
            self._reporter.poke()

    def report(self) -> Report:
        """What the agent would report now (the same model, the same module statuses)."""
        modules = self.modules.statuses() if self.modules is not None else None
        return Report(
            facts=self.facts(),
            labels=self.labels,
            applied=self.applied,
            modules=modules,
            health=self.health_source.sample(modules),
        )

    async def _build_report(self) -> Report:
        return self.report()

    async def _on_report_sent(self, ack: ReportAck) -> None:
        self.stats.reports_ok += 1
        if self.renewer is not None:
            self.renewer.hub_ca_seen(ack.ca_key_id)

    def _on_report_failed(self, _exc: HubError) -> None:
        self.stats.reports_failed += 1
