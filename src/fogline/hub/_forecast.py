"""Forecasts on one device's health series (pure: points in, verdict out).

A robust straight line through the last hours of a series: the Theil-Sen
slope (the median of the slopes between every pair of points, from
scipy.stats.theilslopes) with its confidence interval. A few wild samples (a
log burst, a reboot) barely move it, where a least-squares line would swing.

The interval is the slope's: each bound of the slope gives its own line
(through the median of `y - slope * t`, as Theil-Sen places its line), and
each line its own time to the limit, so "full in ~6 h (5-8 h)" is the time
for the fitted slope and for the two bounds of the slope. The level's own
uncertainty is left out: over a few hours it is small next to the slope's.

    disk           time until the data dir's free bytes reach zero
    memory         device memory used growing: time until used reaches total
    module RSS     a module's RSS growing by more than `leak_min_growth`
                   of its median per hour (no limit to reach: a trend only)
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median
from typing import Final

# Points per fit, at most: theilslopes is O(n²) in time and memory.
MAX_POINTS: Final = 60
_HOUR_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class ForecastSettings:
    """How the hub forecasts; `hub serve --forecast-*` sets them."""

    window_s: float = 6 * _HOUR_S  # the last hours a fit looks at
    min_span_s: float = 30 * 60.0  # a fit needs points this far apart, at least
    min_points: int = 12
    horizon_s: float = 24 * _HOUR_S  # alert when the limit is nearer than this
    confidence: float = 0.95
    leak_min_growth: float = 0.05  # of the median per hour: a module's leak
    max_devices_per_pass: int = 1000
    interval_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Trend:
    """A Theil-Sen line and its slope's interval, per second."""

    slope: float
    low_slope: float
    high_slope: float
    points: int
    span_s: float
    # The fitted level at the last point, for each slope (mid, low, high).
    level: tuple[float, float, float]

    @property
    def is_rising(self) -> bool:
        """The whole interval above zero: growth, not noise."""
        return self.low_slope > 0

    @property
    def is_falling(self) -> bool:
        return self.high_slope < 0


@dataclass(frozen=True, slots=True)
class Eta:
    """Seconds until a limit is reached: fitted, and the interval's bounds."""

    seconds: float
    earliest_s: float
    latest_s: float  # math.inf: the slope's interval reaches zero

    def words(self) -> str:
        latest = "∞" if math.isinf(self.latest_s) else _human(self.latest_s)
        return f"~{_human(self.seconds)} ({_human(self.earliest_s)}-{latest})"


def fit_trend(
    times_s: Sequence[float], values: Sequence[float], settings: ForecastSettings
) -> Trend | None:
    """The trend of a series, or None when it is too short or too flat to say.

    `times_s` ascending. More than MAX_POINTS points are thinned evenly."""
    if len(times_s) != len(values) or len(times_s) < max(settings.min_points, 3):
        return None
    span = times_s[-1] - times_s[0]
    if span < settings.min_span_s or span <= 0:
        return None
    if len(times_s) > MAX_POINTS:
        step = len(times_s) / MAX_POINTS
        picks = sorted({int(i * step) for i in range(MAX_POINTS)} | {len(times_s) - 1})
        times_s = [times_s[i] for i in picks]
        values = [values[i] for i in picks]
    # Times from the first point: epoch seconds squared lose precision.
    t0 = times_s[0]
    xs = [t - t0 for t in times_s]
    # Imported here: scipy.stats takes about half a second to import, paid
    # by the first forecast pass rather than by every `fogline` command.
    from scipy.stats import theilslopes

    result = theilslopes(values, xs, alpha=settings.confidence)
    slope, low, high = float(result.slope), float(result.low_slope), float(result.high_slope)
    if not all(math.isfinite(v) for v in (slope, low, high)):
        return None
    last = xs[-1]
    levels = tuple(
        median(y - s * x for x, y in zip(xs, values, strict=True)) + s * last
        for s in (slope, low, high)
    )
    return Trend(slope, low, high, len(xs), span, (levels[0], levels[1], levels[2]))


def time_to_zero(trend: Trend) -> Eta | None:
    """When a falling series (disk free) reaches zero; None unless it falls."""
    if not trend.slope < 0:
        return None
    mid = max(trend.level[0], 0.0) / -trend.slope
    # The steepest fall (the low slope) comes first.
    early = max(trend.level[1], 0.0) / -trend.low_slope if trend.low_slope < 0 else mid
    late = max(trend.level[2], 0.0) / -trend.high_slope if trend.high_slope < 0 else math.inf
    return Eta(mid, min(early, mid), max(late, mid))


def time_to_limit(trend: Trend, limit: float) -> Eta | None:
    """When a rising series (memory used) reaches `limit`; None unless it rises."""
    if not trend.slope > 0:
        return None
    mid = max(limit - trend.level[0], 0.0) / trend.slope
    early = max(limit - trend.level[2], 0.0) / trend.high_slope
    late = max(limit - trend.level[1], 0.0) / trend.low_slope if trend.low_slope > 0 else math.inf
    return Eta(mid, min(early, mid), max(late, mid))


def disk_forecast(
    times_s: Sequence[float], free_bytes: Sequence[float], settings: ForecastSettings
) -> Eta | None:
    """Time until the disk is full, when that is within the horizon and the
    fall is more than noise (the whole slope interval below zero)."""
    trend = fit_trend(times_s, free_bytes, settings)
    if trend is None or not trend.is_falling:
        return None
    eta = time_to_zero(trend)
    return eta if eta is not None and eta.seconds <= settings.horizon_s else None


def memory_forecast(
    times_s: Sequence[float],
    used_bytes: Sequence[float],
    total_bytes: float,
    settings: ForecastSettings,
) -> tuple[Trend, Eta] | None:
    """A device's memory filling up: its trend and time until used reaches
    total, when within the horizon and the rise is more than noise."""
    trend = fit_trend(times_s, used_bytes, settings)
    if trend is None or not trend.is_rising or total_bytes <= 0:
        return None
    eta = time_to_limit(trend, total_bytes)
    return (trend, eta) if eta is not None and eta.seconds <= settings.horizon_s else None


def leak_trend(
    times_s: Sequence[float], rss_bytes: Sequence[float], settings: ForecastSettings
) -> Trend | None:
    """A module's RSS that looks like a leak: rising beyond noise, by at
    least `leak_min_growth` of its median per hour."""
    trend = fit_trend(times_s, rss_bytes, settings)
    if trend is None or not trend.is_rising:
        return None
    middle = median(rss_bytes)
    if middle <= 0 or trend.slope * _HOUR_S < settings.leak_min_growth * middle:
        return None
    return trend


def bytes_per_hour(slope: float) -> str:
    return f"{slope * _HOUR_S / 2**20:.1f} MiB/h"


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * _HOUR_S:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / _HOUR_S:.0f} h"
    return f"{seconds / 86400:.0f} d"
