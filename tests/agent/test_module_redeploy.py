"""A module removed from the desired state and deployed again with the same
release runs again: the module manager over a real updater (real files, a
real signed release) and a real supervisor running real processes.

Removal stops the module and keeps its install and installed record, so the
same release comes back without a download (and an older one stays refused
as a downgrade); a config changed while it was absent goes through the
health gate like any config change.
"""

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from fogline.agent.modules import FileBaselines, ModuleManager, SupervisorActivator
from fogline.agent.supervisor import ProcessRuntime, Supervisor
from fogline.agent.updater import (
    MemoryArtifactSource,
    ReleaseTarget,
    State,
    Updater,
)
from fogline.artifact import ReleaseKeyPair, build_release, generate_release_key, sign_release
from fogline.protocol import DesiredDocument, DesiredModule, DesiredStateDoc
from tests.agent.supervisor._support import status_where, supervising

NAME = "svc"
# Writes its pid and config where the test can read them, then idles.
APP = """\
import json, os, pathlib, time
config = json.loads(pathlib.Path(os.environ["FOGLINE_CONFIG"]).read_text())
if config.get("exit"):  # a config this module cannot run with
    raise SystemExit(3)
pathlib.Path(os.environ["HOME"], "seen.json").write_text(
    json.dumps({"pid": os.getpid(), "config": config})
)
time.sleep(600)
"""


@dataclass(frozen=True)
class _Release:
    version: str
    digest: str
    envelope: dict[str, object]
    blob: bytes


def _release(work: Path, version: str, key: ReleaseKeyPair) -> _Release:
    src = work / f"src-{version}"
    src.mkdir(parents=True)
    (src / "fogline-module.yaml").write_text(
        f"name: {NAME}\nversion: {version}\ncommand: [{sys.executable}, app.py]\n"
        "health: {uptime: 300ms, interval: 100ms}\nstartGrace: 0s\nstopGrace: 1s\narchitectures: [any]\n"
    )
    (src / "app.py").write_text(APP)
    info = build_release(src, work / f"{NAME}-{version}.tar.zst")
    envelope = sign_release(info.path, key)
    return _Release(version, info.digest, json.loads(envelope.to_json()), info.path.read_bytes())


@pytest.fixture(scope="module")
def key() -> ReleaseKeyPair:
    return generate_release_key()


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory, key: ReleaseKeyPair) -> list[_Release]:
    work = tmp_path_factory.mktemp("redeploy-releases")
    return [_release(work, v, key) for v in ("1.0.0", "2.0.0")]


def _doc(key: ReleaseKeyPair, *modules: tuple[_Release, dict[str, object]]) -> DesiredStateDoc:
    public = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    document = DesiredDocument(
        modules=[
            DesiredModule(
                name=NAME,
                version=r.version,
                digest=r.digest,
                signature=r.envelope,
                config=config,
            )
            for r, config in modules
        ],
        releaseKeys={"ci": base64.b64encode(public).decode()},
    )
    return DesiredStateDoc(revision=document.revision(), document=document)


@dataclass
class _Node:
    manager: ModuleManager
    supervisor: Supervisor
    source: MemoryArtifactSource
    root: Path

    def seen(self) -> dict[str, object]:
        """What the running module wrote at its start: pid and config."""
        return json.loads((self.root / "module-data" / NAME / "seen.json").read_text())

    async def healthy(self, what: str) -> int:
        status = await status_where(
            self.supervisor, NAME, lambda s: s.state == "healthy", what, timeout_s=15
        )
        report = self.manager.statuses().modules[NAME]
        assert report.state == "healthy" and report.pid == status.pid
        assert status.pid is not None
        return status.pid

    def fetched(self) -> list[str]:
        return [digest for digest, _offset in self.source.fetches]


@asynccontextmanager
async def _node(
    root: Path, releases: list[_Release], wanted: set[str] | None = None
) -> AsyncIterator[_Node]:
    supervisor = Supervisor(ProcessRuntime(), root / "logs", min_stable_s=0.2)
    activator = SupervisorActivator(supervisor, root / "modules-config", node_root=root)
    source = MemoryArtifactSource({r.digest: r.blob for r in releases})

    def make_updater(manager: ModuleManager) -> Updater:
        return Updater(
            root / "updater",
            source=source,
            activator=activator,
            trusted_keys=manager.trusted_keys,
            key_scopes=manager.key_scopes,
            on_progress=manager.on_progress,
        )

    manager = ModuleManager(
        make_updater,
        supervisor,
        activator,
        {},
        lambda: None,
        baselines=FileBaselines(root / "state" / "drift"),
        source=source,
        scratch_dir=root / "state" / "repair",
    )
    async with supervising(supervisor):
        await manager.recover(wanted)
        yield _Node(manager, supervisor, source, root)


