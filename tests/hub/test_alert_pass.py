"""The alert pass reads only the devices whose judgement can have changed
(hub/_alert_pass.py), and leaves the same alerts and health as a pass that
reads every device: a seeded fleet lives through reports, disks filling,
crash loops, outbox drops, silence, renewals, revokes, removals and
enrollments, and after each incremental pass a full one on the same database
finds nothing to raise, clear or rewrite. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from fogline.hub import make_engine
from fogline.hub._alert_pass import AlertPass, evaluate
from fogline.hub._alerts import AlertThresholds
from fogline.hub._db import upgrade_schema
from fogline.hub._schema import AlertRow, DeviceRow

T0 = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
STEP = dt.timedelta(seconds=10)
THRESHOLDS = AlertThresholds(offline_after_s=60.0, cert_expiry_s=600.0, outbox_quiet_s=20.0)
MIB = 1024 * 1024
FLEET = 40
STEPS = 60


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    yield engine
    engine.dispose()


def _enroll(session: Session, n: int, now: dt.datetime, rng: random.Random) -> None:
    session.add(
        DeviceRow(
            id=f"d{n:03d}",
            name=f"node-{n:03d}",
            labels={"model": "r1"},
            reported_labels={},
            facts={},
            cert_serial="ab",
            # Some certificates come within the 600 s warning during the run.
            cert_not_after=now + dt.timedelta(seconds=rng.choice([700, 900, 86400])),
            enrolled_at=now,
            last_seen=now,
        )
    )


def _report(rng: random.Random, outlier: bool) -> dict[str, Any]:
    disk_free = rng.choice([5, 60, 60, 60]) * MIB  # sometimes below 10 %
    state = rng.choice(["healthy"] * 6 + ["crash-loop"])
    return {
        "health": {
            "cpu_percent": 95.0 if outlier else 20.0 + rng.random(),
            "disk_free_bytes": disk_free,
            "disk_total_bytes": 100 * MIB,
            "mem_used_bytes": 20 * MIB,
            "mem_available_bytes": 80 * MIB,
        },
        "modules": {"modules": {"web": {"name": "web", "state": state}}},
    }


def _mutate(session: Session, now: dt.datetime, rng: random.Random, next_id: list[int]) -> None:
    """One step of a fleet's life: a few devices report, some go quiet, one
    renews, now and then one is revoked, removed or enrolled."""
    ids = list(session.scalars(select(DeviceRow.id).where(DeviceRow.revoked_at.is_(None))))
    quiet = set(ids[: len(ids) // 5])  # a fifth never report after the start: offline
    for device_id in rng.sample(ids, k=min(len(ids), 8)):
        if device_id in quiet:
            continue
        values: dict[str, Any] = {"last_seen": now, "reported": _report(rng, rng.random() < 0.05)}
        if rng.random() < 0.2:
            values.update(outbox_lost=rng.randrange(1, 100), outbox_lost_at=now)
        session.execute(update(DeviceRow).where(DeviceRow.id == device_id).values(**values))
    roll = rng.random()
    if roll < 0.1 and ids:
        session.execute(
            update(DeviceRow)
            .where(DeviceRow.id == rng.choice(ids))
            .values(cert_not_after=now + dt.timedelta(days=365))  # a renewal: no report with it
        )
    elif roll < 0.15 and ids:
        session.execute(
            update(DeviceRow).where(DeviceRow.id == rng.choice(ids)).values(revoked_at=now)
        )
    elif roll < 0.2 and ids:
        session.execute(delete(DeviceRow).where(DeviceRow.id == rng.choice(ids)))
    elif roll < 0.3:
        _enroll(session, next_id[0], now, rng)
        next_id[0] += 1


def _state(session: Session) -> tuple[set[tuple[str, str, str]], dict[str, str]]:
    active = {
        (a.device_id, a.kind, a.detail)
        for a in session.scalars(select(AlertRow).where(AlertRow.cleared_at.is_(None)))
    }
    health = dict(session.execute(select(DeviceRow.id, DeviceRow.health)).tuples().all())
    return active, health


@pytest.mark.parametrize("seed", [1, 2])
def test_each_incremental_pass_leaves_what_a_full_pass_would(engine: Engine, seed: int) -> None:
    rng = random.Random(seed)
    # Never a full pass by count; peers judged every pass, as a full pass does.
    alert_pass = AlertPass(THRESHOLDS, resync_every=1_000, peers_every=1)
    with Session(engine) as session, session.begin():
        for n in range(FLEET):
            _enroll(session, n, T0, rng)
    next_id = [FLEET]
    read: list[int] = []
    for step in range(1, STEPS + 1):
        # Now and then a long gap: many devices cross the offline line at once.
        now = T0 + step * STEP + (dt.timedelta(seconds=90) if step % 20 == 0 else dt.timedelta())
        with Session(engine) as session, session.begin():
            _mutate(session, now, rng, next_id)
        with Session(engine) as session, session.begin():
            alert_pass.run(session, now, [])
        read.append(alert_pass.read_last_pass)
        with Session(engine) as session, session.begin():
            before = _state(session)
            raised = evaluate(session, now, THRESHOLDS, [])
            after = _state(session)
            session.rollback()  # the full pass only judges the incremental one
        assert raised == [], f"step {step}: the full pass raised {raised}"
        assert after == before, (
            f"step {step}: the full pass changed {before[0] ^ after[0]}, "
            f"{set(before[1].items()) ^ set(after[1].items())}"
        )
    kinds = {kind for _, kind, _ in before[0]}
    # The run went through what it is meant to: every time-driven kind fired.
    assert {"offline", "disk-low", "crash-loop", "cert-expiring"} <= kinds, kinds
    # Steady passes read the changed devices (8 reports a step, and the
    # last step's again within the margin), not the fleet: a revoke or a
    # removal makes one pass read everything.
    assert sorted(read)[len(read) // 2] < FLEET // 2, read


def test_an_outlier_is_flagged_against_peers_it_was_not_read_with(engine: Engine) -> None:
    rng = random.Random(7)
    alert_pass = AlertPass(THRESHOLDS)
    with Session(engine) as session, session.begin():
        for n in range(10):
            _enroll(session, n, T0, rng)
            session.execute(
                update(DeviceRow)
                .where(DeviceRow.id == f"d{n:03d}")
                .values(reported={"health": {"cpu_percent": 20.0 + n / 10}})
            )
        alert_pass.run(session, T0, [])
    with Session(engine) as session, session.begin():
        alert_pass.run(session, T0 + STEP, [])  # the enrollments' reports are behind it
    raised: list[dict[str, Any]] = []
    for step in range(2, 2 + 6):  # peers are judged again within 6 passes that read
        now = T0 + step * STEP
        with Session(engine) as session, session.begin():
            session.execute(
                update(DeviceRow)
                .where(DeviceRow.id == "d003")
                .values(last_seen=now, reported={"health": {"cpu_percent": 99.0}})
            )
            raised = alert_pass.run(session, now, [])
        assert alert_pass.read_last_pass == 1
        if raised:
            break
    assert [(a["device"], a["kind"]) for a in raised] == [("node-003", "peer-anomaly")]
    assert "cpu_percent 99 vs median" in raised[0]["detail"]
