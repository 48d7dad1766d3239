"""Migration 0015 (device_labels, the selector index) fills the index from the
devices already enrolled, the flush listener keeps it in step afterwards,
and it downgrades; on SQLite and PostgreSQL."""

import datetime as dt

from alembic import command
from alembic.config import Config
from sqlalchemy import insert, inspect, select

from fogline.hub import make_engine
from fogline.hub._db import MIGRATIONS_DIR, make_session_factory
from fogline.hub._schema import DeviceLabelRow, DeviceRow
from tests.support.inventory import PLATFORM, fleet_devices


def _migrate(engine, step, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        step(config, revision)


def _index(engine) -> set[tuple[str, str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(DeviceLabelRow.device_id, DeviceLabelRow.key, DeviceLabelRow.value)
        )
        return {tuple(row) for row in rows}


def test_0015_indexes_existing_devices_and_the_listener_keeps_it_in_step(db_url) -> None:
    engine = make_engine(db_url)
    try:
        _migrate(engine, command.upgrade, "0014")
        devices = [  # as a 0014 schema holds them: no agent_version column yet
            {k: v for k, v in d.items() if k != "agent_version"}
            for d in fleet_devices(1200, dt.datetime.now(dt.UTC), "old")
        ]
        devices[0]["platform_labels"] = {**PLATFORM, "fogline.dev/os": "windows"}
        devices[0]["labels"] = {**devices[0]["labels"], "fogline.dev/os": "claimed"}
        with engine.begin() as connection:
            connection.execute(insert(DeviceRow.__table__), devices)
        _migrate(engine, command.upgrade, "0015")
        expected = {
            (d["id"], key, value)
            for d in devices
            for key, value in {**d["labels"], **d["platform_labels"]}.items()
        }
        assert _index(engine) == expected
        assert (devices[0]["id"], "fogline.dev/os", "windows") in expected  # platform wins
        _migrate(engine, command.upgrade, "head")  # the ORM below maps the newest schema

        sessions = make_session_factory(engine)
        with sessions() as session, session.begin():
            row = session.get(DeviceRow, devices[1]["id"])
            assert row is not None
            row.labels = {"site": "berlin"}
            gone = session.get(DeviceRow, devices[2]["id"])
            session.delete(gone)
            seen = session.get(DeviceRow, devices[3]["id"])
            assert seen is not None
            seen.last_seen = dt.datetime.now(dt.UTC)  # no label change: index untouched
        index = _index(engine)
        assert {(k, v) for i, k, v in index if i == devices[1]["id"]} == {
            ("site", "berlin"),
            *PLATFORM.items(),
        }
        assert not any(i == devices[2]["id"] for i, _, _ in index)

        _migrate(engine, command.downgrade, "0014")
        with engine.connect() as connection:
            assert "device_labels" not in inspect(connection).get_table_names()
        _migrate(engine, command.upgrade, "0015")  # and up again, refilled
        assert len(_index(engine)) == len(index)
    finally:
        engine.dispose()
