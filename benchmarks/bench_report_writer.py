"""CPU cost of the hub's batched report writer, per report, by batch size.

At a steady 1,000 reports/s a hub's batches are small (1 to 4 reports), so
what a batch costs regardless of its size (building statements, a
transaction, a commit) decides the hub's CPU per report; under saturation
batches grow and that cost is shared. This measures the writer's database
transaction alone (`ReportWriter._write`, the part that runs on a worker
thread) in this process: enrolls `--devices` devices on a fresh database,
then writes batches of each size, each device's report with fresh facts,
and reports the process CPU per report and per batch (median of
`--repeats`).

Device health (issue #15): each batch size is measured twice in the same run,
repeats interleaved, with reports without and with a `health` block (the
node figures and three modules, tests/protocol/golden/report.health.json);
the extra CPU per report, parsing the body included, is the difference.
Storage per raw health sample is the table and its indexes over its rows.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_report_writer --db sqlite,postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, text

from benchmarks._common import git_revision, machine, median, table
from fogline.hub import make_engine, upgrade_schema
from fogline.hub._bodies import parse_json_body
from fogline.hub._claims import create_claim
from fogline.hub._db import make_session_factory
from fogline.hub._enrollment import enroll_device
from fogline.hub._reports import ReportWriter, _Pending
from fogline.protocol import ClaimCreate, EnrollRequest, Report
from fogline.security import CertificateAuthority, make_csr
from tests.support.device import FACTS
from tests.support.postgres import create_database, throwaway_postgres


def _enroll(sessions, ca: CertificateAuthority, count: int) -> list[tuple[str, str]]:
    key = ec.generate_private_key(ec.SECP256R1())  # one key: only the rows matter here
    devices = []
    with sessions() as session, session.begin():
        _row, token = create_claim(session, ClaimCreate(max_uses=count))
        for i in range(count):
            request = EnrollRequest.model_validate(
                {"claim": token, "csr": make_csr(key, f"n{i}").decode(), "name": f"n{i}",
                 "facts": FACTS}
            )  # fmt: skip
            row, _pem = enroll_device(session, ca, request)
            devices.append((row.id, row.cert_serial))
    return devices


GOLDEN_HEALTH = json.loads(
    (Path(__file__).parents[1] / "tests/protocol/golden/report.health.json").read_text()
)["health"]


def _report(round_: int, with_health: bool = False) -> Report:
    return Report.model_validate_json(_body(round_, with_health))


def _body(round_: int, with_health: bool) -> bytes:
    body = {"facts": {**FACTS, "uptime_s": round_}, "labels": {}, "outbox": None,
            "modules": {"modules": {"app": {"state": "healthy", "version": "1.0.0"}}}}  # fmt: skip
    if with_health:
        body["health"] = {**GOLDEN_HEALTH, "cpu_percent": float(round_ % 100)}
    return json.dumps(body).encode()


def _parse_cost_s(with_health: bool, count: int = 5000) -> float:
    """CPU to parse one report body as the hub does (parse_json_body)."""
    bodies = [_body(i, with_health) for i in range(count)]
    started = time.process_time()
    for body in bodies:
        parse_json_body(Report, body)
    return (time.process_time() - started) / count


async def _batches(
    devices: list[tuple[str, str]], report: Report, size: int, rounds: int
) -> list[list[_Pending]]:
    """`rounds` batches of `size` reports, cycling through the devices
    (in a coroutine: a pending report's future belongs to the running loop)."""
    return [
        [_Pending(*devices[(r * size + i) % len(devices)], report) for i in range(size)]
        for r in range(rounds)
    ]


def _measure(
    db_url: str, root: Path, args: argparse.Namespace
) -> list[tuple[int, float, float, float]]:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    sessions = make_session_factory(engine)
    devices = _enroll(sessions, CertificateAuthority.load_or_create(root / "ca"), args.devices)
    loop = asyncio.new_event_loop()
    writer = ReportWriter(sessions)
    results = []
    try:
        parse = {h: median([_parse_cost_s(h) for _ in range(3)]) for h in (False, True)}
        for size in (1, 4, 16, 64):
            rounds = max(1, args.reports // size)
            per_report: dict[bool, list[float]] = {False: [], True: []}
            for repeat in range(args.repeats):
                for with_health in (False, True):
                    report = _report(repeat, with_health)
                    prepared = loop.run_until_complete(_batches(devices, report, size, rounds))
                    started = time.process_time()
                    for batch in prepared:
                        outcomes = writer._write(batch)
                        assert not any(outcomes), outcomes
                    cost = (time.process_time() - started) / (rounds * size)
                    per_report[with_health].append(cost + parse[with_health])
            plain, health = median(per_report[False]), median(per_report[True])
            results.append((size, plain * 1e6, health * 1e6, plain * size * 1e6))
            print(
                f"  batch {size}: {plain * 1e6:.0f} µs/report, {health * 1e6:.0f} with health",
                file=sys.stderr,
            )
        print(f"  health storage: {_bytes_per_sample(engine):.0f} B/raw sample", file=sys.stderr)
    finally:
        loop.close()
        engine.dispose()
    return results


def _bytes_per_sample(engine: Engine) -> float:
    """Bytes on disk per raw health sample: the table and its indexes."""
    with engine.connect() as connection:
        rows = connection.scalar(text("SELECT count(*) FROM health_samples")) or 1
        if engine.dialect.name == "postgresql":
            size = connection.scalar(text("SELECT pg_total_relation_size('health_samples')"))
        else:  # dbstat: SQLite's own page accounting
            size = connection.scalar(
                text(
                    "SELECT sum(pgsize) FROM dbstat WHERE name = 'health_samples'"
                    " OR name LIKE 'ix_health_samples%'"
                )
            )
    return float(size or 0) / rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--devices", type=int, default=256)
    parser.add_argument("--reports", type=int, default=2000, help="reports per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dbs = [d.strip() for d in args.db.split(",")]
    if not set(dbs) <= {"sqlite", "postgresql"} or not 64 <= args.devices <= 10_000:
        raise SystemExit("--db takes sqlite and/or postgresql; --devices 64..10000")
    command = "PYTHONPATH=. .venv/bin/python -m benchmarks.bench_report_writer " + " ".join(
        sys.argv[1:]
    )
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-writer-"))
    rows = []
    try:
        pg_context = throwaway_postgres() if "postgresql" in dbs else nullcontext(None)
        with pg_context as pg:
            for db in dbs:
                print(db, file=sys.stderr)
                url = (
                    create_database(pg, f"bench_writer_{os.getpid()}")
                    if db == "postgresql"
                    else f"sqlite:///{root / 'hub.db'}"
                )
                rows += [(db, *row) for row in _measure(url, root / db, args)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n## Report writer: CPU per report by batch size (git {git_revision()})\n")
    print(f"Machine: {machine()}  ")
    print(f"Command: `{command}`\n")
    print(
        table(
            [
                "db",
                "batch size",
                "CPU µs per report (parse + write)",
                "with health",
                "extra for health",
                "CPU µs per batch",
            ],
            [
                (db, size, f"{per:.0f}", f"{health:.0f}", f"{health - per:+.0f}", f"{batch:.0f}")
                for db, size, per, health, batch in rows
            ],
        )
    )


if __name__ == "__main__":
    main()
