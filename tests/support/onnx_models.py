"""Tiny ONNX models built by tests (needs the `onnx` package of the dev extra)."""

from __future__ import annotations

from pathlib import Path


def save_linear_model(
    path: Path, *, weights: list[float], bias: float, batch: int | str = "N"
) -> Path:
    """y = x @ weights + bias, x shaped [batch, len(weights)], y shaped [batch, 1]."""
    import onnx
    from onnx import TensorProto, helper

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
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
