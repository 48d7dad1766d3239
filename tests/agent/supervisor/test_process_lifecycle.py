"""Real module processes: restarts, crash loops, stopping, converging, logs, env, limits."""

import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

import pytest

from fogline.agent.supervisor import (
    HealthCheck,
    ProcessRuntime,
    Resources,
    Supervisor,
    read_log_tail,
)
from tests.support.processes import wait_until_async

from ._support import (
    async_test,
    is_alive,
    make_spec,
    python_module,
    status_where,
    supervising,
    timed,
)

SLEEPER = "import time; time.sleep(60)"


def supervisor(
    tmp_path: Path, runtime: ProcessRuntime | None = None, **kwargs: object
) -> Supervisor:
    kwargs.setdefault("min_stable_s", 0.5)
    return Supervisor(runtime or ProcessRuntime(), tmp_path / "logs", **kwargs)  # type: ignore[arg-type]


@async_test
async def test_a_module_killed_from_outside_is_restarted_after_backoff(tmp_path: Path) -> None:
    uptime = HealthCheck("uptime", 0.05, interval_s=0.02)
    spec = python_module(
        tmp_path / "w", SLEEPER, health=uptime, initial_backoff_s=0.3, max_backoff_s=1.0
    )
    sup = supervisor(tmp_path, backoff_rand=lambda: 1.0)  # the wait is exactly the ceiling
    async with supervising(sup):
        await sup.apply({"mod": spec})
        first = await status_where(sup, "mod", lambda s: s.state == "healthy", "healthy")
        assert first.pid is not None and first.restarts == 0
        killed_at = time.monotonic()
        os.kill(first.pid, signal.SIGKILL)
        exited = await status_where(sup, "mod", lambda s: s.state == "exited", "exited")
        assert (exited.last_exit_code, exited.last_error) == (-9, "killed by SIGKILL")
        again = await status_where(sup, "mod", lambda s: s.pid not in (None, first.pid), "restart")
        assert time.monotonic() - killed_at >= 0.3
        assert again.restarts == 1
        assert await sup.wait_healthy("mod", 5.0)
        assert not is_alive(first.pid)


@async_test
async def test_a_module_that_exits_at_once_is_reported_as_crash_loop(tmp_path: Path) -> None:
    code = "import sys; print('starting'); sys.stderr.write('fatal: /etc/gw.conf missing\\n'); sys.exit(3)"
    spec = python_module(tmp_path / "w", code, initial_backoff_s=0.01, max_backoff_s=0.05)
    sup = supervisor(tmp_path, crash_loop_exits=3, crash_loop_window_s=30.0)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        looping = await status_where(sup, "mod", lambda s: s.state == "crash-loop", "crash-loop")
        assert looping.last_exit_code == 3
        assert looping.last_error == "exited with code 3"
        assert looping.stderr_tail.endswith("fatal: /etc/gw.conf missing\n")
        assert len(looping.stderr_tail.encode()) <= 2048
        assert not await sup.wait_healthy("mod", 1.0)
        # It keeps trying at the max backoff rather than giving up silently.
        await status_where(
            sup, "mod", lambda s: s.restarts >= looping.restarts + 2, "more restarts"
        )
    assert b"starting\n" in read_log_tail(tmp_path / "logs", "mod", "stdout", 100)


@async_test
async def test_a_module_ignoring_sigterm_is_killed_with_its_children(tmp_path: Path) -> None:
    code = """
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
        with open("pids.tmp", "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        os.rename("pids.tmp", "pids")
        time.sleep(60)
    """
    spec = python_module(tmp_path / "w", code, stop_grace_s=0.3)
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        pids_file = tmp_path / "w" / "pids"
        await wait_until_async(pids_file.exists, 5, "the module's pids", 0.01)
        pids = [int(pid) for pid in pids_file.read_text().split()]
        assert all(is_alive(pid) for pid in pids)
        elapsed = await timed(sup.stop("mod"))
        assert 0.3 <= elapsed < 3.0
        assert sup.statuses()["mod"].state == "stopped"
        await wait_until_async(
            lambda: not any(is_alive(pid) for pid in pids), 5, "module and child gone", 0.01
        )


@async_test
async def test_a_well_behaved_module_stops_on_sigterm_without_waiting_for_the_grace(
    tmp_path: Path,
) -> None:
    spec = python_module(tmp_path / "w", SLEEPER, stop_grace_s=5.0)
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        pid = sup.statuses()["mod"].pid
        assert pid is not None
        assert await timed(sup.stop("mod")) < 2.0
        assert not is_alive(pid)


