"""Users with roles and scopes; tokens that belong to a user, expire, and
record their last use.

Existing tokens (the bootstrap admin's) keep user_name NULL and never expire.

Revision ID: 0011
"""

import sqlalchemy as sa
from alembic import op

from fogline.hub._schema import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=True),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
    )
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("user_name", sa.String(64), nullable=True))
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("last_used_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(64), nullable=True))
        batch.create_index("ix_tokens_user_name", ["user_name"])


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_index("ix_tokens_user_name")
        batch.drop_column("created_by")
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
        batch.drop_column("user_name")
    op.drop_table("users")
