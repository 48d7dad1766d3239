"""fogline._statetable, and the three tables built on it: one behaviour on a missing edge."""

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from fogline._statetable import MissingTransitionError, StateTable
from fogline.agent.supervisor import _state as lifecycle
from fogline.agent.updater import _states as update
from fogline.hub.rollouts import _machine as rollout


class Light(enum.Enum):
    RED = "red"
    GREEN = "green"
    BROKEN = "broken"


class Signal(enum.Enum):
    GO = "go"
    STOP = "stop"


LIGHTS = StateTable(
    "light",
    {
        (Light.RED, Signal.GO): Light.GREEN,
        (Light.RED, Signal.STOP): Light.RED,  # staying put is an edge
        (Light.GREEN, Signal.STOP): Light.RED,
    },
)


def test_an_edge_gives_its_target_and_an_edge_that_stays_is_written() -> None:
    assert LIGHTS.next_state(Light.RED, Signal.GO) is Light.GREEN
    assert LIGHTS.next_state(Light.RED, Signal.STOP) is Light.RED


def test_a_missing_edge_raises_naming_the_table_state_and_event() -> None:
    assert not LIGHTS.has_edge(Light.GREEN, Signal.GO)
    with pytest.raises(MissingTransitionError) as caught:
        LIGHTS.next_state(Light.GREEN, Signal.GO)
    assert str(caught.value) == "light: no transition from GREEN on GO"
    assert (caught.value.state, caught.value.event) == (Light.GREEN, Signal.GO)
    assert isinstance(caught.value, LookupError)  # a bug, not a FoglineError


def test_reachable_and_missing() -> None:
    assert LIGHTS.reachable([Light.RED]) == {Light.RED, Light.GREEN}
    assert LIGHTS.missing(Light, Signal) == {
        (Light.GREEN, Signal.GO),
        (Light.BROKEN, Signal.GO),
        (Light.BROKEN, Signal.STOP),
    }


def test_the_table_cannot_be_changed_behind_its_back() -> None:
    edges = {(Light.RED, Signal.GO): Light.GREEN}
    table = StateTable("t", edges)
    edges[(Light.GREEN, Signal.GO)] = Light.RED
    assert not table.has_edge(Light.GREEN, Signal.GO)
    with pytest.raises(TypeError):
        table.edges[(Light.GREEN, Signal.GO)] = Light.RED  # type: ignore[index]


@dataclass(frozen=True)
class Machine:
    table: StateTable[Any, Any]
    states: frozenset[Any]  # the states the table runs on
    events: type[enum.Enum]
    start: enum.Enum
    next_state: Callable[[Any, Any], Any]
    gaps: frozenset[tuple[Any, Any]]  # every pair left out on purpose, as commented


U, L, R = update, lifecycle, rollout
MACHINES = {
    "updater": Machine(
        U.TABLE,
        frozenset(U.State),
        U.Event,
        U.State.DOWNLOAD,
        U.next_state,
        frozenset((s, e) for s in U.TERMINAL for e in U.Event),  # DONE and FAILED are terminal
    ),
    "supervisor": Machine(
        L.TABLE,
        # The report's module states; INSTALLED is a bundle's, never a
        # supervised process's: the lifecycle does not run on it.
        frozenset(L.State) - {L.State.INSTALLED},
        L.Event,
        L.State.STOPPED,
        L.next_state,
        frozenset(
            # one process at a time
            {(s, L.Event.START) for s in (L.State.STARTING, L.State.HEALTHY, L.State.UNHEALTHY)}
            # no prober runs between an exit and the next start
            | {(L.State.EXITED, e) for e in (L.Event.PROBE_OK, L.Event.PROBE_FAIL, L.Event.STABLE)}
        ),
    ),
    "rollouts": Machine(
        R.TABLE,
        frozenset(R.State),
        R.Event,
        R.State.RUNNING,
        R.next_state,
        frozenset(
            {(R.State.RUNNING, R.Event.RESUME)}
            # a paused rollout is not ticked: no gate or wave events
            | {
                (R.State.PAUSED, e)
                for e in (
                    R.Event.LAST_WAVE_PASSED,
                    R.Event.LAST_WAVE_ENDED,
                    R.Event.GATE_FAILED_PAUSE,
                    R.Event.GATE_FAILED_ROLLBACK,
                    R.Event.PAUSE,
                )
            }
            # final states: nothing reopens a rollout
            | {(s, e) for s in set(R.State) - R.ACTIVE for e in R.Event}
        ),
    ),
}


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
def test_every_state_is_reachable_from_the_start(machine: Machine) -> None:
    assert machine.table.reachable([machine.start]) == set(machine.states)


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
def test_the_only_missing_edges_are_the_deliberate_gaps(machine: Machine) -> None:
    assert machine.table.missing(machine.states, machine.events) == machine.gaps


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
def test_every_missing_edge_raises_and_every_edge_answers(machine: Machine) -> None:
    for state in machine.states:
        for event in machine.events:
            if (state, event) in machine.gaps:
                with pytest.raises(MissingTransitionError):
                    machine.next_state(state, event)
            else:
                assert machine.next_state(state, event) is machine.table.edges[(state, event)]


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
def test_the_table_is_the_modules_own_transitions(machine: Machine) -> None:
    module = {U.TABLE: U, L.TABLE: L, R.TABLE: R}[machine.table]
    assert dict(machine.table.edges) == dict(module.TRANSITIONS)
