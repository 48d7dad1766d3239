"""The state table and the resume table: complete, terminating, safe by default."""

import inspect

from fogline.agent.updater import RESUME, TRANSITIONS, Event, State, _states

TERMINAL = {State.DONE, State.FAILED}


def test_every_working_state_has_an_ok_and_a_fail_edge() -> None:
    for state in set(State) - TERMINAL:
        assert (state, Event.OK) in TRANSITIONS, state
        assert (state, Event.FAIL) in TRANSITIONS, state


def test_terminal_states_have_no_edges_and_say_so() -> None:
    assert not [key for key in TRANSITIONS if key[0] in TERMINAL]
    assert "DONE and FAILED are terminal" in inspect.getsource(_states)


def test_the_table_has_no_cycles_so_every_update_ends() -> None:
    # No retry loop inside one update: a longest path exists from every state.
    def depth(state: State, seen: frozenset[State]) -> int:
        assert state not in seen, f"cycle through {state}"
        nexts = [to for (frm, _e), to in TRANSITIONS.items() if frm is state]
        return 0 if not nexts else 1 + max(depth(n, seen | {state}) for n in nexts)

    assert depth(State.DOWNLOAD, frozenset()) <= len(State)


def test_every_state_is_reachable_from_download_and_reaches_an_end() -> None:
    reachable, frontier = {State.DOWNLOAD}, [State.DOWNLOAD]
    while frontier:
        state = frontier.pop()
        for (frm, _e), to in TRANSITIONS.items():
            if frm is state and to not in reachable:
                reachable.add(to)
                frontier.append(to)
    assert reachable == set(State)


def test_once_the_active_version_may_have_changed_failures_roll_back() -> None:
    for state in (State.ACTIVATE, State.HEALTH, State.COMMIT):
        assert TRANSITIONS[(state, Event.FAIL)] is State.ROLLBACK
    for state in (State.DOWNLOAD, State.VERIFY, State.INSTALL):
        assert TRANSITIONS[(state, Event.FAIL)] is State.CLEANUP  # nothing to undo
    assert TRANSITIONS[(State.HEALTH, Event.OK)] is State.COMMIT  # no commit without health


def test_resume_covers_every_state() -> None:
    assert set(RESUME) == set(State)


def test_resume_rolls_back_whenever_health_is_unknown() -> None:
    assert RESUME[State.ACTIVATE] is State.ROLLBACK
    assert RESUME[State.HEALTH] is State.ROLLBACK
    assert RESUME[State.ROLLBACK] is State.ROLLBACK
    assert RESUME[State.COMMIT] is State.COMMIT  # health passed: finish
    # Before ACTIVATE nothing ran: carry on, re-verifying bytes before unpacking them.
    assert RESUME[State.DOWNLOAD] is State.DOWNLOAD
    assert RESUME[State.INSTALL] is State.VERIFY


def test_unknown_journaled_states_roll_back() -> None:
    assert _states.resume_state("defragment") is State.ROLLBACK
    assert _states.resume_state("health") is State.ROLLBACK
    assert _states.resume_state("download") is State.DOWNLOAD


def test_next_state_refuses_edges_that_do_not_exist() -> None:
    import pytest

    from fogline._statetable import MissingTransitionError

    with pytest.raises(MissingTransitionError, match="update: no transition from DONE on OK"):
        _states.next_state(State.DONE, Event.OK)


def test_the_success_and_failure_paths_cover_every_crash_point_once() -> None:
    from fogline.agent.updater import (
        DELTA_PATH_POINTS,
        FAILURE_PATH_POINTS,
        SUCCESS_PATH_POINTS,
        crash_points,
    )

    both = list(SUCCESS_PATH_POINTS) + list(FAILURE_PATH_POINTS) + list(DELTA_PATH_POINTS)
    assert sorted(both) == sorted(crash_points())
    assert len(both) == len(set(both))
