"""Detectors: threshold, zscore (EWMA) and river's HalfSpaceTrees."""

from __future__ import annotations

import random
from typing import Any

from fogline.pipeline import Pipeline

from ._support import make_pipeline, records_of


def detector(**detect: Any) -> Pipeline:
    return make_pipeline([{"id": "d", "detect": detect}])


def test_threshold_flags_values_outside_the_range_with_their_distance() -> None:
    p = detector(type="threshold", field="v", min=0, max=10)
    out = records_of(p.process_many([{"v": -2}, {"v": 5}, {"v": 10}, {"v": 13.5}], now=0))
    assert [(r["anomaly"], r["score"]) for r in out] == [
        (True, 2.0),
        (False, 0.0),
        (False, 0.0),
        (True, 3.5),
    ]


def test_threshold_with_only_a_maximum() -> None:
    p = detector(type="threshold", field="v", max=1)
    out = records_of(p.process_many([{"v": -1e9}, {"v": 2}], now=0))
    assert [r["anomaly"] for r in out] == [False, True]


def normal_series(n: int, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [20.0 + rng.gauss(0, 0.5) for _ in range(n)]


def test_zscore_flags_a_spike_after_warmup() -> None:
    p = detector(type="zscore", field="v", threshold=4, alpha=0.1, warmup=30)
    values = normal_series(60)
    values[45] += 15.0
    out = records_of(p.process_many([{"v": v} for v in values], now=0))
    flagged = [i for i, r in enumerate(out) if r["anomaly"]]
    assert flagged == [45]
    assert out[45]["score"] > 4


def test_zscore_does_not_flag_during_warmup() -> None:
    p = detector(type="zscore", field="v", threshold=4, alpha=0.1, warmup=30)
    values = normal_series(40)
    values[20] += 15.0
    out = records_of(p.process_many([{"v": v} for v in values], now=0))
    assert out[20]["score"] > 4  # unusual, but still warming up
    assert not any(r["anomaly"] for r in out)


def test_zscore_keeps_state_per_key() -> None:
    p = detector(type="zscore", field="v", key=["device"], threshold=4, warmup=10)
    events = []
    for v_a, v_b in zip(normal_series(30, seed=1), normal_series(30, seed=2), strict=True):
        events += [{"device": "a", "v": v_a}, {"device": "b", "v": v_b + 1000}]
    p.process_many(events, now=0)
    # b's level is normal for b; the same value is a spike for a.
    out = records_of(
        p.process_many([{"device": "b", "v": 1020.0}, {"device": "a", "v": 1020.0}], now=0)
    )
    assert [r["anomaly"] for r in out] == [False, True]


def test_zscore_of_a_constant_series_flags_any_change_with_a_finite_score() -> None:
    p = detector(type="zscore", field="v", warmup=3)
    out = records_of(p.process_many([{"v": 5}] * 5 + [{"v": 6}], now=0))
    assert [r["anomaly"] for r in out] == [False] * 5 + [True]
    assert out[-1]["score"] == 1e12


def test_detectors_count_records_without_a_usable_number_as_errors() -> None:
    p = detector(type="zscore", field="v")
    out = p.process_many(
        [{"v": None}, {}, {"v": "7"}, {"v": float("nan")}, {"v": 10**400}, {"v": 1}], now=0
    )
    assert len(out) == 1
    assert p.counters()["d"]["errors"] == 5


def test_zscore_state_is_bounded_by_max_keys() -> None:
    p = detector(type="zscore", field="v", key=["k"], maxKeys=2)
    out = p.process_many([{"k": k, "v": 1} for k in "abc"], now=0)
    assert len(out) == 2
    assert p.counters()["d"]["dropped"] == 1


def test_halfspacetrees_flags_a_far_outlier() -> None:
    p = detector(
        type="halfspacetrees",
        features=["x", "y"],
        threshold=0.9,
        limits={"x": [0, 10], "y": [0, 10]},
        windowSize=100,
    )
    rng = random.Random(3)
    normal = [{"x": rng.gauss(5, 0.5), "y": rng.gauss(5, 0.5)} for _ in range(400)]
    out = records_of(p.process_many(normal, now=0))
    assert not any(r["anomaly"] for r in out[100:])  # none among normal points after warmup
    (far,) = records_of(p.process({"x": 9.9, "y": 0.1}, now=0))
    assert far["anomaly"] is True
    assert 0.9 < far["score"] <= 1.0


def test_halfspacetrees_counts_records_missing_a_feature() -> None:
    p = detector(type="halfspacetrees", features=["x", "y"])
    assert p.process_many([{"x": 0.5}], now=0) == []
    assert p.counters()["d"]["errors"] == 1
