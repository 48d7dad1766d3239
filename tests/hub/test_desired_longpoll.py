"""Long-polls for desired state wake for their own device's changes only,
for revokes, and across hub replicas.

The hub keeps, per replica, the last change number of each device; a change
wakes only the polls of the devices it changed (see DesiredNotifier).
"""

import asyncio
import textwrap
import threading
import time
from concurrent.futures import Future

import httpx
import pytest

from fogline.hub._desired_watch import DesiredNotifier
from tests.support import device as test_device
from tests.support.device import enroll_device
from tests.support.processes import HubProcess, start_hub, start_replica, wait_until_async

GOLD_ONLY = textwrap.dedent("""\
    apiVersion: fogline.dev/v1
    kind: Deployment
    metadata: {name: gold-cfg}
    spec:
      selector: {matchLabels: {tier: gold}}
      config: {rate_hz: 5}
    """)


def _etag(device: test_device.TestDevice) -> str:
    with device.client() as client:
        response = client.get("/v1/desired")
    assert response.status_code == 200, response.text
    return response.headers["etag"].strip('"')


def _poll_in_background(
    device: test_device.TestDevice, etag: str, wait_s: float, *, keep_body: bool = False
) -> Future:
    """Start a long-poll and return once its request is sent (the hub has it
    before any change a test then makes through the CLI, which takes longer
    to start); the future resolves to (status, seconds it took), and the JSON
    body with `keep_body`."""
    result: Future = Future()
    sent = threading.Event()

    def trace(name: str, _info: object) -> None:
        if name == "http11.send_request_body.complete":
            sent.set()

    def run() -> None:
        started = time.monotonic()
        try:
            with device.client() as client:
                response = client.get(
                    "/v1/desired",
                    params={"wait": wait_s},
                    headers={"if-none-match": f'"{etag}"'},
                    timeout=wait_s + 10,
                    extensions={"trace": trace},
                )
            outcome = (response.status_code, time.monotonic() - started)
            if keep_body:
                outcome += (response.json() if response.status_code == 200 else None,)
            result.set_result(outcome)
        except Exception as exc:  # surfaces in the test's .result()
            result.set_exception(exc)
        finally:
            sent.set()  # a failed request: the future has the error

    threading.Thread(target=run, daemon=True).start()
    assert sent.wait(10), "the long-poll was not sent"
    return result


