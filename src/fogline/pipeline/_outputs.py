"""Outputs: what the engine asks the agent to do with a record, and payload templates.

An output taps the stream after one step. For each record there it checks
`when`, renders the action's topic and payload, then spends a token of its
rate limit, and emits an `Emission`. The agent does the I/O.

Payload templates: in an action's `payload`, a string that is exactly one
placeholder (`"{value}"`) takes the field's value as it is (number, bool,
null, list); placeholders inside longer text (`"pump {device} hot"`) are
replaced by the value's text, and a missing field there is an error.
`{{` and `}}` write braces. Unlike topic templates, payload text may hold
any characters: it is data, not routing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

from ._errors import PipelineError
from ._ratelimit import TokenBucket
from ._spec import OutputSpec
from ._steps import Batch, StepCounters
from ._template import Template
from .expr import EvaluationError, ExpressionError

Record = dict[str, Any]
Render = Callable[[Mapping[str, Any]], Any]

_PLACEHOLDER: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_FIELD_PATH: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


class Emission(NamedTuple):
    """One thing for the agent to do: uplink `payload`, or perform the action.

    `output` is the output's spec (`output.uplink` gives stream, priority and
    ttl; `output.action` the MQTT or webhook target). `topic` is the rendered
    MQTT topic of an MQTT action; `payload` is the rendered payload of an
    action, or the record itself.
    """

    output_index: int
    output: OutputSpec
    record: Record
    topic: str | None
    payload: Any

    @property
    def kind(self) -> str:
        """`uplink`, `mqtt` or `webhook`."""
        action = self.output.action
        if action is None:
            return "uplink"
        return "mqtt" if action.mqtt is not None else "webhook"


class PayloadTemplate:
    """A compiled payload: a JSON-like value whose strings may hold `{field}`."""

    __slots__ = ("fields", "render")

    def __init__(self, payload: Any) -> None:
        """Raises: ExpressionError (column, reason) for a malformed placeholder."""
        fields: set[str] = set()
        self.render: Render = _compile_value(payload, fields)
        self.fields = frozenset(fields)


def _compile_value(value: Any, fields: set[str]) -> Render:
    if isinstance(value, dict):
        items = [(key, _compile_value(item, fields)) for key, item in value.items()]
        return lambda record: {key: render(record) for key, render in items}
    if isinstance(value, list):
        renders = [_compile_value(item, fields) for item in value]
        return lambda record: [render(record) for render in renders]
    if isinstance(value, str):
        return _compile_string(value, fields)
    return lambda record: value


def _lookup(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _compile_string(text: str, fields: set[str]) -> Render:
    parts: list[str | tuple[str, ...]] = []
    literal: list[str] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        literal.append(text[pos : match.start()])
        pos = match.end()
        token, inner = match.group(0), match.group(1)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if inner is None:
            reason = f"single {token!r} must be written {token * 2!r}"
            raise ExpressionError(text, match.start() + 1, reason)
        if not _FIELD_PATH.fullmatch(inner):
            reason = f"placeholder {{{inner}}} must be {{field}} or {{nested.field}}"
            raise ExpressionError(text, match.start() + 1, reason)
        if "".join(literal):
            parts.append("".join(literal))
        literal = []
        path = tuple(inner.split("."))
        fields.add(path[0])
        parts.append(path)
    literal.append(text[pos:])
    if "".join(literal):
        parts.append("".join(literal))
    if not any(isinstance(part, tuple) for part in parts):
        constant = "".join(part for part in parts if isinstance(part, str))
        return lambda record: constant
    if len(parts) == 1:  # exactly "{field}": keep the value's type
        (whole,) = parts
        assert isinstance(whole, tuple)
        return lambda record: _lookup(record, whole)

    def render(record: Mapping[str, Any]) -> str:
        pieces = []
        for part in parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            value = _lookup(record, part)
            if value is None:
                raise EvaluationError(text, f"field {'.'.join(part)!r} is missing")
            pieces.append(("true" if value else "false") if isinstance(value, bool) else str(value))
        return "".join(pieces)

    return render


class OutputTap:
    """One output, attached to the stream after its `from` step."""

    __slots__ = ("_bucket", "_payload", "_topic", "_when", "counters", "index", "output_id", "spec")

    def __init__(
        self,
        index: int,
        output_id: str,
        spec: OutputSpec,
        *,
        when: Callable[[Mapping[str, Any]], Any] | None,
        topic: Template | None,
        payload: PayloadTemplate | None,
    ) -> None:
        self.index, self.output_id, self.spec = index, output_id, spec
        self.counters = StepCounters()
        self._when, self._topic, self._payload = when, topic, payload
        limit = spec.rateLimit
        self._bucket = TokenBucket(limit.per_s, limit.burst_tokens) if limit is not None else None

    def emit(self, records: Batch, now: float, emissions: list[Emission]) -> None:
        """Append an Emission for each record that passes `when` and the rate limit."""
        when, topic, payload, bucket = self._when, self._topic, self._payload, self._bucket
        counters = self.counters
        before = len(emissions)
        for record in records:
            try:
                if when is not None and not when(record):
                    counters.dropped += 1
                    continue
                rendered_topic = topic.render(record) if topic is not None else None
                body = payload.render(record) if payload is not None else record
            except (EvaluationError, PipelineError):
                counters.errors += 1
                continue
            if bucket is not None and not bucket.take(now):
                counters.rate_limited += 1
                continue
            emissions.append(Emission(self.index, self.spec, record, rendered_topic, body))
        counters.in_ += len(records)
        counters.out += len(emissions) - before

    def adopt(self, old: OutputTap) -> None:
        """Keep the old rate limit's tokens: a replaced pipeline must not burst."""
        if self._bucket is not None and old._bucket is not None:
            self._bucket = old._bucket
