"""Helpers shared by the benchmarks: percentiles, machine facts, a markdown table,
a run per database."""

from __future__ import annotations

import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.support.postgres import throwaway_postgres


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            )
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({model}), {mem_gib:.0f} GiB, Python {platform.python_version()}"
    )


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# bench(db, PostgreSQL base URL or None, a scratch directory) -> table rows
DatabaseBench = Callable[[str, str | None, Path], list[list[Any]]]


def each_database(
    dbs: Sequence[str], prefix: str, bench: DatabaseBench
) -> tuple[list[list[Any]], str]:
    """Run `bench` for each of `dbs` ("sqlite", "postgresql") in one scratch
    directory, with one throwaway PostgreSQL cluster for all; returns the
    rows and the machine's load before→after, as the tables print it."""
    load0 = os.getloadavg()[0]
    rows: list[list[Any]] = []
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        pg_base = stack.enter_context(throwaway_postgres()) if "postgresql" in dbs else None
        for db in dbs:
            rows += bench(db, pg_base, root)
    return rows, f"{load0:.1f}→{os.getloadavg()[0]:.1f}"


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def checkout_env(checkout: Path, env: dict[str, str]) -> dict[str, str]:
    """`env` with PYTHONPATH set to run fogline from `checkout` (its src and root)."""
    return {**env, "PYTHONPATH": f"{checkout / 'src'}:{checkout}"}


def time_start(
    args: Sequence[str],
    env: dict[str, str],
    log: Path,
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    poll_s: float,
) -> tuple[float, float]:
    """Start `args` (output appended to `log`, run in its directory), call
    `ready` every `poll_s` until it is true, then stop the process (SIGTERM,
    SIGKILL after 30 s). Returns the wall seconds to ready and the CPU
    seconds of the process's own pid by then (utime + stime from /proc,
    which an exec keeps).

    Raises:
        SystemExit: `what` exited or was not ready within `timeout_s`.
    """
    started = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=out, cwd=log.parent)
    try:
        deadline = started + timeout_s
        while not ready():
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise SystemExit(f"{what} did not answer (exit {proc.poll()})")
            time.sleep(poll_s)
        wall = time.perf_counter() - started
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return wall, (int(fields[11]) + int(fields[12])) / _CLK_TCK
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def print_start_header(title: str, module: str, runs: int, base: Path | None) -> None:
    """The section header of a start-up benchmark (see parse_runs_and_base):
    its title with the git revision, the machine, and the command that ran."""
    print(f"\n## {title} (git {git_revision()})\n")
    print(f"Machine: {machine()}.\n")
    flags = f"--runs {runs}" + (f" --base {base}" if base else "")
    print(f"Command: `PYTHONPATH=. .venv/bin/python -m benchmarks.{module} {flags}`\n")


def parse_runs_and_base(
    doc: str | None, default_runs: int
) -> tuple[int, Path | None, dict[str, Path]]:
    """`--runs N` and `--base CHECKOUT` of a start-up benchmark that times
    this checkout against another in the same run. Returns the runs, the
    base as given and {label: checkout root}: this one (labelled by its git
    revision) first."""
    import argparse

    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=default_runs)
    parser.add_argument(
        "--base", type=Path, help="another checkout to compare against (its src/ is imported)"
    )
    args = parser.parse_args()
    if not 1 <= args.runs <= 50:
        raise SystemExit("--runs 1..50")
    codes = {git_revision(): Path(__file__).resolve().parents[1]}
    if args.base is not None:
        if not (args.base / "src" / "fogline").is_dir():
            raise SystemExit(f"{args.base}: no src/fogline there")
        codes[f"base ({args.base.name})"] = args.base.resolve()
    return args.runs, args.base, codes
