"""`validate_pipeline`: the gate `fogline apply/plan` uses before a pipeline reaches nodes.

Pydantic checks the shape; `_check` the meaning. Both kinds of problem come
back as (path, reason) with paths written as in the YAML, e.g.
`steps[1].window.size`, so the CLI can print them under the manifest's own
path (`deployments[0].spec.pipelines[2].steps[1].window.size`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ._check import check_pipeline
from ._errors import PipelineSpecError
from ._spec import DETECTOR_TYPES, SKIP_SEMANTIC_CHECK, STEP_KINDS, PipelineSpec

_BARE_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What the name patterns in _spec mean, for people.
_PATTERN_RULES: Final = {
    "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$": (
        "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"
    ),
    "^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$": (
        "must be 1-63 letters, digits, '_', '.' or '-', starting and ending with a letter or digit"
    ),
    "^[A-Za-z_][A-Za-z0-9_]{0,127}$": (
        "must be a field name: a letter or '_', then letters, digits or '_' (at most 128)"
    ),
    r"^https?://[^\s]{1,2040}$": "must be an http:// or https:// URL without spaces",
}


def validate_pipeline(raw: Mapping[str, Any]) -> PipelineSpec:
    """Check a pipeline from a manifest; return its validated spec.

    Raises:
        PipelineSpecError: every problem found, each with its path and reason.
    """
    name = raw.get("name") if isinstance(raw, Mapping) else None
    shown_name = name if isinstance(name, str) and len(name) <= 63 else None
    if not isinstance(raw, Mapping):
        raise PipelineSpecError([("", f"a pipeline must be a mapping, not {type(raw).__name__}")])
    try:
        spec = PipelineSpec.model_validate(dict(raw), context={SKIP_SEMANTIC_CHECK: True})
    except ValidationError as exc:
        raise PipelineSpecError(problems_of(exc.errors()), name=shown_name) from None
    problems = check_pipeline(spec)
    if problems:
        raise PipelineSpecError(problems, name=spec.name)
    return spec


def problems_of(errors: Sequence[ErrorDetails]) -> list[tuple[str, str]]:
    """Translate pydantic errors into (path, reason) as a person reads the YAML."""
    problems: list[tuple[str, str]] = []
    for error in errors:
        loc = list(error["loc"])
        is_key = bool(loc) and loc[-1] == "[key]"
        if is_key:
            loc.pop()
        tags = [part for part in loc if isinstance(part, str) and part.startswith("<")]
        parts = [part for part in loc if not (isinstance(part, str) and part.startswith("<"))]
        reason = _reason(error, tags)
        if error["type"] == "detector_type":
            parts.append("type")
        problems.append((render_path(parts), f"key: {reason}" if is_key else reason))
    return problems


def _reason(error: ErrorDetails, tags: list[str]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        field = error["loc"][-1]
        if tags and tags[-1] == "<step:invalid>":
            return f"unknown step kind {field!r}; expected one of: {', '.join(STEP_KINDS)}"
        return f"unknown field {field!r}"
    if kind == "string_pattern_mismatch":
        rule = _PATTERN_RULES.get(str((error.get("ctx") or {}).get("pattern")))
        if rule:
            return f"{rule} (got {_short(error['input'])})"
    if kind == "missing":
        return "required"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping (got {_short(error['input'])})"
    if kind == "detector_type":
        value = error["input"]
        shown = _short(value.get("type") if isinstance(value, dict) else value)
        return f"must be one of {', '.join(DETECTOR_TYPES)} (got {shown})"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind == "literal_error":
        message += f" (got {_short(error['input'])})"
    return message


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def render_path(parts: Sequence[str | int]) -> str:
    """`["steps", 1, "window", "size"]` -> `steps[1].window.size`."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _BARE_KEY.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out)
