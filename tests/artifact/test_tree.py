"""walk_tree and delete_tree: any depth, no recursion, never through a symlink.

The trees are 5,000 levels deep, made directly on disk: deeper than
shutil.rmtree and os.walk survive on Python 3.11 (RecursionError), and with
paths longer than PATH_MAX.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

from fogline.artifact import delete_tree, walk_tree
from tests.support.deep import deep_tree

DEPTH = 5000


def test_the_tree_is_too_deep_for_the_standard_library(tmp_path: Path) -> None:
    # The premise of this module: if a future Python walks iteratively, these
    # tests still pass, and this one says the helpers are no longer needed.
    with deep_tree(tmp_path / "t", DEPTH, files_every=1000) as tree:
        if sys.version_info < (3, 12):
            with pytest.raises(RecursionError):
                list(os.walk(tree))
            with pytest.raises((RecursionError, OSError)):
                shutil.rmtree(tree)


def test_delete_tree_removes_a_5000_level_tree(tmp_path: Path) -> None:
    with deep_tree(tmp_path / "t", DEPTH, files_every=7) as tree:
        delete_tree(tree)
        assert list(tmp_path.iterdir()) == []


def test_walk_tree_visits_every_level_of_a_5000_level_tree(tmp_path: Path) -> None:
    with deep_tree(tmp_path / "t", DEPTH, files_every=1000) as tree:
        entries = list(walk_tree(tree))
    dirs = [e for e in entries if e.kind == "dir"]
    files = [e for e in entries if e.kind == "file"]
    links = [e for e in entries if e.kind == "symlink"]
    assert len(dirs) == DEPTH
    assert len(files) == DEPTH // 1000
    assert [e.parts for e in links] == [("l",)]
    assert files[-1].parts == ("d",) * 4000 + ("f",)


def test_walk_tree_lets_the_caller_read_each_file_relative_to_its_directory(
    tmp_path: Path,
) -> None:
    contents = []
    with deep_tree(tmp_path / "t", DEPTH, files_every=2500) as tree:
        for entry in walk_tree(tree):
            if entry.kind == "file":
                fd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=entry.dir_fd)
                with os.fdopen(fd, "rb") as fh:
                    contents.append(fh.read())
    assert contents == [b"level 0\n", b"level 2500\n"]


def test_walk_tree_orders_entries_and_puts_directories_first(tmp_path: Path) -> None:
    for path in ("b/z", "b/a", "a"):
        (tmp_path / "t" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "t" / path).write_text(path)
    assert [e.parts for e in walk_tree(tmp_path / "t")] == [
        ("a",),
        ("b",),
        ("b", "a"),
        ("b", "z"),
    ]


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    tree = tmp_path / "t"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "escape").symlink_to(outside)
    (tree / "root-link").symlink_to("/")
    walked = {e.parts: e.kind for e in walk_tree(tree)}
    assert walked == {
        ("root-link",): "symlink",
        ("sub",): "dir",
        ("sub", "escape"): "symlink",
    }
    delete_tree(tree)
    assert not tree.exists()
    assert (outside / "precious").read_text() == "keep me"


def test_delete_tree_of_a_symlink_removes_only_the_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "link").symlink_to("real")
    delete_tree(tmp_path / "link")
    assert not os.path.lexists(tmp_path / "link")
    assert (tmp_path / "real" / "f").read_text() == "x"


def test_delete_tree_of_a_missing_path_is_a_no_op(tmp_path: Path) -> None:
    delete_tree(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    delete_tree(tmp_path / "file")
    assert list(tmp_path.iterdir()) == []


def test_walk_tree_of_a_file_or_a_symlink_is_an_os_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to("dir")
    for path in (tmp_path / "file", tmp_path / "link"):
        with pytest.raises(OSError):
            list(walk_tree(path))


def test_a_walk_holds_one_directory_descriptor(tmp_path: Path) -> None:
    with deep_tree(tmp_path / "t", 200) as tree:
        before = len(os.listdir("/proc/self/fd"))
        peak = 0
        for _entry in walk_tree(tree):
            peak = max(peak, len(os.listdir("/proc/self/fd")) - before)
    # listdir itself holds one while it runs; the walk adds one (plus scandir's dup).
    assert peak <= 3
    assert len(os.listdir("/proc/self/fd")) == before
