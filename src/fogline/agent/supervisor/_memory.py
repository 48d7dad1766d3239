"""`MemoryRuntime`: scripted fake processes, for tests and the virtual fleet simulator.

Nothing is executed. Each start looks up a `MemoryBehaviour` by
"name@version", then "name", then the default, and plays it: start
failures, crashes after a delay, flaky health, SIGTERM ignored. Randomness
comes from one seeded `random.Random`, so a simulated fleet replays exactly.
"""

import asyncio
import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ._errors import ModuleStartError
from ._logs import RotatingLog
from ._runtime import HealthVerdict, ModuleProcess
from ._spec import HealthCheck, RunSpec

_SIGTERM: Final = 15
_SIGKILL: Final = 9


@dataclass(frozen=True, slots=True)
class MemoryBehaviour:
    """How a fake module behaves once started.

    crash_after_s: exit with `exit_code` after this long (None: run until stopped);
        `crash_jitter_s` adds a seeded uniform 0..jitter to it.
    fail_health_probability: chance that each probe fails (0 to 1).
    start_error: make start() raise ModuleStartError with this reason.
    ignore_sigterm: only kill() stops it, as with a stuck real process.
    stdout, stderr: written to the module's logs at start (stderr again at a crash).
    """

    crash_after_s: float | None = None
    crash_jitter_s: float = 0.0
    exit_code: int = 1
    fail_health_probability: float = 0.0
    start_error: str | None = None
    ignore_sigterm: bool = False
    stdout: bytes = b""
    stderr: bytes = b""

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_health_probability <= 1.0:
            raise ValueError(
                f"fail_health_probability: expected 0 to 1, got {self.fail_health_probability!r}"
            )
        if self.crash_after_s is not None and not self.crash_after_s >= 0:
            raise ValueError(f"crash_after_s: expected >= 0, got {self.crash_after_s!r}")
        if not self.crash_jitter_s >= 0:
            raise ValueError(f"crash_jitter_s: expected >= 0, got {self.crash_jitter_s!r}")


class MemoryProcess:
    """A fake running module; `exit(code)` makes it exit now (a crash, from outside)."""

    def __init__(
        self,
        pid: int,
        spec: RunSpec,
        behaviour: MemoryBehaviour,
        stderr: RotatingLog,
        delay_s: float | None,
    ) -> None:
        self._pid, self.spec, self.behaviour = pid, spec, behaviour
        self._stderr = stderr
        self._returncode: int | None = None
        self._exited = asyncio.Event()
        self._crash_timer = (
            None if delay_s is None else asyncio.get_running_loop().call_later(delay_s, self._crash)
        )

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def is_running(self) -> bool:
        return self._returncode is None

    def _crash(self) -> None:
        self._stderr.write(self.behaviour.stderr)
        self.exit(self.behaviour.exit_code)

    def exit(self, code: int) -> None:
        if self._returncode is None:
            self._returncode = code
            if self._crash_timer is not None:
                self._crash_timer.cancel()
            self._stderr.close()
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._returncode is not None
        return self._returncode

    def terminate(self) -> None:
        if not self.behaviour.ignore_sigterm:
            self.exit(-_SIGTERM)

    def kill(self) -> None:
        self.exit(-_SIGKILL)


class MemoryRuntime:
    """An in-memory `ModuleRuntime` whose processes follow `MemoryBehaviour` scripts."""

    def __init__(
        self,
        *,
        seed: int = 0,
        default: MemoryBehaviour | None = None,
        behaviours: Mapping[str, MemoryBehaviour] | None = None,
    ) -> None:
        self._random = random.Random(seed)
        self._default = default or MemoryBehaviour()
        self._behaviours = dict(behaviours or {})
        self._pids = itertools.count(10_000)
        self.started: list[tuple[str, str]] = []  # (name, version) of every start, in order
        self.running: dict[str, MemoryProcess] = {}  # name -> its latest process

    def script(self, key: str, behaviour: MemoryBehaviour) -> None:
        """Set the behaviour of "name" or "name@version" for the next starts."""
        self._behaviours[key] = behaviour

    def behaviour_for(self, spec: RunSpec) -> MemoryBehaviour:
        return (
            self._behaviours.get(f"{spec.name}@{spec.version}")
            or self._behaviours.get(spec.name)
            or self._default
        )

    async def start(self, spec: RunSpec, stdout_path: Path, stderr_path: Path) -> ModuleProcess:
        """Raises:
        ModuleStartError: the behaviour has a `start_error`.
        """
        behaviour = self.behaviour_for(spec)
        self.started.append((spec.name, spec.version))
        if behaviour.start_error is not None:
            raise ModuleStartError(spec.name, behaviour.start_error)
        stdout = RotatingLog(stdout_path, max_bytes=1_000_000, keep=2)
        stdout.write(behaviour.stdout)
        stdout.close()
        stderr = RotatingLog(stderr_path, max_bytes=1_000_000, keep=2)
        delay_s = None
        if behaviour.crash_after_s is not None:
            delay_s = behaviour.crash_after_s + self._random.uniform(0, behaviour.crash_jitter_s)
        process = MemoryProcess(next(self._pids), spec, behaviour, stderr, delay_s)
        self.running[spec.name] = process
        return process

    async def probe(
        self, process: ModuleProcess, spec: RunSpec, check: HealthCheck, uptime_s: float
    ) -> HealthVerdict:
        behaviour = self.behaviour_for(spec)
        if process.returncode is not None:
            return HealthVerdict(False, "not running")
        if self._random.random() < behaviour.fail_health_probability:
            return HealthVerdict(False, f"scripted {check.kind} failure")
        if check.kind == "uptime":
            assert isinstance(check.target, int | float)
            if uptime_s < check.target:
                return HealthVerdict(False, f"up {uptime_s:.1f}s of {check.target}s")
        return HealthVerdict(True, f"scripted {check.kind} success")
