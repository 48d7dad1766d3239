"""Endless data (TUF's attack list, issue #16) against a real hub and a real
agent. The thief holds the hub's disk and database:

- it swaps a release's stored archive for the true bytes followed by
  megabytes more and raises the release's size in the database (the
  desired state then names the larger size too): only the length TUF
  signs is left to stop the download;
- it serves a timestamp of megabytes (a new version in the database): the
  node reads no more than ngclient's bound for a timestamp, 16 KiB (it
  used to read up to its own 4 MiB cap first).

Each time the node refuses the update, reports why, and keeps its release.
"""

import datetime as dt
import hashlib
import sqlite3
from pathlib import Path

import httpx

from tests.support.modules import deployment
from tests.support.processes import AgentProcess, HubProcess, free_port, wait_until
from tests.support.tuf import tuf_release, tuf_repository

_EXTRA_BYTES = 8 * 1024 * 1024
_TIMESTAMP_MAX_BYTES = 16384  # ngclient's UpdaterConfig.timestamp_max_length


def _served(port: int) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return None


def _update(hub: HubProcess, name: str) -> dict:
    modules = hub.device(name).get("reported", {}).get("modules") or {}
    return dict((modules.get("updates") or {}).get("web") or {})


def _stored_artifact(hub: HubProcess, digest: str) -> Path:
    hexdigest = digest.removeprefix("sha256:")
    found = [p for p in hub.data_dir.rglob(hexdigest[2:]) if p.parent.name == hexdigest[:2]]
    assert len(found) == 1, found
    return found[0]


def _serve_endless_timestamp(hub: HubProcess, size: int) -> None:
    """A timestamp of `size` bytes as the hub's newest, as its database's thief can."""
    expires = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    with sqlite3.connect(hub.data_dir / "hub.db") as db:
        (version,) = db.execute(
            "SELECT MAX(version) FROM tuf_metadata WHERE role = 'timestamp'"
        ).fetchone()
        db.execute(
            "INSERT INTO tuf_metadata (role, version, body, expires, created_at) "
            "VALUES ('timestamp', ?, ?, ?, ?)",
            (version + 1, b"{" + b" " * size, expires, expires - dt.timedelta(days=1)),
        )


def test_a_hub_serving_more_bytes_than_tuf_allows_gets_the_update_refused(
    hub: HubProcess, tmp_path: Path
) -> None:
    repo = tuf_repository(hub, tmp_path / "tuf")
    key = repo.keys / "rel.key"
    port = free_port()
    tuf_release(hub, tmp_path, [key], "1.0.0", port)
    v2 = tuf_release(hub, tmp_path, [key], "2.0.0", port)
    signed = v2.read_bytes()
    digest = f"sha256:{hashlib.sha256(signed).hexdigest()}"
    agent = AgentProcess(tmp_path / "node", hub, "node-1", hub.create_claim())
    agent.start()
    manifest = tmp_path / "web.yaml"
    try:
        agent.wait_enrolled()
        manifest.write_text(deployment("1.0.0"))
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: (s := _served(port)) and s["version"] == "1.0.0", 90, "v1 running")

        # The attack: v2's true bytes and then megabytes more, behind the
        # same digest, with the database's size saying so as well.
        _stored_artifact(hub, digest).write_bytes(signed + b"\0" * _EXTRA_BYTES)
        with sqlite3.connect(hub.data_dir / "hub.db") as db:
            db.execute(
                "UPDATE releases SET size = ? WHERE name = 'web' AND version = '2.0.0'",
                (len(signed) + _EXTRA_BYTES,),
            )
        manifest.write_text(deployment("2.0.0"))
        hub.cli("apply", "-f", str(manifest))

        def refused() -> dict | None:
            update = _update(hub, "node-1")
            return update if update.get("state") == "failed" else None

        update = wait_until(refused, 90, "v2 refused")
        assert update["version"] == "2.0.0"
        # Stopped at the length TUF signs, not at the size the hub claims.
        assert f"exceeds {len(signed)} bytes" in update["error"], update["error"]
        # The node kept its release and holds no byte of the oversized download.
        assert _served(port)["version"] == "1.0.0"
        downloads = tmp_path / "node" / "updater" / "downloads"
        assert [p.name for p in downloads.iterdir()] == []
        assert agent.proc is not None and agent.proc.poll() is None

        # Endless metadata: a timestamp of 6 MiB, above the node's own cap.
        tuf_release(hub, tmp_path, [key], "3.0.0", port)
        _serve_endless_timestamp(hub, 6 * 1024 * 1024)
        manifest.write_text(deployment("3.0.0"))
        hub.cli("apply", "-f", str(manifest))

        def metadata_refused() -> dict | None:
            update = _update(hub, "node-1")
            error = update.get("error") or ""
            return update if update.get("version") == "3.0.0" and "timestamp" in error else None

        update = wait_until(metadata_refused, 90, "v3 refused")
        assert update["error"].startswith("TUF refused web/3.0.0: metadata unavailable")
        # Reading stopped at the timestamp's bound, not at the node's 4 MiB cap.
        assert f"more than the {_TIMESTAMP_MAX_BYTES} bytes" in update["error"], update["error"]
        assert _served(port)["version"] == "1.0.0"
        assert agent.proc.poll() is None
    finally:
        agent.stop()
