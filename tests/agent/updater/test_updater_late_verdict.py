"""A committed update found unhealthy later (the agent's own trial) is rolled back by the table."""

import asyncio

from fogline.agent.updater import State

from ._support import NAME, Node, Release


def test_a_late_verdict_restores_the_prior_release_and_records_the_failure(
    node: Node, releases: dict[str, Release]
) -> None:
    v1, v2 = releases["1.0.0"], releases["2.0.0"]
    up = node.updater()
    assert asyncio.run(up.ensure(v1.target)).ok
    assert asyncio.run(up.ensure(v2.target)).ok

    result = asyncio.run(up.roll_back_committed(NAME, v2.target.digest, "it never reported"))

    assert result is not None and result.state is State.FAILED
    assert result.failed_in is State.HEALTH and result.error == "it never reported"
    installed = up.installed(NAME)
    assert installed is not None and installed.target == v1.target
    assert node.link("current") == v1.target.install_name
    assert not (node.module_dir() / v2.target.install_name).exists()
    assert node.activator.running == {NAME: "1.0.0"}
    # Recorded: the same release is not tried again by itself.
    again = asyncio.run(up.ensure(v2.target))
    assert again.state is State.FAILED and again.remembered
    # Only once, and only for the committed release it names.
    assert asyncio.run(up.roll_back_committed(NAME, v2.target.digest, "again")) is None


def test_a_late_verdict_on_another_release_changes_nothing(
    node: Node, releases: dict[str, Release]
) -> None:
    up = node.updater()
    assert asyncio.run(up.ensure(releases["1.0.0"].target)).ok
    other = releases["2.0.0"].target.digest
    assert asyncio.run(up.roll_back_committed(NAME, other, "not this one")) is None
    assert up.installed(NAME).target == releases["1.0.0"].target  # type: ignore[union-attr]
    assert up.journal_state(NAME) is State.DONE


def test_a_late_verdict_on_a_first_install_leaves_nothing_installed(
    node: Node, releases: dict[str, Release]
) -> None:
    up = node.updater()
    v1 = releases["1.0.0"]
    assert asyncio.run(up.ensure(v1.target)).ok
    result = asyncio.run(up.roll_back_committed(NAME, v1.target.digest, "exited at start"))
    assert result is not None and result.state is State.FAILED
    assert up.installed(NAME) is None and node.link("current") is None
