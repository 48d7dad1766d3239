"""Drift checks over trees a module shaped: any depth, and one module's broken
check never stops the others (nor the agent's drift loop)."""

import asyncio
import os
from pathlib import Path
from typing import Any

from fogline.agent.modules import (
    Drift,
    FileBaselines,
    ModuleManager,
    SupervisorActivator,
    file_digests,
)
from fogline.agent.supervisor import MemoryRuntime, Supervisor
from fogline.agent.updater import InstalledRelease, MemoryArtifactSource, ReleaseTarget
from fogline.protocol import DriftKind
from tests.support.deep import deep_tree

DIGEST = "sha256:" + "ab" * 32
DEPTH = 5000


def test_file_digests_walks_a_5000_level_tree(tmp_path: Path) -> None:
    with deep_tree(tmp_path / "install", DEPTH, files_every=1000) as install:
        digests = file_digests(install)
    assert len(digests) == DEPTH // 1000 + 1  # the files and the one symlink
    assert digests["l"] == "link:f"
    assert "/".join(["d"] * 4000 + ["f"]) in digests


def test_a_changed_file_5000_levels_down_is_drift(tmp_path: Path) -> None:
    with deep_tree(tmp_path / "install", DEPTH, files_every=2500) as install:
        baselines = FileBaselines(tmp_path / "drift")
        assert baselines.check("web", DIGEST, install) is None  # records the baseline
        # Rewrite the deepest file through descriptors: its path is over PATH_MAX.
        fd = os.open(install, os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(2500):
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        file_fd = os.open("f", os.O_WRONLY | os.O_TRUNC, dir_fd=fd)
        os.write(file_fd, b"tampered\n")
        os.close(file_fd)
        os.close(fd)
        detail = baselines.check("web", DIGEST, install)
    assert detail is not None and detail.startswith("changed: d/d/")


def test_a_fifo_in_an_install_is_reported_not_opened(tmp_path: Path) -> None:
    install = tmp_path / "install"
    install.mkdir()
    os.mkfifo(install / "pipe")  # opening it for reading would block forever
    assert file_digests(install) == {"pipe": "special"}


def test_a_baseline_of_the_old_format_is_recorded_again_not_compared(tmp_path: Path) -> None:
    install = tmp_path / "install"
    install.mkdir()
    (install / "lib").mkdir()
    (install / "lib-link").symlink_to("lib")  # os.walk left links to directories out
    baselines = FileBaselines(tmp_path / "drift")
    baselines.directory.mkdir()
    (baselines.directory / "web.json").write_text(f'{{"release": "{DIGEST}", "files": {{}}}}')
    assert baselines.check("web", DIGEST, install) is None
    assert baselines.check("web", DIGEST, install) is None


class _Updater:
    """Just what check_drift asks of the updater: one module's records are broken."""

    def __init__(self, installs: dict[str, Path]) -> None:
        self.installs = installs

    def installed(self, name: str) -> InstalledRelease | None:
        if name == "broken":
            raise RecursionError("maximum recursion depth exceeded")
        return InstalledRelease(_target(name), self.installs[name].name)

    def install_path(self, name: str) -> Path | None:
        return self.installs[name]


def _target(name: str) -> ReleaseTarget:
    return ReleaseTarget(name, "1.0.0", DIGEST, b"")


def test_one_modules_failing_drift_check_is_its_drift_and_the_others_are_checked(
    tmp_path: Path,
) -> None:
    with deep_tree(tmp_path / "deep-install", DEPTH, files_every=2500) as install:
        found, manager = _check_drift_with_a_broken_module(tmp_path, install)
    kinds = {(d.module, d.kind) for d in found}
    # The deep module was checked (its config file is missing: config drift),
    # the broken one reports why its check failed; nothing was raised.
    assert ("broken", "error") in kinds and ("deep", "config") in kinds
    [error] = [d for d in found if d.kind == "error"]
    assert "RecursionError" in error.detail
    assert manager.statuses().drift[0].kind is DriftKind.ERROR


def _check_drift_with_a_broken_module(
    tmp_path: Path, install: Path
) -> tuple[list[Drift], ModuleManager]:
    supervisor = Supervisor(MemoryRuntime(), tmp_path / "logs")
    activator = SupervisorActivator(supervisor, tmp_path / "config")
    changes: list[Any] = []
    manager = ModuleManager(
        lambda _manager: _Updater({"deep": install}),  # type: ignore[arg-type,return-value]
        supervisor,
        activator,
        {},
        lambda: changes.append(1),
        baselines=FileBaselines(tmp_path / "drift"),
        source=MemoryArtifactSource({}),
        scratch_dir=tmp_path / "repair",
    )
    manager.targets = {"broken": _target("broken"), "deep": _target("deep")}
    manager.drift_policy = "correct"
    return asyncio.run(manager.check_drift()), manager
