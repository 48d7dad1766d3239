"""A health probe's pass counts only after the start grace, and only for a process that runs.

Issue #19: a module that failed to bind its port passed its HTTP check in
10 ms because another process answered on that port; the update committed
while the module crash-looped.
"""

import time
from pathlib import Path

import pytest

from fogline.agent.supervisor import (
    HealthCheck,
    HealthVerdict,
    MemoryRuntime,
    ModuleProcess,
    RunSpec,
    State,
    Supervisor,
    is_probe_due,
)

from ._support import async_test, make_spec, status_where, supervising

CHECK = HealthCheck("http", "http://127.0.0.1:1/healthz", timeout_s=1.0, interval_s=0.02)


@pytest.mark.parametrize(
    ("state", "uptime_s", "due"),
    [
        (State.STARTING, 0.01, False),  # the 10 ms pass of the issue
        (State.STARTING, 0.99, False),
        (State.STARTING, 1.0, True),
        (State.CRASH_LOOP, 0.5, False),
        (State.CRASH_LOOP, 2.0, True),
        (State.HEALTHY, 0.5, True),  # judged already: a grace raised in place hides nothing
        (State.UNHEALTHY, 0.5, True),
    ],
)
def test_a_probe_is_due_only_after_the_start_grace_of_a_start(
    state: State, uptime_s: float, due: bool
) -> None:
    assert is_probe_due(state, uptime_s, start_grace_s=1.0) is due


class RecordingRuntime(MemoryRuntime):
    """Every probe passes (another process answers on the port); each is timed."""

    def __init__(self) -> None:
        super().__init__()
        self.probed_at: list[float] = []
        self.exit_during_probe = False

    async def probe(
        self, process: ModuleProcess, spec: RunSpec, check: HealthCheck, uptime_s: float
    ) -> HealthVerdict:
        self.probed_at.append(time.monotonic())
        if self.exit_during_probe:  # the module failed to bind while the other one answered
            self.running[spec.name].exit(1)
        return HealthVerdict(True, "GET /healthz: 200 (answered by another process)")


def supervisor(tmp_path: Path, runtime: MemoryRuntime) -> Supervisor:
    return Supervisor(runtime, tmp_path / "logs", min_stable_s=0.2)


@async_test
async def test_a_pass_within_the_start_grace_does_not_make_the_module_healthy(
    tmp_path: Path,
) -> None:
    runtime = RecordingRuntime()
    sup = supervisor(tmp_path, runtime)
    async with supervising(sup):
        started = time.monotonic()
        await sup.apply({"mod": make_spec("mod", tmp_path / "w", health=CHECK, start_grace_s=0.4)})
        await status_where(sup, "mod", lambda s: s.state == "starting", "starting")
        assert await sup.wait_healthy("mod", 3.0)
        assert time.monotonic() - started >= 0.4
    assert runtime.probed_at and min(runtime.probed_at) - started >= 0.4


@async_test
async def test_a_pass_while_the_process_is_gone_does_not_count(tmp_path: Path) -> None:
    runtime = RecordingRuntime()
    runtime.exit_during_probe = True
    sup = supervisor(tmp_path, runtime)
    spec = make_spec("mod", tmp_path / "w", health=CHECK, start_grace_s=0.05, policy="never")
    async with supervising(sup):
        await sup.apply({"mod": spec})
        assert not await sup.wait_healthy("mod", 2.0)
        assert sup.statuses()["mod"].state == "exited"
    assert runtime.probed_at  # it was probed, and passed: the pass did not count


@async_test
async def test_wait_healthy_is_false_for_a_healthy_module_whose_process_is_gone(
    tmp_path: Path,
) -> None:
    runtime = MemoryRuntime()
    sup = supervisor(tmp_path, runtime)
    async with supervising(sup):
        await sup.apply({"mod": make_spec("mod", tmp_path / "w", health=CHECK, start_grace_s=0.05)})
        assert await sup.wait_healthy("mod", 2.0)
        # Gone, as the OS sees it, before its exit reaches the supervisor's loop.
        runtime.running["mod"].is_running = lambda: False  # type: ignore[method-assign]
        assert sup.statuses()["mod"].state == "healthy"
        assert not await sup.wait_healthy("mod", 0.2)
