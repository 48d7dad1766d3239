"""The alert pass: judge devices (_alerts.firing, peers), raise and clear.

A device's alerts change when it reports (its `last_seen` moves), when time
carries it over a threshold (offline, its certificate's expiry, the end of
the outbox's quiet period) or when its peers move. So a pass reads only
those devices: the ones that reported since the last pass, or whose
`last_seen`, `cert_not_after` or `outbox_lost_at` crossed a threshold since
then, or whose certificate was renewed while its expiry was alerted (ranges
in SQL, with `_MARGIN` of overlap for a report committed a moment after its
`last_seen`). It settles only those devices' alerts (and writes their
health); the rest stand as the last read left them, kept here in a few
fields per device (never the report itself). Peers are judged again every
`peers_every` passes that read something, from the figures kept: a device
whose peers moved it in or out of an anomaly is settled then.

The first pass, one in `resync_every`, one after the deployments changed
(peer groups are named by deployment) and one that finds a device count it
did not expect (a device revoked or removed) read every device and every
active alert. What a steady pass cannot see until then: an operator's label
edit on a device that does not report (labels only move its peer group).

With PostgreSQL replicas one pass runs at a time (an advisory lock; the
others return nothing), so an alert is raised once. On SQLite a second
worker's pass that read before the first committed cannot write (its
snapshot is stale) and is tried again next time. Each worker keeps its own
view, read from the database.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from sqlalchemy import Table, and_, bindparam, func, or_, select, text, update
from sqlalchemy.orm import Session

from fogline.manifest import Deployment

from ._alerts import (
    FORECAST_KINDS,
    AlertFinding,
    AlertKind,
    AlertThresholds,
    firing,
    health_of,
    settle,
)
from ._desired import ID_CHUNK
from ._device_labels import effective_labels
from ._peers import PeerFigure, device_figures, peer_anomalies, peer_key
from ._schema import AlertRow, DeviceRow

_LOCK_ID: Final = 0x466F_675F_616C_7274  # "Fog_alrt"
# Overlap between passes' ranges: a report's `last_seen` is taken a moment
# (milliseconds) before its batch commits, and replicas' clocks differ a
# little. Each device read again within it costs a read, no more.
_MARGIN: Final = dt.timedelta(seconds=2)
# A device is flagged for its most-off figures, at most this many.
_MAX_ANOMALIES_SHOWN: Final = 3


@dataclass(slots=True)
class _Judged:
    """What a pass keeps of a device between reads."""

    name: str
    health: str  # as written in devices.health
    found: dict[AlertKind, AlertFinding]  # every kind but peers and forecasts
    labels: dict[str, str]
    reported_health: Mapping[str, Any] | None
    figures: list[PeerFigure]


class AlertPass:
    """Alert passes over one database, each reading only what can have changed."""

    def __init__(
        self, thresholds: AlertThresholds, *, resync_every: int = 30, peers_every: int = 6
    ) -> None:
        self._thresholds = thresholds
        self._resync_every = resync_every
        self._peers_every = peers_every
        self._devices: dict[str, _Judged] = {}
        self._last: dt.datetime | None = None
        self._passes = 0
        self._deployments: list[Deployment] | None = None
        self._peers: dict[str, AlertFinding] = {}
        self.read_last_pass = 0  # devices the last pass read: what tests and benchmarks watch

    def run(
        self, session: Session, now: dt.datetime, deployments: Sequence[Deployment]
    ) -> list[dict[str, Any]]:
        """One pass in the caller's transaction: returns the new alerts (as
        `alert_view` shows them). `deployments`: the hub's parsed cache."""
        if session.get_bind().dialect.name == "postgresql":
            got = session.scalar(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
            if not got:
                return []
        connection = session.connection()
        full = (
            self._last is None
            or now < self._last  # the clock went back: the ranges mean nothing
            or self._passes % self._resync_every == 0
            or list(deployments) != self._deployments  # the same objects while unchanged
        )
        if not full:
            rows = connection.execute(_DEVICES.where(self._changed_since(now))).all()
            self._keep(rows, now, deployments)
            full = connection.scalar(_COUNT) != len(self._devices)
        if full:
            rows = connection.execute(_DEVICES).all()
            self._devices = {}
            self._keep(rows, now, deployments)
        self.read_last_pass = len(rows)
        # Judged again: the devices read, and those whose peers moved them in
        # or out of an anomaly (a pass that read every device judges all).
        judged = {row.id for row in rows}
        if full or (rows and self._passes % self._peers_every == 0):
            peers = _peer_findings(self._devices)
            judged |= (peers.keys() ^ self._peers.keys()) & self._devices.keys()
            self._peers = peers
        self._deployments = list(deployments)
        self._last = now
        self._passes += 1

        found = {device_id: self._found(device_id) for device_id in judged}
        names = {device_id: self._devices[device_id].name for device_id in judged}
        if full:  # every active alert: those of devices revoked or removed clear
            active = connection.execute(_ACTIVE).all()
        else:
            active = _active_of(connection, sorted(judged))
        raised = settle(connection, now, active, found, names)
        self._write_health(connection, found, active)
        return raised

    def _found(self, device_id: str) -> dict[AlertKind, AlertFinding]:
        found = self._devices[device_id].found
        peer = self._peers.get(device_id)
        return found if peer is None else {**found, AlertKind.PEER_ANOMALY: peer}

    def _changed_since(self, now: dt.datetime) -> Any:
        """Devices whose judgement can have changed since the last pass."""
        assert self._last is not None
        since = self._last - _MARGIN
        thresholds = self._thresholds
        offline = dt.timedelta(seconds=thresholds.offline_after_s)
        expiry = dt.timedelta(seconds=thresholds.cert_expiry_s)
        quiet = dt.timedelta(seconds=thresholds.outbox_quiet_s)
        return or_(
            DeviceRow.last_seen >= since,  # reported (or enrolled)
            and_(  # went offline
                DeviceRow.last_seen >= since - offline, DeviceRow.last_seen < now - offline
            ),
            and_(  # went offline never having reported
                DeviceRow.last_seen.is_(None),
                DeviceRow.enrolled_at >= since - offline,
                DeviceRow.enrolled_at < now - offline,
            ),
            and_(  # its certificate came within the warning
                DeviceRow.cert_not_after >= since + expiry,
                DeviceRow.cert_not_after < now + expiry,
            ),
            and_(  # renewed (or given a certificate by any other way) while warned
                DeviceRow.id.in_(_CERT_WARNED),
                DeviceRow.cert_not_after >= now + expiry,
            ),
            and_(  # its outbox has been quiet long enough
                DeviceRow.outbox_lost_at >= since - quiet,
                DeviceRow.outbox_lost_at < now - quiet,
            ),
        )

    def _keep(
        self, rows: Sequence[Any], now: dt.datetime, deployments: Sequence[Deployment]
    ) -> None:
        for row in rows:
            labels = effective_labels(row)
            health = (row.reported or {}).get("health") or None
            self._devices[row.id] = _Judged(
                name=row.name,
                health=row.health,
                found={
                    kind: AlertFinding(detail)
                    for kind, detail in firing(row, now, self._thresholds).items()
                },
                labels=labels,
                reported_health=health,
                figures=_figures(row.id, labels, health, deployments),
            )

    def _write_health(
        self,
        connection: Any,
        found: Mapping[str, Mapping[AlertKind, AlertFinding]],
        active: Sequence[Any],
    ) -> None:
        """Each device's `health`: the worst kind this pass found (`SEVERITY`)."""
        changes = []
        for device_id, kinds in found.items():
            judged = self._devices[device_id]
            level = health_of(kinds)
            if level != judged.health:
                changes.append({"b_id": device_id, "health": level})
                judged.health = level
        # A revoked device is judged no more: its alerts clear in settle, its
        # health with them (a device's health is never other than ok without one).
        changes += [
            {"b_id": device_id, "health": "ok"}
            for device_id in sorted({alert.device_id for alert in active} - self._devices.keys())
        ]
        if changes:
            connection.execute(_SET_HEALTH, changes)


def _active_of(connection: Any, ids: Sequence[str]) -> list[Any]:
    """The active alerts of these devices (the pass's kinds), by the index on
    device: SQLite's planner would walk the one on cleared_at, every active
    alert of the fleet, for each chunk of devices."""
    statement = _ACTIVE_OF_SQLITE if connection.dialect.name == "sqlite" else _ACTIVE_OF
    return [
        alert
        for start in range(0, len(ids), ID_CHUNK)
        for alert in connection.execute(statement, {"ids": ids[start : start + ID_CHUNK]})
    ]


def _figures(
    device_id: str,
    labels: Mapping[str, str],
    health: Mapping[str, Any] | None,
    deployments: Sequence[Deployment],
) -> list[PeerFigure]:
    if not health:
        return []
    chosen = [d.name for d in deployments if d.selector.matches(labels)]
    return device_figures(device_id, peer_key(chosen, labels), health)


def _peer_findings(devices: Mapping[str, _Judged]) -> dict[str, AlertFinding]:
    """Devices whose last reported health is far from their peers' (_peers.py)."""
    figures = [figure for judged in devices.values() for figure in judged.figures]
    by_device: dict[str, list[Any]] = {}
    for anomaly in peer_anomalies(figures):  # most off first
        by_device.setdefault(anomaly.device_id, []).append(anomaly)
    return {
        device_id: AlertFinding(
            "; ".join(a.words() for a in anomalies[:_MAX_ANOMALIES_SHOWN]),
            {
                "anomalies": [
                    {
                        "metric": a.metric,
                        "value": a.value,
                        "peer_median": a.peer_median,
                        "z": round(a.z, 2),
                        "peers": a.peers,
                        "peer_count": a.peer_count,
                    }
                    for a in anomalies[:_MAX_ANOMALIES_SHOWN]
                ]
            },
        )
        for device_id, anomalies in by_device.items()
    }


def evaluate(
    session: Session,
    now: dt.datetime,
    thresholds: AlertThresholds,
    deployments: Sequence[Deployment],
) -> list[dict[str, Any]]:
    """One pass that reads every device (a new `AlertPass`'s first)."""
    return AlertPass(thresholds).run(session, now, deployments)


_ALERTS: Final = cast(Table, AlertRow.__table__)
_DEVICE_TABLE: Final = cast(Table, DeviceRow.__table__)
_SET_HEALTH: Final = update(_DEVICE_TABLE).where(_DEVICE_TABLE.c.id == bindparam("b_id"))
_DEVICES: Final = select(
    DeviceRow.id,
    DeviceRow.name,
    DeviceRow.last_seen,
    DeviceRow.enrolled_at,
    DeviceRow.cert_not_after,
    DeviceRow.reported,
    DeviceRow.labels,
    DeviceRow.platform_labels,
    DeviceRow.outbox_lost,
    DeviceRow.outbox_lost_at,
    DeviceRow.health,
).where(DeviceRow.revoked_at.is_(None))
_COUNT: Final = select(func.count()).select_from(DeviceRow).where(DeviceRow.revoked_at.is_(None))
_CERT_WARNED: Final = select(_ALERTS.c.device_id).where(
    _ALERTS.c.cleared_at.is_(None), _ALERTS.c.kind == AlertKind.CERT_EXPIRING.value
)
# The forecast pass's kinds are its own to raise and clear (_insights.py).
_ACTIVE: Final = select(_ALERTS.c.id, _ALERTS.c.device_id, _ALERTS.c.kind).where(
    _ALERTS.c.cleared_at.is_(None), _ALERTS.c.kind.not_in(sorted(FORECAST_KINDS))
)
_ACTIVE_OF: Final = _ACTIVE.where(_ALERTS.c.device_id.in_(bindparam("ids", expanding=True)))
_ACTIVE_OF_SQLITE: Final = text(
    "SELECT id, device_id, kind FROM alerts INDEXED BY ix_alerts_device_kind "
    "WHERE device_id IN :ids AND cleared_at IS NULL AND kind NOT IN :forecast"
).bindparams(
    bindparam("ids", expanding=True),
    bindparam("forecast", value=sorted(FORECAST_KINDS), expanding=True),
)
