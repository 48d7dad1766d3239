"""The pipeline spec: what operators write under a Deployment's `spec.pipelines`.

Pydantic models (extra="forbid", frozen) checking the shape of the document;
the meaning (expressions, references, field availability) is checked by
`_check`, which `PipelineSpec` runs as its last validator so that a manifest
embedding `PipelineSpec` cannot accept a pipeline that would fail on a node.

Field names are camelCase like the rest of the manifest (`rateLimit`,
`maxKeys`); `per_s` keeps its unit suffix. Durations accept `500ms`, `10s`,
`5m`, `24h`, `7d`, `1h30m` or a number of seconds and are stored as seconds.

Names: a parsed block is a `...Spec` (`FilterStepSpec`, `ThresholdSpec`); the
running operator `build_pipeline` makes of it is a `...Step` (`FilterStep`,
`ThresholdStep`).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    model_validator,
)

from fogline.artifact import parse_semver

from ._duration import parse_duration

MAX_STEPS: Final = 64
MAX_OUTPUTS: Final = 64
MAX_MAPPED_FIELDS: Final = 64
MAX_AGGREGATES: Final = 64
MAX_KEY_FIELDS: Final = 8
MAX_FEATURES: Final = 64
MAX_EXPRESSION_CHARS: Final = 4096
# A hopping window puts each event in size/hop windows: bound the per-event work.
MAX_WINDOWS_PER_EVENT: Final = 100
MAX_PAYLOAD_DEPTH: Final = 8
MAX_PAYLOAD_ITEMS: Final = 256
MAX_WEBHOOK_TIMEOUT_S: Final = 60.0
MAX_MODEL_FILE_DEPTH: Final = 8

DAY_S: Final = 86400.0

STEP_KINDS: Final = ("filter", "map", "window", "detect", "infer", "dedupe", "sample")
DETECTOR_TYPES: Final = ("threshold", "zscore", "halfspacetrees")

# Context key: validate_pipeline runs the semantic check itself, to report each
# problem with its own path instead of one combined pydantic error.
SKIP_SEMANTIC_CHECK: Final = "fogline.pipeline.skip_semantic_check"

Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
StepId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
]
# Field names are what the expression language can reference: identifiers.
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
ExpressionText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EXPRESSION_CHARS)]


# A release's module name (a DNS label), as in `fogline-module.yaml`.
_MODULE_NAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
# One level of a file path inside a release; never `.`, `..` or hidden.
_MODEL_FILE_PART_RE: Final = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,127}", re.ASCII)


def _unique(names: list[str]) -> list[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{name!r} is listed twice")
        seen.add(name)
    return names


UniqueFields = Annotated[list[FieldName], AfterValidator(_unique)]
KeyFields = Annotated[UniqueFields, Field(max_length=MAX_KEY_FIELDS)]
MaxKeys = Annotated[int, Field(ge=1, le=1_000_000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- source -----------------------------------------------------------------


class HttpSourceSpec(_Model):
    """The agent's local HTTP ingest (no options yet)."""


class SourceSpec(_Model):
    """Where records come from: an MQTT topic pattern or the HTTP ingest."""

    mqtt: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    qos: Annotated[int, Field(ge=0, le=2)] | None = None
    http: HttpSourceSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SourceSpec:
        if (self.mqtt is None) == (self.http is None):
            raise ValueError("a source is exactly one of mqtt or http")
        if self.http is not None and self.qos is not None:
            raise ValueError("qos applies to an mqtt source only")
        return self


# --- steps -------------------------------------------------------------------


class FilterStepSpec(_Model):
    id: StepId
    filter: ExpressionText


class MapStepSpec(_Model):
    id: StepId
    map: Annotated[
        dict[FieldName, ExpressionText], Field(min_length=1, max_length=MAX_MAPPED_FIELDS)
    ]


