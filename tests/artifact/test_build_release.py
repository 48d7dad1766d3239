"""build_release: reproducible archives, and directories it refuses to pack."""

import io
import os
import shutil
import socket
import tarfile
from pathlib import Path

import pytest
import zstandard

from fogline.artifact import (
    MAX_PATH_DEPTH,
    ModuleSpecError,
    UnsafeArchiveError,
    Version,
    build_release,
    sha256_file,
)
from tests.support.deep import deep_tree

from ._support import make_module


def _members(archive: Path) -> list[tarfile.TarInfo]:
    data = zstandard.ZstdDecompressor().stream_reader(archive.read_bytes()).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def _copy_differently(src: Path, dst: Path, *, mtime: int, uid: int) -> None:
    """Copy `src` creating entries in reverse order, with other times, owners and modes."""
    dst.mkdir()
    paths = sorted(src.rglob("*"), key=lambda p: len(p.parts))
    for path in reversed(paths):
        (dst / path.relative_to(src).parent).mkdir(parents=True, exist_ok=True)
    for path in reversed(paths):
        target = dst / path.relative_to(src)
        if path.is_symlink():
            target.symlink_to(path.readlink())
        elif path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            shutil.copyfile(path, target)
            # Group/other bits differ between umasks; only "executable" counts.
            target.chmod(0o750 if os.access(path, os.X_OK) else 0o600)
    for path in dst.rglob("*"):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
        if os.geteuid() == 0:
            os.lchown(path, uid, uid)


