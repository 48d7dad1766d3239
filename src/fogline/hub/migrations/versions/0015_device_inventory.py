"""Device inventory at scale: `device_labels`, one row per (device, label key)
with an index on (key, value), so `GET /v1/devices?selector=` is answered
by the database on SQLite and PostgreSQL; an index on devices(last_seen, id)
for pages sorted by last report (NULLS FIRST on PostgreSQL, as SQLite
orders them).

The upgrade fills device_labels from each device's effective labels
(labels, then platform_labels on top), in batches.

Revision ID: 0015
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    op.create_table(
        "device_labels",
        sa.Column(
            "device_id",
            sa.String(36),
            sa.ForeignKey("devices.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(63), primary_key=True),
        sa.Column("value", sa.String(63), nullable=False),
    )
    op.create_index("ix_device_labels_key_value", "device_labels", ["key", "value", "device_id"])
    if op.get_bind().dialect.name == "postgresql":
        # Pages put never-seen devices first ascending and last descending
        # (hub/_inventory.py), SQLite's own order of NULLs; PostgreSQL's
        # default index puts NULLs last, and would sort the whole table.
        op.execute("CREATE INDEX ix_devices_last_seen_id ON devices (last_seen NULLS FIRST, id)")
    else:
        op.create_index("ix_devices_last_seen_id", "devices", ["last_seen", "id"])
    devices = sa.table(
        "devices",
        sa.column("id", sa.String),
        sa.column("labels", sa.JSON),
        sa.column("platform_labels", sa.JSON),
    )
    labels = sa.table(
        "device_labels",
        sa.column("device_id", sa.String),
        sa.column("key", sa.String),
        sa.column("value", sa.String),
    )
    connection = op.get_bind()
    batch: list[dict[str, Any]] = []
    query = sa.select(devices.c.id, devices.c.labels, devices.c.platform_labels)
    for device_id, own, platform in connection.execute(query).fetchall():
        effective = {**(own or {}), **(platform or {})}
        batch += [{"device_id": device_id, "key": k, "value": v} for k, v in effective.items()]
        if len(batch) >= _BATCH:
            connection.execute(sa.insert(labels), batch)
            batch = []
    if batch:
        connection.execute(sa.insert(labels), batch)


def downgrade() -> None:
    op.drop_index("ix_devices_last_seen_id", table_name="devices")
    op.drop_index("ix_device_labels_key_value", table_name="device_labels")
    op.drop_table("device_labels")
