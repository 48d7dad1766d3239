"""Supervisor behaviour with scripted fake processes (MemoryRuntime): fast and exact."""

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import pytest

from fogline.agent.supervisor import (
    HealthCheck,
    HealthVerdict,
    MemoryBehaviour,
    MemoryRuntime,
    ModuleProcess,
    RunSpec,
    Supervisor,
    SupervisorError,
    UnknownModuleError,
)

from ._support import async_test, make_spec, status_where, supervising, timed

CRASH = MemoryBehaviour(crash_after_s=0.01, exit_code=2, stderr=b"segfault in sensor driver\n")


def supervisor(tmp_path: Path, runtime: MemoryRuntime, **kwargs: object) -> Supervisor:
    kwargs.setdefault("min_stable_s", 0.2)
    return Supervisor(runtime, tmp_path / "logs", **kwargs)  # type: ignore[arg-type]


@async_test
async def test_a_crashing_module_ends_in_crash_loop_and_keeps_being_restarted(
    tmp_path: Path,
) -> None:
    runtime = MemoryRuntime(behaviours={"mod": CRASH})
    sup = supervisor(tmp_path, runtime, crash_loop_exits=3, crash_loop_window_s=30.0)
    async with supervising(sup):
        await sup.apply({"mod": make_spec("mod", tmp_path / "w")})
        looping = await status_where(sup, "mod", lambda s: s.state == "crash-loop", "crash-loop")
        assert looping.last_exit_code == 2
        assert looping.last_error == "exited with code 2"
        assert "segfault in sensor driver" in looping.stderr_tail
        assert looping.restarts >= 2
        # Not given up: restarts go on (at the max backoff) and the state stays put.
        later = await status_where(
            sup, "mod", lambda s: s.restarts >= looping.restarts + 3, "more restarts"
        )
        assert later.state == "crash-loop"
        assert not await sup.wait_healthy("mod", 0.5)


@async_test
async def test_a_crash_loop_ends_once_the_module_stays_up(tmp_path: Path) -> None:
    runtime = MemoryRuntime(behaviours={"mod": CRASH})
    sup = supervisor(tmp_path, runtime, crash_loop_exits=2)
    async with supervising(sup):
        await sup.apply({"mod": make_spec("mod", tmp_path / "w")})
        await status_where(sup, "mod", lambda s: s.state == "crash-loop", "crash-loop")
        runtime.script("mod", MemoryBehaviour())  # e.g. the missing device was plugged in
        assert await sup.wait_healthy("mod", 0.01) is False  # still looping right now
        healthy = await status_where(sup, "mod", lambda s: s.state == "healthy", "recovery")
        assert healthy.pid is not None


@async_test
async def test_backoff_grows_per_crash_and_resets_after_a_stable_run(tmp_path: Path) -> None:
    runtime = MemoryRuntime()
    # rand() == 1: every wait is the full ceiling, so the timings are exact lower bounds.
    sup = supervisor(
        tmp_path, runtime, backoff_rand=lambda: 1.0, min_stable_s=0.3, crash_loop_exits=9
    )
    spec = make_spec(
        "mod", tmp_path / "w", start_grace_s=0.0, initial_backoff_s=0.1, max_backoff_s=0.4
    )
    async with supervising(sup):
        await sup.apply({"mod": spec})

        async def crash_and_time_restart() -> float:
            old_pid = runtime.running["mod"].pid
            started = time.monotonic()
            runtime.running["mod"].exit(1)
            await status_where(sup, "mod", lambda s: s.pid not in (None, old_pid), "restart")
            return time.monotonic() - started

        waits = [await crash_and_time_restart() for _ in range(4)]
        assert waits[0] >= 0.1 and waits[1] >= 0.2 and waits[2] >= 0.4 and waits[3] >= 0.4
        assert waits[3] < 0.8  # capped at max_backoff_s
        await status_where(sup, "mod", lambda s: s.state == "healthy", "healthy")
        await asyncio.sleep(0.6)  # stays up past min_stable_s: the backoff starts over
        assert 0.1 <= await crash_and_time_restart() < 0.3
        assert sup.statuses()["mod"].restarts == 5


