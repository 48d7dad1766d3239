"""Numbers as people read them: sizes, durations and counted nouns."""

import re
from typing import Final

_IRREGULAR: Final = {"device": "devices", "entry": "entries", "process": "processes"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 device`, `3 devices`; `many` for nouns that do not just take an s."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {many or _IRREGULAR.get(noun, noun + 's')}"


def human_bytes(size: int | float) -> str:
    """`576 B`, `1.5 KiB`, `256 MiB`: binary units, no decimals when whole."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B" or value == int(value):
                return f"{value:.0f} {unit}"
            return f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """`0s`, `45s`, `10m`, `1h30m`, `2d`: the units manifests are written in."""
    total = round(seconds)
    if total <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts[:2])  # 1h30m, not 1h30m12s: a summary, not a stopwatch


_SECONDS: Final = re.compile(r"\b(\d+(?:\.\d+)?)s\b")


def durations_in(text: str) -> str:
    """Seconds written out in a sentence (`bake 600s`) as `bake 10m`."""
    return _SECONDS.sub(lambda m: human_duration(float(m.group(1))), text)


# `a: a: b` -> `a: b`: a prefix written twice, once by each layer that passed
# the message up (`thermo-filter 1.3.0: thermo-filter 1.3.0: not healthy`).
_REPEATED_PREFIX: Final = re.compile(r"(?:(?<=^)|(?<=: )|(?<=; ))([^:;]{1,160}: )\1+")


def without_repeated_prefixes(text: str) -> str:
    """`text` with each `prefix: prefix: ` said once (at the start, or after `: ` or `; `)."""
    return _REPEATED_PREFIX.sub(r"\1", text)
