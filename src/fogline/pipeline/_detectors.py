"""Anomaly detectors: each annotates records with `anomaly: bool` and `score: float`.

* threshold       score = how far the value lies outside [min, max] (0 inside)
* zscore          EWMA mean and variance per key; score = |x - mean| / stddev of
                  the state before x; anomaly once `warmup` values were seen and
                  score > threshold. Every value updates the state, spikes too:
                  a level shift is flagged, then learned.
* halfspacetrees  river's HalfSpaceTrees per key (or global); score in [0, 1].
                  river costs ~150 MB and a second to import, so it is imported
                  only when such a step is built.

A record whose field is missing or not a number is an error: counted, dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._errors import PipelineStateError
from ._steps import Batch, Record, Step, key_from_json, key_function, key_to_json

# A constant series has zero variance; any change then is "infinitely" unusual.
# Scores stay finite so records serialize as plain JSON.
MAX_SCORE = 1e12


def _annotate(record: Record, anomaly: bool, score: float, copy: bool) -> Record:
    if copy:
        record = dict(record)
    record["anomaly"] = anomaly
    record["score"] = score
    return record


def _number(value: Any) -> float:
    """Return `value` as a finite float; TypeError/ValueError otherwise."""
    x = value + 0.0  # TypeError for None, str, list...
    if x - x != 0.0:  # nan or inf
        raise ValueError("not a finite number")
    return float(x)


class ThresholdStep(Step):
    __slots__ = ("_copy", "_field", "_high", "_low")
    kind = "detect"

    def __init__(
        self,
        step_id: str,
        field: str,
        *,
        low: float | None,
        high: float | None,
        copy_on_write: bool,
    ) -> None:
        super().__init__(step_id)
        self._field = field
        self._low = -math.inf if low is None else low
        self._high = math.inf if high is None else high
        self._copy = copy_on_write

    def run(self, records: Batch, now: float) -> Batch:
        field, low, high, copy = self._field, self._low, self._high, self._copy
        out: Batch = []
        errors = 0
        for record in records:
            try:
                x = _number(record.get(field))
            except (TypeError, ValueError, OverflowError):
                errors += 1
                continue
            score = low - x if x < low else x - high if x > high else 0.0
            out.append(_annotate(record, score > 0.0, score, copy))
        self.counters.errors += errors
        return out


class ZScoreStep(Step):
    __slots__ = (
        "_alpha",
        "_copy",
        "_field",
        "_key",
        "_max_keys",
        "_state",
        "_threshold",
        "_warmup",
        "_width",
    )
    kind = "detect"

    def __init__(
        self,
        step_id: str,
        field: str,
        *,
        key_fields: Sequence[str],
        threshold: float,
        alpha: float,
        warmup: int,
        max_keys: int,
        copy_on_write: bool,
    ) -> None:
        super().__init__(step_id)
        self._field = field
        self._key = key_function(key_fields)
        self._width = len(key_fields)
        self._threshold, self._alpha, self._warmup = threshold, alpha, warmup
        self._max_keys = max_keys
        self._copy = copy_on_write
        self._state: dict[Any, list[float]] = {}  # key -> [count, mean, variance]

    def run(self, records: Batch, now: float) -> Batch:
        field, key, state, copy = self._field, self._key, self._state, self._copy
        alpha, keep, threshold, warmup = (
            self._alpha,
            1.0 - self._alpha,
            self._threshold,
            self._warmup,
        )
        out: Batch = []
        errors = dropped = 0
        for record in records:
            try:
                x = _number(record.get(field))
                k = key(record)
                st = state.get(k)
            except (TypeError, ValueError, OverflowError):
                errors += 1
                continue
            if st is None:
                if len(state) >= self._max_keys:
                    dropped += 1
                    continue
                state[k] = [1, x, 0.0]
                out.append(_annotate(record, False, 0.0, copy))
                continue
            n, mean, var = st
            diff = x - mean
            sd = math.sqrt(var)
            if sd > 0.0:
                score = min(abs(diff) / sd, MAX_SCORE)
            else:
                score = 0.0 if diff == 0.0 else MAX_SCORE
            incr = alpha * diff
            st[0] = n + 1
            st[1] = mean + incr
            st[2] = keep * (var + diff * incr)
            out.append(_annotate(record, n >= warmup and score > threshold, score, copy))
        self.counters.errors += errors
        self.counters.dropped += dropped
        return out

    def export_state(self) -> Any:
        return {"keys": [[key_to_json(k), st] for k, st in self._state.items()]}

    def restore(self, state: Any) -> Callable[[], None]:
        try:
            restored: dict[Any, list[float]] = {}
            for k, st in state["keys"]:
                n, mean, var = st
                if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                    raise ValueError("count must be a positive integer")
                restored[key_from_json(k, self._width)] = [n, _number(mean), _number(var)]
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise PipelineStateError(self.step_id, f"bad zscore state: {exc}") from exc
        kept = dict(list(restored.items())[: self._max_keys])

        def commit() -> None:
            self._state = kept

        return commit

    def adopt(self, old: Step) -> None:
        assert isinstance(old, ZScoreStep)
        self._state = old._state


class HalfSpaceTreesStep(Step):
    __slots__ = (
        "_copy",
        "_features",
        "_key",
        "_make",
        "_max_keys",
        "_models",
        "_threshold",
        "_warmup",
    )
    kind = "detect"

    def __init__(
        self,
        step_id: str,
        features: Sequence[str],
        *,
        key_fields: Sequence[str],
        threshold: float,
        limits: Mapping[str, tuple[float, float]] | None,
        n_trees: int,
        height: int,
        window_size: int,
        warmup: int,
        seed: int,
        max_keys: int,
        copy_on_write: bool,
    ) -> None:
        super().__init__(step_id)
        from river.anomaly import HalfSpaceTrees  # lazily: ~150 MB and a second to import

        self._features = tuple(features)
        self._key = key_function(key_fields)
        self._threshold, self._warmup, self._max_keys = threshold, warmup, max_keys
        self._copy = copy_on_write
        bounds: dict[Any, tuple[float, float]] | None = dict(limits) if limits else None

        def make() -> Any:
            return HalfSpaceTrees(
                n_trees=n_trees, height=height, window_size=window_size, limits=bounds, seed=seed
            )

        self._make = make
        self._models: dict[Any, list[Any]] = {}  # key -> [model, values learned]

    @property
    def is_checkpointable(self) -> bool:
        return False  # river models have no JSON form; they relearn after a restart

    def run(self, records: Batch, now: float) -> Batch:
        features, key, models, copy = self._features, self._key, self._models, self._copy
        out: Batch = []
        errors = dropped = 0
        for record in records:
            try:
                x = {name: _number(record.get(name)) for name in features}
                k = key(record)
                entry = models.get(k)
            except (TypeError, ValueError, OverflowError):
                errors += 1
                continue
            if entry is None:
                if len(models) >= self._max_keys:
                    dropped += 1
                    continue
                entry = models[k] = [self._make(), 0]
            model = entry[0]
            score = float(model.score_one(x))
            model.learn_one(x)
            entry[1] += 1
            anomaly = entry[1] > self._warmup and score > self._threshold
            out.append(_annotate(record, anomaly, score, copy))
        self.counters.errors += errors
        self.counters.dropped += dropped
        return out

    def adopt(self, old: Step) -> None:
        assert isinstance(old, HalfSpaceTreesStep)
        self._models = old._models
