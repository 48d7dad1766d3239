"""The pydantic boundary: what a manifest document may contain.

Models are strict (YAML `"5"` is not the integer 5) and forbid unknown
fields. Field names are the manifest's camelCase keys, so a pydantic error
`loc` is exactly the path inside the document. Checks that span fields
raise `FieldProblems`, which carry paths below the value being checked.
"""

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from fogline._duration import parse_duration
from fogline._size import parse_size

from ..protocol import (
    MAX_INGEST_TOKENS,
    MAX_SCOPE_PATTERNS,
    MAX_SENSOR_USERS,
    PasswordHash,
    PublishFilters,
    SensorUsername,
    TokenDigest,
    TokenName,
    check_module_pattern,
    label_problem,
)
from ._schema_checks import (
    ENTRY_NAME,
    MAX_ENTRY_NAME_CHARS,
    FieldProblems,
    check_claim_labels,
    check_expires,
    check_label_key,
    check_labels,
    check_name,
    check_name_patterns,
    check_public_key,
    named_entries,
    one_of,
)
from ._selector import Operator

API_VERSION: Final = "fogline.dev/v1"
KINDS: Final = ("Deployment", "ProvisioningClaim", "ReleaseKey", "VulnerabilityPolicy")
SEVERITY_LEVELS: Final = ("low", "medium", "high", "critical")
MAX_POLICY_EXCEPTIONS: Final = 1000
DRIFT_POLICIES: Final = ("correct", "report")
MAX_PRIORITY: Final = 1000
MAX_EXPRESSIONS: Final = 64


def release_key_document(
    name: str, public_key_b64: str, modules: Sequence[str] | None = None
) -> dict[str, Any]:
    """A `ReleaseKey` document (as `fogline apply -f` reads it) for a public
    key given in base64; scoped to `modules` (name patterns) when given."""
    spec: dict[str, Any] = {"publicKey": public_key_b64}
    if modules:
        spec["modules"] = list(modules)
    return {
        "apiVersion": API_VERSION,
        "kind": "ReleaseKey",
        "metadata": {"name": name},
        "spec": spec,
    }


Name = Annotated[str, AfterValidator(check_name)]
Labels = Annotated[dict[str, str], AfterValidator(check_labels)]
_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)


class RequirementModel(BaseModel):
    model_config = _STRICT
    key: Annotated[str, AfterValidator(check_label_key)]
    operator: Annotated[str, AfterValidator(one_of(*(str(op) for op in Operator)))]
    values: list[str] | None = None

    @model_validator(mode="after")
    def _values_fit_operator(self) -> "RequirementModel":
        op = Operator(self.operator)
        if op in (Operator.IN, Operator.NOT_IN) and not self.values:
            raise FieldProblems([(("values",), f"must list at least one value for {op}", False)])
        if op in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and self.values:
            raise FieldProblems([(("values",), f"must be omitted for {op}", False)])
        items: list[tuple[tuple[str | int, ...], str, bool]] = []
        for i, value in enumerate(self.values or ()):
            problem = label_problem(self.key, value)
            if problem:
                items.append((("values", i), problem, False))
        if items:
            raise FieldProblems(items)
        return self


class SelectorModel(BaseModel):
    model_config = _STRICT
    matchLabels: Labels = {}
    matchExpressions: Annotated[list[RequirementModel], Field(max_length=MAX_EXPRESSIONS)] = []


class MetadataModel(BaseModel):
    model_config = _STRICT
    name: Name


def _unique(key: str, field: str) -> Callable[[list[Any]], list[Any]]:
    """Check that no two entries of a list share `key` (a token name, a user name)."""

    def check(entries: list[Any]) -> list[Any]:
        first: dict[str, int] = {}
        items: list[tuple[tuple[str | int, ...], str, bool]] = []
        for i, entry in enumerate(entries):
            value = getattr(entry, key)
            if value in first:
                reason = f"duplicate {key} {value!r} (first at {field}[{first[value]}])"
                items.append(((i, key), reason, False))
            else:
                first[value] = i
        if items:
            raise FieldProblems(items)
        return entries

    return check


