"""Many devices written straight into a hub's database, for paging tests and
the inventory benchmark: enrolling 100,000 devices over mTLS would take the
benchmark's whole budget. Rows go in with Core INSERTs in batches, their
`device_labels` beside them (a Core INSERT passes by the ORM listener of
hub/_label_index.py, so this writes what it would)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert

from fogline.hub._db import make_engine, sqlite_url
from fogline.hub._device_labels import effective_labels
from fogline.hub._schema import DesiredStateRow, DeviceLabelRow, DeviceRow

from .processes import HubProcess

BATCH = 5000
SITES = 100
TIERS = ("gold", "silver", "bronze")
PLATFORM = {"fogline.dev/os": "linux", "fogline.dev/arch": "arm64"}


def hub_db_url(hub: HubProcess) -> str:
    return hub.db_url or sqlite_url(hub.data_dir)


def fleet_device(i: int, now: dt.datetime, prefix: str = "node") -> dict[str, Any]:
    """Device number `i`: site-(i % 100), tier by hundreds, env lab for every
    tenth, never seen for every 50th, module `app` at version 1.(i % 4),
    agent 0.(i % 5).0."""
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{prefix}-{i}")),
        "name": f"{prefix}-{i:06d}",
        "labels": {
            "site": f"site-{i % SITES}",
            "tier": TIERS[(i // SITES) % 3],
            "env": "lab" if i % 10 == 0 else "prod",
        },
        "reported_labels": {},
        "platform_labels": dict(PLATFORM),
        "facts": {
            "hostname": f"{prefix}-{i:06d}",
            "os": "linux",
            "arch": "aarch64",
            "agent_version": f"0.{i % 5}.0",
        },
        "agent_version": f"0.{i % 5}.0",
        "cert_serial": f"{i + 1:x}",
        "cert_not_after": now + dt.timedelta(days=365),
        "enrolled_at": now,
        "last_seen": None if i % 50 == 0 else now - dt.timedelta(seconds=i % 3600),
        "reported": {
            "modules": {"modules": {"app": {"version": f"1.{i % 4}", "state": "healthy"}}}
        },
    }


def fleet_devices(count: int, now: dt.datetime, prefix: str = "node") -> Iterator[dict[str, Any]]:
    return (fleet_device(i, now, prefix) for i in range(count))


def insert_devices(
    db_url: str,
    devices: Iterable[dict[str, Any]],
    desired: Iterable[dict[str, Any]] = (),
    *,
    analyze: bool = False,
) -> int:
    """Insert DeviceRow column dicts (and DesiredStateRow ones); returns how many devices."""
    engine = make_engine(db_url)
    count = 0
    try:
        with engine.begin() as connection:
            batch: list[dict[str, Any]] = []
            labels: list[dict[str, Any]] = []
            for device in devices:
                batch.append(device)
                labels += [
                    {"device_id": device["id"], "key": key, "value": value}
                    for key, value in effective_labels(SimpleNamespace(**device)).items()
                ]
                if len(batch) >= BATCH:
                    connection.execute(insert(DeviceRow), batch)
                    connection.execute(insert(DeviceLabelRow), labels)
                    count += len(batch)
                    batch, labels = [], []
            if batch:
                connection.execute(insert(DeviceRow), batch)
                if labels:
                    connection.execute(insert(DeviceLabelRow), labels)
                count += len(batch)
            rows = list(desired)
            if rows:
                connection.execute(insert(DesiredStateRow), rows)
            if analyze:  # planner statistics, as a fleet grown over months has them
                connection.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return count
