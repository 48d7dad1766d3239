"""The update as two tables: (state, event) -> state, and journaled state -> resume state.

The shell (`_updater`) does each state's work, which reports an Event; only
these tables say what comes next. A pair missing from TRANSITIONS is a bug,
not a silent stop: `next_state` raises (fogline._statetable, the same rule as
every state table in Fogline). Every deliberate gap is commented.
"""

import enum
from collections.abc import Mapping
from typing import Final

from fogline._statetable import StateTable
from fogline.protocol import UpdateState

# The update's states are the report's update states, defined once in
# fogline.protocol (the values are the wire spelling sent to the hub).
State = UpdateState


class Event(enum.Enum):
    OK = "ok"  # the state's work succeeded
    FAIL = "fail"  # it failed; the reason is in the journal's `error`


TERMINAL: Final = frozenset({State.DONE, State.FAILED})

TRANSITIONS: Final[Mapping[tuple[State, Event], State]] = {
    (State.DOWNLOAD, Event.OK): State.VERIFY,
    # Nothing is installed yet; CLEANUP keeps a partial download worth resuming.
    (State.DOWNLOAD, Event.FAIL): State.CLEANUP,
    (State.VERIFY, Event.OK): State.INSTALL,
    (State.VERIFY, Event.FAIL): State.CLEANUP,  # untrusted bytes: CLEANUP deletes them
    (State.INSTALL, Event.OK): State.ACTIVATE,
    # unpack_release leaves no destination on failure, and the old version
    # was never stopped: nothing to roll back.
    (State.INSTALL, Event.FAIL): State.CLEANUP,
    (State.ACTIVATE, Event.OK): State.HEALTH,
    # The old version may be stopped and the link switched: undo both.
    (State.ACTIVATE, Event.FAIL): State.ROLLBACK,
    (State.HEALTH, Event.OK): State.COMMIT,
    (State.HEALTH, Event.FAIL): State.ROLLBACK,
    (State.COMMIT, Event.OK): State.CLEANUP,
    # The new version could not be recorded as installed: roll back so the
    # record and the links agree (as Mender does on a failed commit).
    (State.COMMIT, Event.FAIL): State.ROLLBACK,
    (State.ROLLBACK, Event.OK): State.CLEANUP,
    # Restoring the links failed (a broken disk). Stop here and keep the
    # evidence; recover() still starts the version recorded as installed.
    (State.ROLLBACK, Event.FAIL): State.FAILED,
    # CLEANUP's work is best effort; its event is the outcome of the whole
    # update (the journal's error), so the report ends in DONE or FAILED.
    (State.CLEANUP, Event.OK): State.DONE,
    (State.CLEANUP, Event.FAIL): State.FAILED,
    # DONE and FAILED are terminal: no edges leave them.
}

RESUME: Final[Mapping[State, State]] = {
    # The active version was never touched before ACTIVATE: carry on.
    State.DOWNLOAD: State.DOWNLOAD,  # resume the partial file from its size
    State.VERIFY: State.VERIFY,  # verification is pure and cheap: do it again
    # Re-verify the bytes on disk before unpacking them after a power cut;
    # half-unpacked directories were swept (find_unpack_leftovers).
    State.INSTALL: State.VERIFY,
    # A crash between stopping the old version and a passing health check
    # means nobody knows the new one is good: roll back.
    State.ACTIVATE: State.ROLLBACK,
    State.HEALTH: State.ROLLBACK,
    State.COMMIT: State.COMMIT,  # health passed: finish the commit
    State.ROLLBACK: State.ROLLBACK,  # idempotent: restore the links, start the old one
    State.CLEANUP: State.CLEANUP,
    # Terminal: nothing to resume.
    State.DONE: State.DONE,
    State.FAILED: State.FAILED,
}

# States after which the active version may have changed; a guard trip in
# them must roll back rather than just clean up.
SWITCHED: Final = frozenset({State.ACTIVATE, State.HEALTH, State.COMMIT, State.ROLLBACK})


TABLE: Final = StateTable("update", TRANSITIONS)


def next_state(state: State, event: Event) -> State:
    """The state after `event` in `state`.

    Raises:
        MissingTransitionError: no such edge; a bug in the caller (terminal
            states have none).
    """
    return TABLE.next_state(state, event)


def resume_state(journaled: str) -> State:
    """Where to resume a journal found in `journaled` at start-up.

    Unknown names (a journal written by a newer agent) roll back: the safe default.
    """
    try:
        return RESUME.get(State(journaled), State.ROLLBACK)
    except ValueError:
        return State.ROLLBACK


def state_of(journaled: str | None) -> State | None:
    """The state a journal names; None when it names none, or one this agent
    does not know (a journal written by a newer agent)."""
    try:
        return None if journaled is None else State(journaled)
    except ValueError:
        return None
