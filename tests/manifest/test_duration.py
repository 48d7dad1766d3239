"""Durations and expiry as operators write them."""

from datetime import UTC, datetime

import pytest

from fogline.manifest import parse_duration, parse_expiry, parse_timestamp


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        ("2m30s500ms", 150.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "10", "s", "-5m", "5 m", " 5m", "5min", "1w", "1e3s", "5M", "1" * 70 + "s"]
)
def test_parse_duration_rejects_with_the_expected_shape(text: str) -> None:
    with pytest.raises(ValueError, match=r"must be a duration like 500ms, 10s, 5m, 24h, 7d"):
        parse_duration(text)


def test_parse_timestamp_needs_a_timezone() -> None:
    assert parse_timestamp("2030-01-31T12:00:00Z") == datetime(2030, 1, 31, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="needs a timezone"):
        parse_timestamp("2030-01-31T12:00:00")
    with pytest.raises(ValueError, match="must be an ISO 8601 timestamp"):
        parse_timestamp("2030-13-45")


def test_parse_expiry_is_a_duration_or_a_moment() -> None:
    assert parse_expiry("24h") == 86400.0
    assert parse_expiry("2030-01-31T12:00:00+01:00") == datetime(2030, 1, 31, 11, tzinfo=UTC)
    with pytest.raises(ValueError, match="positive"):
        parse_expiry("0m")
    with pytest.raises(ValueError, match="or an ISO 8601 timestamp"):
        parse_expiry("tomorrow")


def test_parse_duration_refuses_more_than_a_hundred_years() -> None:
    # now - 300000000d is no datetime: the bound keeps callers' arithmetic safe
    assert parse_duration("36500d") == 36500 * 86400.0
    for text in ("36500d1ms", "300000000d", "999999999d999999999h"):
        with pytest.raises(ValueError, match="at most 36500d"):
            parse_duration(text)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_parse_timestamp_refuses_moments_with_no_utc_datetime(text: str) -> None:
    with pytest.raises(ValueError, match="outside the years 1 to 9999"):
        parse_timestamp(text)
