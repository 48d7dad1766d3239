"""Activation: the updater's ModuleActivator, backed by the supervisor."""

import asyncio
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fogline._durable import write_atomic
from fogline.artifact import ModuleSpec
from fogline.protocol import canonical_json

from ..supervisor import ModuleUser, RunSpec, Supervisor
from ..updater import ReleaseTarget
from ._specs import run_spec


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
            mode=0o640,
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
