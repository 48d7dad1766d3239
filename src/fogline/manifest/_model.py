"""The validated manifest objects: frozen dataclasses, built once at the boundary."""

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

from ._expiry import parse_expiry
from ._json import JsonValue, freeze, thaw
from ._schema import API_VERSION
from ._selector import Selector, selectors_overlap

DriftPolicy = Literal["correct", "report"]
JsonObject = Mapping[str, JsonValue]


def _empty() -> JsonObject:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a document starts: the file and its 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


def _envelope(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


@dataclass(frozen=True, slots=True)
class Deployment:
    """Modules, pipelines and config for the devices its selector matches.

    `drift` is None when the document does not set it: the compiled state
    then takes it from a lower layer, or "report". `modules`, `pipelines`
    and `rollout` are opaque here (checked by `BlockValidators`); each module
    and pipeline entry has a unique string `name`.
    """

    name: str
    selector: Selector
    priority: int = 0
    config: JsonObject = field(default_factory=_empty)
    modules: Sequence[JsonObject] = ()  # stored as a tuple
    pipelines: Sequence[JsonObject] = ()
    rollout: JsonObject = field(default_factory=_empty)
    drift: DriftPolicy | None = None
    origin: Origin | None = field(default=None, compare=False)
    # Where each `spec.modules` entry starts in the operator's file (by index;
    # empty when the deployment was not read from one), so a problem with an
    # entry found after loading (the vulnerability gate) points at the entry.
    module_origins: tuple[Origin, ...] = field(default=(), compare=False)
    # Who may send readings to its nodes: ingest token digests and MQTT
    # sensor accounts, as written (checked by the schema); empty: none declared.
    sensors: JsonObject = field(default_factory=_empty)
    # What the hub does by itself to the selected devices (spec.selfHealing,
    # as written and checked by the schema); never part of a desired state.
    self_healing: JsonObject = field(default_factory=_empty)

    def __post_init__(self) -> None:
        # Deep-freeze whatever the caller passed, so a deployment (and every
        # revision compiled from it) cannot change behind the hub's back.
        object.__setattr__(self, "config", freeze(self.config))
        object.__setattr__(self, "modules", freeze(self.modules))
        object.__setattr__(self, "pipelines", freeze(self.pipelines))
        object.__setattr__(self, "rollout", freeze(self.rollout))
        object.__setattr__(self, "sensors", freeze(self.sensors))
        object.__setattr__(self, "self_healing", freeze(self.self_healing))

    def to_document(self) -> dict[str, Any]:
        """Return the manifest document this deployment reads back from."""
        spec: dict[str, Any] = {"selector": self.selector.to_document(), "priority": self.priority}
        for key, value in (
            ("config", self.config),
            ("modules", self.modules),
            ("pipelines", self.pipelines),
            ("rollout", self.rollout),
            ("sensors", self.sensors),
            ("selfHealing", self.self_healing),
        ):
            if value:
                spec[key] = thaw(value)
        if self.drift is not None:
            spec["drift"] = self.drift
        return _envelope("Deployment", self.name, spec)


@dataclass(frozen=True, slots=True)
class ProvisioningClaim:
    """A claim token's policy: labels given to enrolled devices, uses, expiry,
    and the device names it may enroll (glob patterns; none: any name).

    `expires` is as written: a duration counted from when the claim is
    applied (`24h`) or a fixed ISO 8601 moment; see `expires_at`.
    """

    name: str
    max_uses: int
    expires: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    origin: Origin | None = field(default=None, compare=False)
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parse_expiry(self.expires)  # fail at construction, not at enrollment
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "names", tuple(self.names))

    def expires_at(self, applied_at: datetime) -> datetime:
        """Return when the claim stops working, given when it was applied."""
        expiry = parse_expiry(self.expires)
        if isinstance(expiry, datetime):
            return expiry
        return applied_at + timedelta(seconds=expiry)

    def to_document(self) -> dict[str, Any]:
        """Return the manifest document this claim reads back from."""
        spec: dict[str, Any] = {
            "labels": dict(sorted(self.labels.items())),
            "maxUses": self.max_uses,
        }
        if self.names:
            spec["names"] = list(self.names)
        return _envelope("ProvisioningClaim", self.name, {**spec, "expires": self.expires})


