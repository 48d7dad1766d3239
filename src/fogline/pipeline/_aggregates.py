"""Window aggregates: parsing `mean(value)` and updating them one event at a time.

An accumulator is a plain list (cheap to create, JSON-able for checkpoints
unless it holds a sketch): slot 0 counts records, then each distinct argument
has a block of slots holding only what its functions need:

    n        values seen (not null)            always
    sum      running sum                       sum, mean
    wmean m2 Welford mean and squared spread   stddev
    min max                                    min, max
    first last                                 first, last
    sketch   a DDSketch (not JSON-able)        p50, p95, p99

`stddev` is the population standard deviation. Null (missing) values are
skipped, as SQL aggregates skip NULL; a non-numeric value for a numeric
function makes the whole record an error (nothing of it is counted).
Percentiles come from DDSketch (relative accuracy 1 %); `ddsketch` is
imported only when a window uses one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

Record = Mapping[str, Any]
Getter = Callable[[Record], Any]
Accumulator = list[Any]

AGGREGATE_FUNCTIONS: Final = (
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "stddev",
    "first",
    "last",
    "p50",
    "p95",
    "p99",
)
QUANTILES: Final = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
SKETCH_RELATIVE_ACCURACY: Final = 0.01
_NUMERIC: Final = frozenset({"sum", "mean", "min", "max", "stddev", *QUANTILES})
_CALL: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*", re.DOTALL)
_FIELD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class AggregateCall:
    """One parsed aggregate: output field `name` = `function(argument)`."""

    name: str
    function: str
    argument: str | None  # None for count(); a field name or an expression otherwise
    argument_column: int = 0  # 1-based column of the argument in the aggregate's text

    @property
    def argument_is_field(self) -> bool:
        return self.argument is not None and _FIELD.fullmatch(self.argument) is not None


def parse_aggregate(name: str, text: str) -> AggregateCall:
    """Parse `mean(value)`, `count()`, `max(value * 2)`.

    Raises:
        ValueError: not a call, an unknown function or a missing argument.
    """
    match = _CALL.fullmatch(text)
    if match is None:
        raise ValueError(f"expected an aggregate call like mean(value) or count(), got {text!r}")
    function, raw = match.group(1), match.group(2)
    argument = raw.strip()
    column = match.start(2) + len(raw) - len(raw.lstrip()) + 1
    if function not in AGGREGATE_FUNCTIONS:
        raise ValueError(
            f"unknown aggregate function {function!r}; expected one of "
            + ", ".join(AGGREGATE_FUNCTIONS)
        )
    if not argument:
        if function != "count":
            raise ValueError(f"{function}() needs an argument, e.g. {function}(value)")
        return AggregateCall(name, function, None)
    return AggregateCall(name, function, argument, column)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(slots=True)
class _Block:
    """The slots one argument needs, as offsets into the accumulator (-1: absent)."""

    getter: Getter
    numeric: bool
    n: int
    sum: int = -1
    wmean: int = -1
    minimum: int = -1
    first: int = -1
    sketch: int = -1


class Aggregation:
    """Creates, updates and summarizes the accumulators of one window step."""

    __slots__ = (
        "_block_of",
        "_blocks",
        "_calls",
        "_make_sketch",
        "_template",
        "summarize",
        "update",
    )

    def __init__(self, calls: Sequence[AggregateCall], getters: Mapping[str, Getter]) -> None:
        """`getters` maps each call's argument text to a function reading it from a record."""
        self._calls = tuple(calls)
        template: list[Any] = [0]
        blocks: dict[str, _Block] = {}
        for call in self._calls:
            if call.argument is None:
                continue
            block = blocks.get(call.argument)
            if block is None:
                block = _Block(getters[call.argument], numeric=False, n=len(template))
                template.append(0)
                blocks[call.argument] = block
            block.numeric = block.numeric or call.function in _NUMERIC
            for function in (call.function, *(("sum",) if call.function == "mean" else ())):
                slot, initial = _SLOT_OF.get(function, ("", ()))
                if slot and getattr(block, slot) < 0:
                    setattr(block, slot, len(template))
                    template.extend(initial)
        self._block_of = blocks
        self._blocks = tuple(blocks.values())
        self._template = template
        self._make_sketch: Callable[[], Any] | None = None
        if any(block.sketch >= 0 for block in self._blocks):
            from ddsketch import DDSketch  # lazily: only windows with percentiles pay for it

            self._make_sketch = lambda: DDSketch(relative_accuracy=SKETCH_RELATIVE_ACCURACY)
        self.update: Callable[[Accumulator, Record], None] = self._build_update()
        self.summarize: Callable[[Accumulator], dict[str, Any]] = self._build_summarize()

    @property
    def is_checkpointable(self) -> bool:
        """False when accumulators hold sketches, which have no JSON form here."""
        return self._make_sketch is None

    def new(self) -> Accumulator:
        """A fresh, empty accumulator."""
        acc = self._template.copy()
        if self._make_sketch is not None:
            for block in self._blocks:
                if block.sketch >= 0:
                    acc[block.sketch] = self._make_sketch()
        return acc

    def is_valid(self, acc: Any) -> bool:
        """Whether `acc` (from a checkpoint) has this aggregation's shape."""
        if not isinstance(acc, list) or len(acc) != len(self._template) or not _is_count(acc[0]):
            return False
        for block in self._blocks:
            count = acc[block.n]
            if not _is_count(count):
                return False
            numbers = []
            if block.sum >= 0:
                numbers.append(block.sum)
            if block.wmean >= 0:
                numbers += [block.wmean, block.wmean + 1]
            if block.minimum >= 0 and count:  # min/max are null until a value is seen
                numbers += [block.minimum, block.minimum + 1]
            if not all(_is_number(acc[at]) for at in numbers):
                return False
        return True

    def _build_update(self) -> Callable[[Accumulator, Record], None]:
        blocks = self._blocks
        if not blocks:

            def count_only(acc: Accumulator, record: Record) -> None:
                acc[0] += 1

            return count_only
        (argument, only), *_ = self._block_of.items()
        if (
            len(blocks) == 1
            and _FIELD.fullmatch(argument)
            and only.sum >= 0
            and only.wmean < 0
            and only.minimum < 0
            and only.first < 0
            and only.sketch < 0
        ):
            # The hot case (count/sum/mean of one field): one dict lookup, one add,
            # which raises TypeError on a non-number before anything is stored.
            n_at, sum_at = only.n, only.sum

            def sum_one_field(acc: Accumulator, record: Record) -> None:
                value = record.get(argument)
                if value is None:
                    acc[0] += 1
                    return
                total = acc[sum_at] + value
                acc[0] += 1
                acc[n_at] += 1
                acc[sum_at] = total

            return sum_one_field
        updates = [(block.getter, block.numeric, _block_update(block)) for block in blocks]

        def update(acc: Accumulator, record: Record) -> None:
            values = []
            for getter, numeric, _ in updates:
                value = getter(record)
                if numeric and value is not None and not isinstance(value, int | float):
                    raise TypeError(f"not a number: {type(value).__name__}")
                values.append(value)
            acc[0] += 1
            for value, (_, _, apply) in zip(values, updates, strict=True):
                if value is not None:
                    apply(acc, value)

        return update

    def _build_summarize(self) -> Callable[[Accumulator], dict[str, Any]]:
        readers = [
            (
                call.name,
                _reader(
                    call.function, None if call.argument is None else self._block_of[call.argument]
                ),
            )
            for call in self._calls
        ]

        def summarize(acc: Accumulator) -> dict[str, Any]:
            return {name: read(acc) for name, read in readers}

        return summarize


