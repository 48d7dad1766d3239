"""Durations in module files: `500ms`, `10s`, `5m`, `2h`, `7d`, `1m30s`.

The manifest package has a parser of the same grammar; a module file and a
manifest accept the same text.
"""

import re
from typing import Final

_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART: Final = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)(ms|s|m|h|d)")
_WHOLE: Final = re.compile(r"(?:[0-9]{1,9}(?:\.[0-9]{1,9})?(?:ms|s|m|h|d)){1,5}")
# Bounding the text also bounds the regex work on hostile input.
_MAX_CHARS: Final = 64


def parse_duration(text: str) -> float:
    """Return the seconds in a duration like `500ms`, `10s`, `5m`, `2h`, `7d` or `1m30s`.

    A bare number is refused: `timeout: 10` could mean seconds or
    milliseconds, and guessing wrong makes a health check flap.

    Raises:
        ValueError: not a duration; the message says what is expected.
    """
    if not isinstance(text, str) or len(text) > _MAX_CHARS or not _WHOLE.fullmatch(text):
        shown = text[:_MAX_CHARS] if isinstance(text, str) else text
        raise ValueError(
            f"must be a duration with a unit like 500ms, 10s, 5m, 2h or 7d (got {shown!r})"
        )
    return sum(float(number) * _UNIT_S[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Render seconds so that `parse_duration` gives them back (to the millisecond)."""
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"
