"""`spec.rollout.analysis`: which metrics judge a wave against its control cohort.

    rollout:
      waves: [5%, 25%, 100%]
      bake: 10m
      analysis:
        metrics:
          - metric: module-rss-growth   # see METRICS
            module: web                 # module-* metrics; absent: every module summed
            tolerance: 10MB/h           # how far past the control cohort is still fine
          - {metric: device-cpu, tolerance: 20%, direction: increase}
          - {metric: pipeline-errors, tolerance: 60/h}
          - {metric: "module:web:http_errors_total", tolerance: 30/h}
        inconclusive: pause             # pass | fail | pause (default pause)
        minSamples: 5                   # devices with data in each cohort (default 5)
        confidence: 99%                 # of the Mann-Whitney U test (default 99%)

A tolerance is relative to the control cohort's median (`20%`) or absolute,
in the metric's unit: bytes (`64MB`), bytes per hour (`10MB/h`), events
per hour (`1/h`), CPU percentage points (`5`), a share of samples
(`0.1`), or a module series' own unit (`5`).

`module:NAME:SERIES` names a series module NAME's local Prometheus endpoint
gives (its fogline-module.yaml lists SERIES under `metrics.series`; the
agent reports it with the device's health). A series named like a counter
(`*_total`, `*_count`, `*_sum`) is judged as its increase per hour, resets
counted; any other as its median level. See `_analysis` for how a metric is
judged.
"""

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from fogline.manifest import BlockError
from fogline.protocol import SERIES_NAME_PATTERN

Direction = Literal["increase", "decrease"]
Inconclusive = Literal["pass", "fail", "pause"]
MAX_METRICS: Final = 16


class Unit(enum.StrEnum):
    BYTES = "bytes"
    BYTES_PER_HOUR = "bytes/h"
    PER_HOUR = "/h"
    PERCENT = "percent"  # percentage points of CPU
    SHARE = "share"  # a fraction 0..1 of a device's samples
    NUMBER = "number"  # a module series' level, in whatever unit the module gives it


class Statistic(enum.StrEnum):
    """What one device's series over the bake becomes (one number per device)."""

    MEDIAN = "median"  # the level: robust to a spike
    SLOPE = "slope"  # growth per hour (Theil-Sen): a leak
    RATE = "rate"  # a counter's increase per hour, resets counted
    SHARE = "share"  # the share of samples in a state


@dataclass(frozen=True, slots=True)
class MetricKind:
    unit: Unit
    statistic: Statistic
    per_module: bool


METRICS: Final[Mapping[str, MetricKind]] = {
    "module-restarts": MetricKind(Unit.PER_HOUR, Statistic.RATE, True),
    "crash-loops": MetricKind(Unit.SHARE, Statistic.SHARE, True),
    "module-rss": MetricKind(Unit.BYTES, Statistic.MEDIAN, True),
    "module-rss-growth": MetricKind(Unit.BYTES_PER_HOUR, Statistic.SLOPE, True),
    "module-cpu": MetricKind(Unit.PERCENT, Statistic.MEDIAN, True),
    "device-cpu": MetricKind(Unit.PERCENT, Statistic.MEDIAN, False),
    "device-memory": MetricKind(Unit.BYTES, Statistic.MEDIAN, False),
    "device-memory-growth": MetricKind(Unit.BYTES_PER_HOUR, Statistic.SLOPE, False),
    "outbox-drops": MetricKind(Unit.PER_HOUR, Statistic.RATE, False),
    "pipeline-errors": MetricKind(Unit.PER_HOUR, Statistic.RATE, False),
    "pipeline-drops": MetricKind(Unit.PER_HOUR, Statistic.RATE, False),
}
MODULE_SERIES_PREFIX: Final = "module:"
# Prometheus' names for what only grows: judged as a rate.
_COUNTER_SUFFIXES: Final = ("_total", "_count", "_sum")
_SERIES_RE: Final = re.compile(SERIES_NAME_PATTERN)
_COUNTER: Final = MetricKind(Unit.PER_HOUR, Statistic.RATE, True)
_GAUGE: Final = MetricKind(Unit.NUMBER, Statistic.MEDIAN, True)


