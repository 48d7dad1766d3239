"""Module logs to the outbox: a module that leaves is drained, then let go
(its tasks end, its files close); one that comes back is not shipped twice."""

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import orjson

from fogline.agent._logship import DRAIN_MAX_S, MAX_POSITIONS, LogShipper
from fogline.agent.outbox import Outbox
from fogline.agent.supervisor import ProcessRuntime, RotatingLog, Supervisor, log_path
from tests.agent.supervisor._support import async_test, python_module
from tests.support.processes import wait_until_async


def _shipped(outbox: Outbox) -> list[tuple[str, str, str]]:
    """(module, stream, line) of every log record in the outbox, in order."""
    records = outbox.next_batch(max_records=100_000, max_bytes=1 << 30)
    lines = []
    for record in sorted(records, key=lambda r: r.seq):
        body = orjson.loads(record.payload)
        assert record.stream == f"logs/{body['module']}"
        lines.append((body["module"], body["stream"], body["line"]))
    return lines


def _lines_of(outbox: Outbox, module: str, stream: str = "stdout") -> list[str]:
    return [line for m, s, line in _shipped(outbox) if (m, s) == (module, stream)]


def _follower_tasks(module: str | None = None) -> list["asyncio.Task[object]"]:
    prefix = "logs:" if module is None else f"logs:{module}:"  # logs:MODULE:STREAM
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith(prefix) and not task.done()
    ]


def _open_files_under(directory: Path) -> list[str]:
    """What this process has open under `directory` (from /proc/self/fd)."""
    opened = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the fd of the listing itself, closed meanwhile
            continue
        if target.startswith(f"{directory}/"):
            opened.append(target)
    return opened


@asynccontextmanager
async def _shipping(
    tmp_path: Path,
    modules: Callable[[], Iterable[str]],
    *,
    drain_max_s: float = DRAIN_MAX_S,
    max_positions: int = MAX_POSITIONS,
) -> AsyncIterator[tuple[LogShipper, Outbox]]:
    outbox = Outbox.open(tmp_path / "outbox.db", max_bytes=64 * 1024 * 1024)
    shipper = LogShipper(
        tmp_path / "logs",
        outbox,
        modules,
        lambda: None,
        drain_max_s=drain_max_s,
        max_positions=max_positions,
    )
    task = asyncio.create_task(shipper.run(), name="log-shipper")
    try:
        yield shipper, outbox
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        outbox.close()


async def _until(check: Callable[[], object], what: str, timeout_s: float = 5.0) -> None:
    await wait_until_async(check, timeout_s, what, 0.05)


# A module that says which run it is, and says goodbye when stopped: its last
# lines are written after the supervisor's SIGTERM, the last one unfinished.
GOODBYE = """
    import pathlib, signal, sys, time
    runs = pathlib.Path("runs")
    run = len(runs.read_text()) + 1 if runs.exists() else 1
    runs.write_text("x" * run)
    print(f"hello {run}", flush=True)
    print(f"oops {run}", file=sys.stderr, flush=True)
    def bye(*_):
        print(f"bye {run}", flush=True)
        time.sleep(0.2)
        sys.stdout.write(f"last words {run}")
        sys.stdout.flush()
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    time.sleep(60)
"""


