"""What an update costs the node: a download is hashed once per update
(VERIFY trusts the digest DOWNLOAD computed in the same process, and hashes
the file again only after a restart, when a power cut may have come in
between), and the state files are saved off the event loop."""

import asyncio
import os
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import fogline.agent.updater._download as download_module
import fogline.agent.updater._engine as engine_module
from fogline.agent.updater import State
from fogline.agent.updater._journal import StateFiles

from ._support import NAME, Node, Release


class Crash(BaseException):
    """Stands in for a kill: nothing catches it."""


def count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file the updater hashes, in order (DOWNLOAD's and VERIFY's)."""
    hashed: list[Path] = []
    real = engine_module.sha256_file

    def counting(path: Path) -> str:
        hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(engine_module, "sha256_file", counting)
    monkeypatch.setattr(download_module, "sha256_file", counting)
    return hashed


def crash_at(point: str) -> Callable[[str], None]:
    def hook(reached: str) -> None:
        if reached == point:
            raise Crash(point)

    return hook


def crash_before_verify(node: Node, release: Release) -> None:
    """An update that stopped (the process died) once its download was named."""
    node.crash_hook = crash_at("enter:VERIFY")
    with pytest.raises(Crash):
        asyncio.run(node.updater().ensure(release.target))
    node.crash_hook = None


def test_an_update_hashes_the_archive_once(
    node: Node, releases: dict[str, Release], monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed = count_hashes(monkeypatch)
    v1 = releases["1.0.0"]
    assert asyncio.run(node.updater().ensure(v1.target)).ok
    assert hashed == [node.root / "downloads" / f"{v1.target.digest}.partial"]
    assert node.activator.running == {NAME: "1.0.0"}


def test_after_a_restart_verify_hashes_the_archive_on_disk_and_refuses_rot(
    node: Node, releases: dict[str, Release], monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = releases["1.0.0"]
    crash_before_verify(node, v1)
    archive = node.root / "downloads" / f"{v1.target.digest}.tar.zst"
    # The disk changed the bytes while the agent was down: DOWNLOAD's digest
    # died with the process, so VERIFY must see the change.
    data = bytearray(archive.read_bytes())
    data[-1] ^= 0xFF
    archive.write_bytes(bytes(data))
    hashed = count_hashes(monkeypatch)

    results = asyncio.run(node.updater().recover())
    assert hashed == [archive]
    assert [r.state for r in results] == [State.FAILED]
    failure = node.updater().failure(NAME)
    assert failure is not None and failure.failed_in is State.VERIFY
    assert "digest mismatch" in failure.reason
    assert NAME not in node.activator.running


def test_after_a_restart_an_intact_archive_is_hashed_once_more_and_installed(
    node: Node, releases: dict[str, Release], monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = releases["1.0.0"]
    crash_before_verify(node, v1)
    hashed = count_hashes(monkeypatch)
    results = asyncio.run(node.updater().recover())
    assert [r.state for r in results] == [State.DONE]
    assert hashed == [node.root / "downloads" / f"{v1.target.digest}.tar.zst"]
    assert node.activator.running == {NAME: "1.0.0"}


def test_state_files_are_saved_off_the_event_loop(
    node: Node, releases: dict[str, Release], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each save is a write, a rename and two fsyncs: on the loop's thread it
    # stalls everything else the agent does for as long as the disk takes.
    threads: dict[str, set[int]] = {}
    for name in ("save_journal", "save_installed"):
        real = getattr(StateFiles, name)

        def recording(self: StateFiles, *args: Any, _real: Any = real, _name: str = name,
                      **kwargs: Any) -> Any:  # fmt: skip
            threads.setdefault(_name, set()).add(threading.get_ident())
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(StateFiles, name, recording)

    async def update() -> int:
        assert (await node.updater().ensure(releases["1.0.0"].target)).ok
        return threading.get_ident()

    loop_thread = asyncio.run(update())
    assert set(threads) == {"save_journal", "save_installed"}
    assert loop_thread not in threads["save_journal"] | threads["save_installed"]


def test_no_fsync_runs_on_the_event_loop(
    node: Node, releases: dict[str, Release], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An fsync takes as long as the disk: tens of milliseconds on a node's
    flash, more for a 5 MB archive. On the loop's thread it would stall the
    data plane's local actions (and, in the simulator, every device sharing
    the loop) for that long. Checked over an install, an update, a rollback
    and a restart's recovery."""
    loop_threads: set[int] = set()
    on_loop: list[str] = []
    off_loop: list[int] = []
    real_fsync = os.fsync

    def recording(fd: int) -> None:
        if threading.get_ident() in loop_threads:
            on_loop.append("".join(traceback.format_stack(limit=4)[:-1]))
        else:
            off_loop.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)

    async def on_the_loop(step: Callable[[], Any]) -> Any:
        loop_threads.add(threading.get_ident())
        return await step()

    up = node.updater()
    assert asyncio.run(on_the_loop(lambda: up.ensure(releases["1.0.0"].target))).ok
    assert asyncio.run(on_the_loop(lambda: up.ensure(releases["2.0.0"].target))).ok
    rolled_back = asyncio.run(on_the_loop(lambda: up.ensure(releases["3.0.0"].target)))
    assert not rolled_back.ok and rolled_back.failed_in is State.HEALTH
    assert node.activator.running == {NAME: "2.0.0"}
    asyncio.run(on_the_loop(lambda: node.updater().recover()))
    assert on_loop == [], "fsync on the event loop's thread:\n" + "\n".join(on_loop)
    assert len(off_loop) > 20  # the durable writes happened, in worker threads
