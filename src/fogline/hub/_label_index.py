"""Keeps `device_labels` (DeviceLabelRow) equal to each device's effective
labels, whoever writes the device: enrollment, `devices label`, a restore,
an admin command. It listens to every ORM flush, so no caller can forget it.

Only devices whose `labels` or `platform_labels` changed in the flush are
rewritten; a report (facts, last_seen) costs one attribute-history check.
A deleted device's rows go with it (ON DELETE CASCADE).
"""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, event, insert
from sqlalchemy.orm import Session, UOWTransaction, attributes

from ._device_labels import effective_labels
from ._schema import DeviceLabelRow, DeviceRow

_LABEL_COLUMNS = ("labels", "platform_labels")


def _labels_changed(row: DeviceRow) -> bool:
    return any(attributes.get_history(row, name).has_changes() for name in _LABEL_COLUMNS)


def label_rows(devices: Iterable[DeviceRow]) -> list[dict[str, Any]]:
    """The device_labels rows of these devices, ready for an INSERT."""
    return [
        {"device_id": row.id, "key": key, "value": value}
        for row in devices
        for key, value in effective_labels(row).items()
    ]


@event.listens_for(Session, "after_flush")
def _sync_label_index(session: Session, _flush: UOWTransaction) -> None:
    # after_flush: the device rows are written (the foreign key holds), and
    # session.new / session.dirty and attribute history still show what
    # this flush changed.
    changed = [obj for obj in session.new if isinstance(obj, DeviceRow)]
    changed += [
        obj
        for obj in session.dirty
        if isinstance(obj, DeviceRow) and obj not in session.deleted and _labels_changed(obj)
    ]
    if not changed:
        return
    connection = session.connection()
    ids = [row.id for row in changed]
    connection.execute(delete(DeviceLabelRow).where(DeviceLabelRow.device_id.in_(ids)))
    rows = label_rows(changed)
    if rows:
        connection.execute(insert(DeviceLabelRow), rows)
