"""Fleet observability: what the outbox-dropping alert needs of each device
(`outbox_lost`, the records its outbox lost as of its last report, and
`outbox_lost_at`, when a report last showed that count rising), and its
`health` (ok, warning or critical: the worst of its active alerts, which the
next alert pass writes) indexed with name for `GET /v1/devices?health=`;
`agent_version` (facts' agent_version, filled from them here; every report
writes it) indexed the same way for `GET /v1/devices?version=`.

Revision ID: 0018
"""

import sqlalchemy as sa
from alembic import op

from fogline.hub._schema import UTCDateTime

revision = "0018"
down_revision = "0015"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(
            sa.Column("outbox_lost", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("outbox_lost_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("health", sa.String(16), nullable=False, server_default="ok"))
        batch.add_column(sa.Column("agent_version", sa.String(256), nullable=True))
    op.create_index("ix_devices_health_name_id", "devices", ["health", "name", "id"])
    op.create_index("ix_devices_agent_version_name_id", "devices", ["agent_version", "name", "id"])
    devices = sa.table(
        "devices",
        sa.column("id", sa.String),
        sa.column("facts", sa.JSON),
        sa.column("agent_version", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(devices.c.id, devices.c.facts)).fetchall()
    values = [
        {"b_id": device_id, "agent_version": str(version)[:256]}
        for device_id, facts in rows
        if (version := (facts or {}).get("agent_version")) is not None
    ]
    update = sa.update(devices).where(devices.c.id == sa.bindparam("b_id"))
    for start in range(0, len(values), _BATCH):
        connection.execute(update, values[start : start + _BATCH])


def downgrade() -> None:
    op.drop_index("ix_devices_agent_version_name_id", table_name="devices")
    op.drop_index("ix_devices_health_name_id", table_name="devices")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("agent_version")
        batch.drop_column("health")
        batch.drop_column("outbox_lost_at")
        batch.drop_column("outbox_lost")
