"""Health series storage: rollups and retention with an injected clock, on
SQLite and PostgreSQL (hub/_health.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fogline.hub import HealthRetention, make_engine
from fogline.hub._db import upgrade_schema
from fogline.hub._health import health_row, insert_samples, roll_up
from fogline.hub._schema import DeviceRow, HealthSampleRow
from fogline.protocol import ModuleHealth, NodeHealth

T0 = dt.datetime(2030, 1, 1, 12, 0, 0)
T0_MS = int(T0.replace(tzinfo=dt.UTC).timestamp() * 1000)
MINUTE_MS = 60_000
RETENTION = HealthRetention(raw_retention_s=3600.0, rollup_step_s=300.0, rollup_retention_s=86400.0)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    with Session(engine) as session, session.begin():
        for device_id in ("d1", "d2"):
            session.add(
                DeviceRow(
                    id=device_id,
                    name=device_id,
                    labels={},
                    reported_labels={},
                    facts={},
                    cert_serial="ab",
                    cert_not_after=T0.replace(tzinfo=dt.UTC),
                    enrolled_at=T0.replace(tzinfo=dt.UTC),
                )
            )
    yield engine
    engine.dispose()


def _report(engine: Engine, device_id: str, at_ms: int, **values: Any) -> None:
    health = NodeHealth(
        modules={"web": ModuleHealth(state="healthy", restarts=1, rss_bytes=1024)}, **values
    )
    with engine.begin() as connection:
        insert_samples(connection, [health_row(device_id, health, at_ms)])


def _rows(engine: Engine, step_s: int) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(HealthSampleRow.__table__)
                .where(HealthSampleRow.step_s == step_s)
                .order_by(HealthSampleRow.device_id, HealthSampleRow.at_ms)
            )
        )


def test_closed_buckets_roll_up_per_device_once(engine: Engine) -> None:
    # d1 reports every minute for 10 minutes: buckets [0, 5) and [5, 10) minutes.
    for minute in range(10):
        _report(
            engine,
            "d1",
            T0_MS + minute * MINUTE_MS,
            cpu_percent=float(minute),
            mem_used_bytes=1000 + minute,
            mem_available_bytes=5000 - minute,
            temperature_c=40.0 + minute,
            net_rx_bytes=100 * minute,
            pipeline_errors=3 * minute,
            pipeline_dropped=minute,
        )
    _report(engine, "d2", T0_MS + 7 * MINUTE_MS, cpu_percent=50.0)
    # At minute 10 plus the grace, both buckets are closed.
    now = T0_MS + 10 * MINUTE_MS + 10_000
    assert roll_up(engine, now, RETENTION) == (3, 0)
    assert roll_up(engine, now, RETENTION) == (0, 0), "a bucket is rolled up once"
    first, second, other = _rows(engine, 300)
    assert (first.device_id, first.at_ms, second.at_ms) == ("d1", T0_MS, T0_MS + 5 * MINUTE_MS)
    assert first.cpu_percent == pytest.approx(2.0)  # mean of 0..4
    assert first.mem_used_bytes == 1002  # mean, a whole number of bytes
    assert first.mem_available_bytes == 4996  # the least: the worst moment
    assert first.temperature_c == 44.0 and first.net_rx_bytes == 400  # the most
    assert (first.pipeline_errors, first.pipeline_dropped) == (12, 4)  # counters: the most
    assert first.modules is None  # per-module figures stay in raw rows
    assert (other.device_id, other.cpu_percent) == ("d2", 50.0)
    assert _rows(engine, 0)[0].modules == {
        "web": {"state": "healthy", "restarts": 1, "rss_bytes": 1024}
    }


def test_an_open_bucket_waits_and_a_gap_does_not_stall_rollups(engine: Engine) -> None:
    _report(engine, "d1", T0_MS, cpu_percent=10.0)
    assert roll_up(engine, T0_MS + 4 * MINUTE_MS, RETENTION) == (0, 0)  # bucket still open
    assert roll_up(engine, T0_MS + 5 * MINUTE_MS + 10_000, RETENTION) == (1, 0)
    # The fleet was silent for two days (more buckets than one pass takes).
    later = T0_MS + 2 * 86400_000
    _report(engine, "d1", later, cpu_percent=30.0)
    written, _deleted = roll_up(engine, later + 5 * MINUTE_MS + 10_000, RETENTION)
    assert written == 1
    assert [r.cpu_percent for r in _rows(engine, 300)] == [30.0]  # the first aged out


def test_raw_samples_and_rollups_are_deleted_past_retention(engine: Engine) -> None:
    for minute in range(0, 120, 10):
        _report(engine, "d1", T0_MS + minute * MINUTE_MS, cpu_percent=1.0)
    now = T0_MS + 120 * MINUTE_MS + 10_000
    written, deleted = roll_up(engine, now, RETENTION)
    assert written == 12
    # Raw: one hour kept; rows from minute 0 to 60 (before 60m10s ago) went.
    assert deleted == 7
    assert [r.at_ms for r in _rows(engine, 0)] == [
        T0_MS + m * MINUTE_MS for m in (70, 80, 90, 100, 110)
    ]
    # A day later the other 5 raw rows are gone, and the rollups of minutes 0 to 60.
    assert roll_up(engine, now + 86400_000 - 60 * MINUTE_MS, RETENTION)[1] == 5 + 7
    assert roll_up(engine, now + 86400_000 + 60 * MINUTE_MS, RETENTION)[1] == 5
    assert _rows(engine, 0) == [] and _rows(engine, 300) == []
