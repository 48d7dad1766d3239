"""MqttBridge drives paho from the asyncio event loop: no thread, its own reconnects.

Real Mosquitto processes on 127.0.0.1. A sensor (a plain threaded paho
client, started before anything is counted) publishes readings; the bridge's
handler relays each one to `act/...`, where the sensor listens.
"""

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fogline.agent.dataplane import MqttSettings
from fogline.agent.dataplane._mqtt import MqttBridge
from tests.support.broker import Broker, start_broker
from tests.support.processes import free_port, wait_until_async

TEST_BUDGET_S = 14.0


class Sensor:
    """Publishes readings and collects the actions, in paho's own thread."""

    def __init__(self, port: int) -> None:
        self.actions: list[str] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe("act/#", 0)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda _c, _u, m: self.actions.append(m.topic)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(5)

    def publish(self, topic: str) -> None:
        self.client.publish(topic, b'{"value": 1}', qos=0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def sensor_on(port: int) -> Iterator[Sensor]:
    sensor = Sensor(port)
    try:
        yield sensor
    finally:
        sensor.close()


class Relay:
    """A bridge whose handler republishes every message under act/."""

    def __init__(self, port: int, client_id: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.threads_seen: set[int] = set()
        self.bridge = MqttBridge(
            MqttSettings(url=f"mqtt://127.0.0.1:{port}", client_id=client_id, keepalive_s=5),
            self.handle,
        )
        self.bridge.set_filters({"sens/#": 0})

    async def handle(self, batch: Any) -> None:
        self.threads_seen.add(threading.active_count())
        for topic, payload in batch:
            self.messages.append((topic, payload))
            self.bridge.publish(f"act/{topic}", payload, 0, False)


async def bounded(scenario: Coroutine[Any, Any, None]) -> None:
    async with asyncio.timeout(TEST_BUDGET_S):  # in this task: all_tasks() stays exact
        await scenario


def connect_failures(caplog: pytest.LogCaptureFixture) -> int:
    """Connection attempts the bridge logged as failed."""
    return sum(record.getMessage() == "mqtt.connect_failed" for record in caplog.records)


async def relayed(relay: Relay, sensor: Sensor, topic: str, timeout_s: float = 5.0) -> None:
    """Publish until one message went sensor -> bridge -> handler -> sensor.

    Repeated because a SUBSCRIBE may still be in flight right after CONNACK.
    """

    def relayed_yet() -> bool:
        if f"act/{topic}" in sensor.actions:
            return True
        sensor.publish(topic)
        return False

    await wait_until_async(relayed_yet, timeout_s, f"{topic} relayed")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()


def test_relays_without_a_thread_of_its_own(broker: Broker) -> None:
    with sensor_on(broker.port) as sensor:

        async def scenario() -> None:
            before = threading.active_count()
            relay = Relay(broker.port, "t-no-thread")
            task = asyncio.create_task(relay.bridge.run())
            await wait_until_async(lambda: relay.bridge.connected, 5, "connected")
            assert threading.active_count() == before, threading.enumerate()
            await relayed(relay, sensor, "sens/warmup")
            for i in range(500):
                sensor.publish(f"sens/{i}")
            await wait_until_async(lambda: len(sensor.actions) >= 501, 5, "500 actions")
            assert {f"act/sens/{i}" for i in range(500)} <= set(sensor.actions)
            assert relay.threads_seen == {before}
            assert threading.active_count() == before, threading.enumerate()
            assert relay.bridge.received == len(relay.messages)
            assert relay.bridge.dropped == 0
            await stop(task)

        asyncio.run(bounded(scenario()))


def test_connects_when_the_broker_starts_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()

    async def scenario() -> None:
        relay = Relay(port, "t-late-broker")
        task = asyncio.create_task(relay.bridge.run())
        await wait_until_async(lambda: connect_failures(caplog) >= 2, 5, "two refused attempts")
        assert not relay.bridge.connected
        broker = start_broker(tmp_path / "late", port)
        try:
            await wait_until_async(
                lambda: relay.bridge.connected, 8, "connected after the broker started"
            )
            with sensor_on(port) as sensor:
                await relayed(relay, sensor, "sens/late")
        finally:
            await stop(task)
            broker.stop()

    asyncio.run(bounded(scenario()))


def test_reconnects_and_resubscribes_after_the_broker_restarts(tmp_path: Path) -> None:
    port = free_port()
    broker = start_broker(tmp_path / "first", port)

    async def scenario() -> None:
        nonlocal broker
        relay = Relay(port, "t-restart")
        task = asyncio.create_task(relay.bridge.run())
        try:
            await wait_until_async(lambda: relay.bridge.connected, 5, "connected")
            with sensor_on(port) as sensor:
                await relayed(relay, sensor, "sens/before")
            broker.proc.kill()
            broker.proc.wait()
            await wait_until_async(lambda: not relay.bridge.connected, 3, "the loss noticed")
            broker = start_broker(tmp_path / "second", port)
            await wait_until_async(lambda: relay.bridge.connected, 6, "reconnected")
            with sensor_on(port) as sensor:  # a fresh broker: the filters must be resubscribed
                await relayed(relay, sensor, "sens/after")
        finally:
            await stop(task)

    try:
        asyncio.run(bounded(scenario()))
    finally:
        broker.stop()


def test_cancel_disconnects_and_leaves_no_reader_socket_or_task(tmp_path: Path) -> None:
    port = free_port()
    broker = start_broker(tmp_path / "broker", port)
    broker_log = tmp_path / "broker" / "mosquitto.log"

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        relay = Relay(port, "t-cancel")
        task = asyncio.create_task(relay.bridge.run())
        await wait_until_async(lambda: relay.bridge.connected, 5, "connected")
        sock = relay.bridge._client.socket()
        assert sock is not None
        fd = sock.fileno()
        await stop(task)
        assert relay.bridge._client.socket() is None
        assert sock.fileno() == -1  # closed
        assert loop.remove_reader(fd) is False  # nothing was still registered
        assert loop.remove_writer(fd) is False
        assert not relay.bridge.connected
        assert asyncio.all_tasks() == {asyncio.current_task()}
        # A clean MQTT DISCONNECT, not a dropped connection ("closed its connection").
        await wait_until_async(
            lambda: "Client t-cancel disconnected." in broker_log.read_text(), 3, "DISCONNECT"
        )

    try:
        asyncio.run(bounded(scenario()))
    finally:
        broker.stop()


def test_cancel_while_the_broker_is_down_leaves_nothing_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()

    async def scenario() -> None:
        relay = Relay(port, "t-cancel-down")
        task = asyncio.create_task(relay.bridge.run())
        # logged just before the bridge sleeps until its next attempt
        await wait_until_async(lambda: connect_failures(caplog) >= 1, 5, "a refused attempt")
        await stop(task)
        assert relay.bridge._client.socket() is None
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(bounded(scenario()))


def test_paho_still_opens_its_socket_where_the_bridge_hands_it_one() -> None:
    # The bridge overrides this private paho method to connect without
    # blocking the loop; a paho upgrade that renames it must fail here.
    import inspect

    import paho.mqtt.client as mqtt

    assert "self._create_socket()" in inspect.getsource(mqtt.Client.reconnect)
    assert "self._create_socket_connection()" in inspect.getsource(mqtt.Client._create_socket)
