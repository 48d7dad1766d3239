"""Power-loss proof (issue 18): the updater, the identity store, the hub's
release store and the outbox run over the recording file layer, and their
real recovery runs on every file system a power cut could leave.

This is the fast subset (per crash point: only what was made durable,
everything, and every pending name without its pending bytes). The full
exploration (torn appends, in-order prefixes, reorderings) is
`python -m benchmarks.bench_power_loss`. The model: tests/support/powerloss.py
and docs/architecture.md ("Power loss").
"""

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fogline._durable import write_atomic
from tests.support.powerloss import explore, recording, scratch_root
from tests.support.powerloss_cases import SCENARIOS, Releases, build_releases, run_scenario


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = scratch_root()
    if root is None:
        yield tmp_path_factory.mktemp("powerloss")
        return
    path = Path(tempfile.mkdtemp(prefix="fogline-powerloss-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def releases(scratch: Path) -> Releases:
    return build_releases(scratch / "releases")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_broken_node_and_nothing_acknowledged_lost_after_a_power_cut(
    scenario: str, scratch: Path, releases: Releases
) -> None:
    sandbox = scratch / scenario.replace(":", "-")
    sandbox.mkdir()
    result = run_scenario(scenario, sandbox, releases, full=False)
    print(result.summary())
    assert result.distinct >= 10, result.summary()
    assert [(f.kind, f.after, f.problems) for f in result.findings] == []


# -- the harness finds what it is meant to find ----------------------------------


def _save(path: Path, data: bytes, *, sync_file: bool, sync_dir: bool) -> None:
    """Replace `path` the way write_atomic does, with its fsyncs optional."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        if sync_file:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    if sync_dir:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _old_or_new(path: Path) -> Callable[[Path, frozenset[str]], list[str]]:
    def check(image: Path, acked: frozenset[str]) -> list[str]:
        held = (image / path).read_bytes() if (image / path).exists() else None
        if held not in (b"old", b"new"):
            return [f"torn: {held!r}"]
        if "saved" in acked and held != b"new":
            return ["saved, then lost"]
        return []

    return check


@pytest.mark.parametrize(
    ("sync_file", "sync_dir", "broken_in"),
    [
        (True, True, set()),
        (False, True, {"names", "durable", "torn"}),  # the rename lands, the bytes do not
        (True, False, {"durable"}),  # acknowledged, then the rename is lost
    ],
)
def test_the_harness_finds_a_missing_fsync(
    tmp_path: Path, sync_file: bool, sync_dir: bool, broken_in: set[str]
) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "state.json").write_bytes(b"old")
    with recording(sandbox) as recorder:
        _save(sandbox / "state.json", b"new", sync_file=sync_file, sync_dir=sync_dir)
        recorder.mark("saved")
    (tmp_path / "states").mkdir()
    result = explore(
        "self-test", recorder, _old_or_new(Path("state.json")), tmp_path / "states", full=True
    )
    assert result.distinct >= 2
    found = {f.kind for f in result.findings}
    assert broken_in <= found
    if not broken_in:
        assert found == set()


def test_a_file_written_into_a_new_directory_survives_with_its_directory(
    tmp_path: Path,
) -> None:
    """Found by the harness: write_atomic fsynced the file and its directory,
    but not the directory's parent, so the new directory (and the file in it)
    could vanish in a power cut after the write was acknowledged."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    with recording(sandbox) as recorder:
        write_atomic(sandbox / "state" / "demo" / "installed.json", b"new")
        recorder.mark("saved")

    def check(image: Path, acked: frozenset[str]) -> list[str]:
        path = image / "state" / "demo" / "installed.json"
        held = path.read_bytes() if path.exists() else None
        if held not in (None, b"new") or ("saved" in acked and held != b"new"):
            return [f"after the save: {held!r}"]
        return []

    (tmp_path / "states").mkdir()
    result = explore("write_atomic", recorder, check, tmp_path / "states", full=True)
    assert result.distinct >= 2
    assert result.findings == []
