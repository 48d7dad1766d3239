"""Module releases: one row per pushed (name, version), addressed by digest.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

from fogline.hub._schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=False),
        sa.Column("pushed_at", UTCDateTime(), nullable=False),
        sa.Column("pushed_by", sa.String(64), nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_releases_name_version"),
    )
    op.create_index("ix_releases_digest", "releases", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_releases_digest", table_name="releases")
    op.drop_table("releases")
