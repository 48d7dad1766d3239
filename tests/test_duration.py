"""fogline._duration: one duration rule for manifests, pipelines, module files and the CLI."""

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline import manifest
from fogline._duration import format_duration, parse_duration
from fogline.artifact import ModuleSpecError, load_module_spec
from fogline.hub.rollouts import parse_rollout_policy
from fogline.manifest import BlockError
from fogline.pipeline import PipelineSpecError, validate_pipeline
from tests.artifact._support import EXAMPLE_SPEC

MESSAGE = "must be a duration with a unit like 500ms, 10s, 5m, 24h, 7d or 1h30m"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
        ("2m30s500ms", 150.5),
        ("36500d", 36500 * 86400.0),
    ],
)
def test_each_unit_and_combination(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        *("", "s", "-5m", "5 m", " 5m", "5min", "1w", "1e3s", "5M", "10S", "1" * 70 + "s"),
        "\u0661\u0660s",  # Arabic-Indic digits: `\d` takes them, float() reads them
        *(None, [], {}, True),
    ],
)
def test_what_is_not_a_duration_gets_the_one_message(value: Any) -> None:
    with pytest.raises(ValueError, match=MESSAGE) as caught:
        parse_duration(value)
    assert "bare number" not in str(caught.value)


@pytest.mark.parametrize("value", [10, 0, 2.5, -1, "10", "2.5", " 10 ", "-3"])
def test_a_bare_number_is_refused_whether_yaml_read_it_as_a_number_or_as_text(
    value: Any,
) -> None:
    with pytest.raises(ValueError, match=MESSAGE + r".*a bare number is ambiguous"):
        parse_duration(value)


def test_more_than_a_hundred_years_is_refused() -> None:
    # now - 300000000d is no datetime: the bound keeps callers' arithmetic safe
    for text in ("36500d1ms", "300000000d", "999999999d999999999h"):
        with pytest.raises(ValueError, match="at most 36500d"):
            parse_duration(text)


def test_long_text_is_cut_in_the_message() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("x" * 10_000)
    assert len(str(caught.value)) < 200


def _pipeline(size: Any) -> dict[str, Any]:
    return {
        "name": "p",
        "source": {"mqtt": "sensors/#"},
        "steps": [
            {"id": "w", "window": {"type": "tumbling", "size": size, "aggregate": {"n": "count()"}}}
        ],
        "outputs": [{"uplink": {"stream": "s"}}],
    }


def _in_a_pipeline(value: Any) -> float:
    try:
        spec = validate_pipeline(_pipeline(value))
    except PipelineSpecError as exc:
        raise ValueError(str(exc)) from None
    return spec.steps[0].window.size  # type: ignore[union-attr]


def _in_a_module_file(value: Any) -> float:
    text = EXAMPLE_SPEC.replace("startGrace: 5s", f"startGrace: {value}")
    try:
        return load_module_spec(text).start_grace_s
    except ModuleSpecError as exc:
        raise ValueError(str(exc)) from None


def _in_a_rollout_policy(value: Any) -> float:
    try:
        return parse_rollout_policy({"bake": value}).bake_s
    except BlockError as exc:
        raise ValueError(str(exc)) from None


@pytest.mark.parametrize(
    "place",
    [manifest.parse_duration, _in_a_pipeline, _in_a_module_file, _in_a_rollout_policy],
    ids=["manifest/CLI/query", "pipeline", "module-file", "rollout"],
)
def test_the_same_text_means_the_same_thing_everywhere(place: Any) -> None:
    assert place("90s") == place("1m30s") == 90.0
    with pytest.raises(ValueError, match=MESSAGE + r".*10.*a bare number is ambiguous"):
        place(10)


def test_a_pipeline_dumps_its_durations_as_text_that_validates_again() -> None:
    spec = validate_pipeline(_pipeline("1m30s"))
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["steps"][0]["window"]["size"] == "90s"
    assert validate_pipeline(dumped) == spec


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90.0, "90s"), (3600.0, "1h"), (0.5, "500ms"), (1.5, "1500ms"), (0.0005, "0.0005s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert 0 <= parse_duration(text) <= 36500 * 86400.0


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**9))
def test_format_round_trips_to_the_millisecond(millis: int) -> None:
    text = format_duration(millis / 1000)
    assert round(parse_duration(text) * 1000) == millis
