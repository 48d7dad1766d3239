"""Line charts as SVG, drawn by the hub: no script, no chart library.

`line_chart` takes (epoch seconds, value) points, None for a gap, and draws
axes with a few labelled ticks and one polyline per run of points without a
gap. The text in it is escaped; the numbers are formatted here. The result
is put into a page as is (it is `Markup`).
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from markupsafe import Markup, escape

WIDTH: Final = 560
HEIGHT: Final = 180
_LEFT: Final = 56
_RIGHT: Final = 12
_TOP: Final = 24
_BOTTOM: Final = 28
_Y_TICKS: Final = 4
_X_TICKS: Final = 4
# A chart of more points than pixels draws nothing more: thinned to this.
MAX_POINTS: Final = 1200

Point = tuple[float, float | None]


@dataclass(frozen=True, slots=True)
class Axis:
    low: float
    high: float

    def scale(self, value: float, start: float, length: float) -> float:
        span = self.high - self.low or 1.0
        return start + (value - self.low) / span * length


def _y_axis(values: Sequence[float], y_min: float | None, y_max: float | None) -> Axis:
    low = min(values) if y_min is None else min(y_min, *values)
    high = max(values) if y_max is None else max(y_max, *values)
    if high == low:
        high = low + (abs(low) * 0.1 or 1.0)
    return Axis(low, high)


def _number(value: float) -> str:
    if abs(value) >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"


def _time(at_s: float, span_s: float) -> str:
    when = dt.datetime.fromtimestamp(at_s, dt.UTC)
    if span_s < 3600:
        return when.strftime("%H:%M:%S")
    return when.strftime("%H:%M" if span_s <= 86400 else "%m-%d %H:%M")


def _thin(points: Sequence[Point]) -> Sequence[Point]:
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    return [points[int(i * step)] for i in range(MAX_POINTS)]


def line_chart(
    points: Sequence[Point],
    *,
    title: str,
    unit: str,
    y_min: float | None = None,
    y_max: float | None = None,
) -> Markup:
    """An SVG line chart of `points` (oldest first) titled `title` [unit]."""
    points = _thin(points)
    label = f"{title} ({unit})" if unit else title
    caption = f"{label}, UTC"
    values = [v for _at, v in points if v is not None]
    head = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>"
        f'<text class="chart-title" x="{_LEFT}" y="16">{escape(caption)}</text>'
    )
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    base_y = _TOP + plot_h
    axes = (
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{base_y}"/>'
        f'<line class="axis" x1="{_LEFT}" y1="{base_y}" x2="{WIDTH - _RIGHT}" y2="{base_y}"/>'
    )
    if not values:
        empty = (
            f'<text class="chart-empty" x="{_LEFT + plot_w / 2:.0f}" y="{_TOP + plot_h / 2:.0f}" '
            'text-anchor="middle">no data</text>'
        )
        return Markup(head + axes + empty + "</svg>")  # noqa: S704 - built from escaped parts
    y_axis = _y_axis(values, y_min, y_max)
    times = [at for at, _v in points]
    x_axis = Axis(min(times), max(times))
    parts = [head, axes]
    for i in range(_Y_TICKS + 1):
        value = y_axis.low + (y_axis.high - y_axis.low) * i / _Y_TICKS
        y = y_axis.scale(value, base_y, -plot_h)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_number(value)}</text>"
        )
    span_s = x_axis.high - x_axis.low
    for i in range(_X_TICKS + 1):
        at = x_axis.low + span_s * i / _X_TICKS
        x = x_axis.scale(at, _LEFT, plot_w)
        anchor = "end" if i == _X_TICKS else "middle"
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
            f"{_time(at, span_s)}</text>"
        )
    run: list[str] = []
    runs: list[list[str]] = []
    for at, maybe in points:
        if maybe is None:
            if run:
                runs.append(run)
            run = []
            continue
        px = x_axis.scale(at, _LEFT, plot_w)
        py = y_axis.scale(maybe, base_y, -plot_h)
        run.append(f"{px:.1f},{py:.1f}")
    if run:
        runs.append(run)
    for coords in runs:
        if len(coords) == 1:
            cx, cy = coords[0].split(",")
            parts.append(f'<circle class="series" cx="{cx}" cy="{cy}" r="2"/>')
        else:
            parts.append(f'<polyline class="series" points="{" ".join(coords)}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it is escaped or a number
