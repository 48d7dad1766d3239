"""Module logs: bounded on disk whatever is written, readable as a tail, followable."""

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.agent.supervisor import (
    LogFollower,
    RotatingLog,
    follow_log,
    log_path,
    read_log_tail,
)

from ._support import async_test


def _files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + "*"))


@settings(max_examples=60, deadline=None)
@given(
    writes=st.lists(st.binary(min_size=0, max_size=300), max_size=30),
    max_bytes=st.integers(1, 100),
    keep=st.integers(1, 4),
)
def test_rotation_bounds_disk_and_keeps_the_newest_bytes_in_order(
    writes: list[bytes], max_bytes: int, keep: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = log_path(Path(tmp), "mod", "stdout")
        log = RotatingLog(path, max_bytes=max_bytes, keep=keep)
        for data in writes:
            log.write(data)
        log.close()
        files = _files(path)
        assert len(files) <= keep
        assert all(file.stat().st_size <= max_bytes for file in files)
        assert not path.with_name(f"stdout.log.{keep}").exists()
        everything = b"".join(writes)
        kept = read_log_tail(Path(tmp), "mod", "stdout", 16 * 1024 * 1024)
        assert len(kept) <= keep * max_bytes
        # Files are cut at exact multiples of max_bytes; the newest `keep` survive whole.
        chunks = -(-len(everything) // max_bytes)
        assert kept == everything[max(0, chunks - keep) * max_bytes :]


def test_a_reopened_log_continues_and_rotates_at_the_same_bound(tmp_path: Path) -> None:
    path = log_path(tmp_path, "mod", "stderr")
    first = RotatingLog(path, max_bytes=10, keep=3)
    first.write(b"0123456")
    first.close()
    second = RotatingLog(path, max_bytes=10, keep=3)  # the module restarted
    second.write(b"789abcdef")
    second.close()
    assert path.with_name("stderr.log.1").read_bytes() == b"0123456789"
    assert path.read_bytes() == b"abcdef"
    assert read_log_tail(tmp_path, "mod", "stderr", 8) == b"89abcdef"
    assert read_log_tail(tmp_path, "mod", "stderr", 0) == b""


def test_a_vanished_disk_drops_output_instead_of_raising(tmp_path: Path) -> None:
    path = log_path(tmp_path, "mod", "stdout")
    log = RotatingLog(path, max_bytes=100, keep=2)
    shutil.rmtree(path.parent)
    log.write(b"lost line\n")
    log.write(b"lost again\n")
    assert log.dropped_bytes == len(b"lost line\n") + len(b"lost again\n")


def test_tail_of_a_module_that_never_wrote_is_empty(tmp_path: Path) -> None:
    assert read_log_tail(tmp_path, "quiet", "stdout", 100) == b""


@pytest.mark.parametrize(
    ("module", "stream", "max_bytes", "message"),
    [
        ("../etc", "stdout", 10, "module name"),
        ("a/b", "stdout", 10, "module name"),
        ("mod", "stdin", 10, "stream"),
        ("mod", "../x", 10, "stream"),
        ("mod", "stdout", -1, "max_bytes"),
        ("mod", "stdout", 1 << 30, "max_bytes"),
    ],
)
def test_hostile_tail_requests_are_refused(
    tmp_path: Path, module: str, stream: str, max_bytes: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        read_log_tail(tmp_path, module, stream, max_bytes)  # type: ignore[arg-type]


def test_bad_rotation_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        RotatingLog(tmp_path / "x.log", max_bytes=0, keep=1)
    with pytest.raises(ValueError, match="keep"):
        RotatingLog(tmp_path / "x.log", max_bytes=1, keep=0)


@async_test
async def test_follow_yields_the_tail_then_new_output_across_rotation(tmp_path: Path) -> None:
    path = log_path(tmp_path, "mod", "stdout")
    log = RotatingLog(path, max_bytes=16, keep=3)
    log.write(b"old-old-old\n")
    received = bytearray()
    follower = follow_log(tmp_path, "mod", "stdout", tail_bytes=4, poll_s=0.01)
    received += await anext(follower)
    assert received == b"old\n"
    # Enough to rotate twice while the follower reads.
    lines = [f"line {i:02d}\n".encode() for i in range(6)]
    for line in lines:
        log.write(line)
        await asyncio.sleep(0.03)
    async with asyncio.timeout(3):
        while not received.endswith(lines[-1]):
            received += await anext(follower)
    await follower.aclose()
    log.close()
    assert bytes(received) == b"old\n" + b"".join(lines)


@async_test
async def test_follow_waits_for_a_log_that_does_not_exist_yet(tmp_path: Path) -> None:
    follower = follow_log(tmp_path, "late", "stderr", poll_s=0.01)
    pending = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0.05)  # five polls: a window in which a wrong answer would show
    assert not pending.done()
    log = RotatingLog(log_path(tmp_path, "late", "stderr"), max_bytes=100, keep=2)
    log.write(b"hello\n")
    log.close()
    async with asyncio.timeout(3):
        assert await pending == b"hello\n"
    await follower.aclose()


@async_test
async def test_follow_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="poll_s"):
        await anext(follow_log(tmp_path, "mod", "stdout", poll_s=0))
    with pytest.raises(ValueError, match="module name"):
        await anext(follow_log(tmp_path, "../x", "stdout"))


def _read_all(follower: LogFollower) -> bytes:
    out = bytearray()
    while chunk := follower.read():
        out += chunk
    return bytes(out)


def test_a_follower_resumes_where_an_earlier_one_stopped(tmp_path: Path) -> None:
    log = RotatingLog(log_path(tmp_path, "mod", "stdout"), max_bytes=1000, keep=2)
    log.write(b"one\n")
    first = LogFollower(tmp_path, "mod", "stdout", tail_bytes=100)
    assert _read_all(first) == b"one\n"
    log.write(b"two\n")
    assert _read_all(first) == b"two\n"
    position = first.position()
    first.close()
    assert position is not None and position.offset == 8 and position.before == b"one\ntwo\n"
    log.write(b"three\n")  # written while nobody followed
    second = LogFollower(tmp_path, "mod", "stdout", tail_bytes=100, resume=position)
    assert _read_all(second) == b"three\n"  # not one, two again, nor lost
    second.close()
    log.close()


def test_a_follower_resumes_in_the_rotated_file_then_reads_the_new_one(tmp_path: Path) -> None:
    log = RotatingLog(log_path(tmp_path, "mod", "stdout"), max_bytes=10, keep=3)
    log.write(b"aaaa\n")
    first = LogFollower(tmp_path, "mod", "stdout", tail_bytes=100)
    assert _read_all(first) == b"aaaa\n"
    position = first.position()
    first.close()
    log.write(b"bbbb\ncccc\n")  # fills the file and rotates it: ours is now .log.1
    second = LogFollower(tmp_path, "mod", "stdout", tail_bytes=100, resume=position)
    assert _read_all(second) == b"bbbb\ncccc\n"
    second.close()
    log.close()


def test_a_truncated_or_replaced_log_is_followed_afresh(tmp_path: Path) -> None:
    path = log_path(tmp_path, "mod", "stdout")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"first run, long line\n")
    first = LogFollower(tmp_path, "mod", "stdout", tail_bytes=0)
    path.write_bytes(b"first run, long line\nmore\n")
    assert _read_all(first) == b"more\n"
    position = first.position()
    first.close()
    assert position is not None
    # Truncated and rewritten shorter than where we were: the same inode.
    with path.open("r+b") as file:
        file.truncate(0)
        file.write(b"short\n")
    assert os.stat(path).st_ino == position.inode
    fresh = LogFollower(tmp_path, "mod", "stdout", tail_bytes=100, resume=position)
    assert _read_all(fresh) == b"short\n"
    fresh.close()
    # Rewritten in place as long as before, other bytes: same inode, same
    # size, so only the bytes before our offset tell it is not ours.
    with path.open("r+b") as file:
        file.truncate(0)
        file.write(b"X" * position.offset + b"new\n")
    assert os.stat(path).st_ino == position.inode
    replaced = LogFollower(tmp_path, "mod", "stdout", tail_bytes=100, resume=position)
    assert _read_all(replaced) == b"X" * position.offset + b"new\n"
    replaced.close()
    # Deleted and written anew: a new file, whatever inode number it got.
    path.unlink()
    path.write_bytes(b"another file\n")
    again = LogFollower(tmp_path, "mod", "stdout", tail_bytes=100, resume=position)
    assert _read_all(again) == b"another file\n"
    again.close()


def test_a_follower_of_a_stream_never_written_has_no_position(tmp_path: Path) -> None:
    follower = LogFollower(tmp_path, "quiet", "stderr", tail_bytes=100)
    assert follower.read() == b"" and follower.position() is None
    log = RotatingLog(log_path(tmp_path, "quiet", "stderr"), max_bytes=100, keep=1)
    log.write(b"late\n")
    log.close()
    assert _read_all(follower) == b"late\n"
    position = follower.position()
    assert position is not None and position.offset == 5
    follower.close()
    follower.close()  # closing twice is harmless
