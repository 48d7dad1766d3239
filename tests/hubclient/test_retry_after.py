"""Retry-After, in seconds or as an HTTP-date, bounded."""

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.hubclient import MAX_RETRY_AFTER_S, parse_retry_after

NOW = dt.datetime(2030, 1, 31, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("3600", 3600.0),
        ("3601", MAX_RETRY_AFTER_S),  # bounded: a broken proxy cannot park a node for long
        ("9" * 40, MAX_RETRY_AFTER_S),
        ("Thu, 31 Jan 2030 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Thursday, 31-Jan-30 12:01:00 GMT", 60.0),  # RFC 850
        ("Thu Jan 31 12:00:05 2030", 5.0),  # asctime
        ("Thu, 31 Jan 2030 11:00:00 GMT", 0.0),  # already passed: now
        ("Thu, 31 Jan 2030 23:00:00 GMT", MAX_RETRY_AFTER_S),
        ("Thu, 31 Jan 2030 12:00:10 -0000", 10.0),
    ],
)
def test_seconds_and_http_dates(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", [None, "", "soon", "-5", "1.5", "5s", "0x10", "Thu, 99 Foo 2030", "9" * 100]
)
def test_what_is_not_retry_after_is_no_hint(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_header_value_gives_a_bounded_hint_or_none(value: str) -> None:
    seconds = parse_retry_after(value, now=NOW)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER_S
