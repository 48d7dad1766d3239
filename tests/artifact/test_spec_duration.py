"""Durations in module files."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.artifact._duration import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604800),
        ("1m30s", 90),
        ("1.5s", 1.5),
        ("0s", 0),
    ],
)
def test_parses_each_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["10", "", "s", "-5s", "5 s", "5sec", "1e3s", "10S", "9" * 70 + "s"]
)
def test_refuses_text_that_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="duration with a unit"):
        parse_duration(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_duration(text) >= 0


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**9))
def test_format_round_trips_to_the_millisecond(millis: int) -> None:
    text = format_duration(millis / 1000)
    assert round(parse_duration(text) * 1000) == millis
