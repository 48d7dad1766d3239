"""The step protocol, its counters, and the small stateless or simple steps.

Every step works on batches: `run(records, now)` takes the records that
reached it and returns the ones it passes on (or emits, for a window). The
pipeline counts `in` and `out` from the batch lengths, so a step's per-event
path only counts what it drops. Steps that change a record copy it first when
an output upstream may still hold the same dict (`copy_on_write`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from ._errors import PipelineStateError
from ._ratelimit import TokenBucket
from .expr import EvaluationError

Record = dict[str, Any]
Batch = list[Record]
KeyFn = Callable[[Mapping[str, Any]], Any]

COUNTER_NAMES = ("in", "out", "dropped", "errors", "late", "rate_limited")


class StepCounters:
    """What a step (or output) did since the pipeline started, for metrics."""

    __slots__ = ("dropped", "errors", "in_", "late", "out", "rate_limited")

    def __init__(self) -> None:
        self.in_ = self.out = self.dropped = self.errors = self.late = self.rate_limited = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "in": self.in_,
            "out": self.out,
            "dropped": self.dropped,
            "errors": self.errors,
            "late": self.late,
            "rate_limited": self.rate_limited,
        }


def key_function(fields: Sequence[str]) -> KeyFn:
    """Return record -> key: None (no fields), the value (one) or a tuple (several)."""
    names = tuple(fields)
    if not names:
        return lambda record: None
    if len(names) == 1:
        (name,) = names
        return lambda record: record.get(name)
    return lambda record: tuple([record.get(name) for name in names])


def _time(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"expected a time in seconds, got {value!r}")
    return float(value)


def key_to_json(key: Any) -> Any:
    return list(key) if isinstance(key, tuple) else key


def key_from_json(value: Any, width: int) -> Any:
    """Inverse of key_to_json for a key of `width` fields; raises on a bad shape."""
    if width > 1:
        if not isinstance(value, list) or len(value) != width:
            raise ValueError(f"expected a key of {width} values")
        value = tuple(value)
    hash(value)  # lists or dicts cannot be keys: fail here, not on the next event
    return value


class Step:
    """Base of all steps; `step_id` shows in errors and counters."""

    __slots__ = ("counters", "step_id")
    kind: ClassVar[str] = ""

    def __init__(self, step_id: str) -> None:
        self.step_id = step_id
        self.counters = StepCounters()

    def run(self, records: Batch, now: float) -> Batch:
        raise NotImplementedError

    def tick(self, now: float) -> Batch:
        """Let time pass: close what is due. Most steps have nothing to do."""
        return []

    def flush(self, now: float) -> Batch:
        """Shutdown: emit everything held back."""
        return []

    @property
    def is_checkpointable(self) -> bool:
        return True

    def export_state(self) -> Any:
        """JSON-able state, or None when the step keeps none."""
        return None

    def restore(self, state: Any) -> Callable[[], None]:
        """Check what export_state returned; the returned function puts it in place.

        Two phases, so a pipeline restores all of its steps or none.

        Raises:
            PipelineStateError: the state does not fit this step.
        """
        if state is not None:
            raise PipelineStateError(self.step_id, f"a {self.kind} step keeps no state")
        return lambda: None

    def adopt(self, old: Step) -> None:
        """Take over the live state of `old`, the same step in the replaced pipeline."""


class FilterStep(Step):
    __slots__ = ("_evaluate",)
    kind = "filter"

    def __init__(self, step_id: str, evaluate: Callable[[Mapping[str, Any]], Any]) -> None:
        super().__init__(step_id)
        self._evaluate = evaluate

    def run(self, records: Batch, now: float) -> Batch:
        evaluate = self._evaluate
        try:
            return [record for record in records if evaluate(record)]
        except EvaluationError:
            pass  # rare: redo the batch one by one (expressions are pure) to count errors
        kept: Batch = []
        errors = 0
        for record in records:
            try:
                if evaluate(record):
                    kept.append(record)
            except EvaluationError:
                errors += 1
        self.counters.errors += errors
        return kept


class MapStep(Step):
    """Adds or overwrites fields; every expression sees the incoming record."""

    __slots__ = ("_copy", "_items")
    kind = "map"

    def __init__(
        self,
        step_id: str,
        items: Sequence[tuple[str, Callable[[Mapping[str, Any]], Any]]],
        *,
        copy_on_write: bool,
    ) -> None:
        super().__init__(step_id)
        self._items = tuple(items)
        self._copy = copy_on_write

    def run(self, records: Batch, now: float) -> Batch:
        items, copy = self._items, self._copy
        out: Batch = []
        errors = 0
        for record in records:
            try:
                new = {name: evaluate(record) for name, evaluate in items}
            except EvaluationError:
                errors += 1
                continue
            if copy:
                record = {**record, **new}
            else:
                record.update(new)
            out.append(record)
        self.counters.errors += errors
        return out


class DedupeStep(Step):
    """Drops repeats of a key within `window_s` of its first sighting (processing time)."""

    __slots__ = ("_key", "_max_keys", "_seen", "_width", "_window_s")
    kind = "dedupe"

    def __init__(
        self, step_id: str, fields: Sequence[str], *, window_s: float, max_keys: int
    ) -> None:
        super().__init__(step_id)
        self._key = key_function(fields)
        self._width = len(fields)
        self._window_s = window_s
        self._max_keys = max_keys
        # Insertion-ordered by first sighting, so expiry pops from the front.
        self._seen: dict[Any, float] = {}

    def run(self, records: Batch, now: float) -> Batch:
        key, seen, window_s = self._key, self._seen, self._window_s
        out: Batch = []
        dropped = errors = 0
        for record in records:
            try:
                k = key(record)
                first = seen.get(k)
            except TypeError:  # a list or dict value cannot be a key
                errors += 1
                continue
            if first is not None:
                if now - first < window_s:
                    dropped += 1
                    continue
                del seen[k]  # re-inserted below, at the back
            if len(seen) >= self._max_keys:
                self._expire(now)
            # Full of live keys: pass the record unremembered; a duplicate is
            # better than a lost reading.
            if len(seen) < self._max_keys:
                seen[k] = now
            out.append(record)
        self.counters.dropped += dropped
        self.counters.errors += errors
        return out

    def tick(self, now: float) -> Batch:
        self._expire(now)
        return []

    def _expire(self, now: float) -> None:
        seen, window_s = self._seen, self._window_s
        while seen:
            k = next(iter(seen))
            if now - seen[k] < window_s:
                break
            del seen[k]

    def export_state(self) -> Any:
        return {"seen": [[key_to_json(k), t] for k, t in self._seen.items()]}

    def restore(self, state: Any) -> Callable[[], None]:
        try:
            seen = {key_from_json(k, self._width): _time(t) for k, t in state["seen"]}
        except (TypeError, ValueError, KeyError) as exc:
            raise PipelineStateError(self.step_id, f"bad dedupe state: {exc}") from exc
        kept = dict(list(seen.items())[: self._max_keys])

        def commit() -> None:
            self._seen = kept

        return commit

    def adopt(self, old: Step) -> None:
        assert isinstance(old, DedupeStep)
        self._seen = old._seen


class SampleStep(Step):
    """Keeps one record in `every`, or at most `per_s` a second (token bucket)."""

    __slots__ = ("_bucket", "_every", "_seen")
    kind = "sample"

    def __init__(
        self,
        step_id: str,
        *,
        every: int | None = None,
        per_s: float | None = None,
        burst: float = 1.0,
    ) -> None:
        super().__init__(step_id)
        self._every = every
        self._bucket = TokenBucket(per_s, burst) if per_s is not None else None
        self._seen = 0

    def run(self, records: Batch, now: float) -> Batch:
        if self._bucket is not None:
            take = self._bucket.take
            out = [record for record in records if take(now)]
            self.counters.rate_limited += len(records) - len(out)
            return out
        every, seen = self._every or 1, self._seen
        # The first record of each group of `every` passes: record i (counting
        # from the start of the stream) passes when i % every == 0.
        out = [record for i, record in enumerate(records, seen) if i % every == 0]
        self._seen = (seen + len(records)) % every
        self.counters.dropped += len(records) - len(out)
        return out

    def export_state(self) -> Any:
        if self._bucket is not None:
            return {"bucket": self._bucket.export_state()}
        return {"seen": self._seen}

    def restore(self, state: Any) -> Callable[[], None]:
        if not isinstance(state, dict):
            raise PipelineStateError(self.step_id, "bad sample state: not a mapping")
        if self._bucket is not None:
            bucket = self._bucket.copy_empty()
            if not bucket.import_state(state.get("bucket")):
                raise PipelineStateError(self.step_id, "bad sample state: bucket")

            def commit_bucket() -> None:
                self._bucket = bucket

            return commit_bucket
        seen = state.get("seen")
        if isinstance(seen, bool) or not isinstance(seen, int) or seen < 0:
            raise PipelineStateError(self.step_id, "bad sample state: seen")

        def commit_seen() -> None:
            self._seen = seen % (self._every or 1)

        return commit_seen

    def adopt(self, old: Step) -> None:
        assert isinstance(old, SampleStep)
        self._bucket, self._seen = old._bucket, old._seen
