"""Modules on the node: desired releases -> updater -> supervisor, plus drift.

The updater moves each module to its target release (download, verify,
install side by side, switch, health-gate, commit or roll back); the
supervisor keeps the committed version running. This module adapts one to
the other and turns the desired-state document's `modules` into targets.

Release keys: the node trusts the keys the hub gave it at enrollment and the
keys listed in its desired state (`releaseKeys`), both received over mTLS.
A signature thus protects against a tampered artifact store or transit, not
against a compromised hub (see docs/security.md).

Key scopes (which modules a key may sign) come from the same two sources:
`release_key_scopes` pinned at enrollment and `releaseKeyScopes` of the
desired state. A key listed by both must be allowed by both: the desired
state can narrow a pinned key's scope, never widen it, so a hub that later
lists a pinned key unscoped does not let it sign other modules on this node.
"""

import asyncio
import base64
import logging
import os
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fogline._log import event
from fogline.artifact import ModuleSpec, delete_tree, key_id, sha256_file, unpack_release
from fogline.protocol import (
    DesiredStateDoc,
    KeyScope,
    canonical_json,
    parse_key_scopes,
    union_of_patterns,
)

from .._files import write_atomic
from ..supervisor import (
    HealthCheck,
    HealthKind,
    ModuleRuntime,
    ModuleUser,
    Resources,
    RestartPolicy,
    RunSpec,
    Supervisor,
)
from ..updater import (
    ArtifactSource,
    HttpArtifactSource,
    InstalledRelease,
    ReleaseTarget,
    State,
    UpdateProgress,
    Updater,
    UpdateResult,
)
from ._drift import Drift, FileBaselines

log = logging.getLogger("fogline.agent.modules")
PROGRESS_REPORT_MIN_S: Final = 0.5
MAX_REPAIR_BYTES: Final = 2 * 1024**3
MAX_REPAIR_FILES: Final = 100_000


def run_spec(
    name: str,
    install_dir: Path,
    spec: ModuleSpec,
    target: ReleaseTarget,
    config_path: Path,
    data_dir: Path | None = None,
) -> RunSpec:
    """The supervisor's view of a release: what to run and how to judge it."""
    health = None
    if spec.health is not None:
        h = spec.health
        kind: HealthKind
        value: str | int | tuple[str, ...] | float
        if h.http:
            kind, value = "http", h.http
        elif h.tcp:
            kind, value = "tcp", h.tcp
        elif h.command:
            kind, value = "command", tuple(h.command)
        else:
            kind, value = "uptime", h.uptime_s or 0.0
        health = HealthCheck(
            kind=kind, target=value, timeout_s=h.timeout_s, interval_s=h.interval_s
        )
    return RunSpec(
        name=name,
        version=str(spec.version),
        workdir=install_dir,
        command=tuple(spec.command or ()),
        env={**spec.env, **target.env},
        config_path=config_path,
        data_dir=data_dir,
        health=health,
        start_grace_s=spec.start_grace_s,
        stop_grace_s=spec.stop_grace_s,
        restart=RestartPolicy(
            policy=spec.restart.policy,
            initial_backoff_s=spec.restart.backoff.initial_s,
            max_backoff_s=spec.restart.backoff.max_s,
        ),
        resources=Resources(
            memory_mb=spec.resources.memory_mb,
            open_files=spec.resources.open_files,
            cpu_seconds=spec.resources.cpu_seconds,
        ),
    )


def let_through(root: Path, target: Path) -> None:
    """Give group and others search permission (--x) on `root` and every
    directory below it on the way to `target`, `target` included: they may
    then reach what lies there, not list or change it.

    For a module user other than the agent's: the agent's data dir and what
    it creates are private (umask 0077) unless opened this way.
    """
    current = root
    for part in ("", *target.relative_to(root).parts):
        current = current / part if part else current
        mode = stat.S_IMODE(os.lstat(current).st_mode)
        if mode & 0o011 != 0o011:
            os.chmod(current, mode | 0o011)  # noqa: S103 - search only: no read, no write


