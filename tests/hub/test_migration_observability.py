"""Migration 0018 (outbox-dropping state, health, agent_version columns)
fills agent_version from the devices' facts, starts every device ok with
nothing lost, and downgrades; on SQLite and PostgreSQL."""

import datetime as dt

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text

from fogline.hub import make_engine
from fogline.hub._db import MIGRATIONS_DIR

NOW = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


def _migrate(engine: Engine, step, revision: str) -> None:  # type: ignore[no-untyped-def]
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        step(config, revision)


def test_0018_fills_agent_version_from_facts_and_downgrades(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        _migrate(engine, command.upgrade, "0015")
        with engine.begin() as connection:
            for i, facts in enumerate(['{"agent_version": "1.2.3"}', "{}"]):
                connection.execute(
                    text(
                        "INSERT INTO devices (id, name, labels, reported_labels, platform_labels,"
                        " facts, cert_serial, cert_not_after, enrolled_at)"
                        " VALUES (:id, :name, '{}', '{}', '{}', :facts, 'ab', :t, :t)"
                    ),
                    {"id": f"d{i}", "name": f"n{i}", "facts": facts, "t": NOW},
                )
        _migrate(engine, command.upgrade, "0018")
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT id, agent_version, health, outbox_lost, outbox_lost_at"
                    " FROM devices ORDER BY id"
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            ("d0", "1.2.3", "ok", 0, None),
            ("d1", None, "ok", 0, None),
        ]
        _migrate(engine, command.downgrade, "0015")
        with engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns("devices")}
        assert not {"agent_version", "health", "outbox_lost", "outbox_lost_at"} & columns
    finally:
        engine.dispose()
