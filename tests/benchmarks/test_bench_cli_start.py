"""benchmarks/bench_cli_start.py runs every command against a real hub and
measures what it says: each apply reaches the hub, each process's own CPU."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_cli_start import COMMANDS, FLOORS, HERE, bench, report
from tests.support.processes import HubProcess


def test_each_command_runs_and_each_apply_reaches_the_hub(hub: HubProcess, tmp_path: Path) -> None:
    samples = bench(hub, {"this": HERE}, 2, tmp_path)
    assert [(s.code, s.command) for s in samples] == 2 * [
        *(("this", command) for command in COMMANDS),
        *(("floor", floor) for floor in FLOORS),
    ]
    assert all(0 < s.cpu_s <= s.wall_s * 4 for s in samples)  # its own CPU, not the hub's
    with hub.client() as client:
        applied = client.get("/v1/deployments/bench").json()["document"]
    assert applied["spec"]["config"] == {"round": "1-this"}
    counts = {("this", command): 1 for command in COMMANDS}
    assert "`fogline apply` | this | 1 |" in report(samples, counts, ["this"])
