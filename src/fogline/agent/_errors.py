"""Errors of the agent.

FoglineError
  AgentError              base of this package
    HubUnreachableError   network failure or a 5xx; retrying is safe
    HubRefusedError       a 4xx: the hub will say the same again (bad claim,
                          revoked device); retrying blindly is pointless
    IdentityError         the data directory's identity is missing or damaged
"""

from fogline._errors import FoglineError


class AgentError(FoglineError):
    """Base class of agent errors."""


class HubUnreachableError(AgentError):
    """The hub could not be reached or failed; retrying is safe."""


class HubRefusedError(AgentError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"hub refused ({status} {code}): {message}")
        self.status, self.code, self.message = status, code, message


class IdentityError(AgentError):
    """The node's identity files are missing, unreadable or inconsistent."""
