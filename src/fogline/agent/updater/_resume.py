"""Where the engine runs a journal from: a new update, a resumed one, the guard.

Pure: journals in, journals and states out; the Updater does the I/O. A
journal found unfinished resumes where RESUME (`_states`) says, unless the
save-count guard trips: past `max_saves` saves the update rolls back (or
finishes its cleanup) as a crash loop, and `_GUARD_GRACE` saves later, when
even that kept crashing, it goes straight to FAILED. A retry of an
interrupted update of the same release carries its saves over, so an update
that kills the agent every time ends in FAILED instead of looping.
"""

import dataclasses
from typing import Final

from ._journal import Journal
from ._models import InstalledRelease, ReleaseTarget, UpdateResult
from ._states import SWITCHED, TERMINAL, State, resume_state, state_of

# Saves past max_saves allowed for the guard's own rollback and cleanup;
# beyond them even that crashed, and the journal goes straight to FAILED.
_GUARD_GRACE: Final = 3
# Resume states that leave the active version alone: recover() starts the
# installed versions first and runs these afterwards, so a long download
# does not keep a node's modules down.
_DEFERRED: Final = frozenset({State.DOWNLOAD, State.VERIFY})


def new_journal(
    target: ReleaseTarget,
    installed: InstalledRelease | None,
    previous: Journal | None,
    prior_previous: str | None,
) -> Journal:
    """The journal of a new update to `target` from `installed`, in DOWNLOAD.

    `previous` is the module's last journal; `prior_previous` the install the
    `previous` link names now, for a rollback to restore.
    """
    # Saves carry over a retry after an interruption, so an update that
    # kills the agent every time ends in FAILED instead of looping.
    carried = (
        previous.saves
        if previous is not None and previous.interrupted and previous.target.digest == target.digest
        else 0
    )
    return Journal(
        state=State.DOWNLOAD.value,
        saves=carried,
        target=target,
        prior=installed,
        prior_previous=prior_previous,
    )


def failed_after_commit(journal: Journal, reason: str) -> Journal:
    """`journal`, committed, as failed in HEALTH for `reason`: for a rollback
    found necessary after the commit, recorded (not retryable)."""
    return dataclasses.replace(
        journal,
        error=reason,
        failed_in=State.HEALTH.value,
        retryable=False,
        interrupted=False,
    )


def guard_trips(journal: Journal, max_saves: int) -> bool:
    """True when `journal` was saved `max_saves` times or more: a crash loop."""
    return journal.saves >= max_saves


def crash_loop(journal: Journal, max_saves: int) -> Journal:
    """`journal` with the crash loop recorded as (part of) its error, not retryable."""
    reason = (
        f"crash loop: the update journal was saved {journal.saves} times without "
        f"finishing (limit {max_saves})"
    )
    error = reason if journal.error is None else f"{journal.error}; {reason}"
    failed_in = journal.failed_in or journal.state
    return dataclasses.replace(
        journal, error=error, failed_in=failed_in, retryable=False, interrupted=False
    )


def resume_point(journal: Journal, max_saves: int) -> tuple[Journal, State]:
    """The journal to run and the state to run it from, for an unfinished `journal`.

    Past the guard, the crash loop is recorded. A resumed rollback of an
    update that had not failed says why it rolled back: the agent stopped
    before the new version was known healthy (retryable).
    """
    over = journal.saves - max_saves
    if over >= _GUARD_GRACE:
        # Even the guard's rollback kept crashing: stop doing anything.
        return crash_loop(journal, max_saves), State.FAILED
    if over >= 0:
        undo = journal.state in SWITCHED or state_of(journal.state) is None
        state = State.ROLLBACK if undo else State.CLEANUP
        if journal.state == State.CLEANUP:
            state = State.CLEANUP
        return crash_loop(journal, max_saves), state
    state = resume_state(journal.state)
    if state is State.ROLLBACK and journal.error is None:
        journal = dataclasses.replace(
            journal,
            error=(
                f"the agent stopped during {journal.state}; "
                "rolled back because the new version was not known to be healthy"
            ),
            failed_in=journal.state,
            retryable=True,
            interrupted=True,
        )
    return journal, state


def is_deferred(journal: Journal, max_saves: int) -> bool:
    """True when `journal` resumes in a state that leaves the active version
    alone (and the guard does not trip): recover() runs it after the starts."""
    return resume_state(journal.state) in _DEFERRED and not guard_trips(journal, max_saves)


def result_of(journal: Journal) -> UpdateResult:
    """What an update that ended in `journal` reports; unfinished reads as FAILED."""
    t = journal.target
    state = State(journal.state) if journal.state in TERMINAL else State.FAILED
    return UpdateResult(
        t.name,
        t.version,
        t.digest,
        state,
        error=journal.error,
        failed_in=state_of(journal.failed_in),
        retryable=journal.retryable,
    )
