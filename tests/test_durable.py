"""fogline._durable: the one way Fogline writes a file that must survive a power cut."""

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fogline import _durable
from fogline._durable import atomic_output, publish, write_all, write_atomic, write_new


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state" / "desired.json"
    write_atomic(path, b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert _leftovers(path.parent) == []


def test_a_key_is_0600_from_its_first_byte(tmp_path: Path, umask_022: None) -> None:
    modes: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # the temporary file, before it has its name
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            modes.append(stat.S_IMODE(info.st_mode))
        real_fsync(fd)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fsync", fsync)
        write_atomic(tmp_path / "key.pem", b"secret", mode=0o600)
    assert modes == [0o600]
    assert _mode(tmp_path / "key.pem") == 0o600


def test_the_mode_is_masked_by_the_umask_unless_a_group_is_given(
    tmp_path: Path, umask_022: None
) -> None:
    write_atomic(tmp_path / "a", b"x", mode=0o660)
    assert _mode(tmp_path / "a") == 0o640  # like open(2)
    write_atomic(tmp_path / "b", b"x", mode=0o660, group=os.getgid())
    assert _mode(tmp_path / "b") == 0o660  # exactly, for the group that must read it
    assert (tmp_path / "b").stat().st_gid == os.getgid()


def test_a_short_write_is_continued_until_every_byte_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    calls = 0

    def dribble(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        return real_write(fd, bytes(data[:7]))  # as a signal or a quota may cut a write short

    monkeypatch.setattr(os, "write", dribble)
    data = bytes(range(256)) * 40
    write_atomic(tmp_path / "journal.json", data)
    assert (tmp_path / "journal.json").read_bytes() == data
    assert calls == -(-len(data) // 7)


def test_write_all_writes_everything_to_a_pipe_that_takes_little_at_a_time() -> None:
    read_end, write_end = os.pipe()
    data = os.urandom(1 << 20)  # far more than a pipe buffer: writes come back short
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        write_all(write_end, data)
    finally:
        os.close(write_end)
        reader.join(timeout=30)
        os.close(read_end)
    assert bytes(received) == data


def test_a_failed_write_removes_its_temporary_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "installed.json"
    write_atomic(path, b"old")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_the_bytes_are_synced_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        steps.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomic(tmp_path / "a", b"x")
    assert steps == ["fsync file", "rename", "fsync dir"]
    steps.clear()
    with atomic_output(tmp_path / "b") as fh:
        fh.write(b"streamed")
    assert steps == ["fsync file", "rename", "fsync dir"]
    steps.clear()
    (tmp_path / "c.partial").write_bytes(b"downloaded")
    publish(tmp_path / "c.partial", tmp_path / "c")
    assert steps == ["fsync file", "rename", "fsync dir"]
    assert (tmp_path / "c").read_bytes() == b"downloaded"


@pytest.mark.parametrize("planted", [".desired.json.tmp", "desired.json.tmp"])
def test_a_link_planted_at_a_temporary_name_is_never_written_through(
    tmp_path: Path, planted: str
) -> None:
    # A fixed temporary name opened without O_EXCL|O_NOFOLLOW writes through
    # whatever sits there: a link left by someone else redirects the write.
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    state = tmp_path / "state"
    state.mkdir()
    (state / planted).symlink_to(victim)
    write_atomic(state / "desired.json", b"{}")
    assert victim.read_bytes() == b"untouched"
    assert (state / "desired.json").read_bytes() == b"{}"


def test_concurrent_writers_never_share_a_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    payloads = [bytes([65 + i]) * 200_000 for i in range(8)]
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        try:
            for _ in range(5):
                write_atomic(path, data)
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert path.read_bytes() in payloads  # one writer's bytes, whole
    assert _leftovers(tmp_path) == []


def test_write_new_creates_but_never_replaces(tmp_path: Path, umask_022: None) -> None:
    key = tmp_path / "release.key"
    write_new(key, b"first", mode=0o600)
    assert key.read_bytes() == b"first" and _mode(key) == 0o600
    with pytest.raises(FileExistsError):
        write_new(key, b"second", mode=0o600)
    assert key.read_bytes() == b"first"
    dangling = tmp_path / "dangling.pub"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        write_new(dangling, b"x")
    assert not (tmp_path / "nowhere").exists()
    assert _leftovers(tmp_path) == []


def test_an_error_while_streaming_leaves_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "release.tar.zst"
    out.write_bytes(b"old archive")
    with pytest.raises(RuntimeError), atomic_output(out) as fh:
        fh.write(b"half of a new one")
        raise RuntimeError("the build failed")
    assert out.read_bytes() == b"old archive"
    assert _leftovers(tmp_path) == []


def test_the_temporary_name_is_hidden_unique_and_beside_the_target(tmp_path: Path) -> None:
    names = {_durable._temp_path(tmp_path / "a.json") for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.parent == tmp_path
        assert name.name.startswith(".a.json.") and name.name.endswith(".tmp")


def test_make_dirs_fsyncs_the_parent_of_every_directory_it_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    synced: list[Path] = []
    monkeypatch.setattr(_durable, "fsync_dir", lambda path: synced.append(Path(path)))
    _durable.make_dirs(tmp_path / "data" / "state" / "demo", mode=0o700)
    assert (tmp_path / "data" / "state" / "demo").is_dir()
    assert _mode(tmp_path / "data" / "state") == 0o700
    assert synced == [tmp_path / "data", tmp_path / "data" / "state"]
    synced.clear()
    _durable.make_dirs(tmp_path / "data" / "state")  # there already: nothing to do
    assert synced == []


def test_make_dirs_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "state").write_bytes(b"")
    with pytest.raises(FileExistsError):
        _durable.make_dirs(tmp_path / "state" / "demo")
