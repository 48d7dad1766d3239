"""The console's SVG line charts (fogline.hub.console._svg): pure, no hub."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from fogline.hub.console._svg import MAX_POINTS, line_chart

NS = {"svg": "http://www.w3.org/2000/svg"}


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_points_become_a_polyline_inside_the_plot_with_labelled_axes() -> None:
    svg = _parse(
        str(
            line_chart(
                [(0, 10.0), (60, 50.0), (120, 90.0)], title="CPU", unit="%", y_min=0, y_max=100
            )
        )
    )
    (line,) = svg.findall("svg:polyline", NS)
    coords = [tuple(map(float, p.split(","))) for p in line.get("points", "").split()]
    assert len(coords) == 3
    xs, ys = [x for x, _ in coords], [y for _, y in coords]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # higher value, higher on screen
    ticks = [t.text for t in svg.findall("svg:text", NS) if t.get("class") == "tick"]
    assert "0" in ticks and "100" in ticks and ":" in (ticks[-1] or "")
    assert svg.get("aria-label") == "CPU (%)"


def test_a_gap_splits_the_line_and_a_lone_point_is_a_dot() -> None:
    svg = _parse(str(line_chart([(0, 1.0), (1, 2.0), (2, None), (3, 3.0)], title="t", unit="")))
    assert len(svg.findall("svg:polyline", NS)) == 1
    assert len(svg.findall("svg:circle", NS)) == 1


def test_no_data_says_so_and_text_is_escaped() -> None:
    svg = str(line_chart([(0, None)], title="<script>x</script>", unit="&"))
    assert "<script>" not in svg and "no data" in svg
    _parse(svg)


def test_a_long_series_is_thinned_to_max_points() -> None:
    svg = _parse(
        str(
            line_chart(
                [(float(i), float(i % 7)) for i in range(10 * MAX_POINTS)], title="t", unit=""
            )
        )
    )
    (line,) = svg.findall("svg:polyline", NS)
    assert len(line.get("points", "").split()) == MAX_POINTS
    assert not re.search(r"nan|inf", line.get("points", ""))
