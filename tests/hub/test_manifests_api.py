"""`fogline plan` / `apply` / `get` / `delete` against a real hub."""

import json
import textwrap

import pytest

from tests.support.device import enroll_device

BASE = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: base}
    spec:
      selector: {}
      priority: 0
      config:
        sampling: {rate_hz: 10}
        site: unknown
    """)
GOLD = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: gold}
    spec:
      selector:
        matchLabels: {tier: gold}
      priority: 10
      config:
        sampling: {rate_hz: 50}
    """)


@pytest.fixture
def fleet(hub, tmp_path):
    claim = hub.create_claim(max_uses=5)
    gold = enroll_device(hub, claim, "gold-1", tmp_path)
    plain = enroll_device(hub, claim, "plain-1", tmp_path)
    hub.cli("devices", "label", "gold-1", "tier=gold")
    return hub, gold, plain


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_apply_layers_by_priority_and_plan_reports_no_changes_after(fleet, tmp_path):
    hub, _gold, _plain = fleet
    path = _write(tmp_path, "fleet.yaml", BASE + "---\n" + GOLD)
    plan = hub.cli("plan", "-f", path, check=False)
    assert plan.returncode == 2, plan.stderr
    assert "deployment/base  create" in plan.stdout
    assert "+ config.sampling: {rate_hz: 50}" in plan.stdout  # gold-1: the gold layer wins
    assert "+ config.sampling: {rate_hz: 10}" in plan.stdout  # plain-1: base only
    hub.cli("apply", "-f", path)
    again = hub.cli("plan", "-f", path, check=False)
    assert again.returncode == 0, again.stdout
    with hub.client() as client:
        gold = client.get("/v1/devices/gold-1").json()["sync"]
        plain = client.get("/v1/devices/plain-1").json()["sync"]
    assert gold["desired_revision"] != plain["desired_revision"]
    assert gold["status"] == "pending"  # nobody applied it yet
    rows = json.loads(hub.cli("get", "deployments", "-o", "json").stdout)
    assert {r["name"]: r["devices"] for r in rows} == {"base": 2, "gold": 1}


def test_plan_shows_field_level_diff_per_device_group(fleet, tmp_path):
    hub, _, _ = fleet
    hub.cli("apply", "-f", _write(tmp_path, "a.yaml", BASE + "---\n" + GOLD))
    changed = _write(
        tmp_path, "b.yaml", BASE.replace("rate_hz: 10", "rate_hz: 20") + "---\n" + GOLD
    )
    result = hub.cli("plan", "-f", changed, "-o", "json", check=False)
    assert result.returncode == 2
    plan = json.loads(result.stdout)
    assert [d["name"] for d in plan["devices"]] == ["plain-1"]  # gold overrides rate_hz
    assert plan["devices"][0]["changes"] == [
        {"path": "config.sampling.rate_hz", "op": "change", "old": 10, "new": 20}
    ]


def test_invalid_manifest_is_rejected_with_exact_locations_and_nothing_applied(fleet, tmp_path):
    hub, _, _ = fleet
    bad = GOLD.replace(
        "matchLabels: {tier: gold}",
        "matchExpressions:\n        - {key: tier, operator: Is, values: [gold]}",
    )
    path = _write(tmp_path, "bad.yaml", BASE + "---\n" + bad)
    result = hub.cli("apply", "-f", path, check=False)
    assert result.returncode == 1
    assert (
        f"{path}:17:34: spec.selector.matchExpressions[0].operator:"
        in result.stderr.replace("\n", "")
        or "spec.selector.matchExpressions[0].operator" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert (
        json.loads(hub.cli("get", "deployments", "-o", "json").stdout) == []
    )  # base not applied either


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apiVersion: fogline.dev/v1\nkind: Gadget\nmetadata: {name: x}\nspec: {}\n", "kind"),
        (BASE.replace("priority: 0", "priority: high"), "spec.priority"),
        (BASE.replace("priority: 0", "priority: 0\n  colour: red"), "spec.colour"),
        (BASE + "---\n" + BASE, "metadata.name"),
        (BASE + "---\n" + BASE.replace("name: base", "name: twin"), "spec.priority"),
    ],
)
def test_each_kind_of_mistake_names_its_field(hub, tmp_path, text, expected):
    result = hub.cli("plan", "-f", _write(tmp_path, "m.yaml", text), check=False)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "m.yaml:" in result.stderr


def test_conflict_with_an_already_applied_deployment_is_caught(hub, tmp_path):
    hub.cli("apply", "-f", _write(tmp_path, "a.yaml", BASE))
    twin = BASE.replace("name: base", "name: twin")
    result = hub.cli("apply", "-f", _write(tmp_path, "b.yaml", twin), check=False)
    assert result.returncode == 1 and "applied deployment 'base'" in result.stderr


def test_directory_and_stdin_sources_and_prune(fleet, tmp_path):
    hub, _, _ = fleet
    folder = tmp_path / "fleet"
    folder.mkdir()
    (folder / "base.yaml").write_text(BASE)
    (folder / "gold.yml").write_text(GOLD)
    (folder / "notes.txt").write_text("not a manifest")
    hub.cli("apply", "-f", str(folder))
    assert len(json.loads(hub.cli("get", "deployments", "-o", "json").stdout)) == 2
    result = hub.cli("apply", "-f", "-", "--prune", input_text=BASE)
    assert "deployment/gold  delete" in result.stdout
    assert [r["name"] for r in json.loads(hub.cli("get", "deployments", "-o", "json").stdout)] == [
        "base"
    ]


def test_get_and_delete_deployment(fleet, tmp_path):
    hub, _, _ = fleet
    hub.cli("apply", "-f", _write(tmp_path, "a.yaml", BASE + "---\n" + GOLD))
    shown = hub.cli("get", "deployment", "gold").stdout
    assert "kind: Deployment" in shown and "tier: gold" in shown
    hub.cli("delete", "deployment", "gold")
    missing = hub.cli("get", "deployment", "gold", check=False)
    assert missing.returncode == 1 and "no deployment 'gold'" in missing.stderr
    with hub.client() as client:
        doc = client.get("/v1/devices/gold-1").json()
    assert doc["sync"]["desired_revision"]


def test_declarative_claim_prints_its_token_once_and_enrolls(hub, tmp_path):
    claim = textwrap.dedent("""\
        apiVersion: fogline.dev/v1
        kind: ProvisioningClaim
        metadata: {name: line-3}
        spec: {labels: {line: "3"}, maxUses: 2, expires: 24h}
        """)
    path = _write(tmp_path, "claim.yaml", claim)
    first = hub.cli("apply", "-f", path).stdout
    token = next(line.split(": ")[-1] for line in first.splitlines() if "token" in line)
    assert token.startswith("fgc_")
    assert "token" not in hub.cli("apply", "-f", path).stdout
    device = enroll_device(hub, token, "line3-node", tmp_path)
    assert hub.device(device.device_id)["labels"]["line"] == "3"
