"""Deep checks of manifest blocks, run at plan/apply time on the hub.

The manifest package keeps `spec.modules`, `spec.pipelines` and
`spec.rollout` opaque; their owners' schemas plug in here, so a bad
pipeline is refused with its file:line:column before it reaches any node.
"""

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from fogline.manifest import BlockError, BlockValidators, canonical_json

from .releases import validate_module_block
from .rollouts import check_rollout

_PATH_PART: Final = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def split_path(path: str) -> tuple[str | int, ...]:
    """`steps[1].window.size` -> ("steps", 1, "window", "size")."""
    return tuple(int(index) if index else name for name, index in _PATH_PART.findall(path))


def check_pipeline(block: Mapping[str, Any]) -> None:
    # The pipeline schema (pydantic models, the expression compiler) only
    # here: a plan or apply needs it, a device's request never; imported at
    # start it cost each hub worker about 9 MB resident.
    from fogline.pipeline import PipelineSpecError, validate_pipeline

    try:
        # The manifest hands over a frozen tree; the pipeline schema wants JSON.
        validate_pipeline(orjson.loads(canonical_json(block)))
    except PipelineSpecError as exc:
        # Every problem, each at its own path: the manifest reports them all at once.
        found = [(split_path(path), reason) for path, reason in exc.problems]
        first, *rest = found or [((), str(exc))]
        raise BlockError(first[0], first[1], more=rest) from exc


def default_validators() -> BlockValidators:
    return BlockValidators(
        pipeline=check_pipeline, module=validate_module_block, rollout=check_rollout
    )
