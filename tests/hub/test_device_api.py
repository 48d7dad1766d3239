"""The device API's refusals, against a real hub process over TLS."""

import ssl
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fogline.security import CertificateAuthority, write_private_key, write_public_file
from tests.support.device import FACTS, enroll_body, enroll_device
from tests.support.processes import tls


def _enroll(hub, body):
    return httpx.post(f"{hub.url}/v1/enroll", json=body, verify=tls(hub.ca), timeout=10)


def test_enrolled_device_reports_over_mtls(shared_hub, tmp_path):
    device = enroll_device(shared_hub, shared_hub.create_claim(), "mtls-ok", tmp_path)
    response = device.report()
    assert response.status_code == 200
    assert response.json()["report_interval_s"] == 1
    assert shared_hub.device("mtls-ok")["status"] == "online"


def test_request_without_client_certificate_is_refused(shared_hub):
    response = httpx.post(
        f"{shared_hub.url}/v1/report", json={"facts": FACTS}, verify=tls(shared_hub.ca)
    )
    assert response.status_code == 401
    assert "client certificate" in response.json()["message"]


def test_certificate_from_another_ca_fails_the_handshake(shared_hub, tmp_path):
    rogue = CertificateAuthority.load_or_create(tmp_path / "rogue")
    from fogline.security import check_csr, make_csr

    key = ec.generate_private_key(ec.SECP256R1())
    issued = rogue.issue_device_cert(check_csr(make_csr(key, "x").decode()).csr, "forged-id")
    write_private_key(tmp_path / "k.pem", key)
    write_public_file(tmp_path / "c.pem", issued.pem)
    with pytest.raises(
        (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)
    ):
        httpx.post(
            f"{shared_hub.url}/v1/report",
            json={"facts": FACTS},
            verify=tls(shared_hub.ca, tmp_path / "c.pem", tmp_path / "k.pem"),
        )


def test_revoked_device_is_refused_at_its_next_request(shared_hub, tmp_path):
    device = enroll_device(shared_hub, shared_hub.create_claim(), "to-revoke", tmp_path)
    assert device.report().status_code == 200
    shared_hub.cli("devices", "revoke", "to-revoke")
    started = time.monotonic()
    response = device.report()
    assert response.status_code == 403
    assert "revoked" in response.json()["message"]
    assert time.monotonic() - started < 1.0
    assert shared_hub.device("to-revoke")["status"] == "revoked"


