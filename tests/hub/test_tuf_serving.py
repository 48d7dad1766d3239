"""TUF metadata as devices fetch it: answered by the device hot path from the
hub's cache of stored versions, never stale. Every worker of a hub serves a
new timestamp, snapshot, module role or root as soon as it is stored, and
the device is authenticated on every request."""

import json
from pathlib import Path

import httpx

from tests.support.device import TestDevice, enroll_device
from tests.support.processes import HubProcess, start_hub
from tests.support.tuf import tuf_release, tuf_repository, tuf_targetinfo

# New connections per check: each may land on either worker of a 2-worker hub.
_CONNECTIONS = 6


def _fetch(device: TestDevice, name: str) -> httpx.Response:
    with device.client() as client:  # a new connection each time
        return client.get(f"/v1/tuf/metadata/{name}")


def _signed(device: TestDevice, name: str) -> dict:
    response = _fetch(device, name)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    return dict(json.loads(response.content)["signed"])


def test_every_worker_serves_new_metadata_at_once_after_a_release_and_a_root_rotation(
    tmp_path: Path,
) -> None:
    hub = start_hub(tmp_path / "hub", extra_args=["--workers", "2"])
    try:
        _check_fresh_metadata(hub, tmp_path)
    finally:
        hub.stop()


def _check_fresh_metadata(hub: HubProcess, tmp_path: Path) -> None:
    repo = tuf_repository(hub, tmp_path / "tuf")
    tuf_release(hub, tmp_path, [repo.keys / "rel.key"], "1.0.0", 8080)
    device = enroll_device(hub, hub.create_claim(), "dev-1", tmp_path)
    pinned = (repo.offline / "root.json").read_bytes()
    assert tuf_targetinfo(device, pinned, tmp_path / "ngclient", "web/1.0.0") is not None

    # Every worker has served (and cached) the current versions.
    before = {_signed(device, "timestamp.json")["version"] for _ in range(_CONNECTIONS)}
    assert len(before) == 1
    snapshot_version = _signed(device, "timestamp.json")["meta"]["snapshot.json"]["version"]
    snapshot = _signed(device, f"{snapshot_version}.snapshot.json")
    web_before = snapshot["meta"]["module-web.json"]["version"]
    for _ in range(_CONNECTIONS):
        assert _fetch(device, "2.root.json").status_code == 404

    # A new release: a new module role, snapshot and timestamp, each served
    # by every worker on the next request (the ngclient of a node that
    # refreshed just before must find the new release, not the old metadata).
    tuf_release(hub, tmp_path, [repo.keys / "rel.key"], "1.1.0", 8080)
    for _ in range(_CONNECTIONS):
        timestamp = _signed(device, "timestamp.json")
        assert timestamp["version"] > max(before)
        new_snapshot = timestamp["meta"]["snapshot.json"]["version"]
        assert new_snapshot > snapshot_version
        meta = _signed(device, f"{new_snapshot}.snapshot.json")["meta"]
        assert meta["module-web.json"]["version"] == web_before + 1
    info = tuf_targetinfo(device, pinned, tmp_path / "ngclient", "web/1.1.0")
    assert info is not None
    # An old version is still served as stored (a node walking versions).
    assert _signed(device, f"{snapshot_version}.snapshot.json") == snapshot

    # A root rotation: the version every refresh probed for (and was told
    # 404) is served as soon as it is stored.
    hub.cli("tuf", "rotate-root", "--dir", str(repo.offline), "--keys", "2", "--threshold", "2")
    hub.cli("tuf", "push", "--dir", str(repo.offline))
    rotated = (repo.offline / "2.root.json").read_bytes()
    for _ in range(_CONNECTIONS):
        response = _fetch(device, "2.root.json")
        assert response.status_code == 200, response.text
        assert response.content == rotated
    assert tuf_targetinfo(device, pinned, tmp_path / "ngclient", "web/1.1.0") is not None


def test_device_metadata_requests_are_authenticated_each_time(
    hub: HubProcess, tmp_path: Path
) -> None:
    tuf_repository(hub, tmp_path / "tuf", module="auth-web")
    device = enroll_device(hub, hub.create_claim(), "tuf-reader", tmp_path)
    with device.client() as client:
        assert client.get("/v1/tuf/metadata/timestamp.json").status_code == 200
        assert client.get("/v1/tuf/metadata/1.root.json").status_code == 200
        missing = client.get("/v1/tuf/metadata/999.root.json")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        bad = client.get("/v1/tuf/metadata/hub.db")
        assert bad.status_code == 404
        # Revoked while its connection stays open: the next request is refused.
        hub.cli("devices", "revoke", "tuf-reader")
        for name in ("timestamp.json", "1.root.json"):
            refused = client.get(f"/v1/tuf/metadata/{name}")
            assert refused.status_code == 403, refused.text
            assert "revoked" in refused.json()["message"]
