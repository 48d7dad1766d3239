"""Moments as operators write them: ISO 8601 timestamps, and a claim's expiry
(a duration after apply, or a fixed moment). Durations are fogline._duration's."""

from datetime import UTC, datetime
from typing import Final

from fogline._duration import parse_duration

# Longer text cannot be a sensible timestamp or duration.
_MAX_CHARS: Final = 64


def parse_timestamp(text: str) -> datetime:
    """Return the timezone-aware datetime of an ISO 8601 timestamp.

    Raises:
        ValueError: not ISO 8601, or without a timezone (ambiguous across a fleet).
    """
    if len(text) > _MAX_CHARS:
        raise ValueError(f"must be an ISO 8601 timestamp (got {text[:_MAX_CHARS]!r}...)")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"must be an ISO 8601 timestamp like 2030-01-31T12:00:00Z (got {text!r})"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} needs a timezone, e.g. a trailing Z for UTC")
    try:
        # In UTC once, here: 0001-01-01T00:00+14:00 is a valid ISO string but
        # no datetime in UTC, and comparing it later would overflow (a 500).
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"timestamp {text!r} is outside the years 1 to 9999 in UTC") from None


def parse_expiry(text: str) -> float | datetime:
    """Return a claim expiry: seconds after apply time, or a fixed moment.

    Raises:
        ValueError: neither a positive duration nor a timezone-aware ISO timestamp.
    """
    if "-" in text:  # a duration never has one; every ISO date does
        return parse_timestamp(text)
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise ValueError(
            "must be a duration like 30m, 24h or 7d, or an ISO 8601 timestamp "
            f"like 2030-01-31T12:00:00Z (got {text[:64]!r})"
        ) from None
    if seconds <= 0:
        raise ValueError(f"must be a positive duration (got {text!r})")
    return seconds
