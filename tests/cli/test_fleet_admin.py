"""Removing releases and release keys, a device's desired document, named claims.

`fogline release rm`, `get releasekeys`, `delete releasekey`, `devices
desired` and `claim create --name` / `claim revoke NAME`, run as operators
run them against a real hub; a device enrolled through the API is served
the documents.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import yaml

from tests.support.device import enroll_device
from tests.support.modules import release
from tests.support.processes import HubProcess, free_port, tls, wait_until
from tests.support.rollout_device import sync


def _deployment(version: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: web}}
        spec:
          selector: {{matchLabels: {{site: out}}}}
          modules:
            - {{name: web, release: web@{version}}}
        """)


def _artifact_status(hub: HubProcess, digest: str) -> int:
    with hub.client() as client:
        return client.get(f"/v1/artifacts/{digest}").status_code


def test_releases_and_keys_go_only_when_nothing_needs_them(hub: HubProcess, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    hub.cli(
        "apply", "-f", "-", input_text=hub.cli("keys", "create", "k", "--dir", str(keys)).stdout
    )
    spare = hub.cli("keys", "create", "spare", "--dir", str(keys), "--modules", "spare-*").stdout
    hub.cli("apply", "-f", "-", input_text=spare)
    port = free_port()
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        release(hub, tmp_path, keys / "k.key", version, port)
    node = enroll_device(hub, hub.create_claim(labels="site=out"), "out-1", tmp_path)
    manifest = tmp_path / "web.yaml"
    manifest.write_text(_deployment("1.0.0"))
    hub.cli("apply", "-f", str(manifest))
    sync(node)

    # The device's compiled document, as the node receives it.
    shown = hub.cli("devices", "desired", "out-1")
    document = yaml.safe_load(shown.stdout)
    assert "modules" in document, shown.stdout
    [module] = document["modules"]
    assert (module["name"], module["version"]) == ("web", "1.0.0")
    assert set(document["releaseKeys"]) == {"k", "spare"}
    assert "out-1: revision sha256:" in shown.stderr and "(applied)" in shown.stderr
    as_json = json.loads(hub.cli("devices", "desired", "out-1", "-o", "json").stdout)
    assert as_json["document"] == document and as_json["revision"].startswith("sha256:")
    missing = hub.cli("devices", "desired", "ghost", check=False)
    assert missing.returncode == 1 and "ghost" in missing.stderr

    # Pinned by a deployment and served to a device: refused, saying so.
    pinned = hub.cli("release", "rm", "web@1.0.0", check=False)
    assert pinned.returncode == 1 and pinned.stderr.count("\n") == 1, pinned.stderr
    assert "in use by deployment web" in pinned.stderr and "1 device(s)" in pinned.stderr
    # Nothing needs 3.0.0: it goes, with its archive.
    digest = next(
        r["digest"]
        for r in json.loads(hub.cli("release", "ls", "-o", "json").stdout)
        if r["version"] == "3.0.0"
    )
    assert _artifact_status(hub, digest) == 200
    removed = hub.cli("release", "rm", "web@3.0.0")
    assert "release web@3.0.0 removed" in removed.stderr
    versions = [r["version"] for r in json.loads(hub.cli("release", "ls", "-o", "json").stdout)]
    assert versions == ["1.0.0", "2.0.0"]
    assert _artifact_status(hub, digest) == 404
    assert not any((hub.data_dir / "artifacts" / "sha256").rglob(digest.split(":")[1][2:]))
    again = hub.cli("release", "rm", "web@3.0.0", check=False)
    assert again.returncode == 1 and "no release" in again.stderr
    bad = hub.cli("release", "rm", "web", check=False)
    assert bad.returncode == 2 and "NAME@VERSION" in bad.stderr

    # Keys: listed with their ids and scopes.
    listed = json.loads(hub.cli("get", "releasekeys", "-o", "json").stdout)
    assert [(k["name"], k["modules"]) for k in listed] == [("k", None), ("spare", ["spare-*"])]
    assert all(k["key_id"].startswith("ed25519:") for k in listed)
    assert "(any)" in hub.cli("get", "releasekeys", "-o", "table").stdout
    # k signed web@1.0.0, which the deployment runs: refused.
    refused = hub.cli("delete", "releasekey", "k", check=False)
    assert refused.returncode == 1 and "web: web@1.0.0" in refused.stderr, refused.stderr
    # spare signed nothing in use: deleted, and the device's document drops it.
    deleted = hub.cli("delete", "releasekey", "spare")
    assert "releasekey/spare deleted" in deleted.stderr and "rollout ro-" in deleted.stderr
    assert [k["name"] for k in json.loads(hub.cli("get", "releasekeys", "-o", "json").stdout)] == [
        "k"
    ]
    wait_until(
        lambda: (
            set(yaml.safe_load(hub.cli("devices", "desired", "out-1").stdout)["releaseKeys"])
            == {"k"}
        ),
        15,
        "the device's document without the deleted key",
    )
    entries = json.loads(hub.cli("audit", "ls", "-o", "json").stdout)
    actions = {(e["action"], e["target"]) for e in entries}
    assert ("release.rm", "web@3.0.0") in actions
    assert ("releasekey.delete", "releasekey/spare") in actions

    # The deployment moves on to 2.0.0: 1.0.0 is still what the device ran
    # just before (it may roll back to it), so it stays until that moves too.
    manifest.write_text(_deployment("2.0.0"))
    hub.cli("apply", "-f", str(manifest))
    sync(node)
    held = hub.cli("release", "rm", "web@1.0.0", check=False)
    assert held.returncode == 1 and "served it now or just before" in held.stderr
    assert "in use by 1 device(s) served it now or just before" in held.stderr


def test_claims_are_addressed_by_name(hub: HubProcess) -> None:
    token = hub.cli("claim", "create", "--name", "line-b", "--labels", "site=b").stdout.strip()
    table = hub.cli("claim", "ls", "-o", "table").stdout
    assert table.split()[0] == "NAME" and "line-b" in table
    [claim] = json.loads(hub.cli("claim", "ls", "-o", "json").stdout)
    assert claim["name"] == "line-b"
    taken = hub.cli("claim", "create", "--name", "line-b", check=False)
    assert taken.returncode == 1 and "line-b" in taken.stderr
    bad = hub.cli("claim", "create", "--name", "Line_B", check=False)
    assert bad.returncode == 1 and "name" in bad.stderr
    revoked = json.loads(hub.cli("claim", "revoke", "line-b", "-o", "json").stdout)
    assert revoked[0]["status"] == "revoked" and revoked[0]["id"] == claim["id"]
    # A revoked claim enrolls nobody.
    response = httpx.post(
        f"{hub.url}/v1/enroll", json={"claim": token}, verify=tls(hub.ca), timeout=10
    )
    assert response.status_code >= 400
