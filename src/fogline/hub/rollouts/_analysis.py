"""Canary analysis: a wave's updated devices against a control cohort, metric by metric.

Pure (no database): the engine reads the cohorts' health series and passes
them in. For each metric of `spec.rollout.analysis`:

1. each device's series over the bake becomes one number (`Statistic`): the
   median level, the growth per hour (Theil-Sen slope, robust to a spike),
   a counter's increase per hour, or the share of samples in a state;
2. the canaries' numbers are compared with the control's by a one-sided
   Mann-Whitney U test (scipy; the test Kayenta uses), in the bad direction;
3. the effect is Cliff's delta (the rank-biserial correlation: -1..1, the
   share of pairs where the canary is worse minus where it is better), and
   the difference of the two medians against the metric's tolerance.

A metric **fails** when the canaries' median is past the control's by more
than the tolerance *and* the test is significant at the analysis'
confidence; it is **inconclusive** when either cohort has fewer than
`minSamples` devices with data, or the medians differ by more than the
tolerance without significance; otherwise it **passes**. Requiring both
keeps a tiny but significant difference (thousands of devices) and a large
but noisy one (two canaries) from stopping a rollout on their own.
"""

import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ._analysis_spec import (
    AnalysisSpec,
    MetricSpec,
    Statistic,
    Unit,
    format_value,
    module_series,
)

Outcome = Literal["pass", "fail", "inconclusive"]
# Fewer points than this over the bake say nothing about a device.
MIN_POINTS: Final = 3
# Theil-Sen is quadratic in the points: a device reporting every second for
# an hour is thinned to this many, evenly.
MAX_POINTS_PER_DEVICE: Final = 240
_HOUR_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One health sample of a device, as the analysis reads it."""

    at_s: float
    cpu_percent: float | None = None
    mem_used_bytes: float | None = None
    outbox_dropped: float | None = None
    pipeline_errors: float | None = None
    pipeline_dropped: float | None = None
    # Module name -> {"state", "restarts", "cpu_percent", "rss_bytes", "metrics"}
    # (ModuleHealth's JSON; "metrics": the series of its endpoint).
    modules: Mapping[str, Mapping[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class MetricVerdict:
    metric: str  # the label: `module-rss-growth(web)`
    outcome: Outcome
    canary_median: float | None
    control_median: float | None
    canaries: int  # devices with data
    controls: int
    p_value: float | None
    effect_size: float | None  # Cliff's delta, canary against control
    tolerance: str
    reason: str
    unit: Unit = Unit.SHARE

    def to_json(self) -> dict[str, Any]:
        def text(value: float | None) -> str | None:
            return None if value is None else format_value(value, self.unit)

        return {
            "metric": self.metric,
            "outcome": self.outcome,
            "unit": self.unit.value,
            "canary_median": self.canary_median,
            "control_median": self.control_median,
            # For people: `30.1MB/h` (what `fogline rollout status` shows).
            "canary_median_text": text(self.canary_median),
            "control_median_text": text(self.control_median),
            "canaries": self.canaries,
            "controls": self.controls,
            "p_value": self.p_value,
            "effect_size": self.effect_size,
            "tolerance": self.tolerance,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    outcome: Outcome
    metrics: tuple[MetricVerdict, ...]

    @property
    def reason(self) -> str:
        """The first failed (else inconclusive) metric in words; empty on a pass."""
        for wanted in ("fail", "inconclusive"):
            for verdict in self.metrics:
                if verdict.outcome == wanted:
                    return f"canary analysis {wanted}: {verdict.metric}: {verdict.reason}"
        return ""

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "metrics": [m.to_json() for m in self.metrics]}


# -- one number per device -----------------------------------------------------------------


def _module_value(sample: Sample, module: str | None, field: str) -> tuple[bool, float | None]:
    """(any module reported, the value): one module's field, or the sum over all."""
    modules = sample.modules or {}
    chosen = [modules[module]] if module is not None and module in modules else []
    if module is None:
        chosen = list(modules.values())
    if not chosen:
        return False, None
    if field == "crash-loop":
        return True, float(any(m.get("state") == "crash-loop" for m in chosen))
    values = [m.get(field) for m in chosen]
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return True, (sum(numbers) if numbers else None)


_MODULE_FIELDS: Final = {
    "module-restarts": "restarts",
    "crash-loops": "crash-loop",
    "module-rss": "rss_bytes",
    "module-rss-growth": "rss_bytes",
    "module-cpu": "cpu_percent",
}
_DEVICE_FIELDS: Final[Mapping[str, Callable[[Sample], float | None]]] = {
    "device-cpu": lambda s: s.cpu_percent,
    "device-memory": lambda s: s.mem_used_bytes,
    "device-memory-growth": lambda s: s.mem_used_bytes,
    "outbox-drops": lambda s: s.outbox_dropped,
    "pipeline-errors": lambda s: s.pipeline_errors,
    "pipeline-drops": lambda s: s.pipeline_dropped,
}


