"""The outbox's exception tree (drawn in the package docstring)."""

from fogline import FoglineError


class OutboxError(FoglineError):
    """Base of every error the outbox raises on purpose."""


class RecordRejectedError(OutboxError):
    """The caller's record is invalid; nothing of its batch was written."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"outbox record: {field}: {reason}")
        self.field, self.reason = field, reason


class OutboxStorageError(OutboxError):
    """The disk or SQLite failed (full disk, I/O error, closed outbox).

    The operation did not happen: its transaction was rolled back.
    """
