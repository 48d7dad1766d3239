"""The infer step with a real (tiny) ONNX model run by onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fogline.pipeline import (
    ModelLoadError,
    ModelRefSpec,
    PipelineSpecError,
    build_pipeline,
    load_onnx_model,
    validate_pipeline,
)
from tests.support.onnx_models import save_linear_model

from ._support import make_spec, records_of

pytest.importorskip("onnx")

MODEL = {"release": "linear@1.0.0", "file": "linear.onnx"}


def infer_spec(inputs: list[str], **extra: Any) -> Any:
    step = {"id": "model", "infer": {"model": MODEL, "inputs": inputs, "output": "y"}}
    return validate_pipeline(make_spec([step], **extra))


def test_infer_runs_an_onnx_model_on_a_batch(tmp_path: Path) -> None:
    path = save_linear_model(tmp_path / "linear.onnx", weights=[2.0], bias=1.0)
    loaded: list[ModelRefSpec] = []

    def loader(ref: ModelRefSpec) -> Any:
        loaded.append(ref)
        return load_onnx_model(path)

    p = build_pipeline(infer_spec(["x"]), model_loader=loader)
    out = records_of(p.process_many([{"x": 0}, {"x": 1.5}, {"x": -3}], now=0))
    assert [(r.name, r.version, r.file) for r in loaded] == [("linear", "1.0.0", "linear.onnx")]
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
    with pytest.raises(
        ModelLoadError, match=r"step 'model': model 'linear@1\.0\.0/linear\.onnx': cannot load"
    ):
        build_pipeline(infer_spec(["x"]), model_loader=lambda _: load_onnx_model(path))


def test_a_loader_failure_names_the_step_and_model() -> None:
    def loader(ref: ModelRefSpec) -> Any:
        raise FileNotFoundError(ref.file)

    with pytest.raises(
        ModelLoadError, match=r"step 'model': model 'linear@1\.0\.0/linear\.onnx'"
    ) as caught:
        build_pipeline(infer_spec(["x"]), model_loader=loader)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_the_model_file_defaults_to_model_onnx() -> None:
    step = {"id": "m", "infer": {"model": {"release": "scorer@2.1.0-rc.1"}, "inputs": ["x"]}}
    step["infer"]["output"] = "y"
    spec = validate_pipeline(make_spec([step]))
    ref = spec.steps[0].infer.model  # type: ignore[union-attr]
    assert (ref.name, ref.version, ref.file) == ("scorer", "2.1.0-rc.1", "model.onnx")
    assert str(ref) == "scorer@2.1.0-rc.1/model.onnx"


@pytest.mark.parametrize(
    ("model", "path", "reason"),
    [
        ("linear", "steps[0].infer.model", "must be a mapping (got 'linear')"),
        ({"release": "linear"}, "steps[0].infer.model.release", "must be NAME@VERSION"),
        ({"release": "Linear@1.0.0"}, "steps[0].infer.model.release", "must be NAME@VERSION"),
        ({"release": "linear@1.0"}, "steps[0].infer.model.release", "1.0"),
        (
            {"release": "linear@1.0.0", "file": "../x.onnx"},
            "steps[0].infer.model.file",
            "none starting with '.'",
        ),
        (
            {"release": "linear@1.0.0", "file": "/etc/x.onnx"},
            "steps[0].infer.model.file",
            "relative path",
        ),
        (
            {"release": "linear@1.0.0", "file": "a//b.onnx"},
            "steps[0].infer.model.file",
            "relative path",
        ),
        (
            {"release": "linear@1.0.0", "file": "a/" * 8 + "m.onnx"},
            "steps[0].infer.model.file",
            "at most 8 levels",
        ),
        (
            {"release": "linear@1.0.0", "path": "m.onnx"},
            "steps[0].infer.model.path",
            "unknown field",
        ),
    ],
)
def test_a_bad_model_reference_is_refused_at_its_path(model: Any, path: str, reason: str) -> None:
    step = {"id": "m", "infer": {"model": model, "inputs": ["x"], "output": "y"}}
    with pytest.raises(PipelineSpecError) as caught:
        validate_pipeline(make_spec([step]))
    assert any(p == path and reason in r for p, r in caught.value.problems), caught.value.problems


def test_a_new_model_version_replaces_only_the_infer_step(tmp_path: Path) -> None:
    """The window after the infer step keeps its open window across the swap."""
    models = {
        "1.0.0": load_onnx_model(save_linear_model(tmp_path / "v1.onnx", weights=[2.0], bias=1.0)),
        "2.0.0": load_onnx_model(save_linear_model(tmp_path / "v2.onnx", weights=[10.0], bias=0.0)),
    }
    loaded: list[str] = []

    def loader(ref: ModelRefSpec) -> Any:
        loaded.append(ref.version)
        return models[ref.version]

    def spec(version: str) -> Any:
        steps = [
            {
                "id": "model",
                "infer": {
                    "model": {"release": f"linear@{version}"},
                    "inputs": ["x"],
                    "output": "y",
                },
            },
            {
                "id": "w",
                "window": {
                    "type": "tumbling",
                    "size": "10s",
                    "aggregate": {"n": "count()", "total": "sum(y)"},
                },
            },
        ]
        return validate_pipeline(
            make_spec(
                steps,
                [
                    {"from": "model", "uplink": {"stream": "y"}},
                    {"from": "w", "uplink": {"stream": "w"}},
                ],
                timestamp="ts",
            )
        )

    first = build_pipeline(spec("1.0.0"), model_loader=loader)
    assert [e.record["y"] for e in first.process_many([{"x": 1, "ts": 1}], now=1)] == [3.0]
    second = first.replace_with(spec("2.0.0"))  # the loader given at build is kept
    out = second.process_many([{"x": 1, "ts": 2}, {"x": 0, "ts": 12}], now=12)
    assert [e.record["y"] for e in out if e.output.uplink and e.output.uplink.stream == "y"] == [
        10.0,
        0.0,
    ]
    summaries = [e.record for e in out if e.output.uplink and e.output.uplink.stream == "w"]
    assert summaries and summaries[0]["n"] == 2 and summaries[0]["total"] == 13.0
    assert loaded == ["1.0.0", "2.0.0"]
    assert second.counters()["model"]["in"] == 3  # the step's counters continue
