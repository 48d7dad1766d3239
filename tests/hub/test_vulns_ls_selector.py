"""`fogline vulns ls` names the VulnerabilityPolicies that block each finding
by the gate's own rule: a policy scoped by a selector blocks only releases
that a deployment it covers names (issue #16), as plan/apply refuses them."""

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.device import enroll_device
from tests.support.processes import HubProcess, start_hub

OSV = Path(__file__).parents[1] / "vulns" / "osv"


def _release(hub: HubProcess, root: Path, key: Path, name: str, version: str) -> None:
    """Push `name@version`, whose SBOM names urllib3 1.26.4 (FOGTEST-PY-0001, critical)."""
    src = root / f"{name}-{version}"
    dist = src / "site" / "urllib3-1.26.4.dist-info"
    dist.mkdir(parents=True)
    (src / "fogline-module.yaml").write_text(
        f"name: {name}\nversion: {version}\nkind: config\narchitectures: [any]\n"
    )
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: urllib3\nVersion: 1.26.4\n")
    archive = root / f"{name}-{version}.tar.zst"
    hub.cli("release", "build", str(src), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(key))
    hub.cli("release", "push", str(archive))


def _deployment(name: str, site: str, config: str = "{}") -> str:
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: {name}-{site}}}
        spec:
          selector: {{matchLabels: {{site: {site}}}}}
          modules: [{{name: {name}, release: {name}@1.0.0, config: {config}}}]
        """)


def _policy(site: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: VulnerabilityPolicy
        metadata: {{name: {site}}}
        spec:
          blockAt: critical
          selector: {{matchLabels: {{site: {site}}}}}
        """)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubProcess, Path]]:
    """web@1.0.0 deployed to Paris, api@1.0.0 to Berlin (one device each),
    both affected by a critical advisory; a policy per site; web@9.0.0
    pushed (affected too) but deployed nowhere."""
    root = tmp_path_factory.mktemp("vulns-ls")
    hub = start_hub(root / "hub")
    try:
        key_doc = hub.cli("keys", "create", "ci", "--dir", str(root / "keys")).stdout
        hub.cli("apply", "-f", "-", input_text=key_doc)
        for name, version in (("web", "1.0.0"), ("api", "1.0.0"), ("web", "9.0.0")):
            _release(hub, root, root / "keys" / "ci.key", name, version)
        for site in ("paris", "berlin"):
            claim = hub.create_claim(labels=f"site={site}")
            enroll_device(hub, claim, f"dev-{site}", root)
        deployments = root / "deployments.yaml"
        deployments.write_text(_deployment("web", "paris") + "---\n" + _deployment("api", "berlin"))
        hub.cli("apply", "-f", str(deployments))
        # The advisory arrives after the rollout, and then the policies: the
        # gate checks what changes, so both releases stay deployed.
        hub.cli("vulndb", "import", str(OSV / "pypi"))
        policies = root / "policies.yaml"
        policies.write_text(_policy("paris") + "---\n" + _policy("berlin"))
        hub.cli("apply", "-f", str(policies))
        yield hub, root
    finally:
        hub.stop()


def _blocked_by(findings: list[dict]) -> dict[str, list[str]]:
    return {f["release"]: f["blocked_by"] for f in findings if f["advisory"] == "FOGTEST-PY-0001"}


def test_vulns_ls_names_only_the_policies_whose_selector_covers_the_release(
    fleet: tuple[HubProcess, Path],
) -> None:
    hub, _root = fleet
    listed = json.loads(hub.cli("vulns", "ls", "--output", "json").stdout)
    assert _blocked_by(listed) == {"web@1.0.0": ["paris"], "api@1.0.0": ["berlin"]}
    # Deployed nowhere: no site's policy covers it (the gate refuses it only
    # where a deployment would bring it to a site).
    everything = json.loads(hub.cli("vulns", "ls", "--all", "--output", "json").stdout)
    assert _blocked_by(everything)["web@9.0.0"] == []
    table = hub.cli("vulns", "ls", "--output", "table").stdout
    row = next(line for line in table.splitlines() if "api@1.0.0" in line)
    assert "berlin" in row and "paris" not in row
    # An import's answer (the gate run on new data) says the same.
    imported = json.loads(hub.cli("vulndb", "import", str(OSV / "pypi"), "--output", "json").stdout)
    assert _blocked_by(imported) == {"web@1.0.0": ["paris"], "api@1.0.0": ["berlin"]}


def test_vulns_ls_agrees_with_the_gate_at_apply(fleet: tuple[HubProcess, Path]) -> None:
    hub, root = fleet
    changed = root / "web-paris.yaml"
    changed.write_text(_deployment("web", "paris", config="{greeting: hi}"))
    refused = hub.cli("apply", "-f", str(changed), check=False)
    assert refused.returncode == 1
    assert "blocked by VulnerabilityPolicy 'paris'" in refused.stderr
    assert "berlin" not in refused.stderr
