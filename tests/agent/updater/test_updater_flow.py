"""Install, update, roll back: the module always ends on a version that ran healthy."""

import asyncio
import dataclasses
import json
from pathlib import Path

from fogline.agent.updater import ActivatorCall, MemoryActivator, State, Updater, UpdateResult
from fogline.artifact import ReleaseKeyPair

from ._support import NAME, MakeNode, Node, Release, make_release, serve, tree_digests

HAPPY = [
    State.DOWNLOAD,
    State.VERIFY,
    State.INSTALL,
    State.ACTIVATE,
    State.HEALTH,
    State.COMMIT,
    State.CLEANUP,
    State.DONE,
]


def ensure(up: Updater, release: Release) -> UpdateResult:
    return asyncio.run(up.ensure(release.target))


def test_first_install_runs_v1_from_a_complete_install_dir(
    node: Node, releases: dict[str, Release]
) -> None:
    v1 = releases["1.0.0"]
    up = node.updater()
    assert asyncio.run(up.recover()) == []
    result = ensure(up, v1)

    assert result.ok and result.error is None
    assert node.states() == HAPPY
    assert node.activator.running == {NAME: "1.0.0"}
    assert node.activator.targets[NAME].config == {"version": "1.0.0"}
    install = node.module_dir() / v1.target.install_name
    assert node.link("current") == v1.target.install_name
    assert node.link("previous") is None
    assert tree_digests(install) == v1.files
    installed = up.installed(NAME)
    assert installed is not None and installed.target == v1.target
    assert up.journal_state(NAME) is State.DONE
    # The download is gone once committed.
    assert list((node.root / "downloads").iterdir()) == []


def test_update_keeps_the_previous_version_and_stops_before_starting(
    node: Node, releases: dict[str, Release]
) -> None:
    up = node.updater()
    ensure(up, releases["1.0.0"])
    node.activator.calls.clear()
    result = ensure(up, releases["2.0.0"])

    assert result.ok
    assert node.activator.running == {NAME: "2.0.0"}
    assert node.activator.calls[:2] == [
        ActivatorCall("stop", NAME),
        ActivatorCall("start", NAME, "2.0.0"),
    ]
    assert node.link("current") == releases["2.0.0"].target.install_name
    assert node.link("previous") == releases["1.0.0"].target.install_name
    assert (node.module_dir() / releases["1.0.0"].target.install_name).is_dir()


def test_unhealthy_v3_rolls_back_to_v2_is_recorded_and_not_retried(
    node: Node, releases: dict[str, Release]
) -> None:
    up = node.updater()
    ensure(up, releases["1.0.0"])
    ensure(up, releases["2.0.0"])
    node.reports.clear()
    result = ensure(up, releases["3.0.0"])

    assert not result.ok and not result.retryable
    assert result.failed_in is State.HEALTH
    # The result names the release; its reason does not repeat it (the manager says it once).
    assert result.version == "3.0.0" and result.error == "not healthy within 5s"
    assert node.states()[-4:] == [State.HEALTH, State.ROLLBACK, State.CLEANUP, State.FAILED]
    assert node.reports[-1].error == result.error
    assert node.activator.running == {NAME: "2.0.0"}
    assert node.link("current") == releases["2.0.0"].target.install_name
    assert node.link("previous") == releases["1.0.0"].target.install_name
    assert not (node.module_dir() / releases["3.0.0"].target.install_name).exists()
    installed = up.installed(NAME)
    assert installed is not None and installed.target == releases["2.0.0"].target
    failure = up.failure(NAME)
    assert failure is not None
    assert (failure.version, failure.digest, failure.failed_in) == (
        "3.0.0",
        releases["3.0.0"].target.digest,
        State.HEALTH,
    )

    # The same release again: the failure comes back at once, nothing is fetched or stopped.
    fetches, calls = len(node.source.fetches), len(node.activator.calls)
    again = asyncio.run(node.updater().ensure(releases["3.0.0"].target))  # survives a restart
    assert again.remembered and again.state is State.FAILED and again.error == failure.reason
    assert (len(node.source.fetches), len(node.activator.calls)) == (fetches, calls)
    assert node.reports[-1].state is State.FAILED and node.reports[-1].error == failure.reason


