"""Durations as operators write them: `500ms`, `10s`, `5m`, `24h`, `7d`, `1h30m`."""

import re
from datetime import UTC, datetime
from typing import Final

_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART: Final = re.compile(r"(\d{1,9}(?:\.\d{1,9})?)(ms|s|m|h|d)")
_WHOLE: Final = re.compile(r"(?:\d{1,9}(?:\.\d{1,9})?(?:ms|s|m|h|d))+")
# Longer text cannot be a sensible duration; bounding it also bounds the regex work.
_MAX_CHARS: Final = 64
# The longest duration anything accepts. Callers subtract durations from now
# (`since=300000000d`) or add them to it (claim expiry): without a bound the
# datetime arithmetic overflows and a query parameter becomes a 500.
MAX_DURATION_S: Final = 36500 * 86400.0  # 100 years


def parse_duration(text: str) -> float:
    """Return the number of seconds in a duration like `10s`, `24h` or `1h30m`.

    Units are ms, s, m, h and d; parts may be combined largest first or not
    (`1h30m` == `90m`); no spaces, no sign.

    Raises:
        ValueError: the text is not a duration; the message says what is expected.
    """
    if not isinstance(text, str) or len(text) > _MAX_CHARS or not _WHOLE.fullmatch(text):
        raise ValueError(f"must be a duration like 500ms, 10s, 5m, 24h, 7d or 1h30m (got {text!r})")
    seconds = sum(float(number) * _UNIT_S[unit] for number, unit in _PART.findall(text))
    if seconds > MAX_DURATION_S:
        raise ValueError(f"must be at most 36500d (100 years), got {text!r}")
    return seconds


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
