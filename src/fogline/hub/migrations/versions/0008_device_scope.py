"""A device sees only what is meant for it.

* devices.agent_labels becomes reported_labels: what a device asks for, never
  selected on. Tombstones (None) in devices.labels, which hid agent labels,
  go: labels are the claim's and operators' alone now.
* devices.platform_labels: fogline.dev/os and /arch, derived by the hub from
  the facts (here: the facts last reported, the best there is for devices
  enrolled before this revision).
* revoked_keys: keys of revoked devices, refused at enrollment forever.
* claims.names: glob patterns a device's name must match to enroll.
* desired_states.previous_releases: the releases the document before the
  current one named (a device may still fetch them). For a device in a
  rollout, taken from the rollout's other document; else none.

Every new column is added with a constant default, so SQLite adds it in place:
rebuilding `devices` would make SQLite's DROP TABLE cascade to its children.

Revision ID: 0008
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from fogline.hub._device_labels import platform_labels
from fogline.hub._schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_devices = sa.table(
    "devices",
    sa.column("id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("labels", sa.JSON()),
    sa.column("facts", sa.JSON()),
    sa.column("platform_labels", sa.JSON()),
    sa.column("revoked_at", UTCDateTime()),
    sa.column("key_sha256", sa.String()),
)
_revoked_keys = sa.table(
    "revoked_keys",
    sa.column("key_sha256", sa.String()),
    sa.column("revoked_at", UTCDateTime()),
    sa.column("device_id", sa.String()),
    sa.column("device_name", sa.String()),
)
_desired = sa.table(
    "desired_states",
    sa.column("device_id", sa.String()),
    sa.column("revision", sa.String()),
    sa.column("previous_releases", sa.JSON()),
)
_rollouts = sa.table(
    "rollouts", sa.column("id", sa.String()), sa.column("created_at", UTCDateTime())
)
_members = sa.table(
    "rollout_devices",
    sa.column("rollout_id", sa.String()),
    sa.column("device_id", sa.String()),
    sa.column("target_revision", sa.String()),
    sa.column("target_document", sa.JSON()),
    sa.column("previous_revision", sa.String()),
    sa.column("previous_document", sa.JSON()),
)


def upgrade() -> None:
    # RENAME COLUMN in place (SQLite >= 3.25, PostgreSQL): no table rebuild.
    op.execute("ALTER TABLE devices RENAME COLUMN agent_labels TO reported_labels")
    op.add_column(
        "devices", sa.Column("platform_labels", sa.JSON(), nullable=False, server_default="{}")
    )
    op.add_column("claims", sa.Column("names", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column(
        "desired_states",
        sa.Column("previous_releases", sa.JSON(), nullable=False, server_default="[]"),
    )
    op.create_table(
        "revoked_keys",
        sa.Column("key_sha256", sa.String(64), primary_key=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=False),
        sa.Column("device_id", sa.String(36), nullable=False),
        sa.Column("device_name", sa.String(63), nullable=False),
    )
    connection = op.get_bind()
    _move_devices(connection)
    _fill_previous_releases(connection)


def _move_devices(connection: sa.Connection) -> None:
    devices = connection.execute(
        sa.select(
            _devices.c.id,
            _devices.c.name,
            _devices.c.labels,
            _devices.c.facts,
            _devices.c.revoked_at,
            _devices.c.key_sha256,
        )
    ).all()
    for device in devices:
        labels = {k: v for k, v in (device.labels or {}).items() if v is not None}
        connection.execute(
            _devices.update()
            .where(_devices.c.id == device.id)
            .values(labels=labels, platform_labels=platform_labels(device.facts or {}))
        )
        if device.revoked_at is not None and device.key_sha256 is not None:
            known = connection.scalar(
                sa.select(_revoked_keys.c.key_sha256).where(
                    _revoked_keys.c.key_sha256 == device.key_sha256
                )
            )
            if known is None:
                connection.execute(
                    _revoked_keys.insert().values(
                        key_sha256=device.key_sha256,
                        revoked_at=device.revoked_at,
                        device_id=device.id,
                        device_name=device.name,
                    )
                )


def _refs(document: Any) -> list[dict[str, str]]:
    modules = document.get("modules") if isinstance(document, dict) else None
    refs = []
    for entry in modules if isinstance(modules, list) else ():
        ref = {key: entry.get(key) for key in ("name", "version", "digest")}
        if all(isinstance(value, str) for value in ref.values()):
            refs.append(ref)
    return refs


def _fill_previous_releases(connection: sa.Connection) -> None:
    """A device in a rollout may be moving between its target and its previous
    document: whichever it is served now, the other's releases stay fetchable."""
    served: dict[str, str] = {
        row.device_id: row.revision
        for row in connection.execute(sa.select(_desired.c.device_id, _desired.c.revision))
    }
    latest = (
        sa.select(_members)
        .join(_rollouts, _rollouts.c.id == _members.c.rollout_id)
        .order_by(_rollouts.c.created_at)
    )
    other: dict[str, Any] = {}
    for member in connection.execute(latest):  # oldest first: the newest rollout wins
        revision = served.get(member.device_id)
        if revision is None:
            continue
        if revision == member.target_revision:
            other[member.device_id] = member.previous_document
        elif revision == member.previous_revision:
            other[member.device_id] = member.target_document
    for device_id, document in other.items():
        refs = _refs(document)
        if refs:
            connection.execute(
                _desired.update()
                .where(_desired.c.device_id == device_id)
                .values(previous_releases=refs)
            )


def downgrade() -> None:
    # DROP COLUMN in place (SQLite >= 3.35, PostgreSQL): rebuilding `claims`
    # or `devices` would cascade to the rows that reference them.
    op.drop_table("revoked_keys")
    op.execute("ALTER TABLE desired_states DROP COLUMN previous_releases")
    op.execute("ALTER TABLE claims DROP COLUMN names")
    op.execute("ALTER TABLE devices DROP COLUMN platform_labels")
    op.execute("ALTER TABLE devices RENAME COLUMN reported_labels TO agent_labels")
