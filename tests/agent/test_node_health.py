"""The node's health as the agent reads it from /proc and /sys (a fake tree
here; tests/hub/test_health_series_e2e.py reads the real one through a
running agent)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from fogline.agent._health import HealthSampler, PipelineTotals
from fogline.protocol import MAX_HEALTH_MODULES, ModuleReport, ModulesReport, NodeHealth

from ..protocol._golden import agent_report, golden

PAGE = 4096


def _proc_tree(root: Path, *, node_busy: int, node_idle: int, module_ticks: int) -> Path:
    proc = root / "proc"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / "4242").mkdir(exist_ok=True)
    (proc / "net").mkdir(exist_ok=True)
    # user nice system idle iowait irq softirq steal guest guest_nice
    (proc / "stat").write_text(
        f"cpu  {node_busy} 0 0 {node_idle} 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    )
    (proc / "loadavg").write_text("0.52 0.40 0.31 2/345 6789\n")
    (proc / "meminfo").write_text(
        "MemTotal:        4000000 kB\nMemFree:          100000 kB\nMemAvailable:    3000000 kB\n"
    )
    (proc / "net" / "dev").write_text(
        "Inter-|   Receive                        |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes ...\n"
        "    lo: 999999 10 0 0 0 0 0 0 999999 10 0 0 0 0 0 0\n"
        "  eth0: 1000 10 0 0 0 0 0 0 2000 10 0 0 0 0 0 0\n"
        " wlan0: 500 10 0 0 0 0 0 0 250 10 0 0 0 0 0 0\n"
    )
    (proc / "self" / "statm").write_text(f"10000 {50 * 1024 * 1024 // PAGE} 0 0 0 0 0\n")
    # The command name holds a space and a parenthesis: fields are counted after the last ")".
    (proc / "4242" / "stat").write_text(
        f"4242 (thermo (x) 1) S 1 4242 4242 0 -1 0 0 0 0 0 {module_ticks} 0 0 0 20 0 1 0\n"
    )
    (proc / "4242" / "statm").write_text(f"5000 {20 * 1024 * 1024 // PAGE} 0 0 0 0 0\n")
    return proc


def _thermal(root: Path, *millidegrees: str) -> Path:
    for index, value in enumerate(millidegrees):
        zone = root / "thermal" / f"thermal_zone{index}"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "temp").write_text(value + "\n")
    return root / "thermal"


def _sampler(tmp_path: Path, thermal: Path) -> HealthSampler:
    return HealthSampler(
        tmp_path,
        proc=tmp_path / "proc",
        thermal=thermal,
        disk=lambda _path: (2 * 1024**3, 16 * 1024**3),
    )


def test_the_agent_sends_the_golden_report_with_health(tmp_path: Path) -> None:
    """Two samples: CPU shares are taken between them (node 25 % busy, the
    module 10 % of the whole node); the hottest plausible zone is reported;
    the data plane's counters and the series scraped from a module's
    endpoint are carried as given (a module without any has no `metrics`)."""
    report = asyncio.run(agent_report(tmp_path / "data"))
    thermal = _thermal(tmp_path, "48500", "-273000", "61250")
    sampler = _sampler(tmp_path, thermal)
    _proc_tree(tmp_path, node_busy=1000, node_idle=3000, module_ticks=100)
    first = sampler.sample(report.modules)
    assert first.cpu_percent is None and first.modules["thermo"].cpu_percent is None
    _proc_tree(tmp_path, node_busy=1100, node_idle=3300, module_ticks=140)
    health = sampler.sample(
        report.modules,
        module_metrics={"thermo": {"http_errors_total": 12.0, "queue_depth": 3.5}},
        pipeline=PipelineTotals(errors=2, dropped=7),
    )
    with_health = report.model_copy(update={"health": health})
    assert json.loads(with_health.model_dump_json()) == golden("report.health.json")


def test_what_the_node_does_not_have_is_left_out_never_an_error(tmp_path: Path) -> None:
    sampler = HealthSampler(
        tmp_path, proc=tmp_path / "no-proc", thermal=tmp_path / "none", disk=lambda _p: None
    )
    modules = ModulesReport(
        modules={"gone": ModuleReport(name="gone", state="healthy", pid=99999, restarts=1)}
    )
    health = sampler.sample(modules)
    assert health == NodeHealth(modules={"gone": {"state": "healthy", "restarts": 1}})


def test_a_sensor_reading_nonsense_is_dropped_not_sent(tmp_path: Path) -> None:
    _proc_tree(tmp_path, node_busy=1, node_idle=1, module_ticks=1)
    health = _sampler(tmp_path, _thermal(tmp_path, "255000", "garbage", "-273150")).sample(None)
    assert health.temperature_c is None and health.mem_used_bytes == 1_000_000 * 1024


def test_the_modules_listed_are_bounded(tmp_path: Path) -> None:
    many = ModulesReport(
        modules={f"m{i}": ModuleReport(name=f"m{i}", state="stopped") for i in range(1000)}
    )
    health = _sampler(tmp_path, tmp_path / "none").sample(many)
    assert len(health.modules) == MAX_HEALTH_MODULES


def test_a_sample_of_the_real_node_is_cheap_and_valid(tmp_path: Path) -> None:
    """On this machine's /proc: every field a Linux host has is there, and a
    sample costs well under the 5 ms budget (about 0.4 ms measured)."""
    sampler = HealthSampler(tmp_path)
    sampler.sample(None)
    started = time.perf_counter()
    for _ in range(50):
        health = sampler.sample(None)
    per_sample_s = (time.perf_counter() - started) / 50
    assert per_sample_s < 0.005, per_sample_s
    assert health.mem_used_bytes and health.disk_free_bytes and health.agent_rss_bytes
    assert health.load1 is not None
    deadline = time.monotonic() + 0.1  # some CPU ticks (10 ms each) pass
    while time.monotonic() < deadline:
        sum(range(1000))
    assert sampler.sample(None).cpu_percent is not None
    assert NodeHealth.model_validate_json(health.model_dump_json()) == health
