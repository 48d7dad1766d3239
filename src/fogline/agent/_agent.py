"""The agent: enroll once, then report, and keep going whatever the hub does.

The hub being down is normal at the edge; the agent never exits for it.
Only a definite no at first enrollment stops it (see `_enroll`). Its
enrollment, certificate renewal, reports, sync and module stack are built
from `NodeParts`,
as the simulator's virtual nodes are; the local endpoint, the data plane
and the metrics are the agent's own. Its configuration, and the data dir
and local socket it claims first, are in `_config`.
"""

import asyncio
import logging
import platform
import socket
import time
from typing import Any

from fogline import __version__
from fogline._log import event
from fogline._malloc import cap_arenas, fix_mmap_threshold, trim
from fogline.hubclient import HubError, HubUnreachableError
from fogline.protocol import AppliedState, DeviceFacts, Report, ReportAck
from fogline.security import TokenFileError, read_token_file

from ._agentlog import AgentLogHandler, AgentLogShipper
from ._config import AgentConfig, bind_local, default_name, make_data_dir
from ._errors import AgentError, IdentityError
from ._health import HealthSampler, PipelineTotals
from ._heap import collect_replaced_objects, freeze_long_lived_objects
from ._hublink import HubLink, HubTls
from ._identity import Identity
from ._local import LocalApp, LocalServer, make_local_server, serve_local
from ._logship import LogShipper
from ._metrics import AgentMetrics
from ._module_metrics import ModuleScraper
from ._parts import NodeParts
from ._renew import Renewer
from ._selfupdate import SelfUpdate
from .dataplane import DataPlaneCollector, InstalledModels, NodeDataPlane, ingest_handler
from .modules import ModuleManager
from .supervisor import ProcessRuntime
from .updater import crash_hook_from_env
from .uplink import HttpHubTransport

log = logging.getLogger("fogline.agent")