def test_claim_past_max_uses_is_refused(shared_hub, tmp_path):
    claim = shared_hub.create_claim(max_uses=1)
    enroll_device(shared_hub, claim, "only-one", tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    response = _enroll(shared_hub, enroll_body(claim, "second-one", key))
    assert response.status_code == 403
    assert response.json()["details"][0]["field"] == "claim"


def test_expired_claim_is_refused(shared_hub):
    claim = shared_hub.create_claim(expires="1s")
    time.sleep(1.2)  # the claim expires after 1 s: a deliberate timer, not a settling wait
    key = ec.generate_private_key(ec.SECP256R1())
    assert _enroll(shared_hub, enroll_body(claim, "late", key)).status_code == 403


def test_revoked_claim_is_refused(shared_hub):
    claim = shared_hub.create_claim()
    claim_id = claim.split("_", 1)[1].split(".", 1)[0]
    shared_hub.cli("claim", "revoke", claim_id)
    key = ec.generate_private_key(ec.SECP256R1())
    assert _enroll(shared_hub, enroll_body(claim, "after-revoke", key)).status_code == 403


def test_unknown_claim_and_garbage_token_are_refused_alike(shared_hub):
    key = ec.generate_private_key(ec.SECP256R1())
    made_up = "fgc_aaaaaaaaaaaa." + "b" * 43
    for token in (made_up, "garbage"):
        response = _enroll(shared_hub, enroll_body(token, "nobody", key))
        assert response.status_code == 403
        assert response.json()["message"].startswith("claim refused")


def test_csr_with_weak_key_is_refused(shared_hub):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    response = _enroll(shared_hub, enroll_body(shared_hub.create_claim(), "weakling", weak))
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "csr"


def test_csr_naming_another_device_is_refused(shared_hub, tmp_path):
    victim = enroll_device(shared_hub, shared_hub.create_claim(), "victim", tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    for cn in (victim.device_id, "victim"):
        body = enroll_body(shared_hub.create_claim(), "attacker", key, cn=cn)
        response = _enroll(shared_hub, body)
        assert response.status_code == 403, response.text
    # and taking the victim's name outright is a conflict, not a takeover
    body = enroll_body(shared_hub.create_claim(), "victim", key)
    assert _enroll(shared_hub, body).status_code == 409


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        (b'{"claim": 5, "csr": "x", "name": "n", "facts": {}}', 422, "body.claim"),
        (b'{"claim": "c", "csr": "x", "name": "Bad Name!", "facts": {}}', 422, "body.name"),
        (b'{"claim": "c", "csr": "x", "name": "n", "facts": {}}', 422, "body.facts.agent_version"),
    ],
)
def test_bad_enroll_bodies_get_4xx_naming_the_field(shared_hub, body, status, field):
    response = httpx.post(
        f"{shared_hub.url}/v1/enroll",
        content=body,
        verify=tls(shared_hub.ca),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error"] in {"malformed_json", "invalid"}
    if field:
        assert field in [d["field"] for d in error["details"]]


@pytest.fixture(scope="module")
def reporter(shared_hub, tmp_path_factory):
    directory = tmp_path_factory.mktemp("reporter")
    return enroll_device(shared_hub, shared_hub.create_claim(), "bad-bodies", directory)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b'{"facts": 5}', 422, "body.facts"),
        (b'{"labels": {}}', 422, "body.facts"),
        (b'{"facts": {"agent_version": "1", "hostname": "h", "os": "linux"}}', 422, "body.facts.arch"),
        (b'{"facts": {"agent_version": "1", "hostname": "h", "os": "l", "arch": "a"}, "version": 2}', 422, "body.version"),
        (b'{"facts": {"agent_version": "1", "hostname": "h", "os": "l", "arch": "a"}, "modules": {"modules": {"m": {"state": 5}}}}', 422, "body.modules.modules.m.state"),
        (b'{"facts": {"agent_version": "1", "hostname": "h", "os": "l", "arch": "a", "uptime_s": -1}}', 422, "body.facts.uptime_s"),
    ],
)  # fmt: skip
def test_bad_report_bodies_get_4xx_naming_the_field(reporter, body, status, field):
    with reporter.client() as client:
        response = client.post(
            "/v1/report", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error"] in {"malformed_json", "invalid"}
    if field:
        assert field in [d["field"] for d in error["details"]]


def test_a_report_without_a_certificate_is_refused_before_its_body_is_read(shared_hub):
    response = httpx.post(
        f"{shared_hub.url}/v1/report",
        content=b"{not json",
        headers={"content-type": "application/json"},
        verify=tls(shared_hub.ca),
    )
    assert response.status_code == 401


def test_oversized_body_is_refused_with_413(shared_hub):
    big = b'{"claim": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    response = httpx.post(
        f"{shared_hub.url}/v1/enroll",
        content=big,
        verify=tls(shared_hub.ca),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_oversized_chunked_body_is_refused_with_413(shared_hub):
    def chunks():
        for _ in range(40):
            yield b"a" * 65536

    response = httpx.post(
        f"{shared_hub.url}/v1/enroll", content=chunks(), verify=tls(shared_hub.ca)
    )
    assert response.status_code == 413


# A served hub answers reports before FastAPI routes them (hub/_hot_path.py):
# these check that path keeps FastAPI's limits, answers and metrics.


def test_an_oversized_report_is_refused_with_413_declared_or_chunked(reporter):
    big = b'{"facts": "' + b"a" * (2 * 1024 * 1024) + b'"}'

    def chunks():
        for _ in range(40):
            yield b"a" * 65536

    with reporter.client() as client:
        declared = client.post("/v1/report", content=big)
        chunked = client.post("/v1/report", content=chunks())
        after = reporter.report()
    for response in (declared, chunked):
        assert response.status_code == 413
        assert response.json()["error"] == "too_large"
    assert after.status_code == 200  # the device's next report is served


def test_other_methods_on_the_report_route_get_405(reporter):
    with reporter.client() as client:
        response = client.get("/v1/report")
    assert response.status_code == 405
    assert response.json()["error"] == "http_error"


def test_reports_are_counted_and_timed_by_status(shared_hub, tmp_path):
    device = enroll_device(shared_hub, shared_hub.create_claim(), "counted", tmp_path)

    def count(status: str) -> float:
        with shared_hub.client() as client:
            text = client.get("/metrics").text
        prefix = (
            f'fogline_hub_requests_total{{method="POST",route="/v1/report",status="{status}"}} '
        )
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].removeprefix(prefix)) if lines else 0.0

    ok_before, invalid_before = count("200"), count("422")
    assert device.report().status_code == 200
    with device.client() as client:
        assert client.post("/v1/report", content=b'{"facts": 5}').status_code == 422
    assert count("200") == ok_before + 1
    assert count("422") == invalid_before + 1
