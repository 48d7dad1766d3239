"""`bench_rollout_scale --propagation` at a tiny size: every simulated device's
report of each new revision is timed from the apply request, and the section
says how many devices reported each change."""

import re

import pytest

from benchmarks.bench_rollout_scale import build_parser, run

DEVICES = 40


def test_each_change_is_timed_on_every_device(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--devices", str(DEVICES), "--propagation", "2", "--workers", "1"]
    args = build_parser().parse_args([*argv, "--idle-s", "1", "--timeout", "60"])
    parts = run(args, "bench_rollout_scale " + " ".join(argv))
    out = capsys.readouterr().out

    # One row per change, every device counted, and times that start after
    # the apply request: a report is never earlier than the change it carries.
    rows = re.findall(r"^\| (\d) \| (\d+)/(\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", out, re.M)
    assert [(r[0], r[1], r[2]) for r in rows] == [("1", "40", "40"), ("2", "40", "40")], out
    for _, _, _, apply_s, p50, p99 in rows:
        assert 0 < float(p50) <= float(p99) < 60, out
        assert float(apply_s) < 60, out
    assert "Errors: none" in out, out
    assert re.search(r"All changes: p50 \*\*[\d.]+ s\*\*, p99 \*\*[\d.]+ s\*\*", out), out
    # Each device's entry waited for the hub's 200: two changes, one entry each.
    reported = [r for part in parts for r in part.applied]
    assert len(reported) >= 2 * DEVICES
    assert all(done >= seen for _, seen, done in reported)
