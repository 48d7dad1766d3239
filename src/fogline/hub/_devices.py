"""The hub's operations on devices: authentication, reports' columns, views,
labels, revocation and removal.

Routers call these with a Session and commit; nothing here knows HTTP
beyond raising ApiError subclasses.
"""

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final, Protocol

from pydantic import ValidationError
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from fogline.protocol import DeviceStatus, DeviceView, LabelChange, Report, ReportedState

from ._clock import utcnow
from ._device_labels import effective_labels
from ._errors import BadRequestError, ConflictError, ForbiddenError, NotFoundError
from ._schema import DeviceRow, RevokedKeyRow


class CertifiedDevice(Protocol):
    """What authenticating a device needs: a DeviceRow, or a row of columns."""

    @property
    def revoked_at(self) -> dt.datetime | None: ...
    @property
    def cert_serial(self) -> str: ...
    @property
    def prev_cert_serial(self) -> str | None: ...


def device_refusal(device: CertifiedDevice | None, cert_serial: str) -> ForbiddenError | None:
    """Why a verified client certificate with this serial may not act as this
    device (unknown, revoked, or an older certificate), or None.

    The certificate the device renewed from is accepted until the device
    shows the new one (see ReportWriter): the renewal's answer may never
    have reached the node."""
    if device is None:
        return ForbiddenError("unknown device")
    if device.revoked_at is not None:
        return ForbiddenError("device is revoked")
    if cert_serial not in (device.cert_serial, device.prev_cert_serial):
        return ForbiddenError("client certificate has been superseded")
    return None


def authenticated_device(session: Session, device_id: str, cert_serial: str) -> DeviceRow:
    """The device behind a verified client certificate.

    Raises:
        ForbiddenError: see `device_refusal`.
    """
    row = session.get(DeviceRow, device_id)
    refusal = device_refusal(row, cert_serial)
    if refusal is not None:
        raise refusal
    assert row is not None  # device_refusal refuses a missing row
    return row


def check_certified(session: Session, device_id: str, cert_serial: str) -> None:
    """`authenticated_device` for a route that needs no more of the device:
    three columns, not the row with its JSON columns decoded.

    Raises:
        ForbiddenError: see `device_refusal`.
    """
    row = session.execute(_CERTIFIED, {"device_id": device_id}).first()
    refusal = device_refusal(row, cert_serial)
    if refusal is not None:
        raise refusal


_CERTIFIED: Final = select(
    DeviceRow.cert_serial, DeviceRow.prev_cert_serial, DeviceRow.revoked_at
).where(DeviceRow.id == bindparam("device_id"))


def report_columns(report: Report, now: dt.datetime) -> dict[str, Any]:
    """The device row's columns a report sets. Never what the device is
    selected by: its labels are stored as requested labels, and its facts do
    not move the platform labels taken at enrollment."""
    reported: dict[str, Any] = {}  # a ReportedState: the fields the node sent
    if report.outbox is not None:
        reported["outbox"] = report.outbox.model_dump(mode="json", exclude_none=True)
    if report.modules is not None:
        reported["modules"] = report.modules.model_dump(mode="json", exclude_unset=True)
    if report.health is not None:  # current values; the series is in health_samples
        reported["health"] = report.health.model_dump(mode="json", exclude_none=True)
    return {
        "facts": report.facts.model_dump(),
        "agent_version": report.facts.agent_version,
        "reported_labels": dict(report.labels),
        "last_seen": now,
        "reported": reported,
    }


def reported_state(stored: Mapping[str, Any] | None) -> ReportedState:
    """A device's stored report (`DeviceRow.reported`) read through the wire
    model; empty when it does not parse (a hub before the typed contract
    stored the `modules` block unchecked), until the device reports again."""
    try:
        return ReportedState.model_validate(stored or {})
    except ValidationError:
        return ReportedState()


def seen_recently(last_seen: dt.datetime | None, now: dt.datetime, offline_after_s: float) -> bool:
    """Whether a device last seen at `last_seen` counts as online at `now`."""
    return last_seen is not None and (now - last_seen).total_seconds() <= offline_after_s


def device_status(row: DeviceRow, now: dt.datetime, offline_after_s: float) -> DeviceStatus:
    if row.revoked_at is not None:
        return "revoked"
    return "online" if seen_recently(row.last_seen, now, offline_after_s) else "offline"


