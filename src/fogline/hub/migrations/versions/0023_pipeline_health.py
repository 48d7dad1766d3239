"""Pipeline counters in device health: `health_samples.pipeline_errors` and
`health_samples.pipeline_dropped` (the edge data plane's error and drop
counters at each report, and their largest value in a rollup bucket), so
canary analysis can compare `pipeline-errors` and `pipeline-drops` rates.

Nullable: samples from before, and nodes without a data plane, have none.

Revision ID: 0023
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("health_samples") as batch:
        batch.add_column(sa.Column("pipeline_errors", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("pipeline_dropped", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("health_samples") as batch:
        batch.drop_column("pipeline_dropped")
        batch.drop_column("pipeline_errors")
