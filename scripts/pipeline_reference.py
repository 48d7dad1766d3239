"""Write docs/pipeline-reference.md from the pipeline schema (the pydantic models).

    python scripts/pipeline_reference.py           # rewrite the page
    python scripts/pipeline_reference.py --check   # exit 1 if the page is stale

Every block a pipeline may hold, with every field: its type, whether it is
required or its default, its limits and what it does. Field descriptions
are the fields' docstrings in `src/fogline/pipeline/_spec*.py`, types and
limits come from their annotations, so the page cannot drift from what
`fogline plan` accepts: tests/pipeline/test_reference.py runs `--check`.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.functional_validators import BeforeValidator

from fogline._duration import format_duration, parse_duration
from fogline.pipeline import _spec as spec
from fogline.pipeline._aggregates import AGGREGATE_FUNCTIONS
from fogline.pipeline.expr._library import COALESCE, FUNCTIONS

MAX_EXPRESSION: Final = spec.MAX_EXPRESSION_CHARS
PAGE: Final = Path(__file__).resolve().parent.parent / "docs" / "pipeline-reference.md"

# (heading, block name as written in YAML, model), in the page's order.
SECTIONS: Final[tuple[tuple[str, str, type[BaseModel]], ...]] = (
    ("Pipeline", "pipelines[]", spec.PipelineSpec),
    ("Source", "source", spec.SourceSpec),
    ("source: http", "source.http", spec.HttpSourceSpec),
    ("Step: filter", "steps[]", spec.FilterStepSpec),
    ("Step: map", "steps[]", spec.MapStepSpec),
    ("Step: window", "steps[]", spec.WindowStepSpec),
    ("window", "steps[].window", spec.WindowSpec),
    ("Step: detect", "steps[]", spec.DetectStepSpec),
    ("Detector: threshold", "steps[].detect", spec.ThresholdSpec),
    ("Detector: zscore", "steps[].detect", spec.ZScoreSpec),
    ("Detector: halfspacetrees", "steps[].detect", spec.HalfSpaceTreesSpec),
    ("Step: infer", "steps[]", spec.InferStepSpec),
    ("infer", "steps[].infer", spec.InferSpec),
    ("infer.model", "steps[].infer.model", spec.ModelRefSpec),
    ("Step: dedupe", "steps[]", spec.DedupeStepSpec),
    ("dedupe", "steps[].dedupe", spec.DedupeSpec),
    ("Step: sample", "steps[]", spec.SampleStepSpec),
    ("sample", "steps[].sample", spec.SampleSpec),
    ("Output", "outputs[]", spec.OutputSpec),
    ("uplink", "outputs[].uplink", spec.UplinkSpec),
    ("action", "outputs[].action", spec.ActionSpec),
    ("action: mqtt", "outputs[].action.mqtt", spec.MqttActionSpec),
    ("action: webhook", "outputs[].action.webhook", spec.WebhookActionSpec),
    ("rateLimit", "outputs[].rateLimit", spec.RateLimitSpec),
)
ANCHORS: Final = {model: heading for heading, _, model in SECTIONS}
# Named types whose rules are said once, in words.
PATTERNS: Final = {
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$": "name (1-63 of a-z, 0-9, `-`)",
    r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$": "id (1-63 of letters, digits, `_.-`)",
    r"^[A-Za-z_][A-Za-z0-9_]{0,127}$": "field name",
    r"^https?://[^\s]{1,2040}$": "http(s) URL",
}


def _anchor(heading: str) -> str:
    return "".join(c for c in heading.lower().replace(" ", "-") if c.isalnum() or c == "-")


def _text(doc: str | None) -> str:
    """A docstring as one Markdown paragraph per blank-line-separated part."""
    if not doc:
        return ""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(part.split()) for part in paragraphs)


def _flat(metadata: list[Any]) -> list[Any]:
    """Constraint objects, with those inside `Field(...)` taken out."""
    out: list[Any] = []
    for item in metadata:
        out += _flat(list(item.metadata)) if isinstance(item, FieldInfo) else [item]
    return out


def _number(value: Any, duration: bool) -> str:
    if duration:
        return format_duration(float(value))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _limits(metadata: list[Any], duration: bool) -> list[str]:
    limits: list[str] = []
    for item in _flat(metadata):
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None and not isinstance(item, BeforeValidator):
                limits.append(f"{sign} {_number(value, duration)}")
        low, high = getattr(item, "min_length", None), getattr(item, "max_length", None)
        if high == MAX_EXPRESSION:
            continue  # an expression: its limit is said once, in the page's header
        if low:
            limits.append(f"at least {low}")
        if high is not None:
            limits.append(f"at most {high}")
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str) and pattern not in PATTERNS:
            limits.append(f"matches `{pattern}`")
    return limits


def _is_duration(metadata: list[Any]) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func is parse_duration for m in metadata)


def type_text(annotation: Any, metadata: list[Any] | None = None) -> tuple[str, list[str]]:
    """(type in words, its limits) of an annotation, as a person writes YAML."""
    metadata = list(metadata or [])
    while typing.get_origin(annotation) is typing.Annotated:
        annotation, *extra = typing.get_args(annotation)
        metadata += extra
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    flat = _flat(metadata)
    duration = _is_duration(flat)
    limits = _limits(metadata, duration)
    if duration:
        return "duration", limits
    if origin in (typing.Union, types.UnionType):
        branches = [a for a in args if a is not type(None)]
        bare = _bare(branches)
        if all(isinstance(a, type) and issubclass(a, BaseModel) for a in bare):
            # Internal models (a step of no known kind) are not blocks to write.
            shown = [type_text(a)[0] for a, b in zip(branches, bare, strict=True) if b in ANCHORS]
            return " or ".join(shown), limits
        inner, inner_limits = type_text(branches[0])
        return inner, limits + inner_limits
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args), limits
    if origin is list:
        inner, inner_limits = type_text(args[0])
        return f"list of {inner}", limits + inner_limits
    if origin is dict and args[1] is Any:
        return "JSON object", limits
    if origin is dict:
        key, _ = type_text(args[0])
        value, value_limits = type_text(args[1])
        return f"mapping of {key} to {value}", limits + value_limits
    if origin is tuple:
        return "[" + ", ".join(type_text(a)[0] for a in args) + "]", limits
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        heading = ANCHORS.get(annotation)
        return (f"[{heading}](#{_anchor(heading)})" if heading else "mapping"), limits
    if annotation is str:
        pattern = next(
            (getattr(m, "pattern", None) for m in flat if getattr(m, "pattern", None)), None
        )
        if isinstance(pattern, str) and pattern in PATTERNS:
            return PATTERNS[pattern], limits
        if any(getattr(m, "max_length", None) == MAX_EXPRESSION for m in flat):
            return "expression", limits
        return "text", limits
    names = {bool: "boolean", int: "integer", float: "number"}
    if annotation in names:
        return names[annotation], limits
    if annotation is Any or annotation is dict or str(annotation).startswith("dict"):
        return "JSON object", limits
    return str(annotation), limits


def _bare(annotations: list[Any]) -> list[Any]:
    out = []
    for annotation in annotations:
        while typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        out.append(annotation)
    return out


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    default = info.get_default(call_default_factory=True)
    if default is None:
        return "—"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, list | dict) and not default:
        return "`[]`" if isinstance(default, list) else "`{}`"
    duration = type_text(info.annotation, list(info.metadata))[0] == "duration"
    return f"`{_number(default, duration)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if "\\|" not in text else text


def model_table(model: type[BaseModel]) -> str:
    if not model.model_fields:
        return "No fields: write it as `{}`."
    rows = ["| field | type | default | limits | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        shown = info.alias or name
        kind, limits = type_text(info.annotation, list(info.metadata))
        description = _text(info.description)
        if not description:
            raise SystemExit(
                f"{model.__name__}.{name} has no docstring: document it in pipeline/_spec*.py"
            )
        rows.append(
            f"| `{shown}` | {_cell(kind)} | {_default(info)} | {', '.join(limits) or '—'} "
            f"| {_cell(description)} |"
        )
    return "\n".join(rows)


HEADER: Final = """\
# Pipeline reference

