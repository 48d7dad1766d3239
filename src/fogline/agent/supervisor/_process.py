"""`ProcessRuntime`: modules as local processes, each in its own session.

Own session (setsid): SIGTERM/SIGKILL go to the whole process group, so a
module's children stop with it; when the main process exits, whatever it
left in its group is killed too (like systemd's KillMode=control-group), so
a restart never races a leftover holding the module's port. A child that
calls setsid itself escapes the group; containers are the cure for that.
"""

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Final

from fogline._lifetime import can_die_with_parent, die_with_parent

from ._errors import ModuleStartError
from ._health import probe
from ._logs import RotatingLog
from ._runtime import HealthVerdict, ModuleProcess, module_env
from ._spec import HealthCheck, Resources, RunSpec
from ._user import ModuleUser, access_problem, prepare_data_dir, spawn_as

_READ_CHUNK: Final = 64 * 1024
# After the main process exits and its group is killed, output still in the
# pipes is read for at most this long: a grandchild that escaped the group
# could hold the pipe open forever.
_DRAIN_AFTER_EXIT_S: Final = 2.0
_MIB: Final = 1024 * 1024


def _rlimits(resources: Resources) -> list[tuple[int, tuple[int, int]]]:
    """(resource, (soft, hard)) pairs to set in the child, computed in the parent."""
    wanted = (
        ("RLIMIT_AS", None if resources.memory_mb is None else resources.memory_mb * _MIB),
        ("RLIMIT_NOFILE", resources.open_files),
        ("RLIMIT_CPU", resources.cpu_seconds),
    )
    limits = []
    for name, value in wanted:
        which = getattr(resource, name, None)
        if value is None or which is None:  # not asked for, or not on this OS
            continue
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)  # an unprivileged process cannot raise its hard limit
        limits.append((which, (value, value)))
    return limits


def _limiter(limits: list[tuple[int, tuple[int, int]]]) -> Callable[[], None] | None:
    """What the child does between fork and exec.

    A module dies with the agent (PR_SET_PDEATHSIG, Linux): after a crash the
    agent restarts and starts its modules again, and no orphan is left
    holding a port or an old version's files. Plus any resource limits.
    """
    parent = os.getpid()
    if not limits and not can_die_with_parent():
        return None  # no preexec_fn: lets subprocess use the faster, thread-safe spawn path

    # Runs between fork and exec: only precomputed values, no imports, no
    # allocation-heavy work, nothing that takes a lock.
    def apply() -> None:
        die_with_parent(parent, signal.SIGKILL)
        for which, pair in limits:
            resource.setrlimit(which, pair)

    return apply


class _PipeReader:
    """Copies one pipe into a RotatingLog from the event loop, with no task to own.

    The pipe is ours, not asyncio's: asyncio's Process.wait() would wait for
    its pipes to close, which a grandchild holding them can delay forever.
    """

    def __init__(self, fd: int, log: RotatingLog) -> None:
        self._fd, self._log = fd, log
        self._loop = asyncio.get_running_loop()
        self.closed = asyncio.Event()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._log.write(data)
        else:  # EOF: every writer (the module and its children) is gone
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._log.close()
            self.closed.set()


class _OsProcess:
    """A module process plus the pipe readers that feed its rotating logs."""

    def __init__(self, process: asyncio.subprocess.Process, readers: list[_PipeReader]) -> None:
        self._process, self._readers = process, readers

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def is_running(self) -> bool:
        if self._process.returncode is not None:
            return False
        waitid = getattr(os, "waitid", None)
        if waitid is None:  # no waitid on this OS: the exit as asyncio noticed it
            return True
        try:
            # WNOWAIT: look without reaping; asyncio's child watcher reaps it
            # and reports the exit code.
            exited = waitid(os.P_PID, self._process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped: the watcher's news is on its way
            return False
        return exited is None

    async def wait(self) -> int:
        code = await self._process.wait()
        self._signal_group(signal.SIGKILL)  # leftovers of the module: see module docstring
        # Let the readers catch what is still in the pipes, but not forever:
        # a child that escaped the group may hold the write end open.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DRAIN_AFTER_EXIT_S):
                for reader in self._readers:
                    await reader.closed.wait()
        for reader in self._readers:
            reader.close()
        return code

    def _signal_group(self, signum: int) -> None:
        # The group id is the pid (own session). It stays reserved while any
        # member lives, so this cannot hit an unrelated process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)

    def terminate(self) -> None:
        self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)


