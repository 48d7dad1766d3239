"""Outputs: taps, `when`, rate limits, rendered actions, what an Emission tells the agent."""

from __future__ import annotations

from typing import Any

from ._support import make_pipeline

DETECT = {"id": "spikes", "detect": {"type": "threshold", "field": "value", "max": 100}}


def mqtt_output(**action: Any) -> dict[str, Any]:
    return {"from": "spikes", "when": "anomaly", "action": {"mqtt": action}}


def test_when_selects_the_records_an_output_emits() -> None:
    p = make_pipeline(
        [DETECT],
        [{"when": "anomaly", "uplink": {"stream": "anomalies", "priority": 9, "ttl": "7d"}}],
    )
    emissions = p.process_many([{"value": 5}, {"value": 500}], now=0)
    (emission,) = emissions
    assert emission.kind == "uplink"
    assert emission.record["value"] == 500
    assert emission.payload is emission.record
    uplink = emission.output.uplink
    assert uplink is not None
    assert (uplink.stream, uplink.priority, uplink.ttl) == ("anomalies", 9, 7 * 86400)
    assert p.counters()["outputs[0]"] == {
        "in": 2,
        "out": 1,
        "dropped": 1,
        "errors": 0,
        "late": 0,
        "rate_limited": 0,
    }


def test_mqtt_action_renders_topic_and_typed_payload() -> None:
    output = mqtt_output(
        topic="actuators/{device}/cmd",
        payload={
            "cmd": "stop",
            "reading": "{value}",
            "note": "{device} at {value}",
            "tags": ["{device}"],
        },
        qos=1,
    )
    p = make_pipeline([DETECT], [output])
    (emission,) = p.process({"device": "pump-7", "value": 120.5}, now=0)
    assert emission.kind == "mqtt"
    assert emission.topic == "actuators/pump-7/cmd"
    assert emission.payload == {
        "cmd": "stop",
        "reading": 120.5,
        "note": "pump-7 at 120.5",
        "tags": ["pump-7"],
    }
    mqtt = emission.output.action.mqtt if emission.output.action else None
    assert mqtt is not None and mqtt.qos == 1


def test_a_device_cannot_steer_a_command_to_another_topic() -> None:
    p = make_pipeline([DETECT], [mqtt_output(topic="actuators/{device}/cmd")])
    hostile: list[dict[str, Any]] = [
        {"device": "../plant/valve", "value": 500},
        {"device": "#", "value": 500},
        {"value": 500},
    ]
    assert p.process_many(hostile, now=0) == []
    assert p.counters()["outputs[0]"]["errors"] == 3


def test_mqtt_payload_defaults_to_the_record() -> None:
    p = make_pipeline([DETECT], [mqtt_output(topic="alerts")])
    (emission,) = p.process({"value": 500}, now=0)
    assert emission.payload == {"value": 500, "anomaly": True, "score": 400.0}


def test_webhook_action_emits_its_fixed_url() -> None:
    hook = {"url": "http://127.0.0.1:9000/hook", "payload": {"text": "spike {value}"}}
    p = make_pipeline([DETECT], [{"when": "anomaly", "action": {"webhook": hook}}])
    (emission,) = p.process({"value": 500}, now=0)
    assert emission.kind == "webhook"
    assert emission.payload == {"text": "spike 500"}
    webhook = emission.output.action.webhook if emission.output.action else None
    assert webhook is not None and (webhook.url, webhook.method) == (
        "http://127.0.0.1:9000/hook",
        "POST",
    )


def test_rate_limit_is_a_token_bucket_on_the_injected_clock() -> None:
    output = mqtt_output(topic="alerts") | {"rateLimit": {"per_s": 1, "burst": 2}}
    p = make_pipeline([DETECT], [output])
    spikes = [{"value": 500}] * 5
    assert len(p.process_many(spikes, now=10.0)) == 2
    assert len(p.process_many(spikes, now=10.5)) == 0
    assert len(p.process_many(spikes, now=11.0)) == 1
    assert p.counters()["outputs[0]"]["rate_limited"] == 12


def test_a_record_that_fails_to_render_spends_no_token() -> None:
    output = mqtt_output(topic="a/{device}") | {"rateLimit": {"per_s": 1, "burst": 1}}
    p = make_pipeline([DETECT], [output])
    assert p.process({"value": 500}, now=0) == []  # no device: an error, not a send
    assert len(p.process({"value": 500, "device": "d1"}, now=0)) == 1


def test_outputs_tap_any_step_and_each_counts_separately() -> None:
    p = make_pipeline(
        [{"id": "valid", "filter": "value > 0"}, DETECT],
        [
            {"id": "all-valid", "from": "valid", "uplink": {"stream": "raw", "priority": 1}},
            {"id": "alerts", "when": "anomaly", "uplink": {"stream": "alerts"}},
        ],
    )
    emissions = p.process_many([{"value": -1}, {"value": 1}, {"value": 1000}], now=0)
    assert [(e.output_index, e.record["value"]) for e in emissions] == [
        (0, 1),
        (0, 1000),
        (1, 1000),
    ]
    counts = p.counters()
    assert (counts["all-valid"]["out"], counts["alerts"]["out"], counts["alerts"]["dropped"]) == (
        2,
        1,
        1,
    )


def test_a_pipeline_without_steps_taps_the_source() -> None:
    p = make_pipeline([], [{"when": "value > 1", "uplink": {"stream": "raw"}}])
    assert [e.record for e in p.process_many([{"value": 1}, {"value": 2}], now=0)] == [{"value": 2}]


def test_source_pattern_is_compiled_for_the_agent() -> None:
    p = make_pipeline([DETECT])
    assert p.source_pattern is not None
    assert p.source_pattern.mqtt_filter == "sensors/+/+"
    assert p.source_pattern.match("sensors/pump-7/temp") == {"device": "pump-7", "metric": "temp"}
