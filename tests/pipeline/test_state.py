"""State hand-over: replace_with on a new desired state, export/import checkpoints."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from fogline.pipeline import PipelineStateError, build_pipeline, validate_pipeline

from ._support import make_spec, records_of

WINDOW: dict[str, Any] = {
    "id": "per-10s",
    "window": {
        "type": "tumbling",
        "size": "10s",
        "key": ["device"],
        "aggregate": {"n": "count()", "avg": "mean(value)"},
    },
}
ZSCORE = {"id": "z", "detect": {"type": "zscore", "field": "value", "key": ["device"], "warmup": 2}}
DEDUPE = {"id": "once", "dedupe": {"key": ["seq"], "window": "60s"}}
SAMPLE = {"id": "half", "sample": {"every": 2}}


def spec(*steps: dict[str, Any], **top: Any) -> Any:
    return validate_pipeline(make_spec(list(steps), timestamp="ts", **top))


def events(start: int, stop: int) -> list[dict[str, Any]]:
    return [
        {"ts": float(t), "device": "a", "value": float(t), "seq": t} for t in range(start, stop)
    ]


def test_replace_keeps_the_open_windows_of_unchanged_steps() -> None:
    old = build_pipeline(spec({"id": "valid", "filter": "value >= 0"}, WINDOW))
    old.process_many(events(0, 5), now=0)
    new = old.replace_with(spec({"id": "valid", "filter": "value >= 1"}, WINDOW))  # filter changed
    new.process_many(events(5, 8), now=0)
    (summary,) = records_of(new.flush(0))
    assert (summary["n"], summary["avg"]) == (8, 3.5)
    assert new.counters()["per-10s"]["in"] == 8  # counters continue too


def test_replace_starts_a_changed_window_fresh() -> None:
    old = build_pipeline(spec(WINDOW))
    old.process_many(events(0, 5), now=0)
    changed = copy.deepcopy(WINDOW)
    changed["window"]["aggregate"]["top"] = "max(value)"
    new = old.replace_with(spec(changed))
    new.process_many(events(5, 8), now=0)
    (summary,) = records_of(new.flush(0))
    assert (summary["n"], summary["top"]) == (3, 7.0)


def test_replace_starts_fresh_when_the_timestamp_field_changes() -> None:
    old = build_pipeline(spec(WINDOW))
    old.process_many(events(0, 5), now=0)
    new = old.replace_with(validate_pipeline(make_spec([WINDOW], timestamp="seq")))
    assert new.flush(0) == []


def test_replace_keeps_detector_and_dedupe_state() -> None:
    old = build_pipeline(spec(DEDUPE, ZSCORE))
    old.process_many(events(0, 10), now=0)
    new = old.replace_with(spec(DEDUPE, ZSCORE, outputs=[{"uplink": {"stream": "other"}}]))
    assert new.process({"ts": 0.0, "device": "a", "value": 1.0, "seq": 3}, now=1) == []  # a repeat
    (out,) = records_of(new.process({"ts": 0.0, "device": "a", "value": 500.0, "seq": 99}, now=1))
    assert out["anomaly"] is True  # warmed up before the replace


def test_replace_keeps_the_tokens_of_an_unchanged_rate_limit() -> None:
    outputs = [{"uplink": {"stream": "s"}, "rateLimit": {"per_s": 1, "burst": 1}}]
    old = build_pipeline(spec(outputs=outputs))
    assert len(old.process({"x": 1}, now=0)) == 1
    new = old.replace_with(spec(outputs=outputs))
    assert new.process({"x": 1}, now=0) == []  # no fresh burst for a redeploy


def test_export_import_round_trip_continues_exactly() -> None:
    steps = (DEDUPE, SAMPLE, ZSCORE, WINDOW)
    reference = build_pipeline(spec(*steps))
    expected = records_of(reference.process_many(events(0, 25), now=0) + reference.flush(0))

    first = build_pipeline(spec(*steps))
    got = records_of(first.process_many(events(0, 13), now=0))
    checkpoint = json.loads(json.dumps(first.export_state()))
    second = build_pipeline(spec(*steps))
    assert sorted(second.import_state(checkpoint)) == ["half", "once", "per-10s", "z"]
    got += records_of(second.process_many(events(13, 25), now=0) + second.flush(0))
    assert got == expected


def test_import_ignores_steps_whose_definition_changed() -> None:
    first = build_pipeline(spec(WINDOW))
    first.process_many(events(0, 5), now=0)
    checkpoint = first.export_state()
    changed = copy.deepcopy(WINDOW)
    changed["window"]["size"] = "20s"
    second = build_pipeline(spec(changed))
    assert second.import_state(checkpoint) == []
    assert second.flush(0) == []


def test_windows_with_percentiles_and_river_models_are_not_checkpointed() -> None:
    pct = copy.deepcopy(WINDOW)
    pct["window"]["aggregate"]["p99"] = "p99(value)"
    p = build_pipeline(spec(pct))
    p.process_many(events(0, 5), now=0)
    state = p.export_state()
    assert state["steps"] == {}
    assert state["not_checkpointable"] == ["per-10s"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.update(version=99),
        lambda s: s.update(steps=[]),
        lambda s: s["steps"]["per-10s"].update(state={"open": "nope"}),
        lambda s: s["steps"]["per-10s"]["state"]["open"][0][1][0].__setitem__(1, ["x"]),
        lambda s: s["steps"]["per-10s"]["state"].update(max_t="later"),
        lambda s: s["steps"]["z"]["state"]["keys"][0].__setitem__(1, [0, 1.0, 1.0]),
        lambda s: s["steps"]["once"]["state"]["seen"].append([[1, 2], 0]),
        lambda s: s["steps"]["half"].update(state={"seen": -1}),
    ],
)
def test_a_damaged_checkpoint_is_refused_and_changes_nothing(damage: Any) -> None:
    steps = (DEDUPE, SAMPLE, ZSCORE, WINDOW)
    first = build_pipeline(spec(*steps))
    first.process_many(events(0, 5), now=0)
    checkpoint = json.loads(json.dumps(first.export_state()))
    damage(checkpoint)
    second = build_pipeline(spec(*steps))
    second.process_many(events(100, 101), now=0)
    with pytest.raises(PipelineStateError):
        second.import_state(checkpoint)
    assert [r["n"] for r in records_of(second.flush(0)) if "n" in r] == [1]  # its own state only
