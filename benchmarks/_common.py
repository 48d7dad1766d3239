"""Helpers shared by the benchmarks: percentiles, machine facts, a markdown table,
a run per database."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import tempfile
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
