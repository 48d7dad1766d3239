"""Errors of the data-plane engine, split by who is at fault.

FoglineError
  PipelineError            base of everything the pipeline package raises
    PipelineSpecError      the operator's pipeline spec is wrong: a list of
                           (path, reason) problems, e.g. ``steps[1].window.size``
    ExpressionError        an expression does not compile (column, reason);
                           defined in ``expr``
    EvaluationError        an expression failed on one record at run time; the
                           engine counts it and drops that event (``expr``)
    ModelLoadError         an ``infer`` step's model could not be loaded or does
                           not fit the step (build time, on the node)
    PipelineStateError     a checkpoint given to ``import_state`` does not fit
                           the pipeline (wrong version, shape or step)
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import FoglineError


class PipelineError(FoglineError):
    """Base class of all deliberate errors of ``fogline.pipeline``."""


class PipelineSpecError(PipelineError):
    """The pipeline spec is invalid; ``problems`` lists every (path, reason)."""

    def __init__(self, problems: Sequence[tuple[str, str]], *, name: str | None = None) -> None:
        self.problems: list[tuple[str, str]] = list(problems)
        self.name = name
        prefix = f"pipeline {name!r}: " if name else ""
        lines = [f"{path}: {reason}" if path else reason for path, reason in self.problems]
        super().__init__(prefix + "; ".join(lines) if lines else prefix + "invalid pipeline")


class ModelLoadError(PipelineError):
    """An ``infer`` step's model could not be loaded or does not fit the step."""

    def __init__(self, step_id: str | None, model: str, reason: str) -> None:
        where = f"step {step_id!r}: " if step_id else ""
        super().__init__(f"{where}model {model!r}: {reason}")
        self.step_id, self.model, self.reason = step_id, model, reason


class PipelineStateError(PipelineError):
    """A checkpoint does not fit this pipeline: expected vs actual in the message."""

    def __init__(self, step_id: str | None, reason: str) -> None:
        where = f"step {step_id!r}: " if step_id else ""
        super().__init__(f"{where}{reason}")
        self.step_id, self.reason = step_id, reason
