"""Virtual nodes' health: metric faults tied to a release, parsed and applied."""

import random

import pytest

from fogline.protocol import ModuleReport, ModulesReport
from fogline.sim import FaultSpecError, parse_faults
from fogline.sim._health import SimHealth

MB = 1_000_000


def test_metric_faults_parse_per_release_and_the_most_specific_wins() -> None:
    faults = parse_faults(
        "mem-leak:web@2.0.0=30MB/h, cpu:web@2.0.0=+40%, restarts:web=1.5/h, mem-leak:db=1GiB/h"
    )
    assert faults.metric_fault("mem-leak", "web", "2.0.0") == 30 * MB
    assert faults.metric_fault("mem-leak", "web", "1.0.0") == 0.0
    assert faults.metric_fault("mem-leak", "db", "9") == 1024**3
    assert faults.metric_fault("cpu", "web", "2.0.0") == pytest.approx(0.4)
    assert faults.metric_fault("restarts", "web", "7.0.0") == 1.5
    assert parse_faults("cpu:web=-20%").metric_fault("cpu", "web", "1") == pytest.approx(-0.2)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("mem-leak:web@2.0.0=30MB", "expected a leak like 30MB/h"),
        ("mem-leak:web=lots", "expected a leak like 30MB/h"),
        ("cpu:web@2.0.0=40%", "expected a CPU change like +40%"),
        ("cpu:web=-100%", "above -100%"),
        ("restarts:web=often", "expected a rate like 1/h"),
        ("mem-leak:Web!=1MB/h", "expected mem-leak:NAME[@VERSION]=AMOUNT"),
        ("cpu:web=+1%,cpu:web=+2%", "given twice"),
        ("leak:web=1MB/h", "unknown fault"),
    ],
)
def test_a_bad_metric_fault_is_named_with_the_reason(spec: str, why: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_faults(spec)
    assert why in str(caught.value)


def _modules(version: str) -> ModulesReport:
    return ModulesReport(modules={"web": ModuleReport(version=version, state="healthy")})


def test_a_leaking_release_grows_from_when_the_node_first_runs_it() -> None:
    now = [0.0]
    faults = parse_faults("mem-leak:web@2.0.0=36MB/h,cpu:web@2.0.0=+100%,restarts:web@2.0.0=6/h")
    health = SimHealth(faults, random.Random(1), clock=lambda: now[0])
    old = [health.sample(_modules("1.0.0")).modules["web"] for _ in range(50)]
    now[0] = 1000.0
    first = health.sample(_modules("2.0.0")).modules["web"]
    now[0] = 1000.0 + 3600.0
    later = health.sample(_modules("2.0.0"))
    web = later.modules["web"]
    assert max(m.rss_bytes or 0 for m in old) - min(m.rss_bytes or 0 for m in old) < 10 * MB
    assert (web.rss_bytes or 0) - (first.rss_bytes or 0) == pytest.approx(36 * MB, abs=5 * MB)
    mean_old_cpu = sum(m.cpu_percent or 0 for m in old) / len(old)
    assert (web.cpu_percent or 0) == pytest.approx(2 * mean_old_cpu, abs=2.5)
    assert web.restarts in (6, 7)  # 6 an hour, the first after a drawn phase
    # The node's memory holds its modules'.
    assert (later.mem_used_bytes or 0) > (web.rss_bytes or 0)


def test_pipeline_faults_grow_the_nodes_pipeline_counters_while_it_runs_the_release() -> None:
    now = [0.0]
    faults = parse_faults("pipeline-errors:web@2.0.0=60/h,pipeline-drops:web=120/h")
    assert faults.metric_fault("pipeline-errors", "web", "2.0.0") == 60.0
    health = SimHealth(faults, random.Random(1), clock=lambda: now[0])
    good = health.sample(_modules("1.0.0"))
    # Every node reports the counters (a control cohort has data), zero without a fault.
    assert (good.pipeline_errors, good.pipeline_dropped) == (0, 0)
    health.sample(_modules("2.0.0"))
    now[0] = 1800.0
    half = health.sample(_modules("2.0.0"))
    assert (half.pipeline_errors, half.pipeline_dropped) == (30, 60)
    with pytest.raises(FaultSpecError, match="expected a rate like 1/h"):
        parse_faults("pipeline-errors:web=+5/min")
