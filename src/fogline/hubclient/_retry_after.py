"""Retry-After (RFC 9110 10.2.3): seconds, or an HTTP-date, bounded."""

import datetime as dt
import email.utils
import re
from typing import Final

# Longer than any agent's backoff cap: a proxy's Retry-After: 99999999 must
# not park a node for years. Backoff caps it again at its own max_s.
MAX_RETRY_AFTER_S: Final = 3600.0
_SECONDS: Final = re.compile(r"[0-9]+", re.ASCII)
_MAX_CHARS: Final = 64  # an HTTP-date is 29


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header; None when absent or unreadable.

    `120` is 120 s; `Wed, 21 Oct 2015 07:28:00 GMT` is the time until then
    (0 if it has passed). The result is within 0 and MAX_RETRY_AFTER_S.
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > _MAX_CHARS:
        return None
    if _SECONDS.fullmatch(text):
        seconds = float(int(text))
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000": an HTTP-date is always UTC
            when = when.replace(tzinfo=dt.UTC)
        try:
            seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
        except OverflowError:
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
