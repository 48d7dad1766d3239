"""A release key signs only the modules its scope names, on the hub and on the
node. Real hub, real agent.

The attack: any trusted key signed any module, so the key of the team that
ships `web-*` (or whoever stole it) could ship `billing` to every node.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.device import enroll_body
from tests.support.processes import AgentProcess, HubProcess, tls, wait_until


def _build(hub: HubProcess, work: Path, key: Path, name: str, version: str) -> Path:
    source = work / f"{name}-{version}"
    source.mkdir()
    (source / "fogline-module.yaml").write_text(
        f"name: {name}\nversion: {version}\nkind: config\narchitectures: [any]\n"
    )
    archive = work / f"{name}-{version}.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(key))
    return archive


def _deployment(*modules: str) -> str:
    entries = "".join(f"    - name: {m}\n      release: {m}@1.0.0\n" for m in modules)
    return (
        textwrap.dedent("""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {name: apps}
        spec:
          selector: {}
          modules:
        """)
        + entries
    )


def _updates(hub: HubProcess) -> dict:
    modules = hub.device("node-1").get("reported", {}).get("modules") or {}
    return dict(modules.get("updates") or {})


@pytest.mark.timeout(240)
def test_a_scoped_key_cannot_ship_another_module_to_the_hub_or_to_a_node(
    hub: HubProcess, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    scoped = hub.cli("keys", "create", "web", "--dir", str(keys), "--modules", "web-*")
    assert "modules:\n  - web-*" in scoped.stdout
    hub.cli("apply", "-f", "-", input_text=scoped.stdout)
    key = keys / "web.key"

    # The hub: in scope pushes, out of scope is refused with key and module named.
    hub.cli("release", "push", str(_build(hub, tmp_path, key, "web-app", "1.0.0")))
    billing = _build(hub, tmp_path, key, "billing", "1.0.0")
    refused = hub.cli("release", "push", str(billing), check=False)
    assert refused.returncode == 1
    assert "untrusted_key" in refused.stderr or "403" in refused.stderr
    assert "ReleaseKey web" in refused.stderr and "'billing'" in refused.stderr
    assert "[web-*]" in refused.stderr

    # The node pins the key with its scope at enrollment.
    agent = AgentProcess(tmp_path / "node", hub, "node-1", hub.create_claim())
    agent.start()
    try:
        agent.wait_enrolled()
        pinned = json.loads(
            (tmp_path / "node" / "identity" / "release-key-scopes.json").read_text()
        )
        assert pinned == {"web": ["web-*"]}

        # The operator (or whoever holds an operator token) widens the key:
        # the hub now takes the push, and lists the key unscoped to nodes.
        unscoped = scoped.stdout.replace("  modules:\n  - web-*\n", "")
        assert "modules" not in unscoped
        hub.cli("apply", "-f", "-", input_text=unscoped)
        hub.cli("release", "push", str(billing))
        manifest = tmp_path / "apps.yaml"
        manifest.write_text(_deployment("billing", "web-app"))
        hub.cli("apply", "-f", str(manifest))

        # The node's pinned scope wins: billing is refused, web-app installs.
        updates = wait_until(
            lambda: (
                (u := _updates(hub)).get("billing", {}).get("state") == "failed"
                and u.get("web-app", {}).get("state") == "done"
                and u
            ),
            60,
            "billing refused and web-app installed",
        )
        assert "may sign only modules matching [web-*]" in updates["billing"]["error"]
        assert updates["billing"]["failed_in"] == "verify"
        sync = hub.device("node-1")["sync"]
        assert sync["status"] == "error" and "billing 1.0.0" in sync["error"]
        state = tmp_path / "node" / "updater" / "state"
        assert (state / "web-app" / "installed.json").exists()
        assert not (state / "billing" / "installed.json").exists()
    finally:
        agent.stop()


def test_without_scoped_keys_the_enrollment_answer_is_the_old_shape(
    hub: HubProcess, tmp_path: Path
) -> None:
    # Agents that predate scopes refuse unknown fields in this answer: a fleet
    # that scopes no key must keep enrolling them.
    created = hub.cli("keys", "create", "ci", "--dir", str(tmp_path / "keys"))
    hub.cli("apply", "-f", "-", input_text=created.stdout)
    key = ec.generate_private_key(ec.SECP256R1())
    body = enroll_body(hub.create_claim(), "old-agent", key)
    answer = httpx.post(f"{hub.url}/v1/enroll", json=body, verify=tls(hub.ca), timeout=10)
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {
        "device_id",
        "name",
        "certificate",
        "ca",
        "report_interval_s",
        "release_keys",
    }
    assert list(answer.json()["release_keys"]) == ["ci"]
