"""Errors of the agent.

FoglineError
  AgentError              base of this package
    IdentityError         the data directory's identity is missing or damaged
  HubError                talking to the hub failed: fogline.hubclient's tree
    HubUnreachableError   network, TLS, timeout, 408, 429, 5xx: retry with backoff
    HubRefusedError       401/403: revoked device, bad claim; retrying blindly is pointless
    HubRejectedError      another 4xx: the request is wrong (a bug to report)
"""

from fogline._errors import FoglineError


class AgentError(FoglineError):
    """Base class of agent errors."""


class IdentityError(AgentError):
    """The node's identity files are missing, unreadable or inconsistent."""
