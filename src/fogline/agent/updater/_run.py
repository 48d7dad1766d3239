"""One update as it runs in this process, and how its failures are recorded.

The journal is what survives a crash; `UpdateRun` adds what need not (the
parsed module file, TUF's answer, the digest DOWNLOAD computed). A failure
of the update (one of FAILURES) goes into the journal's `error`,
`failed_in` and `retryable` and becomes Event.FAIL; anything else is a bug
and propagates.
"""

import dataclasses
from dataclasses import dataclass
from typing import Final

from fogline.artifact import ArtifactError, ModuleSpec

from ._errors import UpdaterError
from ._journal import Journal
from ._models import ReleaseTarget
from ._states import Event, State
from ._tuf import TrustedTarget

# What counts as "the update failed" rather than "the updater has a bug".
FAILURES: Final = (UpdaterError, ArtifactError, OSError)


@dataclass(slots=True)
class UpdateRun:
    """One update in this process: the journal plus what need not survive a crash."""

    journal: Journal
    spec: ModuleSpec | None = None
    trusted: TrustedTarget | None = None  # what TUF vouched for, asked in DOWNLOAD
    # The archive's digest as DOWNLOAD computed it in this process, just
    # before publish() made the bytes durable under the archive's name.
    # VERIFY trusts it instead of reading 5 MB (or 5 GB) again; after a
    # restart it is None, and VERIFY hashes the file as it is on disk.
    hashed: str | None = None

    @property
    def target(self) -> ReleaseTarget:
        return self.journal.target

    def fail(self, state: State, reason: str, *, retryable: bool) -> Event:
        """Record why `state` failed (saved with the next state) and return FAIL."""
        j = self.journal
        if j.error is None:
            self.journal = dataclasses.replace(
                j, error=reason, failed_in=state.value, retryable=retryable
            )
        else:  # e.g. the rollback after a failed health check failed too
            self.journal = dataclasses.replace(j, error=f"{j.error}; then in {state}: {reason}")
        return Event.FAIL


def describe(exc: BaseException) -> str:
    """`exc` as the reason an update failed: our own errors' messages as they
    are, anything else with its type."""
    if isinstance(exc, UpdaterError | ArtifactError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
