"""One virtual node: the agent's own enrollment, sync, report and updater code,
with only the module processes faked (the supervisor's `MemoryRuntime`).

A simulated crash unwinds the node's tasks (`SimulatedCrash` is a
BaseException, so no `except Exception` in the agent code swallows it) and
the node starts again from its data directory, as a rebooted machine would:
identity, last desired state and the update journal are read back from disk.
"""

import asyncio
import platform
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

from fogline import __version__
from fogline.agent import Backoff, Identity, IdentityStore
from fogline.agent._hublink import HubLink, HubTls
from fogline.agent._renew import Renewer
from fogline.agent._sync import ConfigApplier, DesiredStore, SyncLoop
from fogline.agent.modules import ModuleManager, node_module_manager
from fogline.agent.supervisor import MemoryBehaviour, MemoryRuntime, RunSpec
from fogline.agent.updater import SUCCESS_PATH_POINTS
from fogline.hubclient import HubError, HubStatusError, HubUnreachableError
from fogline.protocol import (
    AppliedState,
    DeviceFacts,
    EnrollRequest,
    EnrollResponse,
    Report,
    ReportAck,
)

from ._faults import Faults
from ._transport import FaultyTransport, Traffic

# The points one successful update passes, after DOWNLOAD starts: a power
# cut is drawn among them (filtered, so a renamed point cannot go stale).
# Where a power cut may strike an update: anywhere on its path but the ends.
_UPDATE_POINTS: Final = tuple(
    p for p in SUCCESS_PATH_POINTS if p not in ("enter:DOWNLOAD", "enter:DONE")
)


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


class SimLink(HubLink):
    """The agent's HubLink whose client goes through a `FaultyTransport`."""

    def __init__(
        self,
        url: str,
        ca_path: Path,
        identity: Identity | None,
        wrap: "_TransportWrapper",
        timeout_s: float = 30.0,
        *,
        tls: HubTls | None = None,
    ) -> None:
        super().__init__(url, ca_path, identity, timeout_s, tls=tls, wrap=wrap)


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
        self._wrap = _TransportWrapper(config.faults, self.stats.traffic, self.rand, phase_s)
        self._health: dict[str, MemoryBehaviour] = {}
        self.modules: ModuleManager | None = None
        self.renewer: Renewer | None = None
        self.runtime: MemoryRuntime | None = None
        self.applied: AppliedState | None = None
        self._report_now = asyncio.Event()
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
        identity = await self._ensure_identity()
        self.stats.enrolled = True
        # As the agent: one TLS identity for every link, renewed by the
        # agent's own Renewer (its links inject the fleet's faults too).
        tls = HubTls(identity)

        def make_link() -> HubLink:
            return SimLink(self.config.hub_url, identity.ca_path, identity, self._wrap, tls=tls)

        link = make_link()
        self.renewer = Renewer(
            self.config.hub_url,
            IdentityStore(self.data_dir),
            identity,
            tls,
            make_link=make_link,
            on_renewed=self._renewed,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.renewer.run(), name=f"{self.name}:renew")
                modules = self._make_modules(link)
                tg.create_task(modules.supervisor.run(), name=f"{self.name}:supervisor")
                sync = SyncLoop(
                    DesiredStore(self.data_dir),
                    [ConfigApplier(self.data_dir), modules.apply],
                    self._on_applied,
                )
                local_copy = sync.store.load()
                if local_copy is not None:
                    modules.use_document_keys(local_copy.document)
                if self.config.faults.crash_per_s > 0:
                    tg.create_task(self._crash_randomly(), name=f"{self.name}:crash")
                # As the agent: installed modules first (the journal resumes or
                # rolls back), then the last desired state, then the hub.
                await modules.recover()
                await sync.start_from_local_copy()
                tg.create_task(self._report_forever(link), name=f"{self.name}:report")
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

    # -- enrollment ----------------------------------------------------------------

    def facts(self) -> DeviceFacts:
        return DeviceFacts(
            agent_version=__version__,
            hostname=self.name,
            os="linux",
            arch=platform.machine() or "unknown",
            uptime_s=round(time.monotonic() - self._started_at, 1),
        )

    async def _ensure_identity(self) -> Identity:
        store = IdentityStore(self.data_dir)
        identity = store.load()
        if identity is not None:
            return identity
        backoff = Backoff(initial_s=0.5, max_s=10.0, rand=self.rand.random)
        while True:
            link = SimLink(self.config.hub_url, self.config.ca_path, None, self._wrap)
            try:
                request = EnrollRequest(
                    claim=self.config.claim,
                    csr=store.new_csr(self.name),
                    name=self.name,
                    labels=self.labels,
                    facts=self.facts(),
                )
                reply = await link.call("POST", "/v1/enroll", request, EnrollResponse)
                return store.save(
                    reply.device_id,
                    reply.name,
                    reply.certificate,
                    reply.ca,
                    reply.release_keys,
                    reply.release_key_scopes,
                )
            except HubUnreachableError as exc:
                await asyncio.sleep(backoff.next_delay(exc.retry_after_s))
            finally:
                await link.aclose()

    # -- modules, sync, reports --------------------------------------------------------

    def _make_modules(self, link: HubLink) -> ModuleManager:
        self.runtime = _SimRuntime(self.config.faults, self.rand, self._health)
        self.modules = node_module_manager(
            self.data_dir,
            self.runtime,
            link.http,
            IdentityStore(self.data_dir).pinned_release_keys(),
            self._report_now.set,
            pinned_scopes=IdentityStore(self.data_dir).pinned_key_scopes(),
            crash_hook=self._powerloss_hook if self.config.faults.powerloss > 0 else None,
        )
        return self.modules

    def _on_applied(self, applied: AppliedState) -> None:
        self.applied = applied
        self.stats.applied_revision, self.stats.applied_ok = applied.revision, applied.ok
        self._report_now.set()

    def report(self) -> Report:
        """What the agent would report now (the same model, the same module statuses)."""
        modules = self.modules.statuses() if self.modules is not None else None
        return Report(facts=self.facts(), labels=self.labels, applied=self.applied, modules=modules)

    async def _report_forever(self, link: HubLink) -> None:
        backoff = Backoff(initial_s=1.0, max_s=30.0, rand=self.rand.random)
        while True:
            self._report_now.clear()
            try:
                ack = await link.call("POST", "/v1/report", self.report(), ReportAck)
            except HubError as exc:
                self.stats.reports_failed += 1
                await asyncio.sleep(backoff.next_delay(exc.retry_after_s))
                continue
            backoff.reset()
            self.stats.reports_ok += 1
            if self.renewer is not None:
                self.renewer.hub_ca_seen(ack.ca_key_id)
            try:
                async with asyncio.timeout(ack.report_interval_s):
                    await self._report_now.wait()
            except TimeoutError:
                pass
