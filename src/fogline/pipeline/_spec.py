"""The pipeline spec: what operators write under a Deployment's `spec.pipelines`.

Pydantic models (extra="forbid", frozen) checking the shape of the document;
the meaning (expressions, references, field availability) is checked by
`_check`, which `PipelineSpec` runs as its last validator so that a manifest
embedding `PipelineSpec` cannot accept a pipeline that would fail on a node.

Field names are camelCase like the rest of the manifest (`rateLimit`,
`maxKeys`); `per_s` keeps its unit suffix. Durations are text with a unit
(`500ms`, `10s`, `5m`, `24h`, `7d`, `1h30m`; a bare number is refused, as
everywhere in Fogline: see fogline._duration) and are stored as seconds.

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
    PlainSerializer,
    StringConstraints,
    Tag,
    ValidationInfo,
    model_validator,
)

from fogline._duration import format_duration, parse_duration
from fogline.artifact import parse_semver

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

# Dumped as text, so that a dumped spec validates again (a bare number would not).
Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
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
    # Field docstrings are the field descriptions: scripts/pipeline_reference.py
    # writes docs/pipeline-reference.md from them, so the reference cannot drift.
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True
    )


# --- source -----------------------------------------------------------------


class HttpSourceSpec(_Model):
    """The agent's local HTTP ingest (no options yet)."""


class SourceSpec(_Model):
    """Where records come from: exactly one of `mqtt` and `http`.

    A JSON object payload is the record; a bare JSON value becomes the field `value`.
    """

    mqtt: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    """A topic filter on the node's broker. `{name}` fills one whole level and becomes the record's
    field `name` (unless the payload sets it); `+` and `#` match as in MQTT without becoming fields.
    """
    qos: Annotated[int, Field(ge=0, le=2)] | None = None
    """The subscription's MQTT QoS (0, 1 or 2); mqtt sources only."""
    http: HttpSourceSpec | None = None
    """The agent's local HTTP ingest (`POST /ingest`), written `http: {}`."""

    @model_validator(mode="after")
    def _one_source(self) -> SourceSpec:
        if (self.mqtt is None) == (self.http is None):
            raise ValueError("a source is exactly one of mqtt or http")
        if self.http is not None and self.qos is not None:
            raise ValueError("qos applies to an mqtt source only")
        return self


# --- steps -------------------------------------------------------------------


class FilterStepSpec(_Model):
    """Keep the records for which the expression is true; drop the others."""

    id: StepId
    """The step's name, unique in the pipeline; it appears in errors, metrics and `from`."""
    filter: ExpressionText
    """A boolean expression, e.g. `metric == 'temp' and value > -50`."""


class MapStepSpec(_Model):
    """Add or overwrite fields; every expression sees the incoming record."""

    id: StepId
    """The step's name, unique in the pipeline."""
    map: Annotated[
        dict[FieldName, ExpressionText], Field(min_length=1, max_length=MAX_MAPPED_FIELDS)
    ]
    """Field name to expression, e.g. `{fahrenheit: "value * 9 / 5 + 32"}`."""


