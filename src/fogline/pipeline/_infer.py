"""The `infer` step: run a model (an ONNX InferenceSession or alike) on record fields.

The engine does no I/O: the session comes from the `model_loader` given to
`build_pipeline`, called with the step's `ModelRefSpec` (on a node: the
agent finds the installed model release and loads the file with
onnxruntime). The model must take one float tensor input shaped
`[batch, len(inputs)]` (or `[len(inputs)]`); the step writes the first output
to the `output` field: a float when the model returns one value per record, a
list of floats otherwise. Batches run in one call when the batch dimension is
dynamic. numpy is imported when such a step is built (onnxruntime needs it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import ModelLoadError
from ._steps import Batch, Step

if TYPE_CHECKING:
    from ._spec import ModelRefSpec

_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64"}


class InferenceSessionLike(Protocol):
    """What the step needs of an onnxruntime.InferenceSession."""

    def get_inputs(self) -> Sequence[Any]: ...

    def get_outputs(self) -> Sequence[Any]: ...

    def run(self, output_names: list[str] | None, input_feed: dict[str, Any]) -> Sequence[Any]: ...


ModelLoader = Callable[["ModelRefSpec"], InferenceSessionLike]


def _number(value: Any) -> float:
    """`value` as a float: TypeError for None, text or lists (bools count as 0/1)."""
    return float(value + 0.0)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class InferStep(Step):
    __slots__ = (
        "_batchable",
        "_copy",
        "_dtype",
        "_input",
        "_inputs",
        "_np",
        "_output",
        "_output_field",
        "_rank",
        "_session",
    )
    kind = "infer"

    def __init__(
        self,
        step_id: str,
        *,
        model: str,
        session: InferenceSessionLike,
        inputs: Sequence[str],
        output: str,
        copy_on_write: bool,
    ) -> None:
        """Check the model against the step.

        Raises:
            ModelLoadError: the model's input or output does not fit the step.
        """
        super().__init__(step_id)
        try:
            import numpy as np  # lazily, like the model runtime itself
        except ImportError as exc:
            raise ModelLoadError(
                step_id, model, "numpy is not installed (pip install 'fogline[ml]')"
            ) from exc

        self._np = np
        self._session = session
        self._inputs = tuple(inputs)
        self._output_field = output
        self._copy = copy_on_write
        model_inputs, model_outputs = list(session.get_inputs()), list(session.get_outputs())
        if len(model_inputs) != 1 or not model_outputs:
            raise ModelLoadError(
                step_id,
                model,
                f"expected a model with 1 input and at least 1 output, got {len(model_inputs)} "
                f"inputs and {len(model_outputs)} outputs",
            )
        tensor = model_inputs[0]
        shape = list(tensor.shape or [])
        dtype = _DTYPES.get(str(tensor.type))
        if dtype is None:
            raise ModelLoadError(step_id, model, f"input type {tensor.type} is not a float tensor")
        if len(shape) not in (1, 2):
            raise ModelLoadError(step_id, model, f"input rank {len(shape)}; expected 1 or 2")
        width = shape[-1]
        if isinstance(width, int) and width != len(self._inputs):
            raise ModelLoadError(
                step_id,
                model,
                f"the model takes {width} features, the step lists {len(self._inputs)}",
            )
        self._dtype = getattr(np, dtype)
        self._input = str(tensor.name)
        self._output = str(model_outputs[0].name)
        self._rank = len(shape)
        self._batchable = len(shape) == 2 and not isinstance(shape[0], int)

    def run(self, records: Batch, now: float) -> Batch:
        rows: list[list[float]] = []
        kept: Batch = []
        errors = 0
        for record in records:
            try:
                row = [_number(record.get(name)) for name in self._inputs]
            except (TypeError, ValueError, OverflowError):
                errors += 1
                continue
            rows.append(row)
            kept.append(record)
        results: list[Any] = []
        if rows and self._batchable:
            results = self._predict(rows)
        if len(results) != len(rows):  # one at a time: a fixed batch size, or a failed batch
            results = [self._predict_one(row) for row in rows]
        out: Batch = []
        field, copy = self._output_field, self._copy
        for record, result in zip(kept, results, strict=True):
            if result is _FAILED:
                errors += 1
                continue
            if copy:
                record = dict(record)
            record[field] = result
            out.append(record)
        self.counters.errors += errors
        return out

    def _predict(self, rows: list[list[float]]) -> list[Any]:
        try:
            (values,) = self._session.run(
                [self._output], {self._input: self._np.asarray(rows, dtype=self._dtype)}
            )[:1]
            flat = self._np.asarray(values, dtype=self._np.float64).reshape(len(rows), -1)
        except Exception:  # a foreign runtime's errors: retried one by one to count them
            return []
        return [_result(row.tolist()) for row in flat]

    def _predict_one(self, row: list[float]) -> Any:
        feed = row if self._rank == 1 else [row]
        try:
            (values,) = self._session.run(
                [self._output], {self._input: self._np.asarray(feed, dtype=self._dtype)}
            )[:1]
            flat = self._np.asarray(values, dtype=self._np.float64).reshape(-1)
        except Exception:  # the model failed on this record: count it, drop it
            return _FAILED
        return _result(flat.tolist())


_FAILED = object()


def _result(values: list[float]) -> Any:
    if len(values) == 1:
        return _finite_or_none(values[0])
    return [_finite_or_none(v) for v in values]
