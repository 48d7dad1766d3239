"""The infer step with a real (tiny) ONNX model run by onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fogline.pipeline import ModelLoadError, build_pipeline, load_onnx_model, validate_pipeline

from ._support import make_spec, records_of

onnx = pytest.importorskip("onnx")
helper = onnx.helper
TensorProto = onnx.TensorProto


def save_linear_model(
    path: Path, *, weights: list[float], bias: float, batch: int | str = "N"
) -> Path:
    """y = x @ weights + bias, x shaped [batch, len(weights)], y shaped [batch, 1]."""
    width = len(weights)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 1])],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, [width, 1], weights),
            helper.make_tensor("b", TensorProto.FLOAT, [1], [bias]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def infer_spec(inputs: list[str], **extra: Any) -> Any:
    step = {"id": "model", "infer": {"model": "linear", "inputs": inputs, "output": "y"}}
    return validate_pipeline(make_spec([step], **extra))


def test_infer_runs_an_onnx_model_on_a_batch(tmp_path: Path) -> None:
    path = save_linear_model(tmp_path / "linear.onnx", weights=[2.0], bias=1.0)
    loaded: list[str] = []

    def loader(name: str) -> Any:
        loaded.append(name)
        return load_onnx_model(path)

    p = build_pipeline(infer_spec(["x"]), model_loader=loader)
    out = records_of(p.process_many([{"x": 0}, {"x": 1.5}, {"x": -3}], now=0))
    assert loaded == ["linear"]
    assert [r["y"] for r in out] == [1.0, 4.0, -5.0]


def test_infer_with_a_fixed_batch_of_one_runs_record_by_record(tmp_path: Path) -> None:
    path = save_linear_model(tmp_path / "two.onnx", weights=[1.0, 10.0], bias=0.5, batch=1)
    p = build_pipeline(infer_spec(["a", "b"]), model_loader=lambda _: load_onnx_model(path))
    out = records_of(p.process_many([{"a": 1, "b": 2}, {"a": 3, "b": 0}], now=0))
    assert [r["y"] for r in out] == [21.5, 3.5]


def test_records_without_numeric_inputs_are_errors(tmp_path: Path) -> None:
    path = save_linear_model(tmp_path / "linear.onnx", weights=[2.0], bias=1.0)
    p = build_pipeline(infer_spec(["x"]), model_loader=lambda _: load_onnx_model(path))
    out = records_of(p.process_many([{"x": "1"}, {}, {"x": 2}], now=0))
    assert [r["y"] for r in out] == [5.0]
    assert p.counters()["model"]["errors"] == 2


def test_a_model_that_takes_other_features_is_refused_at_build(tmp_path: Path) -> None:
    path = save_linear_model(tmp_path / "linear.onnx", weights=[2.0], bias=1.0)
    with pytest.raises(ModelLoadError, match="the model takes 1 features, the step lists 2"):
        build_pipeline(infer_spec(["x", "z"]), model_loader=lambda _: load_onnx_model(path))


def test_building_an_infer_step_needs_a_model_loader() -> None:
    with pytest.raises(ModelLoadError, match="no model_loader"):
        build_pipeline(infer_spec(["x"]))


def test_a_broken_model_file_is_a_model_load_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="step 'model': model 'linear': cannot load"):
        build_pipeline(infer_spec(["x"]), model_loader=lambda _: load_onnx_model(path))


def test_a_loader_failure_names_the_step_and_model() -> None:
    def loader(name: str) -> Any:
        raise FileNotFoundError(name)

    with pytest.raises(ModelLoadError, match="step 'model': model 'linear'") as caught:
        build_pipeline(infer_spec(["x"]), model_loader=loader)
    assert isinstance(caught.value.__cause__, FileNotFoundError)
