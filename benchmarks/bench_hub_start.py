"""Start-up of a hub: wall time from `fogline hub serve --workers 2` to its
first healthy `/healthz`, and the CPU of the hub's pid up to then.

Each run starts a hub on a fresh data directory (`fresh`: the CA, TLS files,
admin token and schema are made, as each test's hub does) and then again on
that same directory (`restart`). The CPU is the pid's own (utime + stime
from /proc, which an exec keeps: `fogline hub serve` checks its flags, then
execs the hub's lean program, which forks the workers), so it covers the
command line and the hub's imports, not the workers'. With `--base DIR` the
same starts also run from another checkout (DIR/src first on PYTHONPATH),
alternated with this one run by run (which goes first swaps each run), so
the machine's load falls on both; each start prints the 1-minute load.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_hub_start --runs 6 --base ../main-at-bfa7562
"""

from __future__ import annotations

import os
import shutil
import ssl
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
from tests.support.processes import ENV, free_port

KINDS = ("fresh", "restart")
TIMEOUT_S = 90.0


@dataclass(frozen=True, slots=True)
class Sample:
    code: str
    kind: str
    cpu_s: float
    wall_s: float
    load: float


def _healthy(port: int, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/healthz", timeout=1, context=context
        ) as reply:
            return bool(reply.status == 200)
    except (OSError, ValueError):
        return False


def start_once(checkout: Path, data_dir: Path, kind: str) -> Sample:
    """Start `fogline hub serve` from `checkout` until /healthz answers; stop it."""
    env = checkout_env(checkout, ENV)
    port = free_port()
    # The probe trusts any certificate: on a fresh start there is no CA to pin yet.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    args = [
        *(sys.executable, "-m", "fogline", "hub", "serve", "--data-dir", str(data_dir)),
        *("--port", str(port), "--workers", "2"),
    ]
    load = os.getloadavg()[0]
    wall, cpu = time_start(
        args,
        env,
        data_dir.parent / f"{data_dir.name}.log",
        lambda: _healthy(port, context),
        timeout_s=TIMEOUT_S,
        what=f"the hub from {checkout}",
        poll_s=0.02,
    )
    return Sample(str(checkout), kind, cpu, wall, load)


def bench(codes: dict[str, Path], runs: int, root: Path) -> list[Sample]:
    """`runs` alternated rounds: each checkout's fresh start, then its restart."""
    samples = []
    names = list(codes)
    for i in range(runs):
        for code in names if i % 2 == 0 else names[::-1]:
            data_dir = root / f"hub-{names.index(code)}-{i}"
            for kind in KINDS:
                sample = start_once(codes[code], data_dir, kind)
                samples.append(Sample(code, kind, sample.cpu_s, sample.wall_s, sample.load))
                print(
                    f"  {code} {kind}: {sample.wall_s:.2f} s wall, {sample.cpu_s:.2f} CPU-s, "
                    f"load {sample.load:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
            shutil.rmtree(data_dir, ignore_errors=True)
    return samples


def report(samples: list[Sample], codes: list[str]) -> str:
    rows = []
    for kind in KINDS:
        for code in codes:
            mine = [s for s in samples if s.code == code and s.kind == kind]
            rows.append(
                [
                    code,
                    kind,
                    f"**{median([s.wall_s for s in mine]):.2f}**",
                    ", ".join(f"{s.wall_s:.2f}" for s in mine),
                    f"{median([s.cpu_s for s in mine]):.2f}",
                    ", ".join(f"{s.load:.1f}" for s in mine),
                ]
            )
    return table(
        [
            "code",
            "start",
            "wall median (s)",
            "wall per run (s)",
            "pid CPU median (s)",
            "load (1-min) per run",
        ],
        rows,
    )


def main() -> None:
    runs, base_checkout, codes = parse_runs_and_base(__doc__, default_runs=6)
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-hub-start-"))
    try:
        samples = bench(codes, runs, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_start_header(
        "Hub start-up to its first healthy /healthz, 2 workers",
        "bench_hub_start",
        runs,
        base_checkout,
    )
    print(report(samples, list(codes)))


if __name__ == "__main__":
    main()
