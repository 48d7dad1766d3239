"""benchmarks/bench_hub_start.py starts `fogline hub serve --workers 2` from a
checkout, fresh and then again on the same data directory, and times each
start to the hub's first healthy /healthz."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_hub_start import KINDS, bench, report

ROOT = Path(__file__).resolve().parents[2]


def test_each_start_reaches_a_healthy_hub_and_is_stopped(tmp_path: Path) -> None:
    samples = bench({"this": ROOT}, 1, tmp_path)
    assert [(s.code, s.kind) for s in samples] == [("this", kind) for kind in KINDS]
    # A start is an interpreter, the hub's imports and TLS set-up: some CPU
    # of its own, and the wall time to a healthy answer is at least that.
    assert all(0.05 < s.cpu_s <= s.wall_s * 2 for s in samples), samples
    # Both starts logged to one file: the fresh one made the admin token,
    # the restart found it (the same data directory, nothing made again).
    log = (tmp_path / "hub-0-0.log").read_text()
    assert log.count("hub.admin_token_created") == 1 and log.count("hub.starting") >= 2
    text = report(samples, ["this"])
    assert all(f"| this | {kind} |" in text for kind in KINDS)
