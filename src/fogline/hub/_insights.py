"""Fleet AIOps: forecasts over health series, failures grouped, the insights view.

The forecast pass (every `ForecastSettings.interval_s`, from the alerts
task) takes the next `max_devices_per_pass` devices that reported within the
window, by id after where the last pass stopped (so a fleet of 100,000 is
covered over a few passes, each bounded), reads their raw health samples of
the window in one query per 500 devices, thinned in SQL to one sample per
`window / MAX_POINTS` bucket, and fits each series (_forecast.py):

    disk-full-forecast  the data dir's disk full within the horizon
    memory-leak         device memory full within the horizon, or a
                        module's RSS rising like a leak

Alerts go through the alert machinery (_alerts.settle: one active per
device and kind, the webhook, /metrics by kind); a device examined without a
finding has its forecast alerts cleared, as has one revoked or gone quiet.

Groups are read when asked (`GET /v1/insights`, the webhook after a pass that
raised alerts): the active alerts, by kind, grouped by what their devices
share (_peers.group_failures). The insights also list the self-healing
actions the hub took, from the audit trail (_healing_actions.py).
"""

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast

from sqlalchemy import Table, func, or_, select, text, update
from sqlalchemy.orm import Session

from fogline.protocol import ModuleState

from ._alerts import FORECAST_KINDS, AlertFinding, AlertKind, settle
from ._device_labels import effective_labels
from ._forecast import (
    MAX_POINTS,
    Eta,
    ForecastSettings,
    Trend,
    bytes_per_hour,
    disk_forecast,
    leak_trend,
    memory_forecast,
)
from ._healing_actions import recent_actions
from ._health import RAW_STEP_S, epoch_ms
from ._peers import FailureGroup, group_failures
from ._schema import AlertRow, DeviceRow, HealthSampleRow

_LOCK_ID: Final = 0x466F_675F_666F_7263  # "Fog_forc"
_CHUNK: Final = 500
_SAMPLES: Final = cast(Table, HealthSampleRow.__table__)
_ALERTS: Final = cast(Table, AlertRow.__table__)
_ACTIVE: Final = select(_ALERTS.c.id, _ALERTS.c.device_id, _ALERTS.c.kind).where(
    _ALERTS.c.cleared_at.is_(None)
)
# Alerts read to group, at most: the newest first.
MAX_GROUPED_ALERTS: Final = 10_000
MAX_LISTED: Final = 1000


