"""Windows: boundaries, overlap, lateness, processing time, keys, bad input."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ._support import make_pipeline, records_of, window_pipeline


def summaries(emissions: list[Any]) -> list[tuple[float, float, int]]:
    return [(r["window_start"], r["window_end"], r["n"]) for r in records_of(emissions)]


def test_event_on_the_boundary_goes_to_the_next_window() -> None:
    p = window_pipeline()
    assert p.process_many([{"ts": 0.0}, {"ts": 9.999}], now=0) == []
    closed = p.process({"ts": 10.0}, now=0)  # watermark reaches 10: [0, 10) closes
    assert summaries(closed) == [(0.0, 10.0, 2)]
    assert summaries(p.flush(now=0)) == [(10.0, 20.0, 1)]


def test_fractional_sizes_keep_every_event_inside_its_reported_window() -> None:
    p = window_pipeline(size="100ms", lateness="10s")
    times = [round(i * 0.1, 10) for i in range(30)] + [0.3, 0.7, 1.1]
    p.process_many([{"ts": t} for t in times], now=0)
    windows = records_of(p.flush(now=0))
    assert sum(w["n"] for w in windows) == len(times)
    for w in windows:
        inside = [t for t in times if w["window_start"] <= t < w["window_end"]]
        assert len(inside) == w["n"]


def test_window_closes_as_soon_as_the_watermark_passes_its_end() -> None:
    p = window_pipeline()
    assert p.process_many([{"ts": 1}, {"ts": 5}, {"ts": 9.5}], now=0) == []
    assert summaries(p.process({"ts": 12}, now=0)) == [(0.0, 10.0, 3)]
    assert p.counters()["w"]["out"] == 1


def test_lateness_accepts_events_within_it_and_counts_and_drops_those_beyond() -> None:
    p = window_pipeline(lateness="2s")
    p.process_many([{"ts": 1}, {"ts": 11}], now=0)  # watermark 9: [0, 10) still open
    assert p.process({"ts": 9.5}, now=0) == []  # late but within lateness: accepted
    closed = p.process({"ts": 12}, now=0)  # watermark 10: [0, 10) closes
    assert summaries(closed) == [(0.0, 10.0, 2)]
    assert p.process({"ts": 9.9}, now=0) == []  # beyond lateness
    counters = p.counters()["w"]
    assert counters["late"] == 1
    assert counters["in"] == 5
    assert summaries(p.flush(now=0)) == [(10.0, 20.0, 2)]


def test_hopping_windows_count_an_event_in_every_window_that_covers_it() -> None:
    p = window_pipeline(type="hopping", size="10s", hop="5s", lateness="100s")
    p.process_many([{"ts": float(t)} for t in range(20)], now=0)
    assert summaries(p.flush(now=0)) == [
        (-5.0, 5.0, 5),
        (0.0, 10.0, 10),
        (5.0, 15.0, 10),
        (10.0, 20.0, 10),
        (15.0, 25.0, 5),
    ]


def reference_windows(times: list[float], hops: int, hop: float) -> dict[tuple[float, float], int]:
    """Window k is [k*hop, (k+hops)*hop): brute force over every candidate k."""
    counts: dict[tuple[float, float], int] = {}
    for t in times:
        for k in range(math.floor(t / hop) - hops - 1, math.floor(t / hop) + 2):
            start, end = k * hop, (k + hops) * hop
            if start <= t < end:
                counts[(start, end)] = counts.get((start, end), 0) + 1
    return counts


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(min_value=0, max_value=400), max_size=60),
    size=st.sampled_from([1, 2, 5, 10]),
    hops=st.sampled_from([1, 2, 4, 5, 8]),  # hops whose hop is whole milliseconds
    batch=st.integers(min_value=1, max_value=7),
)
def test_every_event_lands_in_exactly_the_windows_that_cover_it(
    times: list[int], size: int, hops: int, batch: int
) -> None:
    hop = size / hops
    p = window_pipeline(
        type="hopping", size=f"{size}s", hop=f"{size * 1000 // hops}ms", lateness="1000s"
    )
    events = [{"ts": t / 4} for t in times]  # unordered, within lateness of each other
    out = []
    for i in range(0, len(events), batch):
        out += p.process_many(events[i : i + batch], now=0)
    out += p.flush(now=0)
    got = {(s, e): n for s, e, n in summaries(out)}
    assert got == reference_windows([e["ts"] for e in events], hops, hop)


def test_processing_time_windows_close_on_tick() -> None:
    p = window_pipeline(timestamp=None, size="1s", time="processing")
    p.process_many([{"v": 1}, {"v": 2}], now=100.2)
    p.process({"v": 3}, now=100.7)
    assert p.tick(100.99) == []
    assert summaries(p.tick(101.0)) == [(100.0, 101.0, 3)]
    assert p.tick(105.0) == []


def test_processing_time_never_goes_back_with_the_clock() -> None:
    p = window_pipeline(timestamp=None, size="1s", time="processing")
    p.process({"v": 1}, now=100.5)
    p.process({"v": 2}, now=99.0)  # clock stepped back: still counted, in the current window
    assert summaries(p.tick(101.0)) == [(100.0, 101.0, 2)]
    assert p.counters()["w"]["late"] == 0


def test_without_a_timestamp_field_event_time_is_arrival_and_tick_closes() -> None:
    p = window_pipeline(timestamp=None, size="1s", lateness="500ms")
    p.process({"v": 1}, now=10.2)
    assert p.tick(11.4) == []  # watermark 10.9
    assert summaries(p.tick(11.5)) == [(10.0, 11.0, 1)]


def test_idle_timeout_closes_the_last_window_when_events_stop() -> None:
    p = window_pipeline(size="10s", idleTimeout="30s")
    p.process({"ts": 1_000.0}, now=5_000.0)
    assert p.tick(5_029.0) == []
    assert summaries(p.tick(5_030.0)) == [(1_000.0, 1_010.0, 1)]


def test_without_idle_timeout_event_time_windows_wait_for_events() -> None:
    p = window_pipeline(size="10s")
    p.process({"ts": 1_000.0}, now=5_000.0)
    assert p.tick(9_000.0) == []
    assert summaries(p.flush(9_000.0)) == [(1_000.0, 1_010.0, 1)]


def test_windows_are_kept_per_key() -> None:
    p = window_pipeline(key=["device", "metric"], aggregate={"n": "count()", "total": "sum(v)"})
    p.process_many(
        [
            {"ts": 1, "device": "a", "metric": "t", "v": 1},
            {"ts": 2, "device": "b", "metric": "t", "v": 10},
            {"ts": 3, "device": "a", "metric": "t", "v": 2},
            {"ts": 4, "device": "a", "metric": "h", "v": 5},
            {"ts": 5, "metric": "t", "v": 7},  # no device: its own key, device null
        ],
        now=0,
    )
    got = sorted(
        ((r["device"] or "", r["metric"], r["n"], r["total"]) for r in records_of(p.flush(0))),
    )
    assert got == [("", "t", 1, 7), ("a", "h", 1, 5), ("a", "t", 2, 3), ("b", "t", 1, 10)]


def test_events_with_unusable_times_or_keys_are_counted_as_errors() -> None:
    p = window_pipeline(key=["device"])
    bad: list[dict[str, Any]] = [
        {"device": "a"},  # no time
        {"ts": "soon", "device": "a"},
        {"ts": float("nan"), "device": "a"},
        {"ts": float("inf"), "device": "a"},
        {"ts": True, "device": "a"},
        {"ts": 1, "device": ["not", "hashable"]},
    ]
    assert p.process_many(bad, now=0) == []
    assert p.counters()["w"]["errors"] == len(bad)
    assert p.flush(0) == []


def test_a_non_numeric_value_is_an_error_and_counts_nothing() -> None:
    p = window_pipeline(aggregate={"n": "count()", "m": "mean(v)"})
    p.process_many(
        [{"ts": 1, "v": 2}, {"ts": 2, "v": "hot"}, {"ts": 3, "v": [1]}, {"ts": 4}], now=0
    )
    (summary,) = records_of(p.flush(0))
    assert summary["n"] == 2  # the record without v counts; v is skipped like SQL NULL
    assert summary["m"] == 2
    assert p.counters()["w"]["errors"] == 2


def test_new_keys_beyond_max_keys_are_dropped_and_counted() -> None:
    p = window_pipeline(key=["device"], maxKeys=2)
    p.process_many([{"ts": 1, "device": d} for d in "abcab"], now=0)
    assert sorted(r["device"] for r in records_of(p.flush(0))) == ["a", "b"]
    assert p.counters()["w"]["dropped"] == 1


def test_events_for_windows_closed_by_flush_are_late() -> None:
    p = window_pipeline()
    p.process({"ts": 1}, now=0)
    p.flush(0)
    p.process({"ts": 2}, now=0)
    assert p.counters()["w"]["late"] == 1


def test_window_summaries_flow_through_later_steps_on_tick() -> None:
    p = make_pipeline(
        [
            {
                "id": "w",
                "window": {
                    "type": "tumbling",
                    "size": "1s",
                    "time": "processing",
                    "aggregate": {"n": "count()"},
                },
            },
            {"id": "busy", "filter": "n >= 2"},
        ]
    )
    p.process_many([{}, {}], now=0.5)
    assert records_of(p.tick(1.0)) == [{"window_start": 0.0, "window_end": 1.0, "n": 2}]
    assert p.counters()["busy"] == {
        "in": 1,
        "out": 1,
        "dropped": 0,
        "errors": 0,
        "late": 0,
        "rate_limited": 0,
    }


def test_an_event_stamped_far_ahead_of_the_clock_cannot_close_everyone_s_windows() -> None:
    p = window_pipeline(key=["device"], maxClockSkew="1m")
    p.process({"ts": 1_000.0, "device": "good"}, now=1_000.0)
    p.process({"ts": 1_000_000.0, "device": "ms-as-seconds"}, now=1_001.0)
    p.process({"ts": 1_002.0, "device": "good"}, now=1_002.0)
    assert p.counters()["w"] == {
        "in": 3, "out": 0, "dropped": 0, "errors": 1, "late": 0, "rate_limited": 0,
    }  # fmt: skip
    assert [(r["device"], r["n"]) for r in records_of(p.flush(1_003.0))] == [("good", 2)]


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(min_value=0, max_value=200), max_size=60),
    lateness=st.integers(min_value=0, max_value=30),
)
def test_lateness_drops_exactly_the_events_whose_window_the_watermark_passed(
    times: list[int], lateness: int
) -> None:
    size = 10
    p = window_pipeline(size=f"{size}s", lateness=f"{lateness}s")
    expected: dict[tuple[float, float], int] = {}
    late = 0
    max_seen = -math.inf
    for t in times:
        start = t // size * size
        if start + size <= max_seen - lateness:  # the watermark before this event
            late += 1
        else:
            key = (float(start), float(start + size))
            expected[key] = expected.get(key, 0) + 1
        max_seen = max(max_seen, t)
    out = []
    for t in times:
        out += p.process({"ts": t}, now=0)
    out += p.flush(now=0)
    assert {(s, e): n for s, e, n in summaries(out)} == expected
    assert p.counters()["w"]["late"] == late
    starts = [s for s, _, _ in summaries(out)]
    assert starts == sorted(starts)  # windows close in time order
