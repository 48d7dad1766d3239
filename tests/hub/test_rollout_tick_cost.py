"""What a scheduler tick reads: nothing when idle, and only the devices whose
verdict can change while a rollout runs (issue #18, propagation).

Against a real hub database (the migrations on a SQLite file), counting the
statements each tick sends with a SQLAlchemy event listener.
"""

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from fogline.hub import make_engine, upgrade_schema
from fogline.hub._db import make_session_factory
from fogline.hub._schema import DesiredStateRow, DeviceRow, RolloutDeviceRow, RolloutRow
from fogline.hub.rollouts import tick
from fogline.hub.rollouts._policy import DEFAULT_POLICY
from fogline.hub.rollouts._start import start_rollout
from fogline.manifest import DesiredState

DEVICES = 50
OFFLINE_AFTER_S = 30.0


@pytest.fixture
def hub_db(tmp_path) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade_schema(engine)
    try:
        yield engine, make_session_factory(engine)
    finally:
        engine.dispose()


def _fleet(sessions: sessionmaker[Session], now: dt.datetime) -> list[str]:
    ids = [f"dev-{n:03d}" for n in range(DEVICES)]
    with sessions() as session, session.begin():
        for n, device_id in enumerate(ids):
            session.add(
                DeviceRow(
                    id=device_id,
                    name=f"node-{n:03d}",
                    labels={},
                    reported_labels={},
                    facts={},
                    cert_serial="ab",
                    cert_not_after=now + dt.timedelta(days=1),
                    enrolled_at=now,
                    last_seen=now,
                    reported={"modules": {"modules": {}}},
                )
            )
        session.flush()
        for device_id in ids:
            session.add(
                DesiredStateRow(
                    device_id=device_id,
                    revision="old",
                    document={"config": {"round": 0}},
                    updated_at=now,
                    applied_revision="old",
                )
            )
    return ids


class _Statements:
    """Every SQL statement the engine sends while recording."""

    def __init__(self, engine: Engine) -> None:
        self.seen: list[str] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.seen.append(" ".join(statement.split()))


def _tick(sessions: sessionmaker[Session]) -> int | None:
    with sessions() as session, session.begin():
        return tick(session, OFFLINE_AFTER_S)


def test_idle_tick_takes_no_write_lock_and_reads_no_device(hub_db):
    engine, sessions = hub_db
    _fleet(sessions, dt.datetime.now(dt.UTC))
    statements = _Statements(engine)
    assert _tick(sessions) == 0
    sql = [s for s in statements.seen if not s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))]
    # On SQLite the rollout lock is a write: an idle hub took the database's
    # write lock every second in each process.
    assert not [s for s in sql if s.split()[0] in ("UPDATE", "INSERT", "DELETE")], sql
    assert not [s for s in sql if "devices" in s], sql
    assert len(sql) == 1, sql


def _start_round_one(session, ids):
    """Start a rollout of `web` sending every device in `ids` round 1; its id."""
    targets = {i: DesiredState("new", {"config": {"round": 1}}) for i in ids}
    rollout = start_rollout(
        session,
        actor="test",
        deployments=["web"],
        final=[],
        keys={},
        policy=DEFAULT_POLICY,
        previous={},
        targets=targets,
    )
    assert rollout is not None
    return rollout.id


def test_running_tick_reads_only_devices_whose_verdict_can_change(hub_db):
    engine, sessions = hub_db
    ids = _fleet(sessions, dt.datetime.now(dt.UTC))
    with sessions() as session, session.begin():
        rollout_id = _start_round_one(session, ids)
    statements = _Statements(engine)

    # Nobody applied yet: no member document, device report or desired
    # document is loaded, and no member is written.
    assert _tick(sessions) == 0
    sql = " ".join(statements.seen)
    for column in (
        "devices.reported",
        "rollout_devices.target_document",
        "rollout_devices.previous_document",
        "desired_states.document",
    ):
        assert column not in sql, column
    assert not [s for s in statements.seen if s.startswith(("UPDATE rollout", "INSERT"))]

    # Two devices apply the target: exactly their reports are read, they
    # succeed, and the rest keep waiting.
    with sessions() as session, session.begin():
        session.execute(
            update(DesiredStateRow)
            .where(DesiredStateRow.device_id.in_(ids[:2]))
            .values(applied_revision="new")
        )
    statements.seen.clear()
    assert _tick(sessions) == 0
    reads = [s for s in statements.seen if "devices.reported" in s]
    assert len(reads) == 1 and reads[0].count("?") == 2, reads
    with sessions() as session:
        states = dict(
            session.execute(
                select(RolloutDeviceRow.device_id, RolloutDeviceRow.state).where(
                    RolloutDeviceRow.rollout_id == rollout_id
                )
            ).all()
        )
    assert [states[i] for i in ids[:2]] == ["succeeded", "succeeded"]
    assert set(states[i] for i in ids[2:]) == {"updating"}

    # Everyone on the target: the rollout completes.
    with sessions() as session, session.begin():
        session.execute(update(DesiredStateRow).values(applied_revision="new"))
    _tick(sessions)
    with sessions() as session:
        assert session.get(RolloutRow, rollout_id).state == "completed"  # type: ignore[union-attr]


def test_a_waiting_device_past_its_wave_timeout_is_still_judged(hub_db):
    """The filter that skips waiting devices must not skip a timed-out one."""
    _engine, sessions = hub_db
    now = dt.datetime.now(dt.UTC)
    ids = _fleet(sessions, now)
    with sessions() as session, session.begin():
        rollout_id = _start_round_one(session, ids)
        # The first device started its update long ago and went offline.
        long_ago = now - dt.timedelta(seconds=DEFAULT_POLICY.wave_timeout_s + 60)
        session.execute(
            update(RolloutDeviceRow)
            .where(RolloutDeviceRow.device_id == ids[0])
            .values(started_at=long_ago)
        )
        session.execute(update(DeviceRow).where(DeviceRow.id == ids[0]).values(last_seen=long_ago))
    _tick(sessions)
    with sessions() as session:
        member = session.get(RolloutDeviceRow, (rollout_id, ids[0]))
        assert member is not None
        assert (member.state, member.reason) == ("skipped", "offline after waveTimeout")