@async_test
async def test_restart_policies(tmp_path: Path) -> None:
    clean_exit = MemoryBehaviour(crash_after_s=0.01, exit_code=0)
    runtime = MemoryRuntime(
        behaviours={"never": CRASH, "onfail-ok": clean_exit, "always-ok": clean_exit}
    )
    sup = supervisor(tmp_path, runtime)
    specs = {
        "never": make_spec("never", tmp_path / "a", policy="never"),
        "onfail-ok": make_spec("onfail-ok", tmp_path / "b", policy="on-failure"),
        "always-ok": make_spec("always-ok", tmp_path / "c", policy="always"),
    }
    async with supervising(sup):
        await sup.apply(specs)
        never = await status_where(sup, "never", lambda s: s.state == "exited", "exited")
        assert (never.last_exit_code, never.restarts, never.pid) == (2, 0, None)
        done = await status_where(sup, "onfail-ok", lambda s: s.state == "exited", "exited")
        assert (done.last_exit_code, done.restarts) == (0, 0)
        await status_where(sup, "always-ok", lambda s: s.restarts >= 2, "restarts after exit 0")
        await asyncio.sleep(0.2)  # a window in which a wrong restart would show
        assert runtime.started.count(("never", "1.0.0")) == 1
        assert runtime.started.count(("onfail-ok", "1.0.0")) == 1


@async_test
async def test_health_failures_in_grace_are_forgiven_later_ones_are_not(tmp_path: Path) -> None:
    runtime = MemoryRuntime(behaviours={"mod": MemoryBehaviour(fail_health_probability=1.0)})
    sup = supervisor(tmp_path, runtime)
    check = HealthCheck("http", "http://127.0.0.1:1/healthz", timeout_s=1.0, interval_s=0.02)
    spec = make_spec("mod", tmp_path / "w", health=check, start_grace_s=0.3)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        await asyncio.sleep(0.15)  # inside the 0.3 s grace, where failures are forgiven
        assert sup.statuses()["mod"].state == "starting"
        unhealthy = await status_where(sup, "mod", lambda s: s.state == "unhealthy", "unhealthy")
        assert unhealthy.last_error == "unhealthy: scripted http failure"
        assert not await sup.wait_healthy("mod", 0.1)  # a timeout, not an error
        runtime.script("mod", MemoryBehaviour())
        assert await sup.wait_healthy("mod", 2.0)
        assert sup.statuses()["mod"].restarts == 0  # health never restarts a module by itself


@async_test
async def test_flaky_health_is_reproducible_with_a_seed(tmp_path: Path) -> None:
    async def verdicts(seed: int) -> list[bool]:
        runtime = MemoryRuntime(seed=seed, default=MemoryBehaviour(fail_health_probability=0.5))
        spec = make_spec("mod", tmp_path / "w")
        process = await runtime.start(spec, tmp_path / "o.log", tmp_path / "e.log")
        check = HealthCheck("tcp", 8080)
        return [(await runtime.probe(process, spec, check, 1.0)).healthy for _ in range(40)]

    first = await verdicts(7)
    assert first == await verdicts(7)
    assert first != await verdicts(8)
    assert 5 < sum(first) < 35


@async_test
async def test_a_module_that_cannot_start_is_reported_not_raised(tmp_path: Path) -> None:
    runtime = MemoryRuntime(behaviours={"mod": MemoryBehaviour(start_error="image not found")})
    sup = supervisor(tmp_path, runtime, crash_loop_exits=3)
    async with supervising(sup) as run_task:
        await sup.apply({"mod": make_spec("mod", tmp_path / "w")})
        looping = await status_where(sup, "mod", lambda s: s.state == "crash-loop", "crash-loop")
        assert looping.last_error == "module 'mod': cannot start: image not found"
        assert looping.last_exit_code is None and looping.pid is None
        assert not run_task.done()


@async_test
async def test_a_module_ignoring_sigterm_is_killed_after_its_stop_grace(tmp_path: Path) -> None:
    runtime = MemoryRuntime(behaviours={"mod": MemoryBehaviour(ignore_sigterm=True)})
    sup = supervisor(tmp_path, runtime)
    async with supervising(sup):
        await sup.apply({"mod": make_spec("mod", tmp_path / "w", stop_grace_s=0.2)})
        process = runtime.running["mod"]
        elapsed = await timed(sup.stop("mod"))
        assert 0.2 <= elapsed < 1.0
        assert process.returncode == -9
        assert sup.statuses()["mod"].state == "stopped"
        assert sup.statuses()["mod"].pid is None


