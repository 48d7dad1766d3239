"""Helpers for the supervisor tests: fast specs, module scripts, a running supervisor."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ParamSpec

from fogline.agent.supervisor import (
    HealthCheck,
    ModuleStatus,
    Resources,
    RestartPolicy,
    RunSpec,
    Supervisor,
)
from tests.support.processes import wait_until_async

P = ParamSpec("P")


def async_test(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test function in a fresh event loop (no pytest plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def write_script(directory: Path, name: str, code: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(code))
    return path


def make_spec(
    name: str,
    workdir: Path,
    command: tuple[str, ...] = (sys.executable, "-c", "import time; time.sleep(60)"),
    *,
    version: str = "1.0.0",
    health: HealthCheck | None = None,
    start_grace_s: float = 0.1,
    stop_grace_s: float = 1.0,
    policy: str = "always",
    initial_backoff_s: float = 0.05,
    max_backoff_s: float = 0.2,
    env: dict[str, str] | None = None,
    config_path: Path | None = None,
    resources: Resources | None = None,
) -> RunSpec:
    workdir.mkdir(parents=True, exist_ok=True)
    return RunSpec(
        name=name,
        version=version,
        workdir=workdir,
        command=command,
        env=env or {},
        config_path=config_path,
        health=health,
        start_grace_s=start_grace_s,
        stop_grace_s=stop_grace_s,
        restart=RestartPolicy(policy, initial_backoff_s, max_backoff_s),  # type: ignore[arg-type]
        resources=resources or Resources(),
    )


def python_module(
    workdir: Path, code: str, *, args: tuple[str, ...] = (), name: str = "mod", **kwargs: Any
) -> RunSpec:
    """A spec running `code` (written to workdir/main.py) with this interpreter."""
    script = write_script(workdir, "main.py", code)
    return make_spec(name, workdir, (sys.executable, str(script), *args), **kwargs)


@asynccontextmanager
async def supervising(supervisor: Supervisor) -> AsyncIterator[asyncio.Task[None]]:
    """Run `supervisor.run()` for the block, then cancel it (which stops every module)."""
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(supervisor.run(), name="supervisor")
        while not supervisor.is_running:  # so apply() converges at once
            await asyncio.sleep(0)
        try:
            yield task
        finally:
            task.cancel()


async def status_where(
    supervisor: Supervisor,
    name: str,
    check: Callable[[ModuleStatus], bool],
    what: str,
    timeout_s: float = 5.0,
) -> ModuleStatus:
    def current() -> ModuleStatus | None:
        status = supervisor.statuses().get(name)
        return status if status is not None and check(status) else None

    try:
        result: ModuleStatus = await wait_until_async(current, timeout_s, what, 0.01)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status now: {supervisor.statuses().get(name)}") from None
    return result


def is_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - reused by another user's process
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def timed(awaitable: Awaitable[Any]) -> float:
    started = time.monotonic()
    await awaitable
    return time.monotonic() - started
