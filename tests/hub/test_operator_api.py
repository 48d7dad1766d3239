"""The operator API: tokens, errors and metrics, against a real hub process."""

import httpx
import pytest

from tests.support.device import enroll_device
from tests.support.processes import tls


@pytest.mark.parametrize(
    "header", [None, "Bearer nope", "Bearer fga_aaaaaaaaaaaa." + "b" * 43, "Basic x"]
)
def test_operator_api_refuses_missing_or_wrong_token(shared_hub, header):
    headers = {"authorization": header} if header else {}
    response = httpx.get(f"{shared_hub.url}/v1/devices", headers=headers, verify=tls(shared_hub.ca))
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_unknown_device_is_a_404_with_json(shared_hub):
    with shared_hub.client() as client:
        response = client.get("/v1/devices/no-such-device")
    assert response.status_code == 404
    assert "no-such-device" in response.json()["message"]


def test_bad_claim_request_names_the_field(shared_hub):
    with shared_hub.client() as client:
        response = client.post("/v1/claims", json={"max_uses": "lots"})
        assert response.status_code == 422
        assert response.json()["details"][0]["field"] == "body.max_uses"
        response = client.post("/v1/claims", json={"labels": {"bad key": "v"}})
        assert response.status_code == 422
        assert response.json()["details"][0]["field"] == "body.labels"


def test_platform_labels_cannot_be_set_by_operators(shared_hub, tmp_path):
    enroll_device(shared_hub, shared_hub.create_claim(), "plat", tmp_path)
    with shared_hub.client() as client:
        response = client.patch("/v1/devices/plat/labels", json={"set": {"fogline.dev/arch": "x"}})
    assert response.status_code == 422


def test_metrics_expose_requests_latency_devices_and_enrollments(shared_hub, tmp_path):
    enroll_device(shared_hub, shared_hub.create_claim(), "metered", tmp_path)
    with shared_hub.client() as client:
        text = client.get("/metrics").text
    assert 'fogline_hub_enrollments_total{result="ok"}' in text
    assert 'fogline_hub_devices{status="online"}' in text
    assert 'fogline_hub_requests_total{method="POST",route="/v1/enroll",status="200"}' in text
    assert "fogline_hub_request_seconds_bucket" in text
    # route templates, not raw paths: one series for every device
    assert "/v1/devices/{ref}" in text or "metered" not in text


def test_secrets_never_reach_the_hub_log(shared_hub, tmp_path):
    claim = shared_hub.create_claim()
    enroll_device(shared_hub, claim, "quiet", tmp_path)
    log = shared_hub.log_text()
    assert "device.enrolled" in log  # the log is there and has events...
    assert claim.split(".", 1)[1] not in log  # ...but no secrets
    assert shared_hub.token.split(".", 1)[1] not in log
    # nor on stdout: the admin token lives only in its 0600 file
    assert shared_hub.token.split(".", 1)[1] not in shared_hub.stdout_path.read_text()
