"""NodeParts, the seam the agent and the simulator build a node from: the
injected transport carries every call, and the injected clock every wait."""

import asyncio
import datetime as dt
import socket
from pathlib import Path

import httpx
import pytest

from fogline.agent import Clock, HubLink, HubTls, NodeParts
from fogline.protocol import DeviceFacts, Report, ReportAck
from tests.support.device import FACTS
from tests.support.processes import HubProcess


class _Stop(Exception):
    pass


class _CountingTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, seen: list[str]) -> None:
        self._inner, self._seen = inner, seen

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._seen.append(f"{request.method} {request.url.path}")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_enrollment_backs_off_through_the_injected_clock(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    delays: list[float] = []
    seen: list[str] = []

    async def sleep(delay_s: float) -> None:
        delays.append(delay_s)
        if len(delays) == 3:
            raise _Stop

    parts = NodeParts(
        f"https://127.0.0.1:{_closed_port()}",  # nobody there: every attempt is transient
        shared_hub.ca,
        tmp_path / "node",
        clock=Clock(sleep=sleep, rand=lambda: 0.5),
        wrap_transport=lambda inner: _CountingTransport(inner, seen),
    )
    with pytest.raises(_Stop):
        asyncio.run(
            parts.enroller().ensure(
                claim=lambda: "unused",
                name="parts-offline",
                labels={},
                facts=lambda: DeviceFacts.model_validate(FACTS),
            )
        )
    # Full jitter at the drawn 0.5 of a ceiling doubling from 0.5 s.
    assert delays == [0.25, 0.5, 1.0]
    assert seen == ["POST /v1/enroll"] * 3


def test_a_node_built_from_parts_enrolls_and_reports_through_its_transport(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    seen: list[str] = []
    parts = NodeParts(
        shared_hub.url,
        shared_hub.ca,
        tmp_path / "node",
        wrap_transport=lambda inner: _CountingTransport(inner, seen),
    )
    claim = shared_hub.create_claim(max_uses=1)
    facts = DeviceFacts.model_validate(FACTS)

    async def scenario() -> ReportAck:
        identity = await parts.enroller().ensure(
            claim=lambda: claim, name="parts-node", labels={}, facts=lambda: facts
        )
        acks: asyncio.Queue[ReportAck] = asyncio.Queue()

        async def build() -> Report:
            return Report(facts=facts, labels={})

        async def sent(ack: ReportAck) -> None:
            acks.put_nowait(ack)

        reporter = parts.reporter(build, interval_s=60, on_sent=sent)
        link = parts.link(parts.tls(identity))
        try:
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(reporter.run(link))
                first = await asyncio.wait_for(acks.get(), 30)
                reporter.poke()  # something worth reporting: no need to wait 60 s
                await asyncio.wait_for(acks.get(), 30)
                task.cancel()
        finally:
            await link.aclose()
        return first

    ack = asyncio.run(scenario())
    assert ack.report_interval_s > 0
    assert seen == ["POST /v1/enroll", "POST /v1/report", "POST /v1/report"]
    assert (tmp_path / "node" / "identity" / "device.json").is_file()


def test_an_expired_node_enrolls_again_trying_its_kept_ca_then_the_operators(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    facts = DeviceFacts.model_validate(FACTS)
    node_dir = tmp_path / "node"
    claim = shared_hub.create_claim(max_uses=1)
    identity = asyncio.run(
        NodeParts(shared_hub.url, shared_hub.ca, node_dir)
        .enroller()
        .ensure(claim=lambda: claim, name="parts-expired", labels={}, facts=lambda: facts)
    )
    operator_ca = tmp_path / "operator-ca.pem"  # the --ca given now, after a CA rotation
    operator_ca.write_bytes(shared_hub.ca.read_bytes())
    tried: list[Path | None] = []
    delays: list[float] = []

    async def sleep(delay_s: float) -> None:
        delays.append(delay_s)
        if len(delays) == 3:
            raise _Stop

    class _Spy(NodeParts):
        def link(self, tls: HubTls | None = None, *, ca_path: Path | None = None) -> HubLink:
            tried.append(ca_path)
            return super().link(tls, ca_path=ca_path)

    years_later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
    parts = _Spy(
        f"https://127.0.0.1:{_closed_port()}",
        operator_ca,
        node_dir,
        clock=Clock(sleep=sleep, rand=lambda: 0.5, now=lambda: years_later),
    )
    with pytest.raises(_Stop):
        asyncio.run(
            parts.enroller().ensure(
                claim=lambda: "a-new-claim",
                name="ignored: it stays parts-expired",
                labels={},
                facts=lambda: facts,
                recover_expired=True,
            )
        )
    assert tried == [identity.ca_path, operator_ca, identity.ca_path]
    # Not expired (or no claim to recover with): the identity on disk, no hub call.
    tried.clear()
    kept = asyncio.run(
        parts.enroller().ensure(
            claim=lambda: "unused", name="x", labels={}, facts=lambda: facts, recover_expired=False
        )
    )
    assert kept.device_id == identity.device_id and tried == []


def test_a_link_s_blocking_client_speaks_as_the_node_and_follows_its_renewals(
    shared_hub: HubProcess, tmp_path: Path
) -> None:
    """The updater's downloads run on `HubLink.blocking_client` in a worker
    thread: that client must present the node's certificate (the hub answers
    a device route), resume the link's TLS session, and take the certificate
    of a renewal (a new context) for its next connection."""
    facts = DeviceFacts.model_validate(FACTS)
    parts = NodeParts(shared_hub.url, shared_hub.ca, tmp_path / "node")
    claim = shared_hub.create_claim(max_uses=1)
    identity = asyncio.run(
        parts.enroller().ensure(
            claim=lambda: claim, name="parts-blocking", labels={}, facts=lambda: facts
        )
    )
    tls = parts.tls(identity)
    link = parts.link(tls)
    before = tls.context()

    def desired_status() -> int:
        with link.blocking_client() as client:
            return client.get("/v1/desired").status_code

    assert desired_status() == 200  # a device route: the node's certificate was presented
    assert desired_status() == 200
    assert before.resumed >= 1  # the second connection resumed the first one's session
    tls.reload()
    assert tls.context() is not before
    assert desired_status() == 200
    assert tls.context().connections == 1 and before.connections == 2
    asyncio.run(link.aclose())
