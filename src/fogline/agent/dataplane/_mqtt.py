"""The node's link to its MQTT broker of record (Mosquitto), through paho-mqtt.

paho runs its network loop in its own thread. Incoming messages are
appended to a deque there and the asyncio side drains them in batches, so
one wake-up handles a burst and the per-message cost stays small.
Publishing is thread-safe in paho and returns without waiting for the wire.
"""

import asyncio
import collections
import contextlib
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fogline._log import event

from ._settings import MqttSettings

log = logging.getLogger("fogline.agent.mqtt")
MAX_BATCH: Final = 2000
MAX_BACKLOG: Final = 200_000  # beyond this the node sheds load instead of its memory


Handler = Callable[[Sequence[tuple[str, bytes]]], Awaitable[None]]


class MqttBridge:
    def __init__(self, settings: MqttSettings, handler: Handler) -> None:
        self.settings = settings
        self.handler = handler
        self.connected = False
        self.dropped = 0
        self.received = 0
        self._filters: dict[str, int] = {}
        self._backlog: collections.deque[tuple[str, bytes]] = collections.deque()
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        protocol = mqtt.MQTTv5 if settings.protocol == 5 else mqtt.MQTTv311
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=protocol
        )
        if settings.username:
            self._client.username_pw_set(settings.username, settings.password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_socket_open = self._on_socket_open
        self._client.reconnect_delay_set(1, 30)
        self._client.max_queued_messages_set(10_000)

    # -- paho thread -------------------------------------------------------------

    def _on_socket_open(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        # Local actions are small messages that must leave at once: without
        # TCP_NODELAY each waits for the previous segment's ACK (Nagle).
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any = None
    ) -> None:
        if getattr(reason, "is_failure", False):
            event(log, "mqtt.connect_refused", logging.WARNING, reason=str(reason))
            return
        self.connected = True
        event(log, "mqtt.connected", url=self.settings.url)
        with self._lock:
            filters = dict(self._filters)
        for topic, qos in filters.items():
            client.subscribe(topic, qos)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any = None
    ) -> None:
        self.connected = False
        event(log, "mqtt.disconnected", logging.WARNING, reason=str(reason))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if len(self._backlog) >= MAX_BACKLOG:
            self.dropped += 1
            return
        raw = message.payload
        self._backlog.append((message.topic, raw if isinstance(raw, bytes) else bytes(raw)))
        self.received += 1
        # One wake-up per burst, not per message: the flag is set here, in paho's
        # thread, and cleared by the consumer before it drains.
        if self._loop is not None and not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- asyncio side ------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Raises:
        ConnectionError: paho refused the message (not connected, queue full).
        """
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish to {topic}: {mqtt.error_string(info.rc)}")

    def set_filters(self, filters: dict[str, int]) -> None:
        """Subscribe to new filters and unsubscribe from dropped ones."""
        with self._lock:
            old, self._filters = self._filters, dict(filters)
        if not self.connected:
            return  # _on_connect subscribes to all of them
        for topic in old.keys() - filters.keys():
            self._client.unsubscribe(topic)
        for topic, qos in filters.items():
            if old.get(topic) != qos:
                self._client.subscribe(topic, qos)

    async def run(self) -> None:
        """Connect (retrying forever) and feed message batches to the handler."""
        self._loop = asyncio.get_running_loop()
        host, port = self.settings.host_port
        self._client.connect_async(host, port, keepalive=self.settings.keepalive_s)
        self._client.loop_start()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._wake_pending = False  # before draining: later appends wake again
                while self._backlog:
                    batch = [
                        self._backlog.popleft() for _ in range(min(MAX_BATCH, len(self._backlog)))
                    ]
                    await self.handler(batch)
        finally:
            self._client.disconnect()
            self._client.loop_stop()
