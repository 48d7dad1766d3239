"""Migration 0022 (tuf_metadata) on SQLite and PostgreSQL: the hub's TUF
repository stores uploads, signs snapshot and timestamp, serves every
version, and the table downgrades away."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from securesystemslib.signer import CryptoSigner
from sqlalchemy import inspect

from fogline.hub import TufSettings, make_engine
from fogline.hub._clock import utcnow
from fogline.hub._db import MIGRATIONS_DIR, make_session_factory
from fogline.hub._tuf import ONLINE_KEY_FILE, OnlineKey, metadata_file, trusted_root, upload
from fogline.tuf import OfflineRepo


def _migrate(engine, step, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        step(config, revision)


def test_0022_stores_and_serves_tuf_metadata_and_downgrades(db_url, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    try:
        _migrate(engine, command.upgrade, "0022")
        key = OnlineKey(tmp_path / ONLINE_KEY_FILE)
        offline = OfflineRepo(tmp_path / "offline")
        offline.init(2, 2, key.signer().public_key)
        offline.delegate("web", [CryptoSigner.generate_ed25519().public_key], 1)
        settings, now = TufSettings(), utcnow()
        sessions = make_session_factory(engine)
        with sessions() as session, session.begin():
            assert trusted_root(session) is None
            upload(session, key, settings, "root", offline.root_file.read_bytes(), now)
            upload(session, key, settings, "targets", offline.targets_file.read_bytes(), now)
        with sessions() as session:
            assert trusted_root(session) == offline.root_file.read_bytes()
            assert metadata_file(session, key, settings, "2.targets.json", now) == (
                offline.targets_file.read_bytes()
            )
            timestamp = metadata_file(session, key, settings, "timestamp.json", now)
            assert b'"snapshot.json"' in timestamp
            assert metadata_file(session, key, settings, "1.snapshot.json", now)
        _migrate(engine, command.downgrade, "0015")
        assert "tuf_metadata" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
