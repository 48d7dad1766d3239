"""bench_idle_connections holds its connections open at the hub, idle and
long-polling, and reports a memory figure for each round."""

import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_run_opens_every_connection_idle_and_polling() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_idle_connections", "--connections", "20",
         "--devices", "4", "--procs", "1", "--kinds", "idle,poll"],
        capture_output=True, text=True, timeout=110, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| current |")]
    assert len(rows) == 2, result.stdout
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[2:4] == ["20", "20"], row  # asked for, open
        assert cells[9] == "none", row  # no client error
        assert math.isfinite(float(cells[6].split("/")[0].strip("* "))), row  # KB per connection
