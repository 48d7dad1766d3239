"""The SBOM and vulnerability tables (migration 0021) on SQLite and PostgreSQL:
an import keeps the newest copy of each advisory, matching joins SBOM
packages with advisories, and removing a release removes its SBOM rows."""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine

from fogline.artifact import SbomPackage
from fogline.hub import make_engine
from fogline.hub._db import make_session_factory, upgrade_schema
from fogline.hub._schema import (
    ReleaseComponentRow,
    ReleaseRow,
    ReleaseSbomRow,
    VulnAdvisoryRow,
    VulnPackageRow,
)
from fogline.hub.releases import (
    ReleaseSbom,
    attach_sbom,
    find_affected,
    store_import,
    vulndb_status,
)
from fogline.vulns import read_osv_zip, zip_directory

OSV = Path(__file__).parents[1] / "vulns" / "osv"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    yield engine
    engine.dispose()


def _release(session, name: str, version: str, packages: list[SbomPackage]) -> ReleaseRow:
    row = ReleaseRow(
        name=name,
        version=version,
        digest="sha256:" + version.replace(".", "").ljust(64, "0"),
        size=1,
        key_id="ed25519:0000000000000000",
        signature={},
        pushed_at=NOW,
        pushed_by="test",
    )
    session.add(row)
    attach_sbom(session, row, ReleaseSbom('{"bomFormat":"CycloneDX"}', 1, tuple(packages)))
    return row


def _pypi(name: str, version: str) -> SbomPackage:
    return SbomPackage("PyPI", name, version, f"pkg:pypi/{name}@{version}", "METADATA")


def test_import_match_and_cascade(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    with sessions() as session:
        old = _release(session, "web", "1.0.0", [_pypi("urllib3", "1.26.4"), _pypi("idna", "3.0")])
        _release(session, "web", "2.0.0", [_pypi("urllib3", "1.26.5")])
        first = store_import(
            session, read_osv_zip(zip_directory(OSV / "pypi"), "pypi"), "pypi", "t", NOW
        )
        session.commit()
        assert (first.advisories, first.stored, first.ecosystems) == (3, 3, {"PyPI": 3})
        again = store_import(
            session, read_osv_zip(zip_directory(OSV / "pypi"), "pypi"), "pypi", "t", NOW
        )
        session.commit()
        assert again.stored == 0  # nothing newer than what the hub holds
        findings = find_affected(session, NOW, deployed_only=False)
        assert [(f.advisory, f.release, f.targeted, f.running) for f in findings] == [
            ("FOGTEST-PY-0001", "web@1.0.0", 0, 0)
        ]
        status = vulndb_status(session, NOW)
        assert (status.advisories, status.withdrawn, status.ecosystems) == (2, 1, {"PyPI": 2})
        assert [i.stored for i in status.imports] == [0, 3]  # newest first
        session.execute(delete(ReleaseRow).where(ReleaseRow.id == old.id))
        session.commit()
        assert session.scalar(select(func.count()).select_from(ReleaseSbomRow)) == 1
        assert session.scalar(select(func.count()).select_from(ReleaseComponentRow)) == 1
        session.execute(delete(VulnAdvisoryRow))
        session.commit()
        assert session.scalar(select(func.count()).select_from(VulnPackageRow)) == 0