def forecast_pass(
    session: Session,
    now: dt.datetime,
    settings: ForecastSettings,
    after: str,
    visit: Callable[[str, list[Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """One bounded pass in the caller's transaction, starting after device id
    `after`; returns the new alerts and where the next pass starts ("" to
    begin again). `visit` sees each device's samples too (the self-healing
    restarts, _restart_healing.py: one read of the series for both)."""
    if session.get_bind().dialect.name == "postgresql":
        got = session.scalar(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        if not got:
            return [], after
    connection = session.connection()
    quiet_before = now - dt.timedelta(seconds=settings.window_s)
    devices = connection.execute(
        select(DeviceRow.id, DeviceRow.name)
        .where(
            DeviceRow.revoked_at.is_(None),
            DeviceRow.last_seen >= quiet_before,
            DeviceRow.id > after,
        )
        .order_by(DeviceRow.id)
        .limit(settings.max_devices_per_pass)
    ).all()
    names = {d.id: d.name for d in devices}
    ids = list(names)
    found: dict[str, dict[AlertKind, AlertFinding]] = {}
    active: list[Any] = []
    since_ms = epoch_ms(now) - int(settings.window_s * 1000)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for device_id, points in _series(connection, chunk, since_ms, settings).items():
            if visit is not None:
                visit(device_id, points)
            findings = judge(points, settings)
            if findings:
                found[device_id] = findings
        active.extend(
            connection.execute(
                _ACTIVE.where(
                    _ALERTS.c.kind.in_(sorted(FORECAST_KINDS)), _ALERTS.c.device_id.in_(chunk)
                )
            )
        )
    raised = settle(connection, now, active, found, names)
    # Devices no pass examines any more: revoked, or quiet for the window.
    gone = select(DeviceRow.id).where(
        or_(
            DeviceRow.revoked_at.is_not(None),
            DeviceRow.last_seen.is_(None),
            DeviceRow.last_seen < quiet_before,
        )
    )
    connection.execute(
        update(_ALERTS)
        .where(
            _ALERTS.c.cleared_at.is_(None),
            _ALERTS.c.kind.in_(sorted(FORECAST_KINDS)),
            _ALERTS.c.device_id.in_(gone),
        )
        .values(cleared_at=now)
    )
    full = len(ids) == settings.max_devices_per_pass
    return raised, ids[-1] if full else ""


def _series(
    connection: Any, ids: list[str], since_ms: int, settings: ForecastSettings
) -> dict[str, list[Any]]:
    """Raw samples of the window per device, oldest first, the last of each
    bucket only: a device reporting every second sends 21,600 samples in 6
    hours, and a fit needs MAX_POINTS."""
    bucket_ms = max(int(settings.window_s * 1000) // MAX_POINTS, 1)
    at = _SAMPLES.c.at_ms
    device = _SAMPLES.c.device_id
    ranked = (
        select(
            device,
            at,
            _SAMPLES.c.disk_free_bytes,
            _SAMPLES.c.disk_total_bytes,
            _SAMPLES.c.mem_used_bytes,
            _SAMPLES.c.mem_available_bytes,
            _SAMPLES.c.modules,
            func.row_number()
            .over(partition_by=(device, at - at % bucket_ms), order_by=at.desc())
            .label("rank"),
        )
        .where(_SAMPLES.c.step_s == RAW_STEP_S, at >= since_ms, device.in_(ids))
        .subquery()
    )
    rows = connection.execute(
        select(*(c for c in ranked.c if c.name != "rank"))
        .where(ranked.c.rank == 1)
        .order_by(ranked.c.device_id, ranked.c.at_ms)
    )
    out: dict[str, list[Any]] = {}
    for row in rows:
        out.setdefault(row.device_id, []).append(row)
    return out


def judge(points: list[Any], settings: ForecastSettings) -> dict[AlertKind, AlertFinding]:
    """The forecasts of one device's series (rows of at_ms, disk and memory
    figures, modules), oldest first."""
    found: dict[AlertKind, AlertFinding] = {}
    disk = [(p.at_ms / 1000, p.disk_free_bytes) for p in points if p.disk_free_bytes is not None]
    eta = disk_forecast([t for t, _ in disk], [v for _, v in disk], settings)
    if eta is not None:
        total = next((p.disk_total_bytes for p in reversed(points) if p.disk_total_bytes), None)
        found[AlertKind.DISK_FULL_FORECAST] = AlertFinding(
            f"disk full in {eta.words()}"
            + (f" ({disk[-1][1] / total * 100:.1f} % free now)" if total else ""),
            {"metric": "disk_free_bytes", **_eta_data(eta)},
        )
    words: list[str] = []
    data: dict[str, Any] = {}
    memory = [
        (p.at_ms / 1000, p.mem_used_bytes, p.mem_used_bytes + p.mem_available_bytes)
        for p in points
        if p.mem_used_bytes is not None and p.mem_available_bytes is not None
    ]
    if memory:
        fit = memory_forecast(
            [m[0] for m in memory], [m[1] for m in memory], memory[-1][2], settings
        )
        if fit is not None:
            trend, mem_eta = fit
            words.append(f"memory full in {mem_eta.words()}, rising {_rate(trend)}")
            data["memory"] = {**_eta_data(mem_eta), **_trend_data(trend)}
    modules: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        for name, module in (p.modules or {}).items():
            rss = module.get("rss_bytes") if isinstance(module, dict) else None
            if isinstance(rss, int):
                modules.setdefault(str(name), []).append((p.at_ms / 1000, float(rss)))
    for name, series in sorted(modules.items()):
        leak = leak_trend([t for t, _ in series], [v for _, v in series], settings)
        if leak is not None:
            words.append(f"{name} RSS rising {_rate(leak)}")
            data.setdefault("modules", {})[name] = _trend_data(leak)
    if words:
        found[AlertKind.MEMORY_LEAK] = AlertFinding("; ".join(words), data)
    return found


def _rate(trend: Trend) -> str:
    low, high = bytes_per_hour(trend.low_slope), bytes_per_hour(trend.high_slope)
    return f"{bytes_per_hour(trend.slope)} ({low.split()[0]}-{high})"


def _eta_data(eta: Eta) -> dict[str, Any]:
    return {
        "seconds": round(eta.seconds, 1),
        "earliest_s": round(eta.earliest_s, 1),
        "latest_s": None if eta.latest_s == float("inf") else round(eta.latest_s, 1),
    }


def _trend_data(trend: Trend) -> dict[str, Any]:
    return {
        "bytes_per_s": trend.slope,
        "low_bytes_per_s": trend.low_slope,
        "high_bytes_per_s": trend.high_slope,
        "points": trend.points,
    }


# -- groups and the insights view ------------------------------------------------------


def failure_groups(session: Session, kinds: Iterable[str] | None = None) -> list[FailureGroup]:
    """The active alerts of `kinds` (every kind: None), grouped per kind by
    what their devices share, largest first."""
    query = (
        select(
            _ALERTS.c.kind,
            DeviceRow.id,
            DeviceRow.labels,
            DeviceRow.platform_labels,
            DeviceRow.reported,
        )
        .join(DeviceRow, DeviceRow.id == _ALERTS.c.device_id)
        .where(_ALERTS.c.cleared_at.is_(None))
        .order_by(_ALERTS.c.raised_at.desc())
        .limit(MAX_GROUPED_ALERTS)
    )
    if kinds is not None:
        query = query.where(_ALERTS.c.kind.in_(list(kinds)))
    by_kind: dict[str, dict[str, frozenset[str]]] = {}
    for row in session.execute(query):
        by_kind.setdefault(row.kind, {})[row.id] = attributes(row.kind, row)
    groups = [g for kind in sorted(by_kind) for g in group_failures(kind, by_kind[kind])]
    groups.sort(key=lambda g: -len(g.device_ids))
    return groups


def attributes(kind: str, device: Any) -> frozenset[str]:
    """What a failing device has that others may share: its releases
    (`name@version`; of the looping modules only, for a crash loop) and its
    labels (`key=value`: site, model, the hub's arch and os)."""
    reported: Mapping[str, Any] = device.reported or {}
    modules = (reported.get("modules") or {}).get("modules") or {}
    have = {
        f"{str(name)[:64]}@{str(m.get('version'))[:64]}"
        for name, m in list(modules.items())[:64]
        if isinstance(m, dict)
        and m.get("version")
        and (kind != AlertKind.CRASH_LOOP or m.get("state") == ModuleState.CRASH_LOOP)
    }
    have.update(f"{k}={v}" for k, v in effective_labels(device).items())
    return frozenset(have)


def group_view(group: FailureGroup, names: Mapping[str, str]) -> dict[str, Any]:
    shown = [names.get(d, d) for d in group.device_ids[:20]]
    key = f"{group.kind}|{'|'.join(group.shared)}"
    return {
        "id": hashlib.sha256(key.encode()).hexdigest()[:16],
        "kind": group.kind,
        "summary": group.words(),
        "count": len(group.device_ids),
        "shared": list(group.shared),
        "devices": shown,
    }


def device_names(session: Session, ids: set[str]) -> dict[str, str]:
    named = select(DeviceRow.id, DeviceRow.name).where(DeviceRow.id.in_(ids))
    return {row.id: row.name for row in session.execute(named)}


def insights(session: Session, now: dt.datetime) -> dict[str, Any]:
    """`GET /v1/insights`: forecasts, peer anomalies, failure groups and the
    self-healing actions of the last day (_healing_actions.py)."""
    rows = session.execute(
        select(_ALERTS)
        .where(
            _ALERTS.c.cleared_at.is_(None),
            _ALERTS.c.kind.in_([*FORECAST_KINDS, AlertKind.PEER_ANOMALY]),
        )
        .order_by(_ALERTS.c.raised_at.desc())
        .limit(MAX_LISTED)
    ).all()

    def view(row: Any) -> dict[str, Any]:
        return {
            "alert_id": row.id,
            "kind": row.kind,
            "device_id": row.device_id,
            "device": row.device_name,
            "detail": row.detail,
            "data": row.data,
            "raised_at": row.raised_at,
        }

    groups = failure_groups(session)
    ids = {d for g in groups for d in g.device_ids[:20]}
    names = device_names(session, ids)
    return {
        "forecasts": [view(r) for r in rows if r.kind in FORECAST_KINDS],
        "anomalies": [view(r) for r in rows if r.kind == AlertKind.PEER_ANOMALY],
        "groups": [group_view(g, names) for g in groups[:MAX_LISTED]],
        "actions": recent_actions(session, now),
    }
