"""Rollouts (waves per apply), their devices, and the audit log.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

from fogline.hub._schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("deployments", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("wave_bounds", sa.JSON(), nullable=False),
        sa.Column("current_wave", sa.Integer(), nullable=False),
        sa.Column("wave_started_at", UTCDateTime(), nullable=True),
        sa.Column("accepted_failures", sa.Integer(), nullable=False),
        sa.Column("accepted_wave", sa.Integer(), nullable=False),
        sa.Column("previous_deployments", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(1024), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_rollouts_state", "rollouts", ["state"])
    op.create_table(
        "rollout_devices",
        sa.Column(
            "rollout_id",
            sa.String(32),
            sa.ForeignKey("rollouts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "device_id",
            sa.String(36),
            sa.ForeignKey("devices.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("target_revision", sa.String(80), nullable=False),
        sa.Column("target_document", sa.JSON(), nullable=False),
        sa.Column("previous_revision", sa.String(80), nullable=True),
        sa.Column("previous_document", sa.JSON(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("healthy_since", UTCDateTime(), nullable=True),
        sa.Column("reason", sa.String(512), nullable=True),
    )
    op.create_index("ix_rollout_devices_device", "rollout_devices", ["device_id"])
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("rollout_devices")
    op.drop_table("rollouts")
