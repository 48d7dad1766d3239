"""Start-up of the `fogline` CLI: wall and CPU time of `fogline version`,
`fogline --help` and `fogline apply -f FILE -o json` against a real hub
(SQLite, no devices), and how many modules each imports.

`fogline apply`'s start-up is part of the time a change takes to reach the
fleet (`bench_sync` times from the start of the CLI). With `--base DIR` the
same commands also run from another checkout (DIR/src first on PYTHONPATH),
alternated with this one run by run (which goes first swaps each run), so
the machine's load falls on both; each repetition prints the 1-minute load.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_cli_start --runs 9 --base ../main-at-f7456f6
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import checkout_env, median, parse_runs_and_base, print_start_header, table
from tests.support.processes import ENV, HubProcess, start_hub

HERE = Path(__file__).resolve().parents[1]
MANIFEST = """\
apiVersion: fogline.dev/v1
kind: Deployment
metadata: {{name: bench}}
spec:
  selector: {{}}
  config: {{round: {round}}}
"""
COMMANDS = ("version", "--help", "apply")
# Floors, measured in the same run: the interpreter alone, and the libraries
# every `fogline` operator command needs (Typer builds a pydantic adapter per
# parameter; httpx without its own CLI, as fogline.cli.main imports it; Rich
# and PyYAML for apply).
FLOORS = {
    "bare python": "pass",
    "typer, pydantic, httpx, rich, yaml imported": (
        "import sys\nsys.modules['httpx._main'] = None\n"
        "import typer.main, typer._adapters, httpx, rich.console, yaml"
    ),
}


@dataclass(frozen=True, slots=True)
class Sample:
    code: str
    command: str
    wall_s: float
    cpu_s: float
    load: float


def _argv(command: str, manifest: Path) -> list[str]:
    if command == "apply":
        return ["-m", "fogline", "apply", "-f", str(manifest), "-o", "json"]
    return ["-m", "fogline", command]


def _env(checkout: Path, hub: HubProcess) -> dict[str, str]:
    return {
        **checkout_env(checkout, ENV),
        "FOGLINE_HUB": hub.url,
        "FOGLINE_TOKEN": hub.token,
        "FOGLINE_CA": str(hub.ca),
        "COLUMNS": "100",
    }


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one `python ARGV` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tempfile.gettempdir(),  # not the repository: PYTHONPATH alone picks the code
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"python {' '.join(argv)} exited {done.returncode}: {done.stderr[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def modules_imported(argv: list[str], env: dict[str, str]) -> int:
    """How many modules `python -X importtime` says the command imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tempfile.gettempdir(),
    )
    return sum(1 for line in done.stderr.splitlines() if line.startswith("import time:")) - 1


def bench(hub: HubProcess, codes: dict[str, Path], runs: int, root: Path) -> list[Sample]:
    """`runs` rounds of every command from every checkout in `codes`, alternated."""
    samples: list[Sample] = []
    manifest = root / "bench.yaml"
    names = list(codes)
    for i in range(runs):
        order = names if i % 2 == 0 else names[::-1]
        for code in order:
            env = _env(codes[code], hub)
            for command in COMMANDS:
                # A new config every time: each apply changes the deployment.
                manifest.write_text(MANIFEST.format(round=f"{i}-{code}"))
                load = os.getloadavg()[0]
                wall, cpu = run_once(_argv(command, manifest), env)
                samples.append(Sample(code, command, wall, cpu, load))
        env = _env(HERE, hub)
        for floor, source in FLOORS.items():
            load = os.getloadavg()[0]
            wall, cpu = run_once(["-c", source], env)
            samples.append(Sample("floor", floor, wall, cpu, load))
    return samples


def report(samples: list[Sample], counts: dict[tuple[str, str], int], codes: list[str]) -> str:
    rows = []
    for command in COMMANDS:
        for code in codes:
            mine = [s for s in samples if s.code == code and s.command == command]
            rows.append(
                [
                    f"`fogline {command}`",
                    code,
                    counts[(code, command)],
                    f"{median([s.cpu_s for s in mine]):.3f}",
                    f"{median([s.wall_s for s in mine]):.3f}",
                    ", ".join(f"{s.cpu_s:.2f}" for s in mine),
                    ", ".join(f"{s.load:.1f}" for s in mine),
                ]
            )
    for floor in FLOORS:
        mine = [s for s in samples if s.command == floor]
        rows.append(
            [
                f"floor: {floor}",
                "-",
                "-",
                f"{median([s.cpu_s for s in mine]):.3f}",
                f"{median([s.wall_s for s in mine]):.3f}",
                ", ".join(f"{s.cpu_s:.2f}" for s in mine),
                ", ".join(f"{s.load:.1f}" for s in mine),
            ]
        )
    return table(
        ["command", "code", "modules", "CPU median (s)", "wall median (s)", "CPU per run (s)",
         "load (1-min) per run"],
        rows,
    )  # fmt: skip


def main() -> None:
    runs, base_checkout, codes = parse_runs_and_base(__doc__, default_runs=9)
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-cli-"))
    hub = start_hub(root / "hub")
    try:
        counts = {}
        for code, checkout in codes.items():
            env = _env(checkout, hub)
            for command in COMMANDS:
                (root / "bench.yaml").write_text(MANIFEST.format(round=f"count-{code}"))
                counts[(code, command)] = modules_imported(_argv(command, root / "bench.yaml"), env)
        samples = bench(hub, codes, runs, root)
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)
    print_start_header("CLI start-up", "bench_cli_start", runs, base_checkout)
    print(report(samples, counts, list(codes)))


if __name__ == "__main__":
    main()
