"""Telemetry from the nodes' outboxes: stored once per (device, stream, seq).

A batch resent after a lost acknowledgement hits the unique key and is
skipped row by row, so retries never duplicate; the hub counts what it skipped
(`fogline_hub_telemetry_duplicates_total`). Retention deletes old rows
in one replica at a time (a PostgreSQL advisory lock; SQLite has one hub).
"""

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Engine, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fogline.protocol import BatchRecord

from ._clock import utcnow
from ._schema import DeviceRow, TelemetryRow

MAX_DECOMPRESSED_BYTES: Final = 16 * 1024 * 1024
RETENTION_LOCK_ID: Final = 0x666F6774
MAX_QUERY_ROWS: Final = 10_000


def _epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def store_batch(session: Session, device_id: str, records: Sequence[BatchRecord]) -> int:
    """Insert a batch, skipping rows already stored (same device, stream, seq).

    Returns how many records were new. RETURNING (SQLite 3.35+, PostgreSQL)
    is the one count that holds on both: with several rows per statement,
    psycopg's rowcount is -1.
    """
    if not records:
        return 0
    now = utcnow()
    rows = [
        {
            "device_id": device_id,
            "stream": r.stream,
            "seq": r.seq,
            "priority": r.priority,
            "created_at": _epoch(r.created),
            "received_at": now,
            "payload": r.payload,
        }
        for r in records
    ]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(TelemetryRow)
        .on_conflict_do_nothing(index_elements=["device_id", "stream", "seq"])
        .returning(TelemetryRow.seq)
    )
    return len(session.execute(statement, rows).all())


def query(
    session: Session,
    *,
    device_id: str | None,
    stream: str | None,
    since: dt.datetime,
    limit: int,
    newest: bool = False,
) -> list[dict[str, Any]]:
    """Records created from `since` on, oldest first, at most `limit`: the
    oldest ones of the window, or with `newest` the newest ones (`logs --tail`)."""
    statement = (
        select(TelemetryRow, DeviceRow.name)
        .join(DeviceRow, DeviceRow.id == TelemetryRow.device_id)
        .where(TelemetryRow.created_at >= since)
        .limit(min(limit, MAX_QUERY_ROWS))
    )
    if newest:
        statement = statement.order_by(TelemetryRow.created_at.desc(), TelemetryRow.seq.desc())
    else:
        statement = statement.order_by(TelemetryRow.created_at, TelemetryRow.seq)
    if device_id:
        statement = statement.where(TelemetryRow.device_id == device_id)
    if stream:
        statement = statement.where(TelemetryRow.stream == stream)
    rows = [
        {
            "device": name,
            "device_id": row.device_id,
            "stream": row.stream,
            "seq": row.seq,
            "priority": row.priority,
            "created": row.created_at.isoformat(),
            "payload": row.payload,
        }
        for row, name in session.execute(statement)
    ]
    return rows[::-1] if newest else rows


def apply_retention(engine: Engine, retention_s: float) -> int:
    """Delete telemetry received longer than `retention_s` ago; returns rows deleted."""
    cutoff = utcnow() - dt.timedelta(seconds=retention_s)
    with Session(engine) as session, session.begin():
        if engine.dialect.name == "postgresql":
            got = session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": RETENTION_LOCK_ID}
            )
            if not got:
                return 0  # another replica is on it
        result = session.execute(delete(TelemetryRow).where(TelemetryRow.received_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)