class WindowSpec(_Model):
    """A tumbling or hopping window with aggregates per key."""

    type: Literal["tumbling", "hopping"]
    size: Annotated[Duration, Field(gt=0, le=7 * DAY_S)]
    hop: Annotated[Duration, Field(gt=0, le=7 * DAY_S)] | None = None
    key: KeyFields = []
    time: Literal["event", "processing"] = "event"
    lateness: Annotated[Duration, Field(ge=0, le=DAY_S)] | None = None
    idleTimeout: Annotated[Duration, Field(gt=0, le=DAY_S)] | None = None
    # Event times further ahead of the node's clock are errors: one device with
    # a wrong clock (or milliseconds sent as seconds) would otherwise push the
    # watermark past every window and make everyone else's events late.
    maxClockSkew: Annotated[Duration, Field(gt=0, le=365 * DAY_S)] = 3600.0
    aggregate: Annotated[
        dict[FieldName, ExpressionText], Field(min_length=1, max_length=MAX_AGGREGATES)
    ]
    maxKeys: MaxKeys = 100_000

    @model_validator(mode="after")
    def _consistent(self) -> WindowSpec:
        if self.type == "tumbling" and self.hop is not None:
            raise ValueError(
                "hop applies to a hopping window only; a tumbling window's hop is its size"
            )
        if self.type == "hopping":
            if self.hop is None:
                raise ValueError("a hopping window needs hop, e.g. hop: 10s")
            if self.hop > self.size:
                raise ValueError(
                    f"hop ({self.hop:g}s) must not exceed size ({self.size:g}s): "
                    "events between windows would be lost"
                )
            if self.size / self.hop > MAX_WINDOWS_PER_EVENT:
                raise ValueError(
                    f"size/hop is {self.size / self.hop:g}; at most {MAX_WINDOWS_PER_EVENT} "
                    "overlapping windows per event"
                )
        if self.time == "processing":
            if self.lateness is not None:
                raise ValueError("lateness applies to event-time windows only")
            if self.idleTimeout is not None:
                raise ValueError("idleTimeout applies to event-time windows only")
        return self


class WindowStepSpec(_Model):
    id: StepId
    window: WindowSpec


class ThresholdSpec(_Model):
    """Flag values outside [min, max]; score is the distance outside the range."""

    type: Literal["threshold"]
    field: FieldName
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ThresholdSpec:
        if self.min is None and self.max is None:
            raise ValueError("a threshold detector needs min, max or both")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("min and max must be finite numbers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is greater than max ({self.max:g})")
        return self


class ZScoreSpec(_Model):
    """EWMA mean/variance per key; flags |x - mean| > threshold * stddev after warmup."""

    type: Literal["zscore"]
    field: FieldName
    key: KeyFields = []
    threshold: Annotated[float, Field(gt=0, le=1e6)] = 3.0
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.1
    warmup: Annotated[int, Field(ge=0, le=1_000_000)] = 30
    maxKeys: MaxKeys = 100_000


class HalfSpaceTreesSpec(_Model):
    """river's HalfSpaceTrees over `features`, per key or global."""

    type: Literal["halfspacetrees"]
    features: Annotated[UniqueFields, Field(min_length=1, max_length=MAX_FEATURES)]
    key: KeyFields = []
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.8
    # Feature ranges; HalfSpaceTrees assumes [0, 1] for a feature without one.
    limits: dict[FieldName, tuple[float, float]] | None = None
    nTrees: Annotated[int, Field(ge=1, le=100)] = 10
    height: Annotated[int, Field(ge=1, le=16)] = 8
    windowSize: Annotated[int, Field(ge=1, le=100_000)] = 250
    warmup: Annotated[int, Field(ge=0, le=1_000_000)] | None = None  # default: windowSize
    seed: int = 42  # fixed by default: the same events give the same verdicts on every node
    maxKeys: Annotated[int, Field(ge=1, le=100_000)] = 1_000

    @model_validator(mode="after")
    def _limits(self) -> HalfSpaceTreesSpec:
        for name, (low, high) in (self.limits or {}).items():
            if name not in self.features:
                raise ValueError(f"limits names {name!r}, which is not one of the features")
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"limits of {name!r} must be finite with low < high")
        return self


def _detector_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"<detect:{kind}>" if kind in DETECTOR_TYPES else None


DetectorSpec = Annotated[
    Annotated[ThresholdSpec, Tag("<detect:threshold>")]
    | Annotated[ZScoreSpec, Tag("<detect:zscore>")]
    | Annotated[HalfSpaceTreesSpec, Tag("<detect:halfspacetrees>")],
    Discriminator(
        _detector_tag,
        custom_error_type="detector_type",
        custom_error_message="type must be one of " + ", ".join(DETECTOR_TYPES),
    ),
]


class DetectStepSpec(_Model):
    id: StepId
    detect: DetectorSpec


def _check_model_release(text: str) -> str:
    name, at, version = text.partition("@")
    if not at or not _MODULE_NAME_RE.fullmatch(name):
        raise ValueError(
            f"must be NAME@VERSION of a model release, like scorer@1.0.0 (got {text!r})"
        )
    parse_semver(version)  # its ValueError says what a version looks like
    return text


