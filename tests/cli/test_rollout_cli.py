"""`fogline rollout ...`, `fogline audit ls` and the plan's rollout line, as operators run them."""

import json
import textwrap

from tests.support.device import enroll_device
from tests.support.processes import wait_until
from tests.support.rollout_device import sync

WEB = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      selector: {}
      config: {rate_hz: 3}
      rollout: {waves: [1, 100%], bake: 1h, onFailure: rollback}
    """)


def test_plan_ls_status_pause_rollback_and_audit(hub, tmp_path):
    claim = hub.create_claim(max_uses=2)
    devices = [enroll_device(hub, claim, f"cli-{i}", tmp_path) for i in range(2)]
    for device in devices:
        sync(device)
    path = tmp_path / "web.yaml"
    path.write_text(WEB)
    plan = hub.cli("plan", "-f", str(path), check=False)
    assert plan.returncode == 2
    assert "deployment/web  rollout: waves [1, 100%], onFailure rollback" in plan.stdout
    hub.cli("apply", "-f", str(path))

    rows = json.loads(hub.cli("rollout", "ls", "-o", "json").stdout)
    assert [(r["deployments"], r["state"], r["devices"]) for r in rows] == [(["web"], "running", 2)]
    status = json.loads(hub.cli("rollout", "status", "web", "-o", "json").stdout)
    assert [(w["wave"], w["updating"], w["pending"]) for w in status["waves"]] == [
        (1, 1, 0),
        (2, 0, 1),
    ]
    table = hub.cli("rollout", "status", rows[0]["id"], "-o", "table").stdout
    assert "PENDING" in table and "SUCCEEDED" in table

    hub.cli("rollout", "pause", "web")
    refused = hub.cli("rollout", "pause", "web", check=False)
    assert refused.returncode == 1 and "cannot pause" in refused.stderr
    hub.cli("rollout", "rollback", "web")
    wait_until(
        lambda: (
            json.loads(hub.cli("rollout", "status", "web", "-o", "json").stdout)["state"]
            == "rolled-back"
        ),
        5,
        "rolled back",
    )
    missing = hub.cli("rollout", "status", "nope", check=False)
    assert missing.returncode == 1 and "no rollout" in missing.stderr

    entries = json.loads(hub.cli("audit", "ls", "--since", "1h", "-o", "json").stdout)
    actions = [(e["action"], e["actor"]) for e in entries]
    # The claim and the enrollments come first now: they are audited too.
    assert [a for a, _ in actions[:3]] == ["claim.create", "device.enroll", "device.enroll"]
    (operator,) = {who for action, who in actions if action == "apply"}
    assert ("rollout.pause", operator) in actions
    assert ("rollout.rollback", operator) in actions
    bad = hub.cli("audit", "ls", "--since", "yesterday", check=False)
    assert bad.returncode == 1 and "since" in bad.stderr
