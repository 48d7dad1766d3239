"""benchmarks/bench_alert_pass.py runs and measures what it says: on a small
SQLite fleet, the steady pass reads the sixth of the fleet that reported
(and the margin's overlap), the baseline reads every device."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.bench_alert_pass import bench


def test_the_steady_pass_reads_the_devices_that_reported_and_the_baseline_all(
    tmp_path: Path,
) -> None:
    args = argparse.Namespace(devices=600, repeat=2)
    rows = bench("sqlite", None, tmp_path, args)
    read = {row[1]: int(row[2].replace(",", "")) for row in rows if row[2]}
    assert read["reads every device (baseline)"] == 600
    # 100 report between two passes; those of the pass before are read again
    # when they fall within the 2 s margin (about a fifth of them).
    assert 100 <= read["incremental"] <= 160, read
    assert rows[-1][1] == "ratio baseline / incremental (CPU)"
