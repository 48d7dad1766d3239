"""A device made of real keys and certificates, talking to a real hub with httpx.

Used where a test needs to send exactly one crafted request (a CSR with a
weak key, a certificate from another CA) rather than run a whole agent.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fogline.protocol import encode_batch
from fogline.security import make_csr, write_private_key, write_public_file

from .processes import AgentProcess, HubProcess, tls, wait_until

FACTS = {
    "agent_version": "test",
    "hostname": "test-host",
    "os": "linux",
    "arch": platform.machine(),
    "uptime_s": 1.0,
}


def enroll_body(
    claim: str,
    name: str,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    cn: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "claim": claim,
        "csr": make_csr(key, cn or name).decode(),
        "name": name,
        "facts": FACTS,
        **extra,
    }


@dataclass
class TestDevice:
    __test__ = False  # a helper, not a test class for pytest to collect

    device_id: str
    name: str
    cert_path: Path
    key_path: Path
    hub: HubProcess

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.hub.url,
            timeout=10,
            verify=tls(self.hub.ca, self.cert_path, self.key_path),
        )

    def report(self) -> httpx.Response:
        with self.client() as client:
            return client.post("/v1/report", json={"facts": FACTS, "labels": {}})

    def upload(self, records: Sequence[tuple[int, str, dict[str, Any]]]) -> None:
        """Upload (seq, stream, payload) records as the node's uplink does, created now."""
        response = self.post_telemetry(telemetry_batch(records))
        assert response.status_code < 300, response.text

    def post_telemetry(self, body: bytes) -> httpx.Response:
        """POST an encoded batch (`telemetry_batch`) to /v1/telemetry."""
        with self.client() as client:
            return client.post(
                "/v1/telemetry",
                content=body,
                headers={"content-type": "application/json", "content-encoding": "zstd"},
            )


def telemetry_batch(
    records: Sequence[tuple[int, str, dict[str, Any]]], created: float | None = None
) -> bytes:
    """A batch body as the uplink sends it: (seq, stream, payload) records
    created at `created` (default: now), priority 1."""
    return encode_batch([_Record(*record, created=created) for record in records])


class _Record:
    """What `encode_batch` reads of an outbox record."""

    def __init__(
        self, seq: int, stream: str, payload: dict[str, Any], created: float | None
    ) -> None:
        now = time.time() if created is None else created
        self.seq, self.stream, self.priority = seq, stream, 1
        self.created, self.expires = now, now + 3600
        self.payload = json.dumps(payload).encode()


def enroll_device(
    hub: HubProcess,
    claim: str,
    name: str,
    directory: Path,
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    **extra: Any,
) -> TestDevice:
    """Enroll over the real API; `extra` goes into the body (labels, facts)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    response = httpx.post(
        f"{hub.url}/v1/enroll",
        json=enroll_body(claim, name, key, **extra),
        verify=tls(hub.ca),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    key_path, cert_path = directory / f"{name}-key.pem", directory / f"{name}-cert.pem"
    write_private_key(key_path, key)
    write_public_file(cert_path, body["certificate"].encode())
    return TestDevice(body["device_id"], name, cert_path, key_path, hub)


# Every event a node's local HTTP endpoint takes, sent to the hub as stream
# `events`: what the outbox tests push through a node.
PASS_THROUGH = """\
apiVersion: fogline.dev/v1
kind: Deployment
metadata: {name: all-events}
spec:
  selector: {}
  pipelines:
    - name: events
      source: {http: {}}
      outputs: [{uplink: {stream: events, priority: 5, ttl: 1d}}]
"""


def start_passing_through(
    agent: AgentProcess, hub: HubProcess, work: Path, timeout_s: float = 30
) -> None:
    """Start `agent`, wait for its enrollment, apply PASS_THROUGH (written
    under `work`) and wait until its pipeline runs."""
    agent.start()
    agent.wait_enrolled()
    manifest = work / "events.yaml"
    manifest.write_text(PASS_THROUGH)
    hub.cli("apply", "-f", str(manifest))
    wait_until(lambda: "dataplane.configured" in agent.log_text(), timeout_s, "pipeline running")