@async_test
async def test_a_removed_module_keeps_its_name_until_it_has_stopped(tmp_path: Path) -> None:
    # The log shipper follows names(): a module's last lines are written
    # while it stops, so it must stay named until then.
    runtime = MemoryRuntime(behaviours={"slow": MemoryBehaviour(ignore_sigterm=True)})
    sup = supervisor(tmp_path, runtime)
    assert sup.names() == []
    slow, quick = (
        make_spec("slow", tmp_path / "s", stop_grace_s=0.3),
        make_spec("q", tmp_path / "q"),
    )
    async with supervising(sup):
        await sup.apply({"slow": slow, "q": quick})
        assert sorted(sup.names()) == ["q", "slow"]
        removing = asyncio.create_task(sup.apply({"q": quick}))
        await asyncio.sleep(0.1)  # SIGTERM sent, ignored: still stopping
        assert not removing.done() and sorted(sup.names()) == ["q", "slow"]
        await removing
        assert sup.names() == ["q"]


@async_test
async def test_apply_converges_and_leaves_unchanged_modules_alone(tmp_path: Path) -> None:
    runtime = MemoryRuntime()
    sup = supervisor(tmp_path, runtime)
    a1, b1 = make_spec("a", tmp_path / "a"), make_spec("b", tmp_path / "b")
    async with supervising(sup):
        await sup.apply({"a": a1, "b": b1})
        pids = {name: status.pid for name, status in sup.statuses().items()}
        assert None not in pids.values()
        a2 = make_spec("a", tmp_path / "a", version="2.0.0")
        b1_new_health = make_spec("b", tmp_path / "b", health=HealthCheck("uptime", 0.0))
        await sup.apply({"a": a2, "b": b1_new_health})
        statuses = sup.statuses()
        assert statuses["a"].version == "2.0.0" and statuses["a"].pid != pids["a"]
        assert statuses["b"].pid == pids["b"]  # health is adopted in place
        assert runtime.started == [("a", "1.0.0"), ("b", "1.0.0"), ("a", "2.0.0")]
        await sup.apply({"a": a2})
        assert set(sup.statuses()) == {"a"}
        assert runtime.running["b"].returncode == -15
        await sup.stop("a")
        assert sup.statuses()["a"].state == "stopped"
        await sup.apply({"a": a2})  # converging starts a stopped module again
        assert sup.statuses()["a"].state in ("starting", "healthy")


@async_test
async def test_apply_before_run_is_recorded_and_run_converges(tmp_path: Path) -> None:
    runtime = MemoryRuntime()
    sup = supervisor(tmp_path, runtime)
    await sup.apply({"mod": make_spec("mod", tmp_path / "w")})
    assert sup.statuses() == {}
    assert not sup.is_running
    async with supervising(sup) as run_task:
        assert sup.is_running
        assert await sup.wait_healthy("mod", 2.0)
        with pytest.raises(SupervisorError, match="already running"):
            await sup.run()
        run_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run_task
        # Cancelling run() stops every module, cleanly.
        assert not sup.is_running
        assert sup.statuses()["mod"].state == "stopped"
        assert runtime.running["mod"].returncode == -15


@async_test
async def test_wait_healthy_gives_up_on_exit_and_stop_all_stops_everything(tmp_path: Path) -> None:
    runtime = MemoryRuntime(behaviours={"dies": MemoryBehaviour(crash_after_s=0.05)})
    sup = supervisor(tmp_path, runtime)
    check = HealthCheck("uptime", 10.0, interval_s=0.01)
    async with supervising(sup):
        await sup.apply(
            {
                "dies": make_spec(
                    "dies", tmp_path / "d", health=check, start_grace_s=5, policy="never"
                ),
                "lives": make_spec("lives", tmp_path / "l"),
            }
        )
        assert await timed(sup.wait_healthy("dies", 5.0)) < 1.0
        assert sup.statuses()["dies"].state == "exited"
        assert await sup.wait_healthy("lives", 2.0)
        await sup.stop_all()
        assert {s.state for s in sup.statuses().values()} == {"stopped"}


