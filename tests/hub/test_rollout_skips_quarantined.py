"""A rollout skips a quarantined device: it keeps what it runs until an
operator lifts the quarantine (`fogline devices unquarantine`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from fogline.hub._db import make_engine, make_session_factory, sqlite_url, upgrade_schema
from fogline.hub._schema import DesiredStateRow, RolloutDeviceRow
from fogline.hub._self_healing import QUARANTINE_LABEL
from tests.hub.test_apply_at_scale import applied_statements
from tests.support.inventory import fleet_device, insert_devices


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(sqlite_url(tmp_path))
    upgrade_schema(engine)
    yield engine
    engine.dispose()


def test_a_quarantined_device_is_left_out_of_the_rollout(engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    devices = [fleet_device(i, now) for i in range(1, 11)]  # all env=prod
    sick = devices[3]
    sick["platform_labels"] = {**sick["platform_labels"], QUARANTINE_LABEL: "true"}
    insert_devices(str(engine.url), devices)
    applied_statements(engine, "hello")
    with make_session_factory(engine)() as session:
        members = set(session.scalars(select(RolloutDeviceRow.device_id)))
        served = set(session.scalars(select(DesiredStateRow.device_id)))
    assert members == {d["id"] for d in devices} - {sick["id"]}
    assert sick["id"] not in served