def test_forget_failure_lets_the_same_release_be_tried_again(
    node: Node, releases: dict[str, Release]
) -> None:
    up = node.updater()
    ensure(up, releases["2.0.0"])
    ensure(up, releases["3.0.0"])
    assert up.forget_failure(NAME) is True
    assert up.forget_failure(NAME) is False
    node.activator.health["3.0.0"] = True
    assert ensure(up, releases["3.0.0"]).ok
    assert node.activator.running == {NAME: "3.0.0"}


def test_targeting_another_release_clears_the_failure(
    node: Node, releases: dict[str, Release]
) -> None:
    up = node.updater()
    ensure(up, releases["2.0.0"])
    ensure(up, releases["3.0.0"])
    assert ensure(up, releases["4.0.0"]).ok
    assert up.failure(NAME) is None
    # ...so 3.0.0 is tried (and fails) again rather than remembered (below
    # the installed 4.0.0, so only with the deployment's allowDowngrade).
    result = asyncio.run(
        up.ensure(dataclasses.replace(releases["3.0.0"].target, allow_downgrade=True))
    )
    assert not result.remembered and result.failed_in is State.HEALTH


def test_an_unhealthy_release_is_tried_again_with_another_config(
    node: Node, releases: dict[str, Release]
) -> None:
    """A health failure may be the config's: the operator's corrected config
    for the same release is tried, while the same config stays remembered.
    (Before, every later config of the release was refused with the old
    error until another release was targeted.)"""
    up = node.updater()
    ensure(up, releases["2.0.0"])
    failed = ensure(up, releases["3.0.0"])
    assert failed.failed_in is State.HEALTH
    assert ensure(up, releases["3.0.0"]).remembered
    node.activator.health["3.0.0"] = True  # the new config makes it healthy
    fixed = dataclasses.replace(releases["3.0.0"].target, config={"version": "3.0.0", "fixed": 1})
    result = asyncio.run(up.ensure(fixed))
    assert result.ok and not result.remembered
    assert node.activator.running == {NAME: "3.0.0"}
    assert node.activator.targets[NAME].config == {"version": "3.0.0", "fixed": 1}
    assert up.failure(NAME) is None


def test_another_env_is_another_try_and_the_failed_one_stays_remembered(
    node: Node, releases: dict[str, Release]
) -> None:
    up = node.updater()
    ensure(up, releases["2.0.0"])
    with_env = dataclasses.replace(releases["3.0.0"].target, env={"MODE": "a"})
    assert asyncio.run(up.ensure(with_env)).failed_in is State.HEALTH
    other_env = dataclasses.replace(with_env, env={"MODE": "b"})
    tried = asyncio.run(up.ensure(other_env))
    assert not tried.remembered and tried.failed_in is State.HEALTH
    # The failure now on record is the second one's: MODE=b is remembered.
    assert asyncio.run(up.ensure(other_env)).remembered


def test_a_failure_recorded_before_configs_counted_holds_for_every_config(
    node: Node, releases: dict[str, Release]
) -> None:
    """failed.json written by an older agent has no `deployment`: it holds
    for the release whatever its config, as it did."""
    up = node.updater()
    ensure(up, releases["2.0.0"])
    ensure(up, releases["3.0.0"])
    record = next(node.root.rglob("failed.json"))
    data = json.loads(record.read_text())
    assert data.pop("deployment") is not None
    record.write_text(json.dumps(data))
    other = dataclasses.replace(releases["3.0.0"].target, config={"version": "3.0.0", "x": 2})
    assert asyncio.run(node.updater().ensure(other)).remembered


def test_only_one_previous_install_is_kept(node: Node, releases: dict[str, Release]) -> None:
    up = node.updater()
    for version in ("1.0.0", "2.0.0", "4.0.0"):
        assert ensure(up, releases[version]).ok
    names = sorted(p.name for p in node.module_dir().iterdir())
    assert names == sorted(
        [
            "current",
            "previous",
            releases["2.0.0"].target.install_name,
            releases["4.0.0"].target.install_name,
        ]
    )


def test_a_first_install_that_fails_health_leaves_nothing_active(
    node: Node, releases: dict[str, Release]
) -> None:
    up = node.updater()
    result = ensure(up, releases["3.0.0"])
    assert result.state is State.FAILED and result.failed_in is State.HEALTH
    assert node.activator.running == {}
    assert node.activator.calls[-1] == ActivatorCall("stop", NAME)
    assert node.link("current") is None
    assert up.installed(NAME) is None and up.install_path(NAME) is None
    assert [p.name for p in node.module_dir().iterdir()] == []


