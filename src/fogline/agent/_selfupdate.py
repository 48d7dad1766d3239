"""The agent's side of its own update (`kind: agent` releases) under the launcher.

The updater installs an agent release like any other: downloaded, verified,
unpacked side by side into `updater/modules/fogline-agent/<version>-<digest12>/`
(the slot), committed. Being a file tree, not a process, it is healthy once
installed; the health that matters is the new agent's, judged by the
launcher (fogline.launcher) in a trial. This module connects the two:

* `apply` (an applier after the modules'): when the committed agent release
  is not the slot this agent runs from, point the launcher at it, on trial,
  keeping this slot as the previous one, and stop this agent. It never
  returns in that case, so this agent never reports the new revision applied:
  only the new agent, once it runs, can.
* `confirm` (after each report the hub accepted): the agent on trial ends
  its trial; the launcher then keeps it.
* `reconcile` (at start, before the local desired state is applied): when
  the launcher went back from a new agent, roll the updater back from that
  release and record it failed, with the launcher's reason. Applying the
  desired state then reports the update FAILED: the rollout counts it.

Without a launcher (no FOGLINE_LAUNCHER_POINTER), an agent release is
installed but not run, and the desired state is reported refused, saying so.
"""

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Final

from fogline import __version__
from fogline._log import event
from fogline.artifact import AGENT_MODULE
from fogline.launcher import (
    POINTER_ENV,
    SLOT_ENV,
    Pointer,
    Slot,
    confirm,
    load_pointer,
    request_switch,
    slot_is_present,
)
from fogline.protocol import DesiredStateDoc

from .modules import ModuleManager

log = logging.getLogger("fogline.agent.selfupdate")

# Fault injection in tests: SIGKILL the launcher and this agent (a power
# cut, as far as the files know) at one of SWITCH_POINTS.
SWITCH_CRASH_ENV: Final = "FOGLINE_FAULT_SWITCH_CRASH_AT"
SWITCH_POINTS: Final = ("switch:before-pointer", "switch:after-pointer", "trial:before-confirm")
_STOP_WAIT_S: Final = 60.0


class SelfUpdate:
    """The launcher's pointer as this agent sees it; inert without a launcher."""

    def __init__(
        self,
        modules: Callable[[], ModuleManager | None],
        stop_agent: Callable[[], None],
        *,
        pointer: Path | None,
        slot: str | None,
    ) -> None:
        self._modules = modules
        self._stop_agent = stop_agent
        self.pointer = pointer
        self.slot = slot
        self.confirmed = False
        self._crash_at = os.environ.get(SWITCH_CRASH_ENV, "").strip() or None
        if self._crash_at is not None and self._crash_at not in SWITCH_POINTS:
            raise ValueError(f"{SWITCH_CRASH_ENV}: unknown point {self._crash_at!r}")

    @classmethod
    def from_env(
        cls, modules: Callable[[], ModuleManager | None], stop_agent: Callable[[], None]
    ) -> "SelfUpdate":
        pointer, slot = os.environ.get(POINTER_ENV), os.environ.get(SLOT_ENV)
        launched = bool(pointer) and bool(slot)
        return cls(
            modules,
            stop_agent,
            pointer=Path(pointer) if launched and pointer else None,
            slot=slot if launched else None,
        )

    async def reconcile(self) -> None:
        """Undo, in the updater, the agent release the launcher went back from."""
        manager = self._modules()
        if self.pointer is None or manager is None:
            return
        try:
            pointer = await asyncio.to_thread(_load, self.pointer)
        except Exception as exc:  # the launcher has set it aside and runs the builtin agent
            event(log, "selfupdate.pointer_unreadable", logging.ERROR, error=str(exc))
            return
        failed = pointer.failed
        if failed is None or failed.slot.digest is None or failed.slot.name == self.slot:
            return
        reason = (
            f"the new agent {failed.slot.version} {failed.reason}; "
            f"the launcher went back to {pointer.current.version} ({pointer.current.name})"
        )
        try:
            result = await manager.updater.roll_back_committed(
                AGENT_MODULE, failed.slot.digest, reason
            )
        except Exception as exc:  # logged, never raised: the agent must reach its hub
            event(log, "selfupdate.rollback_failed", logging.ERROR, error=str(exc))
            return
        if result is not None:
            event(log, "selfupdate.rolled_back", logging.ERROR, version=failed.slot.version,
                  reason=failed.reason, state=result.state)  # fmt: skip

    async def apply(self, doc: DesiredStateDoc) -> None:
        """Switch to the committed agent release when it is not the one running.

        Raises:
            RuntimeError: an agent release is installed but this agent has no
                launcher to run it; or the agent did not stop for its switch.
        """
        manager = self._modules()
        if manager is None or AGENT_MODULE not in manager.targets:
            return
        installed = await asyncio.to_thread(manager.updater.installed, AGENT_MODULE)
        target = manager.targets[AGENT_MODULE]
        if installed is None or installed.target.digest != target.digest:
            return  # not installed (the modules' applier reported why)
        if self.pointer is None or self.slot is None:
            raise RuntimeError(
                f"{AGENT_MODULE} {target.version} is installed but this agent runs without "
                "a launcher, which alone can start it: run the agent with `fogline launcher run`"
            )
        if installed.install_dir == self.slot:
            return  # it runs: this is the new agent
        pointer = await asyncio.to_thread(_load, self.pointer)
        if pointer.trial is not None or pointer.current.name != self.slot:
            # Not ours to switch: this agent is itself on trial, or the
            # pointer moved under it. The next start sorts it out.
            event(log, "selfupdate.switch_deferred", logging.WARNING, pointer=pointer.current.name)
            return
        path = manager.updater.install_path(AGENT_MODULE)
        new = Slot(installed.install_dir, str(path), target.version, target.digest)
        if path is None or not slot_is_present(new):
            raise RuntimeError(f"{AGENT_MODULE} {target.version}: no fogline/__main__.py in {path}")
        self._crash("switch:before-pointer")
        await asyncio.to_thread(
            request_switch, self.pointer, pointer.current, new, builtin_version=__version__
        )
        self._crash("switch:after-pointer")
        event(log, "selfupdate.switching", to=new.version, slot=new.name)
        self._stop_agent()
        # This agent is being cancelled; not returning keeps the revision
        # from being reported applied by an agent that does not run it.
        await asyncio.sleep(_STOP_WAIT_S)
        raise RuntimeError("the agent did not stop to switch to its new version")

    async def confirm(self) -> None:
        """End this agent's trial, once: it reconnected and the hub took its report."""
        if self.confirmed or self.pointer is None or self.slot is None:
            return
        try:
            pointer = await asyncio.to_thread(_load, self.pointer)
            if pointer.trial is not None and pointer.current.name == self.slot:
                self._crash("trial:before-confirm")
                await asyncio.to_thread(_confirm, self.pointer, self.slot)
                event(log, "selfupdate.confirmed", slot=self.slot, version=__version__)
        except Exception as exc:  # the launcher will judge; keep reporting
            event(log, "selfupdate.confirm_failed", logging.ERROR, error=str(exc))
            return
        self.confirmed = True

    def _crash(self, point: str) -> None:
        if point == self._crash_at:
            os.kill(os.getppid(), signal.SIGKILL)  # the launcher: the whole node goes down
            os.kill(os.getpid(), signal.SIGKILL)


def _load(path: Path) -> Pointer:
    return load_pointer(path, builtin_version=__version__)


def _confirm(path: Path, slot: str) -> bool:
    return confirm(path, slot, builtin_version=__version__)