# function -> (block slot, initial values of the slots it adds)
_SLOT_OF: Final[Mapping[str, tuple[str, tuple[Any, ...]]]] = {
    "sum": ("sum", (0,)),
    "stddev": ("wmean", (0.0, 0.0)),
    "min": ("minimum", (None, None)),
    "max": ("minimum", (None, None)),
    "first": ("first", (None, None)),
    "last": ("first", (None, None)),
    "p50": ("sketch", (None,)),
    "p95": ("sketch", (None,)),
    "p99": ("sketch", (None,)),
}


def _block_update(block: _Block) -> Callable[[Accumulator, Any], None]:
    n_at, sum_at, wmean_at, min_at, first_at, sketch_at = (
        block.n,
        block.sum,
        block.wmean,
        block.minimum,
        block.first,
        block.sketch,
    )

    def apply(acc: Accumulator, value: Any) -> None:
        n = acc[n_at] + 1
        acc[n_at] = n
        if sum_at >= 0:
            acc[sum_at] += value
        if wmean_at >= 0:  # Welford: stable where sum of squares cancels catastrophically
            delta = value - acc[wmean_at]
            acc[wmean_at] += delta / n
            acc[wmean_at + 1] += delta * (value - acc[wmean_at])
        if min_at >= 0:
            if n == 1:
                acc[min_at] = acc[min_at + 1] = value
            elif value < acc[min_at]:
                acc[min_at] = value
            elif value > acc[min_at + 1]:
                acc[min_at + 1] = value
        if first_at >= 0:
            if n == 1:
                acc[first_at] = value
            acc[first_at + 1] = value
        if sketch_at >= 0:
            acc[sketch_at].add(value)

    return apply


def _reader(function: str, block: _Block | None) -> Callable[[Accumulator], Any]:
    if block is None:  # count()
        return lambda acc: acc[0]
    n_at = block.n
    if function == "count":
        return lambda acc: acc[n_at]
    if function == "sum":
        return lambda acc: acc[block.sum]
    if function == "mean":
        return lambda acc: acc[block.sum] / acc[n_at] if acc[n_at] else None
    if function == "stddev":
        return lambda acc: (
            math.sqrt(max(acc[block.wmean + 1], 0.0) / acc[n_at]) if acc[n_at] else None
        )
    if function in ("min", "max"):
        at = block.minimum + (function == "max")
        return lambda acc: acc[at]
    if function in ("first", "last"):
        at = block.first + (function == "last")
        return lambda acc: acc[at]
    quantile = QUANTILES[function]
    return lambda acc: acc[block.sketch].get_quantile_value(quantile) if acc[n_at] else None
