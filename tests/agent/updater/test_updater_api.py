"""The updater's error tree, targets and crash-point plumbing."""

import asyncio
import os
import signal

import pytest

import fogline.agent.updater as updater_pkg
from fogline import FoglineError
from fogline.agent.updater import (
    CRASH_ENV,
    ActivationError,
    ArtifactFetchError,
    InvalidTargetError,
    JournalCorruptError,
    ReleaseRejectedError,
    ReleaseTarget,
    UpdateLimits,
    UpdaterError,
    _crash,
    crash_hook_from_env,
    crash_points,
)
from tests.support.processes import wait_until_async

DIGEST = "sha256:" + "ab" * 32


def test_errors_hang_under_fogline_error() -> None:
    for error in (
        InvalidTargetError,
        ArtifactFetchError,
        ReleaseRejectedError,
        ActivationError,
        JournalCorruptError,
    ):
        assert issubclass(error, UpdaterError)
    assert issubclass(UpdaterError, FoglineError)
    assert ArtifactFetchError(DIGEST, "reset").is_transient
    assert ArtifactFetchError(DIGEST, "busy", status=503).is_transient
    assert ArtifactFetchError(DIGEST, "throttled", status=429).is_transient
    assert not ArtifactFetchError(DIGEST, "gone", status=404).is_transient
    assert "HTTP 404" in str(ArtifactFetchError(DIGEST, "gone", status=404))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "../etc"}, "name"),
        ({"name": "Demo"}, "name"),
        ({"version": "v1.0.0"}, "version"),
        ({"version": "1.0"}, "version"),
        ({"version": "1.0.0/../../x"}, "version"),
        ({"digest": "sha256:../../etc/passwd"}, "digest"),
        ({"digest": "md5:abc"}, "digest"),
        ({"signature": b"x" * 5000}, "signature"),
        ({"config": {"k": object()}}, "config"),
        ({"config": {"k": "x" * 300_000}}, "config"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"env": {"A": 5}}, "env.A"),
        ({"health_timeout_s": 0}, "health_timeout_s"),
        ({"size": -1}, "size"),
    ],
)
def test_targets_that_could_steer_paths_or_blow_limits_are_refused(
    changes: dict[str, object], field: str
) -> None:
    base: dict[str, object] = {
        "name": "demo",
        "version": "1.0.0",
        "digest": DIGEST,
        "signature": b"{}",
    }
    with pytest.raises(InvalidTargetError) as caught:
        ReleaseTarget(**{**base, **changes})  # type: ignore[arg-type]
    assert caught.value.field == field


def test_a_target_is_a_private_frozen_copy_and_round_trips() -> None:
    config = {"rate": 5, "nested": {"a": [1, 2]}}
    target = ReleaseTarget("demo", "1.2.0-rc.1", DIGEST, b"sig", config=config, env={"PORT": "80"})
    config["rate"] = 6
    assert target.config["rate"] == 5
    with pytest.raises(TypeError):
        target.config["rate"] = 7  # type: ignore[index]
    assert ReleaseTarget.from_json(target.to_json()) == target
    assert target.install_name == "1.2.0-rc.1-abababababab"


def test_crash_points_name_every_state_and_are_unique() -> None:
    points = crash_points()
    assert len(points) == len(set(points))
    for state in updater_pkg.State:
        assert f"enter:{state.name}" in points
    assert {"download:chunk", "unpack", "after-switch", "before-switch"} <= set(points)


def test_the_crash_hook_is_off_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CRASH_ENV, raising=False)
    assert crash_hook_from_env() is None
    monkeypatch.setenv(CRASH_ENV, "  ")
    assert crash_hook_from_env() is None


def test_a_typo_in_the_crash_point_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CRASH_ENV, "enter:HEALTHY")
    with pytest.raises(ValueError, match="unknown crash point"):
        crash_hook_from_env()
    monkeypatch.setenv(CRASH_ENV, "download:chunk:0")
    with pytest.raises(ValueError, match=">= 1"):
        crash_hook_from_env()


def test_the_crash_hook_kills_at_the_nth_occurrence(monkeypatch: pytest.MonkeyPatch) -> None:
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append((pid, sig)))
    monkeypatch.setenv(CRASH_ENV, "download:chunk:3")
    hook = crash_hook_from_env()
    assert hook is not None
    monkeypatch.setenv(CRASH_ENV, "enter:DONE")  # read once: later changes do not matter
    for point in ["download:chunk", "enter:VERIFY", "download:chunk"]:
        hook(point)
    assert kills == []
    hook("download:chunk")
    assert kills == [(os.getpid(), signal.SIGKILL)]
    hook("download:chunk")
    assert len(kills) == 1
    assert _crash.parse_crash_spec("enter:HEALTH") == ("enter:HEALTH", 1)


@pytest.mark.parametrize(
    "bad",
    [{"download_attempts": 0}, {"max_saves": 0}, {"max_install_files": 0}, {"health_slack_s": -1}],
)
def test_update_limits_refuse_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        UpdateLimits(**bad)  # type: ignore[arg-type]


def test_blocking_work_is_not_abandoned_when_cancelled() -> None:
    import threading
    import time

    from fogline.agent.updater._blocking import in_thread

    started, finished = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.2)  # the blocking work
        finished.set()

    async def scenario() -> bool:
        task = asyncio.ensure_future(in_thread(slow))
        await wait_until_async(started.is_set, 5, "the work begun")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return finished.is_set()

    # The cancellation only completes once the thread is done.
    assert asyncio.run(scenario()) is True