def module_series(metric: str) -> tuple[str, str] | None:
    """(module, series) of a `module:NAME:SERIES` metric; None for another name."""
    if not metric.startswith(MODULE_SERIES_PREFIX):
        return None
    module, _, series = metric[len(MODULE_SERIES_PREFIX) :].partition(":")
    return module, series


def kind_of(metric: str) -> MetricKind | None:
    """How a metric is judged; None for a name that is no metric."""
    series = module_series(metric)
    if series is None:
        return METRICS.get(metric)
    return _COUNTER if series[1].endswith(_COUNTER_SUFFIXES) else _GAUGE


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far past the control cohort's median the canaries' may be."""

    relative: float | None = None  # 0.2: 20 % of the control's median
    absolute: float | None = None  # in the metric's unit

    def text(self, unit: Unit) -> str:
        if self.relative is not None:
            return f"{self.relative * 100:g}%"
        assert self.absolute is not None
        return format_value(self.absolute, unit)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    metric: str
    module: str | None
    direction: Direction
    tolerance: Tolerance

    @property
    def kind(self) -> MetricKind:
        kind = kind_of(self.metric)
        assert kind is not None, self.metric  # parse_analysis and from_json keep known ones
        return kind

    @property
    def label(self) -> str:
        """`module-rss-growth(web)`: how verdicts and reasons name it."""
        return f"{self.metric}({self.module})" if self.module else self.metric


@dataclass(frozen=True, slots=True)
class AnalysisSpec:
    metrics: tuple[MetricSpec, ...]
    inconclusive: Inconclusive = "pause"
    min_samples: int = 5
    confidence: float = 0.99

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": [
                {
                    "metric": m.metric,
                    "module": m.module,
                    "direction": m.direction,
                    "relative": m.tolerance.relative,
                    "absolute": m.tolerance.absolute,
                }
                for m in self.metrics
            ],
            "inconclusive": self.inconclusive,
            "min_samples": self.min_samples,
            "confidence": self.confidence,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "AnalysisSpec":
        metrics = tuple(
            MetricSpec(
                metric=str(m["metric"]),
                module=m.get("module"),
                direction="decrease" if m.get("direction") == "decrease" else "increase",
                tolerance=Tolerance(m.get("relative"), m.get("absolute")),
            )
            for m in data["metrics"]
            if kind_of(str(m.get("metric"))) is not None  # a hub that dropped a metric ignores it
        )
        inconclusive = str(data.get("inconclusive", "pause"))
        return cls(
            metrics=metrics,
            inconclusive="pass"
            if inconclusive == "pass"
            else "fail"
            if inconclusive == "fail"
            else "pause",
            min_samples=int(data.get("min_samples", 5)),
            confidence=float(data.get("confidence", 0.99)),
        )

    def summary(self) -> str:
        return "analysis " + ",".join(m.label for m in self.metrics)


_SCALE: Final = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_NUMBER: Final = r"(\d{1,12}(?:\.\d{1,6})?)"
_RELATIVE: Final = re.compile(_NUMBER + r"%")
_BYTES: Final = re.compile(_NUMBER + r"\s*([kmg]i?b|b)?", re.IGNORECASE)
_PER_HOUR: Final = re.compile(_NUMBER + r"\s*(?:/h)?")
_KEYS: Final = frozenset({"metrics", "inconclusive", "minSamples", "confidence"})
_METRIC_KEYS: Final = frozenset({"metric", "module", "direction", "tolerance"})
_MODULE_RE: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_EXPECTED: Final = {
    Unit.BYTES: "a size like 64MB, or a percentage like 20%",
    Unit.BYTES_PER_HOUR: "a growth like 10MB/h, or a percentage like 20%",
    Unit.PER_HOUR: "a rate like 1/h, or a percentage like 20%",
    Unit.PERCENT: "CPU percentage points like 5, or a percentage like 20%",
    Unit.SHARE: "a share of samples like 0.1, or a percentage like 20%",
    Unit.NUMBER: "a number in the series' unit like 5, or a percentage like 20%",
}


def format_value(value: float, unit: Unit) -> str:
    """A metric's value for people: `12.5MB/h`, `3.0/h`, `41.2`."""
    if unit in (Unit.BYTES, Unit.BYTES_PER_HOUR):
        suffix = "/h" if unit is Unit.BYTES_PER_HOUR else ""
        return f"{value / 1e6:.1f}MB{suffix}"
    if unit is Unit.PER_HOUR:
        return f"{value:.2f}/h"
    if unit is Unit.NUMBER:
        return f"{value:.4g}"
    return f"{value:.3g}" if unit is Unit.SHARE else f"{value:.1f}"


