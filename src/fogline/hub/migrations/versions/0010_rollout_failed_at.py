"""Rollout devices remember when they failed, also once reverted.

NULL for rows written before: their failures are counted by state, as before.

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

from fogline.hub._schema import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollout_devices") as batch:
        batch.add_column(sa.Column("failed_at", UTCDateTime(), nullable=True))
    # Devices failed before this migration (and not reverted since) keep counting.
    op.execute("UPDATE rollout_devices SET failed_at = started_at WHERE state = 'failed'")


def downgrade() -> None:
    with op.batch_alter_table("rollout_devices") as batch:
        batch.drop_column("failed_at")
