"""TUF on the node, end to end: a real hub with a TUF repository, a real agent
that pinned its root at enrollment, real module processes.

The updater asks python-tuf's ngclient (over the agent's mTLS link) for a
release before it downloads it: a release the metadata lists runs; one it
does not list is refused even though its .sig is signed by a ReleaseKey the
hub trusts and the desired state carries, and the node stays on its release.
"""

import json

import httpx
import pytest

from tests.support.modules import deployment
from tests.support.processes import AgentProcess, free_port, wait_until
from tests.support.tuf import tuf_release, tuf_repository


def _served(port: int) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return None


def _update(hub, name: str) -> dict:
    modules = hub.device(name).get("reported", {}).get("modules") or {}
    return dict((modules.get("updates") or {}).get("web") or {})


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_node_installs_only_what_tuf_metadata_signs(hub, tmp_path):
    repo = tuf_repository(hub, tmp_path / "tuf")
    key = repo.keys / "rel.key"
    port = free_port()
    tuf_release(hub, tmp_path, [key], "1.0.0", port)
    # Signed by the same key (a trusted ReleaseKey), pushed, but never listed in
    # the module's TUF role: before TUF, the node would install it.
    tuf_release(hub, tmp_path, [key], "2.0.0", port, tuf=False)

    agent = AgentProcess(tmp_path / "node", hub, "node-1", hub.create_claim())
    agent.start()
    manifest = tmp_path / "web.yaml"
    try:
        agent.wait_enrolled()
        pinned = tmp_path / "node" / "identity" / "tuf-root.json"
        assert json.loads(pinned.read_bytes()) == json.loads(
            (repo.offline / "root.json").read_bytes()
        )

        manifest.write_text(deployment("1.0.0"))
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: (s := _served(port)) and s["version"] == "1.0.0", 90, "v1 running")
        # ngclient kept what it verified, for rollback checks across restarts.
        metadata = tmp_path / "node" / "updater" / "tuf" / "metadata"
        assert {"timestamp.json", "snapshot.json", "targets.json", "module-web.json"} <= {
            p.name for p in metadata.iterdir()
        }

        manifest.write_text(deployment("2.0.0"))
        hub.cli("apply", "-f", str(manifest))
        refused = wait_until(
            lambda: (
                (u := _update(hub, "node-1")).get("version") == "2.0.0"
                and u.get("state") == "failed"
                and u
            ),
            60,
            "v2 refused",
        )
        assert "TUF refused web/2.0.0" in refused["error"]
        assert "not in the TUF metadata" in refused["error"]
        assert _served(port)["version"] == "1.0.0"  # the node stays on its release
        # Nothing of v2 was fetched: ngclient was asked before the download.
        downloads = tmp_path / "node" / "updater" / "downloads"
        assert not any(downloads.iterdir())
    finally:
        agent.stop()
