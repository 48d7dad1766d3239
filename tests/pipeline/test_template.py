"""Topic templates (where actions publish) and topic patterns (what sources read)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.pipeline._template import (
    MAX_TOPIC_BYTES,
    Template,
    TopicPattern,
    compile_template,
    compile_topic_pattern,
)
from fogline.pipeline.expr import EvaluationError, ExpressionError

# -- templates -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "record", "expected"),
    [
        ("actuators/{device}/cmd", {"device": "pump-7"}, "actuators/pump-7/cmd"),
        ("plant/{site.name}/{device}", {"site": {"name": "north"}, "device": "d"}, "plant/north/d"),
        ("fixed/topic", {}, "fixed/topic"),
        ("{a}{b}", {"a": "x", "b": "y"}, "xy"),
        ("dev-{id}/set", {"id": 42}, "dev-42/set"),
        ("t/{value}", {"value": 2.5}, "t/2.5"),
        ("t/{on}", {"on": True}, "t/true"),
        ("t/{on}", {"on": False}, "t/false"),
        ("{{literal}}/{device}", {"device": "d"}, "{literal}/d"),
        ("a}}b{{c", {}, "a}b{c"),
        ("{device}/{device}", {"device": "d"}, "d/d"),
        ("é/{d}", {"d": "ü"}, "é/ü"),
        ("$share/{d}", {"d": "x"}, "$share/x"),
    ],
)
def test_template_fills_fields_from_the_record(
    text: str, record: dict[str, Any], expected: str
) -> None:
    assert compile_template(text).render(record) == expected


def test_template_knows_its_text_and_fields() -> None:
    template = compile_template("plant/{site.name}/{device}/{device}")
    assert template.text == "plant/{site.name}/{device}/{device}"
    assert template.fields == frozenset({"site", "device"})
    assert isinstance(template, Template)
    assert template == compile_template("plant/{site.name}/{device}/{device}")


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({}, "field 'device' is missing"),
        ({"device": None}, "field 'device' is missing"),
        ({"device": ["a"]}, "is a list, not a string or number"),
        ({"device": {"a": 1}}, "is a dict, not a string or number"),
        # A device-controlled value must not steer the command to another topic.
        ({"device": "a/b"}, "would change the topic's levels"),
        ({"device": "../../plant/valve"}, "would change the topic's levels"),
        ({"device": "+"}, "would change the topic's levels"),
        ({"device": "#"}, "would change the topic's levels"),
        ({"device": "x\x00y"}, "would change the topic's levels"),
        ({"device": ""}, "would change the topic's levels"),
        ({"device": "x" * MAX_TOPIC_BYTES}, f"longer than {MAX_TOPIC_BYTES} bytes"),
        ({"device": "\ud800"}, "not valid UTF-8"),
    ],
)
def test_template_refuses_a_record_that_cannot_fill_it(record: dict[str, Any], reason: str) -> None:
    with pytest.raises(EvaluationError) as caught:
        compile_template("actuators/{device}/cmd").render(record)
    assert reason in caught.value.reason
    assert caught.value.text == "actuators/{device}/cmd"


def test_missing_nested_field_names_its_path_and_column() -> None:
    template = compile_template("plant/{site.name}")
    records: list[dict[str, Any]] = [{}, {"site": {}}, {"site": "flat"}]
    for record in records:
        with pytest.raises(EvaluationError) as caught:
            template.render(record)
        assert "field 'site.name' is missing" in caught.value.reason
        assert caught.value.column == 7


def test_payload_template_has_no_topic_rules() -> None:
    template = compile_template("level {value}/{max} at {site}: 100%", topic=False)
    record = {"value": 3, "max": 5, "site": "a/b#+"}
    assert template.render(record) == "level 3/5 at a/b#+: 100%"
    assert compile_template("", topic=False).render({}) == ""
    assert compile_template("{v}", topic=False).render({"v": ""}) == ""
    with pytest.raises(EvaluationError, match="missing"):
        template.render({})


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("", 1, "empty topic template"),
        ("a/{device", 3, "'{' is never closed"),
        ("a/device}", 9, "single '}' must be written '}}'"),
        ("a/{}", 3, "placeholder {} must be"),
        ("a/{ device }", 3, "must be {field} or {nested.field}"),
        ("a/{device:>10}", 3, "format specs are not supported"),
        ("a/{device!r}", 3, "conversions are not supported"),
        ("a/{tags[0]}", 3, "indexes are not supported"),
        ("a/{device.__class__}", 3, "name 'device.__class__' is not allowed"),
        ("a/{__class__}", 3, "is not allowed"),
        ("a/{0.__class__.__mro__}", 3, "is not allowed"),
        ("a/{x..y}", 3, "must be {field} or {nested.field}"),
        ("a/{x.}", 3, "must be {field} or {nested.field}"),
        ("a/+/cmd", 3, "wildcard '+' cannot be published to"),
        ("a/#", 3, "wildcard '#' cannot be published to"),
        ("a/\x00", 3, "'\\x00' is not allowed"),
        ("a/\ud800", 3, "not valid UTF-8"),
        ("x" * (MAX_TOPIC_BYTES + 1), 1, "longer than 65535 bytes"),
        ("é" * (MAX_TOPIC_BYTES // 2 + 1), 1, "longer than 65535 bytes"),  # bytes, not chars
    ],
)
def test_malformed_template_is_a_compile_error_with_its_column(
    text: str, column: int, reason: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_template(text)
    assert reason in caught.value.reason
    assert caught.value.column == column


def test_payload_template_bounds_its_size_and_huge_numbers() -> None:
    template = compile_template("{v}", topic=False)
    with pytest.raises(EvaluationError, match="longer than 65535 characters"):
        template.render({"v": "x" * (MAX_TOPIC_BYTES + 1)})
    with pytest.raises(EvaluationError, match="too large to write out"):
        template.render({"v": 10**5000})
    with pytest.raises(ExpressionError, match="longer than 65535 characters"):
        compile_template("x" * (MAX_TOPIC_BYTES + 1), topic=False)


def test_template_must_be_a_string() -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        compile_template(None)  # type: ignore[arg-type]


# -- topic patterns -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "mqtt_filter", "fields"),
    [
        ("sensors/{device}/{metric}", "sensors/+/+", ("device", "metric")),
        ("sensors/+/{metric}", "sensors/+/+", ("metric",)),
        ("sensors/#", "sensors/#", ()),
        ("sensors/{device}/#", "sensors/+/#", ("device",)),
        ("#", "#", ()),
        ("+", "+", ()),
        ("plain/topic", "plain/topic", ()),
        ("/leading", "/leading", ()),
        ("a//b", "a//b", ()),
        ("$SYS/broker/{stat}", "$SYS/broker/+", ("stat",)),
    ],
)
def test_pattern_gives_the_broker_filter_and_its_fields(
    pattern: str, mqtt_filter: str, fields: tuple[str, ...]
) -> None:
    compiled = compile_topic_pattern(pattern)
    assert compiled.mqtt_filter == mqtt_filter
    assert compiled.fields == fields
    assert compiled.pattern == pattern
    assert isinstance(compiled, TopicPattern)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        (
            "sensors/{device}/{metric}",
            "sensors/pump-7/temp",
            {"device": "pump-7", "metric": "temp"},
        ),
        ("sensors/{device}/{metric}", "sensors/pump-7", None),
        ("sensors/{device}/{metric}", "sensors/pump-7/temp/extra", None),
        ("sensors/{device}/{metric}", "other/pump-7/temp", None),
        ("sensors/{device}/{metric}", "sensors//temp", {"device": "", "metric": "temp"}),
        ("sensors/+/{metric}", "sensors/x/hum", {"metric": "hum"}),
        ("sensors/#", "sensors", {}),  # '#' includes the parent level
        ("sensors/#", "sensors/a/b/c", {}),
        ("sensors/#", "sensors/", {}),
        ("sensors/#", "sensorsX", None),
        ("sensors/{device}/#", "sensors/d1", {"device": "d1"}),
        ("sensors/{device}/#", "sensors/d1/x/y", {"device": "d1"}),
        ("#", "anything/at/all", {}),
        ("#", "$SYS/broker", None),  # wildcards do not match $-topics
        ("+/x", "$SYS/x", None),
        ("{a}/x", "$SYS/x", None),
        ("$SYS/{stat}", "$SYS/load", {"stat": "load"}),
        ("a.b/{c}", "aXb/c", None),  # literal levels are literal, not regex
        ("a/(b)/{c}", "a/(b)/v", {"c": "v"}),
        ("plain/topic", "plain/topic", {}),
        ("plain/topic", "plain/topic/", None),
        ("sensors/{device}", "", None),
        ("sensors/{device}", "sensors/line\nbreak", {"device": "line\nbreak"}),
        ("sensors/{d}", "sensors/é", {"d": "é"}),
    ],
)
def test_pattern_matches_topics_like_mqtt_and_extracts_fields(
    pattern: str, topic: str, expected: dict[str, str] | None
) -> None:
    assert compile_topic_pattern(pattern).match(topic) == expected


@pytest.mark.parametrize(
    ("pattern", "column", "reason"),
    [
        ("", 1, "empty topic pattern"),
        ("sensors/#/x", 9, "'#' must be the last level"),
        ("sensors/a#", 10, "'#' must fill a whole level"),
        ("sensors/a+/x", 10, "'+' must fill a whole level"),
        ("sensors/dev-{id}", 13, "a placeholder must fill a whole level"),
        ("sensors/{id}x", 9, "a placeholder must fill a whole level"),
        ("sensors/{}", 9, "placeholder {} must be"),
        ("sensors/{a.b}", 9, "must be {field}"),
        ("sensors/{a:x}", 9, "format specs are not supported"),
        ("sensors/{1st}", 9, "must be {field}"),
        ("sensors/{__class__}", 9, "is not allowed"),
        ("{d}/{d}", 5, "field 'd' appears twice"),
        ("a/\x00", 3, "'\\x00' is not allowed"),
        ("a" * (MAX_TOPIC_BYTES + 1), 1, "longer than 65535 bytes"),
    ],
)
def test_malformed_pattern_is_a_compile_error_with_its_column(
    pattern: str, column: int, reason: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_topic_pattern(pattern)
    assert reason in caught.value.reason
    assert caught.value.column == column


# -- templates and patterns agree --------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/+#\x00"),
    min_size=1,
    max_size=12,
)
_literals = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/+#{}\x00$"),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_literals, _names.map(lambda n: "{" + n + "}")), min_size=1, max_size=6))
def test_a_rendered_template_matches_its_own_pattern(levels: list[str]) -> None:
    names = [level[1:-1] for level in levels if level.startswith("{")]
    if len(set(names)) != len(names):
        return  # a pattern names each field once
    text = "/".join(levels)
    record = {name: f"v-{i}" for i, name in enumerate(names)}
    topic = compile_template(text).render(record)
    assert compile_topic_pattern(text).match(topic) == record


@settings(max_examples=150, deadline=None)
@given(st.lists(_values, min_size=1, max_size=5))
def test_any_single_level_value_round_trips_through_a_pattern(values: list[str]) -> None:
    names = [f"f{i}" for i in range(len(values))]
    text = "root/" + "/".join("{" + name + "}" for name in names)
    record = dict(zip(names, values, strict=True))
    topic = compile_template(text).render(record)
    assert compile_topic_pattern(text).match(topic) == record
