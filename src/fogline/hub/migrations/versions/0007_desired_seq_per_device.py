"""Each desired state remembers the fleet sequence number of its last change.

A replica then asks "which devices changed since N" and wakes only their
long-polls, instead of waking every device on every change.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fleet_generation") as batch:
        batch.alter_column("desired_seq", type_=sa.BigInteger(), existing_type=sa.Integer())
    with op.batch_alter_table("desired_states") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"))
        batch.create_index("ix_desired_states_seq", ["seq"])


def downgrade() -> None:
    with op.batch_alter_table("desired_states") as batch:
        batch.drop_index("ix_desired_states_seq")
        batch.drop_column("seq")
    with op.batch_alter_table("fleet_generation") as batch:
        batch.alter_column("desired_seq", type_=sa.Integer(), existing_type=sa.BigInteger())
