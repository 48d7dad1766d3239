"""Every updater crash point, with a real agent killed by SIGKILL and restarted.

For each point an agent is armed (FOGLINE_FAULT_CRASH_AT) to kill itself
there during an update (v1 -> v2, or a bad v3 that must roll back to v2),
restarted, and checked: the module serves the old or the new version,
healthy, and the hub shows exactly that. Counts go to BENCHMARKS.md.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_crash_points
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import git_revision, machine, table
from tests.support.crash import (
    HUB_ARGS,
    ROLLBACK_POINTS,
    UPDATE_POINTS,
    prepare_fleet,
    run_case,
)
from tests.support.processes import free_port, start_hub


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", help="run just these points")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fogline-crash-"))
    hub = start_hub(root / "hub", extra_args=HUB_ARGS)
    rows = []
    survived = tried = 0
    started = time.monotonic()
    try:
        fleet = prepare_fleet(hub, root, free_port())
        cases = [(p, False) for p in UPDATE_POINTS] + [(p, True) for p in ROLLBACK_POINTS]
        for index, (point, bad) in enumerate(cases):
            if args.only and point not in args.only:
                continue
            tried += 1
            path = "bad v3 from v2" if bad else "v1 to v2"
            try:
                result = run_case(fleet, f"c{index}", point, bad_update=bad)
                ok = result.crashed
                outcome = f"killed; after restart {result.served}, reported {result.reported}"
            except AssertionError as exc:
                ok, outcome = False, f"FAILED: {exc}"
            survived += ok
            rows.append((point, path, "yes" if ok else "NO", outcome))
            print(f"{point:20} {path:15} {'ok' if ok else 'FAILED'}", file=sys.stderr, flush=True)
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n## Update crash points, real agent (git {git_revision()})\n")
    print(f"Machine: {machine()}  ")
    print("Command: `PYTHONPATH=. .venv/bin/python -m benchmarks.bench_crash_points`  ")
    print(
        f"Crash points tried: {tried}, survived: {survived} ({time.monotonic() - started:.0f} s)\n"
    )
    print(table(["crash point", "update", "survived", "outcome"], rows))


if __name__ == "__main__":
    main()