def _run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_a_module_removed_and_deployed_again_with_the_same_release_runs_again(
    tmp_path: Path, key: ReleaseKeyPair, releases: list[_Release]
) -> None:
    v1 = releases[0]
    config = {"greeting": "hi"}

    async def scenario() -> None:
        async with _node(tmp_path / "node", releases) as node:
            await node.manager.apply(_doc(key, (v1, config)))
            first = await node.healthy("v1 healthy")
            assert node.fetched() == [v1.digest]

            await node.manager.apply(_doc(key))  # removed
            assert NAME not in node.supervisor.statuses()
            assert NAME not in node.manager.statuses().modules
            # Kept: the install and its record (re-adding needs no download).
            installed = node.manager.updater.installed(NAME)
            assert installed is not None and installed.target.digest == v1.digest

            await node.manager.apply(_doc(key, (v1, config)))  # back, same release
            again = await node.healthy("v1 running again")
            assert again != first and node.seen() == {"pid": again, "config": config}
            outcome = node.manager.statuses().updates[NAME]
            assert (outcome.version, outcome.state, outcome.error) == ("1.0.0", State.DONE, None)
            assert node.manager.progress[NAME].detail == "installed; started again"
            assert node.fetched() == [v1.digest]  # not downloaded again

            # Applied once more: it runs, so nothing is restarted.
            await node.manager.apply(_doc(key, (v1, config)))
            await asyncio.sleep(0.3)
            assert await node.healthy("still the same process") == again

    _run(scenario())


def test_a_config_changed_while_the_module_was_removed_applies_when_it_comes_back(
    tmp_path: Path, key: ReleaseKeyPair, releases: list[_Release]
) -> None:
    v1 = releases[0]

    async def scenario() -> None:
        async with _node(tmp_path / "node", releases) as node:
            await node.manager.apply(_doc(key, (v1, {"level": 1})))
            await node.healthy("v1 healthy")
            await node.manager.apply(_doc(key))
            assert NAME not in node.supervisor.statuses()

            await node.manager.apply(_doc(key, (v1, {"level": 2})))
            pid = await node.healthy("v1 with the new config")
            assert node.seen() == {"pid": pid, "config": {"level": 2}}
            installed = node.manager.updater.installed(NAME)
            assert installed is not None and dict(installed.target.config) == {"level": 2}
            assert node.manager.statuses().updates[NAME].state is State.DONE
            assert node.fetched() == [v1.digest]

    _run(scenario())


def test_a_config_that_fails_its_health_gate_after_a_removal_rolls_back_to_the_old_one(
    tmp_path: Path, key: ReleaseKeyPair, releases: list[_Release]
) -> None:
    v1 = releases[0]

    async def scenario() -> None:
        async with _node(tmp_path / "node", releases) as node:
            await node.manager.apply(_doc(key, (v1, {"level": 1})))
            await node.healthy("v1 healthy")
            await node.manager.apply(_doc(key))
            with pytest.raises(RuntimeError, match=f"{NAME} 1.0.0"):
                await node.manager.apply(_doc(key, (v1, {"exit": True})))
            assert node.manager.statuses().updates[NAME].state is State.FAILED
            pid = await node.healthy("running with the config it had")
            assert node.seen() == {"pid": pid, "config": {"level": 1}}
            installed = node.manager.updater.installed(NAME)
            assert installed is not None and dict(installed.target.config) == {"level": 1}

    _run(scenario())


def test_a_removed_module_keeps_its_downgrade_protection_when_it_comes_back(
    tmp_path: Path, key: ReleaseKeyPair, releases: list[_Release]
) -> None:
    """Removing a module and adding an older release back is no way around the
    downgrade rule: the kept record still says what was installed."""
    v1, v2 = releases

    async def scenario() -> None:
        async with _node(tmp_path / "node", releases) as node:
            await node.manager.apply(_doc(key, (v2, {})))
            await node.healthy("v2 healthy")
            await node.manager.apply(_doc(key))
            with pytest.raises(RuntimeError, match="downgrade"):
                await node.manager.apply(_doc(key, (v1, {})))
            assert NAME not in node.supervisor.statuses()
            assert node.fetched() == [v2.digest]
            # The same release as before comes back at once.
            await node.manager.apply(_doc(key, (v2, {})))
            await node.healthy("v2 running again")

    _run(scenario())


def test_a_module_that_cannot_start_again_is_a_failed_update_tried_at_the_next_apply(
    tmp_path: Path, key: ReleaseKeyPair, releases: list[_Release]
) -> None:
    """The install was damaged while the module was away: coming back fails,
    reported, not recorded as a failed release; repaired, the next apply starts it."""
    v1 = releases[0]

    async def scenario() -> None:
        async with _node(tmp_path / "node", releases) as node:
            await node.manager.apply(_doc(key, (v1, {})))
            await node.healthy("v1 healthy")
            await node.manager.apply(_doc(key))
            updater = node.manager.updater
            spec = updater.install_path(NAME)
            assert spec is not None
            module_file = spec / "fogline-module.yaml"
            text = module_file.read_text()
            module_file.write_text("not: [a module file")
            with pytest.raises(RuntimeError, match=f"{NAME} 1.0.0"):
                await node.manager.apply(_doc(key, (v1, {})))
            outcome = node.manager.statuses().updates[NAME]
            assert outcome.state is State.FAILED and outcome.error
            assert updater.failure(NAME) is None  # not remembered: tried again
            assert NAME not in node.supervisor.statuses()
            module_file.write_text(text)
            await node.manager.apply(_doc(key, (v1, {})))
            await node.healthy("v1 running after the repair")
            assert node.fetched() == [v1.digest]

    _run(scenario())


