"""`Updater`: move modules to target releases and recover after a crash.

On top of the Engine (the state table's shell) it decides when to run:
`ensure` starts an update unless the target already runs or already
failed, and starts the installed release again when it is the target but
was stopped (`stop`: the module left the desired state); `recover` resumes
or undoes what a crash interrupted, with the save-count guard, then starts
every module's installed version. From which state a journal runs, new or
resumed, is decided in `_resume`.
"""

import asyncio
import logging
import platform
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fogline._durable import make_dirs
from fogline.agent._backoff import Backoff
from fogline.protocol import KeyScope

from ._blocking import in_thread
from ._engine import Engine
from ._errors import JournalCorruptError, ReleaseRejectedError
from ._journal import Journal, StateFiles
from ._layout import CURRENT, PREVIOUS, Layout, point_link, read_link, remove_file, sweep_leftovers
from ._models import (
    InstalledRelease,
    ReleaseFailure,
    ReleaseTarget,
    UpdateLimits,
    UpdateProgress,
    UpdateResult,
)
from ._ports import ArtifactSource, ModuleActivator
from ._resume import (
    crash_loop,
    failed_after_commit,
    guard_trips,
    is_deferred,
    new_journal,
    result_of,
    resume_point,
)
from ._run import describe
from ._states import State, state_of
from ._tuf import TargetTrust
from ._verify import check_downgrade

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

_log = logging.getLogger("fogline.agent.updater")

_MACHINE: Final = platform.machine()


