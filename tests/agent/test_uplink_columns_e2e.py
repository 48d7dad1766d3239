"""Batch format 2 between a real agent and a real hub: records arrive bit for bit,
once, across a hub outage (issue #18, bytes upstream).

The agent's HTTP ingest takes events whose values are hard to carry in few
bytes: floats of random bits, subnormals, -0.0, means a step off a decimal,
ints beyond 64 bits' reach of the columns, nested objects, shapes that change.
The first half goes while the hub is up, the second while it is down (into the
outbox), and the rest after it is back. The hub must hold each of them once,
with every float's bits and every value's type as sent, and the agent must
have sent them in format 2 after its first batch.
"""

import json
import random
from pathlib import Path
from typing import Any

import httpx

from tests.support.device import start_passing_through
from tests.support.exact import exact, random_finite_float
from tests.support.processes import AgentProcess, free_port, start_hub, wait_until

EVENTS = 300


def _events() -> list[dict[str, Any]]:
    rng = random.Random(1818)
    out: list[dict[str, Any]] = []
    for i in range(EVENTS):
        readings = [round(rng.gauss(50, 5), 2) for _ in range(100)]
        event: dict[str, Any] = {
            "eid": i,
            "sensor": f"s{i % 50:04d}",
            "mean": sum(readings) / 100,
            "max": max(readings),
            "bits": random_finite_float(rng),
            "tiny": [5e-324, 1e-310, 0.1 + 0.2][i % 3],
            "zero": -0.0 if i % 2 else 0.0,
            "big": rng.randrange(2**63) if i % 7 == 0 else i - 100,
            "flag": i % 3 == 0,
            "nested": {"x": [1, 2.5, None], "name": "line-7"},
        }
        if i % 4 == 0:  # another shape: a key missing, the order changed
            del event["tiny"]
            event = dict(reversed(list(event.items())))
        out.append(event)
    return out


def _post(port: int, events: list[dict[str, Any]]) -> None:
    # json.dumps writes every float so that it reads back to the same bits.
    body = "\n".join(json.dumps(e) for e in events)
    response = httpx.post(f"http://127.0.0.1:{port}/ingest", content=body, timeout=10)
    assert response.status_code == 202, response.text


def test_records_arrive_bit_for_bit_once_in_format_2_across_a_hub_outage(
    tmp_path: Path,
) -> None:
    hub = start_hub(tmp_path / "hub")
    port = free_port()
    agent = AgentProcess(
        tmp_path / "edge",
        hub,
        "columns",
        hub.create_claim(),
        extra_args=["--local-port", str(port)],
    )
    events = _events()
    thirds = [
        events[: EVENTS // 3],
        events[EVENTS // 3 : 2 * EVENTS // 3],
        events[2 * EVENTS // 3 :],
    ]

    def stored() -> list[dict[str, Any]]:
        with hub.client() as client:
            return list(
                client.get(
                    "/v1/telemetry",
                    params={"device": "columns", "stream": "events", "since": "1d", "limit": 10000},
                ).json()
            )

    try:
        start_passing_through(agent, hub, tmp_path)
        for event in thirds[0]:  # one by one: many small batches, the first in format 1
            _post(port, [event])
        wait_until(lambda: len(stored()) == len(thirds[0]), 60, "the first third at the hub")
        hub.kill()
        _post(port, thirds[1])  # into the outbox while the hub is down
        wait_until(
            lambda: agent.metric("fogline_agent_uplink_body_bytes_total", format="2") > 0,
            30,
            "format 2 in use",
        )
        hub.start()
        _post(port, thirds[2])
        wait_until(lambda: len(stored()) >= EVENTS, 90, "every event at the hub", interval_s=0.5)
        rows = stored()
        format_1 = agent.metric("fogline_agent_uplink_body_bytes_total", format="1")
        format_2 = agent.metric("fogline_agent_uplink_body_bytes_total", format="2")
    finally:
        agent.stop()
        hub.stop()
    seqs = [row["seq"] for row in rows]
    assert len(seqs) == len(set(seqs)) == EVENTS, "a record stored twice, or one missing"
    by_eid = {row["payload"]["eid"]: row["payload"] for row in rows}
    assert [exact(by_eid[e["eid"]]) for e in events] == [exact(e) for e in events]
    assert 0 < format_1 < format_2, (format_1, format_2)
