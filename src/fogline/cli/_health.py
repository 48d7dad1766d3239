"""Device health as people read it: `devices show` lines and `devices health` rows.

Units are fixed so columns compare across devices: MiB, %, °C.
"""

from typing import Any, Final

from ._common import ago

_BARS: Final = "▁▂▃▄▅▆▇█"
# Points of a trend: a line of text, not a chart.
TREND_POINTS: Final = 24

HEALTH_COLUMNS: Final = [
    ("when", "TIME"),
    ("cpu", "CPU %"),
    ("load", "LOAD 1/5/15"),
    ("mem_used", "MEM USED MiB"),
    ("mem_available", "MEM AVAIL MiB"),
    ("disk_free", "DISK FREE MiB"),
    ("temperature", "TEMP °C"),
    ("net_rx", "RX MiB"),
    ("net_tx", "TX MiB"),
    ("agent_rss", "AGENT MiB"),
]


def mib(size: int | float | None) -> str:
    return "-" if size is None else f"{size / 2**20:,.0f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def trend(values: list[float | None]) -> str:
    """The last TREND_POINTS values as a sparkline (a gap where a value is missing)."""
    recent = values[-TREND_POINTS:]
    known = [v for v in recent if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low or 1.0
    return "".join(
        " " if v is None else _BARS[min(int((v - low) / span * (len(_BARS) - 1)), 7)]
        for v in recent
    )


def _spread(values: list[float | None], scale: float = 1.0, digits: int = 1) -> str | None:
    known = [v / scale for v in values if v is not None]
    if not known:
        return None
    low, mean, high = min(known), sum(known) / len(known), max(known)
    return f"{low:,.{digits}f}/{mean:,.{digits}f}/{high:,.{digits}f}"


def day_summary(points: list[dict[str, Any]]) -> str | None:
    """min/avg/max over `points` (a day's series as the hub steps it: each
    point its step's mean CPU and memory, least disk free, most temperature);
    None without any."""
    parts = []
    for label, key, scale, unit in (
        ("cpu", "cpu_percent", 1.0, "%"),
        ("memory used", "mem_used_bytes", 2.0**20, "MiB"),
        ("disk free", "disk_free_bytes", 2.0**20, "MiB"),
        ("temperature", "temperature_c", 1.0, "°C"),
    ):
        spread = _spread([p.get(key) for p in points], scale, 1 if unit != "MiB" else 0)
        if spread is not None:
            parts.append(f"{label} {spread} {unit}")
    if not parts:
        return None
    return f"min/avg/max over {len(points)} points: " + ", ".join(parts)


def health_lines(
    health: dict[str, Any] | None,
    points: list[dict[str, Any]],
    day: list[dict[str, Any]] | None = None,
) -> list[tuple[str, str]]:
    """`devices show` lines: the last report's values, with the series' trend
    (`points`, oldest first) after CPU and memory, and a day's min/avg/max
    (`day`)."""
    if not health:
        return [("health", "not reported (an agent before device health)")]

    def with_trend(text: str, key: str) -> str:
        line = trend([p.get(key) for p in points])
        return f"{text}  {line}" if line else text

    lines = []
    load = [health.get(k) for k in ("load1", "load5", "load15")]
    cpu = f"{_num(health.get('cpu_percent'))} %, load {' '.join(_num(v, 2) for v in load)}"
    lines.append(("cpu", with_trend(cpu, "cpu_percent")))
    used, available = health.get("mem_used_bytes"), health.get("mem_available_bytes")
    memory = f"{mib(used)} MiB used, {mib(available)} MiB available"
    if used is not None and available is not None and used + available:
        memory += f" ({used / (used + available) * 100:.0f} % used)"
    lines.append(("memory", with_trend(memory, "mem_used_bytes")))
    free, total = health.get("disk_free_bytes"), health.get("disk_total_bytes")
    disk = f"{mib(free)} MiB free of {mib(total)} MiB"
    if free is not None and total:
        disk += f" ({free / total * 100:.0f} % free)"
    lines.append(("disk", disk))
    if health.get("temperature_c") is not None:
        lines.append(("temperature", f"{health['temperature_c']:.1f} °C"))
    lines.append(
        (
            "network",
            f"{mib(health.get('net_rx_bytes'))} MiB in, "
            f"{mib(health.get('net_tx_bytes'))} MiB out since boot",
        )
    )
    lines.append(("agent", f"{mib(health.get('agent_rss_bytes'))} MiB resident"))
    summary = day_summary(day or [])
    if summary is not None:
        lines.append(("24 h", summary))
    for name, module in sorted((health.get("modules") or {}).items()):
        use = f"{_num(module.get('cpu_percent'))} % cpu, {mib(module.get('rss_bytes'))} MiB"
        state, restarts = module.get("state") or "-", module.get("restarts") or 0
        lines.append((f"health {name}", f"{state}, {use}, {restarts} restarts"))
    return lines


def point_row(point: dict[str, Any]) -> dict[str, Any]:
    """A series point as a `devices health` table row."""
    load = [point.get(k) for k in ("load1", "load5", "load15")]
    return {
        "when": ago(point["at"]),
        "cpu": _num(point.get("cpu_percent")),
        "load": "/".join(_num(v, 2) for v in load),
        "mem_used": mib(point.get("mem_used_bytes")),
        "mem_available": mib(point.get("mem_available_bytes")),
        "disk_free": mib(point.get("disk_free_bytes")),
        "temperature": _num(point.get("temperature_c")),
        "net_rx": mib(point.get("net_rx_bytes")),
        "net_tx": mib(point.get("net_tx_bytes")),
        "agent_rss": mib(point.get("agent_rss_bytes")),
    }
