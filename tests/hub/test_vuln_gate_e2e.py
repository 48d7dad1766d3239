"""The vulnerability gate against a real hub: a VulnerabilityPolicy refuses a
release at push, a deployment that would roll it out at plan/apply, and a
paused rollout's resume; exceptions let an advisory through until they
expire, and every policy change is audited."""

import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.device import enroll_device
from tests.support.processes import HubProcess, start_hub
from tests.support.rollout_device import sync

OSV = Path(__file__).parents[1] / "vulns" / "osv"


@dataclass(frozen=True)
class Gate:
    hub: HubProcess
    root: Path
    key: Path


def _build(gate: Gate, version: str, urllib3: str, lodash: str, name: str = "web") -> Path:
    src = gate.root / f"{name}-{version}"
    dist = src / "site" / f"urllib3-{urllib3}.dist-info"
    dist.mkdir(parents=True)
    (src / "fogline-module.yaml").write_text(
        f"name: {name}\nversion: {version}\nkind: config\narchitectures: [any]\n"
    )
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: urllib3\nVersion: {urllib3}\n")
    lock = {"lockfileVersion": 3, "packages": {"node_modules/lodash": {"version": lodash}}}
    (src / "package-lock.json").write_text(json.dumps(lock))
    archive = gate.root / f"{name}-{version}.tar.zst"
    gate.hub.cli("release", "build", str(src), "-o", str(archive))
    gate.hub.cli("release", "sign", str(archive), "--key", str(gate.key))
    return archive


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    root = tmp_path_factory.mktemp("gate")
    hub = start_hub(root / "hub")
    try:
        key_doc = hub.cli("keys", "create", "ci", "--dir", str(root / "keys")).stdout
        hub.cli("apply", "-f", "-", input_text=key_doc)
        gate = Gate(hub, root, root / "keys" / "ci.key")
        hub.cli("vulndb", "import", str(OSV / "pypi"))
        hub.cli("vulndb", "import", str(OSV / "npm"))
        # 1.0.0: urllib3 (FOGTEST-PY-0001, critical 9.8) and lodash (FOGTEST-NPM-0001, high 8.2)
        hub.cli("release", "push", str(_build(gate, "1.0.0", "1.26.4", "4.17.20")))
        # 2.0.0: lodash only (high 8.2)
        hub.cli("release", "push", str(_build(gate, "2.0.0", "1.26.5", "4.17.20")))
        # api 1.0.0: lodash only (high 8.2)
        hub.cli("release", "push", str(_build(gate, "1.0.0", "1.26.5", "4.17.20", name="api")))
        yield gate
    finally:
        hub.stop()


def _policy(block_at: str, *, on_push: str = "refuse", exceptions: str = "[]") -> str:
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: VulnerabilityPolicy
        metadata: {{name: fleet}}
        spec:
          blockAt: {block_at}
          onPush: {on_push}
          exceptions: {exceptions}
        """)


def _deployment(version: str, rollout: str = "") -> str:
    text = textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: web}}
        spec:
          selector: {{matchLabels: {{app: web}}}}
          modules: [{{name: web, release: web@{version}}}]
        """)
    return text + (f"  rollout: {rollout}\n" if rollout else "")


def _write(gate: Gate, name: str, *documents: str) -> Path:
    path = gate.root / name
    path.write_text("---\n".join(documents))
    return path


def test_plan_and_apply_refuse_a_deployment_of_a_blocked_release_at_its_module_entry(
    gate: Gate,
) -> None:
    fleet = _write(gate, "fleet.yaml", _policy("critical"), _deployment("1.0.0"))
    for command in ("plan", "apply"):
        refused = gate.hub.cli(command, "-f", str(fleet), check=False)
        assert refused.returncode == 1, refused.stdout
        # At the module entry (the second document, after the policy's 7 lines
        # and ---, is on line 9; its `modules: [{...}]` entry at line 14, column 13).
        assert f"{fleet}:14:13: spec.modules[0].release: release web@1.0.0 is blocked" in (
            refused.stderr
        )
        assert "FOGTEST-PY-0001 (critical 9.8)" in refused.stderr
        assert "FOGTEST-NPM-0001" not in refused.stderr  # high is below critical
    # Nothing was applied: neither the policy nor the deployment.
    with gate.hub.client() as client:
        assert client.get("/v1/deployments/web").status_code == 404
    # 2.0.0 has only a high advisory: it goes through.
    ok = _write(gate, "ok.yaml", _policy("critical"), _deployment("2.0.0"))
    gate.hub.cli("apply", "-f", str(ok))