@async_test
async def test_a_removed_module_is_drained_let_go_and_resumed_without_repeats(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    sup = Supervisor(ProcessRuntime(), logs, min_stable_s=0.5)
    spec = python_module(tmp_path / "w", GOODBYE, name="mod", stop_grace_s=5.0)
    desired: dict[str, object] = {}
    # As the agent wires it: desired modules, and removed ones still stopping.
    async with (
        asyncio.TaskGroup() as tg,
        _shipping(tmp_path, lambda: [*desired, *sup.names()]) as (_, outbox),
    ):
        supervisor_task = tg.create_task(sup.run())
        while not sup.is_running:
            await asyncio.sleep(0)
        try:
            desired["mod"] = spec
            await sup.apply({"mod": spec})
            await _until(lambda: _lines_of(outbox, "mod") == ["hello 1"], "hello shipped")
            await _until(lambda: _lines_of(outbox, "mod", "stderr") == ["oops 1"], "oops shipped")
            assert len(_follower_tasks("mod")) == 2
            assert len(_open_files_under(logs)) == 4  # the supervisor's 2, the shipper's 2

            del desired["mod"]
            await sup.apply({})  # returns once the module has stopped
            await _until(lambda: not _follower_tasks("mod"), "followers of mod end")
            assert _open_files_under(logs) == []
            await _until(lambda: len(_lines_of(outbox, "mod")) == 3, "the last lines")
            assert _lines_of(outbox, "mod") == ["hello 1", "bye 1", "last words 1"]

            desired["mod"] = spec
            await sup.apply({"mod": spec})
            await _until(lambda: len(_lines_of(outbox, "mod")) >= 4, "the second run's line")
            await asyncio.sleep(1.0)  # two flushes: time for a repeat to show
            assert _lines_of(outbox, "mod") == ["hello 1", "bye 1", "last words 1", "hello 2"]
            assert _lines_of(outbox, "mod", "stderr") == ["oops 1", "oops 2"]
            assert len(_follower_tasks("mod")) == 2
        finally:
            supervisor_task.cancel()


@async_test
async def test_a_module_back_after_its_log_was_truncated_or_replaced_ships_the_new_content(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    path = log_path(logs, "mod", "stdout")
    present: set[str] = set()
    async with _shipping(tmp_path, lambda: present) as (shipper, outbox):
        log = RotatingLog(path, max_bytes=1 << 20, keep=2)
        log.write(b"a long first line\n")
        log.close()
        present.add("mod")
        await _until(lambda: _lines_of(outbox, "mod") == ["a long first line"], "first line")

        present.discard("mod")
        await _until(lambda: not _follower_tasks("mod"), "followers end")
        assert ("mod", "stdout") in shipper.positions
        with path.open("r+b") as file:  # truncated, then a shorter run
            file.truncate(0)
            file.write(b"short\n")
        present.add("mod")
        await _until(lambda: len(_lines_of(outbox, "mod")) == 2, "after truncation")
        assert _lines_of(outbox, "mod") == ["a long first line", "short"]

        present.discard("mod")
        await _until(lambda: not _follower_tasks("mod"), "followers end again")
        path.unlink()  # replaced by another file (it may get the same inode number)
        path.write_bytes(b"replaced\n")
        present.add("mod")
        await _until(lambda: len(_lines_of(outbox, "mod")) == 3, "after replacement")
        await asyncio.sleep(0.6)  # one more flush: nothing else comes
        assert _lines_of(outbox, "mod") == ["a long first line", "short", "replaced"]


@async_test
async def test_a_removed_module_that_keeps_writing_is_let_go_after_the_drain_bound(
    tmp_path: Path,
) -> None:
    path = log_path(tmp_path / "logs", "chatty", "stdout")
    log = RotatingLog(path, max_bytes=1 << 20, keep=2)
    present = {"chatty"}
    async with _shipping(tmp_path, lambda: present, drain_max_s=1.0) as (_, outbox):
        await _until(lambda: len(_follower_tasks("chatty")) == 2, "followers")
        present.clear()
        removed_at = time.monotonic()
        written = 0
        while _follower_tasks("chatty"):  # a stop that ignores the drain never ends
            assert time.monotonic() - removed_at < 8.0, "still following after 8 s"
            written += 1
            log.write(f"line {written}\n".encode())
            await asyncio.sleep(0.05)
        took = time.monotonic() - removed_at
        log.close()
        # The bound, plus (slack for a loaded machine) a flush and a poll.
        assert 1.0 <= took < 1.0 + 3.0, took
        assert DRAIN_MAX_S > 1.0  # the default leaves a slow module more time
        await asyncio.sleep(0.6)
        lines = _lines_of(outbox, "chatty")
        assert lines and lines == [f"line {i}" for i in range(1, len(lines) + 1)]


@async_test
async def test_a_module_back_while_one_stream_still_drains_has_both_followed(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    out = RotatingLog(log_path(logs, "mod", "stdout"), max_bytes=1 << 20, keep=2)
    err = RotatingLog(log_path(logs, "mod", "stderr"), max_bytes=1 << 20, keep=2)
    present = {"mod"}
    async with _shipping(tmp_path, lambda: present, drain_max_s=4.0) as (_, outbox):
        out.write(b"out 1\n")  # after the shipper started: new output, shipped
        await _until(lambda: _lines_of(outbox, "mod") == ["out 1"], "out 1")
        present.clear()
        written = 0

        def only_stderr_followed() -> bool:
            return [t.get_name() for t in _follower_tasks("mod")] == ["logs:mod:stderr"]

        while not only_stderr_followed():  # stdout is quiet: its drain ends first
            assert written < 60, "stdout's follower did not end while stderr drained"
            written += 1
            err.write(f"err {written}\n".encode())
            await asyncio.sleep(0.05)
        present.add("mod")  # back: stdout must be followed again, from where it was
        out.write(b"out 2\n")
        await _until(lambda: _lines_of(outbox, "mod") == ["out 1", "out 2"], "out 2")
        assert len(_follower_tasks("mod")) == 2
        await _until(lambda: len(_lines_of(outbox, "mod", "stderr")) == written, "stderr")
        assert _lines_of(outbox, "mod", "stderr") == [f"err {i}" for i in range(1, written + 1)]
    out.close()
    err.close()


@async_test
async def test_many_modules_coming_and_going_leave_no_tasks_files_or_unbounded_memory(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    present: set[str] = set()
    async with _shipping(tmp_path, lambda: present, max_positions=10) as (shipper, outbox):
        for wave in range(3):
            names = {f"m{wave}-{i}" for i in range(40)}
            for name in names:
                for stream in ("stdout", "stderr"):
                    log = RotatingLog(log_path(logs, name, stream), max_bytes=4096, keep=1)
                    log.write(f"{name} {stream}\n".encode())
                    log.close()
            present |= names
            await _until(lambda: len(_open_files_under(logs)) == 80, f"wave {wave} followed")
            assert len(_follower_tasks()) == 80
            present -= names
            await _until(lambda: not _follower_tasks(), f"wave {wave} let go")
            assert _open_files_under(logs) == []
            assert len(shipper.positions) == 10  # the newest ten streams
        await asyncio.sleep(0.6)
        shipped = _shipped(outbox)
        assert len(shipped) == len(set(shipped)) == 3 * 40 * 2
        assert all(line == f"{module} {stream}" for module, stream, line in shipped)
