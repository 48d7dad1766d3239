"""The meaning of a pipeline spec: everything a node would otherwise trip over at run time.

`plan_pipeline` walks the validated spec once, compiling every expression and
template, resolving `from` references and following which fields records
carry: unknown before the first window (devices send what they send), exact
after one (the key fields, `window_start`, `window_end` and the aggregates),
grown by `map`, `detect` and `infer`. A name a record cannot have there is an
error here, with its path, instead of a dropped event on every node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ._aggregates import AggregateCall, parse_aggregate
from ._outputs import PayloadTemplate
from ._spec import (
    DedupeStepSpec,
    DetectStepSpec,
    FilterStepSpec,
    HalfSpaceTreesSpec,
    InferStepSpec,
    MapStepSpec,
    OutputSpec,
    PipelineSpec,
    SampleStepSpec,
    ThresholdSpec,
    WindowStepSpec,
    ZScoreSpec,
)
from ._template import Template, TopicPattern, compile_template, compile_topic_pattern
from .expr import Expression, ExpressionError, compile_expression

Problem = tuple[str, str]
Fields = frozenset[str] | None  # None: not known (raw device records)

WINDOW_FIELDS = ("window_start", "window_end")
DETECT_FIELDS = ("anomaly", "score")


@dataclass(frozen=True, slots=True)
class StepPlan:
    index: int
    step_id: str
    spec: BaseModel
    # filter: {"filter": e}; map: {field: e}; window: {argument text: e} for non-field arguments
    expressions: Mapping[str, Expression] = field(default_factory=dict)
    aggregates: tuple[AggregateCall, ...] = ()
    fields_after: Fields = None
    copy_on_write: bool = False  # an output upstream may hold the same record dicts


@dataclass(frozen=True, slots=True)
class OutputPlan:
    index: int
    output_id: str
    spec: OutputSpec
    position: int  # the output sees the stream after this many steps
    when: Expression | None = None
    topic: Template | None = None
    payload: PayloadTemplate | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    spec: PipelineSpec
    steps: tuple[StepPlan, ...]
    outputs: tuple[OutputPlan, ...]
    source: TopicPattern | None


def check_pipeline(spec: PipelineSpec) -> list[Problem]:
    """Every problem of a structurally valid spec, as (path, reason)."""
    return _Planner(spec).plan()[1]


def plan_pipeline(spec: PipelineSpec) -> tuple[Plan, list[Problem]]:
    """The compiled plan of `spec` and its problems (the plan is unusable if any)."""
    return _Planner(spec).plan()


def _missing(names: Iterable[str], known: Fields) -> list[str]:
    return [] if known is None else [name for name in names if name not in known]


def _shown(known: frozenset[str]) -> str:
    return ", ".join(sorted(known)) or "none"


class _Planner:
    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.problems: list[Problem] = []

    def problem(self, path: str, reason: str) -> None:
        self.problems.append((path, reason))

    def expression(
        self, path: str, text: str, known: Fields, column_offset: int = 0
    ) -> Expression | None:
        try:
            return compile_expression(text, fields=known)
        except ExpressionError as exc:
            self.problem(path, f"column {exc.column + column_offset}: {exc.reason}")
            return None

    def need_fields(self, path: str, names: Iterable[str], known: Fields, after: str) -> None:
        for name in _missing(names, known):
            assert known is not None
            self.problem(
                path, f"records after {after} have no field {name!r} (they have: {_shown(known)})"
            )

    def plan(self) -> tuple[Plan, list[Problem]]:
        spec = self.spec
        source = None
        if spec.source.mqtt is not None:
            try:
                source = compile_topic_pattern(spec.source.mqtt)
            except ExpressionError as exc:
                self.problem("source.mqtt", f"column {exc.column}: {exc.reason}")
        ids: dict[str, int] = {}
        for i, step in enumerate(spec.steps):
            first = ids.setdefault(step.id, i)
            if first != i:
                self.problem(
                    f"steps[{i}].id", f"duplicate step id {step.id!r} (also steps[{first}])"
                )
        taps = self.tap_positions(ids)
        known: Fields = None
        after = "the source"
        step_plans = []
        for i, step in enumerate(spec.steps):
            copy = any(position <= i for position in taps)
            plan = self.plan_step(i, step, known, after, copy)
            step_plans.append(plan)
            known, after = plan.fields_after, f"step {step.id!r}"
        outputs = self.plan_outputs(ids, step_plans)
        return Plan(spec, tuple(step_plans), tuple(outputs), source), self.problems

    def tap_positions(self, ids: Mapping[str, int]) -> list[int]:
        last = len(self.spec.steps)
        return [
            ids[o.from_] + 1 if o.from_ is not None and o.from_ in ids else last
            for o in self.spec.outputs
        ]

    def plan_step(self, i: int, step: BaseModel, known: Fields, after: str, copy: bool) -> StepPlan:
        path = f"steps[{i}]"
        step_id: str = step.id  # type: ignore[attr-defined]
        plan = StepPlan(i, step_id, step, fields_after=known, copy_on_write=copy)
        if isinstance(step, FilterStepSpec):
            expr = self.expression(f"{path}.filter", step.filter, known)
            return StepPlan(i, step_id, step, {"filter": expr} if expr else {}, fields_after=known)
        if isinstance(step, MapStepSpec):
            exprs = {}
            for name, text in step.map.items():
                expr = self.expression(f"{path}.map.{name}", text, known)
                if expr is not None:
                    exprs[name] = expr
            grown = None if known is None else known | set(step.map)
            return StepPlan(i, step_id, step, exprs, fields_after=grown, copy_on_write=copy)
        if isinstance(step, WindowStepSpec):
            return self.plan_window(i, step, known, after)
        if isinstance(step, DetectStepSpec):
            detect = step.detect
            where = f"{path}.detect"
            if isinstance(detect, ThresholdSpec | ZScoreSpec):
                self.need_fields(f"{where}.field", [detect.field], known, after)
            if isinstance(detect, HalfSpaceTreesSpec):
                self.need_fields(f"{where}.features", detect.features, known, after)
            if isinstance(detect, ZScoreSpec | HalfSpaceTreesSpec):
                self.need_fields(f"{where}.key", detect.key, known, after)
            grown = None if known is None else known | set(DETECT_FIELDS)
            return StepPlan(i, step_id, step, fields_after=grown, copy_on_write=copy)
        if isinstance(step, InferStepSpec):
            self.need_fields(f"{path}.infer.inputs", step.infer.inputs, known, after)
            grown = None if known is None else known | {step.infer.output}
            return StepPlan(i, step_id, step, fields_after=grown, copy_on_write=copy)
        if isinstance(step, DedupeStepSpec):
            self.need_fields(f"{path}.dedupe.key", step.dedupe.key, known, after)
        assert isinstance(step, DedupeStepSpec | SampleStepSpec)
        return plan

    def plan_window(self, i: int, step: WindowStepSpec, known: Fields, after: str) -> StepPlan:
        path, window = f"steps[{i}].window", step.window
        self.need_fields(f"{path}.key", window.key, known, after)
        timestamp = self.spec.timestamp
        if window.time == "event" and timestamp is not None and _missing([timestamp], known):
            self.problem(
                f"{path}.time",
                f"event time comes from the pipeline's timestamp field {timestamp!r}, which "
                f"records after {after} do not have; use time: processing",
            )
        if window.idleTimeout is not None and timestamp is None:
            self.problem(
                f"{path}.idleTimeout",
                "applies only when the pipeline has a timestamp field: event time is "
                "arrival time here, so windows close on their own",
            )
        calls: list[AggregateCall] = []
        exprs: dict[str, Expression] = {}
        for name, text in window.aggregate.items():
            where = f"{path}.aggregate.{name}"
            if name in window.key or name in WINDOW_FIELDS:
                self.problem(where, f"{name!r} is already a field of the window's summary")
                continue
            try:
                call = parse_aggregate(name, text)
            except ValueError as exc:
                self.problem(where, str(exc))
                continue
            calls.append(call)
            argument = call.argument
            if argument is None:
                continue
            if call.argument_is_field:
                self.need_fields(where, [argument], known, after)
            elif argument not in exprs:
                expr = self.expression(where, argument, known, call.argument_column - 1)
                if expr is not None:
                    exprs[argument] = expr
        summary = frozenset([*window.key, *WINDOW_FIELDS, *window.aggregate])
        return StepPlan(i, step.id, step, exprs, tuple(calls), fields_after=summary)

    def plan_outputs(self, ids: Mapping[str, int], steps: list[StepPlan]) -> list[OutputPlan]:
        plans = []
        output_ids: dict[str, int] = {}
        positions = self.tap_positions(ids)
        for i, output in enumerate(self.spec.outputs):
            path = f"outputs[{i}]"
            output_id = output.id or path
            if output.id is not None:
                if output.id in ids:
                    self.problem(f"{path}.id", f"{output.id!r} is already a step id")
                first = output_ids.setdefault(output.id, i)
                if first != i:
                    self.problem(
                        f"{path}.id", f"duplicate output id {output.id!r} (also outputs[{first}])"
                    )
            if output.from_ is not None and output.from_ not in ids:
                self.problem(
                    f"{path}.from",
                    f"unknown step {output.from_!r}; steps are: {', '.join(ids) or 'none'}",
                )
            position = positions[i]
            known = steps[position - 1].fields_after if position else None
            after = f"step {steps[position - 1].step_id!r}" if position else "the source"
            when = None
            if output.when is not None:
                when = self.expression(f"{path}.when", output.when, known)
            topic, payload = self.plan_action(path, output, known, after)
            plans.append(OutputPlan(i, output_id, output, position, when, topic, payload))
        return plans

    def plan_action(
        self, path: str, output: OutputSpec, known: Fields, after: str
    ) -> tuple[Template | None, PayloadTemplate | None]:
        action = output.action
        if action is None:
            return None, None
        topic = None
        raw_payload: Any = None
        where = f"{path}.action.webhook"
        if action.mqtt is not None:
            where = f"{path}.action.mqtt"
            raw_payload = action.mqtt.payload
            try:
                topic = compile_template(action.mqtt.topic)
            except ExpressionError as exc:
                self.problem(f"{where}.topic", f"column {exc.column}: {exc.reason}")
            else:
                self.need_fields(f"{where}.topic", sorted(topic.fields), known, after)
        elif action.webhook is not None:
            raw_payload = action.webhook.payload
        if raw_payload is None:
            return topic, None
        try:
            payload = PayloadTemplate(raw_payload)
        except ExpressionError as exc:
            self.problem(f"{where}.payload", f"{exc}")
            return topic, None
        self.need_fields(f"{where}.payload", sorted(payload.fields), known, after)
        return topic, payload
