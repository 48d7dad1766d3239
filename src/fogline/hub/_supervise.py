"""The hub's background tasks (report writer, long-poll watcher, rollout
scheduler, retention, health roll-ups, alerts, the alert webhook),
supervised as a whole.

Each task retries its own failed passes (a locked database), but an
exception that escapes one (a bug, an unexpected reply) used to end the
lifespan's task group and with it every other task, while the server went
on answering with nothing behind it. Here a task that raises (or returns)
is logged and started again with backoff, the others run on, and `/healthz`
answers 503 naming every task that is down: from its failure until it has
run `settle_s` after a restart (a task failing at every start stays down).

Fault injection, for tests only: when the hub process's environment names a
file in FOGLINE_HUB_TEST_FAULT_FILE, every task named on a line of that file
fails at once, and again at each restart, until its line is removed. Only
whoever starts the hub process sets its environment; nothing a device or an
operator sends over the API can (docs/operations.md).
"""

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Final

from fogline._log import event

log = logging.getLogger("fogline.hub.tasks")

FAULT_FILE_ENV: Final = "FOGLINE_HUB_TEST_FAULT_FILE"
_FAULT_POLL_S: Final = 0.1
_FAULT_FILE_MAX_BYTES: Final = 4096

TaskFactory = Callable[[], Awaitable[None]]


class InjectedFault(RuntimeError):
    """A failure the test-only fault file asked for."""


def fault_file_from_env() -> Path | None:
    """The test-only fault file named by FOGLINE_HUB_TEST_FAULT_FILE, if any."""
    value = os.environ.get(FAULT_FILE_ENV, "")
    return Path(value) if value else None


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]  # a task's own task group wraps what it raised
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


class TaskSupervisor:
    """Runs named background tasks forever, restarting each that fails."""

    def __init__(
        self,
        *,
        initial_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        settle_s: float = 5.0,
        fault_file: Path | None = None,
    ) -> None:
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._settle_s = settle_s
        self._fault_file = fault_file
        self._down: dict[str, str] = {}  # task name -> why it is down
        self.restarts: dict[str, int] = {}

    def down(self) -> dict[str, str]:
        """The tasks that are down now, with the error that took each down."""
        return dict(self._down)

    async def run(self, tasks: Mapping[str, TaskFactory]) -> None:
        """Run `tasks` until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for name, factory in tasks.items():
                self.restarts[name] = 0
                tg.create_task(self._keep(name, factory), name=name)

    async def _keep(self, name: str, factory: TaskFactory) -> None:
        loop = asyncio.get_running_loop()
        delay = self._initial_backoff_s
        while True:  # bounded by the app's lifetime: cancelled at shutdown
            started = time.monotonic()
            settled = loop.call_later(self._settle_s, self._recovered, name)
            try:
                await self._once(name, factory)
                reason = "returned"  # a background task never ends by itself
            except Exception as exc:
                reason = _describe(exc)
            finally:
                settled.cancel()
            if time.monotonic() - started >= self._settle_s:
                delay = self._initial_backoff_s  # it had been running well
            self._down[name] = reason
            self.restarts[name] += 1
            event(
                log,
                "hub.task_failed",
                logging.ERROR,
                task=name,
                error=reason,
                restart_in_s=round(delay, 1),
                restarts=self.restarts[name],
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff_s)
            event(log, "hub.task_restarted", logging.WARNING, task=name)

    def _recovered(self, name: str) -> None:
        if self._down.pop(name, None) is not None:
            event(log, "hub.task_recovered", task=name)

    async def _once(self, name: str, factory: TaskFactory) -> None:
        if self._fault_file is None:
            await factory()
            return
        work = asyncio.ensure_future(factory())
        fault = asyncio.ensure_future(self._wait_for_fault(name))
        try:
            done, _ = await asyncio.wait({work, fault}, return_when=asyncio.FIRST_COMPLETED)
            if fault in done:
                raise InjectedFault(f"fault injected into {name} ({FAULT_FILE_ENV})")
            await work
        finally:
            for task in (work, fault):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _wait_for_fault(self, name: str) -> None:
        assert self._fault_file is not None
        while True:  # a file has no event to wait on: poll it (tests only)
            if await asyncio.to_thread(_names_in, self._fault_file, name):
                return
            await asyncio.sleep(_FAULT_POLL_S)


def _names_in(path: Path, name: str) -> bool:
    try:
        with path.open("rb") as file:
            text = file.read(_FAULT_FILE_MAX_BYTES).decode("utf-8", "replace")
    except OSError:
        return False
    return name in {line.strip() for line in text.splitlines()}
