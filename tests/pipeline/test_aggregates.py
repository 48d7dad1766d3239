"""Each window aggregate against a reference computation over the same events."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.pipeline._aggregates import SKETCH_RELATIVE_ACCURACY, parse_aggregate

from ._support import records_of, window_pipeline

ALL = {
    "n": "count()",
    "nv": "count(v)",
    "total": "sum(v)",
    "avg": "mean(v)",
    "low": "min(v)",
    "high": "max(v)",
    "sd": "stddev(v)",
    "head": "first(v)",
    "tail": "last(v)",
    "median": "p50(v)",
    "p95": "p95(v)",
    "p99": "p99(v)",
}

values_st = st.lists(
    st.one_of(
        st.none(),
        st.integers(min_value=-(10**6), max_value=10**6),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    ),
    min_size=1,
    max_size=80,
)


def summarize(values: list[Any], aggregate: dict[str, str]) -> dict[str, Any]:
    p = window_pipeline(aggregate=aggregate)
    p.process_many([{"ts": 1.0, "v": v} if v is not None else {"ts": 1.0} for v in values], now=0)
    (summary,) = records_of(p.flush(0))
    return summary


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def within_sketch_accuracy(estimate: float, numbers: list[float], q: float) -> bool:
    """DDSketch answers the value of rank q*(n-1), within its relative accuracy."""
    ordered = sorted(numbers)
    rank = q * (len(ordered) - 1)
    candidates = {ordered[math.floor(rank)], ordered[math.ceil(rank)]}
    slack = SKETCH_RELATIVE_ACCURACY * 1.0001
    # DDSketch files values too close to zero under zero.
    return any(abs(estimate - v) <= slack * abs(v) + 1e-9 for v in candidates)


@settings(max_examples=80, deadline=None)
@given(values=values_st)
def test_every_aggregate_matches_a_reference_computation(values: list[Any]) -> None:
    got = summarize(values, ALL)
    numbers = [v for v in values if v is not None]
    assert got["n"] == len(values)
    assert got["nv"] == len(numbers)
    assert close(got["total"], math.fsum(numbers))
    if not numbers:
        assert [got[k] for k in ("avg", "low", "high", "sd", "head", "tail", "median")] == [
            None
        ] * 7
        return
    assert close(got["avg"], statistics.fmean(numbers))
    assert got["low"] == min(numbers)
    assert got["high"] == max(numbers)
    assert math.isclose(got["sd"], statistics.pstdev(numbers), rel_tol=1e-6, abs_tol=1e-4)
    assert got["head"] == numbers[0]
    assert got["tail"] == numbers[-1]
    for name, q in (("median", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert within_sketch_accuracy(got[name], numbers, q), (name, got[name])


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(min_value=0.001, max_value=1e9), min_size=1, max_size=300))
def test_percentiles_of_positive_values_are_within_the_sketch_accuracy(values: list[float]) -> None:
    got = summarize(values, {"a": "p50(v)", "b": "p95(v)", "c": "p99(v)"})
    for name, q in (("a", 0.5), ("b", 0.95), ("c", 0.99)):
        assert within_sketch_accuracy(got[name], values, q)


def test_sum_and_mean_only_fast_path_agrees_with_the_general_path() -> None:
    values = [1, 2.5, None, -4, 10**6]
    fast = summarize(values, {"total": "sum(v)", "avg": "mean(v)", "n": "count()"})
    general = summarize(
        values, {"total": "sum(v)", "avg": "mean(v)", "n": "count()", "x": "max(v)"}
    )
    assert {k: fast[k] for k in ("total", "avg", "n")} == {
        k: general[k] for k in ("total", "avg", "n")
    }
    assert fast["total"] == 1 + 2.5 - 4 + 10**6


def test_an_aggregate_argument_may_be_an_expression() -> None:
    got = summarize([1, 2, 3], {"doubled": "max(v * 2)", "hot": "count(v > 1)"})
    assert got["doubled"] == 6
    assert got["hot"] == 3  # count(x) counts non-null values, true or false


def test_first_and_last_keep_any_json_value() -> None:
    got = summarize(["on", "off", "on"], {"head": "first(v)", "tail": "last(v)", "n": "count(v)"})
    assert (got["head"], got["tail"], got["n"]) == ("on", "on", 3)


def test_an_expression_argument_that_fails_is_an_error_for_that_record() -> None:
    p = window_pipeline(aggregate={"m": "max(v * 2)"})
    p.process_many([{"ts": 1, "v": 2}, {"ts": 1, "v": "x"}, {"ts": 1}], now=0)
    (summary,) = records_of(p.flush(0))
    assert summary["m"] == 4
    assert p.counters()["w"]["errors"] == 2  # "x" * 2 and null * 2 both fail


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("median(v)", "unknown aggregate function 'median'"),
        ("mean()", "mean() needs an argument"),
        ("mean", "expected an aggregate call"),
        ("mean(v", "expected an aggregate call"),
    ],
)
def test_parse_aggregate_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_aggregate("x", text)


def test_parse_aggregate_reports_where_the_argument_starts() -> None:
    call = parse_aggregate("x", "max(  v * 2 )")
    assert (call.function, call.argument, call.argument_column) == ("max", "v * 2", 7)
