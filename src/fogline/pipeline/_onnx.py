"""The real model loader for `infer` steps: an onnxruntime session from a file.

Kept apart from the engine (which does no I/O) and importing onnxruntime only
when called: it is an optional dependency (`pip install 'fogline[ml]'`).
"""

from __future__ import annotations

import os

from ._errors import ModelLoadError
from ._infer import InferenceSessionLike


def load_onnx_model(path: str | os.PathLike[str]) -> InferenceSessionLike:
    """Load an ONNX model for CPU inference, one thread (edge nodes share their cores).

    Raises:
        ModelLoadError: onnxruntime is missing, or the file is not a loadable model.
    """
    try:
        import onnxruntime  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ModelLoadError(
            None, os.fspath(path), "onnxruntime is not installed (pip install 'fogline[ml]')"
        ) from exc
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session: InferenceSessionLike = onnxruntime.InferenceSession(
            os.fspath(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        raise ModelLoadError(None, os.fspath(path), f"cannot load: {exc}") from exc
    return session
