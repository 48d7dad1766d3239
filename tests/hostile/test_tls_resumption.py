"""Hostile resumption (issue #18): a resumed TLS session skips the full
handshake, never the hub's checks. A revoked device holding a valid
session is refused; a session made under one CA bundle is not resumed
under another."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from fogline.hubclient import ResumingContext, resuming_client_context

from ..support.device import FACTS, enroll_device
from ..support.processes import HubProcess
from ..support.tls_files import make_server_tls


def report(hub: HubProcess, context: ResumingContext) -> httpx.Response:
    """A report on a new connection, closed after the answer."""
    with httpx.Client(base_url=hub.url, verify=context, timeout=10) as client:
        return client.post("/v1/report", json={"facts": FACTS, "labels": {}})


def test_a_revoked_device_with_a_valid_session_is_refused(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    device = enroll_device(shared_hub, shared_hub.create_claim(), "resume-revoked", tmp_path)
    context = resuming_client_context(shared_hub.ca)
    context.load_cert_chain(str(device.cert_path), str(device.key_path))
    assert report(shared_hub, context).status_code == 200
    assert report(shared_hub, context).status_code == 200
    assert context.resumed == 1  # the session is good, and used
    shared_hub.cli("devices", "revoke", device.device_id)
    refused = report(shared_hub, context)
    assert context.resumed == 2, "the revoked device's session was not resumed: test proves nothing"
    assert refused.status_code == 403
    assert "revoked" in refused.json()["message"]


def test_a_session_is_not_resumed_once_the_ca_bundle_changes(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    """The bundle is what the hub verified the client certificate against
    when the session was made: a new bundle (a CA rotation, a CA removed)
    means a full handshake, verified against the new one."""
    context = resuming_client_context(shared_hub.ca)
    for _ in range(2):
        with httpx.Client(verify=context, timeout=10) as client:
            assert client.get(f"{shared_hub.url}/healthz").status_code == 200
    assert context.resumed == 1
    bundle = shared_hub.ca.read_bytes()
    other_ca = make_server_tls(tmp_path / "other").ca.read_bytes()
    try:
        shared_hub.ca.write_bytes(bundle + other_ca)
        # The hub looks for new files at most every second: connect until a
        # connection is not resumed (bounded), then the next one resumes again.
        deadline, full_handshake = time.monotonic() + 15, False
        while not full_handshake and time.monotonic() < deadline:
            before = context.resumed
            with httpx.Client(verify=context, timeout=10) as client:
                assert client.get(f"{shared_hub.url}/healthz").status_code == 200
            full_handshake = context.resumed == before
        assert full_handshake, "every session was resumed after the CA bundle changed"
        before = context.resumed
        with httpx.Client(verify=context, timeout=10) as client:
            assert client.get(f"{shared_hub.url}/healthz").status_code == 200
        assert context.resumed == before + 1
    finally:
        shared_hub.ca.write_bytes(bundle)
