"""Modules on the node: desired releases -> updater -> supervisor, plus drift.

The updater moves each module to its target release (download, verify,
install side by side, switch, health-gate, commit or roll back); the
supervisor keeps the committed version running. The module manager applies
the desired state's `modules` through them, and checks and repairs drift
(`_repair`); the keys it trusts are computed in `_trust`.
"""

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx

from fogline._log import event
from fogline.protocol import (
    DesiredDocument,
    DesiredStateDoc,
    DriftFinding,
    DriftPolicy,
    KeyScope,
    ModuleReport,
    ModulesReport,
    ModuleState,
    UpdateOutcome,
    UpdateProgressReport,
    parse_key_scopes,
)

from .._backoff import Backoff
from .._clock import Clock
from ..supervisor import (
    MetricsTarget,
    ModuleRuntime,
    ModuleUser,
    Supervisor,
    UnknownModuleError,
)
from ..updater import (
    ArtifactSource,
    HttpArtifactSource,
    InstalledRelease,
    ReleaseTarget,
    State,
    TargetTrust,
    ThreadedHttpArtifactSource,
    UpdateProgress,
    Updater,
    UpdateResult,
)
from ._activator import SupervisorActivator
from ._drift import Drift, FileBaselines
from ._repair import DriftRepair, _describe
from ._restarts import RestartLedger
from ._specs import targets_from
from ._trust import keys_from, scopes_from

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger("fogline.agent.modules")
PROGRESS_REPORT_MIN_S: Final = 0.5