@async_test
async def test_apply_restarts_changed_keeps_unchanged_and_stops_removed(tmp_path: Path) -> None:
    sup = supervisor(tmp_path)
    a1 = python_module(tmp_path / "a", SLEEPER, name="a")
    b1 = python_module(tmp_path / "b", SLEEPER, name="b")
    async with supervising(sup):
        await sup.apply({"a": a1, "b": b1})
        before = sup.statuses()
        a2 = python_module(tmp_path / "a", SLEEPER, name="a", version="2.0.0")
        await sup.apply({"a": a2, "b": b1})
        after = sup.statuses()
        assert after["a"].version == "2.0.0"
        assert after["a"].pid not in (None, before["a"].pid)
        assert after["b"].pid == before["b"].pid
        assert not is_alive(before["a"].pid)  # type: ignore[arg-type]
        await sup.apply({"a": a2})
        assert set(sup.statuses()) == {"a"}
        await wait_until_async(lambda: not is_alive(before["b"].pid), 5, "b stopped", 0.01)  # type: ignore[arg-type]
        final_a = sup.statuses()["a"].pid
    # Leaving the block cancels run(): every module is stopped cleanly.
    assert sup.statuses()["a"].state == "stopped"
    assert not is_alive(final_a)  # type: ignore[arg-type]


