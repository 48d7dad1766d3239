"""Start-up of an enrolled agent: CPU and wall time from `fogline agent run`
to its local `/healthz` answering, against a real hub (SQLite, no modules).

A node's usual start: the identity is on disk, no claim. The CPU is the
pid's own (utime + stime from /proc, which an exec keeps: `fogline agent run`
checks its options, then execs the agent's lean interpreter). With `--base
DIR` the same start also runs from another checkout (DIR/src first on
PYTHONPATH, its own enrolled data directory), alternated with this one run by
run (which goes first swaps each run), so the machine's load falls on both;
each repetition prints the 1-minute load.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_agent_start --runs 7 --base ../main-at-2b3f367
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import (
    checkout_env,
    median,
    parse_runs_and_base,
    print_start_header,
    table,
    time_start,
)
from tests.support.processes import ENV, HubProcess, start_hub

HERE = Path(__file__).resolve().parents[1]  # this checkout: the code a run measures first


@dataclass(frozen=True, slots=True)
class Sample:
    code: str
    cpu_s: float
    wall_s: float
    load: float


def _health(data_dir: Path) -> dict[str, object] | None:
    """The agent's /healthz, once it answers."""
    try:
        port = int((data_dir / "local-port").read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
            health = json.loads(reply.read())
    except (OSError, ValueError):
        return None
    return health if isinstance(health, dict) else None


def start_once(checkout: Path, hub: HubProcess, data_dir: Path, claim: str | None) -> Sample:
    """Start `fogline agent run` from `checkout` until /healthz answers (with a
    claim: until it says the node enrolled); stop it."""
    (data_dir / "local-port").unlink(missing_ok=True)
    env = checkout_env(checkout, ENV)
    if claim is not None:
        env["FOGLINE_CLAIM"] = claim
    args = [
        *(sys.executable, "-m", "fogline", "agent", "run", "--hub", hub.url),
        *("--ca", str(hub.ca), "--data-dir", str(data_dir), "--local-port", "0"),
        *("--name", data_dir.name),  # one device per checkout
    ]
    load = os.getloadavg()[0]

    def ready() -> bool:
        health = _health(data_dir)
        return health is not None and (claim is None or health.get("enrolled") is True)

    wall, cpu = time_start(
        args,
        env,
        data_dir.parent / f"{data_dir.name}.log",
        ready,
        timeout_s=60,
        what=f"the agent from {checkout}",
        poll_s=0.01,
    )
    return Sample(str(checkout), cpu, wall, load)


def bench(hub: HubProcess, codes: dict[str, Path], runs: int, root: Path) -> list[Sample]:
    """Enroll one agent per checkout, then `runs` alternated starts of each."""
    dirs = {code: root / f"node-{i}" for i, code in enumerate(codes)}
    for code, checkout in codes.items():
        dirs[code].mkdir(parents=True)
        start_once(checkout, hub, dirs[code], hub.create_claim())  # enrolls
    samples = []
    names = list(codes)
    for i in range(runs):
        for code in names if i % 2 == 0 else names[::-1]:
            sample = start_once(codes[code], hub, dirs[code], None)
            samples.append(Sample(code, sample.cpu_s, sample.wall_s, sample.load))
    return samples


def report(samples: list[Sample], codes: list[str]) -> str:
    rows = []
    for code in codes:
        mine = [s for s in samples if s.code == code]
        rows.append(
            [
                code,
                f"{median([s.cpu_s for s in mine]):.2f}",
                f"{median([s.wall_s for s in mine]):.2f}",
                ", ".join(f"{s.cpu_s:.2f}" for s in mine),
                ", ".join(f"{s.load:.1f}" for s in mine),
            ]
        )
    return table(
        ["code", "CPU median (s)", "wall median (s)", "CPU per run (s)", "load (1-min) per run"],
        rows,
    )


def main() -> None:
    runs, base_checkout, codes = parse_runs_and_base(__doc__, default_runs=7)
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-agent-start-"))
    hub = start_hub(root / "hub")
    try:
        samples = bench(hub, codes, runs, root)
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)
    print_start_header(
        "Agent start-up, enrolled, to /healthz", "bench_agent_start", runs, base_checkout
    )
    print(report(samples, list(codes)))


if __name__ == "__main__":
    main()
