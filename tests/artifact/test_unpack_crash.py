"""A failure or a crash mid-unpack never leaves a half-installed destination."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fogline.artifact import (
    UnsafeArchiveError,
    _unpack,
    build_release,
    find_unpack_leftovers,
    unpack_release,
)

from ._support import make_module, member, spec_member, write_archive

LIMITS = {"max_bytes": 10 << 20, "max_files": 100}


def _fail_on_file(monkeypatch: pytest.MonkeyPatch, number: int, error: BaseException) -> None:
    """Make the `number`-th file write raise `error`, after the earlier ones succeeded."""
    original = _unpack._Tree._add_file
    calls = 0

    def add_file(self: _unpack._Tree, *args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == number:
            raise error
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_unpack._Tree, "_add_file", add_file)


@pytest.mark.parametrize(
    "error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()]
)
def test_an_error_mid_unpack_leaves_neither_dest_nor_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    archive = build_release(make_module(tmp_path / "mod"), tmp_path / "r.tar.zst").path
    (tmp_path / "nodes").mkdir()
    _fail_on_file(monkeypatch, 3, error)
    with pytest.raises(type(error)):
        unpack_release(archive, tmp_path / "nodes" / "thermo-filter", **LIMITS)
    assert list((tmp_path / "nodes").iterdir()) == []


def test_a_hostile_entry_after_good_ones_leaves_nothing(tmp_path: Path) -> None:
    archive = write_archive(
        tmp_path / "r.tar.zst",
        [spec_member(), member("ok/a", b"1" * 1000), member("ok/b", b"2"), member("../x", b"3")],
    )
    (tmp_path / "nodes").mkdir()
    with pytest.raises(UnsafeArchiveError, match="path traversal"):
        unpack_release(archive, tmp_path / "nodes" / "demo", **LIMITS)
    assert list((tmp_path / "nodes").iterdir()) == []
    assert not (tmp_path / "x").exists()


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from fogline.artifact import _unpack

    original = _unpack._Tree._add_file
    calls = 0

    def slow_add_file(self, *args, **kwargs):
        global calls
        calls += 1
        if calls == 3:
            print("mid-unpack", flush=True)
            time.sleep(60)  # killed here
        original(self, *args, **kwargs)

    _unpack._Tree._add_file = slow_add_file
    _unpack.unpack_release(
        Path(sys.argv[1]), Path(sys.argv[2]), max_bytes=10 << 20, max_files=100
    )
    """
)


def test_a_killed_unpack_leaves_no_dest_and_a_findable_leftover(tmp_path: Path) -> None:
    archive = build_release(make_module(tmp_path / "mod"), tmp_path / "r.tar.zst").path
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    dest = nodes / "thermo-filter"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(archive), str(dest)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "mid-unpack"
        os.kill(child.pid, signal.SIGKILL)  # a power cut, as far as the files know
    finally:
        child.wait(timeout=10)
        if child.stdout:
            child.stdout.close()

    assert not dest.exists()
    leftovers = find_unpack_leftovers(nodes)
    assert len(leftovers) == 1
    assert leftovers[0].name.startswith(".thermo-filter.unpack-")
    assert any(leftovers[0].iterdir())  # it really was mid-way

    # Recovery: sweep the leftover, unpack again.
    shutil.rmtree(leftovers[0])
    unpack_release(archive, dest, **LIMITS)
    assert (dest / "server.py").read_text() == "print('serving')\n"
    assert find_unpack_leftovers(nodes) == []
