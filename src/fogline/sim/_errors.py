"""Errors of the fleet simulator (tree drawn in the package docstring)."""

from fogline._errors import FoglineError
from fogline.hubclient import HubError


class SimError(FoglineError):
    """Base class of the simulator's errors."""


class FaultSpecError(SimError):
    """A `--faults` item is malformed: the item and the reason."""

    def __init__(self, item: str, reason: str) -> None:
        super().__init__(f"--faults: {item[:80]!r}: {reason}")
        self.item, self.reason = item, reason


class RehearsalError(SimError):
    """The rehearsal could not be set up: manifest, throwaway hub, releases.

    `hub_error` is the fogline.hubclient error behind it when the hub's
    answer (or its absence) was the cause; None otherwise.
    """

    def __init__(self, message: str, *, hub_error: HubError | None = None) -> None:
        super().__init__(message)
        self.hub_error = hub_error