def _tolerance(value: Any, unit: Unit, path: tuple[str | int, ...]) -> Tolerance:
    text = str(value).strip() if isinstance(value, str | int | float) else ""
    if isinstance(value, bool) or not text:
        raise BlockError(path, f"must be {_EXPECTED[unit]} (got {value!r})")
    relative = _RELATIVE.fullmatch(text)
    if relative is not None:
        share = float(relative.group(1)) / 100
        if share > 100:
            raise BlockError(path, f"a relative tolerance is at most 10000% (got {text})")
        return Tolerance(relative=share)
    amount: float | None = None
    if unit is Unit.BYTES or unit is Unit.BYTES_PER_HOUR:
        body = text[: -len("/h")].strip() if text.endswith("/h") else text
        if unit is Unit.BYTES_PER_HOUR or not text.endswith("/h"):
            match = _BYTES.fullmatch(body)
            if match is not None:
                amount = float(match.group(1)) * _SCALE[(match.group(2) or "").lower()]
    elif unit is Unit.PER_HOUR:
        match = _PER_HOUR.fullmatch(text)
        amount = float(match.group(1)) if match is not None else None
    else:
        match = re.fullmatch(_NUMBER, text)
        amount = float(match.group(1)) if match is not None else None
        if amount is not None and unit is Unit.SHARE and amount > 1:
            raise BlockError(path, f"a share of samples is at most 1 (got {text})")
        if amount is not None and unit is Unit.PERCENT and amount > 100:
            raise BlockError(path, f"CPU percentage points are at most 100 (got {text})")
    if amount is None:
        raise BlockError(path, f"must be {_EXPECTED[unit]} (got {text[:40]!r})")
    return Tolerance(absolute=amount)


def _metric(entry: Any, index: int) -> MetricSpec:
    path: tuple[str | int, ...] = ("analysis", "metrics", index)
    if not isinstance(entry, Mapping):
        raise BlockError(
            path, "must be a mapping like {metric: module-rss-growth, tolerance: 10MB/h}"
        )
    unknown = sorted(set(map(str, entry)) - _METRIC_KEYS)
    if unknown:
        raise BlockError(
            (*path, unknown[0]), f"unknown key; expected one of {', '.join(sorted(_METRIC_KEYS))}"
        )
    name = str(entry.get("metric"))
    series = module_series(name)
    if series is not None:
        _check_series(series, path)
        if "module" in entry:
            raise BlockError((*path, "module"), f"{name[:80]} names its module already")
    kind = kind_of(name)
    if kind is None:
        raise BlockError(
            (*path, "metric"),
            f"unknown metric {str(name)[:40]!r}; known: {', '.join(METRICS)}, "
            "or module:NAME:SERIES (a series of a module's metrics endpoint)",
        )
    module = entry.get("module")
    if module is not None:
        if not kind.per_module:
            raise BlockError((*path, "module"), f"{name} is a device metric: it takes no module")
        if not isinstance(module, str) or not _MODULE_RE.fullmatch(module):
            raise BlockError((*path, "module"), f"must be a module name (got {str(module)[:40]!r})")
    direction = entry.get("direction", "increase")
    if direction not in ("increase", "decrease"):
        raise BlockError(
            (*path, "direction"), f"must be increase or decrease (what is bad; got {direction!r})"
        )
    if "tolerance" not in entry:
        raise BlockError(path, f"needs a tolerance: {_EXPECTED[kind.unit]}")
    return MetricSpec(
        metric=name,
        module=module,
        direction="decrease" if direction == "decrease" else "increase",
        tolerance=_tolerance(entry["tolerance"], kind.unit, (*path, "tolerance")),
    )


