"""The hub's HTTP API: one router per area, all under `/v1`.

    device      enrollment (claim + CSR), reports, desired state (mTLS)
    operator    claims and devices (bearer token)
    alerts      the alerts the hub raised, and their acknowledgement
    manifest    plan, apply, get and delete fleet manifests
    release     push, list and fetch releases and artifacts
    telemetry   device uploads, operator queries
    rollout     rollouts and the audit log
    people      users, API tokens, whoami (roles: hub/_permissions.py)
    tuf         TUF metadata for nodes, uploads of signed roles (hub/_tuf.py)
    vulns       the offline vulnerability database (OSV) and its findings

`answer_report`, `answer_desired`, `answer_tuf_metadata` and
`answer_offloaded_artifact` are the device hot path's answers,
shared with `DeviceHotPath` (hub/_hot_path.py), which serves them before FastAPI.
"""

from ._alerts import router as alerts_router
from ._device import answer_desired, answer_report, read_woken_desired
from ._device import router as device_router
from ._manifest import router as manifest_router
from ._operator import router as operator_router
from ._people import router as people_router
from ._release import answer_offloaded_artifact
from ._release import router as release_router
from ._rollout import router as rollout_router
from ._telemetry import router as telemetry_router
from ._tuf import answer_tuf_metadata
from ._tuf import router as tuf_router
from ._vulns import router as vulns_router

__all__ = [
    "alerts_router",
    "answer_desired",
    "answer_offloaded_artifact",
    "answer_report",
    "answer_tuf_metadata",
    "device_router",
    "manifest_router",
    "operator_router",
    "people_router",
    "read_woken_desired",
    "release_router",
    "rollout_router",
    "telemetry_router",
    "tuf_router",
    "vulns_router",
]