class SupervisorActivator:
    """The updater's ModuleActivator, backed by the supervisor.

    Model and config bundles have no process: activating them is the
    updater's atomic switch of the `current` link, and they are healthy.

    With a `module_user` other than the agent's, the module gets a data dir
    of its own (`data_root/<name>`, HOME and FOGLINE_DATA), its config file
    is readable by the user's group (0640) and the way from `node_root` to
    its install and config is opened for search; nothing else of the node's.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        config_dir: Path,
        *,
        node_root: Path | None = None,
        module_user: ModuleUser | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.config_dir = config_dir
        self.node_root = node_root
        self.module_user = module_user if module_user and not module_user.is_agent_user else None
        self.desired: dict[str, RunSpec] = {}
        self.bundles: set[str] = set()

    def config_path(self, name: str) -> Path:
        return self.config_dir / f"{name}.json"

    def data_dir(self, name: str) -> Path | None:
        if self.node_root is None:
            return None
        return self.node_root / "module-data" / name

    def write_config(self, name: str, config: Mapping[str, Any]) -> None:
        """Write a module's config file, readable by the module and the agent only."""
        if self.module_user is None:
            write_atomic(self.config_path(name), canonical_json(dict(config)))
            return
        write_atomic(
            self.config_path(name),
            canonical_json(dict(config)),
            0o640,
            group=self.module_user.gid,
        )

    async def start(
        self, name: str, install_dir: Path, spec: ModuleSpec, target: ReleaseTarget
    ) -> None:
        path = self.config_path(name)
        await asyncio.to_thread(self.write_config, name, target.config)
        if spec.kind != "service":
            self.bundles.add(name)
            return
        if self.module_user is not None and self.node_root is not None:
            for where in (install_dir, self.config_dir):
                await asyncio.to_thread(let_through, self.node_root, where)
        self.desired[name] = run_spec(name, install_dir, spec, target, path, self.data_dir(name))
        await self.supervisor.apply(dict(self.desired))

    async def stop(self, name: str) -> None:
        self.bundles.discard(name)
        if self.desired.pop(name, None) is not None:
            await self.supervisor.apply(dict(self.desired))

    async def wait_healthy(self, name: str, timeout_s: float) -> bool:
        if name in self.bundles:
            return True
        return await self.supervisor.wait_healthy(name, timeout_s)


def targets_from(doc: Mapping[str, Any]) -> list[ReleaseTarget]:
    """Release targets for the `modules` of a desired-state document.

    A module may go below its installed version when its entry says
    `allowDowngrade: true`, or when the whole document is a rollout's
    rollback (the hub marks it `rollback: {rollout: ID}`).
    """
    targets = []
    rollback = isinstance(doc.get("rollback"), Mapping)
    for entry in doc.get("modules", []):
        signature = entry.get("signature")
        targets.append(
            ReleaseTarget(
                name=entry["name"],
                version=entry["version"],
                digest=entry["digest"],
                signature=orjson.dumps(signature) if isinstance(signature, dict) else b"",
                config=entry.get("config") or {},
                env=entry.get("env") or {},
                allow_downgrade=rollback or entry.get("allowDowngrade") is True,
            )
        )
    return targets


def keys_from(encoded: Mapping[str, str]) -> dict[str, Ed25519PublicKey]:
    return {kid: key for kid, (key, _names) in _keys_by_id(encoded).items()}


def _keys_by_id(encoded: Mapping[str, Any]) -> dict[str, tuple[Ed25519PublicKey, list[str]]]:
    keys: dict[str, tuple[Ed25519PublicKey, list[str]]] = {}
    for name, value in encoded.items():
        try:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(value, validate=True))
        except (ValueError, TypeError):
            continue  # a malformed key trusts nothing; the hub validated it anyway
        keys.setdefault(key_id(key), (key, []))[1].append(str(name))
    return keys


def scopes_from(
    sources: list[tuple[Mapping[str, Any], Mapping[str, tuple[str, ...]]]],
) -> dict[str, KeyScope]:
    """Each key id's scope over trust sources of (key name -> base64 key,
    key name -> patterns): within a source, what any listing of the key
    allows; across sources, only what every source listing it allows."""
    scopes: dict[str, KeyScope] = {}
    for keys, patterns in sources:
        for kid, (_key, names) in _keys_by_id(keys).items():
            granted = union_of_patterns(patterns.get(name) for name in names)
            scopes[kid] = scopes.get(kid, KeyScope()).narrowed(KeyScope.of(granted))
    return scopes


