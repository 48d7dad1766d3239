"""Time from `fogline apply` until every agent reports the new revision applied.

Starts a real hub and N real agent processes on 127.0.0.1, waits until all
are in sync, then applies K config changes one after another. For each
change and device it records the time from the start of `fogline apply`
until the hub shows that device's reported revision equal to the new one.

    .venv/bin/python -m benchmarks.bench_sync --agents 100 --changes 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import git_revision, machine, median, percentile, table
from tests.support.processes import AgentProcess, list_devices, start_hub, wait_until

MANIFEST = """\
apiVersion: fogline.dev/v1
kind: Deployment
metadata: {{name: bench}}
spec:
  selector: {{}}
  config: {{round: {round}}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--changes", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-sync-"))
    hub = start_hub(root / "hub")
    agents: list[AgentProcess] = []
    try:
        claim = hub.create_claim(max_uses=args.agents)
        started = time.monotonic()
        for i in range(args.agents):
            agent = AgentProcess(root / f"n{i:04d}", hub, f"n{i:04d}", claim)
            agent.start()
            agents.append(agent)
        with hub.client() as client:

            def count_online() -> bool:
                rows = list_devices(client)
                return len(rows) == args.agents and all(r["status"] == "online" for r in rows)

            wait_until(count_online, 600, f"{args.agents} agents online", interval_s=1)
            print(
                f"{args.agents} agents enrolled in {time.monotonic() - started:.1f}s",
                file=sys.stderr,
            )
            latencies: list[float] = []
            per_round: list[tuple[int, float, float]] = []
            for round_no in range(1, args.changes + 1):
                path = root / f"m{round_no}.yaml"
                path.write_text(MANIFEST.format(round=round_no))
                t0 = time.monotonic()
                applied = json.loads(hub.cli("apply", "-f", str(path), "-o", "json").stdout)
                targets = {d["device_id"]: d["to_revision"] for d in applied["plan"]["devices"]}
                done: dict[str, float] = {}
                deadline = t0 + 120
                while len(done) < len(targets) and time.monotonic() < deadline:
                    now = time.monotonic()
                    for row in list_devices(client):
                        sync = row.get("sync") or {}
                        if (
                            row["id"] in targets
                            and row["id"] not in done
                            and sync.get("reported_revision") == targets[row["id"]]
                        ):
                            done[row["id"]] = now - t0
                    time.sleep(0.02)
                if len(done) < len(targets):
                    raise SystemExit(f"round {round_no}: only {len(done)}/{len(targets)} converged")
                values = list(done.values())
                latencies += values
                per_round.append((round_no, percentile(values, 50), percentile(values, 99)))
                time.sleep(1)
        print(f"\n## Desired-state propagation, {args.agents} agents (git {git_revision()})\n")
        print(f"Machine: {machine()}  ")
        print(
            f"Command: `.venv/bin/python -m benchmarks.bench_sync --agents {args.agents} "
            f"--changes {args.changes}`\n"
        )
        print(
            table(
                ["round", "p50 (s)", "p99 (s)"],
                [(r, f"{p50:.3f}", f"{p99:.3f}") for r, p50, p99 in per_round],
            )
        )
        print(
            f"\nAll rounds: p50 {percentile(latencies, 50):.3f} s, p99 {percentile(latencies, 99):.3f} s, "
            f"median of round p50s {median([p for _, p, _ in per_round]):.3f} s"
        )
    finally:
        for agent in agents:
            if agent.proc is not None:
                agent.proc.terminate()
        for agent in agents:
            agent.stop()
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