def test_the_refusal_names_the_blocked_module_entrys_own_line_and_column(gate: Gate) -> None:
    two_modules = textwrap.dedent("""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {name: two}
        spec:
          selector: {matchLabels: {app: two}}
          modules:
            - name: api
              release: api@1.0.0
            - name: web
              release: web@1.0.0
        """)
    fleet = _write(gate, "two.yaml", _policy("critical"), two_modules)
    for command in ("plan", "apply"):
        refused = gate.hub.cli(command, "-f", str(fleet), check=False)
        assert refused.returncode == 1, refused.stdout
        # The second entry (`- name: web`) starts at line 17 (the policy's 7
        # lines, ---, then 8 lines of this document), column 7 (after `    - `).
        assert f"{fleet}:17:7: spec.modules[1].release: release web@1.0.0 is blocked" in (
            refused.stderr
        )
        assert "api@1.0.0" not in refused.stderr  # high only: below critical
    with gate.hub.client() as client:
        assert client.get("/v1/deployments/two").status_code == 404


def test_a_policy_scoped_by_selector_blocks_only_deployments_it_overlaps(gate: Gate) -> None:
    berlin_only = _policy("critical") + "  selector: {matchLabels: {site: berlin}}\n"

    def site(name: str) -> str:
        return textwrap.dedent(f"""\
            apiVersion: fogline.dev/v1
            kind: Deployment
            metadata: {{name: web-{name}}}
            spec:
              selector: {{matchLabels: {{site: {name}}}}}
              priority: 5
              modules: [{{name: web, release: web@1.0.0}}]
            """)

    berlin = _write(gate, "berlin.yaml", berlin_only, site("berlin"))
    refused = gate.hub.cli("plan", "-f", str(berlin), check=False)
    assert refused.returncode == 1, refused.stdout
    assert "spec.modules[0].release: release web@1.0.0 is blocked by" in refused.stderr
    assert "FOGTEST-PY-0001 (critical 9.8)" in refused.stderr
    paris = _write(gate, "paris.yaml", berlin_only, site("paris"))
    gate.hub.cli("apply", "-f", str(paris))
    with gate.hub.client() as client:
        assert client.get("/v1/deployments/web-paris").status_code == 200
        assert client.get("/v1/deployments/web-berlin").status_code == 404
    table = gate.hub.cli("get", "vulnerabilitypolicies", "-o", "table").stdout
    assert "site=berlin" in table
    # At push the release is tied to no device yet: a scoped policy marks, never refuses.
    marked = gate.hub.cli("release", "push", str(_build(gate, "6.0.0", "1.26.4", "4.17.21")))
    assert "blocked by a VulnerabilityPolicy: FOGTEST-PY-0001 (critical 9.8)" in marked.stderr
    gate.hub.cli("delete", "deployment", "web-paris")  # the later tests' fleet has no sites
    gate.hub.cli("apply", "-f", str(_write(gate, "fleet-wide.yaml", _policy("critical"))))


def test_an_exception_lets_an_advisory_through_until_it_expires_and_is_audited(
    gate: Gate,
) -> None:
    expired = '[{advisory: FOGTEST-PY-0001, reason: "proxy code unused", expires: "2020-01-01T00:00:00Z"}]'
    refused = gate.hub.cli(
        "plan",
        "-f",
        str(
            _write(
                gate, "expired.yaml", _policy("critical", exceptions=expired), _deployment("1.0.0")
            )
        ),
        check=False,
    )
    assert refused.returncode == 1 and "FOGTEST-PY-0001" in refused.stderr
    current = '[{advisory: FOGTEST-PY-0001, reason: "proxy code unused", expires: 30d}]'
    path = _write(
        gate, "excepted.yaml", _policy("critical", exceptions=current), _deployment("1.0.0")
    )
    gate.hub.cli("apply", "-f", str(path))
    audit = json.loads(gate.hub.cli("audit", "ls", "--output", "json").stdout)
    entry = next(e for e in reversed(audit) if e["action"] == "vulnerability-policy.apply")
    assert entry["target"] == "fleet"
    assert entry["detail"]["exceptions"] == [
        {"advisory": "FOGTEST-PY-0001", "reason": "proxy code unused", "expires": "30d"}
    ]
    listed = json.loads(gate.hub.cli("vulns", "ls", "--all", "--output", "json").stdout)
    assert all(f["blocked_by"] == [] for f in listed)  # critical, and PY-0001 excepted


