"""Backup and restore refuse what they cannot do whole: one line, exit 1, nothing half-restored."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.backup import hub_backup, hub_restore
from tests.support.modules import release
from tests.support.postgres import create_database
from tests.support.processes import HubProcess, free_port, start_hub, tls


@pytest.fixture(scope="module")
def backup(shared_hub: HubProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One backup of the module's hub (SQLite), several chunks long."""
    out = tmp_path_factory.mktemp("backups") / "hub.backup"
    (shared_hub.data_dir / "notes").mkdir(exist_ok=True)
    # Data that does not compress: the backup spans several 1 MiB chunks.
    (shared_hub.data_dir / "notes" / "big.bin").write_bytes(uuid.uuid4().bytes * 200_000)
    made = hub_backup(shared_hub.data_dir, out)
    assert made.returncode == 0, made.stderr
    return out


def _error_line(result: object) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 1, stderr  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def _variant(backup: Path, tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_restored_hub_serves_and_its_files_are_the_backed_up_ones(
    shared_hub: HubProcess, backup: Path, tmp_path: Path
) -> None:
    target = tmp_path / "new"
    target.mkdir()  # an empty directory is a fine target
    done = hub_restore(backup, target)
    assert done.returncode == 0, done.stderr
    for name in ("ca.pem", "ca-key.pem", "admin-token", "tls/hub.pem", "notes/big.bin"):
        assert (target / name).read_bytes() == (shared_hub.data_dir / name).read_bytes(), name
    assert not list(target.glob(".fogline-restore-*"))
    assert target.stat().st_mode & 0o777 == 0o700
    restored = start_hub(target)
    try:
        assert restored.token == shared_hub.token
        with restored.client() as client:
            assert client.get("/v1/devices").status_code == 200
    finally:
        restored.stop()


def test_a_wrong_passphrase_restores_nothing(backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "new"
    line = _error_line(hub_restore(backup, target, passphrase="not the passphrase at all"))
    assert line == f"error: {backup}: wrong passphrase (or the file's header is damaged); " + (
        "nothing was restored"
    )
    assert not target.exists()


@pytest.mark.parametrize("where", [0.3, 0.6, 0.999])
def test_a_flipped_byte_restores_nothing(backup: Path, tmp_path: Path, where: float) -> None:
    data = bytearray(backup.read_bytes())
    data[int(len(data) * where)] ^= 0x20
    damaged = _variant(backup, tmp_path, "damaged.backup", bytes(data))
    target = tmp_path / "new"
    target.mkdir()
    line = _error_line(hub_restore(damaged, target))
    assert "fails authentication" in line and line.endswith("nothing was restored"), line
    assert list(target.iterdir()) == []  # an empty directory stays empty


@pytest.mark.parametrize("keep", [0.5, 0.99, 1.0])
def test_a_truncated_file_restores_nothing(backup: Path, tmp_path: Path, keep: float) -> None:
    data = backup.read_bytes()
    cut = _variant(backup, tmp_path, "cut.backup", data[: int(len(data) * keep) - 1])
    target = tmp_path / "new"
    line = _error_line(hub_restore(cut, target))
    assert "truncated" in line and line.endswith("nothing was restored"), line
    assert not target.exists()


def test_a_file_that_is_not_a_backup(tmp_path: Path) -> None:
    other = _variant(tmp_path, tmp_path, "notes.txt", b"hello\n")
    line = _error_line(hub_restore(other, tmp_path / "new"))
    assert "not a Fogline backup" in line
    assert not (tmp_path / "new").exists()


def test_a_non_empty_target_is_refused_and_left_alone(backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "ca.pem").write_text("someone else's hub")
    line = _error_line(hub_restore(backup, target))
    assert line == (
        f"error: {target}: not empty; restore needs a new or empty directory "
        "(it never overwrites a hub)"
    )
    assert [p.name for p in target.iterdir()] == ["ca.pem"]
    assert (target / "ca.pem").read_text() == "someone else's hub"


def test_a_sqlite_backup_restored_with_a_db_url_is_refused(backup: Path, tmp_path: Path) -> None:
    line = _error_line(hub_restore(backup, tmp_path / "new", db_url="postgresql+psycopg://x@h/db"))
    assert "holds a SQLite database: restore it without --db or FOGLINE_DB" in line
    assert not (tmp_path / "new").exists()


def test_backup_refuses_to_overwrite_and_to_back_up_what_is_not_a_hub(
    shared_hub: HubProcess, backup: Path, tmp_path: Path
) -> None:
    before = backup.read_bytes()
    line = _error_line(hub_backup(shared_hub.data_dir, backup))
    assert line == f"error: {backup}: exists; a backup never overwrites a file"
    assert backup.read_bytes() == before
    line = _error_line(hub_backup(tmp_path, tmp_path / "x.backup"))
    assert line == f"error: {tmp_path}: not a hub data directory (no ca-key.pem)"
    assert not (tmp_path / "x.backup").exists()
    line = _error_line(hub_backup(shared_hub.data_dir, tmp_path / "y.backup", passphrase="short"))
    assert "at least 12 characters" in line
    assert not list(tmp_path.glob("*y.backup*"))


def test_without_artifacts_a_restore_asks_for_the_releases_again_and_a_push_restores_them(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    key_doc = shared_hub.cli("keys", "create", "bk", "--dir", str(keys)).stdout
    shared_hub.cli("apply", "-f", "-", input_text=key_doc)
    archive = release(shared_hub, tmp_path, keys / "bk.key", "7.0.0", free_port())
    with shared_hub.client() as client:
        digest = client.get("/v1/releases/web/7.0.0").json()["digest"]
    small, full = tmp_path / "small.backup", tmp_path / "full.backup"
    assert hub_backup(shared_hub.data_dir, small, extra=("--no-artifacts",)).returncode == 0
    assert hub_backup(shared_hub.data_dir, full).returncode == 0
    stored = Path("artifacts", "sha256", digest[7:9], digest[9:])
    assert hub_restore(full, tmp_path / "full").returncode == 0
    assert (tmp_path / "full" / stored).read_bytes() == archive.read_bytes()

    target = tmp_path / "new"
    done = hub_restore(small, target)
    assert done.returncode == 0, done.stderr
    assert "artifacts were left out: push each release again" in done.stderr
    assert "fogline release push --force" in done.stderr
    restored = start_hub(target)
    try:
        with restored.client() as client:
            assert not (target / stored).exists()
            assert client.get(f"/v1/artifacts/{digest}").status_code == 404
            assert client.get("/v1/releases/web/7.0.0").status_code == 200  # the record stays
        # Without --force the CLI sees the release listed and uploads nothing.
        assert "already on the hub" in restored.cli("release", "push", str(archive)).stderr
        with restored.client() as client:
            assert client.get(f"/v1/artifacts/{digest}").status_code == 404
        restored.cli("release", "push", "--force", str(archive))  # same bytes: accepted
        with restored.client() as client:
            fetched = client.get(f"/v1/artifacts/{digest}")
        assert fetched.status_code == 200 and len(fetched.content) == archive.stat().st_size
    finally:
        restored.stop()


@pytest.fixture
def pg_hub(tmp_path: Path, postgres_url: str) -> Iterator[HubProcess]:
    hub = start_hub(tmp_path / "pg-hub", db_url=postgres_url)
    try:
        yield hub
    finally:
        hub.stop()


def _tables(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            return int(conn.execute(text(query)).scalar() or 0)
    finally:
        engine.dispose()


def test_postgresql_restore_needs_an_empty_database_and_leaves_it_empty_on_a_bad_file(
    pg_hub: HubProcess, postgres_server: str, tmp_path: Path
) -> None:
    assert pg_hub.db_url is not None
    backup = tmp_path / "pg.backup"
    made = hub_backup(pg_hub.data_dir, backup, db_url=pg_hub.db_url)
    assert made.returncode == 0, made.stderr

    line = _error_line(hub_restore(backup, tmp_path / "a"))
    assert "holds a PostgreSQL database: pass --db" in line
    # The hub's own database is not empty: refused, and untouched.
    tables = _tables(pg_hub.db_url)
    line = _error_line(hub_restore(backup, tmp_path / "b", db_url=pg_hub.db_url))
    assert "not empty" in line and "restore needs a new, empty database" in line
    assert _tables(pg_hub.db_url) == tables
    assert not (tmp_path / "b").exists()

    empty = create_database(postgres_server, f"r_{uuid.uuid4().hex[:10]}")
    data = bytearray(backup.read_bytes())
    data[-30] ^= 1  # in the last chunk: after everything else was unpacked
    damaged = _variant(backup, tmp_path, "damaged.backup", bytes(data))
    line = _error_line(hub_restore(damaged, tmp_path / "c", db_url=empty))
    assert "fails authentication" in line
    assert _tables(empty) == 0 and not (tmp_path / "c").exists()

    done = hub_restore(backup, tmp_path / "d", db_url=empty)
    assert done.returncode == 0, done.stderr
    assert _tables(empty) == tables
    restored = HubProcess(tmp_path / "d", free_port(), empty)
    restored.start()
    try:
        assert restored.token == pg_hub.token
        response = httpx.get(
            f"{restored.url}/v1/devices",
            verify=tls(restored.ca),
            headers={"authorization": f"Bearer {pg_hub.token}"},
        )
        assert response.status_code == 200
    finally:
        restored.stop()
