"""Drift: compare each module's files, config and process with its target,
and under `drift: correct` put them back.
"""

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from fogline._log import event
from fogline.artifact import delete_tree, sha256_file
from fogline.protocol import DriftKind, DriftPolicy, ModuleState, canonical_json

from ..supervisor import Supervisor
from ..updater import ArtifactSource, ReleaseTarget, Updater
from ._activator import SupervisorActivator
from ._drift import Drift, FileBaselines

log = logging.getLogger("fogline.agent.modules")
MAX_REPAIR_BYTES: Final = 2 * 1024**3
MAX_REPAIR_FILES: Final = 100_000


class DriftRepair:
    """The module manager's drift checks and repairs (ModuleManager's base).

    What it uses of the manager: the targets and drift policy of the applied
    desired state, the supervisor and its activator, the updater, the file
    baselines, and the artifact source and scratch directory for repairs.
    """

    targets: dict[str, ReleaseTarget]
    drift_policy: DriftPolicy | str
    drift: list[Drift]
    corrections: int
    supervisor: Supervisor
    activator: SupervisorActivator
    updater: Updater
    baselines: FileBaselines
    source: ArtifactSource
    scratch_dir: Path
    on_change: Callable[[], None]

    async def check_drift(self) -> list[Drift]:
        """Compare files, processes and config with the desired state; correct
        what is found when the policy says so. Returns what was found."""
        found: list[Drift] = []
        statuses = self.supervisor.statuses()
        for name, target in self.targets.items():
            try:
                found += await self._drift_of(name, target, statuses.get(name))
            except Exception as exc:
                # Reported as the module's drift; the other modules are
                # still checked and the loop goes on.
                found.append(Drift(name, DriftKind.ERROR, f"drift check failed: {_describe(exc)}"))
        if found != self.drift:
            self.drift = found
            for drift in found:
                event(log, "drift.found", logging.WARNING, **drift.to_dict())
            self.on_change()
        repairable = [d for d in found if d.kind is not DriftKind.ERROR]
        # Any other policy, one this version does not know included, only reports.
        if repairable and self.drift_policy == DriftPolicy.CORRECT:
            for drift in repairable:
                await self._correct(drift)
            self.corrections += len(repairable)
        return found

    async def _drift_of(self, name: str, target: ReleaseTarget, status: Any) -> list[Drift]:
        """The drift of one module.

        Raises:
            OSError, JournalCorruptError: its files or state cannot be read.
        """
        found: list[Drift] = []
        installed = self.updater.installed(name)
        path = self.updater.install_path(name)
        if installed is None or path is None or installed.target.digest != target.digest:
            return found  # not (yet) on this release: the updater's business, not drift
        detail = await asyncio.to_thread(self.baselines.check, name, target.digest, path)
        if detail:
            found.append(Drift(name, DriftKind.FILES, detail))
        config_path = self.activator.config_path(name)
        expected = canonical_json(dict(target.config))
        try:
            actual = config_path.read_bytes()
        except OSError:
            actual = b""
        if actual != expected:
            found.append(
                Drift(name, DriftKind.CONFIG, f"{config_path} differs from the desired config")
            )
        if name in self.activator.desired and self._not_coming_back(name, status):
            found.append(
                Drift(
                    name,
                    DriftKind.PROCESS,
                    f"not running ({status.state if status else 'unknown'})",
                )
            )
        return found

    def _not_coming_back(self, name: str, status: Any) -> bool:
        """A desired module that is down and that the supervisor will not restart
        by itself. A crash under `restart: always` is the supervisor's to handle
        (with its backoff and crash-loop accounting), not drift."""
        if status is None or status.state is ModuleState.STOPPED:
            return True
        if status.state is not ModuleState.EXITED:
            return False
        policy = self.activator.desired[name].restart.policy
        return policy == "never" or (policy == "on-failure" and status.last_exit_code == 0)

    async def _correct(self, drift: Drift) -> None:
        target = self.targets[drift.module]
        try:
            if drift.kind is DriftKind.FILES:
                await self._reinstall(target)
            elif drift.kind is DriftKind.CONFIG:
                await asyncio.to_thread(self.activator.write_config, target.name, target.config)
            await self.supervisor.stop(
                target.name
            ) if target.name in self.activator.desired else None
            if target.name in self.activator.desired:
                await self.supervisor.apply(dict(self.activator.desired))
            event(log, "drift.corrected", module=drift.module, kind=drift.kind)
        except Exception as exc:  # a failed repair is reported, tried again next round
            event(log, "drift.correct_failed", logging.ERROR, module=drift.module, error=str(exc))

    async def _reinstall(self, target: ReleaseTarget) -> None:
        """Put the release's own files back: fetch, check the digest, unpack, swap."""
        install_dir = self.updater.install_path(target.name)
        assert install_dir is not None
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        archive = self.scratch_dir / f"{target.digest.removeprefix('sha256:')}.tar.zst"
        archive.unlink(missing_ok=True)
        await self.source.fetch(target.digest, archive, offset=0, on_bytes=lambda _n: None)
        if await asyncio.to_thread(sha256_file, archive) != target.digest:
            archive.unlink(missing_ok=True)
            raise RuntimeError(f"reinstall of {target.name}: downloaded digest does not match")
        fresh = install_dir.with_name(install_dir.name + ".repair")
        stale = install_dir.with_name(install_dir.name + ".drifted")
        for leftover in (fresh, stale):
            await asyncio.to_thread(delete_tree, leftover)
        # Imported when a repair comes, not at idle (see fogline/_lazy.py).
        from fogline.artifact import unpack_release

        await asyncio.to_thread(
            unpack_release, archive, fresh, max_bytes=MAX_REPAIR_BYTES, max_files=MAX_REPAIR_FILES
        )
        os.replace(install_dir, stale)
        os.replace(fresh, install_dir)
        await asyncio.to_thread(delete_tree, stale)
        archive.unlink(missing_ok=True)
        await asyncio.to_thread(self.baselines.record, target.name, target.digest, install_dir)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]