def test_push_refuses_a_blocked_release_or_accepts_and_marks_it(gate: Gate) -> None:
    gate.hub.cli("apply", "-f", str(_write(gate, "high.yaml", _policy("high"))))
    archive = _build(gate, "5.0.0", "1.26.5", "4.17.20")  # lodash: high 8.2
    refused = gate.hub.cli("release", "push", str(archive), check=False)
    assert refused.returncode == 1
    assert "422 vulnerable" in refused.stderr and "FOGTEST-NPM-0001 (high 8.2)" in refused.stderr
    pushed = json.loads(gate.hub.cli("release", "ls", "--output", "json").stdout)
    assert ("web", "5.0.0") not in {(r["name"], r["version"]) for r in pushed}
    gate.hub.cli("apply", "-f", str(_write(gate, "mark.yaml", _policy("high", on_push="mark"))))
    marked = gate.hub.cli("release", "push", str(archive))
    assert "blocked by a VulnerabilityPolicy: FOGTEST-NPM-0001 (high 8.2)" in marked.stderr
    audit = json.loads(gate.hub.cli("audit", "ls", "--output", "json").stdout)
    assert any(e["action"] == "release.vulnerable" and e["target"] == "web@5.0.0" for e in audit)
    gate.hub.cli("apply", "-f", str(_write(gate, "critical.yaml", _policy("critical"))))


def test_a_paused_rollout_of_a_release_blocked_since_does_not_resume(
    gate: Gate, tmp_path: Path
) -> None:
    gate.hub.cli("apply", "-f", str(_write(gate, "crit.yaml", _policy("critical"))))
    claim = gate.hub.create_claim(labels="app=web", max_uses=2)
    devices = [enroll_device(gate.hub, claim, f"gate-{i}", tmp_path) for i in range(2)]
    for device in devices:
        sync(device)
    gate.hub.cli(
        "apply",
        "-f",
        str(_write(gate, "roll.yaml", _deployment("2.0.0", "{waves: [1, 100%], bake: 1h}"))),
    )
    with gate.hub.client() as client:
        assert client.post("/v1/rollouts/web/pause").status_code == 200
        gate.hub.cli("apply", "-f", str(_write(gate, "now-high.yaml", _policy("high"))))
        refused = client.post("/v1/rollouts/web/resume")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "vulnerable"
        assert "web@2.0.0 is blocked" in refused.json()["message"]
        assert client.get("/v1/rollouts/web").json()["state"] == "paused"
        gate.hub.cli("apply", "-f", str(_write(gate, "back.yaml", _policy("critical"))))
        assert client.post("/v1/rollouts/web/resume").status_code == 200


def test_a_policy_is_listed_and_deleted_and_the_deletion_is_audited(gate: Gate) -> None:
    excepted = '[{advisory: FOGTEST-NPM-0001, reason: "lodash only in tests", expires: 7d}]'
    path = _write(gate, "listed.yaml", _policy("high", exceptions=excepted))
    gate.hub.cli("apply", "-f", str(path))
    table = gate.hub.cli("get", "vulnerabilitypolicies", "-o", "table").stdout
    assert "fleet" in table and "FOGTEST-NPM-0001 until 7d" in table
    gate.hub.cli("delete", "vulnerabilitypolicy", "fleet")
    listed = json.loads(gate.hub.cli("get", "vulnerabilitypolicies", "-o", "json").stdout)
    assert listed == []
    audit = json.loads(gate.hub.cli("audit", "ls", "--output", "json").stdout)
    entry = next(e for e in reversed(audit) if e["action"] == "vulnerability-policy.delete")
    assert entry["target"] == "vulnerabilitypolicy/fleet"
    assert entry["detail"]["exceptions"][0]["advisory"] == "FOGTEST-NPM-0001"
    gone = gate.hub.cli("delete", "vulnerabilitypolicy", "fleet", check=False)
    assert gone.returncode == 1 and "no VulnerabilityPolicy 'fleet'" in gone.stderr