def _check_model_file(text: str) -> str:
    parts = text.split("/")
    if len(parts) > MAX_MODEL_FILE_DEPTH or not all(map(_MODEL_FILE_PART_RE.fullmatch, parts)):
        raise ValueError(
            "must be a relative path inside the release, like model.onnx or models/v1.onnx: "
            "'/'-separated names of letters, digits, '_', '.', '+' or '-', none starting "
            f"with '.' (at most {MAX_MODEL_FILE_DEPTH} levels; got {text!r})"
        )
    return text


class ModelRefSpec(_Model):
    """The model of an `infer` step: a file of an installed `kind: model` release.

    `release` is NAME@VERSION; the node loads `file` (default `model.onnx`)
    from that release's install. Versions are immutable once pushed, so a
    reference names the same bytes on every node.
    """

    release: Annotated[str, StringConstraints(max_length=200), AfterValidator(_check_model_release)]
    file: Annotated[str, StringConstraints(max_length=255), AfterValidator(_check_model_file)] = (
        "model.onnx"
    )

    @property
    def name(self) -> str:
        """The release's module name."""
        return self.release.partition("@")[0]

    @property
    def version(self) -> str:
        return self.release.partition("@")[2]

    def __str__(self) -> str:
        return f"{self.release}/{self.file}"


class InferSpec(_Model):
    """Run `model` (loaded by the agent's model loader) on the fields `inputs`."""

    model: ModelRefSpec
    inputs: Annotated[UniqueFields, Field(min_length=1, max_length=MAX_FEATURES)]
    output: FieldName


class InferStepSpec(_Model):
    id: StepId
    infer: InferSpec


class DedupeSpec(_Model):
    key: Annotated[UniqueFields, Field(min_length=1, max_length=MAX_KEY_FIELDS)]
    window: Annotated[Duration, Field(gt=0, le=DAY_S)]
    maxKeys: MaxKeys = 100_000


class DedupeStepSpec(_Model):
    id: StepId
    dedupe: DedupeSpec


class RateLimitSpec(_Model):
    """A token bucket: `per_s` tokens a second, at most `burst` saved up."""

    per_s: Annotated[float, Field(gt=0, le=1e6)]
    burst: Annotated[float, Field(ge=1, le=1e6)] | None = None  # default: max(1, per_s)

    @property
    def burst_tokens(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.per_s)


class SampleSpec(_Model):
    """Keep one event in `every`, or at most `per_s` a second (token bucket)."""

    every: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None
    per_s: Annotated[float, Field(gt=0, le=1e6)] | None = None
    burst: Annotated[float, Field(ge=1, le=1e6)] | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> SampleSpec:
        if (self.every is None) == (self.per_s is None):
            raise ValueError("sample takes exactly one of every or per_s")
        if self.burst is not None and self.per_s is None:
            raise ValueError("burst applies with per_s only")
        return self


class SampleStepSpec(_Model):
    id: StepId
    sample: SampleSpec


class _InvalidStep(_Model):
    """Matches a step without a known kind, so the error names the stray key."""

    id: Any = None

    @model_validator(mode="after")
    def _no_kind(self) -> _InvalidStep:
        raise ValueError("a step needs exactly one of: " + ", ".join(STEP_KINDS))


class _MultiKindStep(BaseModel):
    id: Any = None

    @model_validator(mode="before")
    @classmethod
    def _several(cls, value: Any) -> Any:
        kinds = [kind for kind in STEP_KINDS if kind in value]
        raise ValueError(f"a step has exactly one kind; found {' and '.join(kinds)}")


def _step_tag(value: Any) -> str:
    if isinstance(value, BaseModel):
        return f"<step:{step_kind(value)}>"
    if not isinstance(value, dict):
        return "<step:invalid>"
    kinds = [kind for kind in STEP_KINDS if kind in value]
    if len(kinds) > 1:
        return "<step:multiple>"
    return f"<step:{kinds[0]}>" if kinds else "<step:invalid>"


StepSpec = Annotated[
    Annotated[FilterStepSpec, Tag("<step:filter>")]
    | Annotated[MapStepSpec, Tag("<step:map>")]
    | Annotated[WindowStepSpec, Tag("<step:window>")]
    | Annotated[DetectStepSpec, Tag("<step:detect>")]
    | Annotated[InferStepSpec, Tag("<step:infer>")]
    | Annotated[DedupeStepSpec, Tag("<step:dedupe>")]
    | Annotated[SampleStepSpec, Tag("<step:sample>")]
    | Annotated[_InvalidStep, Tag("<step:invalid>")]
    | Annotated[_MultiKindStep, Tag("<step:multiple>")],
    Discriminator(_step_tag),
]


_KIND_OF: Final[dict[type[BaseModel], str]] = {
    FilterStepSpec: "filter",
    MapStepSpec: "map",
    WindowStepSpec: "window",
    DetectStepSpec: "detect",
    InferStepSpec: "infer",
    DedupeStepSpec: "dedupe",
    SampleStepSpec: "sample",
}


