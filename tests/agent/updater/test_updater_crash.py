"""Kill the agent at every crash point of an update, restart, and check that the
module runs a whole, healthy version and that the last report tells the truth.

Each case forks a child that runs the update with FOGLINE_FAULT_CRASH_AT set
(so it SIGKILLs itself at that point: no finally blocks, no flushes), then
recovers in a fresh Updater as a restarted agent would, and ensures the same
target again.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fogline.agent.updater import CRASH_ENV, State, crash_points
from fogline.artifact import ReleaseKeyPair, find_unpack_leftovers, public_key_base64

from ._crash_child import build_updater, child_main
from ._support import NAME, Release, tree_digests

ROOT_DIR = Path(__file__).resolve().parents[3]
MAX_SAVES = 20

# Which scenario reaches which point: v1 -> v2 (healthy), v2 -> v3 (never
# healthy: the rollback path), nothing -> v3 (a first install rolled back),
# v1 -> v2 through a delta from v1's kept archive.
SCENARIOS: dict[str, list[str]] = {
    "delta": ["delta:fetched", "delta:rebuilt"],
    "update": [
        "enter:DOWNLOAD",
        "download:chunk",
        "download:chunk:3",
        "download:complete",
        "enter:VERIFY",
        "enter:INSTALL",
        "unpack",
        "install:unpacked",
        "enter:ACTIVATE",
        "activate:stopped",
        "before-switch",
        "after-switch",
        "activate:started",
        "enter:HEALTH",
        "health:checked",
        "enter:COMMIT",
        "commit:recorded",
        "commit:pruned",
        "enter:CLEANUP",
        "cleanup:removed",
        "enter:DONE",
    ],
    "bad": [
        "after-switch",
        "enter:HEALTH",
        "health:checked",
        "enter:ROLLBACK",
        "rollback:switched",
        "rollback:started",
        "enter:CLEANUP",
        "cleanup:removed",
        "failed:recorded",
        "enter:FAILED",
    ],
    "first-bad": [
        "after-switch",
        "enter:HEALTH",
        "enter:ROLLBACK",
        "rollback:switched",
        "enter:CLEANUP",
        "failed:recorded",
        "enter:FAILED",
    ],
}
CASES = [(scenario, point) for scenario, points in SCENARIOS.items() for point in points]


def _point_name(spec: str) -> str:
    head, _, tail = spec.rpartition(":")
    return head if tail.isdigit() else spec


def test_the_scenarios_try_every_crash_point() -> None:
    tried = {_point_name(point) for _scenario, point in CASES}
    assert tried == set(crash_points())


class Agent:
    """One node's directory, driven by successive agent processes."""

    def __init__(
        self, tmp: Path, releases: dict[str, Release], key: ReleaseKeyPair, target: str
    ) -> None:
        self.releases = releases
        self.progress = tmp / "progress.jsonl"
        self.config: dict[str, Any] = {
            "root": str(tmp / "node"),
            "blobs": {r.target.digest: str(r.archive) for r in releases.values()},
            "target": releases[target].target.to_json(),
            "key": public_key_base64(key.public_key),
            "state_file": str(tmp / "running.json"),
            "progress_file": str(self.progress),
            "unhealthy": ["3.0.0"],
            "chunk_bytes": 8192,
            "max_saves": MAX_SAVES,
            "mode": "update",
        }
        self.root = Path(self.config["root"])

    def serve_delta(self, base: str, target: str) -> None:
        """Let the source serve a delta from `base` to `target`."""
        from fogline.artifact._delta import make_delta

        b, t = self.releases[base], self.releases[target]
        delta = make_delta(b.blob, t.blob)
        assert delta is not None
        path = self.root.parent / f"delta-{base}-{target}.zst"
        path.write_bytes(delta)
        self.config["deltas"] = [[t.target.digest, b.target.digest, str(path)]]

    def install(self, *versions: str) -> None:
        """Set the node up in this process, before any crash."""
        updater, _, _ = build_updater(self.config)
        for version in versions:
            assert asyncio.run(updater.ensure(self.releases[version].target)).ok

    def crash_at(
        self, point: str, *, mode: str = "update", before: Callable[[], None] | None = None
    ) -> int:
        """Run one agent in a forked child with the crash point set; return its wait status."""
        config = {**self.config, "mode": mode}
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 0
            try:
                os.environ[CRASH_ENV] = point
                if before is not None:
                    before()
                child_main(config)
            except BaseException:
                traceback.print_exc()
                code = 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return status

    def restart(self) -> tuple[Any, Any]:
        """A restarted agent: recover, then ensure the same target again."""
        self.progress.unlink(missing_ok=True)  # what the restarted agent reports
        updater, activator, self.source = build_updater(self.config)
        target = self.releases[self.config["target"]["version"]].target

        async def agent() -> None:
            await updater.recover()
            await updater.ensure(target)

        asyncio.run(agent())
        return updater, activator

    def last_report(self) -> dict[str, Any]:
        lines = self.progress.read_text().splitlines()
        assert lines, "nothing reported after the restart"
        report: dict[str, Any] = json.loads(lines[-1])
        return report

    def assert_runs_intact(self, updater: Any, activator: Any, version: str) -> None:
        release = self.releases[version]
        installed = updater.installed(NAME)
        assert installed is not None and installed.target.version == version
        assert activator.running == {NAME: version}
        module_dir = self.root / "modules" / NAME
        assert os.readlink(module_dir / "current") == release.target.install_name
        assert tree_digests(module_dir / release.target.install_name) == release.files
        assert find_unpack_leftovers(module_dir) == []
        assert not [p for p in module_dir.iterdir() if p.name.startswith(".")]


