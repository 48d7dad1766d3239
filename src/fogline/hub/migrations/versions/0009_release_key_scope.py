"""Release keys get a scope: the module name patterns each may sign.

NULL (every key applied before this migration) means every module, as before.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("release_keys") as batch:
        batch.add_column(sa.Column("modules", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("release_keys") as batch:
        batch.drop_column("modules")
