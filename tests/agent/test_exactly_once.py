"""Exactly-once delivery from the outbox to the hub across agent kills, hub
outages and lost acknowledgements, on SQLite and on PostgreSQL.

A driver posts uniquely numbered events to the agent's HTTP ingest in
batches, from before the first fault until after the last one (at most
MAX_EVENTS). A 202 means the batch is in the outbox (committed to disk); a
failed request is retried, which makes new outbox records. Meanwhile the agent
is SIGKILLed, the hub is SIGKILLed, and a relay between them loses the hub's
answers until the agent has sent again what the hub had stored (the hub counts
those records as duplicates; without a resend the test fails). At the end:
- every event of every acknowledged batch is at the hub, every seq the node
  gave out is there, and the node reports no record dropped;
- the uplink resent what the hub already held, and the hub counted those
  records as duplicates, yet no (device, stream, seq) is stored twice;
- an event is at the hub more than once only if its batch was retried.
"""

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.pool import NullPool

from fogline.hub._schema import TelemetryRow
from tests.support.device import start_passing_through
from tests.support.processes import (
    AFTER_HUB_OUTAGE_S,
    AgentProcess,
    HubProcess,
    free_port,
    start_hub,
    wait_until,
)
from tests.support.relay import LossyRelay

# The driver runs until the faults are over, at most DRIVE_S or MAX_EVENTS.
MAX_EVENTS = 40_000
DRIVE_S = 240
BATCH = 50
PACE_S = 0.3
# The faults, in this order; the schedule runs once per database, so the
# two runs together take about what 20 kills and 20 outages on SQLite took.
SCHEDULE = ("agent", "hub", "answers") * 4
DUPLICATES = "fogline_hub_telemetry_duplicates_total"


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


def _hub_rows(engine: Engine) -> list[tuple[int, int]]:
    """(seq, event id) of every stored event, read from the hub's database."""
    statement = select(TelemetryRow.seq, TelemetryRow.payload).where(
        TelemetryRow.stream == "events"
    )
    with engine.connect() as connection:
        return [(seq, payload["eid"]) for seq, payload in connection.execute(statement)]


def _seq_gaps(engine: Engine) -> int:
    """Seqs missing between the lowest and highest the hub holds, over every
    stream: the outbox numbers the node's records across streams (its own log
    lines, `logs/_agent`, take seqs between the events)."""
    with engine.connect() as connection:
        seqs = set(connection.scalars(select(TelemetryRow.seq)))
    return max(seqs) - min(seqs) + 1 - len(seqs) if seqs else 0


def _lose_answers_until_a_resend(relay: LossyRelay, hub: HubProcess) -> None:
    """Lose the hub's answers (the hub stores the batch, the agent never hears)
    until the hub has counted records sent again."""
    counted = hub.metric(DUPLICATES)
    relay.losing.set()
    try:
        wait_until(
            lambda: hub.metric(DUPLICATES) > counted,
            60,  # a request timeout, a backoff and a resend: 30 s was short at load 50
            "a batch whose answer was lost, sent again",
            interval_s=0.2,
        )
    finally:
        relay.losing.clear()


def _outbox_drops(hub: HubProcess, name: str) -> dict[str, int]:
    """What the node last reported having dropped from its outbox."""
    outbox = hub.device(name)["reported"].get("outbox") or {}
    return {key: outbox.get(key, 0) for key in ("dropped_quota", "expired", "dead_lettered")}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_outbox_record_reaches_the_hub_exactly_once(db_url: str, tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "hub", db_url=db_url)
    relay = LossyRelay(hub.port)
    database = create_engine(db_url, poolclass=NullPool)
    port = free_port()
    agent = AgentProcess(
        tmp_path / "edge",
        hub,
        "faulty",
        hub.create_claim(),
        hub_url=relay.url,
        extra_args=["--local-port", str(port)],
    )
    try:
        start_passing_through(agent, hub, tmp_path, 15)
        driver = Driver(port)
        driver.start()
        duplicates = 0.0  # summed over the hub's lives: each process counts from zero
        for fault in SCHEDULE:
            time.sleep(0.4)  # paces the fault schedule
            if fault == "agent":
                agent.stop(signal.SIGKILL)
                agent.start()
                wait_until(lambda: agent.health() is not None, 30, "agent back")
            elif fault == "hub":
                duplicates += hub.metric(DUPLICATES)
                hub.kill()
                time.sleep(0.3)  # the outage
                hub.start()
            else:
                _lose_answers_until_a_resend(relay, hub)
        # the faults happened while events were still flowing
        assert not driver.done.is_set(), "the driver finished before the faults did"
        driver.stop.set()
        assert driver.done.wait(60), "driver did not finish"
        assert driver.error is None, driver.error
        assert driver.acked == set(range(driver.sent)), "a batch was never acknowledged"
        wait_until(
            lambda: {eid for _, eid in _hub_rows(database)} >= driver.acked,
            120,
            "all acknowledged events at the hub",
            interval_s=0.5,
        )
        seen = hub.device("faulty")["last_seen"]  # the drops the node counted, reported since
        # The hub was restarted in the schedule: the agent's reports may still
        # be in their backoff (see AFTER_HUB_OUTAGE_S).
        wait_until(
            lambda: hub.device("faulty")["last_seen"] != seen, AFTER_HUB_OUTAGE_S, "a newer report"
        )
        duplicates += hub.metric(DUPLICATES)
        rows = _hub_rows(database)
        seqs = sorted(seq for seq, _ in rows)
        # Log lines go at a lower priority than events: wait for them to land.
        wait_until(lambda: _seq_gaps(database) == 0, 30, "every seq at the hub", interval_s=0.5)
        gaps = _seq_gaps(database)
        drops = _outbox_drops(hub, "faulty")
        missing = driver.acked - {eid for _, eid in rows}
        print(
            f"\n[{database.dialect.name}] {len(driver.acked)} events acknowledged, {len(rows)} "
            f"rows at the hub, {relay.answers_lost} answers lost; duplicates ignored by the "
            f"hub: {duplicates:.0f}; losses: {len(missing)} acknowledged events missing, "
            f"{gaps} seqs missing, node drops {drops}"
        )
        assert len(seqs) == len(set(seqs)), "a (device, stream, seq) stored twice"
        assert gaps == 0, "a seq the node gave out never reached the hub"
        assert drops == {"dropped_quota": 0, "expired": 0, "dead_lettered": 0}
        assert duplicates > 0, "no record was resent, or the hub did not count it"
        eids = [eid for _, eid in rows]
        repeated = (
            {eid for eid in eids if eids.count(eid) > 1} if len(eids) != len(set(eids)) else set()
        )
        assert repeated <= driver.retried, "an event duplicated without a retry"
    finally:
        agent.stop()
        hub.stop()
        relay.close()
        database.dispose()
