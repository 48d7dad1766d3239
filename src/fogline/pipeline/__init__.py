"""Edge data-plane engine: pure Python, no I/O; time is always passed in.

    spec = validate_pipeline(raw)              # what `fogline apply/plan` runs
    pipeline = build_pipeline(spec, model_loader=...)
    emissions = pipeline.process_many(records, now)   # also tick(now), flush(now)

Errors (who is at fault):

FoglineError
  PipelineError            base of everything this package raises
    PipelineSpecError      the operator's pipeline spec is wrong: (path, reason) problems
    ExpressionError        an expression or template does not compile: column, reason
    EvaluationError        an expression failed on one record (counted, event dropped)
    ModelLoadError         an infer step's model cannot be loaded or does not fit
    PipelineStateError     a checkpoint does not fit this pipeline
"""

from ._errors import ModelLoadError, PipelineError, PipelineSpecError, PipelineStateError
from ._infer import InferenceSessionLike, ModelLoader
from ._onnx import load_onnx_model
from ._outputs import Emission
from ._pipeline import Pipeline, build_pipeline
from ._spec import (
    ActionSpec,
    ModelRefSpec,
    MqttActionSpec,
    OutputSpec,
    PipelineSpec,
    RateLimitSpec,
    SourceSpec,
    UplinkSpec,
    WebhookActionSpec,
)
from ._template import Template, TopicPattern, compile_template, compile_topic_pattern
from ._validate import validate_pipeline
from .expr import EvaluationError, Expression, ExpressionError, compile_expression

__all__ = [
    "ActionSpec",
    "Emission",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "InferenceSessionLike",
    "ModelLoadError",
    "ModelLoader",
    "ModelRefSpec",
    "MqttActionSpec",
    "OutputSpec",
    "Pipeline",
    "PipelineError",
    "PipelineSpec",
    "PipelineSpecError",
    "PipelineStateError",
    "RateLimitSpec",
    "SourceSpec",
    "Template",
    "TopicPattern",
    "UplinkSpec",
    "WebhookActionSpec",
    "build_pipeline",
    "compile_expression",
    "compile_template",
    "compile_topic_pattern",
    "load_onnx_model",
    "validate_pipeline",
]
