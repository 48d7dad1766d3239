"""The edge node: enrollment, reporting, and (later) workloads and data plane."""

from fogline.hubclient import HubRefusedError, HubUnreachableError

from ._agent import Agent, AgentConfig, default_name
from ._backoff import Backoff
from ._errors import AgentError, IdentityError
from ._identity import Identity, IdentityStore

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentError",
    "Backoff",
    "HubRefusedError",
    "HubUnreachableError",
    "Identity",
    "IdentityError",
    "IdentityStore",
    "default_name",
]
