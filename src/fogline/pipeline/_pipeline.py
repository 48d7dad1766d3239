"""The running pipeline: batches in, emissions out, time always passed in.

Nothing here reads a clock or does I/O; the agent calls `process_many` with
records and the current time, `tick` periodically (processing-time windows,
idle event-time windows, dedupe expiry) and `flush` at shutdown, and acts
on the returned `Emission`s. The engine may add fields to the record dicts it
is given (copying first where an output still holds the same dict).

Checkpoints (`export_state`): windows without percentiles, zscore detectors,
dedupe and sample steps. Not checkpointable, so they start fresh after a
restore: windows with p50/p95/p99 (DDSketch has no JSON form here) and
halfspacetrees detectors (river models). Rate limits of outputs are not
checkpointed either (they start full).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from itertools import repeat
from typing import Any, Final

from ._aggregates import Aggregation
from ._check import Plan, StepPlan, plan_pipeline
from ._detectors import HalfSpaceTreesStep, ThresholdStep, ZScoreStep
from ._errors import ModelLoadError, PipelineSpecError, PipelineStateError
from ._infer import InferStep, ModelLoader
from ._outputs import Emission, OutputTap
from ._spec import (
    DedupeStepSpec,
    DetectStepSpec,
    FilterStepSpec,
    HalfSpaceTreesSpec,
    InferStepSpec,
    MapStepSpec,
    PipelineSpec,
    SampleStepSpec,
    ThresholdSpec,
    WindowStepSpec,
    ZScoreSpec,
)
from ._steps import Batch, DedupeStep, FilterStep, MapStep, Record, SampleStep, Step
from ._template import TopicPattern
from ._windows import WindowStep

STATE_VERSION: Final = 1


def build_pipeline(spec: PipelineSpec, *, model_loader: ModelLoader | None = None) -> Pipeline:
    """Compile a validated spec into a runnable pipeline.

    `model_loader(ref)` returns the session of an `infer` step's model, a
    `ModelRefSpec` (the agent: `load_onnx_model` on that file of the
    installed model release).

    Raises:
        PipelineSpecError: the spec has problems (as `validate_pipeline` reports).
        ModelLoadError: an `infer` model cannot be loaded or does not fit its step.
    """
    plan, problems = plan_pipeline(spec)
    if problems:
        raise PipelineSpecError(problems, name=spec.name)
    steps = [_build_step(step, spec, model_loader) for step in plan.steps]
    taps = [
        OutputTap(
            o.index,
            o.output_id,
            o.spec,
            when=o.when.evaluate if o.when is not None else None,
            topic=o.topic,
            payload=o.payload,
        )
        for o in plan.outputs
    ]
    return Pipeline(plan, steps, taps, model_loader)


def _field_getter(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda record: record.get(name)


def _build_step(plan: StepPlan, spec: PipelineSpec, model_loader: ModelLoader | None) -> Step:
    step, step_id, copy = plan.spec, plan.step_id, plan.copy_on_write
    if isinstance(step, FilterStepSpec):
        return FilterStep(step_id, plan.expressions["filter"].evaluate)
    if isinstance(step, MapStepSpec):
        items = [(name, expr.evaluate) for name, expr in plan.expressions.items()]
        return MapStep(step_id, items, copy_on_write=copy)
    if isinstance(step, WindowStepSpec):
        window = step.window
        getters = {
            call.argument: (
                plan.expressions[call.argument].evaluate
                if call.argument in plan.expressions
                else _field_getter(call.argument)
            )
            for call in plan.aggregates
            if call.argument is not None
        }
        return WindowStep(
            step_id,
            size_s=window.size,
            hop_s=window.hop,
            key_fields=window.key,
            aggregation=Aggregation(plan.aggregates, getters),
            processing_time=window.time == "processing",
            timestamp_field=spec.timestamp,
            lateness_s=window.lateness or 0.0,
            idle_timeout_s=window.idleTimeout,
            max_skew_s=window.maxClockSkew,
            max_keys=window.maxKeys,
        )
    if isinstance(step, DetectStepSpec):
        return _build_detector(step_id, step.detect, copy)
    if isinstance(step, InferStepSpec):
        infer = step.infer
        model = str(infer.model)
        if model_loader is None:
            raise ModelLoadError(step_id, model, "no model_loader was given to build_pipeline")
        try:
            session = model_loader(infer.model)
        except ModelLoadError as exc:
            raise ModelLoadError(step_id, model, exc.reason) from exc
        except Exception as exc:  # the loader is the agent's: any failure is a load failure
            raise ModelLoadError(step_id, model, f"cannot load: {exc}") from exc
        return InferStep(
            step_id,
            model=model,
            session=session,
            inputs=infer.inputs,
            output=infer.output,
            copy_on_write=copy,
        )
    if isinstance(step, DedupeStepSpec):
        dedupe = step.dedupe
        return DedupeStep(step_id, dedupe.key, window_s=dedupe.window, max_keys=dedupe.maxKeys)
    assert isinstance(step, SampleStepSpec)
    sample = step.sample
    burst = sample.burst if sample.burst is not None else max(1.0, sample.per_s or 1.0)
    return SampleStep(step_id, every=sample.every, per_s=sample.per_s, burst=burst)


def _build_detector(step_id: str, detect: Any, copy: bool) -> Step:
    if isinstance(detect, ThresholdSpec):
        return ThresholdStep(
            step_id, detect.field, low=detect.min, high=detect.max, copy_on_write=copy
        )
    if isinstance(detect, ZScoreSpec):
        return ZScoreStep(
            step_id,
            detect.field,
            key_fields=detect.key,
            threshold=detect.threshold,
            alpha=detect.alpha,
            warmup=detect.warmup,
            max_keys=detect.maxKeys,
            copy_on_write=copy,
        )
    assert isinstance(detect, HalfSpaceTreesSpec)
    return HalfSpaceTreesStep(
        step_id,
        detect.features,
        key_fields=detect.key,
        threshold=detect.threshold,
        limits=detect.limits,
        n_trees=detect.nTrees,
        height=detect.height,
        window_size=detect.windowSize,
        warmup=detect.warmup if detect.warmup is not None else detect.windowSize,
        seed=detect.seed,
        max_keys=detect.maxKeys,
        copy_on_write=copy,
    )


def _definition(step: Any, spec: PipelineSpec) -> str:
    """A digest of what a step does; state carries over only where it is unchanged.

    The pipeline's timestamp field is part of every step's definition: it
    decides what a window's event time means.
    """
    document = {"step": step.model_dump(mode="json", by_alias=True), "timestamp": spec.timestamp}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


class Pipeline:
    """A built pipeline; see the module docstring for how the agent drives it."""

    __slots__ = ("_definitions", "_model_loader", "_plan", "_stages", "_steps", "_taps", "_taps_at")

    def __init__(
        self, plan: Plan, steps: list[Step], taps: list[OutputTap], model_loader: ModelLoader | None
    ) -> None:
        self._plan = plan
        self._steps = steps
        self._taps = taps
        self._model_loader = model_loader
        self._definitions = [_definition(step.spec, plan.spec) for step in plan.steps]
        # _taps_at[p]: outputs that see the stream after p steps (0: the source).
        self._taps_at: list[tuple[OutputTap, ...]] = [
            tuple(t for t, o in zip(taps, plan.outputs, strict=True) if o.position == p)
            for p in range(len(steps) + 1)
        ]
        self._wire()

    def _wire(self) -> None:
        """Prepare the per-step tuples the batch loop runs over (after counters move too)."""
        self._stages: tuple[tuple[Callable[[Batch, float], Batch], Any, tuple[OutputTap, ...]], ...]
        self._stages = tuple(
            (step.run, step.counters, self._taps_at[position])
            for position, step in enumerate(self._steps, 1)
        )

    @property
    def spec(self) -> PipelineSpec:
        return self._plan.spec

    @property
    def name(self) -> str:
        return self._plan.spec.name

    @property
    def source_pattern(self) -> TopicPattern | None:
        """The compiled MQTT source pattern (its `mqtt_filter` to subscribe), if any."""
        return self._plan.source

    # --- data ------------------------------------------------------------------

    def process(self, record: Record, now: float) -> list[Emission]:
        """Run one record through the pipeline."""
        if record.__class__ is dict:
            return self._run([record], now)
        return self._run(self._only_mappings([record]), now)

    def process_many(self, records: Iterable[Record], now: float) -> list[Emission]:
        """Run a batch of records (parsed JSON objects) through the pipeline; all arrived at `now`.

        Anything but a dict is dropped and counted as an error.
        """
        batch = records if records.__class__ is list else list(records)
        if not all(map(isinstance, batch, repeat(dict))):  # C-level: ~17 ns a record
            batch = self._only_mappings(batch)
        return self._run(batch, now)

    def _run(self, batch: Batch, now: float) -> list[Emission]:
        emissions: list[Emission] = []
        for tap in self._taps_at[0]:
            tap.emit(batch, now, emissions)
        for run, counters, taps in self._stages:
            if not batch:
                break
            counters.in_ += len(batch)
            batch = run(batch, now)
            counters.out += len(batch)
            for tap in taps:
                tap.emit(batch, now, emissions)
        return emissions

    def _only_mappings(self, batch: Batch) -> Batch:
        """Drop what is not a JSON object (a device may publish `[1, 2]` or `"hi"`).

        They count as errors of the first step, or of the first output when
        there are no steps: the first thing that would have seen them.
        """
        kept = [record for record in batch if isinstance(record, dict)]
        counters = self._steps[0].counters if self._steps else self._taps[0].counters
        counters.in_ += len(batch) - len(kept)
        counters.errors += len(batch) - len(kept)
        return kept

    def tick(self, now: float) -> list[Emission]:
        """Let time pass: close processing-time windows and windows now due."""
        return self._pass_time(now, lambda step: step.tick(now))

    def flush(self, now: float) -> list[Emission]:
        """Shutdown: close every open window and emit what it holds."""
        return self._pass_time(now, lambda step: step.flush(now))

    def _pass_time(self, now: float, release: Callable[[Step], Batch]) -> list[Emission]:
        emissions: list[Emission] = []
        carried: Batch = []
        for position, step in enumerate(self._steps, 1):
            counters = step.counters
            if carried:
                counters.in_ += len(carried)
                carried = step.run(carried, now)
            released = release(step)
            if released:
                carried = carried + released
            counters.out += len(carried)
            for tap in self._taps_at[position]:
                tap.emit(carried, now, emissions)
        return emissions

    def counters(self) -> dict[str, dict[str, int]]:
        """Counts per step id and output id: in, out, dropped, errors, late, rate_limited.

        For an output, `dropped` counts records its `when` turned down.
        """
        counts = {step.step_id: step.counters.as_dict() for step in self._steps}
        counts.update({tap.output_id: tap.counters.as_dict() for tap in self._taps})
        return counts

    # --- state -------------------------------------------------------------------

    def replace_with(
        self, spec: PipelineSpec, *, model_loader: ModelLoader | None = None
    ) -> Pipeline:
        """Build the pipeline for a new desired state, keeping what still applies.

        Steps whose id and definition are unchanged keep their open windows,
        detector and dedupe state; others start fresh. Counters continue for
        every step and output id that persists; unchanged rate limits keep
        their tokens. `infer` steps ask the model loader again (the agent's
        returns the session it holds when the model reference is unchanged).
        Do not use this pipeline afterwards: its state moved.

        Raises:
            PipelineSpecError, ModelLoadError: as build_pipeline.
        """
        new = build_pipeline(spec, model_loader=model_loader or self._model_loader)
        old_steps = {
            step.step_id: (step, definition)
            for step, definition in zip(self._steps, self._definitions, strict=True)
        }
        for step, definition in zip(new._steps, new._definitions, strict=True):
            old = old_steps.get(step.step_id)
            if old is None:
                continue
            old_step, old_definition = old
            step.counters = old_step.counters
            if old_definition == definition and type(old_step) is type(step):
                step.adopt(old_step)
        old_taps = {tap.output_id: tap for tap in self._taps}
        for tap in new._taps:
            old_tap = old_taps.get(tap.output_id)
            if old_tap is not None:
                tap.counters = old_tap.counters
                if old_tap.spec == tap.spec:
                    tap.adopt(old_tap)
        new._wire()
        return new

    def export_state(self) -> dict[str, Any]:
        """A JSON-able checkpoint of the steps' state (see the module docstring)."""
        steps: dict[str, Any] = {}
        skipped = []
        for step, definition in zip(self._steps, self._definitions, strict=True):
            if not step.is_checkpointable:
                skipped.append(step.step_id)
                continue
            state = step.export_state()
            if state is not None:
                steps[step.step_id] = {"definition": definition, "state": state}
        return {
            "version": STATE_VERSION,
            "pipeline": self.name,
            "steps": steps,
            "not_checkpointable": skipped,
        }

    def import_state(self, state: Mapping[str, Any]) -> list[str]:
        """Restore a checkpoint; return the ids of the steps restored.

        State of a step that is gone or whose definition changed is ignored
        (that step starts fresh, as with replace_with). All or nothing.

        Raises:
            PipelineStateError: not a checkpoint of this version, or a step's
                state does not fit it.
        """
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            version = state.get("version") if isinstance(state, Mapping) else None
            raise PipelineStateError(
                None, f"expected a checkpoint of version {STATE_VERSION}, got {version!r}"
            )
        entries = state.get("steps")
        if not isinstance(entries, Mapping):
            raise PipelineStateError(None, "checkpoint has no 'steps' mapping")
        commits = []
        restored = []
        for step, definition in zip(self._steps, self._definitions, strict=True):
            entry = entries.get(step.step_id)
            if entry is None or not step.is_checkpointable:
                continue
            if not isinstance(entry, Mapping) or "state" not in entry:
                raise PipelineStateError(step.step_id, "checkpoint entry has no 'state'")
            if entry.get("definition") != definition:
                continue
            commits.append(step.restore(entry["state"]))
            restored.append(step.step_id)
        for commit in commits:
            commit()
        return restored