<!-- Generated by scripts/pipeline_reference.py from the pipeline schema
     (src/fogline/pipeline/_spec*.py). Do not edit: change the schema's
     docstrings and run `python scripts/pipeline_reference.py`. -->

Every block of a pipeline (`Deployment.spec.pipelines[]`) and every field
it takes. [dataplane.md](dataplane.md) explains how pipelines run on a
node; examples of every step kind are in [examples/pipelines/](../examples/pipelines/).
Unknown fields are errors, and so is a value outside its limits: `fogline
plan` reports each with its file, line, column and path.

- **duration**: a number with a unit, `500ms`, `10s`, `5m`, `24h`, `7d`,
  or a combination like `1h30m`; a bare number is seconds.
- **expression**: the safe expression language (at most 4096
  characters): arithmetic (`+ - * / // % **`), comparisons (also `in`),
  `and`/`or`/`not`, `x if c else y`, field names (nested: `a.b`, `a["b"]`),
  numbers, strings, lists, `true`/`false`/`null`, and the functions below.
  A missing field reads as null; comparisons with null are false. Nothing
  reaches `eval`.
- **name**: 1-63 lowercase letters, digits and `-`, starting and ending
  with a letter or digit. **id**: 1-63 letters, digits, `_`, `.` and `-`.
  **field name**: a letter or `_`, then letters, digits and `_` (at most 128).
- A **template** (`topic`, string values of a `payload`) replaces `{field}`
  by the record's value; a string that is only `"{field}"` keeps the
  value's type.
"""


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def reachable_models() -> set[type[BaseModel]]:
    """Every block a pipeline can hold, found by walking the schema from PipelineSpec."""
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [spec.PipelineSpec]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for info in model.model_fields.values():
            todo += _models_in(info.annotation)
    # Stand-ins that only make pydantic name a stray or doubled step kind.
    return {m for m in seen if not m.__name__.startswith("_")}


def render() -> str:
    missing = reachable_models() - set(ANCHORS)
    if missing:
        names = ", ".join(sorted(m.__name__ for m in missing))
        raise SystemExit(f"blocks without a section in SECTIONS: {names}")
    parts = [HEADER]
    functions = sorted([*FUNCTIONS, COALESCE])
    parts.append(
        "Expression functions: "
        + ", ".join(f"`{name}`" for name in functions)
        + ".\n\nWindow aggregates: `count()`, and "
        + ", ".join(f"`{name}(x)`" for name in AGGREGATE_FUNCTIONS if name != "count")
        + " where `x` is a field or an expression.\n"
    )
    for heading, where, model in SECTIONS:
        doc = _text(model.__doc__)
        parts.append(f"## {heading}\n\n`{where}`" + (f": {doc}" if doc else "") + "\n")
        parts.append(model_table(model) + "\n")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(
                f"{PAGE.name} is stale: run python scripts/pipeline_reference.py", file=sys.stderr
            )
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
