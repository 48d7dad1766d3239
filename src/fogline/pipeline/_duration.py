"""Durations as operators write them in a pipeline: `500ms`, `10s`, `5m`, `24h`, `7d`, `1h30m`.

The same grammar as the manifest's durations; repeated here because the
manifest package imports this one, never the reverse.
"""

from __future__ import annotations

import math
import re
from typing import Final

_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART: Final = re.compile(r"(\d{1,9}(?:\.\d{1,9})?)(ms|s|m|h|d)")
_WHOLE: Final = re.compile(r"(?:\d{1,9}(?:\.\d{1,9})?(?:ms|s|m|h|d))+")
# Longer text cannot be a sensible duration; bounding it also bounds the regex work.
_MAX_CHARS: Final = 64


def parse_duration(value: object) -> float:
    """Return seconds for `10s`, `24h`, `1h30m` or a plain number of seconds.

    Raises:
        ValueError: not a duration, or a negative or non-finite number.
    """
    if isinstance(value, bool):  # True is an int to Python, never a duration to a person
        raise ValueError(f"must be a duration like 500ms, 10s, 5m, 24h or 7d (got {value!r})")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"must be a finite, non-negative number of seconds (got {value!r})")
        return seconds
    if not isinstance(value, str) or len(value) > _MAX_CHARS or not _WHOLE.fullmatch(value):
        shown = value[:_MAX_CHARS] if isinstance(value, str) else type(value).__name__
        raise ValueError(
            f"must be a duration like 500ms, 10s, 5m, 24h, 7d or 1h30m (got {shown!r})"
        )
    return sum(float(number) * _UNIT_S[unit] for number, unit in _PART.findall(value))
