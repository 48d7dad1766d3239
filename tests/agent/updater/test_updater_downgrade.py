"""Downgrades: a target below the installed version needs allow_downgrade."""

import asyncio
import dataclasses

import pytest
from pydantic import ValidationError

from fogline.agent.modules import targets_from
from fogline.agent.updater import ReleaseRejectedError, ReleaseTarget, State
from fogline.agent.updater._verify import check_downgrade
from fogline.protocol import DesiredDocument

from ._support import Node, Release

DIGEST = "sha256:" + "0" * 64


def _target(version: str, *, allow: bool = False) -> ReleaseTarget:
    return ReleaseTarget("demo", version, DIGEST, b"", allow_downgrade=allow)


@pytest.mark.parametrize(
    ("installed", "wanted"),
    [
        ("1.1.0", "1.0.0"),
        ("2.0.0", "1.99.99"),
        ("1.0.0", "1.0.0-rc.1"),  # a pre-release precedes its release
        ("1.0.0-rc.2", "1.0.0-rc.1"),
    ],
)
def test_an_older_version_is_refused_without_allow_downgrade(installed: str, wanted: str) -> None:
    with pytest.raises(
        ReleaseRejectedError, match=f"refusing to downgrade from the installed {installed}"
    ):
        check_downgrade(_target(wanted), installed)
    check_downgrade(_target(wanted, allow=True), installed)


@pytest.mark.parametrize(
    ("installed", "wanted"),
    [
        (None, "0.1.0"),  # nothing installed
        ("1.0.0", "1.0.0"),  # the same version again (other bytes or config)
        ("1.0.0+build.2", "1.0.0+build.1"),  # build metadata has no precedence
        ("1.0.0", "1.0.1"),
        ("1.0.0-rc.1", "1.0.0"),
    ],
)
def test_upgrades_and_the_same_version_need_nothing(installed: str | None, wanted: str) -> None:
    check_downgrade(_target(wanted), installed)


def test_the_refusal_keeps_the_installed_version_and_is_not_remembered(
    node: Node, releases: dict[str, Release]
) -> None:
    up = node.updater()
    asyncio.run(up.ensure(releases["2.0.0"].target))
    result = asyncio.run(up.ensure(releases["1.0.0"].target))
    assert result.state is State.FAILED and result.failed_in is State.VERIFY
    assert (
        result.error is not None
        and "refusing to downgrade from the installed 2.0.0" in result.error
    )
    assert node.activator.running == {"demo": "2.0.0"}
    assert up.installed("demo").target.version == "2.0.0"  # type: ignore[union-attr]
    assert up.failure("demo") is None  # nothing recorded: allowing it later works at once
    assert releases["1.0.0"].target.digest not in {d for d, _ in node.source.fetches}

    allowed = dataclasses.replace(releases["1.0.0"].target, allow_downgrade=True)
    assert asyncio.run(up.ensure(allowed)).state is State.DONE
    assert node.activator.running == {"demo": "1.0.0"}


def test_targets_carry_allow_downgrade_from_the_entry_or_a_rollback_document() -> None:
    entry = {"name": "demo", "version": "1.0.0", "digest": DIGEST, "signature": None}

    def targets(document: dict[str, object]) -> list[bool]:
        return [t.allow_downgrade for t in targets_from(DesiredDocument.model_validate(document))]

    plain = targets({"modules": [entry]})
    allowed = targets({"modules": [{**entry, "allowDowngrade": True}]})
    rollback = targets({"modules": [entry], "rollback": {"rollout": "ro-1"}})
    assert [*plain, *allowed, *rollback] == [False, True, True]
    # Anything but a boolean is not an allowance: the document does not parse,
    # and the node refuses it (fogline.protocol.parse_desired_state).
    with pytest.raises(ValidationError, match="allowDowngrade"):
        DesiredDocument.model_validate({"modules": [{**entry, "allowDowngrade": "yes"}]})
