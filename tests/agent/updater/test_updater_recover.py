"""recover(): start what is installed, finish or undo what was in flight,
sweep what crashes left, and stop a crash loop."""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from fogline.agent.updater import ActivatorCall, MemoryActivator, State, UpdateLimits
from tests.support.deep import deep_tree

from ._support import NAME, MakeNode, Node, Release


class Crash(BaseException):
    """Stands in for a kill in these in-process tests: nothing catches it."""


def crash_at(point: str) -> Callable[[str], None]:
    def hook(reached: str) -> None:
        if reached == point:
            raise Crash(point)

    return hook


def interrupted(node: Node, release: Release, point: str) -> None:
    """Run an update that 'dies' at `point`, leaving its journal behind."""
    node.crash_hook = crash_at(point)
    with pytest.raises(Crash):
        asyncio.run(node.updater().ensure(release.target))
    node.crash_hook = None


def restarted(node: Node) -> MemoryActivator:
    """The module processes died with the agent: a fresh activator."""
    node.activator = MemoryActivator(health=node.activator.health)
    node.reports.clear()
    return node.activator


def test_recover_starts_every_installed_module_and_re_reports_the_last_outcome(
    node: Node, releases: dict[str, Release]
) -> None:
    up = node.updater()
    asyncio.run(up.ensure(releases["1.0.0"].target))
    asyncio.run(up.ensure(releases["2.0.0"].target))
    activator = restarted(node)
    assert asyncio.run(node.updater().recover()) == []
    assert activator.running == {NAME: "2.0.0"}
    assert activator.install_dirs[NAME].name == releases["2.0.0"].target.install_name
    assert activator.targets[NAME] == releases["2.0.0"].target  # config and env too
    assert [(r.state, r.version) for r in node.reports] == [(State.DONE, "2.0.0")]


def test_recover_sweeps_what_crashed_unpacks_deletes_and_downloads_left(
    node: Node, releases: dict[str, Release]
) -> None:
    asyncio.run(node.updater().ensure(releases["1.0.0"].target))
    module_dir = node.module_dir()
    (module_dir / ".2.0.0-abc.unpack-x1y2z3").mkdir()
    (module_dir / ".2.0.0-abc.unpack-x1y2z3" / "half").write_bytes(b"x")
    (module_dir / ".trash-0.9.0-abc.1234").mkdir()
    (module_dir / ".current.99.tmp").symlink_to("nowhere")
    stale = node.root / "downloads" / ("sha256:" + "f" * 64 + ".partial")
    stale.write_bytes(b"partial of a release nobody wants any more")

    asyncio.run(node.updater().recover())
    assert sorted(p.name for p in module_dir.iterdir()) == [
        releases["1.0.0"].target.install_name,
        "current",
    ]
    assert not stale.exists()


def test_an_unreadable_journal_is_set_aside_and_the_installed_version_still_starts(
    node: Node, releases: dict[str, Release]
) -> None:
    asyncio.run(node.updater().ensure(releases["1.0.0"].target))
    journal = node.root / "state" / NAME / "journal.json"
    journal.write_bytes(b"{not json")
    activator = restarted(node)
    asyncio.run(node.updater().recover())
    assert activator.running == {NAME: "1.0.0"}
    assert (journal.parent / "journal.corrupt.json").read_bytes() == b"{not json"
    assert not journal.exists()


def test_a_journal_written_by_a_newer_agent_in_an_unknown_state_rolls_back(
    node: Node, releases: dict[str, Release]
) -> None:
    asyncio.run(node.updater().ensure(releases["1.0.0"].target))
    interrupted(node, releases["2.0.0"], "after-switch")
    path = node.root / "state" / NAME / "journal.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "state": "canary-soak"}))
    activator = restarted(node)
    results = asyncio.run(node.updater().recover())
    assert [r.state for r in results] == [State.FAILED]
    assert activator.running == {NAME: "1.0.0"}
    assert node.link("current") == releases["1.0.0"].target.install_name


def test_a_download_is_resumed_after_the_installed_version_is_started(
    node: Node, releases: dict[str, Release]
) -> None:
    asyncio.run(node.updater().ensure(releases["1.0.0"].target))
    node.source.chunk_bytes = 8192
    interrupted(node, releases["2.0.0"], "download:chunk")
    activator = restarted(node)
    node.source.fetches.clear()
    results = asyncio.run(node.updater().recover())

    assert [r.state for r in results] == [State.DONE]
    # v1 ran while v2 downloaded: a slow link must not keep the module down.
    assert activator.calls[:3] == [
        ActivatorCall("start", NAME, "1.0.0"),
        ActivatorCall("stop", NAME),
        ActivatorCall("start", NAME, "2.0.0"),
    ]
    assert node.source.fetches == [(releases["2.0.0"].target.digest, 8192)]


def test_a_crash_in_commit_finishes_the_commit(node: Node, releases: dict[str, Release]) -> None:
    asyncio.run(node.updater().ensure(releases["1.0.0"].target))
    interrupted(node, releases["2.0.0"], "commit:recorded")
    activator = restarted(node)
    results = asyncio.run(node.updater().recover())
    assert [r.state for r in results] == [State.DONE]
    assert activator.running == {NAME: "2.0.0"}
    assert node.link("previous") == releases["1.0.0"].target.install_name


