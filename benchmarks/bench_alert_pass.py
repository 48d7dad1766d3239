"""The hub's alert pass at fleet scale: a steady pass that reads only the
devices whose judgement can have changed (hub/_alert_pass.py) against one
that reads every device (the baseline: what every pass did before), on the
same database in the same run, SQLite and PostgreSQL.

The fleet is `tests.support.inventory`'s (100 sites, a module at 4
versions, one device in 50 never seen, the rest seen within the last hour:
most are offline) with a health block in each report, so every device has
peer figures. Between passes a sixth of the fleet reports (devices
reporting every 60 s, a pass every 10 s), at times spread over those 10 s:
`last_seen` and the report rewritten in SQL, as the hub's report writer
would. Each repetition times
one incremental pass and one full pass over the same state (process CPU;
PostgreSQL's server CPU beside it), in its own transaction, rolled back so
that both judge the same thing.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_alert_pass \\
        --devices 100000 --db sqlite,postgresql --repeat 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm import Session

from benchmarks._common import each_database, git_revision, machine, median, table
from benchmarks.bench_hub_scale import postmaster_pid, server_cpu_s
from fogline.hub._alert_pass import AlertPass
from fogline.hub._alerts import AlertThresholds
from fogline.hub._clock import utcnow
from fogline.hub._db import make_engine, sqlite_url, upgrade_schema
from fogline.hub._schema import DeviceRow
from tests.support.inventory import fleet_devices, insert_devices
from tests.support.postgres import create_database
from tests.support.processes import free_port

REPORTING_SHARE = 6  # one device in 6 reports between two passes
Run = tuple[float, float, int]


def _health(rng: random.Random) -> dict[str, Any]:
    return {
        "cpu_percent": 20.0 + rng.random() * 5,
        "disk_free_bytes": 60 << 20,
        "disk_total_bytes": 100 << 20,
        "mem_used_bytes": 20 << 20,
        "mem_available_bytes": 80 << 20,
        "modules": {"app": {"rss_bytes": 30 << 20, "restarts": 0}},
    }


def _fleet(count: int, now: dt.datetime, rng: random.Random) -> Any:
    for device in fleet_devices(count, now):
        device["reported"] = {**device["reported"], "health": _health(rng)}
        yield device


def _reports(session: Session, ids: list[str], now: dt.datetime, rng: random.Random) -> None:
    table = cast(Table, DeviceRow.__table__)
    session.connection().execute(
        update(table).where(table.c.id == bindparam("b_id")),
        [
            {
                "b_id": i,
                # Reports spread over the 10 s since the last pass.
                "last_seen": now - dt.timedelta(seconds=rng.uniform(0, 10)),
                "reported": {"health": _health(rng)},
            }
            for i in rng.sample(ids, len(ids) // REPORTING_SHARE)
        ],
    )


def _timed(alert_pass: AlertPass, session: Session, now: dt.datetime, db_pid: int | None) -> Run:
    """One pass: (process CPU s, database server CPU s, devices read)."""
    cpu0, db0 = time.process_time(), server_cpu_s(db_pid)
    alert_pass.run(session, now, [])
    return time.process_time() - cpu0, server_cpu_s(db_pid) - db0, alert_pass.read_last_pass


def bench(db: str, pg_base: str | None, root: Path, args: argparse.Namespace) -> list[list[Any]]:
    if db == "postgresql":
        assert pg_base is not None
        db_url = create_database(pg_base, f"alerts_{free_port()}")
    else:
        (root / db).mkdir()
        db_url = sqlite_url(root / db)
    engine = make_engine(db_url)
    upgrade_schema(engine)
    rng = random.Random(1)
    start = utcnow()
    t0 = time.perf_counter()
    insert_devices(db_url, _fleet(args.devices, start, rng), analyze=True)
    print(f"{db}: {args.devices} devices in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    db_pid = postmaster_pid(db_url) if db == "postgresql" else None
    thresholds = AlertThresholds()
    steady = AlertPass(thresholds, resync_every=1_000_000)
    with Session(engine) as session, session.begin():
        ids = [row.id for row in session.query(DeviceRow.id)]
        first = _timed(steady, session, start, db_pid)
    print(f"{db}: first pass {first}", file=sys.stderr)
    incremental: list[Run] = []
    full: list[Run] = []
    for repetition in range(args.repeat):
        now = start + dt.timedelta(seconds=10 * (repetition + 1))
        with Session(engine) as session, session.begin():
            _reports(session, ids, now, rng)
        with Session(engine) as session, session.begin():
            incremental.append(_timed(steady, session, now, db_pid))
        with Session(engine) as session, session.begin():
            full.append(_timed(AlertPass(thresholds), session, now, db_pid))
            session.rollback()
        print(f"{db}: {repetition}: incremental {incremental[-1]} full {full[-1]}", file=sys.stderr)
    engine.dispose()
    rows = []
    for name, runs in (("reads every device (baseline)", full), ("incremental", incremental)):
        rows.append([
            db, name, f"{median([r[2] for r in runs]):,.0f}",
            f"{median([r[0] for r in runs]):.3f}",
            " ".join(f"{r[0]:.2f}" for r in runs),
            f"{median([r[1] for r in runs]):.3f}" if db_pid else "—",
        ])  # fmt: skip
    ratio = median([r[0] for r in full]) / max(median([r[0] for r in incremental]), 1e-9)
    rows.append([db, "ratio baseline / incremental (CPU)", "", f"{ratio:.1f}x", "", ""])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not 10 <= args.devices <= 1_000_000 or not 1 <= args.repeat <= 50:
        raise SystemExit("--devices takes 10..1,000,000 and --repeat 1..50")
    rows, load = each_database(
        args.db.split(","), "bench-alerts-", lambda db, pg, root: bench(db, pg, root, args)
    )
    print(f"## Alert pass over {args.devices:,} devices ({args.repeat} repetitions)\n")
    print(f"commit {git_revision()}, {machine()}, load {load}\n")
    headers = ["db", "pass", "devices read", "CPU s (median)", "each", "PostgreSQL CPU s"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
