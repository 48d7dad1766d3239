"""Canary analysis: `rollouts.analysis` (the canary seed, strata and each
wave's metric verdicts) and `health_samples.outbox_dropped` (the node's
outbox drop counter at each report, so analysis can compare drop rates).

Both columns are nullable: rollouts and samples from before have none.

Revision ID: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("analysis", sa.JSON(), nullable=True))
    with op.batch_alter_table("health_samples") as batch:
        batch.add_column(sa.Column("outbox_dropped", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("health_samples") as batch:
        batch.drop_column("outbox_dropped")
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("analysis")
