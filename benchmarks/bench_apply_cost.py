"""The apply itself at scale: wall and CPU time of the hub's plan, write and
rollout start for one apply, in this process, on a real SQLite database.

No hub process and no devices: the fleet is `--devices` rows written straight
into a migrated database (tests/support/inventory.py: 300 label sets), and
each apply runs `prepare` and `apply` in one transaction as the route does,
changing the config of a deployment that selects nine devices in ten (the
first apply, which creates the deployment, is not timed). To compare with
another commit, run the same command with that commit's `src` first on the
path, back to back:

    PYTHONPATH=src:. .venv/bin/python -m benchmarks.bench_apply_cost --devices 10000
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from benchmarks._common import git_revision, machine, median, table
from benchmarks.bench_apply_load import DEPLOYMENT
from fogline.hub._db import make_engine, make_session_factory, sqlite_url, upgrade_schema
from fogline.hub._desired import DeploymentCache
from fogline.hub._manifests import apply, prepare
from fogline.protocol import ManifestFile, ManifestRequest
from tests.support.inventory import fleet_devices, insert_devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--applies", type=int, default=3)
    args = parser.parse_args()
    if not 1 <= args.devices <= 200_000 or not 1 <= args.applies <= 20:
        raise SystemExit("--devices takes 1..200,000 and --applies 1..20")
    with tempfile.TemporaryDirectory(prefix="bench-apply-cost-") as tmp:
        engine = make_engine(sqlite_url(Path(tmp)))
        upgrade_schema(engine)
        insert_devices(str(engine.url), fleet_devices(args.devices, dt.datetime.now(dt.UTC)))
        factory = make_session_factory(engine)
        cache = DeploymentCache()

        def one(greeting: str) -> tuple[float, float]:
            text = DEPLOYMENT.replace("GREETING", greeting)
            request = ManifestRequest(files=[ManifestFile(name="everyone.yaml", text=text)])
            started, cpu = time.perf_counter(), time.process_time()
            with factory() as session:
                apply(session, prepare(session, request), "admin", cache)
                session.commit()
            return time.perf_counter() - started, time.process_time() - cpu

        one("first")
        rows = []
        for i in range(args.applies):
            wall, cpu = one(f"hello {i}")
            rows.append([i + 1, f"{wall:.2f}", f"{cpu:.2f}", Path("/proc/loadavg").read_text()[:4]])
        engine.dispose()
    walls = [float(row[1]) for row in rows]
    cpus = [float(row[2]) for row in rows]
    print(f"## One apply to {args.devices:,} devices, in process (SQLite)\n")
    print(f"commit {git_revision()}, {machine()}\n")
    print(f"median wall {median(walls):.2f} s, median CPU {median(cpus):.2f} s\n")
    print(table(["apply", "wall s", "CPU s", "load (1-min)"], rows))


if __name__ == "__main__":
    main()
