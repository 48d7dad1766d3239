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

from fogline.hub import _desired
from fogline.hub._db import make_engine, make_session_factory, sqlite_url, upgrade_schema
from fogline.hub._desired import DeploymentCache, honoured_restarts, release_keys
from fogline.hub._device_labels import effective_labels
from fogline.hub._manifests import apply, prepare
from fogline.hub._schema import DesiredStateRow, DeviceRow, RolloutDeviceRow
from fogline.manifest import canonical_json, revision_of
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


LAYERS = """\
apiVersion: fogline.dev/v1
kind: Deployment
metadata: {name: base}
spec:
  selector: {matchLabels: {env: prod}}
  config: {greeting: GREETING, level: {a: 1, b: 2}}
  rollout: {waves: ["100%"]}
---
apiVersion: fogline.dev/v1
kind: Deployment
metadata: {name: gold}
spec:
  priority: 10
  selector: {matchLabels: {tier: gold}}
  config: {level: {b: 3}, gold: true}
---
apiVersion: fogline.dev/v1
kind: Deployment
metadata: {name: some-sites}
spec:
  priority: 20
  selector:
    matchExpressions:
      - {key: site, operator: In, values: [site-1, site-2, site-30, site-40]}
  config: {greeting: null, site: special}
  drift: correct
"""


def test_documents_compiled_once_per_kind_are_those_compiled_device_by_device(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The apply compiles each distinct document once (devices selected by
    the same deployments share it), and what it stores is byte for byte
    what compiling each device on its own gives."""
    fleet(engine, 600, "node")  # 600 label sets; far fewer selections
    compiled = 0
    real = _desired.compile_desired_state

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal compiled
        compiled += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(_desired, "compile_desired_state", counted)
    request = ManifestRequest(
        files=[ManifestFile(name="layers.yaml", text=LAYERS.replace("GREETING", "hi"))]
    )
    with make_session_factory(engine)() as session:
        prepared = prepare(session, request)
        apply(session, prepared, "admin", DeploymentCache())
        session.commit()
    # base x gold x some-sites, with lab devices (no base): 8 kinds at most.
    assert compiled <= 8, compiled
    monkeypatch.setattr(_desired, "compile_desired_state", real)

    with make_session_factory(engine)() as session:
        final = DeploymentCache().get(session)
        keys = release_keys(session)
        devices = session.scalars(select(DeviceRow)).all()
        stored = {row.device_id: row for row in session.scalars(select(DesiredStateRow))}
        members = {row.device_id: row for row in session.scalars(select(RolloutDeviceRow))}
        kinds = set()
        for device in devices:
            # The straightforward way: every deployment, this device's labels.
            expected, problem = _desired._compile(
                final,
                effective_labels(device),
                honoured_restarts(device.reported),
                keys,
            )
            assert problem is None
            row = stored[device.id]
            assert row.revision == expected.revision
            assert canonical_json(row.document) == canonical_json(expected.document)
            assert revision_of(row.document) == row.revision
            member = members[device.id]
            assert member.target_revision == expected.revision
            assert canonical_json(member.target_document) == canonical_json(expected.document)
            kinds.add(expected.revision)
    assert len(devices) == 600 and len(kinds) >= 5  # several documents, each checked
