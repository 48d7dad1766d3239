"""benchmarks/bench_agent_start.py enrolls an agent against a real hub, then
starts it again and measures the pid's own CPU up to its /healthz."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.bench_agent_start import HERE, bench, report
from tests.support.processes import HubProcess


def test_each_start_answers_and_counts_the_agent_s_own_cpu(hub: HubProcess, tmp_path: Path) -> None:
    samples = bench(hub, {"this": HERE}, 2, tmp_path)
    assert [s.code for s in samples] == ["this", "this"]
    # An interpreter's start and the agent's imports: some CPU, and its own, not the hub's.
    assert all(0.05 < s.cpu_s <= s.wall_s * 2 for s in samples), samples
    # The starts measured were an enrolled node's: the hub knows it.
    identity = json.loads((tmp_path / "node-0" / "identity" / "device.json").read_text())
    assert hub.device(identity["name"])["id"] == identity["device_id"]
    assert "| this |" in report(samples, ["this"])
