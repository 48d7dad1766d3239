"""The edge node: enrollment, reporting, desired-state sync, modules, data plane.

`Agent` is `fogline agent run`. `NodeParts` is the seam a node is built
from (enrollment, certificate renewal, report loop, sync loop, module
stack with the real updater), with the transport and the clock injected:
the agent builds its node from it, and so does each of the simulator's
virtual nodes, which therefore need nothing private of this package.
"""

from fogline.hubclient import HubRefusedError, HubUnreachableError

from ._agent import Agent
from ._backoff import Backoff
from ._clock import Clock
from ._config import AgentConfig, default_name
from ._enroll import Enroller
from ._errors import AgentError, IdentityError
from ._hublink import HubLink, HubTls, TransportWrapper
from ._identity import Identity, IdentityStore
from ._parts import NodeParts
from ._renew import Renewer
from ._report import Reporter
from ._sync import ConfigApplier, DesiredStore, SyncLoop

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentError",
    "Backoff",
    "Clock",
    "ConfigApplier",
    "DesiredStore",
    "Enroller",
    "HubLink",
    "HubRefusedError",
    "HubTls",
    "HubUnreachableError",
    "Identity",
    "IdentityError",
    "IdentityStore",
    "NodeParts",
    "Renewer",
    "Reporter",
    "SyncLoop",
    "TransportWrapper",
    "default_name",
]
