"""benchmarks/bench_soak.py: its verdict tells a leak from noise, and a short
soak against a real hub and agent samples the agent and runs every event."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from benchmarks.bench_soak import Sample, Schedule, ascii_plot, fit_slope, judge, report, soak


def _series(per_h: float, noise_mb: float, *, seed: int) -> tuple[list[float], list[float]]:
    """20 minutes sampled every 5 s: 80 MB, a drift of `per_h` MB/h, uniform noise."""
    rand = random.Random(seed)
    ts = [i * 5.0 for i in range(240)]
    return ts, [80 + per_h * t / 3600 + rand.uniform(-noise_mb, noise_mb) for t in ts]


def test_a_leak_is_not_flat_and_noise_or_a_drift_within_the_bound_is() -> None:
    # 5 MB/h under ±0.5 MB of noise: the interval excludes zero, over the bound.
    leak = fit_slope(*_series(5.0, 0.5, seed=1), bound_per_h=1.0)
    assert leak.low_per_h > 0 and 3 < leak.per_h < 7, leak
    assert not leak.flat
    # Wide noise alone: the fitted slope is over the bound, but zero is
    # inside its interval (this seed), so it is not called a leak.
    noise = fit_slope(*_series(0.0, 3.0, seed=7), bound_per_h=1.0)
    assert noise.per_h > 1 and noise.low_per_h <= 0 <= noise.high_per_h and noise.flat, noise
    # A real drift under the bound (0.3 MB/h, next to no noise) counts as flat.
    drift = fit_slope(*_series(0.3, 0.001, seed=3), bound_per_h=1.0)
    assert drift.low_per_h > 0 and drift.flat, drift
    # One wild sample (a burst) does not make a flat series grow: Theil-Sen.
    ts, values = _series(0.0, 0.2, seed=4)
    values[-1] += 50
    assert fit_slope(ts, values, bound_per_h=1.0).flat


def test_the_verdict_skips_the_warm_up_and_judges_fds_too() -> None:
    def at(t: float, rss: float, fds: int) -> Sample:
        return Sample(t, rss, fds, {"socket": fds}, 8, 60.0, 3)

    # RSS climbs 20 MB in the first 8 minutes, then holds; fds leak one a minute.
    samples = [at(t, 60 + min(t, 480) / 24, 30 + int(t // 60)) for t in range(0, 1200, 5)]
    verdicts = judge(samples, warmup_s=600, rss_bound=1.0, fd_bound=1.0)
    assert verdicts.rss.flat and verdicts.rss.per_h == 0
    assert not verdicts.fds.flat and 50 < verdicts.fds.per_h < 70
    assert not verdicts.flat
    # Without the warm-up cut, the climb (two fifths of the run) counts.
    assert not judge(samples, warmup_s=0, rss_bound=1.0, fd_bound=1.0).rss.flat


def test_the_plot_is_plain_text_with_the_range_on_its_axis() -> None:
    ts, values = _series(30.0, 0.1, seed=5)
    lines = ascii_plot(ts, values, width=40, height=6)
    assert len(lines) == 8 and all(line.isascii() for line in lines)
    assert lines[0].startswith(f"{max(values):.1f} |") and "*" in lines[0]
    assert lines[5].startswith(f"{min(values):.1f} |") and "*" in lines[5]
    # Rising: the first column's star is on the bottom row, the last's on the top.
    assert lines[5].split("|", 1)[1][0] == "*" and lines[0].split("|", 1)[1][-1] == "*"


def test_a_short_soak_samples_the_agent_and_runs_every_event(tmp_path: Path) -> None:
    schedule = Schedule(
        minutes=0.3,
        sample_s=0.5,
        warmup_s=0,
        restart_every_s=4,
        apply_every_s=8,
        outage_every_s=10,
        outage_s=0.5,
    )
    samples, events, counters = soak(
        tmp_path,
        schedule,
        report_interval_s=0.1,
        drift_interval_s=1.0,
        publish_rate=20,
        modules=("alpha", "beta"),  # the bench runs three; two keep the test short
    )
    assert events.errors == []
    assert events.restarts >= 1 and events.applies >= 1 and events.outages >= 1, events
    assert events.published > 0
    assert counters["reports ok"] > 20  # every 0.1 s for 18 s, outages and load aside
    assert counters["reports unreachable"] >= 1  # the outage was seen
    assert len(samples) >= 10
    assert all(s.rss_mb > 20 and s.fds > 5 and s.threads >= 1 for s in samples)
    assert max(s.modules for s in samples) == 2
    assert any(s.fd_kinds.get("socket") for s in samples)
    args = argparse.Namespace(
        warmup_s=0,
        report_interval=0.1,
        drift_interval=1.0,
        sample_s=0.5,
        outage_s=0.5,
        publish_rate=20,
        revision="abc1234",
    )
    verdicts = judge(samples, 0, 1.0, 1.0)
    text = report(args, samples, events, counters, verdicts, "1.0→1.0", "bench_soak --minutes 0.3")
    assert (
        "## Agent soak, fast time (git abc1234)" in text and "agent RSS (MB) over the run" in text
    )
    assert f"| module restarts (SIGKILL) | {events.restarts} (" in text
