"""The `--faults` spec: what goes wrong in a virtual fleet, and how often.

loss=0.05                  each HTTP request fails with this probability
latency=50ms               added to every HTTP request
flap=10s/60s               each node's link is down 10 s of every 60 s (phase per node)
crash=0.01                 per node per second: the node crashes and restarts from disk
powerloss=0.1              per update: the node crashes at a random point of the update
health-fail=0.2            every module's health probes fail with this probability
health-fail:web@3.0.0=1.0  the same for one release (or `health-fail:web=...`)
mem-leak:web@2.0.0=30MB/h  the release's RSS grows this much an hour (KB, MB, GB; KiB, MiB, GiB)
cpu:web@2.0.0=+40%         the release's CPU is this much higher (or -20%)
restarts:web@2.0.0=1/h     the release restarts this often
pipeline-errors:web@2.0.0=60/h  the node's pipeline errors grow this fast while it runs the release
pipeline-drops:web@2.0.0=60/h   the same for the records its pipelines drop
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
    # (kind, "name" or "name@version") -> bytes/h (mem-leak), a factor (cpu: 0.4
    # is +40 %) or events/h (restarts, pipeline-errors, pipeline-drops); see
    # sim/_health.py.
    metric_faults: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def metric_fault(self, kind: str, name: str, version: str) -> float:
        """A release's metric fault of `kind`, 0 without one: the most specific wins."""
        by = self.metric_faults
        return by.get((kind, f"{name}@{version}"), by.get((kind, name), 0.0))

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


METRIC_FAULTS: Final = ("mem-leak", "cpu", "restarts", "pipeline-errors", "pipeline-drops")
_SIZE_PER_HOUR: Final = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)\s*([KMG]i?B)/h", re.IGNORECASE)
_SCALE: Final = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024.0, "mib": 1024.0**2, "gib": 1024.0**3}
_SIGNED_PERCENT: Final = re.compile(r"([+-])(\d{1,4}(?:\.\d{1,4})?)%")
_PER_HOUR: Final = re.compile(r"(\d{1,6}(?:\.\d{1,6})?)/h")


def _metric_fault(item: str, kind: str, value: str) -> float:
    """The amount of one metric fault: bytes/h, a CPU factor, or events/h
    (restarts, pipeline errors or drops)."""
    if kind == "mem-leak":
        match = _SIZE_PER_HOUR.fullmatch(value)
        if match is None:
            raise FaultSpecError(item, f"expected a leak like 30MB/h, got {value!r}")
        return float(match.group(1)) * _SCALE[match.group(2).lower()]
    if kind == "cpu":
        match = _SIGNED_PERCENT.fullmatch(value)
        if match is None:
            raise FaultSpecError(item, f"expected a CPU change like +40% or -20%, got {value!r}")
        factor = float(match.group(2)) / 100 * (-1 if match.group(1) == "-" else 1)
        if factor <= -1:
            raise FaultSpecError(item, f"a CPU change must stay above -100%, got {value!r}")
        return factor
    match = _PER_HOUR.fullmatch(value)
    if match is None:
        raise FaultSpecError(item, f"expected a rate like 1/h, got {value!r}")
    return float(match.group(1))


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
    metric_faults: dict[tuple[str, str], float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise FaultSpecError(item, "expected KEY=VALUE")
        kind, colon, release = key.partition(":")
        if colon and kind in METRIC_FAULTS:
            if not _RELEASE_RE.fullmatch(release):
                raise FaultSpecError(item, f"expected {kind}:NAME[@VERSION]=AMOUNT")
            if (kind, release) in metric_faults:
                raise FaultSpecError(item, "given twice")
            metric_faults[(kind, release)] = _metric_fault(item, kind, value)
            continue
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
                "health-fail, health-fail:NAME[@VERSION], mem-leak:NAME[@VERSION], "
                "cpu:NAME[@VERSION], restarts:NAME[@VERSION], "
                "pipeline-errors:NAME[@VERSION], pipeline-drops:NAME[@VERSION]",
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
        metric_faults=metric_faults,
    )
