"""Exactly-once delivery from the outbox to the hub across agent kills and hub outages.

A driver posts uniquely numbered events to the agent's HTTP ingest in
batches, from before the first fault until after the last one (at most
MAX_EVENTS). A 202 means the batch is in the outbox (committed to disk); a
failed request is retried, which makes new outbox records. Meanwhile the
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
# The driver runs until the faults are over, at most DRIVE_S or MAX_EVENTS.
MAX_EVENTS = 40_000
DRIVE_S = 240
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
        self.sent = 0  # events of every batch before this one were acknowledged
        self.stop = threading.Event()  # set once the faults are over
        self.done = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + DRIVE_S
        for start in range(0, MAX_EVENTS, BATCH):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            ids = list(range(start, start + BATCH))
            body = "\n".join(json.dumps({"eid": i}) for i in ids)
            while True:
                if time.monotonic() > deadline + 60:
                    self.error = "a batch was refused for a minute"
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
                self.retried.update(ids)
                time.sleep(0.05)
            self.sent = start + BATCH
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
        driver.stop.set()
        assert driver.done.wait(60), "driver did not finish"
        assert driver.error is None, driver.error
        assert driver.acked == set(range(driver.sent)), "a batch was never acknowledged"
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
    finally:
        agent.stop()