@dataclass(frozen=True, slots=True)
class ReleaseKey:
    """A trusted Ed25519 release-signing key: `public_key` is its 32 raw bytes.

    `modules` is the key's scope: the module name patterns it may sign
    (fnmatch), or None for every module.
    """

    name: str
    public_key: bytes
    origin: Origin | None = field(default=None, compare=False)
    modules: tuple[str, ...] | None = None

    def to_document(self) -> dict[str, Any]:
        """Return the manifest document this key reads back from (base64 form)."""
        spec: dict[str, Any] = {"publicKey": base64.b64encode(self.public_key).decode("ascii")}
        if self.modules is not None:
            spec["modules"] = list(self.modules)
        return _envelope("ReleaseKey", self.name, spec)


@dataclass(frozen=True, slots=True)
class PolicyException:
    """An advisory a VulnerabilityPolicy lets through, why, and until when."""

    advisory: str
    reason: str
    expires: str  # as written: an ISO 8601 moment or a duration from apply

    def expires_at(self, applied_at: datetime) -> datetime:
        expiry = parse_expiry(self.expires)
        if isinstance(expiry, datetime):
            return expiry
        return applied_at + timedelta(seconds=expiry)


@dataclass(frozen=True, slots=True)
class VulnerabilityPolicy:
    """Which advisories block a release: at or above `block_at` (a CVSS
    level), those without severity if `unknown_severity` is "block", for the
    modules matching `modules` (None: all), less the unexpired exceptions.

    `selector` (None: the whole fleet) scopes the policy to the deployments
    whose selector overlaps it (`applies_to`); a scoped policy never refuses
    a push, since a release is not yet tied to devices there: it marks.
    """

    name: str
    block_at: str
    unknown_severity: str = "block"
    on_push: str = "refuse"
    modules: tuple[str, ...] | None = None
    exceptions: tuple[PolicyException, ...] = ()
    origin: Origin | None = field(default=None, compare=False)
    selector: Selector | None = None

    def applies_to(self, deployment: Selector) -> bool:
        """Whether the policy covers a deployment with this selector: some
        device could be selected by both (a fleet-wide policy: always)."""
        return self.selector is None or selectors_overlap(self.selector, deployment)

    def to_document(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "blockAt": self.block_at,
            "unknownSeverity": self.unknown_severity,
            "onPush": self.on_push,
        }
        if self.modules is not None:
            spec["modules"] = list(self.modules)
        if self.selector is not None:
            spec["selector"] = self.selector.to_document()
        spec["exceptions"] = [
            {"advisory": e.advisory, "reason": e.reason, "expires": e.expires}
            for e in self.exceptions
        ]
        return _envelope("VulnerabilityPolicy", self.name, spec)


@dataclass(frozen=True, slots=True)
class ManifestSet:
    """Every object of a validated set of manifests, in the order written."""

    deployments: tuple[Deployment, ...] = ()
    claims: tuple[ProvisioningClaim, ...] = ()
    release_keys: tuple[ReleaseKey, ...] = ()
    vulnerability_policies: tuple[VulnerabilityPolicy, ...] = ()


BlockValidator = Callable[[JsonObject], None]


@dataclass(frozen=True, slots=True)
class BlockValidators:
    """Schemas for the blocks this package keeps opaque, supplied by their owners.

    Each callable gets one block of a deployment that passed the base schema
    and raises `BlockError(path, reason)` on a mistake, `path` relative to
    what it was given; `load_manifests` reports it at the exact YAML position.
    `module` and `pipeline` are called once per entry of `spec.modules` and
    `spec.pipelines` (each a mapping with a unique `name`); `rollout` with
    `spec.rollout`, only when the document has one.
    """

    module: BlockValidator | None = None
    pipeline: BlockValidator | None = None
    rollout: BlockValidator | None = None