def test_build_reports_name_version_digest_and_size(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    info = build_release(src, tmp_path / "out.tar.zst")
    assert (info.name, info.version) == ("thermo-filter", Version(1, 2, 0))
    assert info.digest == sha256_file(tmp_path / "out.tar.zst")
    assert info.size == (tmp_path / "out.tar.zst").stat().st_size
    assert info.path == tmp_path / "out.tar.zst"


def test_archive_entries_are_sorted_and_normalized(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    (src / "server.py").chmod(0o600)
    members = _members(build_release(src, tmp_path / "out.tar.zst").path)
    assert [m.name for m in members] == [
        "fogline-module.yaml",
        "fogline-sbom.cdx.json",  # second: the SBOM the signature covers
        "bin",
        "bin/run.sh",
        "current",
        "data",
        "data/empty",
        "data/model.onnx",
        "server.py",
    ]
    assert all((m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "") for m in members)
    modes = {m.name: (m.type, m.mode) for m in members}
    assert modes["bin/run.sh"] == (tarfile.REGTYPE, 0o755)
    assert modes["server.py"] == (tarfile.REGTYPE, 0o644)
    assert modes["data"] == (tarfile.DIRTYPE, 0o755)
    assert modes["current"][0] == tarfile.SYMTYPE
    assert {m.name: m.linkname for m in members}["current"] == "bin/run.sh"


def test_the_module_file_is_packed_first_as_validated_and_0644(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    (src / "fogline-module.yaml").chmod(0o755)
    first = _members(build_release(src, tmp_path / "out.tar.zst").path)[0]
    assert (first.name, first.mode, first.size) == (
        "fogline-module.yaml",
        0o644,
        (src / "fogline-module.yaml").stat().st_size,
    )


def test_same_contents_give_the_same_bytes(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    _copy_differently(src, tmp_path / "copy1", mtime=1_000_000, uid=1234)
    _copy_differently(src, tmp_path / "copy2", mtime=2_000_000_000, uid=4321)
    first = build_release(src, tmp_path / "a.tar.zst")
    second = build_release(tmp_path / "copy1", tmp_path / "b.tar.zst")
    third = build_release(tmp_path / "copy2", tmp_path / "c.tar.zst")
    assert first.digest == second.digest == third.digest
    assert (tmp_path / "a.tar.zst").read_bytes() == (tmp_path / "c.tar.zst").read_bytes()


def test_a_content_change_changes_the_digest(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    before = build_release(src, tmp_path / "a.tar.zst").digest
    (src / "bin" / "run.sh").chmod(0o644)  # only the executable bit
    assert build_release(src, tmp_path / "b.tar.zst").digest != before


def test_rebuilding_replaces_the_output(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    out = tmp_path / "out.tar.zst"
    out.write_bytes(b"old")
    info = build_release(src, out)
    assert sha256_file(out) == info.digest


def _assert_refused(src: Path, out: Path, reason: str) -> UnsafeArchiveError:
    with pytest.raises(UnsafeArchiveError) as caught:
        build_release(src, out)
    assert reason in str(caught.value)
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []
    return caught.value


@pytest.mark.parametrize(
    ("link", "target"),
    [("passwd", "/etc/passwd"), ("up", "../../outside"), ("bin/up", "../../x")],
)
def test_refuses_symlinks_leaving_the_directory(tmp_path: Path, link: str, target: str) -> None:
    src = make_module(tmp_path / "mod")
    (src / link).symlink_to(target)
    error = _assert_refused(src, tmp_path / "out.tar.zst", "symlink")
    assert error.member == link


def test_refuses_a_symlink_chain_that_escapes(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    (src / "a").symlink_to(".")
    (src / "b").symlink_to("a/..")  # each looks inside; together they reach the parent
    error = _assert_refused(src, tmp_path / "out.tar.zst", "resolves outside")
    assert error.member == "b"


def test_refuses_a_fifo(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    os.mkfifo(src / "data" / "pipe")
    error = _assert_refused(src, tmp_path / "out.tar.zst", "FIFO")
    assert error.member == "data/pipe"


def test_refuses_a_socket(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(src / "control.sock"))
        _assert_refused(src, tmp_path / "out.tar.zst", "socket")


def test_refuses_a_device_file(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    try:
        os.mknod(src / "null", 0o600 | 0o020000, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating device nodes needs CAP_MKNOD")
    _assert_refused(src, tmp_path / "out.tar.zst", "character device")


def test_refuses_names_that_are_not_utf8(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    (Path(os.fsdecode(bytes(src) + b"/caf\xe9"))).write_text("latin-1 name")
    _assert_refused(src, tmp_path / "out.tar.zst", "UTF-8")


def test_refuses_a_symlinked_module_file(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    (src / "fogline-module.yaml").rename(tmp_path / "real.yaml")
    (src / "fogline-module.yaml").symlink_to(tmp_path / "real.yaml")
    _assert_refused(src, tmp_path / "out.tar.zst", "not a symlink")


def test_refuses_an_output_inside_the_module(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod")
    with pytest.raises(UnsafeArchiveError, match="must not be inside"):
        build_release(src, src / "out.tar.zst")


def test_validates_the_module_file_before_writing(tmp_path: Path) -> None:
    src = make_module(tmp_path / "mod", spec="name: Bad\n")
    with pytest.raises(ModuleSpecError) as caught:
        build_release(src, tmp_path / "out.tar.zst")
    assert caught.value.source == str(src / "fogline-module.yaml")
    assert not (tmp_path / "out.tar.zst").exists()


def test_a_directory_without_module_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModuleSpecError, match="cannot read"):
        build_release(tmp_path / "empty", tmp_path / "out.tar.zst")


def test_refuses_a_tree_deeper_than_unpack_accepts(tmp_path: Path) -> None:
    # 5,000 levels made directly on disk: refused at level MAX_PATH_DEPTH + 1,
    # with the reason, never walked all the way down.
    src = make_module(tmp_path / "mod")
    with deep_tree(src / "deep", 5000, files_every=1000):
        error = _assert_refused(src, tmp_path / "out.tar.zst", f"deeper than {MAX_PATH_DEPTH}")
    assert error.member == "/".join(["deep", *["d"] * MAX_PATH_DEPTH])


def test_an_agent_release_must_hold_the_fogline_package(tmp_path: Path) -> None:
    src = tmp_path / "agent"
    (src / "fogline").mkdir(parents=True)
    (src / "fogline-module.yaml").write_text(
        "name: fogline-agent\nversion: 0.2.0\nkind: agent\narchitectures: [any]\n"
    )
    (src / "fogline" / "__init__.py").write_text('__version__ = "0.2.0"\n')
    with pytest.raises(ModuleSpecError, match=r"fogline/__main__\.py"):
        build_release(src, tmp_path / "agent.tar.zst")
    assert not (tmp_path / "agent.tar.zst").exists()
    (src / "fogline" / "__main__.py").write_text("")
    info = build_release(src, tmp_path / "agent.tar.zst")
    assert (info.name, str(info.version)) == ("fogline-agent", "0.2.0")