class Updater:
    """The node's crash-safe update engine, one journal per module under `root`.

    Call `recover()` once at start, before `ensure`. Updates of different
    modules may run concurrently; updates of one module are serialised.
    `trusted_keys` and `key_scopes` (which modules each key id may sign; a
    key absent from it signs any) are asked at each verification, unless
    `tuf` is given: then TUF metadata alone says which bytes a release is,
    asked before the download, and the keys grant nothing.
    """

    def __init__(
        self,
        root: Path,
        *,
        source: ArtifactSource,
        activator: ModuleActivator,
        trusted_keys: Callable[[], Mapping[str, "Ed25519PublicKey"]],
        key_scopes: Callable[[], Mapping[str, KeyScope]] | None = None,
        on_progress: Callable[[UpdateProgress], None] | None = None,
        limits: UpdateLimits | None = None,
        crash_hook: Callable[[str], None] | None = None,
        machine: str | None = _MACHINE,
        backoff: Callable[[], Backoff] = Backoff,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tuf: TargetTrust | None = None,
    ) -> None:
        self._layout = Layout(Path(root))
        self._files = StateFiles(Path(root))
        self._limits = limits or UpdateLimits()
        self._on_progress = on_progress
        self._engine = Engine(
            self._layout,
            self._files,
            source=source,
            activator=activator,
            trusted_keys=trusted_keys,
            key_scopes=key_scopes or dict,
            report=self._report,
            limits=self._limits,
            crash_hook=crash_hook,
            machine=machine,
            backoff=backoff,
            sleep=sleep,
            tuf=tuf,
        )
        self._locks: dict[str, asyncio.Lock] = {}

    # -- queries ----------------------------------------------------------------

    def installed(self, name: str) -> InstalledRelease | None:
        """The committed release of `name`, or None.

        Raises:
            JournalCorruptError: installed.json is unreadable.
        """
        return self._files.load_installed(name)

    def install_path(self, name: str) -> Path | None:
        """The directory `name` runs from, or None when nothing is installed."""
        installed = self._files.load_installed(name)
        return None if installed is None else self._layout.module_dir(name) / installed.install_dir

    def journal_state(self, name: str) -> State | None:
        """The state of the last update of `name`'s journal (None: never updated)."""
        journal = self._files.load_journal(name)
        return None if journal is None else state_of(journal.state)

    def failure(self, name: str) -> ReleaseFailure | None:
        """The recorded failed release of `name`, which `ensure` will not retry."""
        return self._files.load_failure(name)

    def forget_failure(self, name: str) -> bool:
        """Allow the failed release of `name` to be tried again; True if one was recorded."""
        return self._files.clear_failure(name)

    # -- ensure -----------------------------------------------------------------

    async def ensure(self, target: ReleaseTarget) -> UpdateResult:
        """Move `target.name` to `target` and return how it ended (DONE or FAILED).

        A no-op when the target already runs. When it is the installed
        release but does not run (stopped with `stop`), starts it again: no
        download and no health gate, since it passed its gate with this
        config and env; the supervisor reports its health from there. Returns
        a recorded failure of the same release at once, without trying
        again (with the same config and env, when it failed to start or to
        be healthy: another config is tried). Failures of the update are
        reported in the result and through `on_progress`, not raised.

        Raises:
            JournalCorruptError: the installed or failure record is unreadable.
            OSError: the updater's own directory cannot be written.
        """
        async with self._lock(target.name):
            previous = self._load_journal(target.name)
            if previous is not None and not previous.is_terminal:
                # An update recover() did not finish (not called, or a
                # cancelled ensure): finish it before starting another.
                previous = await self._resume(previous)
            failure = self._files.load_failure(target.name)
            if failure is not None:
                if failure.holds_for(target):
                    return self._remembered(target, failure)
                # Another release is targeted, or the same with another
                # config or env after it failed to start or to be healthy.
                self._files.clear_failure(target.name)
            installed = self._files.load_installed(target.name)
            module_dir = self._layout.module_dir(target.name)
            if (
                installed is not None
                and installed.target.same_deployment(target)
                and (module_dir / installed.install_dir).is_dir()
            ):
                if target.name in self._engine.started:
                    self._report(_progress(target, State.DONE, "already installed"))
                    return UpdateResult(target.name, target.version, target.digest, State.DONE)
                return await self._start_again(target, installed)
            try:
                check_downgrade(target, installed.target.version if installed else None)
            except ReleaseRejectedError as exc:
                # Refused before anything is fetched or journaled: the installed
                # version keeps running, and nothing is recorded, so the same
                # release applies once the deployment allows the downgrade.
                self._report(_progress(target, State.FAILED, "downgrade refused", error=str(exc)))
                return UpdateResult(
                    target.name,
                    target.version,
                    target.digest,
                    State.FAILED,
                    error=str(exc),
                    failed_in=State.VERIFY,
                )
            journal = new_journal(target, installed, previous, read_link(module_dir / PREVIOUS))
            max_saves = self._limits.max_saves
            if guard_trips(journal, max_saves):
                final = await self._engine.run(crash_loop(journal, max_saves), State.FAILED)
            else:
                final = await self._engine.run(journal, State.DOWNLOAD)
            return result_of(final)

    async def _start_again(
        self, target: ReleaseTarget, installed: InstalledRelease
    ) -> UpdateResult:
        """Start the committed release of a module that was stopped.

        Not journaled: nothing on disk changes but the `current` link, which
        the record already names. A failure to start is the result's, not
        recorded as a failed release (the release passed its health gate):
        the next `ensure` tries again.
        """
        try:
            await self._start_committed(target.name, installed)
        except Exception as exc:
            error = f"starting the installed {installed.target.version} again: {describe(exc)}"
            self._report(_progress(target, State.FAILED, "start failed", error=error))
            return UpdateResult(
                target.name,
                target.version,
                target.digest,
                State.FAILED,
                error=error,
                failed_in=State.ACTIVATE,
                retryable=True,
            )
        self._report(_progress(target, State.DONE, "installed; started again"))
        return UpdateResult(target.name, target.version, target.digest, State.DONE)

    # -- stop -------------------------------------------------------------------

    async def stop(self, name: str) -> None:
        """Stop `name`: it is no longer desired. A no-op when it does not run.

        Its install and installed record stay: `ensure` of the same release
        starts it again without a download, and a later target is still
        checked against it (a removal is no way around the downgrade rule).
        Waits for an update of `name` in flight to end first.

        Raises:
            ActivationError: the activator could not stop it.
        """
        async with self._lock(name):
            await self._engine.stop(name)

    # -- a verdict after the commit ---------------------------------------------

    async def roll_back_committed(self, name: str, digest: str, reason: str) -> UpdateResult | None:
        """Undo the committed update of `name` to the release `digest`, found unhealthy
        after its commit, and record it failed.

        For the agent's own release: its health is the new agent's trial, which
        the launcher runs after the agent that committed it has exited. This
        takes the table's rollback path from HEALTH's failure (ROLLBACK ->
        CLEANUP -> FAILED, journaled, resumed by `recover` after a crash), so
        the links and the installed record name the prior release again and
        `ensure` of the same release returns the failure without trying.

        Returns None when the last update of `name` is not that release, DONE
        (it was undone already, or another release came since).

        Raises:
            JournalCorruptError: the installed or failure record is unreadable.
            OSError: the updater's own directory cannot be written.
        """
        async with self._lock(name):
            journal = self._load_journal(name)
            if journal is None or journal.state != State.DONE or journal.target.digest != digest:
                return None
            failed = failed_after_commit(journal, reason)
            return result_of(await self._engine.run(failed, State.ROLLBACK))

    # -- recover ----------------------------------------------------------------

    async def recover(self, *, wanted: Collection[str] | None = None) -> list[UpdateResult]:
        """Resume or undo interrupted updates, then start every installed module,
        or those in `wanted` (the last desired state's modules): a module
        removed from it is installed still, and must not run again at boot.

        Re-reports the final state of every module's last update, since the
        crash may have come before the report. Returns the results of the
        updates it finished. One module's failure to recover (a leftover that
        cannot be deleted, a bug) is that module's FAILED result: the other
        modules still recover and start.

        Raises:
            OSError: the updater's own directory cannot be written.
        """
        # Durably: an install fsynced inside a directory whose own name was
        # not is lost with it in a power cut (tests/test_power_loss.py).
        await in_thread(make_dirs, self._layout.downloads)
        await in_thread(make_dirs, self._layout.modules)
        names = sorted(set(self._files.module_names()) | set(self._layout.module_names()))
        results: list[UpdateResult] = []
        deferred: list[Journal] = []
        for name in names:
            async with self._lock(name):
                try:
                    await self._recover_one(name, results, deferred)
                except Exception as exc:
                    results.append(self._recover_failed(name, exc))
        try:
            self._sweep_downloads(deferred)
        except Exception as exc:  # stale downloads only cost disk until the next start
            _log.error("update.sweep_failed", exc_info=exc)
        for name in names:
            if name not in self._engine.started and (wanted is None or name in wanted):
                await self._start_installed(name)
        for journal in deferred:
            async with self._lock(journal.target.name):
                try:
                    results.append(result_of(await self._resume(journal)))
                except Exception as exc:
                    results.append(self._recover_failed(journal.target.name, exc))
        return results

    async def _recover_one(
        self, name: str, results: list[UpdateResult], deferred: list[Journal]
    ) -> None:
        await in_thread(sweep_leftovers, self._layout.module_dir(name))
        journal = self._load_journal(name)
        if journal is None:
            return
        if journal.is_terminal:
            self._engine.report(journal, State(journal.state))
        elif is_deferred(journal, self._limits.max_saves):
            deferred.append(journal)
        else:
            results.append(result_of(await self._resume(journal)))

    def _recover_failed(self, name: str, exc: Exception) -> UpdateResult:
        _log.error("update.recover_failed", extra={"fields": {"module": name}}, exc_info=exc)
        try:
            journal = self._files.load_journal(name)
        except Exception:
            journal = None
        version, digest = (
            (journal.target.version, journal.target.digest) if journal is not None else ("", "")
        )
        error = f"recovering {name} at start failed: {type(exc).__name__}: {exc}"[:1000]
        return UpdateResult(name, version, digest, State.FAILED, error=error)

    async def _resume(self, journal: Journal) -> Journal:
        """Run `journal` from where RESUME (or the save-count guard) says."""
        resumed, state = resume_point(journal, self._limits.max_saves)
        if not guard_trips(journal, self._limits.max_saves):
            fields = {"module": journal.target.name, "from": journal.state, "to": state}
            _log.info("update.resume", extra={"fields": fields})
        return await self._engine.run(resumed, state)

    async def _start_installed(self, name: str) -> None:
        try:
            installed = self._files.load_installed(name)
        except JournalCorruptError as exc:
            _log.error(
                "update.installed_unreadable", extra={"fields": {"module": name}}, exc_info=exc
            )
            return
        if installed is None:
            return
        try:
            await self._start_committed(name, installed)
        except Exception as exc:  # one module failing to start must not stop the rest
            _log.error("update.start_failed", extra={"fields": {"module": name}}, exc_info=exc)

    async def _start_committed(self, name: str, installed: InstalledRelease) -> None:
        """Start the release `installed` records, counted as running.

        Raises:
            ActivationError, ArtifactError, OSError: it did not start.
        """
        module_dir = self._layout.module_dir(name)
        install = module_dir / installed.install_dir
        # The record is the truth once no update is in flight; repair a
        # link a guard trip may have left on the failed version.
        await in_thread(point_link, module_dir / CURRENT, installed.install_dir)
        spec = await in_thread(self._engine.spec_of, name, install)
        await self._engine.start(name, install, spec, installed.target)

    def _sweep_downloads(self, deferred: list[Journal]) -> None:
        """Delete downloads no update will resume (after a crash, or a target change)."""
        keep: set[str] = {j.target.digest for j in deferred}
        for name in self._files.module_names():
            journal = self._load_journal(name)
            if journal is not None and (not journal.is_terminal or journal.retryable):
                keep.add(journal.target.digest)
        for path in self._layout.downloads.iterdir():
            digest = path.name.removesuffix(".partial").removesuffix(".tar.zst")
            if digest not in keep:
                remove_file(path)

    # -- helpers ----------------------------------------------------------------

    def _load_journal(self, name: str) -> Journal | None:
        try:
            return self._files.load_journal(name)
        except JournalCorruptError as exc:
            # Without a journal the installed record still says what to run.
            _log.error(
                "update.journal_unreadable", extra={"fields": {"module": name}}, exc_info=exc
            )
            self._files.set_aside_journal(name)
            return None

    def _remembered(self, target: ReleaseTarget, failure: ReleaseFailure) -> UpdateResult:
        detail = "not retried: this release failed before (target another or forget_failure)"
        self._report(_progress(target, State.FAILED, detail, error=failure.reason))
        return UpdateResult(
            target.name,
            target.version,
            target.digest,
            State.FAILED,
            error=failure.reason,
            failed_in=failure.failed_in,
            remembered=True,
        )

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _report(self, progress: UpdateProgress) -> None:
        if self._on_progress is None:
            return
        try:
            self._on_progress(progress)
        except Exception as exc:  # a broken reporter must not break an update
            _log.warning("update.report_failed", exc_info=exc)


def _progress(
    target: ReleaseTarget, state: State, detail: str, *, error: str | None = None
) -> UpdateProgress:
    return UpdateProgress(target.name, target.version, target.digest, state, detail, error=error)
