"""Sizes as people write them: a number and a unit, like durations (`_duration`).

    64MB  256MiB  1.5GiB  512kB  4096B

Units: B, kB/KB, MB, GB (powers of 1000) and KiB, MiB, GiB, TiB (powers of
1024), case-insensitive. A bare number is refused: bytes or megabytes?
"""

import re
from typing import Final

_SCALE: Final = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE: Final = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,6})?)\s?([kmgt]i?b|b)", re.IGNORECASE)
EXAMPLES: Final = "64MB, 256MiB or 1.5GiB"


def parse_size(value: object) -> int:
    """The bytes in a size like `256MiB`.

    Raises:
        ValueError: not text with a unit; the message says what is expected.
    """
    match = _SIZE.fullmatch(value) if isinstance(value, str) and len(value) <= 32 else None
    if match is None:
        shown = repr(value)[:40]
        raise ValueError(f"expected a size with a unit, like {EXAMPLES} (got {shown})")
    return int(float(match.group(1)) * _SCALE[match.group(2).lower()])
