"""Timestamps and claim expiry as operators write them (durations: tests/test_duration.py)."""

from datetime import UTC, datetime

import pytest

from fogline.manifest import parse_expiry, parse_timestamp


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
