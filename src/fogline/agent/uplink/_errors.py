"""The uplink's exception tree (drawn in the package docstring)."""

from fogline import FoglineError
from fogline.agent._errors import HubUnreachableError as AgentHubUnreachableError


class UplinkError(FoglineError):
    """Base of every error the uplink and its transports raise on purpose."""


class HubUnreachableError(UplinkError, AgentHubUnreachableError):
    """The network, TLS, a timeout or a 5xx failed the send; retrying is safe.

    The agent's own HubUnreachableError, raised by the uplink: code that
    catches the agent's catches this one too.

    The hub may or may not have stored the batch: it stores each (device,
    stream, seq) once, so sending it again cannot duplicate anything.
    """


class BatchRejectedError(UplinkError):
    """The hub refused the data (4xx such as 400, 413, 422); retrying cannot help.

    Not for authentication or authorisation failures (401/403): those are
    fixed without touching the data, so transports raise HubUnreachableError
    for them and the records wait.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"hub rejected the batch: HTTP {status}: {reason}")
        self.status, self.reason = status, reason