class WindowSpec(_Model):
    """A tumbling or hopping window with aggregates per key.

    When a window closes it emits one summary record per key: the key
    fields, `window_start`, `window_end` (epoch seconds) and the aggregates.
    A clean stop of the agent flushes open windows.
    """

    type: Literal["tumbling", "hopping"]
    """`tumbling`: back-to-back windows of `size`; `hopping`: windows of `size` starting every `hop`
    (they overlap).
    """
    size: Annotated[Duration, Field(gt=0, le=7 * DAY_S)]
    """How long each window is, e.g. `10s`, `1m`."""
    hop: Annotated[Duration, Field(gt=0, le=7 * DAY_S)] | None = None
    """Hopping windows only (required there): the time between window starts; at most `size`, and
    `size/hop` at most 100.
    """
    key: KeyFields = []
    """Fields whose values group records: one summary per window and key (e.g. `[device]`)."""
    time: Literal["event", "processing"] = "event"
    """`event`: the pipeline's `timestamp` field (else arrival time) places records; `processing`:
    the node's clock when they are processed.
    """
    lateness: Annotated[Duration, Field(ge=0, le=DAY_S)] | None = None
    """Event time only: how long a window stays open after its end for records that arrive late
    (default 0s). Later records are counted late and dropped.
    """
    idleTimeout: Annotated[Duration, Field(gt=0, le=DAY_S)] | None = None
    """Event time with a `timestamp` field only: after this long without records, event time
    advances with the clock, so the last windows close.
    """
    # Event times further ahead of the node's clock are errors: one device with
    # a wrong clock (or milliseconds sent as seconds) would otherwise push the
    # watermark past every window and make everyone else's events late.
    maxClockSkew: Annotated[Duration, Field(gt=0, le=365 * DAY_S)] = 3600.0
    """Records stamped further ahead of the node's clock are errors (counted, dropped)."""
    aggregate: Annotated[
        dict[FieldName, ExpressionText], Field(min_length=1, max_length=MAX_AGGREGATES)
    ]
    """Summary field to aggregate call: `count()`, or `sum`, `mean`, `min`, `max`, `stddev`,
    `first`, `last`, `p50`, `p95`, `p99` of a field or an expression, e.g. `{mean: "mean(value)", n:
    "count()"}`.
    """
    maxKeys: MaxKeys = 100_000
    """Most keys open in one window; records of further keys are dropped (counted)."""

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
    """Aggregate records over time windows, per key."""

    id: StepId
    """The step's name, unique in the pipeline."""
    window: WindowSpec
    """The window and its aggregates."""


class ThresholdSpec(_Model):
    """Flag values outside [min, max]; score is the distance outside the range."""

    type: Literal["threshold"]
    """`threshold`."""
    field: FieldName
    """The numeric field to check."""
    min: float | None = None
    """Values below are anomalies; give `min`, `max` or both."""
    max: float | None = None
    """Values above are anomalies."""

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
    """`zscore`."""
    field: FieldName
    """The numeric field to watch."""
    key: KeyFields = []
    """Fields whose values keep separate statistics (e.g. `[device]`); none: one for all."""
    threshold: Annotated[float, Field(gt=0, le=1e6)] = 3.0
    """How many standard deviations from the mean is an anomaly."""
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.1
    """The EWMA weight of each new value: higher forgets faster."""
    warmup: Annotated[int, Field(ge=0, le=1_000_000)] = 30
    """Values per key seen before any is flagged."""
    maxKeys: MaxKeys = 100_000
    """Most keys tracked; records of further keys are dropped (counted)."""


