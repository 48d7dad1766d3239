"""The per-module lifecycle as one table: (state, event) -> state.

The supervisor's shell does the work (start, wait, probe, count exits) and
reports an event; it never picks the next state itself. An event that keeps
the state (a passing probe of a healthy module) is an edge written in the
table; a pair not in the table is a bug in the shell, and `next_state`
raises (fogline._statetable, the same rule as every state table in Fogline).
The gaps are commented.
"""

import enum
from collections.abc import Mapping
from typing import Final

from fogline._statetable import StateTable
from fogline.protocol import ModuleState

# The lifecycle's states are the report's module states, defined once in
# fogline.protocol: the hub's rollout gate judges the same enum. (INSTALLED
# is a bundle's, never a supervised module's: no edge enters it.)
State = ModuleState


class Event(enum.Enum):
    START = "start"  # the runtime started a process
    PROBE_OK = "probe-ok"  # a health probe passed
    PROBE_FAIL = (
        "probe-fail"  # a probe failed after the start grace (failures in grace are not events)
    )
    STABLE = "stable"  # the process stayed up long enough to forgive its past exits
    EXIT = "exit"  # the process exited or could not be started
    LOOP = "loop"  # an exit that made too many within the crash-loop window
    STOP = "stop"  # the supervisor stopped the module on purpose


_RUNNING: Final = (State.STARTING, State.HEALTHY, State.UNHEALTHY)

TRANSITIONS: Final[Mapping[tuple[State, Event], State]] = {
    (State.STOPPED, Event.START): State.STARTING,
    (State.STOPPED, Event.EXIT): State.EXITED,  # the first start failed
    (State.STOPPED, Event.LOOP): State.CRASH_LOOP,  # ... with crash_loop_exits=1
    # Stopped while its last probe ran: the answer is about a process being
    # stopped, and changes nothing.
    (State.STOPPED, Event.PROBE_OK): State.STOPPED,
    (State.STOPPED, Event.PROBE_FAIL): State.STOPPED,
    (State.STOPPED, Event.STABLE): State.STOPPED,
    (State.STARTING, Event.PROBE_OK): State.HEALTHY,
    (State.STARTING, Event.PROBE_FAIL): State.UNHEALTHY,
    (State.HEALTHY, Event.PROBE_OK): State.HEALTHY,
    (State.HEALTHY, Event.PROBE_FAIL): State.UNHEALTHY,
    (State.UNHEALTHY, Event.PROBE_OK): State.HEALTHY,
    (State.UNHEALTHY, Event.PROBE_FAIL): State.UNHEALTHY,
    # STABLE outside CRASH_LOOP only resets the backoff (done by the shell).
    **{(state, Event.STABLE): state for state in _RUNNING},
    # No START edge from STARTING, HEALTHY or UNHEALTHY: one process at a
    # time, so the shell starts one only after the last one's EXIT or LOOP.
    **{(state, Event.EXIT): State.EXITED for state in _RUNNING},
    **{(state, Event.LOOP): State.CRASH_LOOP for state in _RUNNING},
    (State.EXITED, Event.START): State.STARTING,
    (State.EXITED, Event.EXIT): State.EXITED,  # a restart that failed to start
    (State.EXITED, Event.LOOP): State.CRASH_LOOP,
    # No PROBE_OK, PROBE_FAIL or STABLE edge from EXITED: the shell stops the
    # prober before it records the exit, and no prober runs until a START.
    # A crash loop is sticky: a restart, and even a passing probe, do not end
    # it (a module that is healthy for a second between crashes must not pass
    # the updater's health gate). Only staying up for the stable period does.
    (State.CRASH_LOOP, Event.START): State.CRASH_LOOP,
    (State.CRASH_LOOP, Event.PROBE_OK): State.CRASH_LOOP,
    (State.CRASH_LOOP, Event.PROBE_FAIL): State.CRASH_LOOP,
    (State.CRASH_LOOP, Event.EXIT): State.CRASH_LOOP,
    (State.CRASH_LOOP, Event.LOOP): State.CRASH_LOOP,
    (State.CRASH_LOOP, Event.STABLE): State.STARTING,  # the next probe decides
    # STOP is accepted from everywhere.
    **{(state, Event.STOP): State.STOPPED for state in State},
}

TABLE: Final = StateTable("module lifecycle", TRANSITIONS)


def next_state(state: State, event: Event) -> State:
    """The state after `event` in `state`.

    Raises:
        MissingTransitionError: no such edge; a bug in the shell.
    """
    return TABLE.next_state(state, event)


def is_probe_due(state: State, uptime_s: float, start_grace_s: float) -> bool:
    """Whether a health probe may run now, `uptime_s` after the process started.

    Not in the start grace: a pass then would prove nothing (another process
    may answer on the module's port until this one binds it, or fails to),
    and a failure would be forgiven anyway. A module already judged healthy
    or unhealthy is probed at any uptime: a grace raised in place must not
    hide its failures.
    """
    return uptime_s >= start_grace_s or state in (State.HEALTHY, State.UNHEALTHY)
