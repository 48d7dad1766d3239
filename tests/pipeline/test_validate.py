"""validate_pipeline: every mistake is caught before a node sees it, with its exact path."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from fogline.pipeline import PipelineSpec, PipelineSpecError, validate_pipeline

from ._support import make_spec

EXAMPLE: dict[str, Any] = {
    "name": "line-3-temps",
    "source": {"mqtt": "sensors/{device}/{metric}", "qos": 1},
    "timestamp": "ts",
    "steps": [
        {"id": "only-temp", "filter": "metric == 'temp' and value > -50"},
        {"id": "to-f", "map": {"fahrenheit": "value * 9 / 5 + 32"}},
        {
            "id": "spikes",
            "detect": {
                "type": "zscore",
                "field": "value",
                "key": ["device"],
                "threshold": 4.0,
                "alpha": 0.1,
                "warmup": 30,
            },
        },
        {
            "id": "per-10s",
            "window": {
                "type": "tumbling",
                "size": "10s",
                "key": ["device"],
                "time": "event",
                "lateness": "2s",
                "aggregate": {
                    "mean": "mean(value)",
                    "max": "max(value)",
                    "n": "count()",
                    "p99": "p99(value)",
                },
            },
        },
    ],
    "outputs": [
        {
            "from": "spikes",
            "when": "anomaly",
            "action": {
                "mqtt": {"topic": "actuators/{device}/cmd", "payload": {"cmd": "stop"}, "qos": 1}
            },
            "rateLimit": {"per_s": 10, "burst": 10},
        },
        {
            "from": "spikes",
            "when": "anomaly",
            "uplink": {"stream": "anomalies", "priority": 9, "ttl": "7d"},
        },
        {"from": "per-10s", "uplink": {"stream": "temps-10s", "priority": 5, "ttl": "24h"}},
        {
            "from": "spikes",
            "action": {"webhook": {"url": "http://127.0.0.1:9000/hook"}},
            "when": "anomaly",
            "rateLimit": {"per_s": 1},
        },
    ],
}


def problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(PipelineSpecError) as caught:
        validate_pipeline(raw)
    return caught.value.problems


def one_step(step: dict[str, Any], **top: Any) -> list[tuple[str, str]]:
    return problems(make_spec([step], **top))


def test_the_documented_example_is_valid_and_round_trips_through_json() -> None:
    spec = validate_pipeline(EXAMPLE)
    assert spec.steps[3].window.size == 10.0  # type: ignore[union-attr]
    assert spec.outputs[0].from_ == "spikes"
    dumped = json.loads(json.dumps(spec.model_dump(mode="json", by_alias=True, exclude_none=True)))
    assert validate_pipeline(dumped) == spec


@pytest.mark.parametrize(
    ("step", "path", "reason"),
    [
        ({"id": "s", "aggregate": "x"}, "steps[0].aggregate", "unknown step kind 'aggregate'"),
        ({"id": "s"}, "steps[0]", "a step needs exactly one of: filter, map"),
        ({"id": "s", "filter": "true", "map": {"a": "1"}}, "steps[0]", "found filter and map"),
        ({"filter": "true"}, "steps[0].id", "required"),
        ({"id": "-bad-", "filter": "true"}, "steps[0].id", "must be 1-63 letters"),
        ({"id": "s", "filter": "value >"}, "steps[0].filter", "column 8:"),
        ({"id": "s", "filter": "true", "extra": 1}, "steps[0].extra", "unknown field 'extra'"),
        ({"id": "s", "map": {"a-b": "1"}}, 'steps[0].map["a-b"]', "key: must be a field name"),
        ({"id": "s", "map": {"a": "__import__('os')"}}, "steps[0].map.a", "column"),
        (
            {
                "id": "w",
                "window": {"type": "tumbling", "size": "ten", "aggregate": {"n": "count()"}},
            },
            "steps[0].window.size",
            "must be a duration with a unit like 500ms",
        ),
        (
            {
                "id": "w",
                "window": {"type": "tumbling", "size": "0s", "aggregate": {"n": "count()"}},
            },
            "steps[0].window.size",
            "greater than 0",
        ),
        (
            {"id": "w", "window": {"type": "sliding", "size": "1s", "aggregate": {"n": "count()"}}},
            "steps[0].window.type",
            "'tumbling' or 'hopping'",
        ),
        (
            {
                "id": "w",
                "window": {"type": "hopping", "size": "10s", "aggregate": {"n": "count()"}},
            },
            "steps[0].window",
            "a hopping window needs hop",
        ),
        (
            {
                "id": "w",
                "window": {
                    "type": "hopping",
                    "size": "10s",
                    "hop": "20s",
                    "aggregate": {"n": "count()"},
                },
            },
            "steps[0].window",
            "must not exceed size",
        ),
        (
            {
                "id": "w",
                "window": {
                    "type": "hopping",
                    "size": "1000s",
                    "hop": "1s",
                    "aggregate": {"n": "count()"},
                },
            },
            "steps[0].window",
            "at most 100 overlapping windows",
        ),
        (
            {
                "id": "w",
                "window": {
                    "type": "tumbling",
                    "size": "1s",
                    "time": "processing",
                    "lateness": "1s",
                    "aggregate": {"n": "count()"},
                },
            },
            "steps[0].window",
            "lateness applies to event-time windows only",
        ),
        (
            {
                "id": "w",
                "window": {"type": "tumbling", "size": "1s", "aggregate": {"m": "median(v)"}},
            },
            "steps[0].window.aggregate.m",
            "unknown aggregate function 'median'",
        ),
        (
            {
                "id": "w",
                "window": {"type": "tumbling", "size": "1s", "aggregate": {"m": "max(v +)"}},
            },
            "steps[0].window.aggregate.m",
            "column 8: incomplete expression",
        ),
        (
            {
                "id": "w",
                "window": {
                    "type": "tumbling",
                    "size": "1s",
                    "key": ["d"],
                    "aggregate": {"d": "count()"},
                },
            },
            "steps[0].window.aggregate.d",
            "already a field of the window's summary",
        ),
        (
            {
                "id": "w",
                "window": {
                    "type": "tumbling",
                    "size": "1s",
                    "key": ["d", "d"],
                    "aggregate": {"n": "count()"},
                },
            },
            "steps[0].window.key",
            "'d' is listed twice",
        ),
        (
            {
                "id": "w",
                "window": {
                    "type": "tumbling",
                    "size": "1s",
                    "idleTimeout": "5s",
                    "aggregate": {"n": "count()"},
                },
            },
            "steps[0].window.idleTimeout",
            "applies only when the pipeline has a timestamp field",
        ),
        (
            {"id": "d", "detect": {"type": "iforest", "field": "v"}},
            "steps[0].detect.type",
            "must be one of threshold, zscore, halfspacetrees (got 'iforest')",
        ),
        ("filter", "steps[0]", "must be a mapping (got 'filter')"),
        (
            {"id": "d", "detect": {"type": "zscore", "field": "v", "alpha": 1.5}},
            "steps[0].detect.alpha",
            "less than 1",
        ),
        (
            {"id": "d", "detect": {"type": "threshold", "field": "v"}},
            "steps[0].detect",
            "needs min, max or both",
        ),
        (
            {
                "id": "d",
                "detect": {"type": "halfspacetrees", "features": ["a"], "limits": {"b": [0, 1]}},
            },
            "steps[0].detect",
            "not one of the features",
        ),
        (
            {"id": "i", "infer": {"model": {"release": "m@1.0.0"}, "inputs": [], "output": "y"}},
            "steps[0].infer.inputs",
            "at least 1 item",
        ),
        (
            {"id": "x", "dedupe": {"key": ["id"], "window": "2d"}},
            "steps[0].dedupe.window",
            "less than or equal to 86400",
        ),
        (
            {"id": "x", "sample": {"every": 2, "per_s": 3}},
            "steps[0].sample",
            "exactly one of every or per_s",
        ),
    ],
)
def test_a_bad_step_is_reported_at_its_path(step: Any, path: str, reason: str) -> None:
    found = one_step(step)
    assert any(p == path and reason in r for p, r in found), found


def test_duplicate_step_ids_are_refused() -> None:
    found = problems(make_spec([{"id": "a", "filter": "true"}, {"id": "a", "filter": "false"}]))
    assert found == [("steps[1].id", "duplicate step id 'a' (also steps[0])")]


def test_an_output_from_an_unknown_step_is_refused() -> None:
    found = problems(
        make_spec([{"id": "a", "filter": "true"}], [{"from": "b", "uplink": {"stream": "s"}}])
    )
    assert found == [("outputs[0].from", "unknown step 'b'; steps are: a")]


@pytest.mark.parametrize(
    ("output", "path", "reason"),
    [
        (
            {"uplink": {"stream": "s"}, "action": {"webhook": {"url": "http://x"}}},
            "outputs[0]",
            "exactly one of uplink or action",
        ),
        (
            {"uplink": {"stream": "s", "priority": 10}},
            "outputs[0].uplink.priority",
            "less than or equal to 9",
        ),
        (
            {"uplink": {"stream": "s", "ttl": "forever"}},
            "outputs[0].uplink.ttl",
            "must be a duration",
        ),
        (
            {"action": {"webhook": {"url": "file:///etc/passwd"}}},
            "outputs[0].action.webhook.url",
            "http:// or https:// URL",
        ),
        ({"action": {"mqtt": {"topic": "a/#"}}}, "outputs[0].action.mqtt.topic", "column 3:"),
        (
            {"action": {"mqtt": {"topic": "a", "payload": {"x": "{bad"}}}},
            "outputs[0].action.mqtt.payload",
            "column 1:",
        ),
        ({"when": "anomaly and", "uplink": {"stream": "s"}}, "outputs[0].when", "column"),
        (
            {"uplink": {"stream": "s"}, "rateLimit": {"per_s": 0}},
            "outputs[0].rateLimit.per_s",
            "greater than 0",
        ),
        ({"id": "w", "uplink": {"stream": "s"}}, "outputs[0].id", "'w' is already a step id"),
    ],
)
def test_a_bad_output_is_reported_at_its_path(
    output: dict[str, Any], path: str, reason: str
) -> None:
    window = {
        "id": "w",
        "window": {"type": "tumbling", "size": "1s", "aggregate": {"n": "count()"}},
    }
    found = problems(make_spec([window], [output]))
    assert any(p == path and reason in r for p, r in found), found


def test_fields_a_record_cannot_have_after_a_window_are_refused() -> None:
    window = {
        "id": "w",
        "window": {
            "type": "tumbling",
            "size": "1s",
            "key": ["device"],
            "aggregate": {"avg": "mean(value)"},
        },
    }
    found = problems(
        make_spec(
            [
                window,
                {"id": "f", "filter": "value > 1"},
                {"id": "z", "detect": {"type": "zscore", "field": "value", "key": ["site"]}},
            ],
            [{"from": "w", "action": {"mqtt": {"topic": "cmd/{site}"}}}],
        )
    )
    assert [p for p, _ in found] == [
        "steps[1].filter",
        "steps[2].detect.field",
        "steps[2].detect.key",
        "outputs[0].action.mqtt.topic",
    ]
    assert "unknown field 'value'" in found[0][1]
    assert "records after step 'f' have no field 'site' (they have: avg, device" in found[2][1]


def test_an_event_time_window_after_a_window_needs_the_timestamp_field() -> None:
    window = {
        "id": "w",
        "window": {"type": "tumbling", "size": "1s", "aggregate": {"n": "count()"}},
    }
    again: dict[str, Any] = {
        "id": "w2",
        "window": {"type": "tumbling", "size": "60s", "aggregate": {"n": "sum(n)"}},
    }
    found = problems(make_spec([window, again], timestamp="ts"))
    assert [p for p, _ in found] == ["steps[1].window.time"]
    processing = again | {"window": again["window"] | {"time": "processing"}}
    validate_pipeline(make_spec([window, processing], timestamp="ts"))


@pytest.mark.parametrize(
    ("top", "path", "reason"),
    [
        ({"name": "Line 3"}, "name", "lowercase letters"),
        ({"source": {"mqtt": "a/{b"}}, "source.mqtt", "column"),
        ({"source": {"http": {}, "qos": 1}}, "source", "qos applies to an mqtt source only"),
        ({"source": {}}, "source", "exactly one of mqtt or http"),
        ({"outputs": []}, "outputs", "at least 1 item"),
        ({"timestamp": "a.b"}, "timestamp", "must be a field name"),
        ({"color": "blue"}, "color", "unknown field 'color'"),
        ({"steps": "filter"}, "steps", "valid list"),
    ],
)
def test_a_bad_pipeline_field_is_reported(top: dict[str, Any], path: str, reason: str) -> None:
    raw = make_spec([]) | top
    found = problems(raw)
    assert any(p == path and reason in r for p, r in found), found


def test_a_non_mapping_pipeline_is_refused() -> None:
    with pytest.raises(PipelineSpecError, match="a pipeline must be a mapping"):
        validate_pipeline(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_the_error_message_lists_every_problem_with_the_pipeline_name() -> None:
    with pytest.raises(PipelineSpecError) as caught:
        validate_pipeline(make_spec([{"id": "a", "filter": "x >"}, {"id": "a", "filter": "true"}]))
    message = str(caught.value)
    assert message.startswith("pipeline 'test': ")
    assert "steps[1].id: duplicate step id 'a'" in message
    assert "steps[0].filter: column 4:" in message


def test_a_spec_embedded_in_another_model_gets_the_same_checks() -> None:
    class Deployment(BaseModel):
        pipelines: list[PipelineSpec]

    with pytest.raises(ValidationError, match=r"outputs\[0\]\.from: unknown step 'b'"):
        Deployment.model_validate(
            {
                "pipelines": [
                    make_spec(
                        [{"id": "a", "filter": "true"}], [{"from": "b", "uplink": {"stream": "s"}}]
                    )
                ]
            }
        )


def test_hostile_sizes_are_bounded() -> None:
    huge_expression = "1 + " * 3000 + "1"
    found = one_step({"id": "s", "filter": huge_expression})
    assert found and found[0][0] == "steps[0].filter"
    steps = [{"id": f"s{i}", "filter": "true"} for i in range(65)]
    assert problems(make_spec(steps))[0][0] == "steps"
    deep: Any = "x"
    for _ in range(20):
        deep = {"k": deep}
    found = problems(make_spec([], [{"action": {"mqtt": {"topic": "t", "payload": deep}}}]))
    assert found[0][0] == "outputs[0].action.mqtt.payload"
