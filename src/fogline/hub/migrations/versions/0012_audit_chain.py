"""The audit trail becomes a hash chain: seq, source, outcome, prev_hash, hash
on every entry, and a one-row head.

Entries written before are chained here, in the order they were written
(id), with source "" and outcome "ok": the chain proves nothing about them
beyond this point, and says so by starting at them.

Revision ID: 0012
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from fogline.hub._schema import UTCDateTime
from fogline.security import GENESIS, at_text, entry_hash

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_audit = sa.table(
    "audit_log",
    sa.column("id", sa.BigInteger()),
    sa.column("seq", sa.BigInteger()),
    sa.column("at", UTCDateTime()),
    sa.column("actor", sa.String()),
    sa.column("source", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target", sa.String()),
    sa.column("outcome", sa.String()),
    sa.column("detail", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("source", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("outcome", sa.String(16), nullable=False, server_default="ok"))
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
    head_seq, head_hash = _chain_existing(op.get_bind())
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        batch.alter_column("hash", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_audit_log_seq", ["seq"])
        batch.create_index("ix_audit_log_actor", ["actor"])
        batch.create_index("ix_audit_log_action", ["action"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": head_seq, "hash": head_hash}])


def _chain_existing(connection: Any) -> tuple[int, str]:
    """Number and hash the entries already there, oldest first; returns the head."""
    seq, prev = 0, GENESIS
    rows = connection.execute(sa.select(_audit).order_by(_audit.c.id)).mappings().all()
    for row in rows:
        seq += 1
        digest = entry_hash(
            seq=seq,
            at=at_text(row["at"]),
            actor=row["actor"],
            source="",
            action=row["action"],
            target=row["target"],
            outcome="ok",
            detail=row["detail"] or {},
            prev_hash=prev,
        )
        connection.execute(
            _audit.update()
            .where(_audit.c.id == row["id"])
            .values(
                seq=seq,
                source="",
                outcome="ok",
                prev_hash=prev,
                hash=digest,
                detail=row["detail"] or {},
            )
        )
        prev = digest
    return seq, prev


def downgrade() -> None:
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_index("ix_audit_log_action")
        batch.drop_index("ix_audit_log_actor")
        batch.drop_constraint("uq_audit_log_seq", type_="unique")
        for column in ("hash", "prev_hash", "outcome", "source", "seq"):
            batch.drop_column(column)
