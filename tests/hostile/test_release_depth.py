"""A depth bomb cannot brick a node. Real hub, real agent.

The attack: a signed archive of 2,000 nested directories (4,000 bytes of
path, within every other limit) passed the unpacker. A failed install then
died of RecursionError in clean-up and left a temporary tree behind, which
made the agent exit at every start before it reached the hub; a successful
install made the drift check crash the agent every 30 s.

The hub now refuses such an archive at push, so this test plays a hostile
(or compromised) hub: it plants the signed archive and its release row in
the hub's store and database directly, as a hub that skipped its checks
would serve it. Everything else is real: the agent downloads it over mTLS,
verifies the signature and must refuse it at unpack, report why, and keep
reporting.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from fogline.artifact import delete_tree, read_signature, sha256_file
from tests.artifact._support import member, spec_member, write_archive
from tests.support.deep import deep_tree
from tests.support.processes import AgentProcess, HubProcess, wait_until

DEEP_SPEC = b"name: deep\nversion: 1.0.0\nkind: config\narchitectures: [any]\n"


def _plant(hub: HubProcess, archive: Path) -> None:
    """Store a signed archive and its row as a hub that skipped its checks would."""
    envelope = read_signature(Path(f"{archive}.sig"))
    digest = sha256_file(archive)
    target = hub.data_dir / "artifacts" / "sha256" / digest[7:9] / digest[9:]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(archive.read_bytes())
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    with sqlite3.connect(hub.data_dir / "hub.db", timeout=30) as db:
        db.execute(
            "INSERT INTO releases (name, version, digest, size, key_id, signature, pushed_at, "
            "pushed_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                envelope.name,
                str(envelope.version),
                digest,
                archive.stat().st_size,
                envelope.keyid,
                json.dumps(envelope.model_dump(mode="json")),
                now,
                "hostile-hub",
            ),
        )


def _module_release(hub: HubProcess, work: Path, key: Path, name: str) -> None:
    source = work / name
    source.mkdir()
    (source / "fogline-module.yaml").write_text(
        f"name: {name}\nversion: 1.0.0\nkind: config\narchitectures: [any]\n"
    )
    archive = work / f"{name}.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(key))
    hub.cli("release", "push", str(archive))


def _reported(hub: HubProcess) -> dict[str, Any]:
    return dict(hub.device("node-1").get("reported", {}).get("modules") or {})


@pytest.mark.timeout(240)
def test_a_depth_bomb_from_a_hostile_hub_is_refused_and_the_agent_keeps_reporting(
    hub: HubProcess, tmp_path: Path
) -> None:
    created = hub.cli("keys", "create", "ci", "--dir", str(tmp_path / "keys"))
    hub.cli("apply", "-f", "-", input_text=created.stdout)
    key = tmp_path / "keys" / "ci.key"
    _module_release(hub, tmp_path, key, "fine")

    bomb = write_archive(
        tmp_path / "deep.tar.zst",
        [spec_member(DEEP_SPEC), member("d/" * 1999 + "f", b"at the bottom\n")],
    )
    hub.cli("release", "sign", str(bomb), "--key", str(key))
    refused = hub.cli("release", "push", str(bomb), check=False)
    assert refused.returncode == 1 and "deeper than 64 components" in refused.stderr
    _plant(hub, bomb)  # ...so a hostile hub serves it anyway

    node = tmp_path / "node"
    # What a crashed unpack of such an archive left before this agent started:
    # on Python 3.11 its clean-up (shutil.rmtree) raised RecursionError at
    # every start, before the agent reached the hub.
    leftover = node / "updater" / "modules" / "deep" / ".1.0.0-0123456789ab.unpack-x1"
    agent = AgentProcess(
        node, hub, "node-1", hub.create_claim(), extra_args=["--drift-interval", "1"]
    )
    try:
        with deep_tree(leftover, 5000, files_every=1000):
            agent.start()
            agent.wait_enrolled()
            wait_until(lambda: not leftover.exists(), 60, "the 5,000-level leftover swept")

        manifest = tmp_path / "apps.yaml"
        manifest.write_text(
            textwrap.dedent("""\
                apiVersion: fogline.dev/v1
                kind: Deployment
                metadata: {name: apps}
                spec:
                  selector: {}
                  drift: correct
                  modules:
                    - {name: deep, release: deep@1.0.0}
                    - {name: fine, release: fine@1.0.0}
                """)
        )
        hub.cli("apply", "-f", str(manifest))
        updates = wait_until(
            lambda: (
                (u := _reported(hub).get("updates") or {}).get("deep", {}).get("state") == "failed"
                and u.get("fine", {}).get("state") == "done"
                and u
            ),
            60,
            "the bomb refused and the other module installed",
        )
        assert "deeper than 64 components" in updates["deep"]["error"]
        assert updates["deep"]["failed_in"] == "install"
        sync = hub.device("node-1")["sync"]
        assert sync["status"] == "error" and "deep 1.0.0" in sync["error"]

        # Several drift intervals later the agent still runs and still reports.
        seen = hub.device("node-1")["last_seen"]
        time.sleep(3)
        assert agent.proc is not None and agent.proc.poll() is None, agent.log_text()
        wait_until(lambda: hub.device("node-1")["last_seen"] != seen, 15, "a newer report")
        assert not list((node / "updater" / "modules" / "deep").glob(".*unpack-*"))
        assert _reported(hub)["modules"]["fine"]["version"] == "1.0.0"
    finally:
        agent.stop()
        delete_tree(node)  # whatever an old agent may have installed: any depth
