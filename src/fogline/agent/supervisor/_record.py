"""`ModuleRecord`: the supervisor's bookkeeping for one module version, free of I/O."""

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from typing import Final

from fogline._log import event as log_event
from fogline.agent._backoff import Backoff

from ._runtime import ModuleProcess
from ._spec import HealthCheck, RunSpec
from ._state import Event, State, next_state
from ._status import ModuleStatus

_log = logging.getLogger("fogline.agent.supervisor")

# Without a health check a module is healthy once it outlived its start
# grace; after that, liveness is re-checked at this pace.
_IMPLICIT_INTERVAL_S: Final = 1.0


@dataclass(eq=False)
class ModuleRecord:
    """The mutable record of one module version; one lifecycle task drives it."""

    spec: RunSpec
    backoff: Backoff
    since: float
    state: State = State.STOPPED
    pid: int | None = None
    process: ModuleProcess | None = None  # the running process, like pid
    restarts: int = 0
    last_exit_code: int | None = None
    last_error: str | None = None
    stderr_tail: str = ""
    exits: collections.deque[float] = field(default_factory=collections.deque)
    task: asyncio.Task[None] | None = None
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    started_once: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def fire(self, event: Event, now: float) -> None:
        """Move along the state table; wake `changed` waiters when the state changes."""
        state = next_state(self.state, event)
        if state is not self.state:
            self._log_change(state)
            self.state, self.since = state, now
            self.wake()

    def _log_change(self, to: State) -> None:
        """One `module.state` record per change, at the level an operator should see it at."""
        fields: dict[str, object] = {
            "module": self.spec.name,
            "version": self.spec.version,
            "from": self.state.value,
            "to": to.value,
        }
        level = logging.INFO
        if to is State.CRASH_LOOP:
            level = logging.ERROR
            fields.update(exit_code=self.last_exit_code, error=self.last_error)
        elif to is State.UNHEALTHY:
            level = logging.WARNING
            fields["error"] = self.last_error
        elif to is State.EXITED:
            # A clean exit 0 is the module's choice (a one-shot job); anything
            # else (a signal, a code, a failed start) is a failure to see.
            if self.last_exit_code != 0:
                level = logging.WARNING
                fields.update(exit_code=self.last_exit_code, error=self.last_error)
            else:
                fields["exit_code"] = 0
        log_event(_log, "module.state", level, **fields)

    def wake(self) -> None:
        # Wake every waiter, then give later waiters a fresh event.
        self.changed.set()
        self.changed = asyncio.Event()

    def is_process_running(self) -> bool:
        """Whether this record's process runs now (asked of the runtime)."""
        return self.process is not None and self.process.is_running()

    @property
    def is_pending(self) -> bool:
        """Registered by apply() and about to start: STOPPED, but not for good."""
        return not self.started_once.is_set() and not self.stop_requested.is_set()

    def note_exit(
        self,
        now: float,
        code: int | None,
        error: str,
        stderr_tail: str,
        *,
        window_s: float,
        loop_exits: int,
    ) -> None:
        """Record an exit (code None: the start failed); EXIT, or LOOP when too many."""
        self.exits.append(now)
        while self.exits and self.exits[0] <= now - window_s:
            self.exits.popleft()
        self.last_exit_code, self.last_error, self.stderr_tail = code, error, stderr_tail
        is_looping = len(self.exits) >= loop_exits
        self.fire(Event.LOOP if is_looping else Event.EXIT, now)

    def should_restart(self, code: int | None) -> bool:
        policy = self.spec.restart.policy
        if policy == "always":
            return True
        if policy == "never":
            return False
        return code != 0  # on-failure: None (no start) and signals count as failures

    def health_check(self) -> HealthCheck:
        if self.spec.health is not None:
            return self.spec.health
        return HealthCheck(
            "uptime", self.spec.start_grace_s, timeout_s=1.0, interval_s=_IMPLICIT_INTERVAL_S
        )

    def status(self) -> ModuleStatus:
        return ModuleStatus(
            name=self.spec.name,
            version=self.spec.version,
            state=self.state,
            pid=self.pid,
            restarts=self.restarts,
            last_exit_code=self.last_exit_code,
            last_error=self.last_error,
            stderr_tail=self.stderr_tail,
            since=self.since,
        )
