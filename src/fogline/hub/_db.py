"""Database engine and migrations for SQLite (embedded) and PostgreSQL (scale-out)."""

from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

# Imported for its flush listener: every session that writes a device keeps
# device_labels, the selector index, in step.
from . import _label_index  # noqa: F401

MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every hub replica.
MIGRATION_LOCK_ID: Final = 0x666F676C


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'hub.db'}"


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout for concurrent requests."""
    # Sync handlers run on AnyIO's 40 worker threads: the pool must be able to
    # give each one a connection, or a burst of reports (hundreds of devices)
    # waits out the pool timeout instead of the database.
    pool = {"pool_size": 10, "max_overflow": 40}
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, **pool
        )
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def upgrade_schema(engine: Engine) -> None:
    """Apply Alembic migrations up to head.

    On PostgreSQL an advisory lock makes replicas that start together take
    turns, so two hubs never run the same migration at once.
    """
    # Alembic (and Mako, which it imports) only here: a hub process runs the
    # migrations once, at start, and serves without them (see
    # hub/_serve.py, forget_start_up_modules).
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