class IngestTokenModel(BaseModel):
    model_config = _STRICT
    name: TokenName
    # The digest, not the token: manifests live in git and the hub shows
    # deployments to every viewer.
    sha256: TokenDigest


class IngestModel(BaseModel):
    model_config = _STRICT
    tokens: Annotated[
        list[IngestTokenModel],
        Field(max_length=MAX_INGEST_TOKENS),
        AfterValidator(_unique("name", "spec.sensors.ingest.tokens")),
    ] = []


class SensorUserModel(BaseModel):
    model_config = _STRICT
    username: SensorUsername
    passwordHash: PasswordHash
    # Where it may publish, when the node's broker has the agent's ACL file.
    publish: PublishFilters | None = None


class SensorMqttModel(BaseModel):
    model_config = _STRICT
    users: Annotated[
        list[SensorUserModel],
        Field(max_length=MAX_SENSOR_USERS),
        AfterValidator(_unique("username", "spec.sensors.mqtt.users")),
    ] = []


class SensorsModel(BaseModel):
    """Who may send readings to the selected nodes (see fogline.protocol's SensorAccess)."""

    model_config = _STRICT
    ingest: IngestModel | None = None
    mqtt: SensorMqttModel | None = None


# Bounds of spec.selfHealing.quarantineAfter: a window of a minute to 30
# days (the hub counts alerts raised in it), a thousand failures at most.
MIN_QUARANTINE_WINDOW_S: Final = 60.0
MAX_QUARANTINE_WINDOW_S: Final = 30 * 86400.0
MAX_QUARANTINE_FAILURES: Final = 1000


def _check_quarantine_window(value: str) -> str:
    seconds = parse_duration(value)
    if not MIN_QUARANTINE_WINDOW_S <= seconds <= MAX_QUARANTINE_WINDOW_S:
        raise ValueError(f"must be between 1m and 30d (got {value!r})")
    return value


class QuarantineAfterModel(BaseModel):
    """Quarantine a selected device after `failures` crash loops within `window`."""

    model_config = _STRICT
    failures: Annotated[int, Field(ge=1, le=MAX_QUARANTINE_FAILURES, strict=True)]
    window: Annotated[str, Field(max_length=16), AfterValidator(_check_quarantine_window)]


# Bounds of spec.selfHealing.restartOnMemoryTrend: a limit of 1 MiB to 1 TiB
# of a module's RSS; a horizon and a cooldown of a minute to 30 days.
MIN_RESTART_LIMIT_BYTES: Final = 1024**2
MAX_RESTART_LIMIT_BYTES: Final = 1024**4
MAX_RESTART_MODULES: Final = 64


def _check_restart_limit(value: str) -> str:
    size = parse_size(value)
    if not MIN_RESTART_LIMIT_BYTES <= size <= MAX_RESTART_LIMIT_BYTES:
        raise ValueError(f"must be between 1MiB and 1TiB (got {value!r})")
    return value


class RestartOnMemoryTrendModel(BaseModel):
    """Restart a module whose RSS trend reaches `limit` within `within`, at
    most once per `cooldown` per device and module."""

    model_config = _STRICT
    limit: Annotated[str, Field(max_length=32), AfterValidator(_check_restart_limit)]
    within: Annotated[str, Field(max_length=16), AfterValidator(_check_quarantine_window)] = "1h"
    cooldown: Annotated[str, Field(max_length=16), AfterValidator(_check_quarantine_window)] = "1h"
    # The modules watched; absent: every module of the deployment.
    modules: (
        Annotated[
            list[
                Annotated[str, Field(max_length=MAX_ENTRY_NAME_CHARS, pattern=ENTRY_NAME.pattern)]
            ],
            Field(min_length=1, max_length=MAX_RESTART_MODULES),
        ]
        | None
    ) = None


class SelfHealingModel(BaseModel):
    """What the hub does by itself to the selected devices (hub/_self_healing.py)."""

    model_config = _STRICT
    quarantineAfter: QuarantineAfterModel | None = None
    restartOnMemoryTrend: RestartOnMemoryTrendModel | None = None