class ModuleManager(DriftRepair):
    """Applier for the `modules` of the desired state, and drift detection."""

    def __init__(
        self,
        updater_factory: Callable[["ModuleManager"], Updater],
        supervisor: Supervisor,
        activator: SupervisorActivator,
        pinned_keys: Mapping[str, str],
        on_change: Callable[[], None],
        *,
        pinned_scopes: Mapping[str, Any] | None = None,
        baselines: FileBaselines,
        source: ArtifactSource,
        scratch_dir: Path,
        restarts: RestartLedger | None = None,
    ) -> None:
        self.baselines = baselines
        self.restarts = restarts or RestartLedger(None)
        # Modules being restarted, with the generation honoured before: the
        # ledger is written first (crash safety), but a report says the new
        # generation only once the new process has started.
        self._restarting: dict[str, int] = {}
        self.source = source  # for repairs of drifted files
        self.scratch_dir = scratch_dir
        self.targets: dict[str, ReleaseTarget] = {}
        self.drift_policy: DriftPolicy | str = DriftPolicy.REPORT
        self.drift: list[Drift] = []
        self.corrections = 0
        self.supervisor = supervisor
        self.activator = activator
        self.pinned_keys = dict(pinned_keys)
        self.pinned_scopes = parse_key_scopes(dict(pinned_scopes or {}))
        self.doc_keys: dict[str, str] = {}
        self.doc_scopes: dict[str, tuple[str, ...]] = {}
        self.on_change = on_change
        self.progress: dict[str, UpdateProgressReport] = {}
        self.results: dict[str, UpdateOutcome] = {}
        self._last_progress_report = 0.0
        self.updater = updater_factory(self)

    def trusted_keys(self) -> dict[str, "Ed25519PublicKey"]:
        return keys_from({**self.pinned_keys, **self.doc_keys})

    def key_scopes(self) -> dict[str, KeyScope]:
        """Which modules each trusted key (by id) may sign: see `_trust`."""
        return scopes_from(
            [(self.pinned_keys, self.pinned_scopes), (self.doc_keys, self.doc_scopes)]
        )

    def use_document_keys(self, document: DesiredDocument) -> None:
        """Trust the release keys of a desired-state document, with their scopes."""
        self.doc_keys = dict(document.release_keys)
        # A pattern that does not check out covers nothing (see parse_key_scopes).
        self.doc_scopes = parse_key_scopes(document.release_key_scopes)

    def on_progress(self, progress: UpdateProgress) -> None:
        self.progress[progress.module] = UpdateProgressReport(
            version=progress.version,
            state=progress.state,
            detail=progress.detail,
            bytes_done=progress.bytes_done,
            bytes_total=progress.bytes_total,
            error=progress.error,
        )
        now = time.monotonic()
        # Every transition is reported; download ticks at most twice a second.
        if (
            progress.state is not State.DOWNLOAD
            or now - self._last_progress_report > PROGRESS_REPORT_MIN_S
        ):
            self._last_progress_report = now
            self.on_change()

    def _record(self, result: UpdateResult) -> None:
        self.results[result.module] = UpdateOutcome(
            version=result.version,
            state=result.state,
            error=result.error,
            failed_in=result.failed_in,
        )

    async def recover(self, wanted: Collection[str] | None = None) -> None:
        """Resume interrupted updates and start installed modules (those in
        `wanted`, the last desired state's, when given); a failure is logged
        and reported, never raised: the agent must reach its hub."""
        try:
            results = await self.updater.recover(wanted=wanted)
        except Exception as exc:
            event(log, "modules.recover_failed", logging.ERROR, error=_describe(exc))
            return
        for result in results:
            self._record(result)

    async def apply(self, doc: DesiredStateDoc) -> None:
        """Move every module to its target; stop modules no longer desired.

        Raises:
            RuntimeError: some module did not reach its target (rolled back or
                refused); the message lists them with their reasons.
        """
        self.use_document_keys(doc.document)
        self.drift_policy = doc.document.drift
        targets = targets_from(doc.document)
        self.targets = {t.name: t for t in targets}
        wanted = {t.name for t in targets}
        for name in sorted(set(self.activator.desired) | self.activator.bundles):
            if name not in wanted:
                # Through the updater, which keeps the install and its record
                # and knows the module no longer runs: deployed again with
                # the same release, `ensure` starts it without a download.
                await self.updater.stop(name)
                event(log, "module.removed", module=name)
        failures = []
        for target in targets:
            try:
                result = await self.updater.ensure(target)
            except Exception as exc:
                # One module's broken update (its state files, a bug) is that
                # module's failure: the others are still moved, and the agent
                # keeps reporting it.
                event(
                    log, "module.update_crashed", logging.ERROR, module=target.name, error=str(exc)
                )
                result = UpdateResult(
                    target.name, target.version, target.digest, State.FAILED, _describe(exc)
                )
            self._record(result)
            if result.state is not State.DONE:
                failures.append(
                    f"{target.name} {target.version}: {result.error or result.state.value}"
                )
        await self._honour_restarts(doc.document)
        self.on_change()
        if failures:
            raise RuntimeError("; ".join(failures))

    async def _honour_restarts(self, document: DesiredDocument) -> None:
        """Restart each module whose restart request is newer than the last
        one honoured, once (see `_restarts`)."""
        for entry in document.modules:
            wanted = entry.restart_generation
            if wanted <= self.restarts.honoured(entry.name):
                continue
            self._restarting[entry.name] = self.restarts.honoured(entry.name)
            try:
                await self._restart(entry.name, wanted)
            finally:
                del self._restarting[entry.name]

    async def _restart(self, name: str, wanted: int) -> None:
        """Write the request down, then restart the module."""
        try:
            await asyncio.to_thread(self.restarts.note, name, wanted)
        except OSError as exc:  # not written down: not honoured, asked again later
            event(log, "module.restart_not_recorded", logging.ERROR, module=name, error=str(exc))
            return
        restarted = False
        if name in self.activator.desired:
            try:
                restarted = await self.supervisor.restart(name)
            except UnknownModuleError:
                restarted = False
        event(
            log,
            "module.restart_requested",
            logging.WARNING,
            module=name,
            generation=wanted,
            restarted=restarted,
        )

    def statuses(self) -> ModulesReport:
        return self._statuses(self._bundle_releases(list(self.activator.bundles)))

    async def statuses_for_report(self) -> ModulesReport:
        """`statuses()`, with the bundles' installed.json read in a worker thread:
        file reads stay off the event loop that carries local actions."""
        bundles = list(self.activator.bundles)
        return self._statuses(await asyncio.to_thread(self._bundle_releases, bundles))

    def metrics_targets(self) -> dict[str, MetricsTarget]:
        """The metrics endpoints of the modules whose process runs now, each
        as the running version's module file declares it."""
        statuses = self.supervisor.statuses()
        found: dict[str, MetricsTarget] = {}
        for name, spec in self.activator.desired.items():
            status = statuses.get(name)
            if (
                spec.metrics is not None
                and status is not None
                and status.pid is not None
                and status.version == spec.version
            ):
                found[name] = spec.metrics
        return found

    def _bundle_releases(self, names: list[str]) -> dict[str, InstalledRelease | None]:
        found: dict[str, InstalledRelease | None] = {}
        for name in names:
            try:
                found[name] = self.updater.installed(name)
            except Exception as exc:  # one unreadable record must not stop the report
                event(
                    log, "module.installed_unreadable", logging.ERROR, module=name, error=str(exc)
                )
                found[name] = None
        return found

    def _statuses(self, bundles: Mapping[str, InstalledRelease | None]) -> ModulesReport:
        modules = {
            name: ModuleReport(
                name=status.name,
                version=status.version,
                state=status.state,
                pid=status.pid,
                restarts=status.restarts,
                last_exit_code=status.last_exit_code,
                last_error=status.last_error,
                stderr_tail=status.stderr_tail,
                since=status.since,
                restart_generation=self._restarting.get(name, self.restarts.honoured(name)),
            )
            for name, status in self.supervisor.statuses().items()
        }
        for name, installed in bundles.items():
            modules[name] = ModuleReport(
                name=name,
                state=ModuleState.INSTALLED,
                version=installed.target.version if installed else None,
            )
        return ModulesReport(
            modules=modules,
            updates=dict(self.results),
            progress=dict(self.progress),
            drift=[DriftFinding(module=d.module, kind=d.kind, detail=d.detail) for d in self.drift],
            drift_policy=self.drift_policy,
            drift_corrections=self.corrections,
        )


