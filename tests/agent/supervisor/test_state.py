"""The lifecycle table: the edges a user's status depends on."""

import pytest

from fogline._statetable import MissingTransitionError
from fogline.agent.supervisor import TRANSITIONS, Event, State, next_state
from fogline.protocol import ModuleState


@pytest.mark.parametrize("state", list(State))
def test_stop_is_accepted_from_every_state(state: State) -> None:
    assert next_state(state, Event.STOP) is State.STOPPED


def test_a_healthy_run() -> None:
    state = State.STOPPED
    for event, expected in (
        (Event.START, State.STARTING),
        (Event.PROBE_OK, State.HEALTHY),
        (Event.PROBE_FAIL, State.UNHEALTHY),
        (Event.PROBE_OK, State.HEALTHY),
        (Event.EXIT, State.EXITED),
        (Event.START, State.STARTING),
    ):
        state = next_state(state, event)
        assert state is expected, event


@pytest.mark.parametrize(
    "event", [Event.START, Event.PROBE_OK, Event.PROBE_FAIL, Event.EXIT, Event.LOOP]
)
def test_crash_loop_is_sticky_until_the_module_is_stable(event: Event) -> None:
    assert next_state(State.CRASH_LOOP, event) is State.CRASH_LOOP
    assert next_state(State.CRASH_LOOP, Event.STABLE) is State.STARTING


@pytest.mark.parametrize("state", [State.STARTING, State.HEALTHY, State.UNHEALTHY, State.EXITED])
def test_too_many_exits_enter_crash_loop(state: State) -> None:
    assert next_state(state, Event.LOOP) is State.CRASH_LOOP


def test_events_that_keep_the_state_are_edges_in_the_table() -> None:
    assert TRANSITIONS[(State.STOPPED, Event.PROBE_OK)] is State.STOPPED  # a late answer
    assert TRANSITIONS[(State.HEALTHY, Event.STABLE)] is State.HEALTHY  # resets the backoff
    assert TRANSITIONS[(State.HEALTHY, Event.PROBE_OK)] is State.HEALTHY
    assert next_state(State.STOPPED, Event.EXIT) is State.EXITED  # its first start failed


def test_an_event_without_an_edge_is_a_bug_that_raises() -> None:
    assert (State.HEALTHY, Event.START) not in TRANSITIONS  # one process at a time
    with pytest.raises(MissingTransitionError, match="no transition from HEALTHY on START"):
        next_state(State.HEALTHY, Event.START)


def test_states_are_the_protocols_module_states_in_their_wire_spelling() -> None:
    # One definition: the hub's rollout gate judges the same enum.
    assert State is ModuleState
    assert {state.value for state in State} == {
        "starting",
        "healthy",
        "unhealthy",
        "crash-loop",
        "stopped",
        "exited",
        "installed",
    }


def test_no_edge_enters_installed_which_is_a_bundles_state() -> None:
    assert State.INSTALLED not in TRANSITIONS.values()
