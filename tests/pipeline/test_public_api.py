"""fogline.pipeline's error tree and lazy imports (its names are pinned in tests/test_exports.py)."""

from __future__ import annotations

import subprocess
import sys

import fogline.pipeline as pipeline
from fogline import FoglineError


def test_every_error_is_a_pipeline_error_and_a_fogline_error() -> None:
    for name in ("PipelineSpecError", "ExpressionError", "EvaluationError", "ModelLoadError",
                 "PipelineStateError"):  # fmt: skip
        error = getattr(pipeline, name)
        assert issubclass(error, pipeline.PipelineError)
        assert issubclass(error, FoglineError)


LAZY_IMPORTS = """
import subprocess
import sys
from fogline.pipeline import build_pipeline, validate_pipeline
def build(aggregate):
    window = {"type": "tumbling", "size": "1s", "aggregate": aggregate}
    raw = {"name": "p", "source": {"http": {}}, "steps": [{"id": "w", "window": window}],
           "outputs": [{"uplink": {"stream": "s"}}]}
    build_pipeline(validate_pipeline(raw)).process({"v": 1}, now=0)
    return sorted(m for m in ("river", "onnxruntime", "numpy", "ddsketch") if m in sys.modules)
print(build({"m": "mean(v)"}), build({"p": "p99(v)"}))
"""


def test_heavy_optional_dependencies_load_only_for_the_steps_that_need_them() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LAZY_IMPORTS], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] ['ddsketch']"