class DeploymentSpecModel(BaseModel):
    model_config = _STRICT
    selector: SelectorModel
    priority: Annotated[int, Field(ge=0, le=MAX_PRIORITY)] = 0
    config: dict[str, Any] = {}
    modules: Annotated[
        list[dict[str, Any]], AfterValidator(named_entries("module", "spec.modules"))
    ] = []
    pipelines: Annotated[
        list[dict[str, Any]], AfterValidator(named_entries("pipeline", "spec.pipelines"))
    ] = []
    rollout: dict[str, Any] = {}
    drift: Annotated[str, AfterValidator(one_of(*DRIFT_POLICIES))] | None = None
    sensors: SensorsModel | None = None
    selfHealing: SelfHealingModel | None = None


class ClaimSpecModel(BaseModel):
    model_config = _STRICT
    labels: Annotated[Labels, AfterValidator(check_claim_labels)] = {}
    # Glob patterns a device's name must match to enroll with the claim.
    names: Annotated[list[str], AfterValidator(check_name_patterns)] = []
    maxUses: Annotated[int, Field(ge=1)]
    expires: Annotated[str, AfterValidator(check_expires)]


def _check_patterns(patterns: list[str]) -> list[str]:
    items: list[tuple[tuple[str | int, ...], str, bool]] = []
    for i, pattern in enumerate(patterns):
        try:
            check_module_pattern(pattern)
        except ValueError as exc:
            items.append(((i,), str(exc), False))
    if items:
        raise FieldProblems(items)
    return patterns


class ReleaseKeySpecModel(BaseModel):
    model_config = _STRICT
    publicKey: Annotated[str, AfterValidator(check_public_key)]
    # Module name patterns the key may sign; absent: every module (discouraged).
    modules: (
        Annotated[
            list[str],
            Field(min_length=1, max_length=MAX_SCOPE_PATTERNS),
            AfterValidator(_check_patterns),
        ]
        | None
    ) = None


class PolicyExceptionModel(BaseModel):
    model_config = _STRICT
    advisory: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    # An ISO 8601 moment or a duration from when the policy is applied.
    expires: Annotated[str, AfterValidator(check_expires)]


class VulnerabilityPolicySpecModel(BaseModel):
    model_config = _STRICT
    # Advisories whose CVSS level is at or above this block.
    blockAt: Annotated[str, AfterValidator(one_of(*SEVERITY_LEVELS))]
    # An advisory that gives no severity: block it, or let it through.
    unknownSeverity: Annotated[str, AfterValidator(one_of("allow", "block"))] = "block"
    # At `fogline release push`: refuse the release, or accept it and mark it.
    onPush: Annotated[str, AfterValidator(one_of("refuse", "mark"))] = "refuse"
    # Module name patterns the policy covers; absent: every module.
    modules: (
        Annotated[
            list[str],
            Field(min_length=1, max_length=MAX_SCOPE_PATTERNS),
            AfterValidator(_check_patterns),
        ]
        | None
    ) = None
    # The devices whose deployments the policy covers (overlapping selectors);
    # absent: the whole fleet.
    selector: SelectorModel | None = None
    exceptions: Annotated[
        list[PolicyExceptionModel],
        Field(max_length=MAX_POLICY_EXCEPTIONS),
        AfterValidator(_unique("advisory", "advisory")),
    ] = []


class DocumentModel(BaseModel):
    model_config = _STRICT
    apiVersion: str
    kind: str
    metadata: MetadataModel


class DeploymentModel(DocumentModel):
    spec: DeploymentSpecModel


class ClaimModel(DocumentModel):
    spec: ClaimSpecModel


class ReleaseKeyModel(DocumentModel):
    spec: ReleaseKeySpecModel


class VulnerabilityPolicyModel(DocumentModel):
    spec: VulnerabilityPolicySpecModel


MODELS: Final[dict[str, type[DocumentModel]]] = {
    "Deployment": DeploymentModel,
    "ProvisioningClaim": ClaimModel,
    "ReleaseKey": ReleaseKeyModel,
    "VulnerabilityPolicy": VulnerabilityPolicyModel,
}