def _apply(hub: HubProcess, tmp_path, text: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    hub.cli("apply", "-f", str(path))


def test_a_change_wakes_its_device_and_not_the_others(hub, tmp_path):
    claim = hub.create_claim(max_uses=2)
    gold = enroll_device(hub, claim, "gold-1", tmp_path)
    plain = enroll_device(hub, claim, "plain-1", tmp_path)
    hub.cli("devices", "label", "gold-1", "tier=gold")
    gold_poll = _poll_in_background(gold, _etag(gold), 20)
    plain_poll = _poll_in_background(plain, _etag(plain), 4)

    _apply(hub, tmp_path, GOLD_ONLY)

    status, took = gold_poll.result(timeout=30)
    assert status == 200 and took < 5  # woken by its change, not by the timeout
    status, took = plain_poll.result(timeout=30)
    assert status == 304 and took >= 3.9  # nothing changed for it: waited it out


def test_revoking_a_device_ends_its_long_poll(hub, tmp_path):
    claim = hub.create_claim(max_uses=1)
    device = enroll_device(hub, claim, "doomed", tmp_path)
    poll = _poll_in_background(device, _etag(device), 25)

    hub.cli("devices", "revoke", "doomed")

    status, took = poll.result(timeout=40)
    assert status == 403 and took < 5


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_a_change_made_on_one_replica_wakes_a_poll_on_another(tmp_path, postgres_url):
    first = start_hub(tmp_path / "hub-a", db_url=postgres_url)
    second = start_replica(first, tmp_path / "hub-b")
    try:
        claim = first.create_claim(max_uses=1)
        device = enroll_device(first, claim, "gold-2", tmp_path)
        first.cli("devices", "label", "gold-2", "tier=gold")
        device.hub = second  # the device polls the other replica
        poll = _poll_in_background(device, _etag(device), 20)

        _apply(first, tmp_path, GOLD_ONLY)

        status, took = poll.result(timeout=30)
        assert status == 200 and took < 5
    finally:
        second.stop()
        first.stop()


# -- the notifier alone -------------------------------------------------------------


def test_notifier_wakes_only_waiters_whose_device_moved_past_what_they_saw():
    async def scenario() -> tuple[bool, bool, bool, bool]:
        notifier = DesiredNotifier(tick_s=0.05)
        notifier.bind(asyncio.get_running_loop())
        changes: list[list[tuple[str, int]]] = [[("a", 3), ("b", 4)]]
        looks: list[int] = []

        def read_changes(since: int) -> list[tuple[str, int]]:
            looks.append(since)
            return changes.pop(0) if changes else []

        watcher = asyncio.create_task(notifier.watch(read_changes))
        # the first look loaded a=3, b=4 once the next one has begun
        await wait_until_async(lambda: len(looks) >= 2, 5, "a second look", 0.01)
        a_old = asyncio.create_task(notifier.wait("a", 2, 5))  # saw 2: already stale
        b_current = asyncio.create_task(notifier.wait("b", 4, 0.5))
        a_current = asyncio.create_task(notifier.wait("a", 3, 5))
        await asyncio.sleep(0)  # one loop turn: each task runs to its first await, waiting
        changes.append([("a", 5)])
        notifier.poke()
        result = await asyncio.gather(a_old, b_current, a_current)
        closing = asyncio.create_task(notifier.wait("c", -1, 5))
        await asyncio.sleep(0)  # one loop turn: the poll waits
        notifier.close()
        closed = await asyncio.wait_for(closing, 1)
        watcher.cancel()
        return (*result, closed)

    a_old, b_current, a_current, closed = asyncio.run(scenario())
    assert a_old is True  # returned at once
    assert b_current is False  # nothing changed for b: timed out
    assert a_current is True  # woken by a=5
    assert closed is True


def test_long_poll_validation_refuses_bad_wait(hub, tmp_path):
    claim = hub.create_claim(max_uses=1)
    device = enroll_device(hub, claim, "v", tmp_path)
    with device.client() as client:
        for wait in (999, "x", -1, "nan"):
            response = client.get("/v1/desired", params={"wait": wait})
            assert response.status_code == 422, wait
            assert response.json()["details"][0]["field"] == "query.wait"
    with httpx.Client(base_url=hub.url, verify=False) as anonymous:
        assert anonymous.get("/v1/desired").status_code == 401


def test_a_poll_that_times_out_unchanged_answers_304_with_its_etag(hub, tmp_path):
    claim = hub.create_claim(max_uses=1)
    device = enroll_device(hub, claim, "idle", tmp_path)
    etag = _etag(device)
    started = time.monotonic()
    with device.client() as client:
        response = client.get(
            "/v1/desired", params={"wait": 0.5}, headers={"if-none-match": f'"{etag}"'}
        )
    assert response.status_code == 304
    assert response.headers["etag"] == f'"{etag}"'
    assert response.content == b""
    assert time.monotonic() - started >= 0.5
    with device.client() as client:  # a stale ETag gets the document at once
        fresh = client.get("/v1/desired", params={"wait": 30}, headers={"if-none-match": '"old"'})
    assert fresh.status_code == 200
    assert fresh.headers["etag"] == f'"{etag}"'
    assert fresh.json()["revision"] == etag


def test_the_watcher_survives_a_failed_read_and_wakes_polls_after_it(caplog):
    """A locked or unreachable database must not end the watcher: it would
    take the app's other background tasks with it (one lifespan task group)."""

    async def scenario() -> bool:
        notifier = DesiredNotifier(tick_s=0.05)
        notifier.bind(asyncio.get_running_loop())
        reads = iter([RuntimeError("database is locked"), [("a", 7)]])

        def read_changes(since: int) -> list[tuple[str, int]]:
            outcome = next(reads, [])
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        watcher = asyncio.create_task(notifier.watch(read_changes))
        try:
            return await notifier.wait("a", 6, 5)
        finally:
            watcher.cancel()

    assert asyncio.run(scenario()) is True
    assert "desired.watch_failed" in caplog.text


def test_a_change_wakes_every_waiting_poll_with_its_own_document(hub, tmp_path):
    """The watcher reads the woken polls' answers in one batch (one document
    per revision): each poll still gets exactly what a fresh GET serves."""
    claim = hub.create_claim(max_uses=3)
    devices = [enroll_device(hub, claim, f"batch-{n}", tmp_path) for n in range(3)]
    for n in range(3):
        hub.cli("devices", "label", f"batch-{n}", "tier=gold")
    polls = [_poll_in_background(d, _etag(d), 20, keep_body=True) for d in devices]

    _apply(hub, tmp_path, GOLD_ONLY.replace("rate_hz: 5", "rate_hz: 7"))

    for device, poll in zip(devices, polls, strict=True):
        status, took, body = poll.result(timeout=30)
        assert status == 200 and took < 5
        with device.client() as client:
            fresh = client.get("/v1/desired")
        assert body == fresh.json()
        assert body["document"]["config"]["rate_hz"] == 7


def test_the_watcher_reads_what_woken_polls_are_answered_in_one_batch():
    async def scenario() -> tuple[list[list[str]], list[object], object]:
        notifier = DesiredNotifier(tick_s=0.05)
        notifier.bind(asyncio.get_running_loop())
        changes: list[list[tuple[str, int]]] = [[("a", 1), ("b", 1), ("c", 1)]]
        batches: list[list[str]] = []

        def read_changes(since: int) -> list[tuple[str, int]]:
            return changes.pop(0) if changes else []

        def read_woken(device_ids: list[str]) -> dict[str, str]:
            batches.append(sorted(device_ids))
            if len(batches) > 1:
                raise RuntimeError("database is locked")
            return {device_id: f"answer-{device_id}" for device_id in device_ids}

        watcher = asyncio.create_task(notifier.watch(read_changes, read_woken))
        await wait_until_async(lambda: not changes, 5, "the first look", 0.01)
        polls = [asyncio.create_task(notifier.wait_for(d, 1, 5)) for d in ("a", "a", "b")]
        idle = asyncio.create_task(notifier.wait_for("c", 1, 0.3))
        await asyncio.sleep(0)  # one loop turn: each poll waits
        changes.append([("a", 2), ("b", 2)])
        notifier.poke()
        woken = [w.payload for w in await asyncio.gather(*polls)]
        assert (await idle).changed is False  # c did not change
        # A failed batch read still wakes the poll, without its answer.
        late = asyncio.create_task(notifier.wait_for("a", 2, 5))
        await asyncio.sleep(0)
        changes.append([("a", 3)])
        notifier.poke()
        unread = await late
        watcher.cancel()
        return batches, woken, (unread.changed, unread.payload)

    batches, woken, unread = asyncio.run(scenario())
    assert batches == [["a", "b"], ["a"]]  # one read for all woken polls, none for c
    assert woken == ["answer-a", "answer-a", "answer-b"]
    assert unread == (True, None)