def _assert_killed(status: int, point: str) -> None:
    assert os.WIFSIGNALED(status), f"{point}: never reached (exit status {status})"
    assert os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.parametrize(("scenario", "point"), CASES)
def test_an_update_survives_a_kill_at(
    scenario: str, point: str, tmp_path: Path, releases: dict[str, Release], key: ReleaseKeyPair
) -> None:
    target = {"update": "2.0.0", "bad": "3.0.0", "first-bad": "3.0.0", "delta": "2.0.0"}[scenario]
    agent = Agent(tmp_path, releases, key, target)
    if scenario == "delta":
        agent.serve_delta("1.0.0", "2.0.0")
    agent.install(
        *{"update": ["1.0.0"], "bad": ["1.0.0", "2.0.0"], "first-bad": [], "delta": ["1.0.0"]}[
            scenario
        ]
    )

    _assert_killed(agent.crash_at(point), point)
    updater, activator = agent.restart()
    report = agent.last_report()
    module_dir = agent.root / "modules" / NAME

    if scenario in ("update", "delta"):
        assert updater.journal_state(NAME) is State.DONE
        agent.assert_runs_intact(updater, activator, "2.0.0")
        assert os.readlink(module_dir / "previous") == releases["1.0.0"].target.install_name
        assert report == {
            "state": "done",
            "version": "2.0.0",
            "error": None,
            "detail": report["detail"],
        }
        assert list((agent.root / "downloads").iterdir()) == []
        if point.startswith("download:chunk"):
            # The restarted agent resumed the partial file instead of starting over.
            assert agent.source.fetches[0][1] > 0
        kept = agent.root / "bases" / NAME / f"{releases['2.0.0'].target.digest}.tar.zst"
        assert kept.read_bytes() == releases["2.0.0"].blob  # the next update's base
        assert len(list(kept.parent.iterdir())) == 1
        if scenario == "delta" and point == "delta:fetched":
            # The restarted agent asked for the delta again and never fetched the archive.
            assert agent.source.delta_fetches and not agent.source.fetches
        return

    # v3 never becomes healthy: whatever the crash, it ends rolled back and recorded.
    assert updater.journal_state(NAME) is State.FAILED
    failure = updater.failure(NAME)
    assert failure is not None and failure.version == "3.0.0"
    assert failure.failed_in is State.HEALTH and "healthy" in failure.reason
    assert report["state"] == "failed" and report["version"] == "3.0.0"
    assert report["error"] == failure.reason
    assert not (module_dir / releases["3.0.0"].target.install_name).exists()
    if scenario == "bad":
        agent.assert_runs_intact(updater, activator, "2.0.0")
        assert os.readlink(module_dir / "previous") == releases["1.0.0"].target.install_name
    else:
        assert updater.installed(NAME) is None and activator.running == {}
        assert not os.path.lexists(module_dir / "current")


