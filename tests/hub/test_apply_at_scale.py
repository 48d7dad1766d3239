"""An apply's database work grows by chunks of devices, not by device.

An apply to 10,000 devices held SQLite's write lock for minutes: every
device's desired state was read with its own query (each one flushing the
session first), and every sequence number was taken with an UPDATE that
SQLAlchemy synchronised against every object the session held, which made
the whole apply quadratic. Reports waiting behind the lock failed with 500.

These tests run the hub's own apply (plan, write, rollout start) on a real
SQLite database holding many devices, and count the SQL statements it sends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from fogline.hub._db import make_engine, make_session_factory, sqlite_url, upgrade_schema
from fogline.hub._desired import DeploymentCache
from fogline.hub._manifests import apply, prepare
from fogline.hub._schema import DesiredStateRow, RolloutDeviceRow
from fogline.protocol import ManifestFile, ManifestRequest
from tests.support.inventory import fleet_devices, insert_devices

DEPLOYMENT = """\
apiVersion: fogline.dev/v1
kind: Deployment
metadata: {name: everyone}
spec:
  selector: {matchLabels: {env: prod}}
  config: {greeting: GREETING}
  rollout: {waves: ["10%", "100%"], bake: 10s}
"""


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(sqlite_url(tmp_path))
    upgrade_schema(engine)
    yield engine
    engine.dispose()


def applied_statements(engine: Engine, greeting: str) -> int:
    """Plan and apply the deployment in one transaction, as the route does;
    returns how many SQL statements it sent."""
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    request = ManifestRequest(
        files=[ManifestFile(name="everyone.yaml", text=DEPLOYMENT.replace("GREETING", greeting))]
    )
    event.listen(engine, "before_cursor_execute", count)
    try:
        with make_session_factory(engine)() as session:
            prepared = prepare(session, request)
            apply(session, prepared, "admin", DeploymentCache())
            session.commit()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return statements


def fleet(engine: Engine, count: int, prefix: str) -> None:
    insert_devices(str(engine.url), fleet_devices(count, dt.datetime.now(dt.UTC), prefix))


def test_an_apply_to_ten_times_the_devices_sends_about_the_same_statements(
    engine: Engine,
) -> None:
    fleet(engine, 200, "small")
    small = applied_statements(engine, "hello")
    fleet(engine, 1800, "more")  # 2,000 devices now
    large = applied_statements(engine, "hello again")
    # Per-device queries would add thousands; chunks of 500 add a handful.
    assert large - small < 40, (small, large)


def test_every_selected_device_is_in_the_rollout_and_its_first_wave_is_served(
    engine: Engine,
) -> None:
    fleet(engine, 1000, "node")  # env=prod: 9 in 10
    applied_statements(engine, "hello")
    with make_session_factory(engine)() as session:
        members = session.scalar(select(func.count()).select_from(RolloutDeviceRow))
        served = session.scalars(select(DesiredStateRow.seq).order_by(DesiredStateRow.seq)).all()
    assert members == 1000  # prod devices get the config, lab ones an empty document
    assert len(served) == 100  # the first wave: 10 %
    # One block of sequence numbers, none taken twice.
    assert len(set(served)) == len(served) and served[-1] - served[0] == len(served) - 1
