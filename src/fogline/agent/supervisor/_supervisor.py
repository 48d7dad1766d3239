"""`Supervisor`: keeps the desired modules running, restarts crashes, probes health."""

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from fogline.agent._backoff import Backoff

from ._errors import ModuleStartError, SupervisorError, UnknownModuleError
from ._logs import log_path, read_log_tail
from ._record import ModuleRecord
from ._runtime import HealthVerdict, ModuleProcess, ModuleRuntime, describe_exit
from ._spec import HealthCheck, RunSpec
from ._state import Event, State, is_probe_due
from ._status import ModuleStatus

_log = logging.getLogger("fogline.agent.supervisor")

# After SIGKILL, how long to wait for the exit before giving up on the process
# (only a process stuck in the kernel, e.g. on a dead NFS mount, gets here).
_KILL_WAIT_S: Final = 5.0
_ENDED: Final = frozenset({State.CRASH_LOOP, State.EXITED, State.STOPPED})


class Supervisor:
    """Runs the desired module versions through a `ModuleRuntime` and keeps them up.

    A crashed module is restarted per its policy after a full-jitter backoff,
    which resets once the module stays up `max(2 x start grace, min_stable_s)`.
    `crash_loop_exits` exits within `crash_loop_window_s` put it in `crash-loop`
    (with exit code and stderr tail); restarts go on at the maximum backoff,
    so a module that recovers (say, once its device is plugged in) comes back.

    Health: a started module is `starting` for its `start_grace_s`, and is
    not probed then. A success in that time would prove nothing: another
    process (a leftover, or anything on the same port) may answer for a
    module that is about to fail to bind. After the grace, a probe that passes
    while the module's own process still runs makes it `healthy`, a failing
    one `unhealthy`. Without a health check, a module is healthy once it has
    stayed up for its start grace.
    """

    def __init__(
        self,
        runtime: ModuleRuntime,
        logs_dir: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff_rand: Callable[[], float] = random.random,
        crash_loop_exits: int = 5,
        crash_loop_window_s: float = 60.0,
        min_stable_s: float = 10.0,
        stderr_tail_bytes: int = 2048,
    ) -> None:
        """Raises:
        ValueError: a count or duration is not positive.
        """
        if type(crash_loop_exits) is not int or crash_loop_exits < 1:
            raise ValueError(f"crash_loop_exits: expected a positive int, got {crash_loop_exits!r}")
        if type(stderr_tail_bytes) is not int or not 0 <= stderr_tail_bytes <= 1 << 20:
            raise ValueError(f"stderr_tail_bytes: expected 0 to 1 MiB, got {stderr_tail_bytes!r}")
        for name, seconds in (
            ("crash_loop_window_s", crash_loop_window_s),
            ("min_stable_s", min_stable_s),
        ):
            if not seconds > 0:
                raise ValueError(f"{name}: expected a positive number, got {seconds!r}")
        self._runtime, self._logs_dir = runtime, logs_dir
        self._clock, self._rand = clock, backoff_rand
        self._loop_exits, self._loop_window_s = crash_loop_exits, crash_loop_window_s
        self._min_stable_s, self._tail_bytes = min_stable_s, stderr_tail_bytes
        self._modules: dict[str, ModuleRecord] = {}
        self._desired: dict[str, RunSpec] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._is_running = False
        self._lock = asyncio.Lock()  # one convergence at a time

    # -- public API ----------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True while run() is supervising (apply() then converges at once)."""
        return self._tg is not None

    async def run(self) -> None:
        """Supervise until cancelled; then stop every module (SIGTERM, grace, SIGKILL).

        Raises:
            SupervisorError: run() is already running.
        """
        if self._is_running:
            raise SupervisorError("Supervisor.run() is already running")
        self._is_running = True
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                try:
                    async with self._lock:
                        await self._converge(self._desired)
                    await asyncio.Event().wait()  # the lifecycle tasks do the work
                finally:
                    # From here on apply() only records: the group is about to
                    # cancel each lifecycle task, which stops its process.
                    self._tg = None
        finally:
            self._is_running = False

    async def apply(self, desired: Mapping[str, RunSpec]) -> None:
        """Converge on `desired`: start new modules, stop removed ones, restart changed ones.

        Unchanged modules are left alone (see `RunSpec.needs_restart_from`),
        except those stopped with `stop()`, which are started again. Returns
        once removed and changed modules are stopped and every started module
        made its first start attempt. Before `run()` starts, it only records
        `desired`; run() converges on it.

        Raises:
            ValueError: a key differs from its spec's name.
        """
        for name, spec in desired.items():
            if name != spec.name:
                raise ValueError(f"desired[{name!r}]: the spec is named {spec.name!r}")
        async with self._lock:
            self._desired = dict(desired)
            if self._tg is not None:
                await self._converge(self._desired)

    async def stop(self, name: str) -> None:
        """Stop one module: SIGTERM, then SIGKILL after its stop grace; it stays `stopped`.

        Raises:
            UnknownModuleError: no such module.
        """
        module = self._modules.get(name)
        if module is None:
            raise UnknownModuleError(name)
        await self._stop_module(module)

    async def restart(self, name: str) -> bool:
        """Restart one module now, as asked (the hub's self-healing): SIGTERM,
        its stop grace, SIGKILL, then a fresh start without backoff. Not
        counted in `restarts`, which counts the module's own exits. Returns
        once the new start was attempted; False when nothing was restarted
        (stopped on purpose, or run() is not supervising).

        Raises:
            UnknownModuleError: no such module.
        """
        async with self._lock:  # not during a convergence, which may replace it
            module = self._modules.get(name)
            if module is None:
                raise UnknownModuleError(name)
            if self._tg is None or module.state is State.STOPPED:
                return False
            await self._stop_module(module)
            if self._tg is None:  # run() began shutting down meanwhile
                return False
            module.stop_requested.clear()
            module.started_once.clear()
            module.task = self._tg.create_task(self._lifecycle(module), name=f"supervise:{name}")
        await module.started_once.wait()
        return True

    async def stop_all(self) -> None:
        """Stop every module at once (each with its own stop grace)."""
        async with asyncio.TaskGroup() as tg:
            for module in list(self._modules.values()):
                tg.create_task(self._stop_module(module), name=f"stop:{module.spec.name}")

    async def wait_healthy(self, name: str, timeout_s: float) -> bool:
        """Wait until the module is healthy: True; False on timeout, crash loop, exit or stop.

        True means: a probe passed after the start grace while the module's
        own process ran, and that process still runs now.

        Raises:
            UnknownModuleError: no such module.
        """
        if name not in self._modules:
            raise UnknownModuleError(name)
        try:
            async with asyncio.timeout(timeout_s):
                while (module := self._modules.get(name)) is not None:
                    # Asked of the OS: an exit the loop has not noticed yet must
                    # not let an update commit; its EXIT event follows shortly.
                    if module.state is State.HEALTHY and module.is_process_running():
                        return True
                    if module.state in _ENDED and not module.is_pending:
                        return False
                    await module.changed.wait()
        except TimeoutError:
            pass
        return False

    def names(self) -> list[str]:
        """The supervised modules: the desired ones, and removed ones until they have stopped."""
        return list(self._modules)

    def statuses(self) -> dict[str, ModuleStatus]:
        """A snapshot of every supervised module."""
        return {name: module.status() for name, module in self._modules.items()}

    # -- convergence -----------------------------------------------------------------

    async def _converge(self, desired: Mapping[str, RunSpec]) -> None:
        current = self._modules
        removed = [name for name in current if name not in desired]
        replaced = [
            name
            for name, spec in desired.items()
            if name in current and spec.needs_restart_from(current[name].spec)
        ]
        async with asyncio.TaskGroup() as tg:
            for name in (*removed, *replaced):
                tg.create_task(self._stop_module(current[name]), name=f"stop:{name}")
        for name in removed:
            del current[name]
        launched: list[ModuleRecord] = []
        for name, spec in desired.items():
            module = current.get(name)
            if module is None or name in replaced:
                module = current[name] = self._new_module(spec)
            elif module.state is State.STOPPED:
                module.stop_requested.clear()
                module.started_once.clear()
                module.spec = spec
            else:  # running, or ended by its own policy: health, graces, policy apply in place
                if spec.restart != module.spec.restart:
                    module.backoff = self._new_backoff(spec)
                module.spec = spec
                continue
            if self._tg is None:  # run() began shutting down while we stopped modules;
                continue  # the next run() starts this STOPPED module
            module.task = self._tg.create_task(self._lifecycle(module), name=f"supervise:{name}")
            launched.append(module)
        for module in launched:
            await module.started_once.wait()

    def _new_backoff(self, spec: RunSpec) -> Backoff:
        return Backoff(
            initial_s=spec.restart.initial_backoff_s,
            max_s=spec.restart.max_backoff_s,
            rand=self._rand,
        )

    def _new_module(self, spec: RunSpec) -> ModuleRecord:
        return ModuleRecord(spec=spec, backoff=self._new_backoff(spec), since=self._clock())

    async def _stop_module(self, module: ModuleRecord) -> None:
        module.stop_requested.set()
        if module.task is not None and not module.task.done():
            await asyncio.wait({module.task})  # the lifecycle stops the process
        self._fire(module, Event.STOP)  # also for a module that had already exited

    # -- one module's lifecycle --------------------------------------------------------

    def _fire(self, module: ModuleRecord, event: Event) -> None:
        module.fire(event, self._clock())

    async def _lifecycle(self, module: ModuleRecord) -> None:
        try:
            while not module.stop_requested.is_set():
                process = await self._start(module)
                code: int | None = None
                if process is not None:
                    code = await self._watch(module, process)
                    module.pid, module.process = None, None
                    if module.stop_requested.is_set():
                        break
                    if code is None:
                        error = "the runtime lost track of the process (see the agent log)"
                    else:
                        error = describe_exit(code)
                    self._record_exit(module, code, error)
                if not module.should_restart(code):
                    return  # stays `exited`, as its policy says
                if module.state is State.CRASH_LOOP:
                    # Keep trying, slowly: giving up would hide a module that
                    # could recover; the status already says it is looping.
                    delay_s = self._rand() * module.spec.restart.max_backoff_s
                else:
                    delay_s = module.backoff.next_delay()
                try:
                    async with asyncio.timeout(delay_s):
                        await module.stop_requested.wait()
                    break
                except TimeoutError:
                    module.restarts += 1
            self._fire(module, Event.STOP)
        except asyncio.CancelledError:  # run() is shutting down; _watch stopped the process
            self._fire(module, Event.STOP)
            raise
        finally:
            module.pid, module.process = None, None
            module.started_once.set()
            module.wake()  # a waiter may be waiting for a first start that never came

    async def _start(self, module: ModuleRecord) -> ModuleProcess | None:
        spec = module.spec
        try:
            process = await self._runtime.start(
                spec,
                log_path(self._logs_dir, spec.name, "stdout"),
                log_path(self._logs_dir, spec.name, "stderr"),
            )
        except ModuleStartError as exc:
            error = str(exc)
        except Exception as exc:  # a runtime bug must not take the other modules down
            _log.exception("runtime failed to start %s", spec.name)
            error = f"module {spec.name!r}: runtime failed: {type(exc).__name__}: {exc}"
        else:
            module.pid, module.process = process.pid, process
            self._fire(module, Event.START)
            module.started_once.set()
            return process
        module.started_once.set()
        self._record_exit(module, None, error)
        return None

    def _record_exit(self, module: ModuleRecord, code: int | None, error: str) -> None:
        try:
            tail = read_log_tail(self._logs_dir, module.spec.name, "stderr", self._tail_bytes)
        except OSError as exc:  # an unreadable log must not stop the supervision
            tail = f"<cannot read stderr log: {exc}>".encode()
        module.note_exit(
            self._clock(),
            code,
            error,
            tail.decode("utf-8", errors="replace"),
            window_s=self._loop_window_s,
            loop_exits=self._loop_exits,
        )

    async def _watch(self, module: ModuleRecord, process: ModuleProcess) -> int | None:
        """Probe until the process exits or a stop is asked for; return the exit code.

        None: the runtime failed to report an exit (a runtime bug, logged).
        """
        async with asyncio.TaskGroup() as tg:
            exited = tg.create_task(
                self._wait_exit(module, process), name=f"wait:{module.spec.name}"
            )
            stopping = tg.create_task(
                module.stop_requested.wait(), name=f"stop?:{module.spec.name}"
            )
            prober = tg.create_task(
                self._probe_loop(module, process), name=f"probe:{module.spec.name}"
            )
            try:
                await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also on cancellation: never leave the process behind
                prober.cancel()
                stopping.cancel()
                if not exited.done():
                    await self._terminate(module, process, exited)
        return None if exited.cancelled() else exited.result()

    @staticmethod
    async def _wait_exit(module: ModuleRecord, process: ModuleProcess) -> int | None:
        try:
            return await process.wait()
        except Exception:  # one runtime bug must not take the other modules down
            _log.exception("waiting for module %s (pid %s) failed", module.spec.name, process.pid)
            process.kill()
            return None

    async def _terminate(
        self, module: ModuleRecord, process: ModuleProcess, exited: "asyncio.Task[int | None]"
    ) -> None:
        process.terminate()
        done, _ = await asyncio.wait({exited}, timeout=module.spec.stop_grace_s)
        if done:
            return
        _log.warning(
            "module %s ignored SIGTERM for %gs: killing", module.spec.name, module.spec.stop_grace_s
        )
        process.kill()
        done, _ = await asyncio.wait({exited}, timeout=_KILL_WAIT_S)
        if not done:
            _log.error(
                "module %s (pid %s) survived SIGKILL; abandoning it", module.spec.name, process.pid
            )
            exited.cancel()

    async def _probe_loop(self, module: ModuleRecord, process: ModuleProcess) -> None:
        started = self._clock()
        is_stable = False
        while process.returncode is None:
            spec = module.spec  # re-read: health and graces are adopted in place
            check = module.health_check()
            stable_after_s = max(2 * spec.start_grace_s, self._min_stable_s)
            uptime_s = self._clock() - started
            if not is_probe_due(module.state, uptime_s, spec.start_grace_s):
                # In the start grace: no probe (see the class docstring). The
                # first one runs right when the grace ends; waking at least
                # every interval adopts a grace shortened in place.
                await asyncio.sleep(min(spec.start_grace_s - uptime_s + 0.001, check.interval_s))
                continue
            verdict = await self._probe_once(module, process, check, uptime_s)
            uptime_s = self._clock() - started
            if not process.is_running():
                # The exit is _watch's news, not a health failure; and a pass
                # of a process that is gone was someone else's answer.
                return
            if not is_stable and uptime_s >= stable_after_s:
                # Before the verdict: a crash loop that ends here goes back to
                # STARTING, and this very verdict then decides its health.
                is_stable = True
                module.backoff.reset()
                self._fire(module, Event.STABLE)
            if verdict.healthy:
                self._fire(module, Event.PROBE_OK)
            else:
                if module.state is not State.CRASH_LOOP:  # keep the crash's own error
                    module.last_error = f"unhealthy: {verdict.detail}"
                self._fire(module, Event.PROBE_FAIL)
            delay_s = check.interval_s
            if not is_stable:
                delay_s = min(delay_s, max(stable_after_s - uptime_s, 0.001))
            await asyncio.sleep(delay_s)

    async def _probe_once(
        self, module: ModuleRecord, process: ModuleProcess, check: HealthCheck, uptime_s: float
    ) -> HealthVerdict:
        spec = module.spec
        try:
            async with asyncio.timeout(check.timeout_s):
                return await self._runtime.probe(process, spec, check, uptime_s)
        except TimeoutError:
            return HealthVerdict(False, f"{check.kind} probe timed out after {check.timeout_s:g}s")
        except Exception as exc:  # a runtime bug: report it, keep supervising
            verdict = HealthVerdict(
                False, f"{check.kind} probe failed: {type(exc).__name__}: {exc}"
            )
            if module.last_error != f"unhealthy: {verdict.detail}":  # once, not every interval
                _log.exception("health probe of %s failed", spec.name)
            return verdict
