"""Artifact offload end to end (issue #18): a real hub started with
`--artifact-offload` authorises each download and redirects it, a real nginx
configured by `fogline hub nginx-config` serves the bytes, and a real agent
installs what it got only when digest and signature check out.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.modules import calibration_payload, deployment, push_calibrated_releases
from tests.support.nginx import Nginx, start_nginx
from tests.support.processes import AgentProcess, HubProcess, free_port, start_hub, wait_until

_ROUTE = "/v1/artifacts/{digest}"


@dataclass
class Fleet:
    hub: HubProcess
    nginx: Nginx
    port: int  # the module's
    digests: dict[str, str]  # version -> archive digest
    root: Path


def _uri(digest: str) -> str:
    hexdigest = digest.removeprefix("sha256:")
    return f"/sha256/{hexdigest[:2]}/{hexdigest[2:]}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("offload")
    nginx_port = free_port()
    hub = start_hub(
        root / "hub", extra_args=["--artifact-offload", f"https://127.0.0.1:{nginx_port}"]
    )
    nginx = start_nginx(hub.data_dir, root / "nginx", nginx_port)
    try:
        port = free_port()
        digests = push_calibrated_releases(hub, root, ("1.0.0", "2.0.0", "3.0.0"), port)
        yield Fleet(hub, nginx, port, digests, root)
    finally:
        nginx.stop()
        hub.stop()


def _served(port: int) -> str | None:
    try:
        return str(httpx.get(f"http://127.0.0.1:{port}/", timeout=1).json()["version"])
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def _apply(fleet: Fleet, version: str) -> None:
    manifest = fleet.root / "web.yaml"
    manifest.write_text(deployment(version))
    fleet.hub.cli("apply", "-f", str(manifest))


def _hub_answers(hub: HubProcess, status: str) -> float:
    try:
        return hub.metric("fogline_hub_requests_total", method="GET", route=_ROUTE, status=status)
    except AssertionError:  # never counted: absent from /metrics
        return 0.0


@pytest.mark.timeout(240)
def test_a_node_downloads_through_nginx_and_refuses_corrupted_bytes(fleet: Fleet) -> None:
    hub, nginx = fleet.hub, fleet.nginx
    node = fleet.root / "node"
    agent = AgentProcess(node, hub, "node-1", hub.create_claim())
    agent.start()
    try:
        agent.wait_enrolled()

        # First install: the full archive, from nginx; the hub only redirected.
        _apply(fleet, "1.0.0")
        wait_until(lambda: _served(fleet.port) == "1.0.0", 60, "web 1.0.0 served")
        size = (fleet.root / "web-1.0.0.tar.zst").stat().st_size
        assert (200, size) in nginx.served(_uri(fleet.digests["1.0.0"]))
        assert _hub_answers(hub, "307") >= 1
        assert _hub_answers(hub, "200") == 0 and _hub_answers(hub, "206") == 0

        # An update: the delta, made by the hub, served by nginx too.
        _apply(fleet, "2.0.0")
        wait_until(lambda: _served(fleet.port) == "2.0.0", 60, "web 2.0.0 served")
        v2, v1 = (fleet.digests[v].removeprefix("sha256:") for v in ("2.0.0", "1.0.0"))
        assert [status for status, _ in nginx.served(f"/deltas/{v2}/{v1}.zst")] == [200]
        assert "update.delta_used" in agent.log_path.read_text(errors="replace")

        # nginx serving other bytes than the digest (a corrupted disk, a
        # tampered mirror): the node downloads them, checks, refuses them.
        stored = hub.data_dir / "artifacts" / _uri(fleet.digests["3.0.0"]).lstrip("/")
        data = bytearray(stored.read_bytes())
        data[len(data) // 2] ^= 0xFF
        stored.write_bytes(bytes(data))
        _apply(fleet, "3.0.0")
        wait_until(
            lambda: "digest mismatch" in agent.log_path.read_text(errors="replace"),
            60,
            "the node to refuse the corrupted archive",
        )
        assert any(s == 200 for s, _ in nginx.served(_uri(fleet.digests["3.0.0"])))
        assert _served(fleet.port) == "2.0.0"
        current = node / "updater" / "modules" / "web" / "current" / "calibration.py"
        assert current.read_text() == calibration_payload("2.0.0")
        assert _hub_answers(hub, "200") == 0  # no byte of an archive came from the hub
    finally:
        agent.stop()
