"""The device page's health read (console `health_points`): a day from the
rollups plus the raw samples after them, in-process on a hub's SQLite."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from fogline.hub._health import epoch_ms, health_row, insert_samples, roll_up
from fogline.hub._serve import ServeOptions, build_hub
from fogline.hub.console._device_pages import health_points
from fogline.protocol import NodeHealth
from tests.support.inventory import fleet_device, insert_devices

EVERY_S = 10


def test_a_day_reads_the_rollups_and_then_the_newest_raw_samples(tmp_path: Path) -> None:
    built = build_hub(ServeOptions(data_dir=tmp_path / "hub"))
    engine, settings = built.state.engine, built.state.settings.health
    try:
        now = dt.datetime.now(dt.UTC)
        device = fleet_device(1, now - dt.timedelta(days=2))
        insert_devices(str(engine.url), [device])
        now_ms = epoch_ms(now)
        samples = [
            health_row(
                device["id"], NodeHealth(cpu_percent=float(i % 100)), now_ms - i * EVERY_S * 1000
            )
            for i in range(86400 // EVERY_S)
        ]
        with engine.begin() as connection:
            insert_samples(connection, samples)
        written, _deleted = roll_up(engine, now_ms, settings)
        assert written > 250  # the hub's pass: about 288 five-minute buckets

        with built.state.sessions() as session:
            points = health_points(session, device["id"], 86400.0, now_ms, settings)
            young = health_points(session, device["id"], 600.0, now_ms, settings)
        ats = [p["at"] for p in points]
        assert ats == sorted(ats) and len(set(ats)) == len(ats)
        assert 250 < len(points) < 400  # not 8,640
        newest = now - ats[-1]
        assert newest <= dt.timedelta(seconds=EVERY_S)  # the raw tail is there
        assert all(p["cpu_percent"] is not None for p in points)
        # Ten minutes: raw samples, as GET /v1/devices/{ref}/health answers them.
        assert 55 <= len(young) <= 61
    finally:
        engine.dispose()
