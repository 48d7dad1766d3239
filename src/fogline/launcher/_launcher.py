"""The launcher process: run the pointer's agent, and go back when a new one fails its trial.

Deliberately small, synchronous and made of the standard library plus
fogline's base modules: it is the one part of the node an agent release
never replaces, so it must be hard to break. It is the service the init
system runs; the agent is its child.

The rule (docs/operations.md, "Agent self-update"):

* A switched-to agent is on trial until it confirms, which it does after
  its first report the hub accepted. If it exits first, or has not
  confirmed within the trial deadline, the launcher stops it and points
  back at the previous agent, recording why (`failed` in the pointer); the
  previous agent reports the failed update, and the rollout sees it.
* A trial interrupted by a restart of the node or the launcher gets
  another start, up to `max_trial_starts` starts in all, then it is
  reverted: a new agent that takes the machine down with it cannot keep
  the node in a boot loop.
* A confirmed agent that exits is started again after a pause that doubles
  up to 30 s (reset once it ran a minute): the launcher never gives up on
  running some agent.
"""

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Final

from fogline._durable import write_atomic
from fogline._log import event

from ._pointer import (
    POINTER_ENV,
    POINTER_FILE,
    SLOT_ENV,
    Pointer,
    PointerError,
    Slot,
    Trial,
    builtin_slot,
    load_pointer,
    revert,
    save_pointer,
    slot_is_present,
)

log = logging.getLogger("fogline.launcher")

_POLL_S: Final = 0.1
_CONFIRM_POLL_S: Final = 0.25
_MAX_PAUSE_S: Final = 30.0
_STABLE_S: Final = 60.0  # a run this long resets the restart pause
_PR_SET_PDEATHSIG: Final = 1


