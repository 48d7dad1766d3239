"""`bench_update_requests` at a tiny size: every request of a device's update
is answered as a node's would be (the new-root probe 404, the metadata 200,
the download authorised with the offload redirect, the report accepted), so
the hub CPU it prints is that of the real answers, not of refusals."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)  # ten CLI calls and a hub: 40 s quiet, 100 s on a loaded machine
def test_every_request_of_an_update_gets_its_real_answer() -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    argv = ["--devices", "3", "--rounds", "2", "--hub-workers", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_update_requests", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "unexpected answers" not in done.stderr, done.stderr[-2000:]
    rounds = re.findall(r"^\| (\d) \| ([\d.]+) \|", done.stdout, re.M)
    assert [r[0] for r in rounds] == ["1", "2"], done.stdout
    assert re.search(r"Median: \*\*[\d.]+ ms\*\* of hub CPU per update \(3 devices\)", done.stdout)
