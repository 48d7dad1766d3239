"""What keeps the agent's event loop (and its local actions) free of long pauses.

/metrics reads the outbox's figures in a worker thread before collecting, and
still shows them as of the scrape; the heap freeze after start-up does not
keep garbage alive, and the collection after each applied desired state frees
what the state replaced without walking the frozen start-up heap again.
"""

import asyncio
import gc
import weakref
from pathlib import Path
from typing import Any

from fogline.agent._heap import collect_replaced_objects, freeze_long_lived_objects
from fogline.agent._local import LocalApp
from fogline.agent._metrics import AgentMetrics
from fogline.agent.dataplane import DataPlaneCollector, NodeDataPlane
from fogline.agent.outbox import OutboxItem


class NoHub:
    async def send_batch(self, records: Any) -> None:
        raise AssertionError("not sent in this test")


async def get_metrics(app: LocalApp) -> str:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/metrics"}
    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    return bytes(sent[1]["body"]).decode()


def test_metrics_show_the_outbox_as_of_each_scrape(tmp_path: Path) -> None:
    node = NodeDataPlane(tmp_path, 1024 * 1024, None, NoHub())
    metrics = AgentMetrics()
    metrics.register(DataPlaneCollector(node))
    app = LocalApp(metrics.registry, lambda: {})
    app.before_metrics.append(node.outbox_stats)
    try:
        assert "fogline_agent_outbox_depth 0.0" in asyncio.run(get_metrics(app))
        node.outbox.put_many([OutboxItem("s/t", b'{"v":1}', 3, 3600.0)] * 3)
        assert "fogline_agent_outbox_depth 3.0" in asyncio.run(get_metrics(app))
    finally:
        node.outbox.close()


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


def test_freezing_again_frees_cycles_dropped_in_between() -> None:
    a, b = Node(), Node()
    a.peer, b.peer = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    try:
        freeze_long_lived_objects()  # the cycle is alive: frozen
        del a, b
        gc.collect()
        assert gone() is not None  # a frozen cycle is out of the collector's reach
        freeze_long_lived_objects()  # e.g. a restart of the agent's parts
        assert gone() is None
    finally:
        gc.unfreeze()


def test_an_applied_state_frees_what_it_replaced_and_leaves_the_frozen_heap_alone() -> None:
    try:
        freeze_long_lived_objects()  # start-up
        frozen = gc.get_freeze_count()
        a, b = Node(), Node()  # built by an apply after start-up
        a.peer, b.peer = b, a
        gone = weakref.ref(a)
        del a, b  # the next apply replaced them
        collect_replaced_objects()
        assert gone() is None
        # The start-up heap stayed frozen: the collection did not walk it
        # (unfreezing it cost 40-50 ms of CPU per config change).
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