class Launcher:
    """Runs the agent named by `<root>/pointer.json` as `python -m fogline ARGS`."""

    def __init__(
        self,
        root: Path,
        agent_args: Sequence[str],
        *,
        builtin_version: str,
        trial_deadline_s: float = 120.0,
        max_trial_starts: int = 2,
        stop_grace_s: float = 15.0,
        python: str = sys.executable,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if trial_deadline_s <= 0 or max_trial_starts < 1 or stop_grace_s < 0:
            raise ValueError("trial_deadline_s > 0, max_trial_starts >= 1, stop_grace_s >= 0")
        self.root = Path(os.path.abspath(root))
        self.pointer_path = self.root / POINTER_FILE
        self.agent_args = list(agent_args)
        self.builtin_version = builtin_version
        self.trial_deadline_s = trial_deadline_s
        self.max_trial_starts = max_trial_starts
        self.stop_grace_s = stop_grace_s
        self.python = python
        self._sleep = sleep
        self._stopping = False

    # -- the loop ------------------------------------------------------------------

    def run(self) -> int:
        """Run agents until SIGTERM or SIGINT; then stop the agent and return 0."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        pause_s = 0.0
        while not self._stopping:
            pointer = self._load()
            if not slot_is_present(pointer.current):
                self._revert(pointer, "its files are missing from the node")
                continue  # bounded: the builtin agent is always present
            if pointer.trial is not None:
                if pointer.trial.starts >= self.max_trial_starts:
                    self._revert(pointer, self._interrupted(pointer.trial))
                    continue
                # Counted before the start: a power cut during this trial is seen next time.
                pointer = replace(pointer, trial=Trial(pointer.trial.starts + 1))
                save_pointer(self.pointer_path, pointer)
            slot, on_trial = pointer.current, pointer.trial is not None
            started = time.monotonic()
            code, timed_out = self._run_one(slot, on_trial=on_trial)
            if self._stopping:
                break
            after = self._load()
            if on_trial and after.trial is not None and after.current.name == slot.name:
                why = (
                    f"did not reconnect and report within {self.trial_deadline_s:g}s"
                    if timed_out
                    else f"exited with code {code} before its first report"
                )
                self._revert(after, why)
                pause_s = 0.0
            elif after.current.name != slot.name or timed_out:
                pause_s = 0.0  # a switch the agent asked for: start the new one now
            else:
                lived_s = time.monotonic() - started
                pause_s = 1.0 if lived_s >= _STABLE_S else min(_MAX_PAUSE_S, max(1.0, 2 * pause_s))
                event(log, "launcher.exited", logging.WARNING, code=code, restart_in_s=pause_s)
                self._pause(pause_s)
        event(log, "launcher.stopped")
        return 0

    def _run_one(self, slot: Slot, *, on_trial: bool) -> tuple[int, bool]:
        """Start `slot`, watch it until it exits (or its trial times out); its exit code."""
        child = self._spawn(slot)
        event(log, "launcher.started", slot=slot.name, version=slot.version, pid=child.pid,
              trial=on_trial)  # fmt: skip
        deadline = time.monotonic() + self.trial_deadline_s if on_trial else None
        next_look = 0.0
        while True:
            code = child.poll()
            if code is not None:
                return code, False
            if self._stopping:
                return self._stop(child), False
            now = time.monotonic()
            if deadline is not None and now >= next_look:
                next_look = now + _CONFIRM_POLL_S
                pointer = self._load()
                if pointer.trial is None or pointer.current.name != slot.name:
                    event(log, "launcher.confirmed", slot=slot.name)
                    deadline = None
                elif now >= deadline:
                    return self._stop(child), True
            self._sleep(_POLL_S)

    # -- helpers ---------------------------------------------------------------------

    def _spawn(self, slot: Slot) -> "subprocess.Popen[bytes]":
        env = dict(os.environ)
        env[SLOT_ENV] = slot.name
        env[POINTER_ENV] = str(self.pointer_path)
        if slot.path is not None:
            # First on the path: the slot's `fogline` package hides the builtin one.
            inherited = env.get("PYTHONPATH")
            env["PYTHONPATH"] = slot.path + (os.pathsep + inherited if inherited else "")
            # Bytecode outside the slot: its tree stays exactly the release's
            # (drift checks compare every file with the signed archive).
            env["PYTHONPYCACHEPREFIX"] = str(self.root / "pycache" / slot.name)
        child = subprocess.Popen(
            [self.python, "-m", "fogline", *self.agent_args],
            env=env,
            preexec_fn=_die_with_parent(os.getpid()),  # one thread: safe
        )
        with contextlib.suppress(OSError):
            write_atomic(self.root / "agent.pid", f"{child.pid}\n".encode())
        return child

    def _stop(self, child: "subprocess.Popen[bytes]") -> int:
        child.send_signal(signal.SIGTERM)
        try:
            return child.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait()

    def _load(self) -> Pointer:
        try:
            return load_pointer(self.pointer_path, builtin_version=self.builtin_version)
        except PointerError as exc:
            # Only a broken disk or a hand edit gets here (writes are atomic).
            # Keep the evidence aside and run the builtin agent: never none.
            event(log, "launcher.pointer_unreadable", logging.ERROR, error=str(exc))
            with contextlib.suppress(OSError):
                os.replace(self.pointer_path, self.pointer_path.with_suffix(".unreadable"))
            return Pointer(builtin_slot(self.builtin_version))

    def _revert(self, pointer: Pointer, reason: str) -> None:
        back = revert(pointer, reason, builtin_version=self.builtin_version)
        save_pointer(self.pointer_path, back)
        event(log, "launcher.reverted", logging.ERROR, failed=pointer.current.name,
              to=back.current.name, reason=reason)  # fmt: skip

    def _interrupted(self, trial: Trial) -> str:
        return (
            f"not confirmed after {trial.starts} start(s): the node or the launcher "
            "restarted during its trial"
        )

    def _pause(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < until:
            self._sleep(_POLL_S)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A pre-exec hook: the agent is killed when the launcher dies (Linux), so a
    launcher started again never finds the old agent still holding the node."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork, not in the child

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the launcher died before the hook ran
            os._exit(1)

    return hook
