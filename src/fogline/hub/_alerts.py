"""Alerts the hub raises by itself, from what devices report and when.

A pass (every `AlertThresholds.interval_s`, _alert_pass.py) judges the
devices that are not revoked against the thresholds (`firing`), raises an
alert for each (device, kind) newly firing and clears the active ones that
no longer fire: one active alert per device and kind, however many passes
see it. New alerts go to the webhook given to `hub serve --alert-webhook`, if any.

    offline        no report for longer than `offline_after_s`
    crash-loop     a module in crash-loop (its last report), or, with
                   `crash_loop_restarts` set, restarted automatically at
                   least that many times (its version's count)
    disk-low       disk free below `disk_free_min` of the data dir's filesystem
    memory-high    memory used above `memory_used_max`
    cert-expiring  the device certificate expires within `cert_expiry_s`
    peer-anomaly   a figure far from its peers' (same deployments and
                   hardware; robust z-score, see _peers.py)
    outbox-dropping  a report showed the node's outbox losing records (over
                   its quota, expired, dead-lettered) within the last
                   `outbox_quiet_s`: cleared once that long passes without one

Forecast kinds (`disk-full-forecast`, `memory-leak`) are raised and cleared
by the forecast pass (_insights.py), for the devices it examined; a pass here
leaves them alone. An alert's `data` holds what its detail says, as data.

Each pass also writes every device's `health`, the worst of its active
alerts this pass found (`SEVERITY`): `critical` for offline, crash-loop and
disk-low (the node or a module is not doing its job, or soon cannot write), `warning` for
the others, `ok` without one; `GET /v1/devices?health=` filters on it.

Webhook delivery is bounded: one POST per new alert, `webhook_timeout_s`
each, at most `_MAX_QUEUED` waiting (the oldest dropped, logged), no retry;
the alert stays in `fogline alerts ls` whatever the webhook does. The same
queue carries failure groups and the self-healing actions the hub takes
(`"kind": "self-healing"`, _healing_actions.py), one POST each.
"""

import asyncio
import datetime as dt
import enum
import logging
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

import httpx
from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.orm import Session

from fogline._log import event
from fogline.protocol import ModuleState

from ._schema import AlertRow

log = logging.getLogger("fogline.hub.alerts")
_MAX_QUEUED: Final = 1000
_MAX_DETAIL: Final = 512
_LOCK_ID: Final = 0x466F_675F_616C_7274  # "Fog_alrt"


class AlertKind(enum.StrEnum):
    OFFLINE = "offline"
    CRASH_LOOP = "crash-loop"
    DISK_LOW = "disk-low"
    MEMORY_HIGH = "memory-high"
    CERT_EXPIRING = "cert-expiring"
    PEER_ANOMALY = "peer-anomaly"
    DISK_FULL_FORECAST = "disk-full-forecast"
    MEMORY_LEAK = "memory-leak"
    OUTBOX_DROPPING = "outbox-dropping"


# Judged by the forecast pass over a share of the fleet at a time, not here.
FORECAST_KINDS: Final = frozenset({AlertKind.DISK_FULL_FORECAST, AlertKind.MEMORY_LEAK})
HEALTH_LEVELS: Final = ("ok", "warning", "critical")  # best to worst
SEVERITY: Final[Mapping[AlertKind, str]] = {
    AlertKind.OFFLINE: "critical",
    AlertKind.CRASH_LOOP: "critical",
    AlertKind.DISK_LOW: "critical",
    AlertKind.MEMORY_HIGH: "warning",
    AlertKind.CERT_EXPIRING: "warning",
    AlertKind.OUTBOX_DROPPING: "warning",
    AlertKind.PEER_ANOMALY: "warning",
    AlertKind.DISK_FULL_FORECAST: "warning",
    AlertKind.MEMORY_LEAK: "warning",
}


def health_of(kinds: Iterable[AlertKind]) -> str:
    """The worst level of these alerts; `ok` without one."""
    return max((SEVERITY[k] for k in kinds), key=HEALTH_LEVELS.index, default="ok")


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """When alerts fire; `hub serve --alert-*` sets them."""

    offline_after_s: float = 300.0
    crash_loop_restarts: int = 0  # 0: the module's crash-loop state only
    disk_free_min: float = 0.10
    memory_used_max: float = 0.90
    cert_expiry_s: float = 30 * 86400.0
    interval_s: float = 10.0
    # Two passes: a drop between two passes is seen by the next one, and
    # the alert clears at most two passes after the last drop.
    outbox_quiet_s: float = 20.0
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0


