"""Virtual fleets and fault injection, driving the real agent code.

A `VirtualNode` is built from `fogline.agent.NodeParts` as `fogline agent
run` is: it enrolls (`Enroller`, its own key and certificate), follows its
desired state (`SyncLoop`), reports (`Reporter`) and updates modules (the
real `Updater`: download, digest and signature checks, unpacking, journal),
with its transport wrapped for faults and a seeded clock; only module
processes are fake (the supervisor's `MemoryRuntime`).
`VirtualFleet` runs many in one asyncio loop, `FleetProcesses` over
several processes. Faults (`parse_faults`): request loss, latency, link
flaps, crashes and power cuts mid-update, unhealthy releases.
`rehearse` rolls a manifest out to a virtual fleet on a throwaway hub.
See docs/simulation.md.

Errors:

    FoglineError
      SimError              base of this package; bad fleet parameters
        FaultSpecError      a --faults item is malformed: the item and the reason
        RehearsalError      the rehearsal could not be set up: manifest, hub, fleet
"""

from ._errors import FaultSpecError, RehearsalError, SimError
from ._faults import Faults, Flap, parse_faults
from ._fleet import (
    FleetProcesses,
    FleetRunner,
    FleetStats,
    FleetThread,
    VirtualFleet,
    boot_spread_s,
    default_processes,
    start_fleet,
)
from ._hub import OperatorClient, ThrowawayHub
from ._node import FleetConfig, NodeStats, SimulatedCrash, VirtualNode
from ._rehearse import RehearsalPlan, RehearsalResult, plan_rehearsal, rehearse
from ._standins import push_standin, write_standin
from ._transport import FaultyTransport, Traffic

__all__ = [
    "FaultSpecError",
    "Faults",
    "FaultyTransport",
    "Flap",
    "FleetConfig",
    "FleetProcesses",
    "FleetRunner",
    "FleetStats",
    "FleetThread",
    "NodeStats",
    "OperatorClient",
    "RehearsalError",
    "RehearsalPlan",
    "RehearsalResult",
    "SimError",
    "SimulatedCrash",
    "ThrowawayHub",
    "Traffic",
    "VirtualFleet",
    "VirtualNode",
    "boot_spread_s",
    "default_processes",
    "parse_faults",
    "plan_rehearsal",
    "push_standin",
    "rehearse",
    "start_fleet",
    "write_standin",
]