def test_a_crash_during_health_rolls_back_and_retries_without_recording(
    node: Node, releases: dict[str, Release]
) -> None:
    asyncio.run(node.updater().ensure(releases["1.0.0"].target))
    interrupted(node, releases["2.0.0"], "enter:HEALTH")
    activator = restarted(node)
    up = node.updater()
    [result] = asyncio.run(up.recover())
    assert result.state is State.FAILED and result.retryable
    assert "agent stopped during health" in (result.error or "")
    assert activator.running == {NAME: "1.0.0"}
    assert up.failure(NAME) is None
    # The agent asks again; this time it goes through.
    assert asyncio.run(up.ensure(releases["2.0.0"].target)).ok


def test_ensure_finishes_an_update_left_in_flight_when_recover_was_not_called(
    node: Node, releases: dict[str, Release]
) -> None:
    asyncio.run(node.updater().ensure(releases["1.0.0"].target))
    interrupted(node, releases["2.0.0"], "before-switch")
    restarted(node)
    result = asyncio.run(node.updater().ensure(releases["4.0.0"].target))
    assert result.ok
    assert node.states()[:3] == [State.ROLLBACK, State.CLEANUP, State.FAILED]
    assert node.activator.running == {NAME: "4.0.0"}
    assert node.link("previous") == releases["1.0.0"].target.install_name
    assert not (node.module_dir() / releases["2.0.0"].target.install_name).exists()


@pytest.mark.parametrize(
    ("saves", "expect_states"),
    [
        (20, [State.ROLLBACK, State.CLEANUP, State.FAILED]),  # the guard rolls back
        (23, [State.FAILED]),  # even that kept crashing: stop doing anything
    ],
)
def test_the_save_count_guard_ends_a_crash_loop_in_failed(
    node: Node, releases: dict[str, Release], saves: int, expect_states: list[State]
) -> None:
    asyncio.run(node.updater().ensure(releases["1.0.0"].target))
    interrupted(node, releases["2.0.0"], "activate:started")
    path = node.root / "state" / NAME / "journal.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "saves": saves}))
    activator = restarted(node)
    up = node.updater()
    [result] = asyncio.run(up.recover())

    assert result.state is State.FAILED and not result.retryable
    assert "crash loop" in (result.error or "")
    assert node.states() == expect_states
    failure = up.failure(NAME)
    assert failure is not None and failure.version == "2.0.0"
    # Either way the recorded version runs, the link repaired if needed.
    assert activator.running == {NAME: "1.0.0"}
    assert node.link("current") == releases["1.0.0"].target.install_name
    # And it is not retried.
    assert asyncio.run(up.ensure(releases["2.0.0"].target)).remembered


def test_a_low_guard_counts_interrupted_retries_of_the_same_release(
    make_node: MakeNode,
    releases: dict[str, Release],
) -> None:
    node = make_node(*releases.values(), limits=UpdateLimits(max_saves=12))
    asyncio.run(node.updater().ensure(releases["1.0.0"].target))
    for _attempt in range(5):
        node.crash_hook = crash_at("enter:HEALTH")
        try:
            result = asyncio.run(node.updater().ensure(releases["2.0.0"].target))
        except Crash:
            asyncio.run(node.updater().recover())
            continue
        break
    assert result.state is State.FAILED and "crash loop" in (result.error or "")
    assert node.activator.running == {NAME: "1.0.0"}


def test_a_damaged_install_is_logged_not_raised_at_start(
    node: Node, releases: dict[str, Release]
) -> None:
    asyncio.run(node.updater().ensure(releases["1.0.0"].target))
    # Damage the install: its module file is gone.
    (node.module_dir() / releases["1.0.0"].target.install_name / "fogline-module.yaml").unlink()
    activator = restarted(node)
    asyncio.run(node.updater().recover())  # logs, does not raise
    assert activator.running == {}


def test_recover_sweeps_a_5000_level_leftover_and_starts_the_installed_version(
    node: Node, releases: dict[str, Release]
) -> None:
    # What a crashed unpack of a deep archive (or a module deepening its own
    # tree) leaves: on Python 3.11 shutil.rmtree died of RecursionError here,
    # at every start, before the agent reached its hub.
    asyncio.run(node.updater().ensure(releases["1.0.0"].target))
    module_dir = node.module_dir()
    activator = restarted(node)
    with (
        deep_tree(module_dir / ".2.0.0-abc.unpack-deep01", 5000, files_every=500),
        deep_tree(module_dir / ".trash-0.9.0-abc.dead", 5000, files_every=500),
    ):
        asyncio.run(node.updater().recover())
    assert activator.running == {NAME: "1.0.0"}
    assert sorted(p.name for p in module_dir.iterdir()) == [
        releases["1.0.0"].target.install_name,
        "current",
    ]


def test_a_module_that_fails_to_recover_is_reported_and_the_others_still_start(
    node: Node, releases: dict[str, Release], monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(node.updater().ensure(releases["1.0.0"].target))
    other = node.root / "modules" / "aaa-broken"
    other.mkdir()
    import fogline.agent.updater._updater as updater_module

    real_sweep = updater_module.sweep_leftovers

    def sweep(module_dir: Path) -> list[Path]:
        if module_dir.name == "aaa-broken":
            raise RecursionError("maximum recursion depth exceeded")
        return real_sweep(module_dir)

    monkeypatch.setattr(updater_module, "sweep_leftovers", sweep)
    activator = restarted(node)
    results = asyncio.run(node.updater().recover())
    assert activator.running == {NAME: "1.0.0"}
    [failed] = results
    assert failed.module == "aaa-broken" and failed.state is State.FAILED
    assert failed.error is not None and "RecursionError" in failed.error
