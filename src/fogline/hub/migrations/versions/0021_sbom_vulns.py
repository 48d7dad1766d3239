"""Supply chain: release SBOMs and the packages they name (`release_sboms`,
`release_components`), read from each signed archive at push; the offline
vulnerability database imported from OSV files (`vuln_imports`,
`vuln_advisories`, `vuln_packages`), and the applied VulnerabilityPolicy
manifests (`vuln_policies`).

Releases pushed before this migration have no SBOM; nothing is backfilled
(the hub would have to trust the archive store's bytes without the push's
checks; push a rebuilt release instead).

Revision ID: 0021
"""

import sqlalchemy as sa
from alembic import op

from fogline.hub._schema import UTCDateTime

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "release_sboms",
        sa.Column(
            "release_id",
            sa.Integer,
            sa.ForeignKey("releases.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("files", sa.Integer, nullable=False),
        sa.Column("components", sa.Integer, nullable=False),
    )
    op.create_table(
        "release_components",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "release_id",
            sa.Integer,
            sa.ForeignKey("releases.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ecosystem", sa.String(32), nullable=False),
        sa.Column("name", sa.String(214), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("purl", sa.String(512), nullable=False),
    )
    op.create_index("ix_release_components_release_id", "release_components", ["release_id"])
    op.create_index("ix_release_components_package", "release_components", ["ecosystem", "name"])
    op.create_table(
        "vuln_imports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("imported_at", UTCDateTime(), nullable=False),
        sa.Column("imported_by", sa.String(64), nullable=False),
        sa.Column("advisories", sa.Integer, nullable=False),
        sa.Column("stored", sa.Integer, nullable=False),
        sa.Column("ecosystems", sa.JSON, nullable=False),
        sa.Column("newest_modified", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "vuln_advisories",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("modified", UTCDateTime(), nullable=False),
        sa.Column("published", UTCDateTime(), nullable=True),
        sa.Column("withdrawn", UTCDateTime(), nullable=True),
        sa.Column("summary", sa.String(500), nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("import_id", sa.Integer, nullable=False),
    )
    op.create_table(
        "vuln_packages",
        sa.Column(
            "advisory_id",
            sa.String(128),
            sa.ForeignKey("vuln_advisories.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("ecosystem", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(512), primary_key=True),
    )
    op.create_index("ix_vuln_packages_package", "vuln_packages", ["ecosystem", "name"])
    op.create_table(
        "vuln_policies",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("applied_at", UTCDateTime(), nullable=False),
        sa.Column("applied_by", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vuln_policies")
    op.drop_index("ix_vuln_packages_package", table_name="vuln_packages")
    op.drop_table("vuln_packages")
    op.drop_table("vuln_advisories")
    op.drop_table("vuln_imports")
    op.drop_index("ix_release_components_package", table_name="release_components")
    op.drop_index("ix_release_components_release_id", table_name="release_components")
    op.drop_table("release_components")
    op.drop_table("release_sboms")
