"""A node whose connection to the hub was closed resumes its TLS session
when it reconnects (issue #18), and a renewal starts it without sessions:
a session carries the certificate it was made with."""

import asyncio
from pathlib import Path

import pytest

from fogline.agent import HubLink, HubTls
from fogline.agent._identity import Identity
from tests.support.device import FACTS, enroll_device
from tests.support.processes import AgentProcess, HubProcess, start_hub, wait_until

RESUMED = ("fogline_hub_tls_handshakes_total", "resumed")


@pytest.mark.parametrize(
    "tickets", [[], ["--tls-session-cache", "64"]], ids=["stateless", "stateful"]
)
def test_an_agent_whose_idle_connections_are_closed_resumes_its_session(
    tmp_path: Path, tickets: list[str]
) -> None:
    """The hub closes idle connections after 0.3 s and the agent reports
    every second: each report reconnects, and resumes (with the hub's
    stateless tickets, and with stateful ones)."""
    hub = start_hub(tmp_path / "hub", extra_args=["--idle-timeout", "0.3", *tickets])
    try:
        agent = AgentProcess(tmp_path / "node", hub, "resumer-1", hub.create_claim())
        agent.start()
        try:
            agent.wait_enrolled()
            wait_until(
                lambda: hub.metric(RESUMED[0], session=RESUMED[1]) >= 5,
                30,
                "five resumed handshakes from the agent",
            )
        finally:
            agent.stop()
    finally:
        hub.stop()


def test_a_renewal_starts_the_link_without_the_old_certificates_sessions(
    hub: HubProcess, tmp_path: Path
) -> None:
    device = enroll_device(hub, hub.create_claim(), "resumer-2", tmp_path)
    identity = Identity(device.device_id, "resumer-2", device.key_path, device.cert_path, hub.ca)

    async def scenario() -> None:
        tls = HubTls(identity)
        report = {"facts": FACTS, "labels": {}}
        for _ in range(2):  # a new link each time: a new connection
            link = HubLink(hub.url, hub.ca, tls=tls)
            try:
                assert (await link.http.post("/v1/report", json=report)).status_code == 200
            finally:
                await link.aclose()
        old = tls.context()
        assert (old.connections, old.resumed) == (2, 1)
        assert old.session_for("127.0.0.1") is not None
        tls.reload()  # a renewal: the node's certificate changed
        new = tls.context()
        assert new is not old and new.session_for("127.0.0.1") is None
        link = HubLink(hub.url, hub.ca, tls=tls)
        try:
            assert (await link.http.post("/v1/report", json=report)).status_code == 200
        finally:
            await link.aclose()
        assert (new.connections, new.resumed) == (1, 0)

    asyncio.run(asyncio.wait_for(scenario(), 60))
