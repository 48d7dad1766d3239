"""What the hub does by itself to devices, where a deployment enables it.

    spec:
      selfHealing:
        quarantineAfter: {failures: 3, window: 1h}

A device that a deployment with `quarantineAfter` selects, and that had
`failures` crash-loop alerts raised within `window`, gets the hub-owned label
`fogline.dev/quarantined=true`: shown with its labels, selectable, and
audited as `device.quarantine` by the actor `hub`. An operator lifts it with
`fogline devices unquarantine NAME` (audited as `device.unquarantine`); the
alerts raised before that are not counted again (the audit trail says when).

The pass runs after each alert pass and reads only crash-loop alerts raised
within the longest window (at most `_MAX_ALERTS`), so it costs nothing in a
fleet without crash loops.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fogline._duration import parse_duration
from fogline.manifest import Deployment

from ._alerts import AlertKind
from ._audit import record_audit
from ._desired import DeploymentCache, recompile_device
from ._device_labels import effective_labels
from ._schema import AlertRow, AuditRow, DeviceRow

QUARANTINE_LABEL: Final = "fogline.dev/quarantined"
HUB_ACTOR: Final = "hub"
# Alerts read per pass, and devices quarantined per pass, at most.
_MAX_ALERTS: Final = 100_000
_MAX_PER_PASS: Final = 100
QUARANTINE_ACTION: Final = "device.quarantine"
UNQUARANTINE_ACTION: Final = "device.unquarantine"


def quarantine_pass(
    session: Session, now: dt.datetime, deployments: Sequence[Deployment], cache: DeploymentCache
) -> list[str]:
    """Quarantine the devices that failed too often for a deployment selecting
    them, in the caller's transaction; returns their names."""
    policies = [policy for d in deployments if (policy := _policy(d)) is not None]
    if not policies:
        return []
    longest = max(window_s for _, _, window_s in policies)
    least = min(failures for _, failures, _ in policies)
    raised: dict[str, list[dt.datetime]] = {}
    for device_id, at in session.execute(
        select(AlertRow.device_id, AlertRow.raised_at)
        .where(
            AlertRow.kind == AlertKind.CRASH_LOOP.value,
            AlertRow.raised_at >= now - dt.timedelta(seconds=longest),
        )
        .limit(_MAX_ALERTS)
    ):
        raised.setdefault(device_id, []).append(at)
    candidates = sorted(d for d, times in raised.items() if len(times) >= least)
    quarantined: list[str] = []
    for start in range(0, len(candidates), 500):
        rows = session.scalars(
            select(DeviceRow).where(
                DeviceRow.id.in_(candidates[start : start + 500]), DeviceRow.revoked_at.is_(None)
            )
        ).all()
        for row in rows:
            if len(quarantined) >= _MAX_PER_PASS:
                return quarantined
            if row.platform_labels.get(QUARANTINE_LABEL) == "true":
                continue
            lifted = session.scalar(
                select(func.max(AuditRow.at)).where(
                    AuditRow.action == UNQUARANTINE_ACTION, AuditRow.target == row.name
                )
            )
            why = _why(row, raised[row.id], policies, now, lifted)
            if why is not None:
                _quarantine(session, row, cache, why)
                quarantined.append(row.name)
    return quarantined


def _policy(deployment: Deployment) -> tuple[Deployment, int, float] | None:
    """(deployment, failures, window in seconds) of its quarantineAfter (the
    schema checked its shape at apply)."""
    rule = deployment.self_healing.get("quarantineAfter")
    if not isinstance(rule, Mapping):
        return None
    failures, window = rule.get("failures"), rule.get("window")
    if not isinstance(failures, int) or not isinstance(window, str):
        return None
    return deployment, failures, parse_duration(window)


def _why(
    row: DeviceRow,
    times: list[dt.datetime],
    policies: list[tuple[Deployment, int, float]],
    now: dt.datetime,
    since_lift: dt.datetime | None,
) -> dict[str, Any] | None:
    labels = effective_labels(row)
    for deployment, failures, window_s in policies:
        if not deployment.selector.matches(labels):
            continue
        start = now - dt.timedelta(seconds=window_s)
        if since_lift is not None:
            start = max(start, since_lift)
        count = sum(1 for at in times if at >= start)
        if count >= failures:
            return {"deployment": deployment.name, "failures": count, "window_s": window_s}
    return None


def _quarantine(
    session: Session, row: DeviceRow, cache: DeploymentCache, why: dict[str, Any]
) -> None:
    before = effective_labels(row)
    # A new dict: the JSON column notices a replaced value, not a mutated one.
    row.platform_labels = {**row.platform_labels, QUARANTINE_LABEL: "true"}
    recompile_device(session, cache, row)
    record_audit(
        session,
        HUB_ACTOR,
        QUARANTINE_ACTION,
        row.name,
        device_id=row.id,
        reason=f"{why['failures']} crash loops within {why['window_s']:.0f}s",
        before=before,
        after=effective_labels(row),
        **why,
    )


def lift_quarantine(session: Session, row: DeviceRow, cache: DeploymentCache) -> bool:
    """Clear a device's quarantine (the caller audits as UNQUARANTINE_ACTION);
    False when it had none."""
    if row.platform_labels.get(QUARANTINE_LABEL) != "true":
        return False
    row.platform_labels = {k: v for k, v in row.platform_labels.items() if k != QUARANTINE_LABEL}
    recompile_device(session, cache, row)
    return True
