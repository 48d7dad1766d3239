"""`bench_rollout_scale --propagation` at a tiny size: every simulated device's
report of each new revision is timed from the apply request, and the section
says how many devices reported each change."""

import re

import pytest

from benchmarks.bench_rollout_scale import (
    Change,
    FleetStats,
    build_parser,
    render_propagation,
    run,
)

DEVICES = 40


def test_each_change_is_timed_on_every_device(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--devices", str(DEVICES), "--propagation", "2", "--workers", "1"]
    args = build_parser().parse_args([*argv, "--idle-s", "1", "--timeout", "60"])
    parts = run(args, "bench_rollout_scale " + " ".join(argv))
    out = capsys.readouterr().out

    # One row per change, every device counted, and times that start after
    # the apply request: a report is never earlier than the change it carries.
    rows = re.findall(
        r"^\| (\d) \| (\d+)/(\d+) \| ([\d.]+) \| ([\d.]+) s \| ([\d.]+) s \|", out, re.M
    )
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


def test_a_device_that_never_reported_counts_as_slowest_and_a_failed_apply_is_shown() -> None:
    args = build_parser().parse_args(["--devices", "3", "--propagation", "2"])
    reported = Change(1, 100.0, 101.0, {"a": "r1", "b": "r1", "c": "r1"}, None, 0.5, (1, 2))
    failed = Change(2, 200.0, 253.0, {}, None, 0.0, (1, 1), failed="500")
    # Two of the three devices reported r1, 1.5 s and 2 s after the apply request.
    stats = FleetStats(applied=[("r1", 100.5, 101.5), ("r1", 100.6, 102.0)])
    out = render_propagation(args, "cmd", 3, 0.1, [reported, failed], [stats], (1.0, 2.0))
    assert "| 1 | 2/3 | 1.000 | 2.000 s | never | never | timed out |" in out, out
    assert "| 2 | apply failed (500) | 53.000 |" in out, out
    assert "p99 **never**" in out and "1 never reported" in out, out
