"""The `--faults` spec: what goes wrong in a virtual fleet, and how often.

loss=0.05                  each HTTP request fails with this probability
latency=50ms               added to every HTTP request
flap=10s/60s               each node's link is down 10 s of every 60 s (phase per node)
crash=0.01                 per node per second: the node crashes and restarts from disk
powerloss=0.1              per update: the node crashes at a random point of the update
health-fail=0.2            every module's health probes fail with this probability
health-fail:web@3.0.0=1.0  the same for one release (or `health-fail:web=...`)
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from fogline.manifest import parse_duration

from ._errors import FaultSpecError

MAX_SPEC_CHARS: Final = 4096
MAX_ITEMS: Final = 64
_RELEASE_RE: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}(@[0-9A-Za-z.+-]{1,64})?", re.ASCII)


@dataclass(frozen=True, slots=True)
class Flap:
    down_s: float
    period_s: float


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault rates of a virtual fleet; the default is a perfect world."""

    loss: float = 0.0
    latency_s: float = 0.0
    flap: Flap | None = None
    crash_per_s: float = 0.0
    powerloss: float = 0.0
    health_fail: float = 0.0
    # "name" or "name@version" -> probability that each health probe fails
    health_fail_by_release: Mapping[str, float] = field(default_factory=dict)

    def health_fail_for(self, name: str, version: str) -> float:
        """The probe failure rate of one release: the most specific setting wins."""
        by = self.health_fail_by_release
        return by.get(f"{name}@{version}", by.get(name, self.health_fail))


def _probability(item: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(item, f"expected a probability 0..1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise FaultSpecError(item, f"expected a probability 0..1, got {text!r}")
    return value


def _duration(item: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise FaultSpecError(item, f"expected a duration like 50ms or 10s: {exc}") from None


def parse_faults(spec: str) -> Faults:
    """Parse a comma list like `loss=0.05,latency=50ms,health-fail:web@3.0.0=1`.

    Raises:
        FaultSpecError: an item is unknown, repeated or has a bad value; names the item.
    """
    if len(spec) > MAX_SPEC_CHARS:
        raise FaultSpecError(spec[:40] + "...", f"longer than {MAX_SPEC_CHARS} characters")
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if len(items) > MAX_ITEMS:
        raise FaultSpecError(items[MAX_ITEMS], f"more than {MAX_ITEMS} items")
    values: dict[str, object] = {}
    by_release: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise FaultSpecError(item, "expected KEY=VALUE")
        if key.startswith("health-fail:"):
            release = key.removeprefix("health-fail:")
            if not _RELEASE_RE.fullmatch(release):
                raise FaultSpecError(item, "expected health-fail:NAME[@VERSION]=P")
            if release in by_release:
                raise FaultSpecError(item, "given twice")
            by_release[release] = _probability(item, value)
            continue
        if key in values:
            raise FaultSpecError(item, "given twice")
        if key in ("loss", "crash", "powerloss", "health-fail"):
            values[key] = _probability(item, value)
        elif key == "latency":
            values[key] = _duration(item, value)
        elif key == "flap":
            down, slash, period = value.partition("/")
            if not slash:
                raise FaultSpecError(item, "expected flap=DOWN/PERIOD, e.g. 10s/60s")
            window = Flap(_duration(item, down), _duration(item, period))
            if not 0 < window.down_s < window.period_s:
                raise FaultSpecError(item, "expected 0 < DOWN < PERIOD")
            values[key] = window
        else:
            raise FaultSpecError(
                item,
                "unknown fault; known: loss, latency, flap, crash, powerloss, "
                "health-fail, health-fail:NAME[@VERSION]",
            )

    def number(key: str) -> float:
        value = values.get(key, 0.0)
        assert isinstance(value, float)
        return value

    flap = values.get("flap")
    assert flap is None or isinstance(flap, Flap)
    return Faults(
        loss=number("loss"),
        latency_s=number("latency"),
        flap=flap,
        crash_per_s=number("crash"),
        powerloss=number("powerloss"),
        health_fail=number("health-fail"),
        health_fail_by_release=by_release,
    )
