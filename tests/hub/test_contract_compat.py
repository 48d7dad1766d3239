"""The compatibility rule against a real hub (docs/architecture.md,
"Compatibility"): an agent newer or older than the hub enrolls and reports,
the hub keeps only the fields it knows, and an operator's request stays strict."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from tests.protocol._golden import golden
from tests.support.device import enroll_body, enroll_device
from tests.support.processes import HubProcess, tls


def test_a_newer_agent_enrolls_with_fields_this_hub_does_not_know(
    shared_hub: HubProcess,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    body = enroll_body(shared_hub.create_claim(), "newer-agent", key)
    body |= {"attestation": {"tpm_quote": "AAEC"}, "facts": {**body["facts"], "kernel": "6.1"}}
    answer = httpx.post(f"{shared_hub.url}/v1/enroll", json=body, verify=tls(shared_hub.ca))
    assert answer.status_code == 200, answer.text
    shown = shared_hub.device("newer-agent")
    assert "attestation" not in json.dumps(shown) and "kernel" not in json.dumps(shown)


def test_a_newer_agents_report_is_taken_and_only_what_the_hub_knows_is_kept(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    device = enroll_device(shared_hub, shared_hub.create_claim(), "newer-reporter", tmp_path)
    body = golden("report.newer.json")
    body["applied"] = None  # no desired state was served to this device
    with device.client() as client:
        response = client.post("/v1/report", json=body)
    assert response.status_code == 200, response.text
    reported = shared_hub.device("newer-reporter")["reported"]
    modules = reported["modules"]
    assert modules["modules"]["gpu-infer"]["state"] == "degraded"  # a newer state, as text
    assert modules["modules"]["web-app"]["state"] == "crash-loop"
    assert "health_score" not in modules and "cpu_percent" not in modules["modules"]["thermo"]
    assert "oldest_priority" not in reported["outbox"]
    assert "boot_id" not in json.dumps(shared_hub.device("newer-reporter"))
    # ... and the CLI shows it.
    shown = shared_hub.cli("devices", "show", "newer-reporter")
    assert "degraded" in shown.stdout


def test_an_older_agents_report_is_taken_with_defaults(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    device = enroll_device(shared_hub, shared_hub.create_claim(), "older-reporter", tmp_path)
    body = golden("report.older.json")
    body["applied"] = None
    with device.client() as client:
        response = client.post("/v1/report", json=body)
    assert response.status_code == 200, response.text
    reported = shared_hub.device("older-reporter")["reported"]
    assert reported["modules"]["modules"]["model-a"] == {
        "name": "model-a",
        "state": "installed",
        "version": "3.1.0",
        "pid": None,
        "restarts": 0,
        "last_exit_code": None,
        "last_error": None,
        "stderr_tail": "",
        "since": None,
    }
    assert reported["modules"]["drift_policy"] == "report" and reported["modules"]["progress"] == {}


def test_a_report_of_a_newer_major_version_is_a_422_naming_it(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    device = enroll_device(shared_hub, shared_hub.create_claim(), "v2-reporter", tmp_path)
    with device.client() as client:
        response = client.post("/v1/report", json={**golden("report.json"), "version": 2})
    assert response.status_code == 422, response.text
    [detail] = response.json()["details"]
    assert detail["field"] == "body.version" and "newer than this hub reads" in detail["reason"]


def test_an_operators_request_with_a_field_this_hub_lacks_is_refused(
    shared_hub: HubProcess,
) -> None:
    with shared_hub.client() as client:
        response = client.post("/v1/claims", json=golden("claim_create.newer.json"))
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["details"]] == ["body.allowed_arch"]
