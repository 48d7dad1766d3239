"""Delta updates end to end: a real hub serves a delta, a real agent rebuilds
the release from its kept archive, checks digest and signature, and falls
back to the full archive whenever the delta path cannot give the right bytes.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.modules import calibration_payload, deployment, push_calibrated_releases
from tests.support.processes import AgentProcess, HubProcess, free_port, start_hub, wait_until

_FULL_ROUTE = {"method": "GET", "route": "/v1/artifacts/{digest}", "status": "200"}


@dataclass
class Fleet:
    hub: HubProcess
    port: int
    digests: dict[str, str]  # version -> archive digest
    root: Path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("delta")
    hub = start_hub(root / "hub")
    try:
        port = free_port()
        digests = push_calibrated_releases(hub, root, ("1.0.0", "2.0.0", "3.0.0", "4.0.0"), port)
        yield Fleet(hub, port, digests, root)
    finally:
        hub.stop()


def _served(port: int) -> str | None:
    try:
        return str(httpx.get(f"http://127.0.0.1:{port}/", timeout=1).json()["version"])
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def _apply(fleet: Fleet, version: str, device: str = "node-1") -> None:
    manifest = fleet.root / "web.yaml"
    manifest.write_text(deployment(version))
    fleet.hub.cli("apply", "-f", str(manifest))
    wait_until(lambda: _served(fleet.port) == version, 60, f"web {version} served")
    wait_until(
        lambda: fleet.hub.device(device)["sync"]["status"] == "in-sync", 30, f"in-sync {version}"
    )


def _counter(hub: HubProcess, sample: str, **labels: str) -> float:
    try:
        return hub.metric(sample, **labels)
    except AssertionError:  # not incremented yet: absent from /metrics
        return 0.0


def _full_downloads(hub: HubProcess) -> float:
    return _counter(hub, "fogline_hub_requests_total", **_FULL_ROUTE)


def _agent_log(agent: AgentProcess) -> str:
    return agent.log_path.read_text(errors="replace")


@pytest.mark.timeout(240)
def test_a_node_updates_through_a_delta_and_falls_back_on_garbage(fleet: Fleet) -> None:
    hub = fleet.hub
    node = fleet.root / "node"
    agent = AgentProcess(node, hub, "node-1", hub.create_claim())
    agent.start()
    try:
        agent.wait_enrolled()
        _apply(fleet, "1.0.0")  # first install: the full archive, kept as the next base
        base = node / "updater" / "bases" / "web" / f"{fleet.digests['1.0.0']}.tar.zst"
        assert base.is_file()
        full_before = _full_downloads(hub)

        # v1 -> v2: the hub makes a delta, the node rebuilds v2 from it.
        _apply(fleet, "2.0.0")
        assert _counter(hub, "fogline_hub_artifact_deltas_total", result="served") == 1
        assert _full_downloads(hub) == full_before  # the archive itself was never fetched
        assert "update.delta_used" in _agent_log(agent)
        delta = next((hub.data_dir / "artifacts" / "deltas").glob("*/*.zst"))
        archive_size = (fleet.root / "web-2.0.0.tar.zst").stat().st_size
        assert delta.stat().st_size < archive_size / 10
        kept = node / "updater" / "bases" / "web"
        assert [p.name for p in kept.iterdir()] == [f"{fleet.digests['2.0.0']}.tar.zst"]
        installed = node / "updater" / "modules" / "web" / "current" / "calibration.py"
        assert installed.read_text() == calibration_payload("2.0.0")

        # v2 -> v3 with a garbage delta planted in the hub's cache: the node
        # refuses what it rebuilds, downloads the full archive, ends on v3.
        v3, v2 = (fleet.digests[v].removeprefix("sha256:") for v in ("3.0.0", "2.0.0"))
        planted = hub.data_dir / "artifacts" / "deltas" / v3 / f"{v2}.zst"
        planted.parent.mkdir(parents=True)
        planted.write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 100)
        _apply(fleet, "3.0.0")
        assert _counter(hub, "fogline_hub_artifact_deltas_total", result="served") == 2
        assert _full_downloads(hub) == full_before + 1
        assert "update.delta_unused" in _agent_log(agent)
        assert not list((node / "updater" / "downloads").iterdir())
        assert (
            node / "updater" / "modules" / "web" / "current" / "calibration.py"
        ).read_text() == (calibration_payload("3.0.0"))
    finally:
        agent.stop()


@pytest.mark.timeout(240)
def test_a_node_without_its_base_archive_downloads_the_full_release(fleet: Fleet) -> None:
    hub = fleet.hub
    node = fleet.root / "node-nobase"
    agent = AgentProcess(node, hub, "node-2", hub.create_claim())
    agent.start()
    try:
        agent.wait_enrolled()
        _apply(fleet, "3.0.0", "node-2")
        kept = node / "updater" / "bases" / "web"
        for path in kept.iterdir():
            path.unlink()  # lost: the node cannot ask for a delta
        asked = sum(
            _counter(hub, "fogline_hub_artifact_deltas_total", result=r) for r in ("served", "none")
        )
        full_before = _full_downloads(hub)
        _apply(fleet, "4.0.0", "node-2")
        assert _full_downloads(hub) == full_before + 1
        assert asked == sum(
            _counter(hub, "fogline_hub_artifact_deltas_total", result=r) for r in ("served", "none")
        )
        assert [p.name for p in kept.iterdir()] == [f"{fleet.digests['4.0.0']}.tar.zst"]
    finally:
        agent.stop()