MALLOC_ARENAS = 2
MALLOC_MMAP_THRESHOLD = 256 * 1024
MALLOC_TRIM_INTERVAL_S = 60.0


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.metrics = AgentMetrics()
        self.identity: Identity | None = None
        self.started_at = time.monotonic()
        self.last_report_at: float | None = None
        self.last_error: str | None = None
        self.parts = NodeParts(config.hub_url, config.ca_path, config.data_dir)
        self._store = self.parts.identity_store
        self.applied: AppliedState | None = None
        self.local = LocalApp(self.metrics.registry, self.health)
        self.dataplane: NodeDataPlane | None = None
        self.modules: ModuleManager | None = None
        self._health = HealthSampler(config.data_dir)
        self._scraper = ModuleScraper()
        self.renewer: Renewer | None = None
        self.tls: HubTls | None = None  # set once enrolled
        self._main_task: asyncio.Task[None] | None = None
        self._own_log = AgentLogHandler()
        # The agent's own update, run by the launcher when there is one.
        self.selfupdate = SelfUpdate.from_env(lambda: self.modules, self._stop_for_switch)
        self.enroller = self.parts.enroller(on_retry=self._on_enroll_retry)
        self.reporter = self.parts.reporter(
            self.report,
            interval_s=config.report_interval_s,
            on_sent=self._on_report_sent,
            on_failed=self._on_report_failed,
        )
        self.sync = self.parts.sync_loop(self._on_applied)

    # -- facts ---------------------------------------------------------------

    def facts(self) -> DeviceFacts:
        return DeviceFacts(
            agent_version=__version__,
            hostname=socket.gethostname(),
            os=platform.system().lower(),
            arch=platform.machine(),
            uptime_s=round(time.monotonic() - self.started_at, 1),
        )

    async def report(self) -> Report:
        # SQLite and file reads go to worker threads (see outbox_report and
        # statuses_for_report): this loop also carries the local actions.
        outbox = await self.dataplane.outbox_report() if self.dataplane is not None else None
        modules = await self.modules.statuses_for_report() if self.modules is not None else None
        scraped = (
            await self._scraper.scrape(self.modules.metrics_targets())
            if self.modules is not None
            else None
        )
        totals = self.dataplane.pipeline_totals() if self.dataplane is not None else None
        return Report(
            facts=self.facts(),
            labels=self.config.labels,
            applied=self.applied,
            outbox=outbox,
            modules=modules,
            health=await self._health.sample_for_report(
                modules,
                module_metrics=scraped,
                pipeline=PipelineTotals(*totals) if totals is not None else None,
            ),
        )

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "enrolled": self.identity is not None,
            "device_id": self.identity.device_id if self.identity else None,
            "hub": "reachable"
            if self.last_error is None and self.last_report_at
            else "unreachable",
            "last_error": self.last_error,
        }

    # -- enrollment ------------------------------------------------------------

    async def ensure_identity(self) -> Identity:
        """Load the identity, or enroll with the claim, retrying while the hub is away.

        Raises:
            HubRefusedError: the hub refused the claim (401/403).
            HubRejectedError: the hub refused the request (another 4xx: name taken).
            IdentityError: no identity and no claim to enroll with, or damaged files.
        """
        identity = await self.enroller.ensure(
            claim=self._claim,
            name=self.config.name or default_name(),
            labels=self.config.labels,
            facts=self.facts,
            recover_expired=self._has_claim(),
        )
        self._take_enroll_reply()
        return identity

    def _take_enroll_reply(self) -> None:
        """Report at the pace the hub's enrollment answer asked for, if it gave one."""
        if self.enroller.reply is not None:
            self.reporter.interval_s = self.enroller.reply.report_interval_s

    def _on_enroll_retry(self, exc: HubUnreachableError, _delay_s: float) -> None:
        self.last_error = str(exc)

    def _has_claim(self) -> bool:
        return bool(self.config.claim) or self.config.claim_file is not None

    async def _recover_expired(self) -> bool:
        """Enroll again with the claim, as the same device, after the
        certificate expired while the agent ran; False without a usable claim
        or when the hub refuses it."""
        if self.identity is None or not self._has_claim():
            return False
        try:
            await self.enroller.recover(
                self.identity, claim=self._claim, labels=self.config.labels, facts=self.facts
            )
        except (HubError, AgentError) as exc:
            event(log, "agent.recover_refused", logging.ERROR, error=str(exc))
            return False
        self._take_enroll_reply()
        return True

    def _claim(self) -> str:
        """The claim to enroll with: FOGLINE_CLAIM's, or the --claim-file's.

        Raises:
            IdentityError: neither is given, or the file is unusable.
        """
        if self.config.claim:
            return self.config.claim
        if self.config.claim_file is None:
            raise IdentityError(
                f"{self.config.data_dir} holds no identity yet: set FOGLINE_CLAIM or pass "
                "--claim-file PATH to enroll"
            )
        try:
            return read_token_file(self.config.claim_file)
        except TokenFileError as exc:
            raise IdentityError(f"--claim-file: {exc}") from exc

    # -- reporting -------------------------------------------------------------

    async def report_forever(self, tls: HubTls) -> None:
        link = self.parts.link(tls)
        try:
            await self.reporter.run(link)
        finally:
            await link.aclose()

    async def _on_report_sent(self, ack: ReportAck) -> None:
        self.metrics.reports.labels("ok").inc()
        self.metrics.hub_up.set(1)
        self.last_error = None
        self.last_report_at = time.time()
        if self.renewer is not None:
            self.renewer.hub_ca_seen(ack.ca_key_id)
        await self.selfupdate.confirm()  # a new agent on trial: it reconnected

    def _on_report_failed(self, exc: HubError) -> None:
        result = "unreachable" if isinstance(exc, HubUnreachableError) else "refused"
        self.metrics.reports.labels(result).inc()
        self.metrics.hub_up.set(0)
        self.last_error = str(exc)

    # -- main ------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the local endpoint, enroll if needed, then report until cancelled.

        Raises:
            AgentError: the local port is taken, or the identity is unusable.
            HubError: enrollment was refused (HubRefusedError, HubRejectedError).
        """
        self._main_task = asyncio.current_task()
        # Before any worker thread exists: each would get a glibc arena of its
        # own, and their fragments grew RSS +13 MB/h in the soak. Two arenas:
        # the main thread's and one the workers share (their work is short and
        # rarely overlaps); see _trim_forever for the rest.
        cap_arenas(MALLOC_ARENAS)
        fix_mmap_threshold(MALLOC_MMAP_THRESHOLD)
        make_data_dir(self.config)
        self._store.secure()
        sock = bind_local(self.config)
        (self.config.data_dir / "local-port").write_text(f"{sock.getsockname()[1]}\n")
        server = make_local_server(self.local)
        # The agent's own log is kept from here (enrollment included, bounded)
        # and shipped once the outbox is open (_run_tasks).
        fogline_logger = logging.getLogger("fogline")
        fogline_logger.addHandler(self._own_log)
        try:
            await self._run_tasks(server, sock)
        except* (AgentError, HubError) as group:
            # One clear error for the command line, not an exception group.
            raise group.exceptions[0] from None
        finally:
            fogline_logger.removeHandler(self._own_log)  # process-wide: never left behind

    async def _run_tasks(self, server: LocalServer, sock: socket.socket) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(serve_local(server, sock), name="local-http")
            try:
                identity = await self.ensure_identity()
            except (AgentError, HubError):
                server.stop()
                raise
            self.identity = identity
            self.metrics.enrolled.set(1)
            self.tls = self.parts.tls(identity)
            self.renewer = self.parts.renewer(
                identity,
                self.tls,
                new_key=self.config.renew_new_key,
                recover_expired=self._recover_expired,
                crash_hook=crash_hook_from_env(),  # fault injection in tests only
            )
            tg.create_task(self.renewer.run(), name="renew")
            uplink_link = self.parts.link(self.tls)
            self.modules = self.parts.module_manager(
                ProcessRuntime(user=self.config.module_user),
                uplink_link,
                self.reporter.poke,
                crash_hook=crash_hook_from_env(),  # fault injection in tests only
                module_user=self.config.module_user,
            )
            self.dataplane = NodeDataPlane(
                self.config.data_dir,
                self.config.outbox_max_bytes,
                self.config.mqtt,
                HttpHubTransport(uplink_link.http, uplink_link.url),
                # infer steps load files of model releases the updater installed
                models=InstalledModels(self.modules.updater),
                ingest_host=self.config.local_host,
            )
            self.metrics.register(DataPlaneCollector(self.dataplane))
            self.local.before_metrics.append(self.dataplane.outbox_stats)
            tg.create_task(self.modules.supervisor.run(), name="supervisor")
            # Installed modules first, then (self-update) a new agent the
            # launcher went back from is recorded failed, then the last
            # desired state, before any hub contact (edge autonomy): as every
            # node built from NodeParts.
            await self.parts.start_modules(
                self.modules,
                self.sync,
                appliers=[self.dataplane.apply, self.selfupdate.apply],
                reconcile=self.selfupdate.reconcile,
            )
            self.local.routes[("POST", "/ingest")] = ingest_handler(
                self.dataplane.engine.on_http_records, self.dataplane.ingest_guard
            )
            tg.create_task(self.report_forever(self.tls), name="report")
            tg.create_task(self._sync_forever(self.tls), name="sync")
            tg.create_task(self._dataplane_forever(uplink_link), name="dataplane")
            tg.create_task(self._drift_forever(), name="drift")
            tg.create_task(self._trim_forever(), name="malloc-trim")
            shipper = LogShipper(
                self.config.data_dir / "logs",
                self.dataplane.outbox,
                self._modules_with_logs,
                self.dataplane.uplink.notify,
            )
            tg.create_task(shipper.run(), name="log-shipper")
            # The agent's own log, to `fogline logs NODE --agent` (bounded).
            own_log = AgentLogShipper(
                self.dataplane.outbox, self.dataplane.uplink.notify, self._own_log
            )
            tg.create_task(own_log.run(), name="agent-log-shipper")
            freeze_long_lived_objects()

    def _modules_with_logs(self) -> list[str]:
        # A removed module stays in the supervisor until it has stopped and
        # its pipes are read into its log: followed until then, its last
        # lines are shipped.
        if self.modules is None:
            return []
        return [*self.modules.activator.desired, *self.modules.supervisor.names()]

    def _stop_for_switch(self) -> None:
        """Stop this agent cleanly (modules, outbox) so the launcher starts the new one."""
        if self._main_task is not None:
            self._main_task.cancel()

    async def _trim_forever(self) -> None:
        # Outbox drains after an outage, updates and batch encoding free
        # megabytes in chunks glibc keeps mapped; with arenas capped alone
        # the soak still grew +6 MB/h. A trim a minute returns them to the
        # kernel, whatever freed them, for a few ms of CPU.
        while True:
            await asyncio.sleep(MALLOC_TRIM_INTERVAL_S)
            trim()

    async def _drift_forever(self) -> None:
        assert self.modules is not None
        while True:
            await asyncio.sleep(self.config.drift_interval_s)
            try:
                await self.modules.check_drift()
            except Exception as exc:
                # check_drift reports a module's failure as its drift; this is
                # the last line: the task group must not end the agent for it.
                event(
                    log, "drift.check_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}"
                )

    async def _dataplane_forever(self, link: HubLink) -> None:
        assert self.dataplane is not None
        try:
            await self.dataplane.run()
        finally:
            await self.dataplane.close()
            await link.aclose()

    async def _sync_forever(self, tls: HubTls) -> None:
        link = self.parts.link(tls)
        try:
            await self.sync.run(link)
        finally:
            await link.aclose()

    def _on_applied(self, applied: AppliedState) -> None:
        self.applied = applied
        self.metrics.applied_ok.set(1 if applied.ok else 0)
        self.reporter.poke()
        collect_replaced_objects()