class ProcessRuntime:
    """Runs each module as a local process; the default runtime.

    Output goes through pipes the supervisor reads into `RotatingLog`s of at
    most `log_max_bytes` x `log_keep` per stream. With a `user` other than
    the agent's own, modules (and their health commands) run as that user,
    with its groups, in a `data_dir` handed over to it; a module whose
    command or directories that user cannot reach fails to start with an
    error naming the path in the way.
    """

    def __init__(
        self,
        *,
        log_max_bytes: int = 1_000_000,
        log_keep: int = 5,
        user: ModuleUser | None = None,
    ) -> None:
        """Raises:
        ValueError: log_max_bytes or log_keep is not a positive int.
        """
        for name, value in (("log_max_bytes", log_max_bytes), ("log_keep", log_keep)):
            if type(value) is not int or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self._log_max_bytes, self._log_keep = log_max_bytes, log_keep
        self._user = None if user is None or user.is_agent_user else user

    async def _check_access(self, spec: RunSpec) -> None:
        """Hand the data dir to the module user and check it can reach everything.

        Raises:
            ModuleStartError: it cannot; the message names the path and the flag.
        """
        user = self._user
        try:
            if user is None:
                if spec.data_dir is not None:
                    await asyncio.to_thread(spec.data_dir.mkdir, 0o700, True, True)
                return
            if spec.data_dir is not None:
                await asyncio.to_thread(prepare_data_dir, spec.data_dir, user)
        except OSError as exc:
            raise ModuleStartError(spec.name, f"cannot prepare its data dir: {exc}") from exc
        problem = await asyncio.to_thread(
            access_problem,
            user,
            command=spec.command[0],
            workdir=spec.workdir,
            env=module_env(spec),
            readable=[spec.config_path] if spec.config_path else [],
            writable=[spec.data_dir] if spec.data_dir else [],
        )
        if problem:
            raise ModuleStartError(
                spec.name,
                f"module user {user.name!r} {problem}; make it reachable, or run modules as "
                "another user with `fogline agent run --module-user USER`",
            )

    async def start(self, spec: RunSpec, stdout_path: Path, stderr_path: Path) -> ModuleProcess:
        """Raises:
        ModuleStartError: the command or workdir is missing, not executable, a
            resource limit is refused, or the log directory cannot be created.
        """
        try:
            logs = [
                RotatingLog(path, max_bytes=self._log_max_bytes, keep=self._log_keep)
                for path in (stdout_path, stderr_path)
            ]
        except OSError as exc:
            raise ModuleStartError(spec.name, f"cannot create its log directory: {exc}") from exc
        try:
            await self._check_access(spec)
        except BaseException:
            for log in logs:
                log.close()
            raise
        (out_read, out_write), (err_read, err_write) = os.pipe(), os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.command,
                cwd=spec.workdir,
                env=module_env(spec),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out_write,
                stderr=err_write,
                start_new_session=True,
                preexec_fn=_limiter(_rlimits(spec.resources)),  # see _limiter
                # The agent's umask (0077) keeps its own files private; a
                # module gets the conventional one.
                umask=0o022,
                **spawn_as(self._user),
            )
        except BaseException as exc:  # also cancellation: asyncio kills the process then
            for fd in (out_read, err_read):
                os.close(fd)
            for log in logs:
                log.close()
            if isinstance(exc, OSError | ValueError | subprocess.SubprocessError):
                reason = f"{spec.command[0]!r} in {str(spec.workdir)!r}: {exc}"
                raise ModuleStartError(spec.name, reason) from exc
            raise
        finally:
            # The child holds its own copies; ours would keep the pipes open forever.
            os.close(out_write)
            os.close(err_write)
        readers = [_PipeReader(out_read, logs[0]), _PipeReader(err_read, logs[1])]
        return _OsProcess(process, readers)

    async def probe(
        self, process: ModuleProcess, spec: RunSpec, check: HealthCheck, uptime_s: float
    ) -> HealthVerdict:
        return await probe(
            check, spec, uptime_s=uptime_s, returncode=process.returncode, user=self._user
        )
