"""filter, map, dedupe and sample steps, and the counters they keep."""

from __future__ import annotations

from typing import Any

from ._support import make_pipeline, records_of


def test_filter_keeps_matching_records_and_counts_evaluation_errors() -> None:
    p = make_pipeline([{"id": "hot", "filter": "value * 2 > 10"}])
    out = records_of(
        p.process_many([{"value": 6}, {"value": 1}, {}, {"value": "x"}, {"value": 9}], now=0)
    )
    assert out == [{"value": 6}, {"value": 9}]
    assert p.counters()["hot"] == {
        "in": 5,
        "out": 2,
        "dropped": 0,
        "errors": 2,
        "late": 0,
        "rate_limited": 0,
    }


def test_map_adds_and_overwrites_fields_from_the_incoming_record() -> None:
    p = make_pipeline([{"id": "to-f", "map": {"f": "c * 9 / 5 + 32", "c": "round(c)"}}])
    (out,) = records_of(p.process({"c": 21.6}, now=0))
    assert out == {"c": 22, "f": 21.6 * 9 / 5 + 32}


def test_map_drops_and_counts_records_an_expression_fails_on() -> None:
    p = make_pipeline([{"id": "m", "map": {"y": "x + 1"}}])
    out = records_of(p.process_many([{"x": 1}, {"x": None}], now=0))
    assert out == [{"x": 1, "y": 2}]
    assert p.counters()["m"]["errors"] == 1


def test_an_output_before_a_map_sees_the_record_as_it_was_there() -> None:
    p = make_pipeline(
        [{"id": "raw", "filter": "true"}, {"id": "m", "map": {"y": "x + 1"}}],
        [{"from": "raw", "uplink": {"stream": "raw"}}, {"uplink": {"stream": "mapped"}}],
    )
    before, after = records_of(p.process({"x": 1}, now=0))
    assert before == {"x": 1}
    assert after == {"x": 1, "y": 2}


def test_dedupe_drops_repeats_within_the_window_and_passes_them_after() -> None:
    p = make_pipeline([{"id": "once", "dedupe": {"key": ["id"], "window": "60s"}}])
    assert len(p.process_many([{"id": 1}, {"id": 1}, {"id": 2}], now=0)) == 2
    assert p.process({"id": 1}, now=59.9) == []
    assert len(p.process({"id": 1}, now=60.0)) == 1
    assert p.process({"id": 1}, now=100.0) == []  # the window restarted at 60
    assert p.counters()["once"]["dropped"] == 3


def test_dedupe_forgets_expired_keys_on_tick_and_stays_bounded() -> None:
    p = make_pipeline(
        [{"id": "once", "dedupe": {"key": ["a", "b"], "window": "10s", "maxKeys": 2}}]
    )
    p.process_many([{"a": 1, "b": 1}, {"a": 1, "b": 2}], now=0)
    # Full of live keys: a new key passes, unremembered, so its repeat passes too.
    assert len(p.process_many([{"a": 9, "b": 9}, {"a": 9, "b": 9}], now=1)) == 2
    p.tick(now=10)
    assert len(p.process_many([{"a": 9, "b": 9}, {"a": 9, "b": 9}], now=11)) == 1


def test_dedupe_counts_unhashable_keys_as_errors() -> None:
    p = make_pipeline([{"id": "once", "dedupe": {"key": ["id"], "window": "10s"}}])
    assert p.process({"id": [1, 2]}, now=0) == []
    assert p.counters()["once"]["errors"] == 1


def test_sample_every_n_keeps_the_first_of_each_group_across_batches() -> None:
    p = make_pipeline([{"id": "s", "sample": {"every": 3}}])
    kept = []
    for batch in ([0, 1], [2, 3, 4, 5, 6], [7, 8, 9]):
        kept += [r["i"] for r in records_of(p.process_many([{"i": i} for i in batch], now=0))]
    assert kept == [0, 3, 6, 9]
    assert p.counters()["s"]["dropped"] == 6


def test_sample_per_second_is_a_token_bucket_on_the_injected_clock() -> None:
    p = make_pipeline([{"id": "s", "sample": {"per_s": 2, "burst": 3}}])
    assert len(p.process_many([{}] * 5, now=100.0)) == 3  # the burst
    assert len(p.process_many([{}] * 5, now=100.4)) == 0  # 0.8 tokens refilled
    assert len(p.process_many([{}] * 5, now=101.0)) == 2  # 2.0 tokens
    assert len(p.process_many([{}] * 5, now=50.0)) == 0  # a clock stepping back refills nothing
    assert p.counters()["s"]["rate_limited"] == 15


def test_counters_follow_a_chain_of_steps() -> None:
    p = make_pipeline(
        [
            {"id": "valid", "filter": "value > 0"},
            {"id": "once", "dedupe": {"key": ["id"], "window": "10s"}},
            {"id": "every-2nd", "sample": {"every": 2}},
        ]
    )
    events = [{"id": i % 4, "value": v} for i, v in enumerate([1, -1, 2, 3, 4, 5, 6, 7])]
    p.process_many(events, now=0)
    counts = p.counters()
    assert (counts["valid"]["in"], counts["valid"]["out"]) == (8, 7)
    assert (counts["once"]["in"], counts["once"]["out"], counts["once"]["dropped"]) == (7, 4, 3)
    assert (counts["every-2nd"]["in"], counts["every-2nd"]["out"]) == (4, 2)
    assert counts["outputs[0]"]["out"] == 2


def test_records_that_are_not_json_objects_are_counted_and_dropped() -> None:
    p = make_pipeline([{"id": "hot", "filter": "value > 1"}])
    hostile: list[Any] = [[1, 2], "hi", None, 3, {"value": 2}]
    assert records_of(p.process_many(hostile, now=0)) == [{"value": 2}]
    assert p.counters()["hot"]["errors"] == 4
    assert p.counters()["hot"]["in"] == 5


def test_without_steps_bad_records_count_on_the_first_output() -> None:
    p = make_pipeline([], [{"uplink": {"stream": "raw"}}])
    assert p.process("not a record", now=0) == []  # type: ignore[arg-type]
    assert p.counters()["outputs[0]"]["errors"] == 1
