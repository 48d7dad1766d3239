"""The uplink's exception tree (drawn in the package docstring)."""

from fogline import FoglineError


class UplinkError(FoglineError):
    """Base of the errors the uplink itself raises on purpose."""


class BatchRejectedError(UplinkError):
    """The hub refused the data (4xx such as 400, 413, 422); retrying cannot help.

    Not for authentication or authorisation failures (401/403): those are
    fixed without touching the data, so transports raise HubRefusedError
    for them and the records wait.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"hub rejected the batch: HTTP {status}: {reason}")
        self.status, self.reason = status, reason