class ModuleManager:
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
    ) -> None:
        self.baselines = baselines
        self.source = source  # for repairs of drifted files
        self.scratch_dir = scratch_dir
        self.targets: dict[str, ReleaseTarget] = {}
        self.drift_policy = "report"
        self.drift: list[Drift] = []
        self.corrections = 0
        self.supervisor = supervisor
        self.activator = activator
        self.pinned_keys = dict(pinned_keys)
        self.pinned_scopes = parse_key_scopes(dict(pinned_scopes or {}))
        self.doc_keys: dict[str, str] = {}
        self.doc_scopes: dict[str, tuple[str, ...]] = {}
        self.on_change = on_change
        self.progress: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self._last_progress_report = 0.0
        self.updater = updater_factory(self)

    def trusted_keys(self) -> dict[str, Ed25519PublicKey]:
        return keys_from({**self.pinned_keys, **self.doc_keys})

    def key_scopes(self) -> dict[str, KeyScope]:
        """Which modules each trusted key (by id) may sign: see the module docstring."""
        return scopes_from(
            [(self.pinned_keys, self.pinned_scopes), (self.doc_keys, self.doc_scopes)]
        )

    def use_document_keys(self, document: Mapping[str, Any]) -> None:
        """Trust the release keys of a desired-state document, with their scopes."""
        keys = document.get("releaseKeys")
        self.doc_keys = dict(keys) if isinstance(keys, Mapping) else {}
        self.doc_scopes = parse_key_scopes(document.get("releaseKeyScopes"))

    def on_progress(self, progress: UpdateProgress) -> None:
        self.progress[progress.module] = {
            "version": progress.version,
            "state": progress.state.value,
            "detail": progress.detail,
            "bytes_done": progress.bytes_done,
            "bytes_total": progress.bytes_total,
            "error": progress.error,
        }
        now = time.monotonic()
        # Every transition is reported; download ticks at most twice a second.
        if (
            progress.state is not State.DOWNLOAD
            or now - self._last_progress_report > PROGRESS_REPORT_MIN_S
        ):
            self._last_progress_report = now
            self.on_change()

    def _record(self, result: UpdateResult) -> None:
        self.results[result.module] = {
            "version": result.version,
            "state": result.state.value,
            "error": result.error,
            "failed_in": result.failed_in.value if result.failed_in else None,
        }

    async def recover(self) -> None:
        """Resume interrupted updates and start installed modules; a failure
        is logged and reported, never raised: the agent must reach its hub."""
        try:
            results = await self.updater.recover()
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
        self.drift_policy = str(doc.document.get("drift") or "report")
        targets = targets_from(doc.document)
        self.targets = {t.name: t for t in targets}
        wanted = {t.name for t in targets}
        for name in sorted(set(self.activator.desired) | self.activator.bundles):
            if name not in wanted:
                await self.activator.stop(name)
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
        self.on_change()
        if failures:
            raise RuntimeError("; ".join(failures))

    def statuses(self) -> dict[str, Any]:
        return self._statuses(self._bundle_releases(list(self.activator.bundles)))

    async def statuses_for_report(self) -> dict[str, Any]:
        """`statuses()`, with the bundles' installed.json read in a worker thread:
        file reads stay off the event loop that carries local actions."""
        bundles = list(self.activator.bundles)
        return self._statuses(await asyncio.to_thread(self._bundle_releases, bundles))

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

    def _statuses(self, bundles: Mapping[str, InstalledRelease | None]) -> dict[str, Any]:
        modules = {name: status.to_dict() for name, status in self.supervisor.statuses().items()}
        for name, installed in bundles.items():
            modules[name] = {
                "name": name,
                "state": "installed",
                "version": installed.target.version if installed else None,
            }
        return {
            "modules": modules,
            "updates": self.results,
            "progress": self.progress,
            "drift": [d.to_dict() for d in self.drift],
            "drift_policy": self.drift_policy,
            "drift_corrections": self.corrections,
        }

    # -- drift -------------------------------------------------------------------

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
                found.append(Drift(name, "error", f"drift check failed: {_describe(exc)}"))
        if found != self.drift:
            self.drift = found
            for drift in found:
                event(log, "drift.found", logging.WARNING, **drift.to_dict())
            self.on_change()
        repairable = [d for d in found if d.kind != "error"]
        if repairable and self.drift_policy == "correct":
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
            found.append(Drift(name, "files", detail))
        config_path = self.activator.config_path(name)
        expected = canonical_json(dict(target.config))
        try:
            actual = config_path.read_bytes()
        except OSError:
            actual = b""
        if actual != expected:
            found.append(Drift(name, "config", f"{config_path} differs from the desired config"))
        if name in self.activator.desired and self._not_coming_back(name, status):
            found.append(
                Drift(name, "process", f"not running ({status.state if status else 'unknown'})")
            )
        return found

    def _not_coming_back(self, name: str, status: Any) -> bool:
        """A desired module that is down and that the supervisor will not restart
        by itself. A crash under `restart: always` is the supervisor's to handle
        (with its backoff and crash-loop accounting), not drift."""
        if status is None or status.state == "stopped":
            return True
        if status.state != "exited":
            return False
        policy = self.activator.desired[name].restart.policy
        return policy == "never" or (policy == "on-failure" and status.last_exit_code == 0)

    async def _correct(self, drift: Drift) -> None:
        target = self.targets[drift.module]
        try:
            if drift.kind == "files":
                await self._reinstall(target)
            elif drift.kind == "config":
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
) -> ModuleManager:
    """A node's module stack laid out in its data directory: supervisor,
    updater, drift baselines and repairs, artifacts fetched over `http`.

    The agent builds its own here, and so does each of the simulator's
    virtual nodes (with a simulated runtime), so both run the same code.
    `module_user` is who the runtime runs modules as (None: the agent's user).
    """
    supervisor = Supervisor(runtime, data_dir / "logs")
    activator = SupervisorActivator(
        supervisor, data_dir / "modules-config", node_root=data_dir, module_user=module_user
    )
    source = HttpArtifactSource(http)

    def make_updater(manager: ModuleManager) -> Updater:
        return Updater(
            data_dir / "updater",
            source=source,
            activator=activator,
            trusted_keys=manager.trusted_keys,
            key_scopes=manager.key_scopes,
            on_progress=manager.on_progress,
            crash_hook=crash_hook,
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
    )
