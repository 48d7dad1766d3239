"""Tumbling and hopping windows with aggregates per key, on event or processing time.

Window k covers [k*hop, k*hop + size) (tumbling: hop = size), so an event on
a boundary belongs to the window starting there. When size is a whole number
of hops m, the end is computed as (k+m)*hop, exactly the start of window k+m:
with fractional sizes (100ms) float rounding could otherwise leave a boundary
event in two tumbling windows or in none. Open windows live in
`_open[k][key] -> accumulator`; windows are aligned across keys, so closing
is one dict pop per window, not a scan of keys.

Event time: the watermark is the largest event time accepted minus
`lateness`; a window closes (emits one summary per key) once the watermark
reaches its end, and an event whose windows are all closed is counted late
and dropped. Without a `timestamp` field event time is the arrival time, and
`tick(now)` moves the watermark to `now - lateness`. With a timestamp field
the watermark moves with events only, unless `idleTimeout` is set: after that
long without events, event time is taken to advance with the clock from the
last event, so the last windows close (and stragglers become late).

An event stamped more than `maxClockSkew` ahead of the node's clock is an
error (checked when an event leaves the cached pane, so up to one window
more may pass).

Processing time: the event time is `now` (never going back: a clock stepping
back keeps using the latest time seen), no lateness.

The hot path caches the "pane": the span of time in which an event falls into
the same set of open windows, so most events skip all window arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ._aggregates import Accumulator, Aggregation
from ._errors import PipelineStateError
from ._steps import Batch, Step, key_from_json, key_function, key_to_json
from .expr import EvaluationError

_INF = math.inf
_BAD_EVENT = (TypeError, ValueError, OverflowError, EvaluationError)


class WindowStep(Step):
    __slots__ = (
        "_agg",
        "_hop",
        "_idle_s",
        "_key",
        "_key_fields",
        "_last_arrival",
        "_lateness",
        "_max_keys",
        "_max_skew_s",
        "_max_t",
        "_next_close",
        "_now",
        "_open",
        "_pane",
        "_pane_hi",
        "_pane_lo",
        "_processing",
        "_size",
        "_span",
        "_ts_field",
        "_wm",
    )
    kind = "window"

    def __init__(
        self,
        step_id: str,
        *,
        size_s: float,
        hop_s: float | None,
        key_fields: Sequence[str],
        aggregation: Aggregation,
        processing_time: bool,
        timestamp_field: str | None,
        lateness_s: float,
        idle_timeout_s: float | None,
        max_skew_s: float = math.inf,
        max_keys: int,
    ) -> None:
        super().__init__(step_id)
        self._size = size_s
        self._hop = hop_s or size_s
        hops = round(self._size / self._hop)
        self._span = hops if math.isclose(hops * self._hop, self._size, rel_tol=1e-9) else 0
        self._key_fields = tuple(key_fields)
        self._key = key_function(key_fields)
        self._agg = aggregation
        self._processing = processing_time
        self._ts_field = None if processing_time else timestamp_field
        self._lateness = 0.0 if processing_time else lateness_s
        self._idle_s = idle_timeout_s
        self._max_skew_s = max_skew_s
        self._now = -_INF
        self._max_keys = max_keys
        self._open: dict[int, dict[Any, Accumulator]] = {}
        self._max_t = -_INF  # latest event time accepted
        self._wm = -_INF  # watermark: windows ending at or before it are closed
        self._next_close = _INF  # earliest end among open windows
        self._last_arrival = -_INF  # processing time of the last accepted batch
        self._forget_pane()

    # --- the hot path ----------------------------------------------------------

    def run(self, records: Batch, now: float) -> Batch:
        out: Batch = []
        if self._processing:
            self._advance_processing(now, out)
        self._now = now
        # Arrival (or processing) time never goes back, even if the clock does.
        arrival = max(now, self._max_t)
        ts_field, key, update = self._ts_field, self._key, self._agg.update
        max_keys, lateness = self._max_keys, self._lateness
        lo, hi, pane, max_t, next_close = (
            self._pane_lo,
            self._pane_hi,
            self._pane,
            self._max_t,
            self._next_close,
        )
        errors = late = dropped = 0
        t: Any
        for record in records:
            t = arrival if ts_field is None else record.get(ts_field)
            try:
                if not lo <= t < hi:
                    self._max_t = max_t
                    self._locate(t)
                    lo, hi, pane = self._pane_lo, self._pane_hi, self._pane
                if not pane:
                    late += 1
                    continue
                k = key(record)
                for bucket in pane:
                    acc = bucket.get(k)
                    if acc is not None:
                        update(acc, record)
                    elif len(bucket) < max_keys:
                        acc = self._agg.new()
                        update(acc, record)  # may raise: store only what updated cleanly
                        bucket[k] = acc
                    else:
                        dropped += 1
                        break
            except _BAD_EVENT:
                errors += 1
                continue
            if t > max_t:
                max_t = t
                if t - lateness >= next_close:
                    self._max_t = max_t
                    self._advance(t - lateness, out)
                    lo, hi, pane, next_close = (
                        self._pane_lo,
                        self._pane_hi,
                        self._pane,
                        self._next_close,
                    )
        self._max_t = max_t
        if len(records) > errors + late:
            self._last_arrival = now
        if errors or late or dropped:
            counters = self.counters
            counters.errors += errors
            counters.late += late
            counters.dropped += dropped
        return out

    # --- window arithmetic (slow path) ---------------------------------------

    def _locate(self, t: Any) -> None:
        """Cache the pane around event time `t`: the open windows holding it.

        Raises:
            TypeError, ValueError, OverflowError: `t` is not a finite number.
        """
        if isinstance(t, bool) or not isinstance(t, int | float):
            raise TypeError("event time is not a number")
        if self._ts_field is not None and t > self._now + self._max_skew_s:
            raise ValueError("event time too far ahead of the node's clock")
        hop, end_of = self._hop, self._end
        k_hi = math.floor(t / hop)  # ValueError on nan, OverflowError on inf
        while k_hi * hop > t:  # float division may land one window off
            k_hi -= 1
        while (k_hi + 1) * hop <= t:
            k_hi += 1
        k_lo = k_hi
        while end_of(k_lo - 1) > t:
            k_lo -= 1
        lo = max(k_hi * hop, end_of(k_lo - 1))
        hi = min((k_hi + 1) * hop, end_of(k_lo))
        wm = max(self._wm, self._max_t - self._lateness)
        pane = []
        for k in range(k_lo, k_hi + 1):
            end = end_of(k)
            if end <= wm:
                continue  # closed (or never to open): too late for it
            bucket = self._open.get(k)
            if bucket is None:
                bucket = self._open[k] = {}
                self._next_close = min(self._next_close, end)
            pane.append(bucket)
        self._pane_lo, self._pane_hi, self._pane = lo, hi, pane

    def _end(self, k: int) -> float:
        return (k + self._span) * self._hop if self._span else k * self._hop + self._size

    def _forget_pane(self) -> None:
        self._pane_lo, self._pane_hi, self._pane = _INF, -_INF, []

    def _advance(self, watermark: float, out: Batch) -> None:
        """Move the watermark and emit every window that ends at or before it."""
        if watermark <= self._wm:
            return
        self._wm = watermark
        if watermark < self._next_close:
            return
        end_of = self._end
        due = sorted(k for k in self._open if end_of(k) <= watermark)
        for k in due:
            self._emit(k, self._open.pop(k), out)
        self._next_close = min((end_of(k) for k in self._open), default=_INF)
        self._forget_pane()

    def _advance_processing(self, now: float, out: Batch) -> None:
        if now > self._max_t:
            self._max_t = now
            self._advance(now, out)
        if not self._pane_lo <= self._max_t < self._pane_hi:
            self._locate(self._max_t)

    def _emit(self, k: int, bucket: dict[Any, Accumulator], out: Batch) -> None:
        start, end = k * self._hop, self._end(k)
        summarize, fields = self._agg.summarize, self._key_fields
        for key, acc in bucket.items():
            if len(fields) == 1:
                record = {fields[0]: key}
            elif fields:
                record = dict(zip(fields, key, strict=True))
            else:
                record = {}
            record["window_start"] = start
            record["window_end"] = end
            record.update(summarize(acc))
            out.append(record)

    # --- time passing ----------------------------------------------------------

    def tick(self, now: float) -> Batch:
        out: Batch = []
        if self._processing:
            self._advance_processing(now, out)
        elif self._ts_field is None:
            # Event time is arrival time: nothing can arrive stamped before now.
            self._advance(now - self._lateness, out)
        elif self._idle_s is not None and self._last_arrival > -_INF:
            idle = now - self._last_arrival
            if idle >= self._idle_s:
                self._advance(self._max_t - self._lateness + idle, out)
        return out

    def flush(self, now: float) -> Batch:
        out: Batch = []
        for k in sorted(self._open):
            self._emit(k, self._open[k], out)
            self._wm = max(self._wm, self._end(k))
        self._open.clear()
        self._next_close = _INF
        self._forget_pane()
        return out

    # --- state -----------------------------------------------------------------

    @property
    def is_checkpointable(self) -> bool:
        return self._agg.is_checkpointable

    def export_state(self) -> Any:
        if not self.is_checkpointable:
            return None
        return {
            "open": [
                [k, [[key_to_json(key), acc] for key, acc in bucket.items()]]
                for k, bucket in sorted(self._open.items())
            ],
            "max_t": _finite_or_none(self._max_t),
            "wm": _finite_or_none(self._wm),
            "last_arrival": _finite_or_none(self._last_arrival),
        }

    def restore(self, state: Any) -> Callable[[], None]:
        if not self.is_checkpointable:
            raise PipelineStateError(
                self.step_id, "a window with percentiles is not checkpointable"
            )
        try:
            opened: dict[int, dict[Any, Accumulator]] = {}
            for k, entries in state["open"]:
                if isinstance(k, bool) or not isinstance(k, int):
                    raise ValueError(f"window index {k!r} is not an integer")
                bucket: dict[Any, Accumulator] = {}
                for key, acc in entries:
                    if not self._agg.is_valid(acc):
                        raise ValueError("an accumulator does not fit this window's aggregates")
                    bucket[key_from_json(key, len(self._key_fields))] = acc
                opened[k] = bucket
            max_t, wm, arrival = (_number_or_inf(state[n]) for n in ("max_t", "wm", "last_arrival"))
        except (TypeError, ValueError, KeyError) as exc:
            raise PipelineStateError(self.step_id, f"bad window state: {exc}") from exc

        def commit() -> None:
            self._open, self._max_t, self._wm, self._last_arrival = opened, max_t, wm, arrival
            self._next_close = min((self._end(k) for k in opened), default=_INF)
            self._forget_pane()

        return commit

    def adopt(self, old: Step) -> None:
        assert isinstance(old, WindowStep)
        self._open, self._max_t, self._wm = old._open, old._max_t, old._wm
        self._last_arrival, self._next_close = old._last_arrival, old._next_close
        self._forget_pane()


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _number_or_inf(value: Any) -> float:
    if value is None:
        return -_INF
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a finite number or null, got {value!r}")
    return float(value)
