"""Manifests and desired state: deployments, release keys, per-device documents.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

from fogline.hub._schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("claims") as batch:
        batch.add_column(sa.Column("name", sa.String(63), nullable=True))
        batch.create_unique_constraint("uq_claims_name", ["name"])
    op.create_table(
        "deployments",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("applied_at", UTCDateTime(), nullable=False),
        sa.Column("applied_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "release_keys",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("public_key", sa.String(128), nullable=False),
        sa.Column("applied_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "desired_states",
        sa.Column(
            "device_id",
            sa.String(36),
            sa.ForeignKey("devices.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("revision", sa.String(80), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("applied_revision", sa.String(80), nullable=True),
        sa.Column("applied_ok", sa.Boolean(), nullable=False),
        sa.Column("applied_error", sa.String(4096), nullable=True),
    )
    op.create_table(
        "fleet_generation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("desired_seq", sa.Integer(), nullable=False),
    )
    op.execute("INSERT INTO fleet_generation (id, generation, desired_seq) VALUES (1, 0, 0)")


def downgrade() -> None:
    op.drop_table("fleet_generation")
    op.drop_table("desired_states")
    op.drop_table("release_keys")
    op.drop_table("deployments")
    with op.batch_alter_table("claims") as batch:
        batch.drop_constraint("uq_claims_name", type_="unique")
        batch.drop_column("name")
