"""What the operator reads: plans, rollouts, audit entries, devices, logs and errors.

Each test runs the real `fogline` against a real hub; devices are enrolled
through the API and report what the test needs them to.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import textwrap
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from fogline import __version__
from tests.support.certs import self_signed
from tests.support.device import FACTS, enroll_device
from tests.support.modules import release
from tests.support.processes import ENV, HubProcess, fogline_cmd, free_port, wait_until
from tests.support.rollout_device import desired_revision, report_applied, sync

PIPELINE = """\
  pipelines:
    - name: temps
      source: {mqtt: "sensors/+/temp"}
      steps:
        - {id: hot, filter: "value > LIMIT"}
      outputs:
        - {from: hot, uplink: {stream: hot, priority: 5, ttl: 1d}}
"""


def web(version: str, limit: int, rollout: str = "") -> str:
    document = textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: web}}
        spec:
          selector: {{matchLabels: {{site: out}}}}
          config: {{rate_hz: {limit}}}
          modules:
            - {{name: web, release: web@{version}}}
        """)
    return document + PIPELINE.replace("LIMIT", str(limit)) + rollout


def table(hub: HubProcess, *args: str) -> str:
    return hub.cli(*args, "-o", "table").stdout


def test_the_daemons_take_log_format() -> None:
    for daemon in (("hub", "serve"), ("agent", "run"), ("sim", "fleet"), ("launcher", "run")):
        result = subprocess.run(
            [*fogline_cmd(), *daemon, "--help"], capture_output=True, text=True, env=ENV, timeout=30
        )
        assert "--log-format" in result.stdout and "human" in result.stdout, daemon


def test_version_flag() -> None:
    result = subprocess.run(
        [*fogline_cmd(), "--version"], capture_output=True, text=True, env=ENV, timeout=30
    )
    assert result.returncode == 0 and result.stdout == f"fogline {__version__}\n"


