"""What `detect` and `infer` steps run: the anomaly detectors (threshold,
z-score, half-space trees) and the ML model an `infer` step loads."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from fogline.artifact import parse_semver

from ._spec_base import (
    DETECTOR_TYPES,
    MAX_FEATURES,
    MAX_MODEL_FILE_DEPTH,
    FieldName,
    KeyFields,
    MaxKeys,
    StepId,
    UniqueFields,
    _Model,
)

# A release's module name (a DNS label), as in `fogline-module.yaml`.
_MODULE_NAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
# One level of a file path inside a release; never `.`, `..` or hidden.
_MODEL_FILE_PART_RE: Final = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,127}", re.ASCII)


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
