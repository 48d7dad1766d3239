"""A node refuses to go below its installed version unless told to, and every
allowed downgrade is audited. Real hub, real agent, real releases.

An older release is signed too: without this check, whoever can apply a
deployment (or replay an old desired state) could put a node back on a
vulnerable version that was validly signed years ago.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import AgentProcess, HubProcess, wait_until


def _release(hub: HubProcess, work: Path, key: Path, version: str) -> None:
    source = work / f"conf-{version}"
    source.mkdir()
    (source / "fogline-module.yaml").write_text(
        f"name: conf\nversion: {version}\nkind: config\narchitectures: [any]\n"
    )
    (source / "settings.json").write_text(json.dumps({"version": version}))
    archive = work / f"conf-{version}.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(key))
    hub.cli("release", "push", str(archive))


def _deployment(version: str, *, allow: bool = False, bake: str | None = None) -> str:
    extra = "\n      allowDowngrade: true" if allow else ""
    rollout = f"\n  rollout: {{bake: {bake}}}" if bake else ""
    return (
        textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: conf}}
        spec:
          selector: {{}}
          modules:
            - name: conf
              release: conf@{version}""")
        + extra
        + rollout
        + "\n"
    )


def _installed(hub: HubProcess) -> str | None:
    modules = hub.device("node-1").get("reported", {}).get("modules") or {}
    return (modules.get("modules", {}).get("conf") or {}).get("version")


def _update(hub: HubProcess) -> dict[str, Any]:
    modules = hub.device("node-1").get("reported", {}).get("modules") or {}
    return dict(modules.get("updates", {}).get("conf") or {})


def _audit(hub: HubProcess) -> list[dict[str, Any]]:
    return list(json.loads(hub.cli("audit", "ls", "-o", "json").stdout))


@pytest.mark.timeout(240)
def test_a_downgrade_needs_allow_downgrade_or_a_rollout_rollback(
    hub: HubProcess, tmp_path: Path
) -> None:
    created = hub.cli("keys", "create", "ci", "--dir", str(tmp_path / "keys"))
    hub.cli("apply", "-f", "-", input_text=created.stdout)
    for version in ("1.0.0", "1.1.0"):
        _release(hub, tmp_path, tmp_path / "keys" / "ci.key", version)
    agent = AgentProcess(tmp_path / "node", hub, "node-1", hub.create_claim())
    agent.start()
    manifest = tmp_path / "conf.yaml"
    try:
        agent.wait_enrolled()
        manifest.write_text(_deployment("1.0.0"))
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: _installed(hub) == "1.0.0", 60, "1.0.0 installed")

        # A rollout's rollback may go back: the hub marks what it serves.
        manifest.write_text(_deployment("1.1.0", bake="1h"))
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: _installed(hub) == "1.1.0", 60, "1.1.0 installed")
        hub.cli("rollout", "rollback", "conf")
        wait_until(lambda: _installed(hub) == "1.0.0", 60, "rolled back to 1.0.0")
        [entry] = [a for a in _audit(hub) if a["action"] == "rollout.downgrade"]
        assert entry["detail"]["modules"] == {"conf": "1.1.0 -> 1.0.0"}
        assert entry["detail"]["devices"] == 1

        # Up again, then down by a plain apply: refused, stays on 1.1.0.
        manifest.write_text(_deployment("1.1.0"))
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: _installed(hub) == "1.1.0", 60, "1.1.0 installed again")
        manifest.write_text(_deployment("1.0.0"))
        hub.cli("apply", "-f", str(manifest))
        sync = wait_until(
            lambda: (s := hub.device("node-1")["sync"])["status"] == "error" and s,
            60,
            "the refusal reported",
        )
        assert "refusing to downgrade from the installed 1.1.0" in sync["error"]
        update = _update(hub)
        assert update["version"] == "1.0.0" and update["state"] == "failed"
        assert "allowDowngrade" in update["error"]
        assert _installed(hub) == "1.1.0"
        assert not any(a["action"] == "deployment.allow-downgrade" for a in _audit(hub))

        # With allowDowngrade the same release installs, and the apply is audited.
        manifest.write_text(_deployment("1.0.0", allow=True))
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: _installed(hub) == "1.0.0", 60, "1.0.0 installed by allowDowngrade")
        wait_until(lambda: hub.device("node-1")["sync"]["status"] == "in-sync", 30, "in sync")
        [allowed] = [a for a in _audit(hub) if a["action"] == "deployment.allow-downgrade"]
        assert allowed["target"] == "conf"
        assert allowed["detail"]["modules"] == {"conf": "conf@1.0.0"}
    finally:
        agent.stop()


def test_allow_downgrade_must_be_a_boolean(hub: HubProcess, tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        _deployment("1.0.0").replace(
            "release: conf@1.0.0", 'release: conf@1.0.0\n      allowDowngrade: "yes"'
        )
    )
    result = hub.cli("plan", "-f", str(manifest), check=False)
    assert result.returncode == 1
    assert "spec.modules[0].allowDowngrade" in result.stderr
    assert "must be true or false" in result.stderr
