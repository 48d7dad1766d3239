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

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_report_writer --db sqlite,postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks._common import git_revision, machine, median, table
from fogline.hub import make_engine, upgrade_schema
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


def _report(round_: int) -> Report:
    return Report.model_validate(
        {"facts": {**FACTS, "uptime_s": round_}, "labels": {}, "outbox": None,
         "modules": {"modules": {"app": {"state": "healthy", "version": "1.0.0"}}}}
    )  # fmt: skip


async def _batches(
    devices: list[tuple[str, str]], report: Report, size: int, rounds: int
) -> list[list[_Pending]]:
    """`rounds` batches of `size` reports, cycling through the devices
    (in a coroutine: a pending report's future belongs to the running loop)."""
    return [
        [_Pending(*devices[(r * size + i) % len(devices)], report) for i in range(size)]
        for r in range(rounds)
    ]


def _measure(db_url: str, root: Path, args: argparse.Namespace) -> list[tuple[int, float, float]]:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    sessions = make_session_factory(engine)
    devices = _enroll(sessions, CertificateAuthority.load_or_create(root / "ca"), args.devices)
    loop = asyncio.new_event_loop()
    writer = ReportWriter(sessions)
    results = []
    try:
        for size in (1, 4, 16, 64):
            rounds = max(1, args.reports // size)
            per_report = []
            for repeat in range(args.repeats):
                report = _report(repeat)

                prepared = loop.run_until_complete(_batches(devices, report, size, rounds))
                started = time.process_time()
                for batch in prepared:
                    outcomes = writer._write(batch)
                    assert not any(outcomes), outcomes
                per_report.append((time.process_time() - started) / (rounds * size))
            cost = median(per_report)
            results.append((size, cost * 1e6, cost * size * 1e6))
            print(f"  batch {size}: {cost * 1e6:.0f} µs/report", file=sys.stderr)
    finally:
        loop.close()
        engine.dispose()
    return results


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
            ["db", "batch size", "CPU µs per report", "CPU µs per batch"],
            [(db, size, f"{per:.0f}", f"{batch:.0f}") for db, size, per, batch in rows],
        )
    )


if __name__ == "__main__":
    main()