def test_a_start_failure_rolls_back_and_names_the_cause(
    make_node: MakeNode,
    releases: dict[str, Release],
) -> None:
    node = make_node(*releases.values(), activator=MemoryActivator(fail_start={"2.0.0"}))
    up = node.updater()
    ensure(up, releases["1.0.0"])
    result = ensure(up, releases["2.0.0"])
    assert result.failed_in is State.ACTIVATE
    assert result.error == "start failed: RuntimeError: failed to start (injected)"
    assert node.activator.running == {NAME: "1.0.0"}
    assert up.failure(NAME) is not None


def test_ensuring_what_already_runs_does_nothing(node: Node, releases: dict[str, Release]) -> None:
    up = node.updater()
    ensure(up, releases["1.0.0"])
    fetches, calls = len(node.source.fetches), len(node.activator.calls)
    result = ensure(up, releases["1.0.0"])
    assert result.ok and not result.remembered
    assert (len(node.source.fetches), len(node.activator.calls)) == (fetches, calls)
    assert node.reports[-1].state is State.DONE and node.reports[-1].detail == "already installed"


def test_a_config_change_restarts_the_same_install_without_downloading(
    node: Node, releases: dict[str, Release]
) -> None:
    from dataclasses import replace

    up = node.updater()
    ensure(up, releases["1.0.0"])
    fetches = len(node.source.fetches)
    changed = replace(releases["1.0.0"].target, config={"version": "1.0.0", "rate": 5})
    assert asyncio.run(up.ensure(changed)).ok
    assert len(node.source.fetches) == fetches
    assert node.activator.targets[NAME].config == {"version": "1.0.0", "rate": 5}
    assert node.link("current") == changed.install_name
    assert node.link("previous") is None  # not itself


def test_going_back_to_the_previous_version_reuses_its_install(
    node: Node, releases: dict[str, Release]
) -> None:
    up = node.updater()
    ensure(up, releases["1.0.0"])
    ensure(up, releases["2.0.0"])
    fetches = len(node.source.fetches)
    back = dataclasses.replace(releases["1.0.0"].target, allow_downgrade=True)  # as in a rollback
    assert asyncio.run(up.ensure(back)).ok
    assert len(node.source.fetches) == fetches
    assert node.activator.running == {NAME: "1.0.0"}
    assert node.link("previous") == releases["2.0.0"].target.install_name


def test_modules_update_independently(
    tmp_path: Path, key: ReleaseKeyPair, releases: dict[str, Release]
) -> None:
    other = make_release(tmp_path / "rel", "1.0.0", key, name="other")
    node = Node(tmp_path / "node", serve(other, *releases.values()), MemoryActivator(), key)
    up = node.updater()

    async def both() -> list[bool]:
        results = await asyncio.gather(up.ensure(releases["1.0.0"].target), up.ensure(other.target))
        return [r.ok for r in results]

    assert asyncio.run(both()) == [True, True]
    assert node.activator.running == {NAME: "1.0.0", "other": "1.0.0"}


def test_progress_reports_download_bytes(
    make_node: MakeNode,
    releases: dict[str, Release],
) -> None:
    from dataclasses import replace

    v1 = releases["1.0.0"]
    node = make_node(v1)
    node.source.chunk_bytes = 4096
    target = replace(v1.target, size=len(v1.blob))
    assert asyncio.run(node.updater().ensure(target)).ok
    downloading = [r for r in node.reports if r.state is State.DOWNLOAD and r.bytes_done]
    assert downloading, "no byte progress reported"
    assert downloading[-1].bytes_done == downloading[-1].bytes_total == len(v1.blob)
    assert all(r.version == "1.0.0" and r.digest == v1.target.digest for r in node.reports)


def test_a_broken_progress_callback_does_not_break_the_update(
    tmp_path: Path, key: ReleaseKeyPair, releases: dict[str, Release]
) -> None:
    from ._support import no_sleep, trusted

    def explode(_progress: object) -> None:
        raise RuntimeError("hub forwarder crashed")

    activator = MemoryActivator()
    up = Updater(
        tmp_path / "node",
        source=serve(releases["1.0.0"]),
        activator=activator,
        trusted_keys=trusted(key),
        on_progress=explode,
        sleep=no_sleep,
    )
    assert asyncio.run(up.ensure(releases["1.0.0"].target)).ok
    assert activator.running == {NAME: "1.0.0"}