def step_kind(step: BaseModel) -> str:
    """Return the kind of a validated step: `filter`, `window`, ..."""
    return _KIND_OF.get(type(step), "invalid")


# --- outputs -----------------------------------------------------------------


def _check_payload(value: Any, depth: int = 0) -> int:
    """Count the items of a JSON-like payload, rejecting deep or huge ones."""
    if depth > MAX_PAYLOAD_DEPTH:
        raise ValueError(f"payload is nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    if isinstance(value, dict):
        items = 0
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("payload keys must be strings")
            items += 1 + _check_payload(item, depth + 1)
        return items
    if isinstance(value, list):
        return sum(1 + _check_payload(item, depth + 1) for item in value)
    if isinstance(value, str) and len(value) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"payload strings are at most {MAX_EXPRESSION_CHARS} characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("payload numbers must be finite")
    if value is None or isinstance(value, str | int | float | bool):
        return 0
    raise ValueError(f"payload values must be JSON values, not {type(value).__name__}")


def _payload(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and _check_payload(value) > MAX_PAYLOAD_ITEMS:
        raise ValueError(f"payload has more than {MAX_PAYLOAD_ITEMS} items")
    return value


Payload = Annotated[dict[str, Any] | None, BeforeValidator(_payload)]


class UplinkSpec(_Model):
    """Send the record to the cloud through the outbox."""

    stream: Name
    priority: Annotated[int, Field(ge=0, le=9)] = 5
    ttl: Annotated[Duration, Field(gt=0, le=365 * DAY_S)] = DAY_S


class MqttActionSpec(_Model):
    """Publish to the local broker; `topic` and string payload values are templates."""

    topic: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    payload: Payload = None  # default: the record itself
    qos: Annotated[int, Field(ge=0, le=2)] = 0
    retain: bool = False


class WebhookActionSpec(_Model):
    """Call a fixed URL; the URL is not a template, so devices cannot steer it.

    `timeout` bounds the whole call (resolution, connection, answer). The
    node refuses loopback, link-local, private and other non-public
    destinations (after DNS resolution) unless `allowPrivateNetwork` is true.
    """

    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,2040}$")]
    method: Literal["POST", "PUT"] = "POST"
    payload: Payload = None  # default: the record itself
    timeout: Annotated[Duration, Field(gt=0, le=MAX_WEBHOOK_TIMEOUT_S)] = 10.0
    allowPrivateNetwork: Annotated[bool, Field(strict=True)] = False


class ActionSpec(_Model):
    mqtt: MqttActionSpec | None = None
    webhook: WebhookActionSpec | None = None

    @model_validator(mode="after")
    def _one_action(self) -> ActionSpec:
        if (self.mqtt is None) == (self.webhook is None):
            raise ValueError("an action is exactly one of mqtt or webhook")
        return self


class OutputSpec(_Model):
    """Tap the stream after step `from` (default: the last step)."""

    id: StepId | None = None  # default: outputs[i] in counters
    from_: StepId | None = Field(default=None, alias="from")
    when: ExpressionText | None = None
    uplink: UplinkSpec | None = None
    action: ActionSpec | None = None
    rateLimit: RateLimitSpec | None = None

    @model_validator(mode="after")
    def _one_target(self) -> OutputSpec:
        if (self.uplink is None) == (self.action is None):
            raise ValueError("an output is exactly one of uplink or action")
        return self


# --- pipeline ----------------------------------------------------------------


class PipelineSpec(_Model):
    """One pipeline: source -> linear chain of steps -> outputs."""

    name: Name
    source: SourceSpec
    timestamp: FieldName | None = None  # event time in epoch seconds; default: arrival time
    steps: Annotated[list[StepSpec], Field(max_length=MAX_STEPS)] = []
    outputs: Annotated[list[OutputSpec], Field(min_length=1, max_length=MAX_OUTPUTS)]

    @model_validator(mode="after")
    def _meaning(self, info: ValidationInfo) -> PipelineSpec:
        if isinstance(info.context, dict) and info.context.get(SKIP_SEMANTIC_CHECK):
            return self
        from ._check import check_pipeline  # _check compiles expressions; it imports this module

        problems = check_pipeline(self)
        if problems:
            raise ValueError("; ".join(f"{path}: {reason}" for path, reason in problems))
        return self

    @property
    def models(self) -> list[ModelRefSpec]:
        """The models this pipeline's `infer` steps load, in step order."""
        return [step.infer.model for step in self.steps if isinstance(step, InferStepSpec)]
