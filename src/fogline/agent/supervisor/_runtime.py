"""The port between the supervisor and whatever runs modules (processes now, containers later)."""

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from ._spec import HealthCheck, RunSpec

_DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    """The outcome of one health probe; `detail` says why, for `last_error`."""

    healthy: bool
    detail: str


class ModuleProcess(Protocol):
    """A started module, as the supervisor sees it."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None:
        """None while running; negative when killed by a signal (like asyncio)."""
        ...

    def is_running(self) -> bool:
        """Whether the process runs now: asked of the OS, not of `returncode`,
        which is only set once the exit has been noticed."""
        ...

    async def wait(self) -> int:
        """Return the exit code once the module has exited and its output is captured."""
        ...

    def terminate(self) -> None:
        """Ask the module (and everything it started) to stop: SIGTERM."""
        ...

    def kill(self) -> None:
        """Stop the module and everything it started, now: SIGKILL."""
        ...


class ModuleRuntime(Protocol):
    """Starts modules and probes their health."""

    async def start(self, spec: RunSpec, stdout_path: Path, stderr_path: Path) -> ModuleProcess:
        """Start `spec`'s command, its output captured into the given log files.

        Raises:
            ModuleStartError: the command cannot be executed (missing binary,
                no permission, bad workdir); the supervisor reports it.
        """
        ...

    async def probe(
        self, process: ModuleProcess, spec: RunSpec, check: HealthCheck, uptime_s: float
    ) -> HealthVerdict:
        """Run one health check against a running module; never raises.

        `uptime_s` is how long the supervisor has seen the process up (for
        `uptime` checks). The caller bounds the call with `check.timeout_s`.
        """
        ...


def module_env(spec: RunSpec) -> dict[str, str]:
    """The whole environment of `spec`'s process (see `RunSpec`): nothing else leaks in."""
    env = {
        "PATH": os.environ.get("PATH") or _DEFAULT_PATH,
        "LANG": os.environ.get("LANG") or "C.UTF-8",
        "HOME": str(spec.data_dir or spec.workdir),
    }
    env.update(spec.env)
    # Last, so the spec cannot fake them (RunSpec already refuses FOGLINE_ names).
    env["FOGLINE_MODULE"] = spec.name
    env["FOGLINE_MODULE_VERSION"] = spec.version
    if spec.config_path is not None:
        env["FOGLINE_CONFIG"] = str(spec.config_path)
    if spec.data_dir is not None:
        env["FOGLINE_DATA"] = str(spec.data_dir)
    return env


def describe_exit(code: int) -> str:
    """'exited with code 3' or 'killed by SIGKILL' (asyncio reports signals as -N)."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"killed by {name}"
