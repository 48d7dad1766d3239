"""Schemathesis against a real hub: no generated request, well-formed or not,
with an operator's token, a device's certificate or nothing at all, gets a 5xx.

The schema is the hub's own OpenAPI document (built in-process at collection,
so pytest shows one test per operation); the requests go to a real
`fogline hub serve` on 127.0.0.1. Hypothesis runs a bounded number of
examples per operation, so the whole file stays within a minute or two.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from fogline.hub import create_app
from fogline.hub._serve import ServeOptions, build_hub
from tests.support.device import TestDevice, enroll_device
from tests.support.processes import HubProcess, start_hub

# Each operation gets this many generated requests per identity: enough to
# reach the boundaries of every field, few enough for `make test`.
EXAMPLES_PER_OPERATION = 25


def _hub_openapi() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        built = build_hub(ServeOptions(data_dir=Path(scratch) / "hub"))
        try:
            return create_app(built.state).openapi()
        finally:
            built.state.engine.dispose()


schema = schemathesis.openapi.from_dict(_hub_openapi())


class Identities:
    """The three callers a hub meets: an operator, an enrolled device, a stranger."""

    def __init__(self, hub: HubProcess, device: TestDevice) -> None:
        self.hub = hub
        self.device = device
        self.operator = requests.Session()
        self.operator.verify = str(hub.ca)
        self.operator.headers["authorization"] = f"Bearer {hub.token}"
        self.device_session = requests.Session()
        self.device_session.verify = str(hub.ca)
        self.device_session.cert = (str(device.cert_path), str(device.key_path))
        self.stranger = requests.Session()
        self.stranger.verify = str(hub.ca)

    def close(self) -> None:
        for session in (self.operator, self.device_session, self.stranger):
            session.close()


@pytest.fixture(scope="module")
def callers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Identities]:
    root = tmp_path_factory.mktemp("fuzz")
    hub = start_hub(root / "hub")
    try:
        claim = hub.create_claim(labels="site=fuzz", max_uses=5)
        device = enroll_device(hub, claim, "fuzz-node", root)
        identities = Identities(hub, device)
        try:
            yield identities
        finally:
            identities.close()
    finally:
        hub.stop()


def _no_server_error(response: requests.Response, who: str) -> None:
    assert response.status_code < 500, (
        f"{who}: {response.request.method} {response.request.url} -> "
        f"{response.status_code}: {response.text[:500]}"
    )


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_generated_request_gets_a_server_error(case: Any, callers: Identities) -> None:
    base_url = callers.hub.url
    for who, session in (
        ("operator", callers.operator),
        ("device", callers.device_session),
        ("stranger", callers.stranger),
    ):
        response = case.call(
            base_url=base_url, session=session, verify=str(callers.hub.ca), timeout=15
        )
        _no_server_error(response, who)
