"""Fleet observability: what the outbox-dropping alert needs of each device
(`outbox_lost`, the records its outbox lost as of its last report, and
`outbox_lost_at`, when a report last showed that count rising).

Revision ID: 0018
"""

import sqlalchemy as sa
from alembic import op

from fogline.hub._schema import UTCDateTime

revision = "0018"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(
            sa.Column("outbox_lost", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("outbox_lost_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("outbox_lost_at")
        batch.drop_column("outbox_lost")