@async_test
async def test_unknown_modules_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, MemoryRuntime())
    with pytest.raises(UnknownModuleError, match="'ghost' is not supervised"):
        await sup.stop("ghost")
    with pytest.raises(UnknownModuleError):
        await sup.wait_healthy("ghost", 0.1)
    with pytest.raises(ValueError, match="is named 'mod'"):
        await sup.apply({"other": make_spec("mod", tmp_path / "w")})
    with pytest.raises(ValueError, match="crash_loop_exits"):
        supervisor(tmp_path, MemoryRuntime(), crash_loop_exits=0)
    with pytest.raises(ValueError, match="fail_health_probability"):
        MemoryBehaviour(fail_health_probability=1.5)


class BrokenRuntime(MemoryRuntime):
    """A runtime with bugs: the supervisor must survive them."""

    async def start(self, spec: RunSpec, stdout_path: Path, stderr_path: Path) -> ModuleProcess:
        if spec.name == "nostart":
            raise RuntimeError("docker socket exploded")
        return await super().start(spec, stdout_path, stderr_path)

    async def probe(
        self, process: ModuleProcess, spec: RunSpec, check: HealthCheck, uptime_s: float
    ) -> HealthVerdict:
        if spec.name == "hang":
            await asyncio.sleep(60)
        raise KeyError("probe bug")


@async_test
async def test_runtime_bugs_become_statuses_not_crashes(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, BrokenRuntime())
    slow = HealthCheck("tcp", 9, timeout_s=0.05, interval_s=0.02)
    async with supervising(sup) as run_task:
        await sup.apply(
            {
                "nostart": make_spec("nostart", tmp_path / "a", policy="never"),
                "badprobe": make_spec("badprobe", tmp_path / "b", start_grace_s=0.0),
                "hang": make_spec("hang", tmp_path / "c", health=slow, start_grace_s=0.0),
            }
        )
        nostart = await status_where(sup, "nostart", lambda s: s.state == "exited", "exited")
        assert (
            nostart.last_error
            == "module 'nostart': runtime failed: RuntimeError: docker socket exploded"
        )
        bad = await status_where(sup, "badprobe", lambda s: s.state == "unhealthy", "unhealthy")
        assert bad.last_error == "unhealthy: uptime probe failed: KeyError: 'probe bug'"
        hang = await status_where(sup, "hang", lambda s: s.state == "unhealthy", "unhealthy")
        assert hang.last_error == "unhealthy: tcp probe timed out after 0.05s"
        assert not run_task.done()


@async_test
async def test_status_is_json_able(tmp_path: Path) -> None:
    runtime = MemoryRuntime(
        behaviours={"mod": MemoryBehaviour(crash_after_s=0.01, stderr=b"\xffbad utf8\n")}
    )
    sup = supervisor(tmp_path, runtime, crash_loop_exits=2)
    async with supervising(sup):
        await sup.apply({"mod": make_spec("mod", tmp_path / "w")})
        status = await status_where(sup, "mod", lambda s: s.state == "crash-loop", "crash-loop")
        as_json = json.loads(json.dumps(status.to_dict()))
        assert as_json["state"] == "crash-loop"
        assert as_json["name"] == "mod" and as_json["version"] == "1.0.0"
        assert "\ufffdbad utf8" in as_json["stderr_tail"]
        assert set(as_json) == {
            "name",
            "version",
            "state",
            "pid",
            "restarts",
            "last_exit_code",
            "last_error",
            "stderr_tail",
            "since",
        }


@async_test
async def test_once_healthy_the_start_grace_no_longer_forgives_failures(tmp_path: Path) -> None:
    runtime = MemoryRuntime()
    sup = supervisor(tmp_path, runtime)
    check = HealthCheck("tcp", 8080, timeout_s=1.0, interval_s=0.02)
    spec = make_spec("mod", tmp_path / "w", health=check, start_grace_s=0.05)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        assert await sup.wait_healthy("mod", 2.0)
        # A longer grace is adopted in place (no restart); it covers starts, not this process.
        await sup.apply({"mod": dataclasses.replace(spec, start_grace_s=60.0)})
        assert sup.statuses()["mod"].restarts == 0
        runtime.script("mod", MemoryBehaviour(fail_health_probability=1.0))
        await status_where(sup, "mod", lambda s: s.state == "unhealthy", "unhealthy", timeout_s=2.0)
