"""`devices.renewed_cert_pem`: the certificate the last renewal issued, so a
retry of that renewal (same key, presented from the previous certificate)
gets the same answer instead of a new certificate that supersedes it.

Nullable: devices that have not renewed since have none, and their next
renewal issues as before.

Revision ID: 0024
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("renewed_cert_pem", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("renewed_cert_pem")
