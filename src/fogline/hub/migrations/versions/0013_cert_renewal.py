"""Certificate renewal: the serial a device renewed from, and its issuing CA.

`prev_cert_serial` stays accepted until the device shows its new certificate
(a node that crashed before saving the renewal's answer is not locked out).
`cert_ca_key_id` names the CA that issued the current certificate, so that
`fogline ca retire-old` can tell which devices moved to a new CA; NULL for
certificates issued before this migration (counted as not moved).

Revision ID: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("prev_cert_serial", sa.String(64), nullable=True))
        batch.add_column(sa.Column("cert_ca_key_id", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("cert_ca_key_id")
        batch.drop_column("prev_cert_serial")