def _check_series(series: tuple[str, str], path: tuple[str | int, ...]) -> None:
    module, name = series
    where = (*path, "metric")
    if not _MODULE_RE.fullmatch(module):
        raise BlockError(
            where, f"module:NAME:SERIES: NAME must be a module name (got {module[:40]!r})"
        )
    if not _SERIES_RE.fullmatch(name):
        raise BlockError(
            where,
            "module:NAME:SERIES: SERIES must be a Prometheus sample name like "
            f"http_errors_total (got {name[:40]!r})",
        )


def parse_analysis(block: Any) -> AnalysisSpec:
    """The analysis a `spec.rollout.analysis` block declares.

    Raises:
        BlockError: an unknown key or a bad value, with its path in `spec.rollout`.
    """
    if not isinstance(block, Mapping):
        raise BlockError(("analysis",), "must be a mapping with metrics")
    unknown = sorted(set(map(str, block)) - _KEYS)
    if unknown:
        raise BlockError(
            ("analysis", unknown[0]), f"unknown key; expected one of {', '.join(sorted(_KEYS))}"
        )
    raw = block.get("metrics")
    if isinstance(raw, str | bytes) or not isinstance(raw, list | tuple) or not raw:
        raise BlockError(("analysis", "metrics"), "must be a non-empty list of metrics")
    if len(raw) > MAX_METRICS:
        raise BlockError(("analysis", "metrics"), f"at most {MAX_METRICS} metrics (got {len(raw)})")
    metrics = tuple(_metric(entry, i) for i, entry in enumerate(raw))
    seen: set[tuple[str, str | None]] = set()
    for i, metric in enumerate(metrics):
        if (metric.metric, metric.module) in seen:
            raise BlockError(("analysis", "metrics", i), f"{metric.label} is given twice")
        seen.add((metric.metric, metric.module))
    inconclusive = block.get("inconclusive", "pause")
    if inconclusive not in ("pass", "fail", "pause"):
        raise BlockError(
            ("analysis", "inconclusive"), f"must be pass, fail or pause (got {inconclusive!r})"
        )
    min_samples = block.get("minSamples", 5)
    if (
        isinstance(min_samples, bool)
        or not isinstance(min_samples, int)
        or not 2 <= min_samples <= 10_000
    ):
        raise BlockError(
            ("analysis", "minSamples"),
            f"must be a count of devices per cohort, 2 to 10000 (got {min_samples!r})",
        )
    confidence = _confidence(block.get("confidence", "99%"))
    return AnalysisSpec(
        metrics=metrics,
        inconclusive="pass"
        if inconclusive == "pass"
        else "fail"
        if inconclusive == "fail"
        else "pause",
        min_samples=min_samples,
        confidence=confidence,
    )


def _confidence(value: Any) -> float:
    path = ("analysis", "confidence")
    match = _RELATIVE.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if match is not None:
        confidence = float(match.group(1)) / 100
    elif isinstance(value, float | int) and not isinstance(value, bool):
        confidence = float(value)
    else:
        raise BlockError(path, f"must be a percentage like 99% (got {str(value)[:40]!r})")
    if not 0.5 <= confidence < 1:
        raise BlockError(path, f"must be at least 50% and below 100% (got {value!r})")
    return confidence
