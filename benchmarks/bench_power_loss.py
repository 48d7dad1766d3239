"""Power-loss proof: every crash state of the updater, the identity store, the
hub's release store and the outbox, with their real recovery run on each.

Each component runs over the recording file layer (tests/support/powerloss.py);
at every crash point the file systems a power cut could leave are rebuilt
(only what was made durable; everything; names without their bytes; torn
appends; every in-order prefix and every single reordering of what was not
durable) and the component recovers on each. A state passes when the node
is not broken and nothing it acknowledged is lost. With --twice, the power
is cut again during each recovery, at every point of it (not for the outbox,
whose recovery is SQLite's own). `make test` runs the fast
subset (tests/test_power_loss.py). The model and its limits: docs/architecture.md ("Power loss").

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_power_loss
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import git_revision, machine, table
from tests.support.powerloss import scratch_root
from tests.support.powerloss_cases import SCENARIOS, build_releases, run_scenario


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, help="run just these scenarios")
    parser.add_argument("--fast", action="store_true", help="the subset `make test` runs")
    parser.add_argument(
        "--twice",
        action="store_true",
        help="also cut the power again during each recovery (every crash state of it)",
    )
    args = parser.parse_args()
    # Recovery logs what it repairs; the verdicts are the table.
    logging.disable(logging.CRITICAL)
    root = Path(tempfile.mkdtemp(prefix="fogline-powerloss-", dir=scratch_root()))
    rows = []
    states = distinct = broken = 0
    started = time.monotonic()
    try:
        releases = build_releases(root / "releases")
        for index, name in enumerate(args.only or SCENARIOS):
            sandbox = root / f"s{index}"
            sandbox.mkdir()
            result = run_scenario(name, sandbox, releases, full=not args.fast, twice=args.twice)
            print(result.summary(), file=sys.stderr, flush=True)
            for finding in result.findings:
                print(
                    f"  {finding.kind} after {finding.after}: {finding.problems}", file=sys.stderr
                )
            states += result.states
            distinct += result.distinct
            broken += len(result.findings)
            rows.append(
                (
                    name,
                    str(result.events),
                    str(result.states),
                    str(result.distinct),
                    str(len(result.findings)),
                    f"{result.seconds:.1f}",
                )
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mode = ("fast subset" if args.fast else "full") + (", twice" if args.twice else "")
    print(f"\n## Power-loss proof, {mode} (git {git_revision()})\n")
    print(f"Machine: {machine()}  ")
    flags = (" --fast" if args.fast else "") + (" --twice" if args.twice else "")
    print(f"Command: `PYTHONPATH=. .venv/bin/python -m benchmarks.bench_power_loss{flags}`  ")
    print(
        f"Crash states explored: {states}, distinct file systems checked: {distinct}, "
        f"broken: {broken} ({time.monotonic() - started:.0f} s)\n"
    )
    print(
        table(
            ["scenario", "file events", "crash states", "distinct checked", "broken", "s"],
            rows,
        )
    )
    if broken:
        sys.exit(1)


if __name__ == "__main__":
    main()
