"""Versioned JSON bodies of the /v1 API, for both the device and operator sides.

Each body is one of the kinds in `_base`: what an operator sends is a
WireModel (an unknown field is refused), what the other daemon sends or
what the hub shows is a TolerantModel (an unknown field is ignored, a
missing one defaults). Either way sizes are bounded and a known field of the
wrong type is a 4xx naming the field. The desired document and the report
have their own modules (`_desired`, `_report`).
"""

import datetime as dt
import fnmatch
from collections.abc import Iterable
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field

from ._base import TolerantModel, WireModel
from ._enrollment import DEVICE_NAME_PATTERN
from ._labels import hub_label_problem
from ._report import Labels, ReportedState

API_PREFIX: Final = "/v1"
# A release push carries its signature envelope (base64 of the .sig JSON) here.
SIGNATURE_HEADER: Final = "x-fogline-signature"
MAX_BODY_BYTES: Final = 1024 * 1024

# A claim's name patterns: device-name characters and the globs `*` and `?`.
DEVICE_NAME_GLOB_PATTERN: Final = r"^[a-z0-9*?-]{1,63}$"
MAX_NAME_PATTERNS: Final = 64


def name_allowed(name: str, patterns: Iterable[str]) -> bool:
    """Whether a device name matches one of a claim's name patterns (`plant7-*`).

    No patterns: any name. Patterns hold only name characters, `*` and `?`
    (see DEVICE_NAME_GLOB_PATTERN), so fnmatch has no brackets to expand.
    """
    listed = list(patterns)
    return not listed or any(fnmatch.fnmatchcase(name, pattern) for pattern in listed)


def _not_hub_owned(key: str) -> str:
    problem = hub_label_problem(key)
    if problem:
        raise ValueError(problem)
    return key


NamePattern = Annotated[str, Field(pattern=DEVICE_NAME_GLOB_PATTERN)]
LabelKey = Annotated[str, Field(max_length=63), AfterValidator(_not_hub_owned)]
DeviceStatus = Literal["online", "offline", "revoked"]
ClaimStatus = Literal["active", "expired", "revoked", "used-up"]


class ClaimCreate(WireModel):
    # Optional: a name to address the claim by (as a ProvisioningClaim's metadata.name).
    name: Annotated[str, Field(pattern=DEVICE_NAME_PATTERN)] | None = None  # a DNS label
    labels: Labels = {}
    # Name patterns a device enrolling with the claim must match (none: any name).
    names: Annotated[list[NamePattern], Field(max_length=MAX_NAME_PATTERNS)] = []
    max_uses: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    expires_in_s: Annotated[float, Field(gt=0, le=366 * 86400)] = 86400.0


class ClaimView(TolerantModel):
    id: str
    name: str | None = None  # set for named claims (ProvisioningClaim, claim create --name)
    labels: dict[str, str]
    names: list[str] = []
    max_uses: int
    uses: int
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked: bool
    status: ClaimStatus


class ClaimCreated(TolerantModel):
    claim: ClaimView
    token: str


class DeviceView(TolerantModel):
    id: str
    name: str
    # What deployments select on: claim and operator labels, and the hub's
    # platform labels (fogline.dev/os, fogline.dev/arch).
    labels: dict[str, str]
    # What the device asked for: not used for targeting until an operator
    # promotes a key (LabelChange.promote).
    reported_labels: dict[str, str] = {}
    status: DeviceStatus
    enrolled_at: dt.datetime
    last_seen: dt.datetime | None
    agent_version: str | None
    hostname: str | None
    os: str | None
    arch: str | None
    uptime_s: float | None
    claim_id: str | None
    cert_not_after: dt.datetime
    sync: "SyncReport | None" = None
    # What the node last reported beyond its facts: outbox, modules, updates, drift.
    reported: ReportedState = ReportedState()
    # ok, warning or critical: the worst of the device's active alerts (None:
    # a hub before health). Text, so a level a newer hub adds still reads.
    health: str | None = None


class LabelChange(WireModel):
    """An operator's change to a device's labels: promote, then set, then remove."""

    set: Labels = {}
    remove: Annotated[list[LabelKey], Field(max_length=64)] = []
    # Keys of the device's requested labels to copy, with their values, into
    # the labels deployments select on.
    promote: Annotated[list[LabelKey], Field(max_length=64)] = []


class DevicePage(TolerantModel):
    """One page of `GET /v1/devices`: the devices, and the cursor of the next
    page (None on the last). Pass `next_cursor` back unchanged as `cursor`."""

    devices: list[DeviceView]
    next_cursor: str | None = None


class ErrorDetail(TolerantModel):
    field: str | None = None
    reason: str


class ErrorBody(TolerantModel):
    error: str
    message: str
    details: list[ErrorDetail] = []


# -- desired state (agent <-> hub) ---------------------------------------------

SyncStatus = Literal["in-sync", "pending", "error"]
MAX_DESIRED_WAIT_S: Final = 30.0


class SyncReport(TolerantModel):
    """Desired revision vs applied revision, as `fogline devices show` shows it."""

    desired_revision: str | None
    reported_revision: str | None
    status: SyncStatus
    error: str | None = None


# -- manifests (operator) -------------------------------------------------------


class ManifestFile(WireModel):
    name: Annotated[str, Field(min_length=1, max_length=512)]
    text: Annotated[str, Field(max_length=1024 * 1024)]


class ManifestRequest(WireModel):
    files: Annotated[list[ManifestFile], Field(min_length=1, max_length=1000)]
    prune: bool = False


class DeviceChange(TolerantModel):
    device_id: str
    name: str
    from_revision: str | None
    to_revision: str
    changes: list[dict[str, Any]]


class DeploymentChange(TolerantModel):
    name: str
    action: Literal["create", "update", "delete", "unchanged"]


class PlanResult(TolerantModel):
    deployments: list[DeploymentChange]
    devices: list[DeviceChange]
    claims: list[str] = []
    release_keys: list[str] = []

    @property
    def has_changes(self) -> bool:
        return bool(self.devices) or any(d.action != "unchanged" for d in self.deployments)


class ApplyResult(TolerantModel):
    plan: PlanResult
    # Tokens of declarative claims created by this apply; shown once.
    new_claim_tokens: dict[str, str] = {}
    # Ids of the rollouts this apply started (none when no device changes).
    rollouts: list[str] = []


class ReleaseKeyView(WireModel):
    """An applied ReleaseKey: `modules` are the module patterns it may sign (None: any)."""

    name: str
    key_id: str
    public_key: str  # base64 of the 32 raw bytes, as in the manifest
    modules: list[str] | None
    applied_at: dt.datetime


class DesiredView(WireModel):
    """The desired-state document the hub serves a device now."""

    device_id: str
    name: str
    revision: str
    document: dict[str, Any]
    updated_at: dt.datetime
    applied_revision: str | None


class DeploymentView(TolerantModel):
    name: str
    priority: int
    document: dict[str, Any]
    applied_at: dt.datetime
    applied_by: str
    devices: int


class TelemetryAck(TolerantModel):
    """The answer to an uploaded batch: how many records it held (each stored once)."""

    received: Annotated[int, Field(ge=0)]


DeviceView.model_rebuild()
