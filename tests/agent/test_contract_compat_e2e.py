"""The compatibility rule between a newer hub and this agent, with a real hub
and a real agent (docs/architecture.md, "Compatibility").

A newer hub is stood in for by writing its document into the real hub's
database, as that hub would have compiled it: the real hub serves it, the
real agent reads it.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

from fogline.protocol import revision_of
from tests.support.processes import AgentProcess, HubProcess, wait_until

BASE = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: base}
    spec:
      selector: {}
      config: {sampling: {rate_hz: 5}}
    """)


def _config(agent: AgentProcess) -> Any:
    try:
        return json.loads((agent.data_dir / "config" / "config.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def _serve(hub: HubProcess, device_id: str, document: dict[str, Any]) -> str:
    """Store `document` as the device's desired state, as a newer hub would,
    and wake its long-poll (the next fleet sequence number); returns its revision."""
    revision = revision_of(document)
    with sqlite3.connect(hub.data_dir / "hub.db", timeout=30) as db:
        db.execute("UPDATE fleet_generation SET desired_seq = desired_seq + 1 WHERE id = 1")
        db.execute(
            "UPDATE desired_states SET revision = ?, document = ?, "
            "seq = (SELECT desired_seq FROM fleet_generation WHERE id = 1) WHERE device_id = ?",
            (revision, json.dumps(document), device_id),
        )
    return revision


def _sync(hub: HubProcess, name: str) -> dict[str, Any]:
    return dict(hub.device(name)["sync"] or {})


def _started(hub: HubProcess, tmp_path: Path, name: str) -> tuple[AgentProcess, str]:
    agent = AgentProcess(tmp_path / name, hub, name, hub.create_claim())
    agent.start()
    device_id = agent.wait_enrolled()
    manifest = tmp_path / "base.yaml"
    manifest.write_text(BASE)
    hub.cli("apply", "-f", str(manifest))
    wait_until(lambda: _config(agent) == {"sampling": {"rate_hz": 5}}, 20, "the base config")
    wait_until(lambda: _sync(hub, name).get("status") == "in-sync", 15, "in-sync")
    return agent, device_id


def test_a_newer_hubs_document_is_applied_and_kept_whole(hub: HubProcess, tmp_path: Path) -> None:
    agent, device_id = _started(hub, tmp_path, "compat-newer")
    try:
        document = {
            "config": {"sampling": {"rate_hz": 42}},
            "deployments": [{"name": "base", "priority": 0, "rolloutId": "r-42"}],
            "drift": "report",
            "modules": [],
            "pipelines": [],
            "schedule": {"maintenance": "Sun 02:00"},  # a field this agent does not know
        }
        revision = _serve(hub, device_id, document)
        wait_until(lambda: _config(agent) == {"sampling": {"rate_hz": 42}}, 20, "newer config")
        wait_until(
            lambda: _sync(hub, "compat-newer").get("reported_revision") == revision,
            15,
            "the newer revision reported applied",
        )
        assert _sync(hub, "compat-newer")["status"] == "in-sync"
        # The local copy keeps what the agent did not understand: its revision holds.
        saved = json.loads((agent.data_dir / "state" / "desired.json").read_text())
        assert saved == {"revision": revision, "document": document}
        agent.stop()
        agent.start()  # reads the copy back: not corrupt, applied again
        wait_until(lambda: "sync.local_copy_loaded" in agent.log_text(), 20, "copy loaded")
        assert "sync.local_copy_corrupt" not in agent.log_text()
    finally:
        agent.stop()


def test_a_document_of_a_newer_major_version_is_refused_and_the_node_carries_on(
    hub: HubProcess, tmp_path: Path
) -> None:
    agent, device_id = _started(hub, tmp_path, "compat-v2")
    try:
        document = {"version": 2, "config": {"sampling": {"rate_hz": 99}}, "units": "v2-only"}
        revision = _serve(hub, device_id, document)
        wait_until(
            lambda: _sync(hub, "compat-v2").get("reported_revision") == revision,
            20,
            "the refusal reported",
        )
        sync = _sync(hub, "compat-v2")
        assert sync["status"] == "error" and "document version 2 is newer" in sync["error"]
        assert _config(agent) == {"sampling": {"rate_hz": 5}}  # still on its last document
        # The next change the node can read is applied: the refusal did not stick.
        manifest = tmp_path / "base.yaml"
        manifest.write_text(BASE.replace("rate_hz: 5", "rate_hz: 6"))
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: _config(agent) == {"sampling": {"rate_hz": 6}}, 20, "next config")
        wait_until(lambda: _sync(hub, "compat-v2").get("status") == "in-sync", 15, "in-sync")
    finally:
        agent.stop()