def test_a_kill_in_the_middle_of_unpacking_leaves_only_a_swept_leftover(
    tmp_path: Path, releases: dict[str, Release], key: ReleaseKeyPair
) -> None:
    agent = Agent(tmp_path, releases, key, "2.0.0")
    agent.install("1.0.0")

    def kill_on_second_file() -> None:
        # Test-only: reach inside unpack, which the updater treats as atomic.
        from fogline.artifact import _unpack

        original, calls = _unpack._Tree._add_file, [0]

        def add_file(self: Any, *args: Any, **kwargs: Any) -> None:
            calls[0] += 1
            if calls[0] == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            original(self, *args, **kwargs)

        _unpack._Tree._add_file = add_file  # type: ignore[method-assign]
        os.environ.pop(CRASH_ENV)

    _assert_killed(agent.crash_at("enter:DONE", before=kill_on_second_file), "mid-unpack")
    module_dir = agent.root / "modules" / NAME
    assert len(find_unpack_leftovers(module_dir)) == 1
    assert not (module_dir / releases["2.0.0"].target.install_name).exists()

    updater, activator = agent.restart()
    assert updater.journal_state(NAME) is State.DONE
    agent.assert_runs_intact(updater, activator, "2.0.0")


def test_a_crash_loop_in_rollback_ends_in_failed_not_a_boot_loop(
    tmp_path: Path, releases: dict[str, Release], key: ReleaseKeyPair
) -> None:
    agent = Agent(tmp_path, releases, key, "3.0.0")
    agent.config["max_saves"] = 8
    agent.install("1.0.0", "2.0.0")
    _assert_killed(agent.crash_at("enter:HEALTH"), "enter:HEALTH")

    # Every restart dies again as soon as it starts rolling back.
    restarts = 0
    while restarts < 30:
        restarts += 1
        status = agent.crash_at("enter:ROLLBACK", mode="recover")
        if not os.WIFSIGNALED(status):
            assert os.WEXITSTATUS(status) == 0
            break
    assert restarts <= 8, f"the guard let {restarts} restarts crash"

    updater, activator, _ = build_updater(agent.config)
    assert updater.journal_state(NAME) is State.FAILED
    failure = updater.failure(NAME)
    assert failure is not None and "crash loop" in failure.reason
    # The installed record still names 2.0.0, and that is what runs.
    asyncio.run(updater.recover())
    agent.assert_runs_intact(updater, activator, "2.0.0")


def test_an_update_that_kills_the_agent_every_time_gives_up(
    tmp_path: Path, releases: dict[str, Release], key: ReleaseKeyPair
) -> None:
    # A new version that takes the agent down during every health check.
    agent = Agent(tmp_path, releases, key, "2.0.0")
    agent.install("1.0.0")
    attempts = 0
    while attempts < 10:
        attempts += 1
        if not os.WIFSIGNALED(agent.crash_at("enter:HEALTH")):
            break
    assert 2 <= attempts <= 4
    updater, activator, _ = build_updater(agent.config)
    failure = updater.failure(NAME)
    assert failure is not None and "crash loop" in failure.reason
    asyncio.run(updater.recover())
    agent.assert_runs_intact(updater, activator, "1.0.0")


def test_the_crash_variable_works_in_a_fresh_interpreter(
    tmp_path: Path, releases: dict[str, Release], key: ReleaseKeyPair
) -> None:
    agent = Agent(tmp_path, releases, key, "2.0.0")
    agent.install("1.0.0")
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(agent.config))
    child = subprocess.run(
        [sys.executable, "-m", "tests.agent.updater._crash_child", str(config_file)],
        cwd=ROOT_DIR,
        env={**os.environ, CRASH_ENV: "after-switch"},
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    module_dir = agent.root / "modules" / NAME
    # Killed right after the switch: the link names v2, nothing has started it.
    assert os.readlink(module_dir / "current") == releases["2.0.0"].target.install_name

    updater, activator = agent.restart()
    assert updater.journal_state(NAME) is State.DONE
    agent.assert_runs_intact(updater, activator, "2.0.0")
