"""The supervisor logs each module state change as a `module.state` event, at
the level an operator must see it at: a crash loop is an error, an unhealthy
module or a failed exit a warning, the rest info. Real module processes."""

import logging
from pathlib import Path

import pytest

from fogline.agent.supervisor import HealthCheck, ProcessRuntime, Supervisor
from tests.support.processes import free_port

from ._support import async_test, python_module, status_where, supervising
from .test_process_health import HTTP_MODULE


def supervisor(tmp_path: Path, **kwargs: object) -> Supervisor:
    return Supervisor(ProcessRuntime(), tmp_path / "logs", min_stable_s=0.5, **kwargs)  # type: ignore[arg-type]


def changes(caplog: pytest.LogCaptureFixture) -> list[tuple[int, dict[str, object]]]:
    return [
        (r.levelno, r.fields)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "fogline.agent.supervisor" and r.getMessage() == "module.state"
    ]


def test_a_crash_loop_is_logged_as_an_error_with_its_exit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fogline.agent.supervisor")

    @async_test
    async def run() -> None:
        code = "import sys; sys.exit(3)"
        spec = python_module(tmp_path / "w", code, initial_backoff_s=0.01, max_backoff_s=0.05)
        sup = supervisor(tmp_path, crash_loop_exits=3, crash_loop_window_s=30.0)
        async with supervising(sup):
            await sup.apply({"mod": spec})
            await status_where(sup, "mod", lambda s: s.state == "crash-loop", "crash-loop")

    run()
    logged = changes(caplog)
    exits = [fields for level, fields in logged if fields["to"] == "exited"]
    assert exits and all(
        (level, fields["exit_code"]) == (logging.WARNING, 3)
        for level, fields in logged
        if fields["to"] == "exited"
    )
    [(level, loop)] = [(lv, f) for lv, f in logged if f["to"] == "crash-loop"]
    assert level == logging.ERROR
    assert loop == {
        "module": "mod",
        "version": "1.0.0",
        "from": "starting",  # the third exit, of a started process
        "to": "crash-loop",
        "exit_code": 3,
        "error": "exited with code 3",
    }
    # Starting again is routine news.
    assert {lv for lv, f in logged if f["to"] == "starting"} == {logging.INFO}


def test_an_unhealthy_module_is_a_warning_and_its_recovery_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fogline.agent.supervisor")
    port = free_port()

    @async_test
    async def run() -> None:
        url = f"http://127.0.0.1:{port}/healthz"
        check = HealthCheck("http", url, timeout_s=1.0, interval_s=0.05)
        spec = python_module(
            tmp_path / "w", HTTP_MODULE, args=(str(port),), health=check, start_grace_s=0.5
        )
        sup = supervisor(tmp_path)
        async with supervising(sup):
            await sup.apply({"mod": spec})
            assert await sup.wait_healthy("mod", 10.0)
            (tmp_path / "w" / "unhealthy").touch()
            await status_where(sup, "mod", lambda s: s.state == "unhealthy", "unhealthy")
            (tmp_path / "w" / "unhealthy").unlink()
            await status_where(sup, "mod", lambda s: s.state == "healthy", "healthy again")

    run()
    logged = [(level, f["from"], f["to"], f.get("error")) for level, f in changes(caplog)]
    sick = f"unhealthy: GET http://127.0.0.1:{port}/healthz: HTTP 503"
    assert (logging.WARNING, "healthy", "unhealthy", sick) in logged
    assert (logging.INFO, "unhealthy", "healthy", None) in logged
    # The clean stop at the end is info, like the start.
    assert logged[-1][:3] == (logging.INFO, "healthy", "stopped")
    assert not [entry for entry in logged if entry[0] >= logging.ERROR]
