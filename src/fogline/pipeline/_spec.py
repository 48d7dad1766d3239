"""The pipeline spec: what operators write under a Deployment's `spec.pipelines`.

Pydantic models (extra="forbid", frozen) checking the shape of the document;
the meaning (expressions, references, field availability) is checked by
`_check`, which `PipelineSpec` runs as its last validator so that a manifest
embedding `PipelineSpec` cannot accept a pipeline that would fail on a node.

Field names are camelCase like the rest of the manifest (`rateLimit`,
`maxKeys`); `per_s` keeps its unit suffix. Durations are text with a unit
(`500ms`, `10s`, `5m`, `24h`, `7d`, `1h30m`; a bare number is refused, as
everywhere in Fogline: see fogline._duration) and are stored as seconds.

The parts: `_spec_base` (bounds, shared types, the base model),
`_spec_detect` (detectors and the `infer` step's model), `_spec_outputs`
(uplink, actions, rate limits); this module holds the source, the steps and
the pipeline, and names the whole spec in `__all__`.

Names: a parsed block is a `...Spec` (`FilterStepSpec`, `ThresholdSpec`); the
running operator `build_pipeline` makes of it is a `...Step` (`FilterStep`,
`ThresholdStep`).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    model_validator,
)

from ._spec_base import (
    DAY_S,
    DETECTOR_TYPES,
    MAX_AGGREGATES,
    MAX_EXPRESSION_CHARS,
    MAX_KEY_FIELDS,
    MAX_MAPPED_FIELDS,
    MAX_OUTPUTS,
    MAX_STEPS,
    MAX_WINDOWS_PER_EVENT,
    SKIP_SEMANTIC_CHECK,
    STEP_KINDS,
    Duration,
    ExpressionText,
    FieldName,
    KeyFields,
    MaxKeys,
    Name,
    StepId,
    UniqueFields,
    _Model,
)
from ._spec_detect import (
    DetectorSpec,
    DetectStepSpec,
    HalfSpaceTreesSpec,
    InferSpec,
    InferStepSpec,
    ModelRefSpec,
    ThresholdSpec,
    ZScoreSpec,
)
from ._spec_outputs import (
    ActionSpec,
    MqttActionSpec,
    OutputSpec,
    RateLimitSpec,
    UplinkSpec,
    WebhookActionSpec,
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


# The whole spec, wherever each part is defined (_spec_base, _spec_detect,
# _spec_outputs): the package, the checker and the reference page read it here.
__all__ = [
    "DETECTOR_TYPES",
    "MAX_EXPRESSION_CHARS",
    "SKIP_SEMANTIC_CHECK",
    "STEP_KINDS",
    "ActionSpec",
    "DedupeSpec",
    "DedupeStepSpec",
    "DetectStepSpec",
    "DetectorSpec",
    "FilterStepSpec",
    "HalfSpaceTreesSpec",
    "HttpSourceSpec",
    "InferSpec",
    "InferStepSpec",
    "MapStepSpec",
    "ModelRefSpec",
    "MqttActionSpec",
    "OutputSpec",
    "PipelineSpec",
    "RateLimitSpec",
    "SampleSpec",
    "SampleStepSpec",
    "SourceSpec",
    "StepSpec",
    "ThresholdSpec",
    "UplinkSpec",
    "WebhookActionSpec",
    "WindowSpec",
    "WindowStepSpec",
    "ZScoreSpec",
    "step_kind",
]
