"""Durations as people write them, with one rule everywhere: a number and a unit.

    500ms  10s  5m  24h  7d  1h30m  1.5h  2m30s500ms

Units are ms, s, m, h and d; parts may be combined (`1h30m` == `90m`); no
spaces, no sign. A bare number is refused, whether YAML gives it as a
number (`timeout: 10`) or as text (`"10"`): it could mean seconds or
milliseconds, and guessing wrong makes a health check flap or a window
a thousand times too long. The same text means the same thing in a
manifest, a pipeline, a module file, a CLI flag and a query parameter.

At most 36500d (100 years): callers add durations to now (claim expiry)
or subtract them from it (`since=300000000d`), and without a bound the
datetime arithmetic overflows.
"""

import re
from typing import Final

_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# ASCII digits only: `\d` would also take other scripts' digits.
_PART: Final = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)(ms|s|m|h|d)")
_WHOLE: Final = re.compile(r"(?:[0-9]{1,9}(?:\.[0-9]{1,9})?(?:ms|s|m|h|d))+")
_BARE_NUMBER: Final = re.compile(r"[+-]?[0-9]+(?:\.[0-9]*)?")
# Longer text cannot be a sensible duration; bounding it also bounds the regex work.
_MAX_CHARS: Final = 64
MAX_DURATION_S: Final = 36500 * 86400.0
EXAMPLES: Final = "500ms, 10s, 5m, 24h, 7d or 1h30m"


def parse_duration(value: object) -> float:
    """The seconds in a duration like `10s`, `24h` or `1h30m`.

    Raises:
        ValueError: not text with a unit (a bare number included), or longer
            than 36500d; the message says what is expected and what was got.
    """
    if isinstance(value, str) and len(value) <= _MAX_CHARS and _WHOLE.fullmatch(value):
        seconds = sum(float(number) * _UNIT_S[unit] for number, unit in _PART.findall(value))
        if seconds > MAX_DURATION_S:
            raise ValueError(f"must be at most 36500d (100 years) (got {value!r})")
        return seconds
    shown: object
    if isinstance(value, str):
        shown = value if len(value) <= _MAX_CHARS else value[:_MAX_CHARS] + "..."
        is_bare = _BARE_NUMBER.fullmatch(value.strip()) is not None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        shown, is_bare = value, True
    else:
        shown, is_bare = type(value).__name__, False
    hint = "; a bare number is ambiguous: add its unit" if is_bare else ""
    raise ValueError(f"must be a duration with a unit like {EXAMPLES} (got {shown!r}{hint})")


def format_duration(seconds: float) -> str:
    """Render seconds as text `parse_duration` reads back: `10s`, `5m`, `1500ms`, and
    whole milliseconds exactly; finer durations to the nanosecond (`0.0005s`)."""
    millis = round(seconds * 1000)
    if abs(millis / 1000 - seconds) > 1e-12 * max(1.0, seconds):
        return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"