def device_view(row: DeviceRow, now: dt.datetime, offline_after_s: float) -> DeviceView:
    facts = row.facts
    return DeviceView(
        id=row.id,
        name=row.name,
        labels=effective_labels(row),
        reported_labels=dict(row.reported_labels),
        status=device_status(row, now, offline_after_s),
        enrolled_at=row.enrolled_at,
        last_seen=row.last_seen,
        agent_version=facts.get("agent_version"),
        hostname=facts.get("hostname"),
        os=facts.get("os"),
        arch=facts.get("arch"),
        uptime_s=facts.get("uptime_s"),
        claim_id=row.claim_id,
        cert_not_after=row.cert_not_after,
        reported=reported_state(row.reported),
        health=row.health,
    )


def find_device(session: Session, ref: str) -> DeviceRow:
    """A device by id or by name."""
    row = session.get(DeviceRow, ref) or session.scalar(
        select(DeviceRow).where(DeviceRow.name == ref)
    )
    if row is None:
        raise NotFoundError(f"no device with id or name {ref!r}")
    return row


def change_labels(row: DeviceRow, change: LabelChange) -> dict[str, str]:
    """Apply an operator's label change: promote, then set, then remove.
    Returns the promoted labels with the values the device asked for.

    Raises:
        BadRequestError: a key to promote that the device did not ask for.
    """
    missing = [key for key in change.promote if key not in row.reported_labels]
    if missing:
        asked = ", ".join(sorted(row.reported_labels)) or "nothing"
        raise BadRequestError(
            f"device {row.name!r} did not ask for label(s) {', '.join(missing)} "
            f"(it asked for: {asked})",
            field="promote",
        )
    promoted = {key: row.reported_labels[key] for key in change.promote}
    labels = {**row.labels, **promoted, **change.set}
    for key in change.remove:
        labels.pop(key, None)
    row.labels = labels
    return promoted


def revoke_device(session: Session, row: DeviceRow) -> None:
    """Revoke a device and refuse its key at enrollment from now on."""
    now = utcnow()
    if row.revoked_at is None:
        row.revoked_at = now
    if row.key_sha256 is not None and session.get(RevokedKeyRow, row.key_sha256) is None:
        session.add(
            RevokedKeyRow(
                key_sha256=row.key_sha256,
                revoked_at=row.revoked_at,
                device_id=row.id,
                device_name=row.name,
            )
        )


def remove_device(session: Session, row: DeviceRow, *, force: bool) -> None:
    """Delete a revoked device (its name is free again; its key stays refused).
    With `force`, a device still active is revoked first.

    Raises:
        ConflictError: the device is not revoked and `force` is not given.
    """
    if row.revoked_at is None and not force:
        raise ConflictError(
            f"device {row.name!r} is not revoked; revoke it first, or remove it with --force "
            "(which revokes it)",
            field="force",
        )
    revoke_device(session, row)
    session.flush()  # the revoked key is written before the row goes
    session.delete(row)


def count_devices_by_status(
    session: Session, now: dt.datetime, offline_after_s: float
) -> dict[str, int]:
    """Device counts by status, computed in SQL so a scrape stays cheap at 10k devices."""
    cutoff = now - dt.timedelta(seconds=offline_after_s)
    total = session.scalar(select(func.count()).select_from(DeviceRow)) or 0
    revoked = (
        session.scalar(
            select(func.count()).select_from(DeviceRow).where(DeviceRow.revoked_at.is_not(None))
        )
        or 0
    )
    online = (
        session.scalar(
            select(func.count())
            .select_from(DeviceRow)
            .where(DeviceRow.revoked_at.is_(None), DeviceRow.last_seen >= cutoff)
        )
        or 0
    )
    return {"online": online, "offline": total - online - revoked, "revoked": revoked}


# A device chooses its agent_version text: only this many versions get a
# metric label of their own, so a fleet cannot grow /metrics without bound.
MAX_VERSION_LABELS = 50


def count_devices_by_version(session: Session) -> dict[str, int]:
    """Devices not revoked, by the agent version of their last report (the
    most common MAX_VERSION_LABELS; the rest as "other", unknown as "unknown")."""
    version = DeviceRow.facts["agent_version"].as_string()
    rows = session.execute(
        select(version, func.count())
        .where(DeviceRow.revoked_at.is_(None))
        .group_by(version)
        .order_by(func.count().desc())
    ).all()
    counts: dict[str, int] = {}
    for index, (name, count) in enumerate(rows):
        key = "other" if index >= MAX_VERSION_LABELS else str(name or "unknown")[:64]
        counts[key] = counts.get(key, 0) + int(count)
    return counts
