"""The outbox-dropping alert (issue #15), end to end: a real agent with a
1 MiB outbox fills it while its hub is down, so it drops records; back up,
the hub reads the rising drop count in the next report, raises the alert,
sends it to the webhook and counts it in /metrics, and clears it once the
reports show no new drop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.device import start_passing_through
from tests.support.processes import (
    AFTER_HUB_OUTAGE_S,
    AgentProcess,
    HubProcess,
    free_port,
    start_hub,
    wait_until,
)
from tests.support.receivers import Receiver

KIND = "outbox-dropping"
# 3 MiB of events into a 1 MiB outbox: at least 2 MiB of them dropped.
BATCHES = 24
EVENTS_PER_BATCH = 64
PAD = "x" * 2000


def _active(hub: HubProcess) -> dict[str, dict[str, Any]]:
    out = hub.cli("alerts", "ls", "--active", "-o", "json").stdout
    return {a["kind"]: a for a in json.loads(out)}


def _fill(port: int) -> None:
    for batch in range(BATCHES):
        body = "\n".join(
            json.dumps({"eid": batch * EVENTS_PER_BATCH + i, "pad": PAD})
            for i in range(EVENTS_PER_BATCH)
        )
        response = httpx.post(f"http://127.0.0.1:{port}/ingest", content=body, timeout=10)
        assert response.status_code == 202, response.text


# Room for the agent's report backoff after the outage (AFTER_HUB_OUTAGE_S).
@pytest.mark.timeout(240)
def test_an_overflowing_outbox_raises_an_alert_that_clears_when_drops_stop(
    db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    hub = start_hub(tmp_path / "hub", db_url=db_url, extra_args=["--alert-webhook", receiver.url()])
    port = free_port()
    agent = AgentProcess(
        tmp_path / "edge",
        hub,
        "spilling",
        hub.create_claim(),
        extra_args=["--local-port", str(port), "--outbox-max-mb", "1"],
    )
    try:
        start_passing_through(agent, hub, tmp_path)
        # Reports without drops: no alert, and the hub's baseline is 0.
        wait_until(lambda: hub.device("spilling")["reported"].get("outbox"), 20, "outbox report")
        assert KIND not in _active(hub)

        hub.stop()  # the node keeps taking events; its outbox overflows
        _fill(port)
        assert agent.metric("fogline_agent_outbox_dropped_total", reason="quota") > 0
        hub.start()

        # The next report comes when the agent's backoff next lets it try.
        alert = wait_until(
            lambda: _active(hub).get(KIND), AFTER_HUB_OUTAGE_S, "the outbox-dropping alert"
        )
        assert alert["device"] == "spilling"
        assert "over quota" in alert["detail"] and "records so far" in alert["detail"]
        assert hub.metric("fogline_hub_alerts_active", kind=KIND) == 1
        sent = wait_until(
            lambda: [
                body for seen in receiver.seen if (body := json.loads(seen.body))["kind"] == KIND
            ],
            20,
            "the webhook delivery",
        )
        assert [a["id"] for a in sent] == [alert["id"]]

        # Nothing more is sent, so nothing more is dropped: the alert clears
        # (2 passes of 3 s with --report-interval 1) and stays in the history.
        wait_until(lambda: KIND not in _active(hub), 30, "the alert to clear")
        assert hub.metric("fogline_hub_alerts_active", kind=KIND) == 0
        everything = json.loads(hub.cli("alerts", "ls", "-o", "json").stdout)
        cleared = [a for a in everything if a["kind"] == KIND]
        assert [a["id"] for a in cleared] == [alert["id"]] and cleared[0]["cleared_at"]
    finally:
        agent.stop()
        hub.stop()
