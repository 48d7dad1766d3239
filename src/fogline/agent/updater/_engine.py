"""The shell around the state table: each state's work, the journal, the reports.

`Engine.run` saves the journal on entering a state, calls the crash hook and
reports progress, does the state's work, and asks `next_state` where to go.
The work of a state returns an Event; a failure is recorded in the journal
(`error`, `failed_in`, `retryable`) and returned as Event.FAIL. Errors that
are not failures of the update (bugs, cancellation) propagate and leave the
journal where it was, for `recover()`.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fogline._durable import make_dirs
from fogline.agent._backoff import Backoff
from fogline.artifact import ModuleSpec, sha256_file
from fogline.protocol import KeyScope

from ._blocking import in_thread
from ._delta import DeltaPlan, base_path, delta_path, try_delta
from ._download import DownloadPlan, Throttle, download
from ._errors import ActivationError, ArtifactFetchError, TufRefusedError
from ._installs import (
    best_effort,
    drop_download,
    install_path,
    prune_after_commit,
    read_spec,
    remove_unused_install,
    restore_links,
)
from ._journal import Journal, StateFiles
from ._layout import CURRENT, PREVIOUS, Layout, point_link, sweep_leftovers
from ._models import (
    InstalledRelease,
    ReleaseFailure,
    ReleaseTarget,
    UpdateLimits,
    UpdateProgress,
)
from ._ports import ArtifactSource, DeltaSource, ModuleActivator
from ._run import FAILURES, UpdateRun, describe
from ._states import TERMINAL, Event, State, next_state, state_of
from ._tuf import TargetTrust, TrustedTarget
from ._verify import check_signature, check_spec, check_trusted, health_timeout_s

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

_log = logging.getLogger("fogline.agent.updater")


class Engine:
    """Runs updates through the state table; `Updater` decides when."""

    def __init__(
        self,
        layout: Layout,
        files: StateFiles,
        *,
        source: ArtifactSource,
        activator: ModuleActivator,
        trusted_keys: Callable[[], Mapping[str, "Ed25519PublicKey"]],
        key_scopes: Callable[[], Mapping[str, KeyScope]],
        report: Callable[[UpdateProgress], None],
        limits: UpdateLimits,
        crash_hook: Callable[[str], None] | None,
        machine: str | None,
        backoff: Callable[[], Backoff],
        sleep: Callable[[float], Awaitable[None]],
        tuf: TargetTrust | None = None,
    ) -> None:
        self._layout, self._files = layout, files
        self._tuf = tuf
        self._source, self._activator = source, activator
        self._trusted_keys = trusted_keys
        self._key_scopes = key_scopes
        self._report_to = report
        self._limits = limits
        self._hook = crash_hook or (lambda point: None)
        self._machine = machine
        self._backoff, self._sleep = backoff, sleep
        # Modules started through this engine and not stopped since: what
        # runs. `Updater.ensure` starts an installed release not in it.
        self.started: set[str] = set()
        self._work: Mapping[State, Callable[[UpdateRun], Awaitable[Event]]] = {
            State.DOWNLOAD: self._download,
            State.VERIFY: self._verify,
            State.INSTALL: self._install,
            State.ACTIVATE: self._activate,
            State.HEALTH: self._health,
            State.COMMIT: self._commit,
            State.ROLLBACK: self._rollback,
            State.CLEANUP: self._cleanup,
        }

    async def run(self, journal: Journal, state: State) -> Journal:
        """Drive `journal` from `state` to DONE or FAILED; return the final journal."""
        run = UpdateRun(journal)
        while state not in TERMINAL:
            run.journal = await self._save_journal(run.journal, state)
            self._hook(f"enter:{state.name}")
            self.report(run.journal, state)
            try:
                event = await self._work[state](run)
            except FAILURES as exc:
                retryable = isinstance(exc, ArtifactFetchError | OSError | TufRefusedError)
                event = run.fail(state, describe(exc), retryable=retryable)
            _log.info(
                "update.transition",
                extra={"fields": {"module": run.target.name, "state": state, "event": event.name}},
            )
            state = next_state(state, event)
        return await self._finish(run, state)

    async def _save_journal(self, journal: Journal, state: State) -> Journal:
        """Save `journal` as in `state`, durably, off the event loop.

        Each save is a write, a rename and two fsyncs, eight or more per
        update: on the loop they stalled everything else the agent does (its
        local actions, its reports) for as long as the disk took. Awaited, so
        the crash hook after it still runs once the save is durable.
        """
        return await in_thread(self._files.save_journal, journal, state=state.value)

    async def _finish(self, run: UpdateRun, state: State) -> Journal:
        j = run.journal
        if state is State.FAILED and j.error is not None and not j.retryable:
            # Recorded before the journal says FAILED: a crash in between
            # resumes CLEANUP and records it again, never loses it.
            failed_in = state_of(j.failed_in) or State.FAILED
            # Starting and the health gate run the release with its config
            # and env: another config or env deserves its own try.
            config_bound = failed_in in (State.ACTIVATE, State.HEALTH)
            await in_thread(
                self._files.save_failure,
                ReleaseFailure(
                    j.target.name,
                    j.target.version,
                    j.target.digest,
                    j.error,
                    failed_in,
                    time.time(),
                    deployment=j.target.deployment_key() if config_bound else None,
                ),
            )
            self._hook("failed:recorded")
        run.journal = await self._save_journal(j, state)
        self._hook(f"enter:{state.name}")
        self.report(run.journal, state)
        return run.journal

    def report(
        self,
        journal: Journal,
        state: State,
        *,
        detail: str = "",
        done: int = 0,
        total: int | None = None,
    ) -> None:
        t = journal.target
        error = journal.error if state in (State.ROLLBACK, State.CLEANUP, State.FAILED) else None
        self._report_to(
            UpdateProgress(t.name, t.version, t.digest, state, detail, done, total, error)
        )

    # -- the states' work ---------------------------------------------------------

    async def _trusted(self, run: UpdateRun) -> TrustedTarget | None:
        """What TUF metadata vouches for (None: no TUF root pinned, the release
        keys decide), asked once per update in this process.

        Raises:
            TufRefusedError: the release is not vouched for, or for other bytes.
        """
        if self._tuf is None:
            return None
        if run.trusted is None:
            target = run.target
            run.trusted = await self._tuf.lookup(target.name, target.version)
            check_trusted(target, run.trusted)
        return run.trusted

    async def _download(self, run: UpdateRun) -> Event:
        target = run.target
        # Asked before anything is fetched: once TUF is on, no byte of a
        # release its metadata does not name is downloaded.
        trusted = await self._trusted(run)
        if self._install_path(target).is_dir():
            return Event.OK  # installed earlier from bytes with this digest
        throttle = Throttle(self._limits.progress_interval_s)

        def on_chunk(size: int, total: int | None) -> None:
            self._hook("download:chunk")
            if throttle.ready(force=size == total):
                self.report(
                    run.journal, State.DOWNLOAD, detail="downloading", done=size, total=total
                )

        plan = DownloadPlan(
            source=self._source,
            partial=self._layout.partial(target.digest),
            archive=self._layout.archive(target.digest),
            # Endless data: never more bytes than the signed length.
            max_bytes=min(self._limits.max_download_bytes, trusted.length)
            if trusted is not None
            else self._limits.max_download_bytes,
            attempts=self._limits.download_attempts,
            backoff=self._backoff(),
            sleep=self._sleep,
            on_chunk=on_chunk,
        )
        if not await self._from_delta(run, plan):
            run.hashed = await download(target, plan)
        self._hook("download:complete")
        return Event.OK

    async def _from_delta(self, run: UpdateRun, plan: DownloadPlan) -> bool:
        """Rebuild the archive from the installed release's kept archive and a
        delta; False: the full download must (see _delta)."""
        target, prior = run.target, run.journal.prior
        source = self._source
        if (
            not self._limits.delta_updates
            or prior is None
            or not isinstance(source, DeltaSource)
            or plan.archive.exists()
            or plan.partial.exists()  # a full download to resume
        ):
            return False
        delta = DeltaPlan(
            source=source,
            base=base_path(self._layout, target.name, prior.target.digest),
            base_digest=prior.target.digest,
            delta=delta_path(self._layout, target.digest),
            archive=plan.archive,
            max_bytes=plan.max_bytes if target.size is None else min(plan.max_bytes, target.size),
            max_tar_bytes=self._limits.max_delta_tar_bytes,
            hook=self._hook,
        )
        if not await try_delta(target, delta):
            return False
        self.report(run.journal, State.DOWNLOAD, detail="rebuilt from a delta")
        return True

    async def _verify(self, run: UpdateRun) -> Event:
        target = run.target
        archive = self._layout.archive(target.digest)
        if not archive.exists() and self._install_path(target).is_dir():
            held = target.digest  # the install was unpacked from checked bytes
        elif run.hashed is not None:
            # DOWNLOAD hashed these bytes in this process and fsynced them
            # before naming the archive: no crash can have come in between.
            held = run.hashed
        else:
            # Hash again: these are the bytes INSTALL will unpack, possibly
            # after a power cut since DOWNLOAD checked them.
            held = await in_thread(sha256_file, archive)
        trusted = await self._trusted(run)
        if trusted is not None:
            # TUF is on: the release keys of the desired state grant nothing.
            check_trusted(target, trusted, held)
        else:
            check_signature(target, held, self._trusted_keys(), self._key_scopes())
        return Event.OK

    async def _install(self, run: UpdateRun) -> Event:
        target = run.target
        dest = self._install_path(target)
        if dest.is_dir():  # complete by construction: unpack and delete are atomic renames
            run.spec = await in_thread(self.spec_of, target.name, dest)
            check_spec(target, run.spec, self._machine)
            return Event.OK
        archive = self._layout.archive(target.digest)
        # Imported when an update comes: the agent idles for months without
        # one, and the unpacking code is resident memory it would never use.
        from fogline.artifact import read_module_spec_from_archive, unpack_release

        # Refuse a wrong name, version or architecture before writing anything.
        spec = await in_thread(read_module_spec_from_archive, archive)
        check_spec(target, spec, self._machine)
        # unpack fsyncs dest's parent, not the parent's parent
        await in_thread(make_dirs, dest.parent)
        self._hook("unpack")
        run.spec = await in_thread(
            unpack_release,
            archive,
            dest,
            max_bytes=self._limits.max_install_bytes,
            max_files=self._limits.max_install_files,
        )
        # Parsed again once, for the copy the agent's next starts read.
        await in_thread(self.spec_of, target.name, dest)
        self._hook("install:unpacked")
        return Event.OK

    async def _activate(self, run: UpdateRun) -> Event:
        target, prior = run.target, run.journal.prior
        spec = await self._spec_of(run)
        module_dir = self._layout.module_dir(target.name)
        if prior is not None:
            await self.stop(target.name)
        self._hook("activate:stopped")
        if prior is not None and prior.install_dir != target.install_name:
            await in_thread(point_link, module_dir / PREVIOUS, prior.install_dir)
        self._hook("before-switch")
        # The journal already says ACTIVATE: a power cut after this rename
        # resumes in ROLLBACK, which switches back.
        await in_thread(point_link, module_dir / CURRENT, target.install_name)
        self._hook("after-switch")
        await self.start(target.name, self._install_path(target), spec, target)
        self._hook("activate:started")
        return Event.OK

    async def _health(self, run: UpdateRun) -> Event:
        target = run.target
        timeout_s = health_timeout_s(target, await self._spec_of(run))
        try:
            async with asyncio.timeout(timeout_s + self._limits.health_slack_s):
                healthy = await self._activator.wait_healthy(target.name, timeout_s)
            why = f"not healthy within {timeout_s:g}s"
        except TimeoutError:
            healthy, why = False, f"the health check did not answer within {timeout_s:g}s"
        except Exception as exc:  # the port's failure is the check's verdict
            healthy, why = False, f"the health check failed: {describe(exc)}"
        self._hook("health:checked")
        if healthy:
            return Event.OK
        return run.fail(State.HEALTH, why, retryable=False)

    async def _commit(self, run: UpdateRun) -> Event:
        target = run.target
        installed = InstalledRelease(target, target.install_name)
        await in_thread(self._files.save_installed, target.name, installed)
        self._hook("commit:recorded")
        await prune_after_commit(self._layout, target, delta_updates=self._limits.delta_updates)
        self._hook("commit:pruned")
        return Event.OK

    async def _rollback(self, run: UpdateRun) -> Event:
        j = run.journal
        name = j.target.name
        module_dir = self._layout.module_dir(name)
        try:
            await self.stop(name)
        except ActivationError as exc:  # it may be down already; carry on restoring
            _log.warning(
                "update.rollback_stop_failed", extra={"fields": {"module": name}}, exc_info=exc
            )
        await restore_links(self._layout, j)
        await in_thread(self._files.save_installed, name, j.prior)
        self._hook("rollback:switched")
        if j.prior is not None:
            install = module_dir / j.prior.install_dir
            try:
                spec = await in_thread(self.spec_of, name, install)
                await self.start(name, install, spec, j.prior.target)
            except FAILURES as exc:
                # The links and the record are right; report that the old
                # version did not start rather than pretend it runs.
                run.fail(
                    State.ROLLBACK,
                    f"restarting {j.prior.target.version}: {describe(exc)}",
                    retryable=False,
                )
        self._hook("rollback:started")
        return Event.OK

    async def _cleanup(self, run: UpdateRun) -> Event:
        j = run.journal
        await remove_unused_install(self._layout, j)
        if not j.retryable:
            # Keep a partial or checked archive only for a retry to resume from.
            await drop_download(self._layout, j.target)
        await best_effort(sweep_leftovers, self._layout.module_dir(j.target.name))
        self._hook("cleanup:removed")
        return Event.OK if j.error is None else Event.FAIL

    # -- helpers ------------------------------------------------------------------

    def _install_path(self, target: ReleaseTarget) -> Path:
        return install_path(self._layout, target)

    async def _spec_of(self, run: UpdateRun) -> ModuleSpec:
        if run.spec is None:
            run.spec = await in_thread(
                self.spec_of, run.target.name, self._install_path(run.target)
            )
        return run.spec

    def spec_of(self, name: str, install: Path) -> ModuleSpec:
        """The module file of `name`'s install `install`, through its parsed copy (blocking).

        Raises:
            ModuleSpecError: unreadable or invalid.
        """
        return read_spec(self._files, name, install)

    async def start(
        self, name: str, install: Path, spec: ModuleSpec, target: ReleaseTarget
    ) -> None:
        """Start `name` through the activator and count it in `started`.

        Raises:
            ActivationError: the activator could not start it.
        """
        try:
            await self._activator.start(name, install, spec, target)
        except Exception as exc:
            raise ActivationError(f"start failed: {describe(exc)}") from exc
        self.started.add(name)

    async def stop(self, name: str) -> None:
        """Stop `name` through the activator; it leaves `started`.

        Raises:
            ActivationError: the activator could not stop it.
        """
        try:
            await self._activator.stop(name)
        except Exception as exc:
            raise ActivationError(f"stopping the running version failed: {describe(exc)}") from exc
        self.started.discard(name)