def test_plan_shows_module_versions_not_signatures_and_blocks_not_long_lines(
    hub: HubProcess, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    hub.cli(
        "apply", "-f", "-", input_text=hub.cli("keys", "create", "k", "--dir", str(keys)).stdout
    )
    for version in ("1.0.0", "2.0.0"):
        release(hub, tmp_path, keys / "k.key", version, free_port())
    enroll_device(hub, hub.create_claim(labels="site=out"), "out-1", tmp_path)
    manifest = tmp_path / "web.yaml"
    manifest.write_text(web("1.0.0", 30))
    applied = hub.cli("apply", "-f", str(manifest)).stdout
    # The apply names the rollout it started and how to follow it.
    started = re.search(r"rollout (ro-\w+) started: 1 device in 1 wave", applied)
    assert started, applied
    assert f"fogline rollout status {started[1]} --watch" in applied

    manifest.write_text(web("2.0.0", 31))
    plan = hub.cli("plan", "-f", str(manifest), check=False)
    assert plan.returncode == 2, plan.stderr
    lines = plan.stdout.splitlines()
    assert "1 device changes" in lines
    assert "      ~ modules[web]: 1.0.0 → 2.0.0" in lines
    assert "      ~ config.rate_hz: 30 → 31" in lines
    assert "signature" not in plan.stdout and "sha256:" not in plan.stdout
    assert "digest" not in plan.stdout and "release:" not in plan.stdout
    # The pipeline's change is a YAML block with the changed line marked.
    at = lines.index("      ~ pipelines[temps].steps:")
    assert lines[at + 1 : at + 4] == [
        "          - - filter: value > 30",
        "          + - filter: value > 31",
        "              id: hot",
    ]
    assert max(len(line) for line in lines) <= 100, plan.stdout


def _failing_rollout(hub: HubProcess, tmp_path: Path, rollout: str, devices: int) -> str:
    claim = hub.create_claim(labels="site=out", max_uses=devices)
    nodes = [enroll_device(hub, claim, f"out-{i}", tmp_path) for i in range(devices)]
    for node in nodes:
        sync(node)
    manifest = tmp_path / "cfg.yaml"
    manifest.write_text(
        textwrap.dedent("""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {name: cfg}
        spec:
          selector: {matchLabels: {site: out}}
          config: {rate_hz: 5}
        """)
        + rollout
    )
    hub.cli("apply", "-f", str(manifest))
    for node in nodes[:1]:  # the first wave's device cannot apply it
        report_applied(node, desired_revision(node), ok=False, error="cfg: cfg: no such sensor")
    return "cfg"


def _state(hub: HubProcess, name: str) -> str:
    return str(json.loads(hub.cli("rollout", "status", name, "-o", "json").stdout)["state"])


def _count_rows(text: str) -> list[list[int]]:
    return [
        [int(cell) for cell in re.findall(r"\d+", line.split("│", 1)[1])]
        for line in text.splitlines()
        if "│" in line
    ]


def test_rollout_status_counts_reverted_devices_and_agrees_with_its_outcome(
    hub: HubProcess, tmp_path: Path
) -> None:
    rollout = "  rollout: {waves: [1, 100%], bake: 1h, onFailure: rollback}\n"
    name = _failing_rollout(hub, tmp_path, rollout, devices=3)
    wait_until(lambda: _state(hub, name) == "rolled-back", 15, "rolled back")
    text = table(hub, "rollout", "status", name)
    assert "REVERTED" in text.splitlines()[1]
    waves, total = _count_rows(text)[:-1], _count_rows(text)[-1]
    # Columns: DEVICES, PENDING, UPDATING, SUCCEEDED, FAILED, SKIPPED, REVERTED.
    assert total == [3, 2, 0, 0, 0, 0, 1], text
    assert all(sum(row[1:]) == row[0] for row in [*waves, total]), text
    assert "bake 1h" in text and "3600s" not in text
    assert "rolled back at wave 1 of 2: 1 failed device" in text
    # The failure that stopped it is still counted once the device is reverted.
    assert "1 device served the previous revision again (1 of them had failed)" in text
    view = json.loads(hub.cli("rollout", "status", name, "-o", "json").stdout)
    assert (view["failed"], view["failed_total"], view["reverted"]) == (0, 1, 1)
    # The device the counts no longer call failed, and why it was reverted (said once).
    assert (
        "out-0 (wave 1) failed, then reverted: node refused the revision: cfg: no such sensor"
        in text
    )
    listed = table(hub, "rollout", "ls")
    header, row = (re.split(r"\s*[┃│]\s*", line.strip()) for line in listed.splitlines()[::2])
    assert header[:9] == [
        "ID",
        "DEPLOYMENT",
        "STATE",
        "WAVE",
        "DEVICES",
        "OK",
        "FAILED",
        "SKIPPED",
        "REVERTED",
    ], listed
    assert row[2:9] == ["rolled-back", "1/2", "3", "0", "1", "0", "1"], listed  # FAILED kept


def test_a_completed_rollout_with_failures_does_not_read_as_a_success(
    hub: HubProcess, tmp_path: Path
) -> None:
    name = _failing_rollout(hub, tmp_path, "", devices=1)  # no spec.rollout: no gate
    wait_until(lambda: _state(hub, name) == "completed", 15, "completed")
    text = table(hub, "rollout", "status", name)
    assert "completed with 1 of 1 device failed" in text and "no health gate" in text
    assert "out-0 (wave 1) failed" in text
    # Nothing claims a gate: not the policy, not the reason, not the audit.
    view = json.loads(hub.cli("rollout", "status", name, "-o", "json").stdout)
    assert view["policy"] == "one wave of all devices, no health gate (no spec.rollout)"
    assert "onFailure" not in text and view["gated"] is False
    assert view["reason"].startswith("no health gate (no spec.rollout): 1 of 1 device(s) failed")
    actions = [e["action"] for e in json.loads(hub.cli("audit", "ls", "-o", "json").stdout)]
    assert "rollout.last-wave-ended" in actions and "rollout.last-wave-passed" not in actions


def test_a_gated_rollout_whose_only_wave_failed_pauses(hub: HubProcess, tmp_path: Path) -> None:
    name = _failing_rollout(hub, tmp_path, "  rollout: {onFailure: pause}\n", devices=1)
    wait_until(lambda: _state(hub, name) == "paused", 15, "paused")
    view = json.loads(hub.cli("rollout", "status", name, "-o", "json").stdout)
    assert view["gated"] is True and "maxFailures" in view["reason"]
    assert (view["failed"], view["failed_total"]) == (1, 1)


def test_an_apply_names_its_rollouts_and_the_audit_names_keys_and_claims(
    hub: HubProcess, tmp_path: Path
) -> None:
    key = hub.cli("keys", "create", "team", "--dir", str(tmp_path / "keys")).stdout
    claim = textwrap.dedent("""\
        apiVersion: fogline.dev/v1
        kind: ProvisioningClaim
        metadata: {name: line-a}
        spec: {labels: {site: out}, maxUses: 5, expires: 1d}
        """)
    hub.cli("apply", "-f", "-", input_text=key + "---\n" + claim)
    hub.cli("apply", "-f", "-", input_text=key)  # the same key again: unchanged
    entries = [e for e in json.loads(hub.cli("audit", "ls", "-o", "json").stdout)]
    first, again = [e for e in entries if e["action"] == "apply"]
    assert first["target"] == "releasekey/team,claim/line-a"
    assert first["detail"]["release_keys"] == {"team": "create"}
    assert first["detail"]["claims"] == {"line-a": "create"}
    assert (again["target"], again["detail"]["release_keys"]) == ("-", {"team": "unchanged"})
    text = hub.cli("audit", "ls", "-o", "table").stdout
    assert "claims: line-a=create" in text and "release keys: team=create" in text, text

    enroll_device(hub, hub.create_claim(labels="site=out"), "out-1", tmp_path)
    (tmp_path / "w.yaml").write_text(web("1.0.0", 30).split("  modules:")[0])
    result = json.loads(hub.cli("apply", "-f", str(tmp_path / "w.yaml"), "-o", "json").stdout)
    [rollout] = result["rollouts"]
    assert json.loads(hub.cli("rollout", "status", rollout, "-o", "json").stdout)[
        "deployments"
    ] == ["web"]
    # Nothing changes for any device: no rollout to name.
    again = json.loads(hub.cli("apply", "-f", str(tmp_path / "w.yaml"), "-o", "json").stdout)
    assert again["rollouts"] == []


def test_audit_details_are_words_not_python_reprs(hub: HubProcess, tmp_path: Path) -> None:
    enroll_device(hub, hub.create_claim(labels="site=out"), "out-1", tmp_path)
    (tmp_path / "w.yaml").write_text(web("1.0.0", 30).split("  modules:")[0])
    hub.cli("apply", "-f", str(tmp_path / "w.yaml"))
    text = hub.cli("audit", "ls", "-o", "table").stdout
    assert "deployments: web=create · devices changed: 1" in text, text
    assert "policy: one wave of all devices, no health gate (no spec.rollout)" in text
    assert "{'" not in text and "['" not in text and "…" not in text
    narrow = subprocess.run(
        [*fogline_cmd(), "audit", "ls", "-o", "table"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, "FOGLINE_HUB": hub.url, "FOGLINE_TOKEN": hub.token, "FOGLINE_CA": str(hub.ca)}
        | {"COLUMNS": "70"},
    )
    assert "…" not in narrow.stdout  # folded, never cut


def test_devices_show_aligns_its_keys_and_writes_units(hub: HubProcess, tmp_path: Path) -> None:
    node = enroll_device(hub, hub.create_claim(), "shown", tmp_path)
    modules = {
        "modules": {"web": {"version": "1.0.0", "state": "crash-loop", "restarts": 1}},
        "progress": {
            "web": {
                "version": "2.0.0",
                "state": "failed",
                "bytes_done": 1536,
                "bytes_total": 3 * 1024 * 1024,
                "error": "web 2.0.0: web 2.0.0: not healthy within 10s",
            }
        },
    }
    outbox = {"depth": 1, "bytes": 1536, "max_bytes": 256 * 1024 * 1024, "dropped_quota": 2}
    body = {
        "facts": FACTS,
        "modules": modules,
        "outbox": outbox,
        "applied": {"revision": None, "ok": False, "error": "web 2.0.0: web 2.0.0: refused"},
    }
    with node.client() as client:
        assert client.post("/v1/report", json=body).status_code == 200
    lines = table(hub, "devices", "show", "shown").splitlines()
    # Keys right-aligned: every key ends in the same column, whatever its length.
    ends = {line.index("  ", len(line) - len(line.lstrip())) for line in lines}
    assert len(ends) == 1 and any(line.strip().startswith("update web  ") for line in lines), (
        "\n".join(lines)
    )
    text = "\n".join(lines)
    assert "1 record, 1.5 KiB of 256 MiB; dropped 2 over quota, 0 expired" in text
    assert "1.0.0 crash-loop, 1 restart\n" in text + "\n"
    assert "2.0.0 failed, 1.5 KiB of 3 MiB: not healthy within 10s" in text
    assert "web 2.0.0: web 2.0.0" not in text
    assert "cert expires" in text and "(in 36" in text  # a year ahead, not "0s ago"


def test_logs_tail_timestamps_and_unknown_devices(hub: HubProcess, tmp_path: Path) -> None:
    node = enroll_device(hub, hub.create_claim(), "logger", tmp_path)
    node.upload([(i, "logs/web", {"stream": "stdout", "line": f"line {i}"}) for i in range(1, 6)])
    assert hub.cli("logs", "logger", "web").stdout.count("line ") == 5
    tail = hub.cli("logs", "logger", "web", "--tail", "2", "--timestamps").stdout.splitlines()
    assert len(tail) == 2 and tail[0].endswith("  line 4") and tail[1].endswith("  line 5")
    stamp = dt.datetime.fromisoformat(tail[0].split(" ")[0])
    assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 120
    # --follow after --tail: the tail, then only lines newer than the whole window.
    out = tmp_path / "follow.out"
    env = {**ENV, "FOGLINE_HUB": hub.url, "FOGLINE_TOKEN": hub.token, "FOGLINE_CA": str(hub.ca)}
    with out.open("w") as sink:
        follower = subprocess.Popen(
            [*fogline_cmd(), "logs", "logger", "web", "--tail", "1", "--follow"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            wait_until(lambda: "line 5" in out.read_text(), 30, "the tail")
            node.upload([(6, "logs/web", {"stream": "stderr", "line": "line 6"})])
            wait_until(lambda: "line 6" in out.read_text(), 30, "the new line")
        finally:
            follower.terminate()
            follower.wait(10)
    followed = [line.strip() for line in out.read_text().splitlines() if "line" in line]
    assert followed == ["line 5", "! line 6"], followed
    nothing = hub.cli("logs", "logger", "other")
    assert nothing.stdout == "" and "no other lines from logger" in nothing.stderr
    for args in (("logs", "ghost", "web"), ("telemetry", "query", "--device", "ghost")):
        result = hub.cli(*args, check=False)
        assert result.returncode == 1 and "ghost" in result.stderr, args
        assert result.stderr.startswith("error:") and result.stdout == ""


def _other_ca(path: Path) -> Path:
    _key, cert = self_signed("not the fleet CA", dt.timedelta(days=1), ca=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_a_certificate_the_ca_did_not_sign_says_which_ca_to_pass(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    other = _other_ca(tmp_path / "other.pem")
    result = shared_hub.cli("devices", "ls", "--ca", str(other), check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"the CA in {other} did not sign" in result.stderr
    assert "--ca" in result.stderr and "FOGLINE_CA" in result.stderr
    assert "DIR/ca.pem" in result.stderr and "Traceback" not in result.stderr