class HalfSpaceTreesSpec(_Model):
    """river's HalfSpaceTrees over `features`, per key or global (needs `river` on the node).

    The score is river's anomaly score in [0, 1].
    """

    type: Literal["halfspacetrees"]
    """`halfspacetrees`."""
    features: Annotated[UniqueFields, Field(min_length=1, max_length=MAX_FEATURES)]
    """The numeric fields the trees look at."""
    key: KeyFields = []
    """Fields whose values get their own model (e.g. `[device]`); none: one model."""
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.8
    """Scores above are anomalies."""
    limits: dict[FieldName, tuple[float, float]] | None = None
    """Feature name to `[low, high]`, its expected range; a feature without one is assumed in [0,
    1].
    """
    nTrees: Annotated[int, Field(ge=1, le=100)] = 10
    """How many trees."""
    height: Annotated[int, Field(ge=1, le=16)] = 8
    """The height of each tree."""
    windowSize: Annotated[int, Field(ge=1, le=100_000)] = 250
    """Records per reference window of the trees."""
    warmup: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    """Records per key seen before any is flagged (default: `windowSize`)."""
    seed: int = 42
    """The trees' random seed; fixed, so the same records give the same verdicts on every node."""
    maxKeys: Annotated[int, Field(ge=1, le=100_000)] = 1_000
    """Most keys with a model; records of further keys are dropped (counted)."""

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
    """Mark anomalies: every record passes with `anomaly` (true/false) and `score` added."""

    id: StepId
    """The step's name, unique in the pipeline."""
    detect: DetectorSpec
    """A detector, chosen by its `type`: `threshold`, `zscore` or `halfspacetrees`."""


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
    """The model release, NAME@VERSION: a `kind: model` release delivered by the same deployment."""
    file: Annotated[str, StringConstraints(max_length=255), AfterValidator(_check_model_file)] = (
        "model.onnx"
    )
    """The ONNX file inside the release, a relative path."""

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
    """Run the model `model` on `inputs` (an ONNX model through onnxruntime).

    The model takes one float tensor shaped `[batch, len(inputs)]`; its first
    output is written to `output`: a number, or a list of numbers.
    """

    model: ModelRefSpec
    """The model: a file of an installed `kind: model` release."""
    inputs: Annotated[UniqueFields, Field(min_length=1, max_length=MAX_FEATURES)]
    """The numeric fields fed to the model, in order."""
    output: FieldName
    """The field the result is written to."""


class InferStepSpec(_Model):
    """Model inference on each record."""

    id: StepId
    """The step's name, unique in the pipeline."""
    infer: InferSpec
    """The model and its inputs and output."""


class DedupeSpec(_Model):
    """Drop repeats of a key within `window` of its first sighting (processing time)."""

    key: Annotated[UniqueFields, Field(min_length=1, max_length=MAX_KEY_FIELDS)]
    """The fields whose values make two records the same (e.g. `[device, seq]`)."""
    window: Annotated[Duration, Field(gt=0, le=DAY_S)]
    """How long a key is remembered after it was first seen."""
    maxKeys: MaxKeys = 100_000
    """Most keys remembered; when full of live keys, records pass unremembered (a duplicate is
    better than a lost reading).
    """


class DedupeStepSpec(_Model):
    """Drop duplicates."""

    id: StepId
    """The step's name, unique in the pipeline."""
    dedupe: DedupeSpec
    """What makes records the same, and for how long."""


class RateLimitSpec(_Model):
    """A token bucket: `per_s` tokens a second, at most `burst` saved up."""

    per_s: Annotated[float, Field(gt=0, le=1e6)]
    """Records a second, on average."""
    burst: Annotated[float, Field(ge=1, le=1e6)] | None = None
    """Records at once after a quiet spell (default: `per_s`, at least 1)."""

    @property
    def burst_tokens(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.per_s)


class SampleSpec(_Model):
    """Keep one event in `every`, or at most `per_s` a second (token bucket): exactly one of the
    two.
    """

    every: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None
    """Keep the first record of every `every`."""
    per_s: Annotated[float, Field(gt=0, le=1e6)] | None = None
    """Keep at most this many records a second."""
    burst: Annotated[float, Field(ge=1, le=1e6)] | None = None
    """With `per_s`: records at once after a quiet spell (default: `per_s`, at least 1)."""

    @model_validator(mode="after")
    def _one_mode(self) -> SampleSpec:
        if (self.every is None) == (self.per_s is None):
            raise ValueError("sample takes exactly one of every or per_s")
        if self.burst is not None and self.per_s is None:
            raise ValueError("burst applies with per_s only")
        return self


class SampleStepSpec(_Model):
    """Thin the stream out."""

    id: StepId
    """The step's name, unique in the pipeline."""
    sample: SampleSpec
    """How many records to keep."""


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
    """Send the record to the cloud through the node's durable outbox."""

    stream: Name
    """The stream it is stored under at the hub (`fogline telemetry query --stream`)."""
    priority: Annotated[int, Field(ge=0, le=9)] = 5
    """0-9: higher goes first, and is dropped last when the outbox is full."""
    ttl: Annotated[Duration, Field(gt=0, le=365 * DAY_S)] = DAY_S
    """How long the record may wait in the outbox before it expires (dropped, counted)."""


