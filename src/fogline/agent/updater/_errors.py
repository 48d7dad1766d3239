"""The updater's exception tree (drawn in the package docstring)."""

from fogline._errors import FoglineError
from fogline.hubclient import is_transient_status


class UpdaterError(FoglineError):
    """Base of every error the updater and its ports raise on purpose."""


class InvalidTargetError(UpdaterError):
    """The desired state asked for something malformed: field, reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"release target: {field}: {reason}")
        self.field, self.reason = field, reason


class ArtifactFetchError(UpdaterError):
    """Downloading the archive failed; what was already written can be resumed.

    `is_transient` errors (transport, timeouts, 408/429/5xx: fogline.hubclient's
    one rule) are retried with backoff inside one update, waiting at least
    `retry_after_s` when the hub sent Retry-After; the others (such as 404 or
    403) end the attempt at once. Neither marks the release as failed: the
    next `ensure` resumes.
    """

    def __init__(
        self,
        digest: str,
        reason: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        where = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"fetching {digest}: {where}{reason}")
        self.digest, self.reason, self.status = digest, reason, status
        self.retry_after_s = retry_after_s

    @property
    def is_transient(self) -> bool:
        return self.status is None or is_transient_status(self.status)


class ReleaseRejectedError(UpdaterError):
    """The release itself is wrong for this node (digest, size, name, version,
    architecture): it is recorded as failed and not tried again."""


class ActivationError(UpdaterError):
    """The module activator failed to start or stop a module (its error is chained)."""


class JournalCorruptError(UpdaterError):
    """A state file in the updater's directory is unreadable: path and reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class TufRefusedError(UpdaterError):
    """TUF metadata does not vouch for the release: the target is not listed,
    lists other bytes, or the metadata itself failed (expired, rolled back,
    badly signed, unreachable). The node stays on its release; the failure is
    not recorded, so the same release applies once the metadata vouches for it.
    """

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"TUF refused {target}: {reason}")
        self.target, self.reason = target, reason