def firing(row: Any, now: dt.datetime, thresholds: AlertThresholds) -> dict[AlertKind, str]:
    """What fires for one device now, and why in words (pure: row in, verdict out)."""
    found: dict[AlertKind, str] = {}
    # A device that never reported is judged from its enrollment: no alert
    # for the second between enrolling and its first report.
    seen = row.last_seen or row.enrolled_at
    if (now - seen).total_seconds() > thresholds.offline_after_s:
        found[AlertKind.OFFLINE] = (
            "never reported" if row.last_seen is None else f"last seen {seen:%Y-%m-%d %H:%M:%S}Z"
        )
    if (row.cert_not_after - now).total_seconds() < thresholds.cert_expiry_s:
        found[AlertKind.CERT_EXPIRING] = f"certificate expires {row.cert_not_after:%Y-%m-%d %H:%M}Z"
    reported: Mapping[str, Any] = row.reported or {}
    modules = (reported.get("modules") or {}).get("modules") or {}
    restarts = thresholds.crash_loop_restarts
    looping = sorted(
        str(name)[:64]
        for name, m in modules.items()
        if isinstance(m, dict)
        and (
            m.get("state") == ModuleState.CRASH_LOOP
            or (restarts > 0 and isinstance(m.get("restarts"), int) and m["restarts"] >= restarts)
        )
    )
    if looping:
        found[AlertKind.CRASH_LOOP] = "crash-looping: " + ", ".join(looping[:8])
    lost_at = row.outbox_lost_at
    if lost_at is not None and (now - lost_at).total_seconds() <= thresholds.outbox_quiet_s:
        outbox = reported.get("outbox") or {}
        found[AlertKind.OUTBOX_DROPPING] = (
            f"outbox lost {row.outbox_lost} records so far (over quota "
            f"{outbox.get('dropped_quota', 0)}, expired {outbox.get('expired', 0)}, "
            f"dead-lettered {outbox.get('dead_lettered', 0)}); last at {lost_at:%H:%M:%S}Z"
        )
    health = reported.get("health") or {}
    free, total = health.get("disk_free_bytes"), health.get("disk_total_bytes")
    if (
        isinstance(free, int)
        and isinstance(total, int)
        and 0 <= free < total * thresholds.disk_free_min
    ):
        found[AlertKind.DISK_LOW] = f"{free / total * 100:.1f} % disk free"
    used, available = health.get("mem_used_bytes"), health.get("mem_available_bytes")
    if isinstance(used, int) and isinstance(available, int) and used + available > 0:
        share = used / (used + available)
        if share > thresholds.memory_used_max:
            found[AlertKind.MEMORY_HIGH] = f"{share * 100:.1f} % memory used"
    return found


@dataclass(frozen=True, slots=True)
class AlertFinding:
    """Why an alert fires, in words and as data."""

    detail: str
    data: Mapping[str, Any] | None = None


def settle(
    connection: Any,
    now: dt.datetime,
    active: Any,
    found: Mapping[str, Mapping[AlertKind, AlertFinding]],
    names: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Raise what is found and not active, clear the `active` alerts (rows of
    id, device_id, kind: those the caller judged) no longer found; returns the
    new alerts as `alert_view` shows them."""
    current = {(a.device_id, a.kind): a.id for a in active}
    raised: list[dict[str, Any]] = []
    still: set[tuple[str, str]] = set()
    for device_id, kinds in found.items():
        for kind, finding in kinds.items():
            still.add((device_id, kind.value))
            if (device_id, kind.value) not in current:
                raised.append(
                    {
                        "id": uuid.uuid4().hex,
                        "kind": kind.value,
                        "device_id": device_id,
                        "device_name": names[device_id],
                        "detail": finding.detail[:_MAX_DETAIL],
                        "raised_at": now,
                        "data": dict(finding.data) if finding.data is not None else None,
                    }
                )
    if raised:
        connection.execute(insert(_ALERTS), raised)
    gone = [alert_id for key, alert_id in current.items() if key not in still]
    for chunk in range(0, len(gone), 500):
        connection.execute(
            update(_ALERTS)
            .where(_ALERTS.c.id.in_(gone[chunk : chunk + 500]))
            .values(cleared_at=now)
        )
    shown = {"cleared_at": None, "acked_at": None, "acked_by": None, "active": True}
    return [
        {
            **{k: v for k, v in alert.items() if k != "device_name"},
            "device": alert["device_name"],
            **shown,
        }
        for alert in raised
    ]


_ALERTS: Final = cast(Table, AlertRow.__table__)
_ACTIVE: Final = select(_ALERTS.c.id, _ALERTS.c.device_id, _ALERTS.c.kind).where(
    _ALERTS.c.cleared_at.is_(None)
)


def alert_view(row: AlertRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "device_id": row.device_id,
        "device": row.device_name,
        "detail": row.detail,
        "raised_at": row.raised_at,
        "cleared_at": row.cleared_at,
        "acked_at": row.acked_at,
        "acked_by": row.acked_by,
        "active": row.cleared_at is None,
        "data": row.data,
    }


def list_alerts(session: Session, *, active: bool, limit: int) -> list[AlertRow]:
    """Alerts, newest first, at most `limit`; `active`: those not cleared."""
    query = select(AlertRow).order_by(AlertRow.raised_at.desc()).limit(limit)
    if active:
        query = query.where(AlertRow.cleared_at.is_(None))
    return list(session.scalars(query))


def count_active_by_kind(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(AlertRow.kind, func.count())
        .where(AlertRow.cleared_at.is_(None))
        .group_by(AlertRow.kind)
    ).all()
    counts = {str(kind): int(count) for kind, count in rows}
    return {kind.value: int(counts.get(kind.value, 0)) for kind in AlertKind}


class AlertWebhook:
    """Posts new alerts to one URL, one at a time, bounded in time and queue."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._queue: deque[dict[str, Any]] = deque(maxlen=_MAX_QUEUED)
        self._wake = asyncio.Event()

    def send(self, alerts: list[dict[str, Any]]) -> None:
        for alert in alerts:
            if len(self._queue) == self._queue.maxlen:
                event(log, "alerts.webhook_dropped", logging.WARNING, alert=self._queue[0]["id"])
            self._queue.append(alert)
        if alerts:
            self._wake.set()

    async def run(self) -> None:
        if self._queue:  # restarted by the hub's supervisor with alerts waiting
            self._wake.set()
        async with httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False) as http:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    alert = self._queue.popleft()
                    try:
                        async with asyncio.timeout(self._timeout_s):
                            response = await http.post(self._url, json=_jsonable(alert))
                        outcome = str(response.status_code)
                    except (httpx.HTTPError, TimeoutError) as exc:
                        outcome = type(exc).__name__
                    event(log, "alerts.webhook", alert=alert["id"], outcome=outcome)


def _jsonable(alert: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in alert.items()}