def _series_value(sample: Sample, module: str, series: str) -> float | None:
    """One series a module's endpoint gave (`module:NAME:SERIES`)."""
    entry = (sample.modules or {}).get(module)
    metrics = entry.get("metrics") if isinstance(entry, Mapping) else None
    value = metrics.get(series) if isinstance(metrics, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def points_of(metric: MetricSpec, series: Sequence[Sample]) -> list[tuple[float, float]]:
    """(time s, value) of one metric in one device's series, oldest first."""
    points: list[tuple[float, float]] = []
    chosen = module_series(metric.metric)
    for sample in sorted(series, key=lambda s: s.at_s):
        if chosen is not None:
            value = _series_value(sample, *chosen)
        elif metric.metric in _DEVICE_FIELDS:
            value = _DEVICE_FIELDS[metric.metric](sample)
        else:
            _, value = _module_value(sample, metric.module, _MODULE_FIELDS[metric.metric])
        if value is not None and math.isfinite(value):
            points.append((sample.at_s, float(value)))
    return points


def _thinned(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS_PER_DEVICE:
        return points
    step = len(points) / MAX_POINTS_PER_DEVICE
    return [points[int(i * step)] for i in range(MAX_POINTS_PER_DEVICE)]


def device_statistic(statistic: Statistic, points: list[tuple[float, float]]) -> float | None:
    """One device's number over the bake; None when its series says too little."""
    if len(points) < MIN_POINTS:
        return None
    values = [v for _, v in points]
    span_h = (points[-1][0] - points[0][0]) / _HOUR_S
    if statistic is Statistic.MEDIAN:
        return float(statistics.median(values))
    if statistic is Statistic.SHARE:
        return sum(1 for v in values if v > 0) / len(values)
    if span_h <= 0:
        return None
    if statistic is Statistic.RATE:
        # A counter that went down was reset (a restart, a new version):
        # what it counted since is its new value.
        increase = sum(b - a if b >= a else b for a, b in itertools.pairwise(values))
        return increase / span_h
    from scipy.stats import theilslopes  # imported on first use: a second at hub start otherwise

    thin = _thinned(points)
    slope = theilslopes([v for _, v in thin], [t / _HOUR_S for t, _ in thin]).slope
    return float(slope) if math.isfinite(slope) else None


def cohort_statistics(metric: MetricSpec, cohort: Mapping[str, Sequence[Sample]]) -> list[float]:
    """The number of every device of a cohort that has one."""
    found = []
    for series in cohort.values():
        value = device_statistic(metric.kind.statistic, points_of(metric, series))
        if value is not None:
            found.append(value)
    return found


# -- the verdicts ------------------------------------------------------------------------


def judge_metric(
    metric: MetricSpec,
    canaries: Sequence[float],
    controls: Sequence[float],
    *,
    min_samples: int,
    confidence: float,
) -> MetricVerdict:
    """One metric's verdict from the two cohorts' per-device numbers."""
    unit = metric.kind.unit
    tolerance = metric.tolerance.text(unit)
    canary_median = float(statistics.median(canaries)) if canaries else None
    control_median = float(statistics.median(controls)) if controls else None

    def verdict(
        outcome: Outcome, reason: str, p: float | None, effect: float | None
    ) -> MetricVerdict:
        return MetricVerdict(
            metric.label,
            outcome,
            canary_median,
            control_median,
            len(canaries),
            len(controls),
            p,
            effect,
            tolerance,
            reason,
            unit,
        )

    if len(canaries) < min_samples or len(controls) < min_samples:
        return verdict(
            "inconclusive",
            f"{len(canaries)} canary and {len(controls)} control device(s) with data; "
            f"minSamples is {min_samples} in each",
            None,
            None,
        )
    assert canary_median is not None and control_median is not None
    from scipy.stats import mannwhitneyu  # see device_statistic

    worse = "greater" if metric.direction == "increase" else "less"
    test = mannwhitneyu(canaries, controls, alternative=worse)
    p = float(test.pvalue) if math.isfinite(test.pvalue) else 1.0
    # U counts the pairs where the canary is the larger (ties half): delta = 2U/(n1 n2) - 1.
    effect = round(2 * float(test.statistic) / (len(canaries) * len(controls)) - 1, 4)
    excess = canary_median - control_median
    if metric.direction == "decrease":
        excess = -excess
    allowed = (
        metric.tolerance.absolute
        if metric.tolerance.absolute is not None
        else (metric.tolerance.relative or 0.0) * abs(control_median)
    )
    medians = (
        f"canaries {format_value(canary_median, unit)} vs control "
        f"{format_value(control_median, unit)} (tolerance {tolerance}, p={p:.2g}, "
        f"effect {effect:+.2f})"
    )
    significant = p < 1 - confidence
    if excess > allowed and significant:
        return verdict("fail", f"{metric.direction} beyond tolerance: {medians}", p, effect)
    if excess > allowed:
        return verdict(
            "inconclusive",
            f"{metric.direction} beyond tolerance, not significant: {medians}",
            p,
            effect,
        )
    return verdict("pass", f"within tolerance: {medians}", p, effect)


def analyse(
    spec: AnalysisSpec,
    canaries: Mapping[str, Sequence[Sample]],
    controls: Mapping[str, Sequence[Sample]],
) -> AnalysisResult:
    """Every metric's verdict; the wave fails when one fails, and is
    inconclusive when none fails but one is (the policy says what that means)."""
    verdicts = tuple(
        judge_metric(
            metric,
            cohort_statistics(metric, canaries),
            cohort_statistics(metric, controls),
            min_samples=spec.min_samples,
            confidence=spec.confidence,
        )
        for metric in spec.metrics
    )
    outcomes = {v.outcome for v in verdicts}
    outcome: Outcome = (
        "fail" if "fail" in outcomes else "inconclusive" if "inconclusive" in outcomes else "pass"
    )
    return AnalysisResult(outcome, verdicts)
