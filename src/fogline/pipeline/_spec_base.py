"""The pipeline spec's building blocks: bounds, the constrained types its
fields share, and the base model (extra fields refused, frozen, field
docstrings as descriptions)."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
)

from fogline._duration import format_duration, parse_duration

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
