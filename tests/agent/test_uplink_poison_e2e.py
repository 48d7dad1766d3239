"""A record nested too deep for the hub must not block a node's uplink forever,
nor break every telemetry query that would include it (real hub, real outbox).

Found by review: orjson parses JSON nested up to 1024 levels, so the outbox
queued such a payload; the hub then failed to store one nested about 1,000
deep (RecursionError in the JSON column: HTTP 500, which the uplink retries,
so the batch holding it, and everything queued behind it, never arrived) and
failed to answer `GET /v1/telemetry` for any window holding one nested more
than about 250 deep (HTTP 500 for `fogline telemetry query` and `logs`).
"""

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from fogline.agent.outbox import Outbox, OutboxRecord, RecordRejectedError
from fogline.agent.uplink import Backoff, HttpHubTransport, Uplink
from fogline.protocol import COLUMNS_MEDIA_TYPE, MAX_PAYLOAD_DEPTH, encode_batch, encode_columns
from tests.support.device import TestDevice, enroll_device, start_passing_through
from tests.support.processes import (
    AgentProcess,
    HubProcess,
    free_port,
    start_hub,
    tls,
    wait_until,
)


def _nested(depth: int) -> bytes:
    return b"[" * (depth - 1) + b'{"v":1}' + b"]" * (depth - 1)


def _query(hub: HubProcess) -> httpx.Response:
    with hub.client() as client:
        return client.get("/v1/telemetry", params={"since": "1h", "limit": 100})


@pytest.fixture
def device(tmp_path: Path) -> Iterator[tuple[HubProcess, TestDevice]]:
    hub = start_hub(tmp_path / "hub")
    try:
        yield hub, enroll_device(hub, hub.create_claim(), "deep", tmp_path)
    finally:
        hub.stop()


def test_the_outbox_refuses_a_payload_nested_deeper_than_the_hub_takes(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "outbox.db", max_bytes=1 << 20) as box:
        box.put("s", _nested(MAX_PAYLOAD_DEPTH), priority=1, ttl_s=60)
        with pytest.raises(RecordRejectedError, match="nested"):
            box.put("s", _nested(MAX_PAYLOAD_DEPTH + 1), priority=1, ttl_s=60)
        with pytest.raises(RecordRejectedError, match="nested"):
            box.put("s", _nested(1000), priority=1, ttl_s=60)
        assert box.stats().depth == 1


@pytest.mark.parametrize("depth", [300, 1000])
def test_the_hub_refuses_a_record_nested_too_deep_and_stays_queryable(
    device: tuple[HubProcess, TestDevice], depth: int
) -> None:
    hub, node = device
    now = time.time()
    deep = OutboxRecord(1, "s", 1, now, now + 60, _nested(depth))
    fine = OutboxRecord(2, "s", 1, now, now + 60, _nested(MAX_PAYLOAD_DEPTH))
    response = node.post_telemetry(encode_batch([deep]))
    assert response.status_code == 422, response.text  # the uplink dead-letters it
    assert "nested deeper than" in response.json()["message"]
    assert node.post_telemetry(encode_batch([fine])).status_code == 200
    response = _query(hub)
    assert response.status_code == 200, response.text
    assert [row["seq"] for row in response.json()] == [2]


def test_format_2_refuses_a_record_nested_too_deep(
    device: tuple[HubProcess, TestDevice],
) -> None:
    _, node = device
    now = time.time()
    fine, deep = _nested(2), _nested(MAX_PAYLOAD_DEPTH + 1)
    records = [
        OutboxRecord(seq, stream, 1, now, now + 60, payload)
        for seq, stream, payload in ((1, "a", fine), (2, "b", fine), (3, "b", deep))
    ]
    with node.client() as client:
        response = client.post(
            "/v1/telemetry",
            content=encode_columns(records),
            headers={"content-type": COLUMNS_MEDIA_TYPE},
        )
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == "groups.1.payload.1"


def test_a_deep_record_an_older_agent_queued_is_dead_lettered_not_blocking(
    device: tuple[HubProcess, TestDevice], tmp_path: Path
) -> None:
    hub, node = device
    path = tmp_path / "outbox.db"
    with Outbox.open(path, max_bytes=1 << 20) as box:
        for i in range(6):
            box.put("s", orjson.dumps({"i": i}), priority=1, ttl_s=3600)
    # What an agent without the depth check queued (open() heals the totals).
    deep = _nested(1000)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE records SET payload = ?, size = ? WHERE seq = 3", (deep, len(deep)))
    conn.close()

    async def run() -> None:
        verify = tls(hub.ca, node.cert_path, node.key_path)
        async with httpx.AsyncClient(base_url=hub.url, verify=verify, timeout=10) as client:
            with Outbox.open(path, max_bytes=1 << 20) as box:
                uplink = Uplink(
                    box,
                    HttpHubTransport(client, hub.url),
                    backoff=Backoff(initial_s=0.01, max_s=0.01),
                )
                async with asyncio.timeout(20):
                    await uplink.drain()
                stats = box.stats()
                assert (stats.depth, stats.dead_lettered) == (0, 1)
                assert uplink.counters.dead_lettered == 1

    asyncio.run(run())
    response = _query(hub)
    assert response.status_code == 200, response.text
    assert sorted(row["seq"] for row in response.json()) == [1, 2, 4, 5, 6]


def test_the_agents_ingest_refuses_a_record_nested_too_deep_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    hub = start_hub(tmp_path / "hub")
    port = free_port()
    agent = AgentProcess(
        tmp_path / "edge", hub, "ingest", hub.create_claim(), extra_args=["--local-port", str(port)]
    )

    def stored() -> list[object]:
        with hub.client() as client:
            params = {"device": "ingest", "stream": "events", "since": "1d"}
            return [row["payload"] for row in client.get("/v1/telemetry", params=params).json()]

    try:
        start_passing_through(agent, hub, tmp_path)
        deep = b'{"deep":' + _nested(MAX_PAYLOAD_DEPTH) + b"}"
        deeper = b'{"deep":' + _nested(300) + b"}"
        body = b"\n".join([b'{"n":1}', deep, b'{"n":2}', deeper, b'{"n":3}'])
        response = httpx.post(f"http://127.0.0.1:{port}/ingest", content=body, timeout=10)
        assert response.status_code == 202, response.text
        answer = response.json()
        assert (answer["accepted"], answer["rejected"]) == (3, 2), answer
        assert [error["line"] for error in answer["errors"]] == [2, 4]
        assert "nested deeper than" in answer["errors"][0]["reason"]
        response = httpx.post(f"http://127.0.0.1:{port}/ingest", content=deeper, timeout=10)
        assert response.status_code == 400, response.text
        wait_until(lambda: len(stored()) >= 3, 30, "the three good records at the hub")
        assert sorted(p["n"] for p in stored()) == [1, 2, 3]  # type: ignore[index]
    finally:
        agent.stop()
        hub.stop()