class MqttActionSpec(_Model):
    """Publish to the local broker; `topic` and string payload values are templates."""

    topic: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    """A template: `{field}` is replaced by the record's value, e.g. `actuators/{device}/cmd`."""
    payload: Payload = None
    """A JSON object whose string values are templates (`"{value}"` keeps the value's type);
    default: the record itself.
    """
    qos: Annotated[int, Field(ge=0, le=2)] = 0
    """The publish's MQTT QoS."""
    retain: bool = False
    """Publish as a retained message."""


class WebhookActionSpec(_Model):
    """Call a fixed URL; the URL is not a template, so devices cannot steer it.

    `timeout` bounds the whole call (resolution, connection, answer). The
    node refuses loopback, link-local, private and other non-public
    destinations (after DNS resolution) unless `allowPrivateNetwork` is true.
    """

    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,2040}$")]
    """The URL to call; fixed, not a template."""
    method: Literal["POST", "PUT"] = "POST"
    """The HTTP method."""
    payload: Payload = None
    """The JSON body: an object whose string values are templates; default: the record itself."""
    timeout: Annotated[Duration, Field(gt=0, le=MAX_WEBHOOK_TIMEOUT_S)] = 10.0
    """The whole call (resolution, connection, request, answer); at most 60s."""
    allowPrivateNetwork: Annotated[bool, Field(strict=True)] = False
    """`true`: the node may call loopback, link-local and private addresses."""


class ActionSpec(_Model):
    """A local action: exactly one of `mqtt` and `webhook`."""

    mqtt: MqttActionSpec | None = None
    """Publish to the node's MQTT broker."""
    webhook: WebhookActionSpec | None = None
    """Call an HTTP endpoint."""

    @model_validator(mode="after")
    def _one_action(self) -> ActionSpec:
        if (self.mqtt is None) == (self.webhook is None):
            raise ValueError("an action is exactly one of mqtt or webhook")
        return self


class OutputSpec(_Model):
    """Tap the stream after a step: exactly one of `uplink` and `action`."""

    id: StepId | None = None
    """The output's name in errors and counters (default: `outputs[i]`)."""
    from_: StepId | None = Field(default=None, alias="from")
    """The step whose output it taps (default: the last step; no steps: the source)."""
    when: ExpressionText | None = None
    """A boolean expression: only records for which it is true go out."""
    uplink: UplinkSpec | None = None
    """Send to the hub."""
    action: ActionSpec | None = None
    """Act locally: an MQTT publish or a webhook."""
    rateLimit: RateLimitSpec | None = None
    """At most this many records through this output; the rest are dropped (counted)."""

    @model_validator(mode="after")
    def _one_target(self) -> OutputSpec:
        if (self.uplink is None) == (self.action is None):
            raise ValueError("an output is exactly one of uplink or action")
        return self


# --- pipeline ----------------------------------------------------------------


class PipelineSpec(_Model):
    """One pipeline: source -> linear chain of steps -> outputs."""

    name: Name
    """The pipeline's name, unique among a device's pipelines (layers replace by name)."""
    source: SourceSpec
    """Where its records come from."""
    timestamp: FieldName | None = None
    """The field holding each record's event time in epoch seconds (default: arrival time)."""
    steps: Annotated[list[StepSpec], Field(max_length=MAX_STEPS)] = []
    """The chain of steps, in order; each is one of `filter`, `map`, `window`, `detect`, `infer`,
    `dedupe`, `sample`.
    """
    outputs: Annotated[list[OutputSpec], Field(min_length=1, max_length=MAX_OUTPUTS)]
    """Where records go: the hub (`uplink`) or a local action."""

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