def node_module_manager(
    data_dir: Path,
    runtime: ModuleRuntime,
    http: httpx.AsyncClient,
    pinned_keys: Mapping[str, str],
    on_change: Callable[[], None],
    crash_hook: Callable[[str], None] | None = None,
    *,
    pinned_scopes: Mapping[str, Any] | None = None,
    module_user: ModuleUser | None = None,
    clock: Clock | None = None,
    tuf: TargetTrust | None = None,
    download_client: Callable[[], httpx.Client] | None = None,
) -> ModuleManager:
    """A node's module stack laid out in its data directory: supervisor,
    updater, drift baselines and repairs, artifacts fetched over `http`, or
    in a worker thread over a client from `download_client` when given.

    The agent builds its own here, and so does each of the simulator's
    virtual nodes (with a simulated runtime), so both run the same code.
    `module_user` is who the runtime runs modules as (None: the agent's user);
    `clock` drives the updater's retry waits and their jitter; `tuf`, when
    the node has a TUF root pinned, decides which bytes a release may be.
    """
    clock = clock or Clock()
    supervisor = Supervisor(runtime, data_dir / "logs")
    activator = SupervisorActivator(
        supervisor, data_dir / "modules-config", node_root=data_dir, module_user=module_user
    )
    # The agent downloads in a worker thread (download_client: about a third
    # less CPU per byte); the simulator's nodes, whose faults are injected into
    # `http`'s transport, through `http` itself.
    source: ArtifactSource = (
        HttpArtifactSource(http)
        if download_client is None
        else ThreadedHttpArtifactSource(download_client)
    )

    def make_updater(manager: ModuleManager) -> Updater:
        return Updater(
            data_dir / "updater",
            source=source,
            activator=activator,
            trusted_keys=manager.trusted_keys,
            key_scopes=manager.key_scopes,
            on_progress=manager.on_progress,
            crash_hook=crash_hook,
            backoff=functools.partial(Backoff, rand=clock.rand),
            sleep=clock.sleep,
            tuf=tuf,
        )

    return ModuleManager(
        make_updater,
        supervisor,
        activator,
        pinned_keys,
        on_change,
        pinned_scopes=pinned_scopes,
        baselines=FileBaselines(data_dir / "state" / "drift"),
        source=source,
        scratch_dir=data_dir / "state" / "repair",
        restarts=RestartLedger(data_dir / "state" / "restarts.json"),
    )
