"""The self-healing actions the hub took, read back from the audit trail.

The audit trail is the record of truth for them (no table of their own):
`device.quarantine` (_self_healing.py) and `module.restart`
(_restart_healing.py), both by the actor `hub`. `GET /v1/insights`, the
console's overview and `fogline insights ls` list the recent ones
(`recent_actions`); the alerts task posts each to the alert webhook once,
when the hub takes it (`actions_taken`), as `{"kind": "self-healing", ...}`.

Each action reads as one sentence, from the entry's detail:

    restarted web on node-17: RSS 530 MiB rising 40.0 MiB/h, limit 512 MiB reached
    restarted web on node-17: RSS 490 MiB rising 40.0 MiB/h, limit 512 MiB in ~33m
    quarantined node-17: 3 crash loops within 1h (deployment web); rollouts skip it
"""

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline._duration import format_duration

from ._audit import HUB_ACTOR
from ._forecast import bytes_per_hour
from ._restart_healing import RESTART_ACTION
from ._schema import AuditRow
from ._self_healing import QUARANTINE_ACTION

# Audit action -> the action's short name, on the wire and on screen.
ACTIONS: Final[Mapping[str, str]] = {QUARANTINE_ACTION: "quarantine", RESTART_ACTION: "restart"}
WEBHOOK_KIND: Final = "self-healing"
# What the insights list: the last day's, newest first, this many at most.
RECENT: Final = dt.timedelta(hours=24)
MAX_ACTIONS: Final = 100
# What one alert pass can take: quarantine_pass's 100 and restart_pass's 100.
_MAX_TAKEN: Final = 200


def recent_actions(
    session: Session, now: dt.datetime, limit: int = MAX_ACTIONS
) -> list[dict[str, Any]]:
    """The self-healing actions of the last `RECENT`, newest first."""
    return _read(session, now - RECENT, limit)


def actions_taken(
    session: Session, since: dt.datetime, devices: Collection[str]
) -> list[dict[str, Any]]:
    """The actions the hub took on `devices` (names) since `since`, oldest
    first, each as the webhook's body (`kind` self-healing, `id` action-SEQ)."""
    if not devices:
        return []
    found = _read(session, since, _MAX_TAKEN, sorted(devices)[:_MAX_TAKEN])
    return [{"kind": WEBHOOK_KIND, "id": f"action-{a['audit_seq']}", **a} for a in reversed(found)]


def _read(
    session: Session, since: dt.datetime, limit: int, targets: list[str] | None = None
) -> list[dict[str, Any]]:
    query = (
        select(AuditRow)
        .where(
            AuditRow.actor == HUB_ACTOR,
            AuditRow.action.in_(list(ACTIONS)),
            AuditRow.outcome == "ok",
            AuditRow.at >= since,
        )
        .order_by(AuditRow.seq.desc())
        .limit(limit)
    )
    if targets is not None:
        query = query.where(AuditRow.target.in_(targets))
    return [action_view(row) for row in session.scalars(query)]


def action_view(row: AuditRow) -> dict[str, Any]:
    """One action: which, on what, why (as the entry has it, and as a
    sentence), when, and the audit entry's seq (`fogline audit ls`)."""
    detail: Mapping[str, Any] = row.detail if isinstance(row.detail, dict) else {}
    action = ACTIONS.get(row.action, row.action)
    module = detail.get("module") if action == "restart" else None
    return {
        "action": action,
        "device": row.target,
        "device_id": detail.get("device_id"),
        "module": module if isinstance(module, str) else None,
        "deployment": detail.get("deployment"),
        "reason": str(detail.get("reason", "")),
        "detail": _sentence(action, row.target, detail),
        "at": row.at,
        "audit_seq": row.seq,
    }


def _sentence(action: str, device: str, detail: Mapping[str, Any]) -> str:
    deployment = detail.get("deployment")
    if action == "quarantine":
        failures, window_s = detail.get("failures"), detail.get("window_s")
        why = (
            f"{failures} crash loop{'' if failures == 1 else 's'} within "
            f"{format_duration(float(window_s))}"
            if isinstance(failures, int) and isinstance(window_s, int | float)
            else str(detail.get("reason", "failed repeatedly"))
        )
        where = f" (deployment {deployment})" if deployment else ""
        return f"quarantined {device}: {why}{where}; rollouts skip it"
    module = detail.get("module", "?")
    rss, slope, limit = (detail.get(k) for k in ("rss_bytes", "bytes_per_s", "limit_bytes"))
    if not (
        isinstance(rss, int | float)
        and isinstance(slope, int | float)
        and isinstance(limit, int | float)
    ):
        return f"restarted {module} on {device}: {detail.get('reason', 'memory trend')}"
    words = (
        f"restarted {module} on {device}: RSS {rss / 2**20:.0f} MiB rising "
        f"{bytes_per_hour(float(slope))}, limit {limit / 2**20:.0f} MiB"
    )
    eta_s = detail.get("eta_s")
    if isinstance(eta_s, int | float):
        # Whole minutes past two: "~20m", not "~1234s".
        step = 60 if eta_s >= 120 else 1
        return f"{words} in ~{format_duration(round(float(eta_s) / step) * step)}"
    return f"{words} reached"