def test_recover_counts_the_modules_it_started_as_running(
    tmp_path: Path, key: ReleaseKeyPair, releases: list[_Release]
) -> None:
    """After an agent restart, the first apply of the same release leaves the
    module recover() started alone: it is not started a second time."""
    v1 = releases[0]

    async def first_run() -> None:
        async with _node(tmp_path / "node", releases) as node:
            await node.manager.apply(_doc(key, (v1, {})))
            await node.healthy("v1 healthy")

    async def second_run() -> None:
        async with _node(tmp_path / "node", releases) as node:
            pid = await node.healthy("started by recover")
            await node.manager.apply(_doc(key, (v1, {})))
            assert node.manager.progress[NAME].detail == "already installed"
            assert await node.healthy("the same process") == pid

    _run(first_run())
    _run(second_run())


def test_a_removed_module_does_not_run_again_when_the_agent_restarts(
    tmp_path: Path, key: ReleaseKeyPair, releases: list[_Release]
) -> None:
    """recover() starts only what the last desired state lists; without one
    (a node that lost it), every installed module, as before."""
    v1 = releases[0]

    async def deploy_and_remove() -> None:
        async with _node(tmp_path / "node", releases) as node:
            await node.manager.apply(_doc(key, (v1, {})))
            await node.healthy("v1 healthy")
            await node.manager.apply(_doc(key))

    async def boot(wanted: set[str] | None, *, deploy_again: bool = False) -> bool:
        """Whether recover() started the module (it returns after the first start)."""
        async with _node(tmp_path / "node", releases, wanted) as node:
            started = NAME in node.supervisor.statuses()
            assert started == (NAME in node.manager.statuses().modules)
            if deploy_again:
                await node.manager.apply(_doc(key, (v1, {})))
                await node.healthy("started by the apply")
                assert node.manager.progress[NAME].detail == "installed; started again"
            return started

    _run(deploy_and_remove())
    assert asyncio.run(boot(set(), deploy_again=True)) is False
    assert asyncio.run(boot({"other"})) is False
    assert asyncio.run(boot({NAME})) is True
    assert asyncio.run(boot(None)) is True  # no desired state on disk: all, as before


def test_the_updater_restarts_only_what_it_stopped(
    tmp_path: Path, key: ReleaseKeyPair, releases: list[_Release]
) -> None:
    """Updater.stop keeps the record; ensure of the same target starts it again."""
    v1 = releases[0]
    target = ReleaseTarget(
        NAME, v1.version, v1.digest, json.dumps(v1.envelope).encode(), config={"a": 1}
    )

    async def scenario() -> None:
        async with _node(tmp_path / "node", releases) as node:
            node.manager.use_document_keys(_doc(key).document)
            updater = node.manager.updater
            assert (await updater.ensure(target)).state is State.DONE
            await node.healthy("installed and running")
            await updater.stop(NAME)
            assert NAME not in node.manager.activator.desired
            assert updater.installed(NAME) is not None
            await updater.stop(NAME)  # stopping a stopped module: nothing happens
            result = await updater.ensure(target)
            assert result.state is State.DONE
            await node.healthy("running again")
            assert node.fetched() == [v1.digest]

    _run(scenario())


def test_a_release_that_failed_with_a_bad_config_installs_with_the_corrected_one(
    tmp_path: Path, key: ReleaseKeyPair, releases: list[_Release]
) -> None:
    """An operator's bad config fails v2's health gate and v1 comes back;
    the corrected config for the same v2 is tried and runs, while the bad
    one stays remembered (no retry loop). Before, the node answered every
    later config of v2 with the first failure until another release was
    targeted."""
    v1, v2 = releases

    async def scenario() -> None:
        async with _node(tmp_path / "node", releases) as node:
            await node.manager.apply(_doc(key, (v1, {"greeting": "hi"})))
            await node.healthy("v1 healthy")

            with pytest.raises(RuntimeError, match=r"svc 2\.0\.0: not healthy"):
                await node.manager.apply(_doc(key, (v2, {"exit": True})))
            outcome = node.manager.statuses().updates[NAME]
            assert (outcome.version, outcome.state) == ("2.0.0", State.FAILED)
            await node.healthy("v1 back")
            assert node.seen()["config"] == {"greeting": "hi"}
            with pytest.raises(RuntimeError, match="not healthy"):  # the same: remembered
                await node.manager.apply(_doc(key, (v2, {"exit": True})))
            assert node.manager.progress[NAME].detail.startswith("not retried")

            fixed = {"greeting": "hello"}
            await node.manager.apply(_doc(key, (v2, fixed)))
            outcome = node.manager.statuses().updates[NAME]
            assert (outcome.version, outcome.state, outcome.error) == ("2.0.0", State.DONE, None)
            pid = await node.healthy("v2 with the corrected config")
            assert node.seen() == {"pid": pid, "config": fixed}
            assert node.manager.updater.failure(NAME) is None

    _run(scenario())
