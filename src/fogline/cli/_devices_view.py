"""How the devices commands show devices: the table's columns, and one device in full.

The table (`show_rows`) is what `ls` and the commands that change a device
print; `print_device` is `show`'s view, keys right-aligned, with its health.
With `-o json` the hub's rows are printed as they are.
"""

from typing import Any

from fogline.protocol import PLATFORM_LABEL_PREFIX

from ._common import ago, console, print_rows, safe_text, wants_json
from ._format import human_bytes, plural, without_repeated_prefixes
from ._health import health_lines

DEVICE_COLUMNS = [
    ("name", "NAME"),
    ("short_id", "ID"),
    ("status", "STATUS"),
    ("health_level", "HEALTH"),
    ("user_labels", "LABELS"),
    ("arch", "ARCH"),
    ("seen", "LAST SEEN"),
    ("sync_status", "SYNC"),
    ("drift", "DRIFT"),
    ("agent_version", "AGENT"),
]


def sync_text(row: dict[str, Any]) -> str:
    sync = row.get("sync") or {}
    return str(sync.get("status") or "-")


def drift_text(row: dict[str, Any]) -> str:
    drift = ((row.get("reported") or {}).get("modules") or {}).get("drift") or []
    return ", ".join(sorted({f"{d['module']}:{d['kind']}" for d in drift})) or "-"


def for_table(row: dict[str, Any]) -> dict[str, Any]:
    """Table view of a device: short id, relative time, labels without platform facts."""
    labels = {k: v for k, v in row["labels"].items() if not k.startswith(PLATFORM_LABEL_PREFIX)}
    return {
        **row,
        "short_id": row["id"][:8],
        "user_labels": labels,
        "seen": ago(row["last_seen"]),
        "sync_status": sync_text(row),
        "drift": drift_text(row),
        "health_level": row.get("health") or "-",
    }


def show_rows(rows: list[dict[str, Any]], output: Any) -> None:
    print_rows(rows if wants_json(output) else [for_table(r) for r in rows], DEVICE_COLUMNS, output)


def _when(timestamp: str | None) -> str | None:
    """`2026-11-24T21:30:00Z (12s ago)`: to the second, and how long ago."""
    if not timestamp:
        return None
    return f"{timestamp.split('.')[0].removesuffix('Z')}Z ({ago(timestamp)})"


def _labels(labels: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _update_text(name: str, progress: dict[str, Any]) -> str:
    version, state = progress.get("version"), progress.get("state")
    text = f"{version} {state}"
    done, total = progress.get("bytes_done"), progress.get("bytes_total")
    if total:
        text += f", {human_bytes(done or 0)} of {human_bytes(total)}"
    if progress.get("error"):
        # The node's error names the release already: say it once.
        error = without_repeated_prefixes(str(progress["error"]))
        text += f": {error.removeprefix(f'{name} {version}: ')}"
    return text


def device_lines(row: dict[str, Any]) -> list[tuple[str, Any]]:
    """A person's view of one device, as (key, value) lines: identity, sync,
    modules, updates, drift, outbox."""
    lines: list[tuple[str, Any]] = [
        (key.replace("_", " "), row.get(key))
        for key in (
            "name",
            "id",
            "status",
            "health",
            "agent_version",
            "hostname",
            "os",
            "arch",
            "claim_id",
        )
    ]
    lines += [
        ("enrolled", _when(row.get("enrolled_at"))),
        ("last seen", _when(row.get("last_seen"))),
        ("cert expires", _when(row.get("cert_not_after"))),
        ("labels", _labels(row["labels"])),
    ]
    requested = row.get("reported_labels") or {}
    if requested:
        lines.append(
            (
                "requested",
                _labels(requested)
                + "  (asked for by the device; not used for targeting unless promoted)",
            )
        )
    sync = row.get("sync") or {}
    lines += [
        ("sync", sync.get("status")),
        ("desired", sync.get("desired_revision")),
        ("reported", sync.get("reported_revision")),
    ]
    if sync.get("error"):
        lines.append(("sync error", without_repeated_prefixes(str(sync["error"]))))
    reported = row.get("reported") or {}
    modules = reported.get("modules") or {}
    for name, status in sorted((modules.get("modules") or {}).items()):
        detail = f"{status.get('version')} {status.get('state')}"
        if status.get("restarts"):
            detail += f", {plural(status['restarts'], 'restart')}"
        if status.get("last_error"):
            detail += f", {without_repeated_prefixes(str(status['last_error']))}"
        lines.append((f"module {name}", detail))
    for name, progress in sorted((modules.get("progress") or {}).items()):
        lines.append((f"update {name}", _update_text(name, progress)))
    for drift in modules.get("drift") or []:
        lines.append(("drift", f"{drift['module']} {drift['kind']}: {drift['detail']}"))
    if modules.get("drift_policy"):
        corrections = plural(modules.get("drift_corrections", 0), "correction")
        lines.append(("drift policy", f"{modules.get('drift_policy')} ({corrections})"))
    outbox = reported.get("outbox")
    if outbox:
        lines.append(
            (
                "outbox",
                f"{plural(outbox['depth'], 'record')}, {human_bytes(outbox['bytes'])} of "
                f"{human_bytes(outbox['max_bytes'])}; dropped {outbox['dropped_quota']} "
                f"over quota, {outbox['expired']} expired",
            )
        )
    return lines


def print_device(
    row: dict[str, Any],
    health_points: list[dict[str, Any]] | None = None,
    day_points: list[dict[str, Any]] | None = None,
) -> None:
    """Print `device_lines` and its health, keys right-aligned to the longest one."""
    lines = device_lines(row)
    if health_points is not None:
        reported_health = (row.get("reported") or {}).get("health")
        lines += health_lines(reported_health, health_points, day_points)
    width = max(len(safe_text(key, markup=False)) for key, _ in lines)
    for key, value in lines:
        pad = " " * (width - len(safe_text(key, markup=False)))
        text = safe_text("-" if value in (None, "") else value)
        console.print(
            f"{pad}[bold]{safe_text(key)}[/bold]  {text}",
            highlight=False,
            soft_wrap=True,
        )