@async_test
async def test_log_rotation_bounds_the_disk_of_a_module_printing_fast(tmp_path: Path) -> None:
    code = """
        import sys
        i = 0
        while True:
            i += 1
            sys.stdout.write(f"{i:09d}\\n")
    """
    runtime = ProcessRuntime(log_max_bytes=20_000, log_keep=3)
    sup = supervisor(tmp_path, runtime)
    async with supervising(sup):
        await sup.apply({"mod": python_module(tmp_path / "w", code)})
        module_logs = tmp_path / "logs" / "mod"
        await wait_until_async((module_logs / "stdout.log.2").exists, 5, "two rotations", 0.01)

        def printed() -> int:
            """The last whole line's number: how many lines the module printed."""
            tail = read_log_tail(tmp_path / "logs", "mod", "stdout", 1000).splitlines()
            return int(tail[-2]) if len(tail) > 1 else 0  # the last line may be cut

        # far more than is kept: 10 bytes a line, 3 files of 20,000 bytes
        await wait_until_async(lambda: printed() > 2 * 3 * 20_000 // 10, 10, "more output", 0.01)
        await sup.stop("mod")
    files = sorted(module_logs.glob("stdout.log*"))
    assert [f.name for f in files] == ["stdout.log", "stdout.log.1", "stdout.log.2"]
    assert sum(f.stat().st_size for f in files) <= 3 * 20_000


@async_test
async def test_a_missing_executable_is_a_status_not_a_crash(tmp_path: Path) -> None:
    spec = make_spec("mod", tmp_path / "w", ("./no-such-binary", "--serve"), policy="never")
    sup = supervisor(tmp_path)
    async with supervising(sup) as run_task:
        await sup.apply({"mod": spec})
        status = sup.statuses()["mod"]
        assert status.state == "exited"
        assert status.pid is None
        assert status.last_error is not None
        assert "cannot start: './no-such-binary'" in status.last_error
        assert "No such file or directory" in status.last_error
        assert not await sup.wait_healthy("mod", 1.0)
        assert not run_task.done()


@async_test
async def test_a_missing_workdir_is_a_status_not_a_crash(tmp_path: Path) -> None:
    spec = make_spec("mod", tmp_path / "w", (sys.executable, "-c", "pass"), policy="never")
    (tmp_path / "w").rmdir()
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        status = sup.statuses()["mod"]
        assert status.state == "exited"
        assert status.last_error is not None and str(tmp_path / "w") in status.last_error


@async_test
async def test_the_module_gets_its_config_and_none_of_the_agents_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOGLINE_TOKEN", "hub-bearer-s3cret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    code = "import json, os; json.dump(dict(os.environ), open('env.json', 'w'))"
    config = tmp_path / "config" / "gateway.yaml"
    spec = python_module(
        tmp_path / "w", code, env={"GREETING": "hi"}, config_path=config, policy="never"
    )
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        await status_where(sup, "mod", lambda s: s.state == "exited", "exited")
    env = json.loads((tmp_path / "w" / "env.json").read_text())
    assert env["FOGLINE_CONFIG"] == str(config)
    assert env["FOGLINE_MODULE"] == "mod"
    assert env["FOGLINE_MODULE_VERSION"] == "1.0.0"
    assert env["GREETING"] == "hi"
    assert env["HOME"] == str(tmp_path / "w")
    assert "FOGLINE_TOKEN" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    # Only what the supervisor passes (Python may add LC_CTYPE when coercing a C locale).
    expected = {"PATH", "LANG", "HOME", "GREETING", "FOGLINE_MODULE", "FOGLINE_MODULE_VERSION"}
    assert set(env) - {"LC_CTYPE"} == expected | {"FOGLINE_CONFIG"}


@async_test
async def test_resource_limits_are_applied_in_the_child(tmp_path: Path) -> None:
    code = """
        import json, resource
        json.dump({name: resource.getrlimit(getattr(resource, name))
                   for name in ("RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_CPU")}, open("limits.json", "w"))
    """
    _, nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = Resources(memory_mb=4096, open_files=64, cpu_seconds=100)
    spec = python_module(tmp_path / "w", code, resources=limits, policy="never")
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        done = await status_where(sup, "mod", lambda s: s.state == "exited", "exited")
        assert done.last_exit_code == 0, done
    got = json.loads((tmp_path / "w" / "limits.json").read_text())
    assert got == {
        "RLIMIT_AS": [4096 * 1024 * 1024] * 2,
        "RLIMIT_NOFILE": [64, 64],
        "RLIMIT_CPU": [100, 100],
    }
    assert (
        resource.getrlimit(resource.RLIMIT_NOFILE)[1] == nofile_hard
    )  # the agent's own are untouched


@async_test
async def test_a_limit_above_the_agents_hard_limit_is_clamped_not_fatal(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on open files here")
    code = "import json, resource; json.dump(resource.getrlimit(resource.RLIMIT_NOFILE), open('n.json', 'w'))"
    spec = python_module(
        tmp_path / "w", code, resources=Resources(open_files=hard + 1000), policy="never"
    )
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        done = await status_where(sup, "mod", lambda s: s.state == "exited", "exited")
        assert done.last_exit_code == 0, done
    assert json.loads((tmp_path / "w" / "n.json").read_text()) == [hard, hard]


@async_test
async def test_restarts_leak_no_file_descriptors(tmp_path: Path) -> None:
    code = "import sys; sys.stdout.write('out\\n'); sys.stderr.write('err\\n'); sys.exit(1)"
    spec = python_module(tmp_path / "w", code, initial_backoff_s=0.001, max_backoff_s=0.01)
    sup = supervisor(tmp_path, crash_loop_exits=1000)
    open_before = len(os.listdir("/proc/self/fd"))
    async with supervising(sup):
        await sup.apply({"mod": spec})
        await status_where(sup, "mod", lambda s: s.restarts >= 15, "15 restarts", timeout_s=10)
    assert len(os.listdir("/proc/self/fd")) <= open_before
    assert read_log_tail(tmp_path / "logs", "mod", "stderr", 8) == b"err\nerr\n"


@async_test
async def test_a_stop_during_the_restart_backoff_is_prompt(tmp_path: Path) -> None:
    spec = python_module(
        tmp_path / "w", "raise SystemExit(1)", initial_backoff_s=30.0, max_backoff_s=30.0
    )
    sup = supervisor(tmp_path, backoff_rand=lambda: 1.0)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        await status_where(sup, "mod", lambda s: s.state == "exited", "exited")
        assert await timed(sup.stop("mod")) < 1.0
        assert sup.statuses()["mod"].state == "stopped"
        assert sup.statuses()["mod"].restarts == 0


def test_bad_log_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="log_max_bytes"):
        ProcessRuntime(log_max_bytes=0)
    with pytest.raises(ValueError, match="log_keep"):
        ProcessRuntime(log_keep=0)


@async_test
async def test_an_unwritable_logs_dir_is_a_start_error(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("a file where the logs dir should be")
    spec = python_module(tmp_path / "w", SLEEPER, policy="never")
    sup = supervisor(tmp_path)
    async with supervising(sup):
        await sup.apply({"mod": spec})
        status = sup.statuses()["mod"]
        assert status.state == "exited"
        assert status.last_error is not None
        assert "cannot start: cannot create its log directory" in status.last_error
